"""VGGSound: the pinned csv fetched from a file:// stand-in, the naming rules, yt-dlp, missing clips,
extraction to the papers' shapes and one training step (fixtures in the real layout and formats)."""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from mmbalance.config import typed_options
from mmbalance.data.datasets import vggsound
from mmbalance.data.datasets._base import sha256_file
from mmbalance.data.download import fetch_pinned as fetch
from mmbalance.data.download import file_digest
from mmbalance.data.extract import extract
from mmbalance.data.store import open_store
from mmbalance.engine.batches import SplitBatches
from mmbalance.engine.optim import build_optimizer
from mmbalance.engine.types import Context, ModelSpec
from mmbalance.errors import DataError
from mmbalance.registry import DATASETS, METHODS
from tests.clip_fixtures import fake_tools, write_clip

# Real rows' shape: youtube id, start seconds, label (quoted when it holds a comma), split; no header.
ROWS = [
    ("---g-f_I2yQ", 1, "people marching", "test"),
    ("--0PQM4-hqg", 30, "waterfall burbling", "train"),
    ("--56QUhyDQM", 185, "playing tennis", "train"),
    ("--5OkAjCI7g", 40, "vehicle horn, car horn, honking", "train"),
    ("--8puiAGLhs", 30, "car engine starting", "train"),
    ("-0BKyt8iZ1I", 30, "people marching", "test"),
    ("-0BKyt8iZ1I", 60, "people marching", "train"),  # a second clip of the same video
    ("-0jeONf82dE", 21, "waterfall burbling", "test"),
    ("-0jeONf82dE", 21, "waterfall burbling", "test"),  # a duplicate row
    ("-1pRmoJIGQc", 0, "playing tennis", "train"),
    ("-2xiZDEuHd8", 10, "car engine starting", "train"),
    ("-3Kv4fdm7Uk", 7, "vehicle horn, car horn, honking", "test"),
]
FEATURES = {"audio": {"frontend": "pmr", "seconds": 10.0}, "video": {"frames": 3, "rate": 1.0, "size": 224}}


def write_csv_fixture(path: Path, rows=ROWS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path


def config(tmp: Path, **changes) -> dict:
    source = write_csv_fixture(tmp / "upstream" / "vggsound.csv")
    cfg = {
        "clips_dir": str(tmp / "clips"),
        "csv_url": source.as_uri(),
        "csv_git_blob": file_digest(source, "git-blob"),
        "val_fraction": 0.25,
    }
    cfg.update(changes)
    return cfg


@pytest.fixture(scope="module")
def fixture_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clip") / "clip.mp4")


def test_parse_csv_real_format(tmp_path: Path) -> None:
    clips, names, duplicates = vggsound.parse_csv(write_csv_fixture(tmp_path / "upstream" / "vggsound.csv"))
    assert names == sorted({r[2] for r in ROWS}) and "vehicle horn, car horn, honking" in names
    assert duplicates == 1
    assert [c.clip_id for c in clips["test"]] == [
        "---g-f_I2yQ_000001",
        "-0BKyt8iZ1I_000030",
        "-0jeONf82dE_000021",
        "-3Kv4fdm7Uk_000007",
    ]
    first = clips["train"][0]
    assert (first.youtube_id, first.start, first.end) == ("--0PQM4-hqg", 30.0, 40.0)
    assert first.label == names.index("waterfall burbling")
    assert first.names == ("--0PQM4-hqg_30", "--0PQM4-hqg_000030_000040")


def test_fetch_verifies_resumes_and_names_a_bad_checksum(tmp_path: Path) -> None:
    source = write_csv_fixture(tmp_path / "vggsound_upstream.csv")
    blob = file_digest(source, "git-blob")
    assert blob == vggsound.CSV_GIT_BLOB or len(blob) == 40
    dest = tmp_path / "raw" / "vggsound.csv"
    dest.parent.mkdir()
    dest.with_name("vggsound.csv.part").write_bytes(source.read_bytes()[:17])  # an interrupted download
    fetch(source.as_uri(), dest, "git-blob", blob, progress=False)
    assert dest.read_bytes() == source.read_bytes() and not dest.with_name("vggsound.csv.part").exists()
    os.utime(dest, (1, 1))
    fetch("file:///nonexistent/never-read.csv", dest, "git-blob", blob, progress=False)  # present: kept
    assert dest.stat().st_mtime == 1
    dest.unlink()
    with pytest.raises(DataError, match=r"vggsound\.csv: git-blob .* does not match the pinned 53da0dc"):
        fetch(source.as_uri(), dest, "git-blob", vggsound.CSV_GIT_BLOB, progress=False)
    assert not dest.exists() and not dest.with_name("vggsound.csv.part").exists()


def test_folder_naming_rules_missing_counts_and_manifest(tmp_path: Path, fixture_clip: Path) -> None:
    clips = tmp_path / "clips"
    names = [
        "---g-f_I2yQ_000001.mp4",  # official name
        "test/-0jeONf82dE_21.mp4",  # unpadded start, in a subfolder
        "--0PQM4-hqg_000030_000040.mp4",  # start and end
        "--56QUhyDQM.mp4",  # plain YouTube id (one row)
        "-0BKyt8iZ1I.mp4",  # plain id of a video with two rows: ambiguous, not used
        "-1pRmoJIGQc_000000.mp4",
        "-2xiZDEuHd8_000010.mp4",
        "-3Kv4fdm7Uk_000007.mp4",
    ]
    for name in names:
        (clips / name).parent.mkdir(parents=True, exist_ok=True)
        os.link(fixture_clip, clips / name)
    raw = tmp_path / "raw"
    manifest_path = DATASETS.get("vggsound")().prepare(config(tmp_path), raw, workers=1, progress=False)
    manifest = json.loads(manifest_path.read_text())
    assert manifest["listed"] == {"train": 5, "val": 2, "test": 4}
    assert sum(manifest["counts"].values()) == 7 and manifest["duplicate_rows"] == 1
    assert manifest["missing"] == {
        s: manifest["listed"][s] - manifest["counts"][s] for s in manifest["listed"]
    }
    assert manifest["config"]["class_names"] == sorted({r[2] for r in ROWS})
    missing = {}
    for split in ("train", "val", "test"):
        with open(raw / "missing" / f"{split}.tsv", newline="") as handle:
            missing.update({row["clip_id"]: row["reason"] for row in csv.DictReader(handle, delimiter="\t")})
    assert set(missing) == {
        "-0BKyt8iZ1I_000030",
        "-0BKyt8iZ1I_000060",
        "--5OkAjCI7g_000040",
        "--8puiAGLhs_000030",
    }
    assert "1 file(s) of its YouTube id (-0BKyt8iZ1I.mp4)" in missing["-0BKyt8iZ1I_000030"]
    assert missing["--8puiAGLhs_000030"] == "not found in clips_dir"
    items = {s: DATASETS.get("vggsound")().items(raw, s) for s in ("train", "val", "test")}
    assert sum(map(len, items.values())) == 7
    item = items["test"][0]
    assert item.clip_id == "---g-f_I2yQ_000001" and item.paths["video"].is_symlink()
    info = sf.info(item.paths["audio"])
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    on_disk = {p.relative_to(raw).as_posix() for p in raw.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(manifest["files"]) == on_disk
    assert all(sha256_file(raw / rel) == digest for rel, digest in manifest["files"].items())


def test_short_clips_are_counted_per_split_and_warned_or_stopped(tmp_path: Path, caplog) -> None:
    clips = tmp_path / "clips"
    lengths = {  # clip id: (video, audio) seconds
        "---g-f_I2yQ_000001": (10.0, 10.0),
        "-1pRmoJIGQc_000000": (2.0, 2.0),
        "-2xiZDEuHd8_000010": (10.0, 0.01),
        "-3Kv4fdm7Uk_000007": (10.0, 10.0),
    }
    for seed, (clip_id, (video, audio)) in enumerate(lengths.items()):
        write_clip(clips / f"{clip_id}.mp4", seconds=video, fps=2, size=16, seed=seed, audio_seconds=audio)
    raw = tmp_path / "raw"
    plugin = DATASETS.get("vggsound")()
    with caplog.at_level(logging.WARNING, logger="mmbalance.data"):
        manifest = json.loads(plugin.prepare(config(tmp_path), raw, workers=1, progress=False).read_text())
    with open(raw / "short.tsv", newline="") as handle:
        short = list(csv.DictReader(handle, delimiter="\t"))
    assert {row["clip_id"] for row in short} == {"-1pRmoJIGQc_000000", "-2xiZDEuHd8_000010"}
    by_id = {row["clip_id"]: row for row in short}
    assert float(by_id["-1pRmoJIGQc_000000"]["video_seconds"]) == pytest.approx(2.0, abs=0.1)
    assert float(by_id["-2xiZDEuHd8_000010"]["audio_seconds"]) < 0.2
    assert float(by_id["-2xiZDEuHd8_000010"]["video_seconds"]) == pytest.approx(10.0, abs=0.1)
    split_of = {item.clip_id: s for s in ("train", "val", "test") for item in plugin.items(raw, s)}
    assert manifest["short"] == {
        s: sum(split_of[row["clip_id"]] == s == row["split"] for row in short)
        for s in ("train", "val", "test")
    }
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "vggsound: 2 clip(s) with audio or video shorter than short_seconds 9.5 s" in warning
    assert manifest["files"]["short.tsv"] == sha256_file(raw / "short.tsv")

    with pytest.raises(DataError, match=r"2 clip\(s\) .* data\.vggsound\.on_short: warn"):
        plugin.prepare(config(tmp_path, on_short="error"), raw, workers=1, progress=False)
    assert not (raw / "manifest.json").exists()


def test_ytdlp_downloads_records_gone_videos_and_resumes(tmp_path: Path, fixture_clip: Path) -> None:
    tools, calls = fake_tools(tmp_path / "bin", fixture_clip, gone=frozenset({"--8puiAGLhs", "-2xiZDEuHd8"}))
    cfg = config(tmp_path, source="yt-dlp", **tools)
    raw = tmp_path / "raw"
    manifest = json.loads(DATASETS.get("vggsound")().prepare(cfg, raw, 1, False).read_text())
    assert sum(manifest["counts"].values()) == 9 and sum(manifest["missing"].values()) == 2
    assert "--0PQM4-hqg *30-40" in calls.read_text().splitlines()  # the 10-s section
    assert sorted(
        (tmp_path / "clips" / "unavailable.tsv").read_text().split("\n")[i].split("\t")[0] for i in range(2)
    ) == ["--8puiAGLhs_000030", "-2xiZDEuHd8_000010"]
    assert len(list((tmp_path / "clips").glob("*.mp4"))) == 9
    calls.unlink()
    again = json.loads(DATASETS.get("vggsound")().prepare(cfg, raw, 1, False).read_text())
    assert not calls.exists()  # nothing re-requested: clips present, gone videos recorded
    assert again["counts"] == manifest["counts"] and again["files"] == manifest["files"]


def test_ytdlp_stops_when_throttled_and_names_missing_tools(tmp_path: Path, fixture_clip: Path) -> None:
    flaky = frozenset(r[0] for r in ROWS)
    tools, _ = fake_tools(tmp_path / "bin", fixture_clip, flaky=flaky)
    cfg = config(tmp_path, source="yt-dlp", max_consecutive_failures=3, **tools)
    with pytest.raises(DataError, match=r"failed 3 times in a row.*HTTP Error 429"):
        DATASETS.get("vggsound")().prepare(cfg, tmp_path / "raw", 1, False)
    assert not (tmp_path / "raw" / "manifest.json").exists()
    cfg["ytdlp"] = str(tmp_path / "bin" / "no-such-yt-dlp")
    with pytest.raises(DataError, match=r"no-such-yt-dlp: not found.*pip install yt-dlp"):
        DATASETS.get("vggsound")().prepare(cfg, tmp_path / "raw", 1, False)


def test_extraction_shapes_and_one_training_step(tmp_path: Path, fixture_clip: Path) -> None:
    (tmp_path / "clips").mkdir()
    for ytid, start, _, _ in dict.fromkeys(ROWS):
        os.link(fixture_clip, tmp_path / "clips" / f"{ytid}_{start:06d}.mp4")
    raw, store_dir = tmp_path / "raw", tmp_path / "features"
    DATASETS.get("vggsound")().prepare(config(tmp_path), raw, 1, False)
    extract("vggsound", raw, FEATURES, store_dir, workers=1, progress=False)
    store = open_store(store_dir)
    train = store.split("train")
    assert train.arrays["audio"].shape[1:] == (257, 1004) and train.arrays["audio"].dtype == np.float16
    assert train.arrays["video"].shape[1:] == (3, 3, 224, 224) and train.arrays["video"].dtype == np.uint8
    assert store.num_classes == 5 and len(store.split("test")) == 4

    spec = ModelSpec(
        modalities=store.modalities,
        encoders={
            "audio": {"name": "resnet10", "width": 4, "input_size": [32, 32]},
            "video": {"name": "resnet10", "width": 4, "input_size": [32, 32]},
        },
        num_classes=store.num_classes,
    )
    torch.manual_seed(0)
    cls = METHODS.get("concat")
    method = cls(typed_options(cls.Options(), {}, "methods.concat"), spec)
    model = method.build()
    optimizer = build_optimizer(method.param_groups(model), {"name": "sgd", "lr": 0.01, "momentum": 0.9})
    ctx = Context(model, optimizer, 0, 1, 0, torch.device("cpu"), method.modalities, spec.num_classes)
    batch = next(iter(SplitBatches(train.arrays, train.labels, 4, torch.device("cpu")).epoch(0)))
    method.on_epoch_start(ctx)
    logs = method.training_step(batch, ctx)
    assert np.isfinite(logs["loss"])
