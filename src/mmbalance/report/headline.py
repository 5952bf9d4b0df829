"""The headline metrics file for ``dvc metrics show`` / ``dvc metrics diff``.

A nested JSON ``{dataset: {method: {protocol: {head: {metric: {"mean": m, "std": s}}}}}}`` of the
test-split summaries (fractions; ``std`` is ``null`` where undefined), built from the summary
CSVs alone, so it rebuilds from cached metrics without training. Clip counts (protocol
:data:`~mmbalance.report.aggregate.CLIPS`) are not metrics and stay out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmbalance.io import write_json
from mmbalance.report.aggregate import CLIPS, read_summary

HEADLINE = "metrics.json"
"""The headline metrics' file in the tables folder (dvc.yaml's ``metrics``)."""


def headline_metrics(summaries: Mapping[str, Path]) -> dict[str, Any]:
    """Test-split mean and std per dataset, method, protocol, head and metric."""
    result: dict[str, Any] = {}
    for dataset, path in summaries.items():
        for row in read_summary(path):
            if row["split"] != "test" or row["protocol"] == CLIPS:
                continue
            node = result.setdefault(dataset, {}).setdefault(row["method"], {})
            node = node.setdefault(row["protocol"], {}).setdefault(row["head"], {})
            std = row["std"]
            node[row["metric"]] = {"mean": row["mean"], "std": None if math.isnan(std) else std}
    return result


def write_headline_metrics(summaries: Mapping[str, Path], out_path: Path) -> Path:
    write_json(out_path, headline_metrics(summaries))
    return out_path
