"""VGGSound: 309 sound classes, 10-s YouTube clips (datasets.md §3.3).

**Split list.** The official ``data/vggsound.csv`` of hche11/VGGSound (commit 9bbc749), rows
``youtube id,start seconds,label,train|test`` without a header (labels may hold commas and are
quoted). ``prepare`` downloads it from ``csv_url`` (the raw file at that commit) into the raw
folder, resumably, and checks it against its git blob id ``csv_git_blob`` (the only checksum
published for it, datasets.md §7; ``git hash-object vggsound.csv`` prints the same). OGM-GE ships an
edited copy with a different blob; to use it, point ``csv_url`` at it and change ``csv_git_blob``
knowingly.

**Clips.** A row is clip ``<youtube id>_<start:06d>`` (the official naming, e.g.
``FwVYUHKoLtQ_000034`` in the repository's ``example_audio``), segment ``start`` to ``start + 10``
s. In a clips folder it is also found as ``<youtube id>_<start>`` (unpadded) or
``<youtube id>_<start:06d>_<end:06d>``, and as any single file of its YouTube id when that id
has one row (a video can give several clips).

**Classes and splits.** Class ``k`` is the ``k``-th label in sorted order (OGM-GE's
``VGGSoundDataset`` sorts the labels too); 309 labels (the LFM paper says 310). The test rows are
the test split; ``val_fraction`` of each class of the train rows becomes validation. Duplicate rows
(same clip id) are kept once and counted in the manifest. The LFM paper trained on 168,618
train+val and tested on 13,954 clips, the ones its authors could still download; expect similar
attrition (about 20 % of the videos were gone by 2021, hche11/VGGSound#12). The manifest's
``listed``/``missing`` counts say on which subset a result was obtained.

Everything else (sources, missing clips, WAV extraction, raw layout) is :mod:`mmbalance.data.youtube`.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from mmbalance.config import typed_options
from mmbalance.data.datasets._base import Dataset, Item
from mmbalance.data.download import fetch_pinned
from mmbalance.data.youtube.clips import MISSING_REASON, Clip, ClipsConfig, carve_validation
from mmbalance.data.youtube.prepare import begin, prepare_clips, read_split
from mmbalance.errors import DataError
from mmbalance.registry import register_dataset

CSV_URL = "https://raw.githubusercontent.com/hche11/VGGSound/9bbc7491c054a203e53584c0065df336e1322bb7/data/vggsound.csv"
CSV_GIT_BLOB = "53da0dc492b8a3fadf770f0f175cef1e652c0447"
CSV_NAME = "vggsound.csv"
CLIP_SECONDS = 10


@dataclass
class Config(ClipsConfig):
    """``data.vggsound`` (shared keys: :class:`mmbalance.data.youtube.clips.ClipsConfig`)."""

    clips_dir: str = "data/clips/vggsound"
    csv_url: str = CSV_URL
    csv_git_blob: str = CSV_GIT_BLOB


def parse_csv(path: Path) -> tuple[dict[str, list[Clip]], list[str], int]:
    """(clips per list split ``train``/``test``, sorted class names, duplicate rows) of ``vggsound.csv``."""
    rows = []
    with open(path, newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row:
                continue
            try:
                ytid, start, label, split = (value.strip() for value in row)
                seconds = int(start)
            except ValueError as exc:
                raise DataError(
                    f"{path}: line {number} is not 'youtube id,start,label,split' ({row})"
                ) from exc
            if split not in ("train", "test"):
                raise DataError(f"{path}: line {number}: split {split!r} is neither train nor test")
            rows.append((ytid, seconds, label, split))
    names = sorted({label for _, _, label, _ in rows})
    index = {name: k for k, name in enumerate(names)}
    clips: dict[str, list[Clip]] = {"train": [], "test": []}
    seen: set[str] = set()
    for ytid, seconds, label, split in rows:
        clip_id = f"{ytid}_{seconds:06d}"
        if clip_id in seen:
            continue
        seen.add(clip_id)
        end = seconds + CLIP_SECONDS
        alternatives = (f"{ytid}_{seconds}", f"{ytid}_{seconds:06d}_{end:06d}")
        clips[split].append(Clip(clip_id, ytid, float(seconds), float(end), index[label], alternatives))
    return clips, names, len(rows) - len(seen)


@register_dataset("vggsound")
class VGGSound(Dataset):
    """VGGSound from a folder of clips or yt-dlp (module docstring)."""

    name = "vggsound"
    modalities: ClassVar[dict[str, str]] = {"audio": "spectrogram", "video": "frames"}
    missing_reason = MISSING_REASON
    Config = Config

    def class_names(self, data_cfg: Mapping[str, Any]) -> list[str]:
        """The labels of the prepared csv (the raw manifest's config carries them)."""
        if "class_names" not in data_cfg:
            raise DataError("vggsound: the class names come from vggsound.csv; run generate first")
        return list(data_cfg["class_names"])

    def prepare(self, data_cfg: Mapping[str, Any], out_dir: Path, workers: int, progress: bool) -> Path:
        """Fetch and verify ``vggsound.csv``, carve validation, then
        :func:`~mmbalance.data.youtube.prepare.prepare_clips`."""
        cfg = typed_options(Config(), data_cfg, where=f"data.{self.name}")
        out_dir = begin(out_dir)
        path = fetch_pinned(cfg["csv_url"], out_dir / CSV_NAME, "git-blob", cfg["csv_git_blob"], progress)
        parsed, names, duplicates = parse_csv(path)
        train, val = carve_validation(parsed["train"], cfg["val_fraction"], cfg["val_seed"])
        lists = {"train": train, "val": val, "test": parsed["test"]}
        extra = {
            "lists": {"file": CSV_NAME, "url": cfg["csv_url"], "git_blob": cfg["csv_git_blob"]},
            "duplicate_rows": duplicates,
        }
        return prepare_clips(self.name, cfg, lists, names, out_dir, workers, progress, extra)

    def items(self, raw_dir: Path, split: str) -> list[Item]:
        return read_split(raw_dir, split)
