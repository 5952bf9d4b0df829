"""Sarcasm: split files fetched and md5-checked (file:// and a local Range-capable HTTP server), the
keyword filter, the label column, images gathered from Drive-style zip archives with missing and
corrupt ones reported, extraction shapes and one training epoch through the engine."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mmbalance import config, paths
from mmbalance.data.datasets import sarcasm
from mmbalance.data.download import fetch_pinned
from mmbalance.data.extract import extract
from mmbalance.data.generate import generate
from mmbalance.engine.loop import train
from mmbalance.errors import ConfigError, DataError
from mmbalance.registry import DATASETS
from tests.imagetext_fixtures import http_server, imagetext_params, jpeg_bytes, md5, write_zip

TRAIN = [
    ["100001", "what a great day # fun", 1],
    ["100002", "i love mondays <user>", 1],
    ["100003", "the cat sat on the mat", 0],
    ["100004", "this is # sarcasm at its best", 1],  # filtered: token 'sarcasm'
    ["100005", "check this <url>", 0],  # filtered: token '<url>'
    ["100006", "sarcasms are words too", 0],  # kept: the filter matches whole tokens only
    ["100007", "another normal tweet emoji_15", 0],  # its image is corrupt
    ["100008", "it 's raining again", 1],  # its image is in no archive
]
VAL = [
    ["200001", "val tweet one", 1, 1],
    ["200002", "val tweet two", 1, 0],
    ["200003", "val tweet three", 0, 0],
]
TEST = [
    ["300001", "test tweet one", 0, 0],
    ["300002", "test tweet two", 1, 1],
    ["300003", "test three", 0, 1],
]
COUNTS = {"train": 6, "val": 3, "test": 3}


def make_sources(root: Path) -> tuple[str, Path, dict[str, str]]:
    """The repository's text/ folder, the person's download folder with two archives and a loose image."""
    text = root / "repo" / "text"
    text.mkdir(parents=True)
    for name, rows in (("train.txt", TRAIN), ("valid2.txt", VAL), ("test2.txt", TEST)):
        (text / name).write_text("".join(f"{row!r}\n" for row in rows), encoding="utf-8")
    ids = [r[0] for r in TRAIN if r[0] not in ("100004", "100005", "100007", "100008")] + [
        r[0] for r in VAL + TEST
    ]
    images = {f"dataset_image/{i}.jpg": jpeg_bytes(int(i)) for i in ids if i != "300003"}
    downloads = root / "downloads"
    names = sorted(images)
    write_zip(downloads / "sarcasm_images_1.zip", {n: images[n] for n in names[::2]})
    write_zip(
        downloads / "sarcasm_images_2.zip",
        {**{n: images[n] for n in names[1::2]}, "dataset_image/100007.jpg": b"not a jpeg"},
    )
    (downloads / "extracted").mkdir()
    (downloads / "extracted" / "300003.jpg").write_bytes(jpeg_bytes(300003))
    checksums = {name: md5(text / name) for name in ("train.txt", "valid2.txt", "test2.txt")}
    return text.as_uri() + "/", downloads, checksums


def data_cfg(split_url: str, downloads: Path, **changes: object) -> dict:
    return {
        "download_dir": str(downloads),
        "split_url": split_url,
        "label": "human",
        "keyword_filter": True,
        "missing_images": "report",
        **changes,
    }


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, dict[str, str]]:
    return make_sources(tmp_path_factory.mktemp("sarcasm"))


@pytest.fixture
def pinned(monkeypatch: pytest.MonkeyPatch, sources: tuple[str, Path, dict[str, str]]) -> tuple[str, Path]:
    """The fixtures' md5s and sizes stand in for the pinned ones of the real files."""
    monkeypatch.setattr(sarcasm, "SPLIT_MD5", sources[2])
    monkeypatch.setattr(sarcasm, "EXPECTED_COUNTS", COUNTS)
    return sources[0], sources[1]


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_registered_image_then_text() -> None:
    plugin = DATASETS.get("sarcasm")()
    assert plugin.modalities == {"image": "image", "text": "text"}
    assert plugin.class_names({}) == ["not_sarcastic", "sarcastic"]


def test_prepare_counts_filters_and_reports_missing_images(pinned: tuple[str, Path], tmp_path: Path) -> None:
    url, downloads = pinned
    manifest = json.loads(generate("sarcasm", data_cfg(url, downloads), tmp_path, progress=False).read_text())
    assert manifest["listed"] == COUNTS
    assert manifest["filtered"] == {"train": 2, "val": 0, "test": 0}
    assert manifest["counts"] == {"train": 4, "val": 3, "test": 3}
    assert manifest["missing_images"] == {"train": 2, "val": 0, "test": 0}
    missing = {row["clip_id"]: row["reason"] for row in read_csv(tmp_path / "missing.csv")}
    assert set(missing) == {"100007", "100008"}
    assert "does not decode" in missing["100007"] or "unreadable" in missing["100007"]
    assert missing["100008"].startswith("not found in")
    train_rows = read_csv(tmp_path / "splits" / "train.csv")
    assert [r["clip_id"] for r in train_rows] == ["100001", "100002", "100003", "100006"]
    assert train_rows[0] == {
        "clip_id": "100001", "label": "1", "image": "images/100001.jpg", "text": "texts/100001.txt"
    }  # fmt: skip
    assert (tmp_path / "texts" / "100001.txt").read_text(encoding="utf-8") == "what a great day # fun"
    assert [r["label"] for r in read_csv(tmp_path / "splits" / "val.csv")] == ["1", "0", "0"]  # human column
    assert (tmp_path / "images" / "300003.jpg").read_bytes() == jpeg_bytes(300003)  # the loose file
    on_disk = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert set(manifest["files"]) == on_disk - {"manifest.json"}
    items = DATASETS.get("sarcasm")().items(tmp_path, "test")
    assert [(i.clip_id, i.label) for i in items] == [("300001", 0), ("300002", 1), ("300003", 1)]
    assert all(p.is_file() for i in items for p in i.paths.values())


def test_label_column_and_unfiltered_train(pinned: tuple[str, Path], tmp_path: Path) -> None:
    url, downloads = pinned
    cfg = data_cfg(url, downloads, label="hashtag", keyword_filter=False)
    manifest = json.loads(generate("sarcasm", cfg, tmp_path, progress=False).read_text())
    assert manifest["listed"] == {"train": 8, "val": 3, "test": 3}
    assert manifest["missing_images"]["train"] == 4  # the two filtered posts have no image either
    assert [r["label"] for r in read_csv(tmp_path / "splits" / "val.csv")] == ["1", "1", "0"]


def test_wrong_checksum_names_the_file(
    pinned: tuple[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url, _ = pinned
    monkeypatch.setitem(sarcasm.SPLIT_MD5, "valid2.txt", "0" * 32)
    fresh = tmp_path / "downloads"
    with pytest.raises(DataError, match=r"valid2\.txt: md5 [0-9a-f]{32} does not match the pinned 0{32}"):
        generate("sarcasm", data_cfg(url, fresh), tmp_path / "raw", progress=False)
    assert not (fresh / "valid2.txt").exists() and not (fresh / "valid2.txt.part").exists()
    assert (fresh / "train.txt").is_file()  # verified files stay, a rerun does not fetch them again
    assert not (tmp_path / "raw" / "manifest.json").exists()


def test_no_images_stops_with_what_to_download(pinned: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = pinned
    with pytest.raises(DataError) as info:
        generate("sarcasm", data_cfg(url, tmp_path / "empty"), tmp_path / "raw", progress=False)
    message = str(info.value)
    assert str((tmp_path / "empty").resolve()) in message
    assert all(link in message for link in sarcasm.DRIVE_LINKS)
    assert not (tmp_path / "raw" / "manifest.json").exists()


def test_missing_images_error_mode_stops(pinned: tuple[str, Path], tmp_path: Path) -> None:
    url, downloads = pinned
    with pytest.raises(DataError, match=r"100007\.jpg.*2 of 12 images unusable"):
        generate("sarcasm", data_cfg(url, downloads, missing_images="error"), tmp_path, progress=False)


def test_fetch_resumes_over_http_and_skips_verified(tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    payload = bytes(range(256)) * 64
    (served / "train.txt").write_bytes(payload)
    dest = tmp_path / "dl" / "train.txt"
    dest.parent.mkdir()
    (dest.parent / "train.txt.part").write_bytes(payload[:5000])
    with http_server(served) as (base, ranges):
        fetch_pinned(base + "train.txt", dest, "md5", md5(served / "train.txt"), progress=False)
    assert ranges == ["bytes=5000-"]
    assert dest.read_bytes() == payload and not (dest.parent / "train.txt.part").exists()
    (served / "train.txt").unlink()  # the source is gone: a verified copy is not fetched again
    assert fetch_pinned("http://127.0.0.1:9/train.txt", dest, "md5", md5(dest), progress=False) == dest
    with pytest.raises(DataError, match=r"train\.txt: download from http://127\.0\.0\.1:9/gone\.txt failed"):
        fetch_pinned("http://127.0.0.1:9/gone.txt", dest, "md5", "0" * 32, progress=False)


def test_prepare_again_keeps_verified_copies(pinned: tuple[str, Path], tmp_path: Path) -> None:
    url, downloads = pinned
    generate("sarcasm", data_cfg(url, downloads), tmp_path, progress=False)
    stamp = (tmp_path / "images" / "100001.jpg").stat().st_mtime_ns
    first = json.loads((tmp_path / "manifest.json").read_text())
    second = json.loads(generate("sarcasm", data_cfg(url, downloads), tmp_path, progress=False).read_text())
    assert second == first
    assert (tmp_path / "images" / "100001.jpg").stat().st_mtime_ns == stamp  # not copied again


def test_extract_shapes_and_one_training_epoch(pinned: tuple[str, Path], tmp_path: Path) -> None:
    torch.set_num_threads(1)
    url, downloads = pinned
    params = imagetext_params(tmp_path, "sarcasm", data_cfg(url, downloads))
    raw = paths.raw_dir(params, "sarcasm")
    generate("sarcasm", config.data_config(params, "sarcasm"), raw, progress=False)
    store = paths.feature_dir(params, "sarcasm")
    extract("sarcasm", raw, config.feature_config(params, "sarcasm"), store, progress=False)
    image = np.load(store / "train" / "image.npy")
    text = np.load(store / "train" / "text.npy")
    assert image.shape == (4, 3, 32, 32) and image.dtype == np.uint8
    assert text.shape == (4, 3, 16) and text.dtype == np.int32
    assert text[0, 0, 0] == 101 and text[0, 1].sum() == int((text[0, 0] != 0).sum())
    resolved = paths.resolve_run(params, "sarcasm", "concat", 0)
    metrics = train(resolved, store, tmp_path / "run", device="cpu", progress=False)
    assert metrics["heads"] == ["fused", "image", "text"]
    assert 0.0 <= metrics["protocols"]["last"]["test"]["fused"]["acc"] <= 1.0


@pytest.mark.parametrize("profile", ["embedded", "paper"])
def test_repository_params_validate_and_resolve(profile: str) -> None:
    from tests.conftest import REPO

    overrides = ["experiment.datasets=[sarcasm, twitter2015]", f"profile={profile}"]
    params = config.load_params(REPO / "params.yaml", overrides)
    for dataset in ("sarcasm", "twitter2015"):
        resolved = paths.resolve_run(params, dataset, "lfm_h", 0)
        assert set(resolved["train"]["encoders"]) == {"image", "text"}
        assert paths.raw_dir(params, dataset).parts[-3:-1] == ("raw", dataset)
    with pytest.raises(ConfigError, match=r"'data\.sarcasm\.label': 'majority' is not one of"):
        config.load_params(REPO / "params.yaml", [*overrides, "data.sarcasm.label=majority"])
