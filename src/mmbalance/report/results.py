"""Our numbers for the paper tables: per-seed values from the summary CSVs and ``history.csv`` files.

The summaries keep every seed's value (``values``), so a table can compute any per-seed quantity
(a modality gap, a paired difference between two runs or two protocols) and its mean ± std over
seeds, from cached metrics alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mmbalance.errors import DataError
from mmbalance.report.aggregate import index_summary, mean_std, read_summary
from mmbalance.report.clips import Counts, clip_counts, missing_clip_note
from mmbalance.report.convergence import Counts as ConvergenceCounts
from mmbalance.report.convergence import unconverged_seeds
from mmbalance.report.plan import DatasetFacts
from mmbalance.runs.files import last_logged, seed_of

SeedValues = dict[int, float]


@dataclass(frozen=True)
class Stat:
    """Mean and std over seeds (NaN std when undefined) of ``n`` seeds."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: SeedValues, ddof: int) -> Stat:
        mean, std = mean_std([values[seed] for seed in sorted(values)], ddof)
        return cls(mean, std, len(values))


def paired_difference(first: SeedValues, second: SeedValues) -> SeedValues | None:
    """``second − first`` per seed; None unless both have exactly the same seeds."""
    if set(first) != set(second):
        return None
    return {seed: second[seed] - first[seed] for seed in first}


def spread(per_head: Sequence[SeedValues]) -> SeedValues | None:
    """Largest minus smallest value over heads, per seed (``|a − b|`` for two); None if seeds differ."""
    seeds = set(per_head[0])
    if any(set(values) != seeds for values in per_head):
        return None
    return {seed: max(v[seed] for v in per_head) - min(v[seed] for v in per_head) for seed in seeds}


class Results:
    """The summaries and histories of the datasets that have results.

    Args:
        summaries: dataset → its ``summary.csv``.
        histories: dataset → method → the ``history.csv`` of each of its finished seeds.
        predictions: dataset → method → the ``predictions.npz`` of each of its finished seeds (the
            val-selected test predictions, for the bootstrap of :mod:`mmbalance.report.significance`).
        facts: dataset → its modalities and the words of its missing-clip footnote.
    """

    def __init__(
        self,
        summaries: Mapping[str, Path],
        histories: Mapping[str, Mapping[str, Sequence[Path]]] | None = None,
        predictions: Mapping[str, Mapping[str, Sequence[Path]]] | None = None,
        facts: Mapping[str, DatasetFacts] | None = None,
    ) -> None:
        self._facts = dict(facts or {})
        self._sources = {dataset: Path(path) for dataset, path in summaries.items()}
        self._index = {
            dataset: index_summary(read_summary(path), path, dataset)
            for dataset, path in self._sources.items()
        }
        self._histories = {
            d: {m: list(files) for m, files in h.items()} for d, h in (histories or {}).items()
        }
        self._predictions = {
            d: {m: {seed_of(path): Path(path) for path in files} for m, files in p.items()}
            for d, p in (predictions or {}).items()
        }

    @property
    def datasets(self) -> list[str]:
        return list(self._index)

    def methods(self, dataset: str) -> list[str]:
        """The methods with results on ``dataset``, in summary order."""
        return list(dict.fromkeys(key[0] for key in self._index.get(dataset, {})))

    def ran(self, dataset: str, method: str) -> bool:
        return method in self.methods(dataset)

    def _row(self, dataset: str, method: str, protocol: str, head: str, metric: str) -> Mapping | None:
        return self._index.get(dataset, {}).get((method, protocol, "test", head, metric))

    def values(self, dataset: str, method: str, protocol: str, head: str, metric: str) -> SeedValues | None:
        """Test-set value per seed of one summary cell (None: not in the summary)."""
        row = self._row(dataset, method, protocol, head, metric)
        if row is None:
            return None
        seeds = [int(s) for s in row["seeds"].split(";")]
        return dict(zip(seeds, (float(v) for v in row["values"].split(";")), strict=True))

    def clip_counts(self, dataset: str) -> Counts | None:
        """Listed, found and missing clips per split of ``dataset`` (None: not reported, or no results)."""
        if dataset not in self._index:
            return None
        return clip_counts(self._index[dataset], self._sources[dataset])

    def modalities(self, dataset: str) -> tuple[str, ...] | None:
        """The modalities of ``dataset`` in the model's order (None: not described)."""
        facts = self._facts.get(dataset)
        return None if facts is None else facts.modalities

    def missing_clip_notes(self, datasets: Iterable[str]) -> list[str]:
        """The footnotes of the ``datasets`` a table shows, in that order, for those with missing clips."""
        notes = (
            missing_clip_note(dataset, self.clip_counts(dataset), self._facts.get(dataset))
            for dataset in dict.fromkeys(datasets)
        )
        return [note for note in notes if note]

    def unconverged(self, dataset: str, method: str) -> ConvergenceCounts | None:
        """(seeds that did not converge, seeds) of one run (None: no results, or no convergence recorded)."""
        return unconverged_seeds(self._index.get(dataset, {}), method)

    def run_id(self, dataset: str, method: str) -> str | None:
        row = next((r for k, r in self._index.get(dataset, {}).items() if k[0] == method), None)
        return None if row is None else row["run_id"]

    def prediction_files(self, dataset: str, method: str) -> dict[int, Path]:
        """Seed → ``predictions.npz`` of one run (empty: none given)."""
        return dict(self._predictions.get(dataset, {}).get(method, {}))

    def history_values(self, dataset: str, method: str, column: str) -> SeedValues | None:
        """The last logged value of a ``history.csv`` column per seed (None: no seed logs it).

        Raises:
            DataError: only some seeds log it.
        """
        files = self._histories.get(dataset, {}).get(method, [])
        found = {seed_of(path): last_logged(path, column) for path in files}
        present = {seed: v for seed, v in found.items() if v is not None and not math.isnan(v)}
        if present and len(present) < len(found):
            missing = ", ".join(str(p) for p in files if seed_of(p) not in present)
            raise DataError(f"{missing}: no value in column '{column}', which other seeds of {method} log")
        return present or None
