"""Model-selection protocols over the per-epoch history.

- ``val_selected`` (the project's headline): the epoch with the best validation accuracy,
  evaluated once on test.
- ``best_test`` (the papers' protocol, methods.md §0): the epoch with the best test accuracy.
- ``last``: the final epoch.
Joint models select by the fused head and report every head at that epoch; methods whose
heads are separate models (``select_per_head``) select each head by its own accuracy.
Ties go to the earliest epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

METRICS = ("acc", "macro_f1", "map")
PROTOCOLS = ("val_selected", "best_test", "last")


def best_epoch(history: Sequence[dict[str, Any]], column: str) -> int:
    best = max(range(len(history)), key=lambda i: (history[i][column], -i))
    return int(history[best]["epoch"])


def selected_epochs(history: Sequence[dict[str, Any]], heads: Sequence[str], per_head: bool) -> dict:
    """``{protocol: {head: epoch}}``."""
    chosen: dict[str, dict[str, int]] = {}
    for protocol in PROTOCOLS:
        chosen[protocol] = {}
        for head in heads:
            key = head if per_head else "fused"
            if protocol == "val_selected":
                chosen[protocol][head] = best_epoch(history, f"val_{key}_acc")
            elif protocol == "best_test":
                chosen[protocol][head] = best_epoch(history, f"test_{key}_acc")
            else:
                chosen[protocol][head] = int(history[-1]["epoch"])
    return chosen


def protocol_metrics(history: Sequence[dict[str, Any]], heads: Sequence[str], per_head: bool) -> dict:
    """``{protocol: {"epochs": {head: e}, "test": {head: {metric: v}}, "val": {...}}}``."""
    by_epoch = {int(row["epoch"]): row for row in history}
    result = {}
    for protocol, epochs in selected_epochs(history, heads, per_head).items():
        entry: dict[str, Any] = {"epochs": epochs}
        for split in ("test", "val"):
            entry[split] = {
                head: {m: by_epoch[epochs[head]][f"{split}_{head}_{m}"] for m in METRICS} for head in heads
            }
        result[protocol] = entry
    return result
