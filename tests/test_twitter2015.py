"""Twitter2015: TomBERT's tsv files fetched and md5-checked, the three text forms, images taken only
from ``twitter2015_images/`` of an archive that also holds ``twitter2017_images/`` with the same
names, a missing image reported, extraction shapes (a sentence pair) and one training epoch."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mmbalance import config, paths
from mmbalance.data.datasets import twitter2015
from mmbalance.data.extract import extract
from mmbalance.data.generate import generate
from mmbalance.data.kinds.text import tokenize
from mmbalance.engine.loop import train
from mmbalance.errors import DataError
from mmbalance.registry import DATASETS
from tests.imagetext_fixtures import imagetext_params, jpeg_bytes, md5, write_zip

HEADER = "index\t#1 Label\t#2 ImageID\t#3 String\t#3 String\n"
ROWS = {
    "train.tsv": [
        (1, 2, "11.jpg", "RT @ fan : $T$ was great tonight !", "Tyga"),
        (2, 1, "11.jpg", "RT @ fan : Tyga was great $T$ !", "tonight"),
        (3, 0, "12.jpg", 'Court to censure $T$ judge over "rape" comments', "Montana"),
        (4, 1, "13.jpg", "$T$", "Sherlock Holmes"),
        (5, 2, "14.jpg", "Love shopping at $T$ I smell good !", "lush"),
    ],
    "dev.tsv": [
        (1, 1, "21.jpg", "What are $T$ thoughts ?", "Tokong"),
        (2, 0, "22.jpg", "$T$ floods", "Sochi"),
    ],
    "test.tsv": [
        (1, 2, "31.jpg", "Amazing view of $T$ !", "Northern Canada"),
        (2, 0, "32.jpg", "$T$ fire", "SF"),
    ],
}
COUNTS = {"train": 5, "val": 2, "test": 2}


def make_sources(root: Path) -> tuple[str, Path, dict[str, str]]:
    """TomBERT's absa_data/twitter2015/ and the person's download folder with one archive."""
    folder = root / "repo" / "absa_data" / "twitter2015"
    folder.mkdir(parents=True)
    for name, rows in ROWS.items():
        lines = "".join("\t".join(str(v) for v in row) + "\n" for row in rows)
        (folder / name).write_text(HEADER + lines, encoding="utf-8")
    images = sorted({row[2] for rows in ROWS.values() for row in rows} - {"32.jpg"})
    members = {f"IJCAI2019_data/twitter2015_images/{n}": jpeg_bytes(int(n[:-4])) for n in images}
    members.update({f"IJCAI2019_data/twitter2017_images/{n}": jpeg_bytes(1000 + int(n[:-4])) for n in images})
    members["IJCAI2019_data/twitter2017_images/32.jpg"] = jpeg_bytes(32)  # the wrong year's copy
    downloads = root / "downloads"
    write_zip(downloads / "IJCAI2019_data.zip", members)
    return folder.as_uri() + "/", downloads, {name: md5(folder / name) for name in ROWS}


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, dict[str, str]]:
    return make_sources(tmp_path_factory.mktemp("twitter2015"))


@pytest.fixture
def pinned(monkeypatch: pytest.MonkeyPatch, sources: tuple[str, Path, dict[str, str]]) -> tuple[str, Path]:
    monkeypatch.setattr(twitter2015, "SPLIT_MD5", sources[2])
    monkeypatch.setattr(twitter2015, "EXPECTED_COUNTS", COUNTS)
    return sources[0], sources[1]


def data_cfg(split_url: str, downloads: Path, **changes: object) -> dict:
    return {
        "download_dir": str(downloads),
        "split_url": split_url,
        "image_folder": "twitter2015_images",
        "text_form": "target_pair",
        "missing_images": "report",
        **changes,
    }


def test_registered_with_three_classes() -> None:
    plugin = DATASETS.get("twitter2015")()
    assert plugin.modalities == {"image": "image", "text": "text"}
    assert plugin.class_names({}) == ["negative", "neutral", "positive"]


def test_prepare_counts_texts_and_image_folder(pinned: tuple[str, Path], tmp_path: Path) -> None:
    url, downloads = pinned
    manifest = json.loads(
        generate("twitter2015", data_cfg(url, downloads), tmp_path, progress=False).read_text()
    )
    assert manifest["listed"] == COUNTS
    assert manifest["counts"] == {"train": 5, "val": 2, "test": 1}
    assert manifest["missing_images"] == {"train": 0, "val": 0, "test": 1}
    with open(tmp_path / "missing.csv", newline="") as handle:
        assert [(r["clip_id"], r["image"]) for r in csv.DictReader(handle)] == [("test_00002", "32.jpg")]
    assert (tmp_path / "images" / "11.jpg").read_bytes() == jpeg_bytes(11)  # 2015's, not 2017's copy
    assert (tmp_path / "absa_data" / "twitter2015" / "train.tsv").is_file()
    text = (tmp_path / "texts" / "train_00001.txt").read_text(encoding="utf-8")
    assert text == "RT @ fan : Tyga was great tonight !\nTyga"
    items = DATASETS.get("twitter2015")().items(tmp_path, "train")
    assert [i.label for i in items] == [2, 1, 0, 1, 2]
    assert items[0].paths["image"] == items[1].paths["image"] == tmp_path / "images" / "11.jpg"


@pytest.mark.parametrize(
    ("form", "expected"),
    [("replaced", "Court to censure Montana judge over \"rape\" comments"),
     ("raw", "Court to censure $T$ judge over \"rape\" comments")],
)  # fmt: skip
def test_text_forms(pinned: tuple[str, Path], tmp_path: Path, form: str, expected: str) -> None:
    url, downloads = pinned
    generate("twitter2015", data_cfg(url, downloads, text_form=form), tmp_path, progress=False)
    assert (tmp_path / "texts" / "train_00003.txt").read_text(encoding="utf-8") == expected


def test_wrong_checksum_names_the_file(
    pinned: tuple[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url, _ = pinned
    monkeypatch.setitem(twitter2015.SPLIT_MD5, "test.tsv", "f" * 32)
    with pytest.raises(DataError, match=r"test\.tsv: md5 [0-9a-f]{32} does not match the pinned f{32}"):
        generate("twitter2015", data_cfg(url, tmp_path / "dl"), tmp_path / "raw", progress=False)


def test_split_sizes_are_checked(
    pinned: tuple[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url, downloads = pinned
    monkeypatch.setattr(twitter2015, "EXPECTED_COUNTS", {"train": 3179, "val": 1122, "test": 1037})
    with pytest.raises(DataError, match="differ from the papers'"):
        generate("twitter2015", data_cfg(url, downloads), tmp_path, progress=False)


def test_no_images_stops_with_what_to_download(pinned: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = pinned
    with pytest.raises(DataError, match=r"(?s)no image of the listed tweets found in .*drive\.google\.com"):
        generate("twitter2015", data_cfg(url, tmp_path / "empty"), tmp_path / "raw", progress=False)


def test_extract_shapes_and_one_training_epoch(pinned: tuple[str, Path], tmp_path: Path) -> None:
    torch.set_num_threads(1)
    url, downloads = pinned
    params = imagetext_params(tmp_path, "twitter2015", data_cfg(url, downloads))
    raw = paths.raw_dir(params, "twitter2015")
    generate("twitter2015", config.data_config(params, "twitter2015"), raw, progress=False)
    store = paths.feature_dir(params, "twitter2015")
    extract("twitter2015", raw, config.feature_config(params, "twitter2015"), store, progress=False)
    image = np.load(store / "train" / "image.npy")
    text = np.load(store / "train" / "text.npy")
    assert image.shape == (5, 3, 32, 32) and text.shape == (5, 3, 16)
    np.testing.assert_array_equal(text[0], tokenize("RT @ fan : Tyga was great tonight !\nTyga", 16))
    assert text[0, 2].max() == 1  # the target is segment B
    resolved = paths.resolve_run(params, "twitter2015", "concat", 0)
    metrics = train(resolved, store, tmp_path / "run", device="cpu", progress=False)
    assert metrics["heads"] == ["fused", "image", "text"]
