"""The embedded SynthAV dataset: real files, determinism, layout and the difficulty knobs."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import av
import librosa
import numpy as np
import pytest
import soundfile as sf
from sklearn.linear_model import LogisticRegression

from mmbalance.data.datasets import synthav
from mmbalance.data.datasets._base import sha256_file
from mmbalance.data.generate import generate
from mmbalance.errors import ConfigError
from mmbalance.registry import DATASETS


def tiny_config(**changes: object) -> dict:
    """A SynthAV config that generates in well under a second (3 classes, 2/1/1 clips per class)."""
    cfg = {
        "seed": 7,
        "classes": 3,
        "duration": 0.5,
        "clips_per_class": {"train": 2, "val": 1, "test": 1},
        "audio": {"sample_rate": 16000, "snr_db": 0.0, "confusion": 0.35},
        "video": {"fps": 4, "size": 32, "noise": 30.0, "confusion": 0.1},
    }
    cfg.update(copy.deepcopy(changes))
    return cfg


def read_rows(raw: Path, split: str) -> list[dict[str, str]]:
    with open(raw / "splits" / f"{split}.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def decoded(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("raw")
    generate("synthav", tiny_config(), out, workers=1, progress=False)
    return out


def test_registered_with_audio_first() -> None:
    plugin = DATASETS.get("synthav")()
    assert list(plugin.modalities.items()) == [("audio", "spectrogram"), ("video", "frames")]
    assert plugin.class_names(tiny_config()) == ["c0", "c1", "c2"]


def test_layout_counts_and_labels(raw: Path) -> None:
    manifest = json.loads((raw / "manifest.json").read_text())
    assert manifest["counts"] == {"train": 6, "val": 3, "test": 3}
    assert manifest["config"] == tiny_config()
    assert (raw / "classes.txt").read_text() == "c0\nc1\nc2\n"
    for split, count in manifest["counts"].items():
        rows = read_rows(raw, split)
        assert len(rows) == count
        assert list(rows[0]) == ["clip_id", "label", "label_name", "audio_cue", "video_cue"]
        for i, row in enumerate(rows):
            assert row["clip_id"] == f"{split}_{i:05d}_c{i % 3}"
            assert int(row["label"]) == i % 3 and row["label_name"] == f"c{i % 3}"
        items = DATASETS.get("synthav")().items(raw, split)
        assert [item.clip_id for item in items] == [row["clip_id"] for row in rows]
        assert all(item.paths["audio"].is_file() and item.paths["video"].is_file() for item in items)
    listed = set(manifest["files"])
    on_disk = {p.relative_to(raw).as_posix() for p in raw.rglob("*") if p.is_file()} - {"manifest.json"}
    assert listed == on_disk
    assert all(sha256_file(raw / rel) == digest for rel, digest in manifest["files"].items())


def test_files_are_real_wav_and_mp4(raw: Path) -> None:
    info = sf.info(raw / "AudioWAV" / "train_00000_c0.wav")
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (16000, 1, "PCM_16", 8000)
    path = raw / "VideoMP4" / "train_00000_c0.mp4"
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert (stream.width, stream.height, stream.format.name) == (32, 32, "yuv420p")
        assert stream.average_rate == 4
    frames = decoded(path)
    assert frames.shape == (2, 32, 32, 3)
    assert frames.std() > 5  # not blank


def test_same_seed_same_data_any_worker_count(raw: Path, tmp_path: Path) -> None:
    generate("synthav", tiny_config(), tmp_path, workers=2, progress=False)
    for wav in (raw / "AudioWAV").iterdir():
        assert (tmp_path / "AudioWAV" / wav.name).read_bytes() == wav.read_bytes()
    for mp4 in (raw / "VideoMP4").iterdir():
        np.testing.assert_array_equal(decoded(tmp_path / "VideoMP4" / mp4.name), decoded(mp4))
    for split in ("train", "val", "test"):
        assert read_rows(tmp_path, split) == read_rows(raw, split)


def test_different_seed_differs(raw: Path, tmp_path: Path) -> None:
    generate("synthav", tiny_config(seed=8), tmp_path, workers=1, progress=False)
    name = "train_00000_c0"
    assert (tmp_path / "AudioWAV" / f"{name}.wav").read_bytes() != (
        raw / "AudioWAV" / f"{name}.wav"
    ).read_bytes()
    assert not np.array_equal(
        decoded(tmp_path / "VideoMP4" / f"{name}.mp4"), decoded(raw / "VideoMP4" / f"{name}.mp4")
    )


def test_regeneration_replaces_old_files(tmp_path: Path) -> None:
    generate(
        "synthav", tiny_config(clips_per_class={"train": 3, "val": 1, "test": 1}), tmp_path, progress=False
    )
    generate("synthav", tiny_config(), tmp_path, progress=False)
    assert len(list((tmp_path / "AudioWAV").iterdir())) == 3 * 4


def confused(tmp_path: Path, audio: float, video: float) -> tuple[np.ndarray, np.ndarray]:
    """Per train clip: whether its audio / video cue differs from the label."""
    cfg = tiny_config(classes=6, duration=0.1, clips_per_class={"train": 20, "val": 1, "test": 1})
    cfg["audio"]["confusion"], cfg["video"]["confusion"] = audio, video
    cfg["video"].update(size=16, fps=2)
    out = tmp_path / f"a{audio}v{video}"
    generate("synthav", cfg, out, workers=1, progress=False)
    rows = read_rows(out, "train")
    return (
        np.array([row["audio_cue"] != row["label"] for row in rows]),
        np.array([row["video_cue"] != row["label"] for row in rows]),
    )


def test_confusion_knobs(tmp_path: Path) -> None:
    a0, v0 = confused(tmp_path, 0.0, 0.0)
    assert not a0.any() and not v0.any()
    a1, v0 = confused(tmp_path, 1.0, 0.0)
    assert a1.all() and not v0.any()  # each modality has its own draw
    a_low, v_low = confused(tmp_path, 0.25, 0.25)
    a_high, v_high = confused(tmp_path, 0.6, 0.6)
    assert 0.1 < a_low.mean() < 0.4 and 0.45 < a_high.mean() < 0.75
    assert not (a_low & ~a_high).any() and not (v_low & ~v_high).any()  # monotone: confused sets only grow
    assert not np.array_equal(a_high, v_high)  # independent draws per modality


def test_rejects_odd_frame_size(tmp_path: Path) -> None:
    cfg = tiny_config()
    cfg["video"]["size"] = 33
    with pytest.raises(ConfigError, match="size"):
        generate("synthav", cfg, tmp_path, progress=False)


def invariant_features(wave: np.ndarray) -> np.ndarray:
    """|2-D FFT| of the log spectrogram: unchanged by shifts in time and (circularly) in frequency."""
    spec = np.log(np.abs(librosa.stft(wave, n_fft=512, hop_length=159, center=False)) + 1e-7)
    return np.abs(np.fft.fft2(spec - spec.mean()))[:24, :24].ravel()


def audio_accuracy(snr_db: float) -> float:
    classes, per_class = 6, 16
    labels = np.arange(classes * per_class) % classes
    feats = np.stack(
        [
            invariant_features(
                synthav.synth_audio(np.random.default_rng([1, i]), int(k), 16000, 16000, snr_db)
            )
            for i, k in enumerate(labels)
        ]
    )
    feats = np.log1p(feats)
    train = np.arange(labels.size) < labels.size * 2 // 3
    model = LogisticRegression(max_iter=2000).fit(feats[train], labels[train])
    return float(model.score(feats[~train], labels[~train]))


def test_audio_cue_is_readable_without_absolute_pitch_and_snr_controls_it() -> None:
    clean, buried = audio_accuracy(10.0), audio_accuracy(-25.0)
    assert clean >= 0.85
    assert buried < clean - 0.3


def test_shapes_are_distinct() -> None:
    grid = (np.arange(64) + 0.5) / 32 - 1.0
    u, v = np.meshgrid(grid * 1.2, grid * 1.2)
    masks = [synthav._shape_mask(name, u, v) for name in synthav.SHAPES]
    for i, a in enumerate(masks):
        assert a.mean() > 0.05
        for b in masks[i + 1 :]:
            assert (a & b).sum() / (a | b).sum() < 0.85  # the closest pair, disc and square, is at 0.82
