"""Footnotes on missing clips: on which part of a dataset's lists the numbers of a table were obtained.

YouTube datasets lose videos (about 20 % of VGGSound's by 2021, hche11/VGGSound#12; Kinetics'
known gaps, cvdfoundation/kinetics-dataset#28) and image-text datasets lose images, so "VGGSound"
results are on an unknown subset unless the available-clip count is logged (spec datasets.md §4).
The counts travel with the results: raw manifest → feature store → ``metrics.json`` ``clips`` →
summary rows of protocol :data:`~mmbalance.report.aggregate.CLIPS`. Every table (Markdown and
LaTeX; the CSV holds the cells only) that shows a dataset with missing clips ends with one note per
such dataset, e.g. "kinetics_sounds: 1,234 of 13,318 train and 201 of 2,597 test clips were
unavailable (…); numbers are on the remaining clips." A dataset without missing clips, or one that
cannot miss any (synthav), gets no note.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmbalance.errors import DataError
from mmbalance.report.aggregate import CLIP_COUNTS, CLIPS
from mmbalance.report.plan import DatasetFacts

SPLITS = ("train", "val", "test")
"""The dataset splits in the order a footnote names them (others follow, sorted)."""
Counts = dict[str, dict[str, int]]
"""split → ``{"listed": n, "found": f, "missing": m}``."""


def clip_counts(index: Mapping[tuple, Mapping[str, Any]], source: Path) -> Counts | None:
    """The clip counts in one dataset's summary rows, keyed as by
    :func:`~mmbalance.report.aggregate.index_summary` (None: the runs report none).

    Raises:
        DataError: a count is not a whole number, or two methods report different counts (their
            runs were trained on different subsets of the dataset).
    """
    per_method: dict[str, Counts] = {}
    for (method, protocol, split, _, metric), row in index.items():
        if protocol != CLIPS or metric not in CLIP_COUNTS:
            continue
        mean = row["mean"]
        if not float(mean).is_integer() or not (math.isnan(row["std"]) or row["std"] == 0):
            raise DataError(f"{source}: {method}/{CLIPS}/{split}/{metric} = {mean!r} is not one count")
        per_method.setdefault(method, {}).setdefault(split, {})[metric] = int(mean)
    if not per_method:
        return None
    (first, counts), *others = per_method.items()
    for method, other in others:
        if other != counts:
            raise DataError(
                f"{source}: {first} and {method} report different clip counts ({counts} vs {other}); "
                "their runs were trained on different subsets of the dataset, extract and train again"
            )
    return counts


def missing_clip_note(dataset: str, counts: Counts | None, facts: DatasetFacts | None) -> str | None:
    """The footnote of ``dataset`` (None when no clip is missing), in the words of its ``facts``."""
    if counts is None:
        return None
    parts = [
        f"{counts[split]['missing']:,} of {counts[split]['listed']:,} {split}"
        for split in (*SPLITS, *sorted(set(counts) - set(SPLITS)))
        if split in counts and counts[split]["missing"] > 0
    ]
    if not parts:
        return None
    if facts is None:
        raise DataError(
            f"{dataset}: {parts[0]} clips are missing, and the report was not told how to word it"
        )
    listing = parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"
    return (
        f"{dataset}: {listing} {facts.unit} were unavailable ({facts.missing_reason}); numbers are on "
        f"the remaining {facts.unit}."
    )
