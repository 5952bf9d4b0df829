"""Sarcasm: Cai, Cai & Wan, "Multi-Modal Sarcasm Detection in Twitter with Hierarchical Fusion
Model", ACL 2019 (datasets.md §3.4); image + text, 2 classes.

Sources: the text splits of ``headacheboy/data-of-multimodal-sarcasm-detection`` (datasets.md §8:
f42b165; the files were last changed in c924a91, the commit the default URL names), md5-pinned
(datasets.md §7); the images from the four Google-Drive archives linked in that repository's README
(a person downloads them; :mod:`mmbalance.data.datasets._imagetext`).

Split files (``text/train.txt``, ``text/valid2.txt``, ``text/test2.txt``) hold one Python list
literal per line: ``[id, text, label]`` for train, ``[id, text, hashtag_label, human_label]`` for
validation and test (the repository's ``text/Readme.MD``). They are read with
``ast.literal_eval``. The repository's ``codes/loadData.py`` drops every post whose
whitespace-token list contains one of :data:`FILTER_WORDS` (exact tokens); with the filter the
splits have the papers' 19,816 / 2,410 / 2,409 posts (datasets.md §3.4, verified), and the images
of dropped posts are not in the archives. Validation and test carry two labels that disagree on 87
and 144 posts; ``label: human`` (default) takes the last element as ``loadData.py`` and
feiLinX/Multi-modal-Sarcasm-Detection do, ``label: hashtag`` the one before it.

Raw folder::

    text/{train,valid2,test2}.txt   the verified split files (the repository's layout)
    images/<id>.jpg                 the images of the listed posts, copied from the archives
    texts/<id>.txt                  the post's text (one line), what the text kind tokenises
    splits/<split>.csv              clip_id,label,image,text of the posts with a usable image
    missing.csv                     split,clip_id,image,reason of the posts without one
    classes.txt, manifest.json      manifest: counts, listed, missing_images, filtered, sha256s
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from mmbalance.data.datasets._imagetext import ImageTextDataset, Sample, SplitFiles, read_lines
from mmbalance.errors import DataError
from mmbalance.registry import register_dataset

REPOSITORY = "https://github.com/headacheboy/data-of-multimodal-sarcasm-detection"
SPLIT_URL = (
    "https://raw.githubusercontent.com/headacheboy/data-of-multimodal-sarcasm-detection/"
    "c924a910dc8a672259b5ee478f08d231b5099cc0/text/"
)
SPLIT_FILES = {"train": "train.txt", "val": "valid2.txt", "test": "test2.txt"}
SPLIT_MD5 = {
    "train.txt": "8e6b703a83b20e29b7566c5de380ff09",
    "valid2.txt": "e0f3b2cb1eca1addf01dcf0b950727c3",
    "test2.txt": "272a62410afcac727a364fec32d8518f",
}
EXPECTED_COUNTS = {"train": 19816, "val": 2410, "test": 2409}
"""The papers' split sizes after the keyword filter (LFM/MIE Table 1 setups, methods.md §C1)."""
FILTER_WORDS = frozenset(
    {
        "sarcasm",
        "sarcastic",
        "reposting",
        "<url>",
        "joke",
        "humour",
        "humor",
        "jokes",
        "irony",
        "ironic",
        "exgag",
    }
)
DRIVE_LINKS = (
    "https://drive.google.com/file/d/1mK0Nf-jv_h2bgHUCRM4_EsdTiiitZ_Uj/view",
    "https://drive.google.com/file/d/1AOWzlOz5hmdO39dEmzhQ4z_nabgzi7Tu/view",
    "https://drive.google.com/file/d/1dJERrVlp7DlNSXk-uvbbG6Rv7uvqTOKd/view",
    "https://drive.google.com/file/d/1pODuKC4gP6-QDQonG8XTqI8w8ds68mE3/view",
)


@dataclass
class SarcasmConfig:
    """``data.sarcasm`` settings."""

    download_dir: str = "data/downloads/sarcasm"
    """Where the split files are downloaded to and where the person puts the image archives."""
    split_url: str = SPLIT_URL
    """Base URL of the three split files (``https://``, ``http://`` or ``file://``)."""
    label: str = field(default="human", metadata={"choices": ("human", "hashtag")})
    keyword_filter: bool = True
    """Drop posts with a :data:`FILTER_WORDS` token (the papers' splits; their images are not shipped)."""
    missing_images: str = field(default="report", metadata={"choices": ("report", "error")})
    """``report``: leave posts without a usable image out, counted and listed; ``error``: stop."""


def parse_split(path: Path, split: str, label: str, keyword_filter: bool) -> tuple[list[Sample], int]:
    """The samples of one split file and the number of posts the keyword filter dropped."""
    samples, dropped = [], 0
    width = 3 if split == "train" else 4
    for number, line in read_lines(path):
        try:
            row = ast.literal_eval(line)
        except (ValueError, SyntaxError) as exc:
            raise DataError(f"{path}: line {number} is not a Python list literal: {line[:80]}") from exc
        if not (isinstance(row, list) and len(row) == width and isinstance(row[1], str)):
            raise DataError(f"{path}: line {number}: expected a list of {width} items, got {line[:80]}")
        post_id, text = str(row[0]), row[1]
        value = row[-1] if label == "human" or split == "train" else row[-2]
        if value not in (0, 1):
            raise DataError(f"{path}: line {number}: label {value!r} is not 0 or 1")
        if keyword_filter and FILTER_WORDS.intersection(text.split()):
            dropped += 1
            continue
        samples.append(Sample(clip_id=post_id, label=int(value), image=f"{post_id}.jpg", text=text))
    return samples, dropped


@register_dataset("sarcasm")
class Sarcasm(ImageTextDataset):
    """Multimodal sarcasm detection on tweets (module docstring)."""

    name = "sarcasm"
    Config: ClassVar[type] = SarcasmConfig

    def class_names(self, data_cfg: Mapping[str, Any]) -> list[str]:
        return ["not_sarcastic", "sarcastic"]

    def split_files(self, data_cfg: Mapping[str, Any]) -> SplitFiles:
        counts = EXPECTED_COUNTS if data_cfg["keyword_filter"] else None  # the papers' sizes are filtered
        return SplitFiles(folder="text", names=SPLIT_FILES, md5=SPLIT_MD5, counts=counts)

    def parse(
        self, path: Path, split: str, data_cfg: Mapping[str, Any]
    ) -> tuple[list[Sample], dict[str, Any]]:
        samples, dropped = parse_split(path, split, str(data_cfg["label"]), bool(data_cfg["keyword_filter"]))
        return samples, {"filtered": dropped}

    def images_message(self, download_dir: Path) -> str:
        links = "\n".join(f"  {link}" for link in DRIVE_LINKS)
        return (
            f"sarcasm: no image of the listed posts found in {download_dir}.\n"
            f"The images are on Google Drive and must be downloaded by hand: open the four links of "
            f"the README of {REPOSITORY}\n{links}\n"
            f"download each zip archive and put the archives, unopened or extracted, into "
            f"{download_dir}/ ; then run the same command again (images are found by their <id>.jpg names)."
        )
