"""The split-file skeleton the image-text datasets share (``ImageTextDataset.sources``/``samples``): URLs
and raw-folder paths from a dataset's ``SplitFiles``, per-split extra manifest values, the unique-id
and split-size checks. A toy dataset with one id per line stands in for Sarcasm and Twitter2015."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from mmbalance.data.datasets._imagetext import ImageTextDataset, Sample, SplitFiles
from mmbalance.errors import DataError

NAMES = {"train": "a.txt", "val": "b.txt", "test": "c.txt"}


class Toy(ImageTextDataset):
    """Lines ``<id>``; a line ``#`` is skipped and counted (like Sarcasm's keyword filter)."""

    name = "toy"

    def __init__(self, counts: Mapping[str, int] | None) -> None:
        self.counts = counts

    def class_names(self, data_cfg: Mapping[str, Any]) -> list[str]:
        return ["only"]

    def split_files(self, data_cfg: Mapping[str, Any]) -> SplitFiles:
        return SplitFiles("repo/lists", NAMES, {n: f"md5-{n}" for n in NAMES.values()}, self.counts)

    def parse(
        self, path: Path, split: str, data_cfg: Mapping[str, Any]
    ) -> tuple[list[Sample], dict[str, Any]]:
        lines = path.read_text().split()
        kept = [Sample(line, 0, f"{line}.jpg", line) for line in lines if line != "#"]
        return kept, {"skipped": len(lines) - len(kept), "file": path.name}

    def images_message(self, download_dir: Path) -> str:
        return "none"


def write_lists(root: Path, lists: Mapping[str, str]) -> Path:
    folder = root / "repo" / "lists"
    folder.mkdir(parents=True)
    for split, text in lists.items():
        (folder / NAMES[split]).write_text(text)
    return root


def test_sources_join_the_url_and_the_repository_layout() -> None:
    for url in ("file:///srv/x", "file:///srv/x/"):
        assert Toy(None).sources({"split_url": url}) == {
            "repo/lists/a.txt": ("file:///srv/x/a.txt", "md5-a.txt"),
            "repo/lists/b.txt": ("file:///srv/x/b.txt", "md5-b.txt"),
            "repo/lists/c.txt": ("file:///srv/x/c.txt", "md5-c.txt"),
        }


def test_samples_collect_per_split_extras_and_check_sizes(tmp_path: Path) -> None:
    out = write_lists(tmp_path, {"train": "1 # 2 #", "val": "3", "test": "# 4"})
    listed, extra = Toy({"train": 2, "val": 1, "test": 1}).samples({}, out)
    assert {split: [s.clip_id for s in rows] for split, rows in listed.items()} == {
        "train": ["1", "2"], "val": ["3"], "test": ["4"]
    }  # fmt: skip
    assert extra == {
        "skipped": {"train": 2, "val": 0, "test": 1},
        "file": {"train": "a.txt", "val": "b.txt", "test": "c.txt"},
    }
    with pytest.raises(DataError, match=r"toy: split sizes \{'train': 2, 'val': 1, 'test': 1\} differ"):
        Toy({"train": 3, "val": 1, "test": 1}).samples({}, out)
    assert len(Toy(None).samples({}, out)[0]["train"]) == 2  # no published sizes: not checked


def test_an_id_listed_twice_stops(tmp_path: Path) -> None:
    out = write_lists(tmp_path, {"train": "1 2", "val": "3", "test": "2"})
    with pytest.raises(DataError, match="toy: sample id 2 is listed twice"):
        Toy(None).samples({}, out)
