"""Kinetics-Sounds: 31 audible classes of Kinetics-400, 10-s YouTube clips (datasets.md §3.2).

**Split lists.** OGM-GE's ``data/KineticSound/my_{train,test}.txt`` (GeWu-Lab/OGM-GE_CVPR2022 at
343dc1d), shipped with the package and checked by md5 (``kinetics_sounds_lists/``): 14,799 training
and 2,597 test rows ``clip,10,label-index``. The LFM/MIE papers report 15,000 / 1,900 / 1,900
clips; no list with those counts is published, so the OGM-GE lists are used (the code the papers
follow; datasets.md §3.2, methods.md §C1) with ``val_fraction`` (0.1, as the papers' 1,900 of
19,000) of each class of the training list carved out as validation
(:func:`mmbalance.data.youtube.clips.carve_validation`): 13,318 / 1,481 / 2,597 with the defaults.

**Clip names.** Training ids are CVDF's ``<youtube id>_<start:06d>_<end:06d>`` (the name of the
file in the CVDF Kinetics-400 tarballs). Test ids are ``<youtube id>_<n>``; ``n`` is not documented
(its distribution, most often 0 with a long tail, fits a start second, not verified). In a clips
folder a test clip is found under its own name or under any single file of its YouTube id (every
YouTube id occurs once in the lists), e.g. the CVDF name. To *download* a test clip the segment must
be known: with ``source: yt-dlp``, ``kinetics_csv`` lists Kinetics-400 annotation files
(``label,youtube_id,time_start,time_end,split``; cvdfoundation/kinetics-dataset e6bea42
``k400_downloader.sh`` fetches them from ``https://s3.amazonaws.com/kinetics/400/annotations/``)
from which the segment of each test id is looked up (the row whose start equals ``n`` when a YouTube
id has several); without them ``prepare`` stops and says so.

**Class names.** OGM-GE never published which class each label index is (datasets.md §3.2,
IBM/AdaMML#3 lists the 31 names). ``label_names: index`` (default) names classes ``label_00`` …
``label_30``; ``alphabetical`` assigns the AdaMML names in alphabetical order, a guess recorded as
such in the manifest.

Everything else (sources, accepted file names, missing clips, WAV extraction, raw layout) is
:mod:`mmbalance.data.youtube`.
"""

from __future__ import annotations

import csv
import logging
import re
import shutil
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from mmbalance.config import typed_options
from mmbalance.data.datasets._base import Dataset, Item
from mmbalance.data.youtube.clips import MISSING_REASON, Clip, ClipsConfig, carve_validation, verify_file
from mmbalance.data.youtube.prepare import begin, prepare_clips, read_split
from mmbalance.errors import DataError
from mmbalance.registry import register_dataset

log = logging.getLogger("mmbalance.data")

LISTS_DIR = Path(__file__).with_name("kinetics_sounds_lists")
LISTS = {
    "train": ("ogm_ge_train.txt", "9474176c86f4699831e69d0434b51483"),
    "test": ("ogm_ge_test.txt", "87d8a66d2b3b32a9609d47b936aeb6f4"),
}
CLASSES = (
    "blowing nose", "blowing out candles", "bowling", "chopping wood", "dribbling basketball",
    "laughing", "mowing lawn", "playing accordion", "playing bagpipes", "playing bass guitar",
    "playing clarinet", "playing drums", "playing guitar", "playing harmonica", "playing keyboard",
    "playing organ", "playing piano", "playing saxophone", "playing trombone", "playing trumpet",
    "playing violin", "playing xylophone", "ripping paper", "shoveling snow", "shuffling cards",
    "singing", "stomping grapes", "tap dancing", "tapping guitar", "tapping pen", "tickling",
)  # fmt: skip
TRAIN_ID = re.compile(r"(?P<ytid>[\w-]{11})_(?P<start>\d{6})_(?P<end>\d{6})")
TEST_ID = re.compile(r"(?P<ytid>[\w-]{11})_(?P<n>\d+)")
CLIP_SECONDS = 10


@dataclass
class Config(ClipsConfig):
    """``data.kinetics_sounds`` (shared keys: :class:`mmbalance.data.youtube.clips.ClipsConfig`)."""

    clips_dir: str = "data/clips/kinetics_sounds"
    label_names: str = field(default="index", metadata={"choices": ("index", "alphabetical")})
    kinetics_csv: list = field(default_factory=list)


def parse_list(path: Path) -> list[Clip]:
    """The clips of an OGM-GE list file (``clip,10,label``); a malformed line raises :class:`DataError`."""
    clips = []
    with open(path, newline="") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row:
                continue
            try:
                clip_id, _, label = row
                label_index = int(label)
            except ValueError as exc:
                raise DataError(f"{path}: line {number} is not 'clip,10,label' ({row})") from exc
            if not 0 <= label_index < len(CLASSES):
                raise DataError(f"{path}: line {number}: label {label_index} outside 0..{len(CLASSES) - 1}")
            train, test = TRAIN_ID.fullmatch(clip_id), TEST_ID.fullmatch(clip_id)
            if train:
                start, end = float(train["start"]), float(train["end"])
                clips.append(Clip(clip_id, train["ytid"], start, end, label_index))
            elif test:
                clips.append(Clip(clip_id, test["ytid"], None, None, label_index))
            else:
                raise DataError(f"{path}: line {number}: clip id {clip_id!r} follows neither naming scheme")
    return clips


def read_annotations(paths: list[str]) -> dict[str, list[tuple[float, float]]]:
    """YouTube id → segments from Kinetics-400 annotation CSVs (``youtube_id,time_start,time_end``); a
    missing file, missing column or a row without two numbers raises :class:`DataError` naming the file
    (and the line)."""
    segments: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for name in paths:
        path = Path(name).expanduser()
        if not path.is_file():
            raise DataError(
                f"{path}: Kinetics-400 annotation file not found (data.kinetics_sounds.kinetics_csv)"
            )
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            if not {"youtube_id", "time_start", "time_end"} <= set(reader.fieldnames or ()):
                raise DataError(f"{path}: expected columns youtube_id, time_start and time_end")
            for row in reader:
                try:
                    segment = (float(row["time_start"]), float(row["time_end"]))
                except (TypeError, ValueError) as exc:  # a short row leaves None, a word is no number
                    raise DataError(
                        f"{path}: line {reader.line_num}: expected numbers in time_start and time_end "
                        f"({row['time_start']!r}, {row['time_end']!r})"
                    ) from exc
                segments[row["youtube_id"]].append(segment)
    return segments


def resolve_segments(clips: list[Clip], segments: Mapping[str, list[tuple[float, float]]]) -> list[Clip]:
    """Fill the segment of ``<youtube id>_<n>`` clips from the annotations (module docstring)."""
    out = []
    for clip in clips:
        options = segments.get(clip.youtube_id, [])
        if clip.start is None and options:
            n = float(clip.clip_id.rsplit("_", 1)[1])
            start, end = next((s for s in options if s[0] == n), options[0])
            if start != n:
                log.info(
                    "kinetics_sounds: %s: annotation start %g differs from the id's %g",
                    clip.clip_id,
                    start,
                    n,
                )
            clip = replace(clip, start=start, end=end)
        out.append(clip)
    return out


@register_dataset("kinetics_sounds")
class KineticsSounds(Dataset):
    """Kinetics-Sounds from a folder of clips or yt-dlp (module docstring)."""

    name = "kinetics_sounds"
    modalities: ClassVar[dict[str, str]] = {"audio": "spectrogram", "video": "frames"}
    missing_reason = MISSING_REASON
    Config = Config

    def class_names(self, data_cfg: Mapping[str, Any]) -> list[str]:
        if data_cfg.get("label_names", "index") == "alphabetical":
            return sorted(CLASSES)
        return [f"label_{k:02d}" for k in range(len(CLASSES))]

    def prepare(self, data_cfg: Mapping[str, Any], out_dir: Path, workers: int, progress: bool) -> Path:
        """Verify and copy the lists, carve validation, then
        :func:`~mmbalance.data.youtube.prepare.prepare_clips`."""
        cfg = typed_options(Config(), data_cfg, where=f"data.{self.name}")
        out_dir = begin(out_dir)
        (out_dir / "lists").mkdir(exist_ok=True)
        parsed = {}
        for split, (name, md5) in LISTS.items():
            verify_file(LISTS_DIR / name, "md5", md5)
            shutil.copyfile(LISTS_DIR / name, out_dir / "lists" / name)
            parsed[split] = parse_list(out_dir / "lists" / name)
        if cfg["kinetics_csv"]:
            parsed["test"] = resolve_segments(parsed["test"], read_annotations(cfg["kinetics_csv"]))
        train, val = carve_validation(parsed["train"], cfg["val_fraction"], cfg["val_seed"])
        lists = {"train": train, "val": val, "test": parsed["test"]}
        extra = {
            "lists": {split: {"file": f"lists/{name}", "md5": md5} for split, (name, md5) in LISTS.items()},
            "label_names_verified": False,
        }
        return prepare_clips(self.name, cfg, lists, self.class_names(cfg), out_dir, workers, progress, extra)

    def items(self, raw_dir: Path, split: str) -> list[Item]:
        return read_split(raw_dir, split)
