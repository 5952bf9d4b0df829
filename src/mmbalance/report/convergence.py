"""The tables' mark for runs that did not converge (:mod:`mmbalance.engine.convergence`).

Each run records in ``metrics.json`` whether its validation accuracy had stopped rising by the end
of the fixed schedule; the summary keeps that per seed (rows of protocol
:data:`~mmbalance.report.aggregate.CONVERGENCE`). A table appends :data:`MARK` to every number of
a method of which at least one seed did not converge, and says in a note which methods and how many
seeds. A table without any marked number says nothing more; the main table always states how many
runs converged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mmbalance.report.aggregate import CONVERGED, CONVERGENCE

MARK = "‡"
RULE_REFERENCE = (
    "the rule of docs/tables.md (the validation accuracy of the last quarter of the epochs neither "
    "trends up nor reaches a new best by more than 2 points)"
)

Counts = tuple[int, int]
"""(seeds that did not converge, seeds)."""


def unconverged_seeds(index: Mapping[tuple, Mapping[str, Any]], method: str) -> Counts | None:
    """How many of ``method``'s seeds did not converge, of how many, from one dataset's summary rows
    keyed as by :func:`~mmbalance.report.aggregate.index_summary` (None: its runs record no convergence).
    A seed counts as not converged when any of its selection series did not."""
    failed: set[str] = set()
    seeds: set[str] = set()
    found = False
    for (row_method, protocol, _, _, metric), row in index.items():
        if row_method != method or protocol != CONVERGENCE or metric != CONVERGED:
            continue
        found = True
        for seed, value in zip(row["seeds"].split(";"), row["values"].split(";"), strict=True):
            seeds.add(seed)
            if float(value) < 1.0:
                failed.add(seed)
    return (len(failed), len(seeds)) if found else None


def marked(text: str, counts: Counts | None) -> str:
    """``text`` with :data:`MARK` appended when some seed did not converge."""
    return f"{text} {MARK}" if counts is not None and counts[0] > 0 else text


def convergence_note(flagged: Mapping[str, Counts]) -> str | None:
    """The note explaining the marks of a table: ``flagged`` maps a method (or dataset/method) to its
    counts; methods whose seeds all converged are left out. None when nothing is marked."""
    listed = [f"{name} ({bad} of {n} seeds)" for name, (bad, n) in flagged.items() if bad > 0]
    if not listed:
        return None
    return f"{MARK} not converged by {RULE_REFERENCE}: {', '.join(listed)}."


def convergence_summary(counts: Mapping[str, Counts]) -> str | None:
    """A sentence saying how many of the table's runs converged (None: no run records convergence)."""
    if not counts:
        return None
    runs = sum(n for _, n in counts.values())
    failed = sum(bad for bad, _ in counts.values())
    if failed == 0:
        return f"Convergence: all {runs} runs converged by {RULE_REFERENCE}."
    return f"Convergence: {runs - failed} of {runs} runs converged by {RULE_REFERENCE}."


class Marks:
    """Marks a table's numbers of runs that did not converge and collects its note.

    Args:
        unconverged: ``(dataset, method) → counts``, e.g. ``Results.unconverged``.
    """

    def __init__(self, unconverged: Callable[[str, str], Counts | None]) -> None:
        self._unconverged = unconverged
        self._flagged: dict[str, Counts] = {}

    def __call__(self, text: str, dataset: str, *methods: str) -> str:
        """``text`` marked when a seed of any of ``methods`` on ``dataset`` did not converge."""
        flagged = False
        for method in methods:
            counts = self._unconverged(dataset, method)
            if counts is not None and counts[0] > 0:
                self._flagged[f"{dataset}/{method}"] = counts
                flagged = True
        return f"{text} {MARK}" if flagged else text

    def notes(self) -> list[str]:
        """The table's note on its marks (empty when nothing is marked)."""
        note = convergence_note(self._flagged)
        return [note] if note else []
