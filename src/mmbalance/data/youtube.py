"""Shared preparation of the YouTube-clip datasets (Kinetics-Sounds, VGGSound): datasets.md §3.2-3.3, §4.

Both datasets are lists of 10-s YouTube segments ("clips") that the user obtains themselves: no
package of the media exists (Kinetics-Sounds: GeWu-Lab/OGM-GE_CVPR2022#14 "use youtube-dl";
VGGSound: the VGG-hosted copy is gone, hche11/VGGSound#12). :func:`prepare_clips` turns the split
lists and a folder of clips into the raw folder of the dataset contract
(:mod:`mmbalance.data.datasets.base`)::

    Video/<clip_id>.<ext>      the clip: a link to the user's file (``link``: symlink, hardlink or copy)
    AudioWAV/<clip_id>.wav     its first audio track, mono PCM_16 at ``audio_rate`` (PyAV/libswresample)
    splits/<split>.csv         clip_id,label,youtube_id,start,audio,video (the clips found, list order)
    missing/<split>.tsv        clip_id, youtube_id, reason (every listed clip that is not in splits/)
    short.tsv                  split, clip_id, audio_seconds, video_seconds (clips shorter than short_seconds)
    classes.txt                one class name per line
    manifest.json              written last: settings, counts, listed/missing/unreadable/short, sha256

**Sources** (``source``). ``folder``: the clips are already in ``clips_dir`` (searched recursively;
``.mp4``, ``.mkv`` or ``.webm``). ``yt-dlp``: each listed clip not yet in ``clips_dir`` is fetched
with ``yt-dlp --download-sections "*start-end"`` (needs ffmpeg), one request at a time with
``request_sleep`` seconds between requests, into ``clips_dir/<clip_id>.mp4`` (written under
``clips_dir/.incoming/`` and renamed when complete and decodable). A re-run skips clips present;
videos YouTube reports as gone are recorded in ``clips_dir/unavailable.tsv`` and not asked for again
(``retry_unavailable`` asks again); other failures (network, rate limits) are retried on the next run,
and ``max_consecutive_failures`` failures in a row stop the run (YouTube throttling an address).

**Names accepted in the folder**: the list's clip id (each dataset module adds its own
alternatives, e.g. VGGSound's unpadded start); and, when a YouTube id occurs once in the whole list,
any single file named ``<youtube id>.<ext>`` or ``<youtube id>_<anything>.<ext>`` (CVDF's
``<id>_<start:06d>_<end:06d>``, a plain ``<id>``). Files must be the 10-s segments, not whole videos.

**Missing clips are counted, never dropped silently**: deleted YouTube videos are a large, real
effect (VGGSound ~20 % by 2021, hche11/VGGSound#12; Kinetics cvdfoundation/kinetics-dataset#28).
Per split the counts of listed, found, missing and unreadable clips are logged and stored in the raw
manifest, the ids with a reason in ``missing/<split>.tsv``. A split whose missing share exceeds
``max_missing_fraction`` stops the run (default 1.0: never). A clip that is present but cannot be
decoded (no audio or video stream, a broken file) stops the run naming it (``on_unreadable:
error``), or is counted with the missing ones (``count``).

**Short clips are counted too**: a clip whose audio or video track lasts less than ``short_seconds``
(9.5 s: the documented clips last 10 s, a downloaded section a few milliseconds less) is tiled to
the front-end's length at extraction, which a 2-s clip or a 0.01-s audio track makes a different
input. Per split the count is stored in the raw manifest (``short``), the clips with both
durations in ``short.tsv``, and a warning gives the counts; ``on_short: error`` stops the run
instead.

**Audio.** :mod:`mmbalance.data.audio` reads WAV files (soundfile), and the reference pipelines
extract a WAV per clip first (VGGSound ``preprocess_audio.py``, OGM-GE ``mp4_to_wav.py``: ffmpeg
``-ac 1 -ar 16000``), so ``prepare`` writes one: the clip's first audio stream decoded by PyAV,
down-mixed and resampled once by libswresample (the library behind ffmpeg's ``-ac 1 -ar``) to
``audio_rate`` Hz (0 = the clip's own rate; needed for a front-end above 16 kHz such as
``amss_ks``'s 35.4 kHz), 16-bit. A WAV newer than its clip is kept on a re-run.

**Validation split.** Neither dataset ships one; ``val_fraction`` of each class of the training
list goes to ``val`` by :func:`carve_validation` (seeded, stratified, decided on the list before
any clip is looked for, so it does not depend on which clips a user could download).
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import re
import shutil
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import av
import numpy as np
import soundfile as sf
from tqdm import tqdm

from mmbalance import __version__
from mmbalance.data.datasets.base import (
    MANIFEST,
    SPLIT_DIR,
    SPLITS,
    Item,
    parallel_map,
    read_split_rows,
    sha256_file,
    write_raw_manifest,
)
from mmbalance.data.download import file_digest, place
from mmbalance.data.video import open_container
from mmbalance.errors import ConfigError, DataError
from mmbalance.io import atomic_open, atomic_path, write_csv

log = logging.getLogger("mmbalance.data")

VIDEO_DIR = "Video"
AUDIO_DIR = "AudioWAV"
MISSING_DIR = "missing"
SHORT = "short.tsv"
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm")
YTID_LENGTH = 11
INCOMING = ".incoming"
UNAVAILABLE = "unavailable.tsv"
SPLIT_FIELDS = ("clip_id", "label", "youtube_id", "start", "audio", "video")
MISSING_REASON = "deleted or private YouTube videos, or clips not obtained or not decodable"
"""Why a listed clip is missing, as the tables' footnotes say it (``Dataset.missing_reason``)."""
YTDLP_TIMEOUT_S = 600
# yt-dlp/YouTube messages of a video that is gone for good (recorded, not asked for again).
GONE = re.compile(
    r"Video unavailable|Private video|has been removed|account associated with this video has been "
    r"terminated|This video is not available|video has been removed|members-only|copyright claim",
    re.IGNORECASE,
)


@dataclass
class ClipsConfig:
    """Settings shared by the YouTube-clip datasets (``data.<dataset>``); see the module docstring."""

    source: str = field(default="folder", metadata={"choices": ("folder", "yt-dlp")})
    clips_dir: str = ""
    link: str = field(default="symlink", metadata={"choices": ("symlink", "hardlink", "copy")})
    audio_rate: int = 16000
    val_fraction: float = 0.1
    val_seed: int = 0
    max_missing_fraction: float = 1.0
    on_unreadable: str = field(default="error", metadata={"choices": ("error", "count")})
    short_seconds: float = 9.5
    on_short: str = field(default="warn", metadata={"choices": ("warn", "error")})
    ytdlp: str = "yt-dlp"
    ffmpeg: str = "ffmpeg"
    ytdlp_format: str = "bv*[height<=360][ext=mp4]+ba[ext=m4a]/b[height<=360]/bv*+ba/b"
    ytdlp_args: list = field(default_factory=list)
    request_sleep: float = 2.0
    max_consecutive_failures: int = 20
    retry_unavailable: bool = False


@dataclass(frozen=True)
class Clip:
    """One listed clip: its id in the split list, YouTube id, segment (seconds; None = not known
    from the list), label and the file names (stems) accepted for it besides the YouTube-id rule."""

    clip_id: str
    youtube_id: str
    start: float | None
    end: float | None
    label: int
    names: tuple[str, ...] = ()


# --- pinned small files ---------------------------------------------------------------------------


def verify_file(path: Path, algorithm: str, expected: str) -> None:
    """Raise :class:`DataError` naming ``path`` when it is missing or its digest is not ``expected``."""
    if not Path(path).is_file():
        raise DataError(f"{path}: file not found")
    actual = file_digest(path, algorithm)
    if actual != expected:
        raise DataError(f"{path}: {algorithm} {actual} does not match the pinned {expected}")


# --- splits -----------------------------------------------------------------------------------------


def carve_validation(clips: Sequence[Clip], fraction: float, seed: int) -> tuple[list[Clip], list[Clip]]:
    """Split a training list into (train, val): per class, the ``floor(fraction · n + 0.5)`` clips with the
    smallest ``sha256(f"{seed}:{clip_id}")`` go to val. Both keep the list order."""
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"val_fraction: {fraction} is not in [0, 1)")
    by_class: dict[int, list[str]] = defaultdict(list)
    for clip in clips:
        by_class[clip.label].append(clip.clip_id)
    chosen: set[str] = set()
    for ids in by_class.values():
        ranked = sorted(ids, key=lambda cid: hashlib.sha256(f"{seed}:{cid}".encode()).hexdigest())
        chosen.update(ranked[: int(fraction * len(ids) + 0.5)])
    return [c for c in clips if c.clip_id not in chosen], [c for c in clips if c.clip_id in chosen]


def read_split(raw_dir: Path, split: str) -> list[Item]:
    """The :class:`Item` list of ``splits/<split>.csv``; a missing or malformed file raises
    :class:`DataError` naming it."""
    return [
        Item(
            clip_id=row["clip_id"],
            label=row["label"],
            paths={"audio": Path(raw_dir) / row["audio"], "video": Path(raw_dir) / row["video"]},
        )
        for row in read_split_rows(raw_dir, split, ("clip_id", "label", "audio", "video"))
    ]


# --- locating clips -----------------------------------------------------------------------------------


def index_folder(root: Path) -> tuple[dict[str, Path], dict[str, list[Path]]]:
    """Video files under ``root`` (recursive, hidden folders skipped, sorted): by stem, and by the
    YouTube id their name starts with (11 characters followed by ``_`` or the end)."""
    by_stem: dict[str, Path] = {}
    by_ytid: dict[str, list[Path]] = defaultdict(list)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.suffix.lower() not in VIDEO_SUFFIXES or name.startswith("."):
                continue
            by_stem.setdefault(path.stem, path)
            if len(path.stem) == YTID_LENGTH or path.stem[YTID_LENGTH : YTID_LENGTH + 1] == "_":
                by_ytid[path.stem[:YTID_LENGTH]].append(path)
    return by_stem, by_ytid


def locate(
    clip: Clip, by_stem: Mapping[str, Path], by_ytid: Mapping[str, list[Path]], unique_ytid: bool
) -> tuple[Path | None, str]:
    """The file of ``clip`` (module docstring, "Names accepted"), or None and the reason."""
    for stem in (clip.clip_id, *clip.names):
        if stem in by_stem:
            return by_stem[stem], ""
    candidates = by_ytid.get(clip.youtube_id, [])
    if unique_ytid and len(candidates) == 1:
        return candidates[0], ""
    if candidates:
        names = ", ".join(p.name for p in candidates[:3])
        return (
            None,
            f"no file named {clip.clip_id}.* and {len(candidates)} file(s) of its YouTube id ({names})",
        )
    return None, "not found in clips_dir"


# --- yt-dlp -----------------------------------------------------------------------------------------------


def _tool(name: str, hint: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise DataError(f"{name}: not found (needed by source: yt-dlp); {hint}")
    return found


def read_unavailable(clips_dir: Path) -> dict[str, str]:
    """Clip id → reason of the videos YouTube reported as gone (``clips_dir/unavailable.tsv``)."""
    path = clips_dir / UNAVAILABLE
    if not path.is_file():
        return {}
    with open(path, newline="") as handle:
        return {row[0]: row[1] for row in csv.reader(handle, delimiter="\t") if len(row) >= 2}


def _ytdlp_command(cfg: Mapping[str, Any], tools: tuple[str, str], clip: Clip, incoming: Path) -> list[str]:
    ytdlp, ffmpeg = tools
    return [
        ytdlp,
        "--quiet",
        "--no-warnings",
        "--no-progress",
        "--no-playlist",
        "--ffmpeg-location",
        ffmpeg,
        "-f",
        cfg["ytdlp_format"],
        "--merge-output-format",
        "mp4",
        "--download-sections",
        f"*{clip.start:g}-{clip.end:g}",
        "--force-keyframes-at-cuts",
        "-o",
        str(incoming / f"{clip.clip_id}.%(ext)s"),
        *[str(arg) for arg in cfg["ytdlp_args"]],
        f"https://www.youtube.com/watch?v={clip.youtube_id}",
    ]


def _download_one(cfg: Mapping[str, Any], tools: tuple[str, str], clip: Clip, clips_dir: Path) -> str:
    """Fetch one clip into ``clips_dir/<clip_id>.mp4``; return "" on success, else the error text."""
    incoming = clips_dir / INCOMING
    incoming.mkdir(exist_ok=True)
    for stale in incoming.glob(f"{clip.clip_id}.*"):
        stale.unlink()
    try:
        done = subprocess.run(
            _ytdlp_command(cfg, tools, clip, incoming),
            capture_output=True,
            text=True,
            timeout=YTDLP_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"yt-dlp timed out after {YTDLP_TIMEOUT_S} s"
    outputs = [p for p in incoming.glob(f"{clip.clip_id}.*") if p.suffix.lower() in VIDEO_SUFFIXES]
    if done.returncode != 0 or len(outputs) != 1:
        message = (
            done.stderr.strip() or done.stdout.strip() or f"exit status {done.returncode}"
        ).splitlines()
        return message[-1] if message else f"exit status {done.returncode}"
    problem = probe(outputs[0])
    if problem:
        outputs[0].unlink()
        return problem
    os.replace(outputs[0], clips_dir / f"{clip.clip_id}{outputs[0].suffix.lower()}")
    return ""


def download_clips(
    clips: Sequence[Clip], cfg: Mapping[str, Any], clips_dir: Path, progress: bool
) -> dict[str, str]:
    """Fetch the clips not yet in ``clips_dir`` with yt-dlp (module docstring); return clip id → the
    reason it could not be fetched in this run (gone, or a failure to retry)."""
    by_stem, by_ytid = index_folder(clips_dir)
    counts = Counter(c.youtube_id for c in clips)
    todo = [c for c in clips if locate(c, by_stem, by_ytid, counts[c.youtube_id] == 1)[0] is None]
    unknown = [c.clip_id for c in todo if c.start is None or c.end is None]
    if unknown:
        raise DataError(
            f"{len(unknown)} clip(s) to download have no segment times in their list (e.g. {unknown[0]}); "
            "see the dataset's documentation (docs/datasets.md) for the file that gives them"
        )
    gone = read_unavailable(clips_dir) if not cfg["retry_unavailable"] else {}
    todo = [c for c in todo if c.clip_id not in gone]
    failed: dict[str, str] = {c: f"unavailable on YouTube: {r}" for c, r in gone.items()}
    if not todo:
        return failed
    tools = (
        _tool(cfg["ytdlp"], "install it with `pip install yt-dlp` or set ytdlp to its path"),
        _tool(cfg["ffmpeg"], "install it (`apt-get install ffmpeg`) or set ffmpeg to its path"),
    )
    log.info("yt-dlp: %d clip(s) to fetch into %s", len(todo), clips_dir)
    streak = 0
    with tqdm(todo, desc="yt-dlp", unit="clip", disable=not progress, leave=False) as bar:
        for number, clip in enumerate(bar):
            if number:
                time.sleep(float(cfg["request_sleep"]))
            error = _download_one(cfg, tools, clip, clips_dir)
            if not error:
                streak = 0
            elif GONE.search(error):
                streak = 0
                failed[clip.clip_id] = f"unavailable on YouTube: {error}"
                with open(clips_dir / UNAVAILABLE, "a", newline="") as handle:
                    csv.writer(handle, delimiter="\t").writerow([clip.clip_id, error])
            else:
                streak += 1
                failed[clip.clip_id] = f"download failed (retried on the next run): {error}"
                if streak >= int(cfg["max_consecutive_failures"]):
                    raise DataError(
                        f"yt-dlp failed {streak} times in a row (last, {clip.clip_id}: {error}). YouTube may "
                        "be throttling this address (HTTP 429, 'confirm you're not a bot'): wait, raise "
                        "request_sleep or pass cookies through ytdlp_args, and run again; clips already "
                        f"in {clips_dir} are kept"
                    )
    return failed


# --- materialising the raw folder -------------------------------------------------------------------


def probe(path: Path) -> str:
    """ "" when ``path`` opens with a video and an audio stream, else what is wrong (naming it)."""
    try:
        with open_container(path) as container:
            if not container.streams.video:
                return f"{path}: no video stream"
            if not container.streams.audio:
                return f"{path}: no audio stream"
    except DataError as exc:
        return str(exc)
    return ""


def write_wav(src: Path, dest: Path, rate: int) -> None:
    """Decode the first audio stream of ``src`` to mono PCM_16 at ``rate`` Hz (0: the stream's rate)
    into ``dest`` (atomically); :class:`DataError` naming ``src`` if it cannot be opened, has no such
    stream or the stream cannot be decoded."""
    chunks = []
    container = open_container(src)
    try:
        with container:
            if not container.streams.video:
                raise DataError(f"{src}: no video stream")
            if not container.streams.audio:
                raise DataError(f"{src}: no audio stream")
            stream = container.streams.audio[0]
            rate = rate or stream.codec_context.sample_rate
            resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
            for frame in container.decode(stream):
                chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
            chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    except (av.FFmpegError, OSError) as exc:
        raise DataError(f"{src}: cannot decode audio ({exc})") from exc
    samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
    if samples.size == 0:
        raise DataError(f"{src}: the audio stream holds no samples")
    with atomic_path(dest) as tmp:
        sf.write(tmp, samples, rate, subtype="PCM_16", format="WAV")


def video_seconds(path: Path) -> float:
    """How long the first video stream of ``path`` lasts, from the container's index (no decoding):
    the stream's duration, else the container's, else the end of its last packet."""
    with open_container(path) as container:
        stream = container.streams.video[0]
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        if container.duration is not None:
            return container.duration / av.time_base
        ends = [
            (packet.pts + (packet.duration or 0)) * packet.time_base
            for packet in container.demux(stream)
            if packet.pts is not None
        ]
        return float(max(ends, default=0))


def _materialise(out_dir: str, mode: str, rate: int, task: tuple[str, str]) -> dict[str, Any]:
    """Worker: link the clip, write its WAV, hash both, measure both tracks; ``{"error": ...}`` if it
    cannot be opened or decoded."""
    clip_id, source = task
    src, root = Path(source), Path(out_dir)
    video_rel = f"{VIDEO_DIR}/{clip_id}{src.suffix.lower()}"
    wav_rel = f"{AUDIO_DIR}/{clip_id}.wav"
    wav = root / wav_rel
    try:
        if not (wav.is_file() and wav.stat().st_mtime >= src.stat().st_mtime):
            write_wav(src, wav, rate)
        seconds = {"audio": sf.info(wav).duration, "video": video_seconds(src)}
    except DataError as exc:
        return {"clip_id": clip_id, "error": str(exc)}
    place(src, root / video_rel, mode=mode)
    return {
        "clip_id": clip_id,
        "audio": wav_rel,
        "video": video_rel,
        "seconds": seconds,
        "files": {rel: sha256_file(root / rel) for rel in (wav_rel, video_rel)},
    }


def _check_missing(split: str, listed: int, missing: int, limit: float, where: Path) -> None:
    if listed and missing / listed > limit:
        raise DataError(
            f"split '{split}': {missing} of {listed} clips missing ({missing / listed:.1%}), above "
            f"max_missing_fraction {limit:g}; the ids and reasons are in {where}"
        )


def _report_short(
    dataset: str,
    cfg: Mapping[str, Any],
    short: Mapping[str, list[list[Any]]],
    counts: Mapping[str, int],
    out_dir: Path,
) -> None:
    """Write ``short.tsv`` and warn with the count of short clips per split, or stop (``on_short: error``)."""
    with atomic_open(out_dir / SHORT, newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["split", "clip_id", "audio_seconds", "video_seconds"])
        writer.writerows([split, *row] for split in SPLITS for row in short[split])
    total = sum(len(rows) for rows in short.values())
    if not total:
        return
    per_split = ", ".join(f"{split} {len(short[split])} of {counts[split]}" for split in SPLITS)
    message = (
        f"{dataset}: {total} clip(s) with audio or video shorter than short_seconds "
        f"{float(cfg['short_seconds']):g} s ({per_split}), tiled to the clip length at extraction; "
        f"the clips and durations are in {out_dir / SHORT}"
    )
    if cfg["on_short"] == "error":
        raise DataError(f"{message}. Replace them, or set data.{dataset}.on_short: warn to keep them")
    log.warning("%s", message)


def _remove_stale(folder: Path, keep: set[str]) -> None:
    for path in folder.iterdir():
        if path.name not in keep and (path.is_file() or path.is_symlink()):
            path.unlink()


def begin(out_dir: Path) -> Path:
    """Create ``out_dir`` and remove its manifest: the folder counts as incomplete until the end."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST).unlink(missing_ok=True)
    return out_dir


def prepare_clips(
    dataset: str,
    cfg: Mapping[str, Any],
    lists: Mapping[str, Sequence[Clip]],
    class_names: Sequence[str],
    out_dir: Path,
    workers: int,
    progress: bool,
    extra: Mapping[str, Any],
) -> Path:
    """Build the raw folder from the split ``lists`` (module docstring) and write the manifest last.

    ``cfg`` is the dataset's complete :class:`ClipsConfig` (defaults merged); ``extra`` goes into the
    manifest (e.g. which list files were used and their checksums). Files the dataset module already
    wrote into ``out_dir`` (pinned lists) are hashed into the manifest too.
    """
    if not cfg["clips_dir"]:
        raise ConfigError(
            f"data.{dataset}.clips_dir: not set; set it to the folder holding (or, with source: yt-dlp, "
            "receiving) the clips (docs/datasets.md)"
        )
    clips_dir = Path(cfg["clips_dir"]).expanduser()
    if cfg["source"] == "folder" and not clips_dir.is_dir():
        raise DataError(f"{clips_dir}: clips folder not found (data.{dataset}.clips_dir)")
    clips_dir.mkdir(parents=True, exist_ok=True)
    all_clips = [clip for split in SPLITS for clip in lists[split]]
    failed = download_clips(all_clips, cfg, clips_dir, progress) if cfg["source"] == "yt-dlp" else {}

    by_stem, by_ytid = index_folder(clips_dir)
    per_ytid = Counter(c.youtube_id for c in all_clips)
    found: dict[str, Path] = {}
    missing: dict[str, dict[str, str]] = {split: {} for split in SPLITS}
    for split in SPLITS:
        for clip in lists[split]:
            path, reason = locate(clip, by_stem, by_ytid, per_ytid[clip.youtube_id] == 1)
            if path is None:
                missing[split][clip.clip_id] = failed.get(clip.clip_id, reason)
            else:
                found[clip.clip_id] = path
    limit = float(cfg["max_missing_fraction"])
    for split in SPLITS:
        _check_missing(split, len(lists[split]), len(missing[split]), limit, clips_dir)

    for sub in (VIDEO_DIR, AUDIO_DIR, SPLIT_DIR, MISSING_DIR):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    tasks = [(clip.clip_id, str(found[clip.clip_id])) for clip in all_clips if clip.clip_id in found]
    work = partial(_materialise, str(out_dir), cfg["link"], int(cfg["audio_rate"]))
    results = {r["clip_id"]: r for r in parallel_map(work, tasks, workers, progress, desc=dataset)}
    unreadable = {cid: r["error"] for cid, r in results.items() if "error" in r}
    if unreadable and cfg["on_unreadable"] == "error":
        first = next(iter(unreadable.values()))
        raise DataError(
            f"{len(unreadable)} clip(s) cannot be opened or decoded, first: {first}. Delete or replace them "
            f"(with source: yt-dlp a deleted clip is fetched again), or set data.{dataset}.on_unreadable: "
            "count to report them as missing"
        )
    _remove_stale(out_dir / VIDEO_DIR, {Path(r["video"]).name for r in results.values() if "video" in r})
    _remove_stale(out_dir / AUDIO_DIR, {Path(r["audio"]).name for r in results.values() if "audio" in r})

    files: dict[str, str] = {}
    counts: dict[str, int] = {}
    report: dict[str, dict[str, int]] = {"listed": {}, "missing": {}, "unreadable": {}, "short": {}}
    short: dict[str, list[list[Any]]] = {}
    for split in SPLITS:
        rows, gone, short[split] = [], dict(missing[split]), []
        for clip in lists[split]:
            result = results.get(clip.clip_id)
            if result is None:
                continue
            if "error" in result:
                gone[clip.clip_id] = f"unreadable: {result['error']}"
                continue
            files.update(result["files"])
            seconds = result["seconds"]
            if min(seconds.values()) < float(cfg["short_seconds"]):
                short[split].append([clip.clip_id, f"{seconds['audio']:.3f}", f"{seconds['video']:.3f}"])
            start = "" if clip.start is None else f"{clip.start:g}"
            rows.append(
                {
                    "clip_id": clip.clip_id,
                    "label": clip.label,
                    "youtube_id": clip.youtube_id,
                    "start": start,
                    "audio": result["audio"],
                    "video": result["video"],
                }
            )
        _check_missing(split, len(lists[split]), len(gone), limit, out_dir / MISSING_DIR / f"{split}.tsv")
        write_csv(out_dir / SPLIT_DIR / f"{split}.csv", rows, SPLIT_FIELDS)
        ytid = {c.clip_id: c.youtube_id for c in lists[split]}
        with atomic_open(out_dir / MISSING_DIR / f"{split}.tsv", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
            writer.writerow(["clip_id", "youtube_id", "reason"])
            writer.writerows([cid, ytid[cid], reason] for cid, reason in gone.items())
        counts[split] = len(rows)
        report["listed"][split] = len(lists[split])
        report["missing"][split] = len(gone)
        report["unreadable"][split] = sum(reason.startswith("unreadable: ") for reason in gone.values())
        report["short"][split] = len(short[split])
        log_at = log.warning if gone else log.info
        log_at(
            "%s %s: %d listed, %d found, %d missing (ids and reasons in %s)",
            dataset,
            split,
            len(lists[split]),
            len(rows),
            len(gone),
            out_dir / MISSING_DIR / f"{split}.tsv",
        )
    _report_short(dataset, cfg, short, counts, out_dir)
    with atomic_open(out_dir / "classes.txt") as handle:
        handle.write("".join(f"{name}\n" for name in class_names))
    for path in sorted(out_dir.rglob("*")):
        rel = path.relative_to(out_dir).as_posix()
        if (
            path.is_file()
            and rel not in files
            and rel != MANIFEST
            and not rel.startswith((VIDEO_DIR, AUDIO_DIR))
        ):
            files[rel] = sha256_file(path)
    manifest_cfg = {**cfg, "class_names": list(class_names)}
    manifest_extra = {
        **report,
        **extra,
        "clips_dir": str(clips_dir.resolve()),
        "software": {"mmbalance": __version__, "av": av.__version__, "ffmpeg": av.ffmpeg_version_info},
    }
    return write_raw_manifest(out_dir, dataset, manifest_cfg, counts, files, manifest_extra)
