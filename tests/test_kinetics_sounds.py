"""Kinetics-Sounds: the shipped OGM-GE lists (md5, counts, validation carve), a clips folder in the
real naming with most clips missing, yt-dlp segments of test ids, the papers' shapes, one training
step; the amss_ks front-end and the frames kind's ``first`` selection; the params blocks."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mmbalance.config import typed_options, validate
from mmbalance.data.datasets import kinetics_sounds as ks
from mmbalance.data.extract import extract
from mmbalance.data.store import open_store
from mmbalance.data.video import read_frames
from mmbalance.data.youtube.clips import carve_validation
from mmbalance.engine.batches import SplitBatches
from mmbalance.engine.optim import build_optimizer
from mmbalance.engine.types import Context, ModelSpec
from mmbalance.errors import DataError
from mmbalance.paths import resolve_run
from mmbalance.registry import DATASETS, FRONTENDS, METHODS
from tests.clip_fixtures import fake_tools, write_clip
from tests.conftest import REPO

FEATURES = {"audio": {"frontend": "pmr", "seconds": 10.0}, "video": {"frames": 3, "rate": 1.0, "size": 224}}


@pytest.fixture(scope="module")
def lists() -> dict[str, list]:
    return {split: ks.parse_list(ks.LISTS_DIR / name) for split, (name, _) in ks.LISTS.items()}


@pytest.fixture(scope="module")
def fixture_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clip") / "clip.mp4")


def test_shipped_lists_md5_counts_and_validation_carve(lists: dict[str, list]) -> None:
    for name, md5 in ks.LISTS.values():
        assert hashlib.md5((ks.LISTS_DIR / name).read_bytes()).hexdigest() == md5
    train, test = lists["train"], lists["test"]
    assert (len(train), len(test)) == (14799, 2597)
    assert {c.label for c in train} == {c.label for c in test} == set(range(31))
    assert {c.youtube_id for c in train}.isdisjoint(c.youtube_id for c in test)
    assert train[0].clip_id == "--4-0ihtnBU_000058_000068" and (train[0].start, train[0].end) == (58.0, 68.0)
    assert test[0].clip_id == "-3Mwkq-7TV4_2" and test[0].start is None
    kept, val = carve_validation(train, 0.1, 0)
    assert len(kept) + len(val) == 14799 and {c.clip_id for c in kept}.isdisjoint(c.clip_id for c in val)
    for label in range(31):
        n = sum(c.label == label for c in train)
        assert sum(c.label == label for c in val) == int(0.1 * n + 0.5)
    assert [c.clip_id for c in carve_validation(train, 0.1, 0)[1]] == [c.clip_id for c in val]
    assert [c.clip_id for c in carve_validation(train, 0.1, 1)[1]] != [c.clip_id for c in val]


def test_folder_prepare_counts_missing_then_paper_shapes_and_a_step(
    tmp_path: Path, lists: dict[str, list], fixture_clip: Path
) -> None:
    kept, val = carve_validation(lists["train"], 0.1, 0)
    clips = tmp_path / "clips"
    chosen = {
        "train": [kept[0].clip_id, kept[1].clip_id],
        "val": [val[0].clip_id],
        "test": [lists["test"][0].clip_id],  # under its own name, <youtube id>_<n>
    }
    for clip_ids in chosen.values():
        for clip_id in clip_ids:
            clips.mkdir(exist_ok=True)
            os.link(fixture_clip, clips / f"{clip_id}.mp4")
    cvdf = clips / "k400" / "test" / f"{lists['test'][1].youtube_id}_000004_000014.mp4"  # CVDF name
    cvdf.parent.mkdir(parents=True)
    os.link(fixture_clip, cvdf)
    chosen["test"].append(lists["test"][1].clip_id)

    raw = tmp_path / "raw"
    cfg = {"clips_dir": str(clips), "label_names": "alphabetical"}
    manifest = json.loads(DATASETS.get("kinetics_sounds")().prepare(cfg, raw, 1, False).read_text())
    assert manifest["counts"] == {"train": 2, "val": 1, "test": 2}
    assert manifest["listed"] == {"train": len(kept), "val": len(val), "test": 2597}
    assert manifest["missing"] == {s: manifest["listed"][s] - manifest["counts"][s] for s in chosen}
    assert manifest["lists"]["train"]["md5"] == ks.LISTS["train"][1] and not manifest["label_names_verified"]
    assert (raw / "classes.txt").read_text().splitlines() == sorted(ks.CLASSES)
    for split, clip_ids in chosen.items():
        items = DATASETS.get("kinetics_sounds")().items(raw, split)
        assert [i.clip_id for i in items] == [
            c.clip_id for c in {"train": kept, "val": val}.get(split, lists["test"]) if c.clip_id in clip_ids
        ]
        with open(raw / "missing" / f"{split}.tsv", newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        assert len(rows) == manifest["missing"][split] and rows[0]["reason"] == "not found in clips_dir"
    assert os.path.realpath(raw / "Video" / f"{lists['test'][1].clip_id}.mp4") == str(cvdf.resolve())

    store_dir = tmp_path / "features"
    extract("kinetics_sounds", raw, FEATURES, store_dir, workers=1, progress=False)
    store = open_store(store_dir)
    train = store.split("train")
    assert train.arrays["audio"].shape == (2, 257, 1004) and train.arrays["video"].shape == (
        2,
        3,
        3,
        224,
        224,
    )
    assert store.class_names == sorted(ks.CLASSES)

    spec = ModelSpec(
        modalities=store.modalities,
        encoders={
            "audio": {"name": "resnet10", "width": 4, "input_size": [32, 32]},
            "video": {"name": "resnet10", "width": 4, "input_size": [32, 32]},
        },
        num_classes=31,
    )
    torch.manual_seed(0)
    cls = METHODS.get("ogm_ge")
    method = cls(typed_options(cls.Options(), {}, "methods.ogm_ge"), spec)
    model = method.build()
    optimizer = build_optimizer(method.param_groups(model), {"name": "sgd", "lr": 0.01, "momentum": 0.9})
    ctx = Context(model, optimizer, 0, 1, 0, torch.device("cpu"), method.modalities, 31)
    method.on_epoch_start(ctx)
    batch = next(iter(SplitBatches(train.arrays, train.labels, 2, torch.device("cpu")).epoch(0)))
    assert np.isfinite(method.training_step(batch, ctx)["loss"])

    wav = raw / "AudioWAV" / f"{chosen['train'][0]}.wav"
    assert FRONTENDS.get("amss_ks")(10.0)(wav).shape == (257, 1003)
    first = read_frames(raw / "Video" / f"{chosen['train'][0]}.mp4", 3, 1.0, 16, select="first")
    uniform = read_frames(raw / "Video" / f"{chosen['train'][0]}.mp4", 3, 4.0, 16)
    assert first.shape == uniform.shape == (3, 3, 16, 16)
    every = read_frames(raw / "Video" / f"{chosen['train'][0]}.mp4", 12, 4.0, 16)
    assert np.array_equal(
        read_frames(raw / "Video" / f"{chosen['train'][0]}.mp4", 3, 4.0, 16, "first"), every[:3]
    )


def test_wrong_list_checksum_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "lists"
    copy.mkdir()
    for name, _ in ks.LISTS.values():
        (copy / name).write_bytes((ks.LISTS_DIR / name).read_bytes())
    with open(copy / "ogm_ge_test.txt", "a") as handle:
        handle.write("-3Mwkq-7TV4_3,10,23\n")
    monkeypatch.setattr(ks, "LISTS_DIR", copy)
    (tmp_path / "clips").mkdir()
    with pytest.raises(DataError, match=r"ogm_ge_test\.txt: md5 .* does not match the pinned 87d8a66d"):
        DATASETS.get("kinetics_sounds")().prepare(
            {"clips_dir": str(tmp_path / "clips")}, tmp_path / "raw", 1, False
        )


def test_missing_share_limit_and_unreadable_clips(tmp_path: Path, lists: dict[str, list]) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    plugin = DATASETS.get("kinetics_sounds")()
    with pytest.raises(
        DataError, match=r"split 'train': \d+ of \d+ clips missing .* max_missing_fraction 0\.5"
    ):
        plugin.prepare({"clips_dir": str(clips), "max_missing_fraction": 0.5}, tmp_path / "raw", 1, False)
    broken = clips / f"{lists['test'][0].clip_id}.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    with pytest.raises(
        DataError, match=f"1 clip\\(s\\) cannot be opened or decoded, first: {broken}: cannot open"
    ):
        plugin.prepare({"clips_dir": str(clips)}, tmp_path / "raw", 1, False)
    manifest = json.loads(
        plugin.prepare(
            {"clips_dir": str(clips), "on_unreadable": "count"}, tmp_path / "raw", 1, False
        ).read_text()
    )
    assert manifest["counts"]["test"] == 0 and manifest["unreadable"]["test"] == 1
    assert manifest["missing"]["test"] == 2597


def test_ytdlp_segments_of_test_ids_come_from_kinetics_csv(
    tmp_path: Path, fixture_clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "lists"
    folder.mkdir()
    (folder / "ogm_ge_train.txt").write_text(
        "--4-0ihtnBU_000058_000068,10,4\n--6q_33gNew_000132_000142,10,4\n-00nar1nEPc_000033_000043,10,13\n"
    )
    (folder / "ogm_ge_test.txt").write_text("-3Mwkq-7TV4_2,10,23\n-74csnCOiUs_0,10,14\n")
    monkeypatch.setattr(ks, "LISTS_DIR", folder)
    monkeypatch.setattr(
        ks,
        "LISTS",
        {
            s: (f"ogm_ge_{s}.txt", hashlib.md5((folder / f"ogm_ge_{s}.txt").read_bytes()).hexdigest())
            for s in ("train", "test")
        },
    )
    tools, calls = fake_tools(tmp_path / "bin", fixture_clip, gone=frozenset({"-74csnCOiUs"}))
    cfg = {"clips_dir": str(tmp_path / "clips"), "source": "yt-dlp", "val_fraction": 0.5, **tools}
    plugin = DATASETS.get("kinetics_sounds")()
    with pytest.raises(DataError, match=r"2 clip\(s\) to download have no segment times.*-3Mwkq-7TV4_2"):
        plugin.prepare(cfg, tmp_path / "raw", 1, False)
    annotations = tmp_path / "kinetics400" / "test.csv"
    annotations.parent.mkdir()
    annotations.write_text(
        "label,youtube_id,time_start,time_end,split\n"
        "singing,-3Mwkq-7TV4,2,12,test\nbowling,-74csnCOiUs,0,10,test\n"
    )
    cfg["kinetics_csv"] = [str(annotations)]
    manifest = json.loads(plugin.prepare(cfg, tmp_path / "raw", 1, False).read_text())
    assert manifest["counts"] == {"train": 1, "val": 2, "test": 1} and manifest["missing"]["test"] == 1
    log = calls.read_text().splitlines()
    assert "-3Mwkq-7TV4 *2-12" in log and "--6q_33gNew *132-142" in log
    assert (tmp_path / "clips" / "unavailable.tsv").read_text().startswith("-74csnCOiUs_0\t")


@pytest.mark.parametrize("profile", ["embedded", "paper"])
def test_params_blocks_validate_and_resolve(profile: str) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["profile"] = profile
    params["experiment"]["datasets"] = ["kinetics_sounds", "vggsound"]
    validate(params)
    for dataset in ("kinetics_sounds", "vggsound"):
        run = resolve_run(params, dataset, "aug", 0)
        assert run["features"]["audio"] == {"frontend": "pmr", "seconds": 10.0}
        assert run["data"]["clips_dir"] == f"data/clips/{dataset}"
    assert resolve_run(params, "vggsound", "aug", 0)["train"]["batch_size"] == (
        16 if profile == "paper" else 32
    )


@pytest.mark.parametrize(
    ("row", "shown"),
    [("bowling,-74csnCOiUs,zero,10,test", "'zero', '10'"), ("bowling,-74csnCOiUs", "None, None")],
)
def test_bad_kinetics_csv_row_names_file_and_line(tmp_path: Path, row: str, shown: str) -> None:
    annotations = tmp_path / "test.csv"
    annotations.write_text(
        f"label,youtube_id,time_start,time_end,split\nsinging,-3Mwkq-7TV4,2,12,test\n{row}\n"
    )
    with pytest.raises(DataError, match=f"{annotations}: line 3: expected numbers .*\\({shown}\\)"):
        ks.read_annotations([str(annotations)])
