"""SynthAV: the embedded audio-video dataset, generated offline into real files (datasets.md §6.1 a).

Layout of the raw folder::

    AudioWAV/<clip_id>.wav     mono PCM_16 at data.audio.sample_rate (soundfile)
    VideoMP4/<clip_id>.mp4     H.264 yuv420p, data.video.fps, size × size (PyAV, one encoder thread)
    splits/<split>.csv         clip_id,label,label_name,audio_cue,video_cue
    classes.txt                one class name per line (c0, c1, ...)
    manifest.json              written last: the settings, counts per split, sha256 of every file

Clip ``i`` of split ``s`` (``train``, ``val``, ``test`` = 0, 1, 2) has label ``i % classes`` and id
``<split>_<i:05d>_c<label>``. Everything about it is drawn from two generators,
``numpy.random.default_rng([seed, s, i, 0])`` for the audio and ``[seed, s, i, 1]`` for the video,
so the output does not depend on the number of worker processes, and each modality's draws do not
depend on the other modality's settings. WAV and CSV bytes are reproducible; MP4 bytes are with the
same FFmpeg build (datasets.md §5), decoded frames are the thing to compare.

**Class evidence.** Each modality carries a *cue class*: the label, or, for a share ``confusion``
of the clips, a uniformly drawn *other* class (the split CSV records both cues). The two draws are
independent, so the modalities err on different clips and fusing them helps.

- Audio (translation-invariant in a spectrogram, datasets.md §6.1: a CNN with global pooling cannot
  read absolute pitch): six partials at ``f + j·spacing`` over a random per-clip base ``f``
  (200 Hz up to ``min(0.45·sr, 6 kHz)`` minus the comb's span), so pitch carries no label. Cue
  class ``k`` fixes the partial spacing (``k % 2``: 140 or 280 Hz), the glide (``k // 2 % 3``:
  flat, repeated 0.5 s upward sweeps or downward sweeps over 1 kHz) and amplitude modulation
  (``k // 6``: none or 6 Hz); 12 classes at most. White noise is added at ``snr_db`` (cue power over
  noise power, over the whole band); the mix has an RMS of 0.1.
- Video: a shape (``SHAPES[k]``: disc, square, triangle, plus, ring, bar, diamond, x, frame, post,
  half-disc, dots) of random size (16-22 % of the frame) and random colour on a random dark
  background (colours carry no label), drifting at a random velocity and bouncing off the
  borders, plus Gaussian pixel noise of std ``noise`` (0-255 scale, added before H.264 coding,
  which removes part of it).

**Knobs, each monotone with everything else fixed** (the same seed keeps every other draw, and the
set of confused clips only grows with ``confusion``):

- ``audio.snr_db`` up → the audio cue is cleaner → audio learns faster;
- ``audio.confusion`` up → a lower ceiling on audio-only accuracy, ``1 - confusion``;
- ``video.noise`` up → the shape is harder to see → video learns slower;
- ``video.confusion`` up → a lower ceiling on video-only accuracy, ``1 - confusion``.

The defaults in ``params.yaml`` aim at CREMA-D's regime: audio strong and fast, video weak and slow.
For a video-dominant dataset (Kinetics-Sounds-like), lower ``snr_db`` and raise ``audio.confusion``,
and lower ``video.noise`` and ``video.confusion``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import av
import numpy as np
import soundfile as sf

from mmbalance import __version__
from mmbalance.data.datasets._base import (
    MANIFEST,
    SPLIT_DIR,
    SPLITS,
    Dataset,
    Item,
    parallel_map,
    read_split_rows,
    sha256_file,
    write_raw_manifest,
)
from mmbalance.errors import ConfigError
from mmbalance.io import atomic_open, write_csv
from mmbalance.registry import register_dataset

AUDIO_DIR = "AudioWAV"
VIDEO_DIR = "VideoMP4"
CLIP_FILE = re.compile(r"(train|val|test)_\d{5}_c\d+\.(wav|mp4)")
CSV_FIELDS = ("clip_id", "label", "label_name", "audio_cue", "video_cue")

SPACINGS_HZ = (140.0, 280.0)
GLIDES = ("flat", "up", "down")
AM_RATES_HZ = (0.0, 6.0)
PARTIALS = 6
SWEEP_PERIOD_S = 0.5
SWEEP_SPAN_HZ = 1000.0
LOWEST_HZ = 200.0
LEVEL_RMS = 0.1
SHAPES = (
    "disc",
    "square",
    "triangle",
    "plus",
    "ring",
    "bar",
    "diamond",
    "x",
    "frame",
    "post",
    "half-disc",
    "dots",
)
MAX_CLASSES = len(SHAPES)
X264_OPTIONS = {"crf": "18", "preset": "ultrafast"}


def audio_cue(cue: int) -> tuple[float, str, float]:
    """The (partial spacing in Hz, glide, AM rate in Hz) of cue class ``cue``."""
    return SPACINGS_HZ[cue % 2], GLIDES[cue // 2 % 3], AM_RATES_HZ[cue // 6]


def _cue_class(rng: np.random.Generator, label: int, classes: int, confusion: float) -> int:
    """The label, or with probability ``confusion`` a uniformly drawn other class (two draws, always made)."""
    draw, shift = rng.random(), int(rng.integers(1, classes))
    return label if draw >= confusion else (label + shift) % classes


def synth_audio(rng: np.random.Generator, cue: int, samples: int, rate: int, snr_db: float) -> np.ndarray:
    """The float32 waveform of one clip with the cue of class ``cue`` (see the module docstring)."""
    spacing, glide, am_rate = audio_cue(cue)
    top = min(0.45 * rate, 6000.0) - SWEEP_SPAN_HZ - (PARTIALS - 1) * max(SPACINGS_HZ)
    base = rng.uniform(LOWEST_HZ, max(top, LOWEST_HZ))
    sweep_phase, am_phase = rng.uniform(0.0, 1.0, 2)
    gains = rng.uniform(0.6, 1.0, PARTIALS)
    phases = rng.uniform(0.0, 2 * np.pi, PARTIALS)
    noise = rng.standard_normal(samples)

    t = np.arange(samples) / rate
    ramp = (t / SWEEP_PERIOD_S + sweep_phase) % 1.0
    offset = {"flat": np.full_like(t, 0.5), "up": ramp, "down": 1.0 - ramp}[glide] * SWEEP_SPAN_HZ
    sweep = 2 * np.pi * np.cumsum(base + offset) / rate
    partials = np.arange(PARTIALS)[:, None] * (2 * np.pi * spacing) * t[None, :]
    cue_wave = (gains[:, None] * np.sin(sweep[None, :] + partials + phases[:, None])).sum(axis=0)
    if am_rate > 0:
        cue_wave *= 1.0 + 0.9 * np.sin(2 * np.pi * (am_rate * t + am_phase))
    cue_wave /= np.sqrt(np.mean(cue_wave**2))
    ratio = 10.0 ** (snr_db / 10.0)
    mix = LEVEL_RMS * (np.sqrt(ratio / (1 + ratio)) * cue_wave + np.sqrt(1 / (1 + ratio)) * noise)
    return np.clip(mix, -1.0, 1.0).astype(np.float32)


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-test of ``shape`` in coordinates scaled by the shape's radius (v points down)."""
    au, av_ = np.abs(u), np.abs(v)
    radius = np.hypot(u, v)
    if shape == "disc":
        return radius <= 1.0
    if shape == "square":
        return np.maximum(au, av_) <= 0.85
    if shape == "triangle":
        return (v >= -0.9) & (v <= 0.8) & (au <= (v + 0.9) / 1.7)
    if shape == "plus":
        return ((au <= 0.3) & (av_ <= 1.0)) | ((av_ <= 0.3) & (au <= 1.0))
    if shape == "ring":
        return (radius >= 0.55) & (radius <= 1.0)
    if shape == "bar":
        return (au <= 1.0) & (av_ <= 0.35)
    if shape == "diamond":
        return au + av_ <= 1.1
    if shape == "x":
        p, q = np.abs(u + v) / np.sqrt(2), np.abs(u - v) / np.sqrt(2)
        return ((p <= 0.3) & (q <= 1.0)) | ((q <= 0.3) & (p <= 1.0))
    if shape == "frame":
        edge = np.maximum(au, av_)
        return (edge <= 0.9) & (edge >= 0.55)
    if shape == "post":
        return (au <= 0.35) & (av_ <= 1.0)
    if shape == "half-disc":
        return (radius <= 1.0) & (v >= -0.2)
    return np.hypot(au - 0.5, v) <= 0.4  # dots


def _reflect(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """Fold positions into [low, high] as a point bouncing off both ends."""
    span = high - low
    y = (x - low) % (2 * span)
    return low + np.where(y > span, 2 * span - y, y)


def synth_frames(
    rng: np.random.Generator, cue: int, count: int, fps: int, size: int, noise: float
) -> np.ndarray:
    """uint8 RGB frames ``(count, size, size, 3)`` showing the shape of class ``cue`` (module docstring)."""
    radius = size * rng.uniform(0.16, 0.22)
    start = rng.uniform(radius, size - radius, 2)
    angle, speed = rng.uniform(0.0, 2 * np.pi), size * rng.uniform(0.15, 0.35)
    background, colour = rng.uniform(0.0, 90.0, 3), rng.uniform(130.0, 255.0, 3)

    t = np.arange(count) / fps
    centres = _reflect(
        start + speed * t[:, None] * np.array([np.cos(angle), np.sin(angle)]), radius, size - radius
    )
    # Coverage of each pixel by the shape, in [0, 1], from 2×2 supersampling; only a box around
    # the shape (every shape lies within 1.15 radii of its centre) is evaluated.
    box = min(size, int(np.ceil(2.3 * radius)) + 2)
    corner = np.clip(np.floor(centres - box / 2).astype(int), 0, size - box)
    sub = (np.arange(2 * box) + 0.5) / 2
    u = (corner[:, 0, None, None] + sub[None, None, :] - centres[:, 0, None, None]) / radius
    v = (corner[:, 1, None, None] + sub[None, :, None] - centres[:, 1, None, None]) / radius
    inside = _shape_mask(SHAPES[cue], u, v).astype(np.float32)
    patches = inside.reshape(count, box, 2, box, 2).mean(axis=(2, 4))
    coverage = np.zeros((count, size, size), dtype=np.float32)
    for frame, (x0, y0) in enumerate(corner):
        coverage[frame, y0 : y0 + box, x0 : x0 + box] = patches[frame]
    pixels = background.astype(np.float32) + coverage[..., None] * (colour - background).astype(np.float32)
    pixels += np.float32(noise) * rng.standard_normal(pixels.shape, dtype=np.float32)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def write_mp4(path: Path, frames: np.ndarray, fps: int) -> None:
    """Encode RGB frames ``(n, h, w, 3)`` as H.264 yuv420p with one encoder thread (byte-stable, §5)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options=dict(X264_OPTIONS))
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))


def _render_clip(cfg: Mapping[str, Any], out_dir: str, task: tuple[int, int]) -> dict[str, Any]:
    """Write the WAV and MP4 of clip ``task = (split index, clip index)``; return its CSV row and hashes."""
    split_index, index = task
    classes, seed = int(cfg["classes"]), int(cfg["seed"])
    label = index % classes
    clip_id = f"{SPLITS[split_index]}_{index:05d}_c{label}"
    audio_cfg, video_cfg = cfg["audio"], cfg["video"]

    rng = np.random.default_rng([seed, split_index, index, 0])
    audio_cue_class = _cue_class(rng, label, classes, float(audio_cfg["confusion"]))
    rate = int(audio_cfg["sample_rate"])
    wave = synth_audio(rng, audio_cue_class, round(cfg["duration"] * rate), rate, float(audio_cfg["snr_db"]))
    wav_rel = f"{AUDIO_DIR}/{clip_id}.wav"
    sf.write(Path(out_dir) / wav_rel, wave, rate, subtype="PCM_16")

    rng = np.random.default_rng([seed, split_index, index, 1])
    video_cue_class = _cue_class(rng, label, classes, float(video_cfg["confusion"]))
    fps, size = int(video_cfg["fps"]), int(video_cfg["size"])
    count = max(1, round(cfg["duration"] * fps))
    frames = synth_frames(rng, video_cue_class, count, fps, size, float(video_cfg["noise"]))
    mp4_rel = f"{VIDEO_DIR}/{clip_id}.mp4"
    write_mp4(Path(out_dir) / mp4_rel, frames, fps)

    return {
        "clip_id": clip_id,
        "label": label,
        "label_name": f"c{label}",
        "audio_cue": audio_cue_class,
        "video_cue": video_cue_class,
        "files": {rel: sha256_file(Path(out_dir) / rel) for rel in (wav_rel, mp4_rel)},
    }


def _check_config(data_cfg: Mapping[str, Any]) -> None:
    classes = int(data_cfg["classes"])
    if not 2 <= classes <= MAX_CLASSES:
        raise ConfigError(f"data.synthav.classes: {classes} is not in [2, {MAX_CLASSES}]")
    if int(data_cfg["video"]["size"]) % 2:
        raise ConfigError(
            f"data.synthav.video.size: {data_cfg['video']['size']} must be even (H.264 yuv420p)"
        )
    if round(data_cfg["duration"] * data_cfg["audio"]["sample_rate"]) < 1:
        raise ConfigError(f"data.synthav.duration: {data_cfg['duration']} gives no audio sample")


@register_dataset("synthav")
class SynthAV(Dataset):
    """The embedded audio-video dataset (module docstring)."""

    name = "synthav"
    modalities: ClassVar[dict[str, str]] = {"audio": "spectrogram", "video": "frames"}

    def class_names(self, data_cfg: Mapping[str, Any]) -> list[str]:
        return [f"c{k}" for k in range(int(data_cfg["classes"]))]

    def prepare(self, data_cfg: Mapping[str, Any], out_dir: Path, workers: int, progress: bool) -> Path:
        """Generate every clip (in ``workers`` processes), the split CSVs, ``classes.txt``, the manifest."""
        _check_config(data_cfg)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / MANIFEST).unlink(missing_ok=True)
        for sub in (AUDIO_DIR, VIDEO_DIR, SPLIT_DIR):
            (out_dir / sub).mkdir(exist_ok=True)
            for old in (out_dir / sub).iterdir():  # clips of an earlier, larger generation
                if CLIP_FILE.fullmatch(old.name):
                    old.unlink()

        classes = int(data_cfg["classes"])
        per_class = data_cfg["clips_per_class"]
        tasks = [(s, i) for s, split in enumerate(SPLITS) for i in range(classes * int(per_class[split]))]
        render = partial(_render_clip, dict(data_cfg), str(out_dir))
        rows = list(parallel_map(render, tasks, workers, progress, desc="synthav"))

        files: dict[str, str] = {}
        counts: dict[str, int] = {}
        for split in SPLITS:
            split_rows = [row for row in rows if row["clip_id"].startswith(f"{split}_")]
            for row in split_rows:
                files.update(row["files"])
            rel = f"{SPLIT_DIR}/{split}.csv"
            write_csv(out_dir / rel, [{k: row[k] for k in CSV_FIELDS} for row in split_rows], CSV_FIELDS)
            files[rel] = sha256_file(out_dir / rel)
            counts[split] = len(split_rows)
        with atomic_open(out_dir / "classes.txt") as handle:
            handle.write("".join(f"{name}\n" for name in self.class_names(data_cfg)))
        files["classes.txt"] = sha256_file(out_dir / "classes.txt")
        extra = {
            "generator": f"mmbalance {__version__}",
            "software": {"av": av.__version__, "ffmpeg": av.ffmpeg_version_info, "numpy": np.__version__},
        }
        return write_raw_manifest(out_dir, self.name, data_cfg, counts, files, extra)

    def items(self, raw_dir: Path, split: str) -> list[Item]:
        """Read ``splits/<split>.csv``; a missing or malformed file raises :class:`DataError` naming it."""
        return [
            Item(
                clip_id=row["clip_id"],
                label=row["label"],
                paths={
                    "audio": Path(raw_dir) / AUDIO_DIR / f"{row['clip_id']}.wav",
                    "video": Path(raw_dir) / VIDEO_DIR / f"{row['clip_id']}.mp4",
                },
            )
            for row in read_split_rows(raw_dir, split)
        ]
