"""Twitter2015: target-oriented multimodal sentiment (Yu & Jiang, "Adapting BERT for Target-Oriented
Multimodal Sentiment Classification", IJCAI 2019; datasets.md §3.5); image + text, 3 classes.

Sources: ``absa_data/twitter2015/{train,dev,test}.tsv`` of ``jefferyYu/TomBERT`` (datasets.md §8:
31bc79f; the files were last changed in e84f327, the commit the default URL names), md5-pinned
(datasets.md §7: 3,179 / 1,122 / 1,037 rows); the images from the Google-Drive archive linked in
TomBERT's README (a person downloads it; :mod:`mmbalance.data.datasets._imagetext`). That archive holds
``twitter2015_images/`` and ``twitter2017_images/``, whose file names overlap, so only files
under a folder named ``image_folder`` (default ``twitter2015_images``) are taken.

The tsv files have the header ``index, #1 Label, #2 ImageID, #3 String, #3 String``, tab-separated
with no quoting (read as BERT's ``_read_tsv`` does, ``quotechar=None``). Labels: 0 negative,
1 neutral, 2 positive. ``String`` holds the tweet with the target replaced by ``$T$``; the last
column is the target. One row per (tweet, target), so images repeat (3,502 distinct, none shared
across splits). Which text the papers fed to BERT is undocumented (datasets.md §3.5); ``text_form``
records the choice:

- ``target_pair`` (default, TomBERT): ``$T$`` replaced by the target, the target as a second
  segment (``[CLS] sentence [SEP] target [SEP]``);
- ``replaced``: the sentence with ``$T$`` replaced by the target only;
- ``raw``: the ``String`` column as it is, ``$T$`` included.

Clip ids are ``<split>_<index:05d>`` (the tsv's own row index). Raw folder::

    absa_data/twitter2015/{train,dev,test}.tsv   the verified split files (the repository's layout)
    images/<ImageID>                              the images of the listed rows, from the archive
    texts/<clip_id>.txt                           the text (target on a second line for target_pair)
    splits/<split>.csv, missing.csv, classes.txt, manifest.json   (as for every image-text dataset)
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from mmbalance.data.datasets._imagetext import ImageTextDataset, Sample, SplitFiles, text_file_content
from mmbalance.errors import DataError
from mmbalance.registry import register_dataset

REPOSITORY = "https://github.com/jefferyYu/TomBERT"
SPLIT_URL = (
    "https://raw.githubusercontent.com/jefferyYu/TomBERT/"
    "e84f32701fd3f7c86ce2ed099b924519186cb886/absa_data/twitter2015/"
)
SPLIT_FILES = {"train": "train.tsv", "val": "dev.tsv", "test": "test.tsv"}
SPLIT_MD5 = {
    "train.tsv": "d8cd8af67c588e59cdcfb6f8a85f70ca",
    "dev.tsv": "fd3f9774f0a05e6d628b539f81eabf38",
    "test.tsv": "b1e0c7e496e8a13e7390e2cb93937846",
}
EXPECTED_COUNTS = {"train": 3179, "val": 1122, "test": 1037}
HEADER = ["index", "#1 Label", "#2 ImageID", "#3 String", "#3 String"]
TARGET = "$T$"
DRIVE_LINK = "https://drive.google.com/file/d/1PpvvncnQkgDNeBMKVgG2zFYuRhbL873g/view"


@dataclass
class Twitter2015Config:
    """``data.twitter2015`` settings."""

    download_dir: str = "data/downloads/twitter2015"
    """Where the split files are downloaded to and where the person puts the image archive."""
    split_url: str = SPLIT_URL
    """Base URL of the three tsv files (``https://``, ``http://`` or ``file://``)."""
    image_folder: str = "twitter2015_images"
    """Only images inside a folder of this name are used ("" = any folder)."""
    text_form: str = field(default="target_pair", metadata={"choices": ("target_pair", "replaced", "raw")})
    missing_images: str = field(default="report", metadata={"choices": ("report", "error")})
    """``report``: leave rows without a usable image out, counted and listed; ``error``: stop."""


def sample_text(sentence: str, target: str, text_form: str) -> str:
    """The text file content of one row for ``text_form`` (module docstring)."""
    if text_form == "raw":
        return text_file_content((sentence,))
    replaced = sentence.replace(TARGET, target)
    if text_form == "replaced":
        return text_file_content((replaced,))
    return text_file_content((replaced, target))


def parse_split(path: Path, split: str, text_form: str) -> list[Sample]:
    """The rows of one TomBERT tsv file."""
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quotechar=None))
    if not rows or rows[0] != HEADER:
        raise DataError(f"{path}: expected the tab-separated header {HEADER}")
    samples = []
    for number, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        try:
            index, label, image, sentence, target = row
            label_value, index_value = int(label), int(index)
        except ValueError as exc:
            raise DataError(f"{path}: line {number}: expected 5 tab-separated fields, got {row[:5]}") from exc
        if label_value not in (0, 1, 2) or not image or TARGET not in sentence:
            raise DataError(f"{path}: line {number}: bad label, image or missing {TARGET}: {row}")
        samples.append(
            Sample(
                clip_id=f"{split}_{index_value:05d}",
                label=label_value,
                image=image,
                text=sample_text(sentence, target, text_form),
            )
        )
    return samples


@register_dataset("twitter2015")
class Twitter2015(ImageTextDataset):
    """Target-oriented multimodal sentiment on Twitter 2015 (module docstring)."""

    name = "twitter2015"
    Config: ClassVar[type] = Twitter2015Config
    image_folder_key = "image_folder"

    def class_names(self, data_cfg: Mapping[str, Any]) -> list[str]:
        return ["negative", "neutral", "positive"]

    def split_files(self, data_cfg: Mapping[str, Any]) -> SplitFiles:
        return SplitFiles(
            folder="absa_data/twitter2015", names=SPLIT_FILES, md5=SPLIT_MD5, counts=EXPECTED_COUNTS
        )

    def parse(
        self, path: Path, split: str, data_cfg: Mapping[str, Any]
    ) -> tuple[list[Sample], dict[str, Any]]:
        return parse_split(path, split, str(data_cfg["text_form"])), {}

    def images_message(self, download_dir: Path) -> str:
        return (
            f"twitter2015: no image of the listed tweets found in {download_dir}.\n"
            f"The images are on Google Drive and must be downloaded by hand: open the link of the README of "
            f"{REPOSITORY}\n  {DRIVE_LINK}\n"
            f"download the archive (it holds twitter2015_images/ and twitter2017_images/) and put "
            f"it, unopened or extracted, into {download_dir}/ ; then run the same command again "
            f"(images are taken from folders named data.twitter2015.image_folder)."
        )
