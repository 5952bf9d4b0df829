"""Is a difference from a reference larger than the noise? Two paired tests, one mark each.

* **Over seeds** (training noise): the per-seed differences ``d_s = x_s − r_s`` of a summary metric
  (runs of one seed share the data order and, for one architecture, the initial weights, so the
  pairs are matched), a two-sided paired t-test, ``t = mean(d) / (sd(d) / √n)`` with ``n − 1``
  degrees of freedom. Mark ``*`` when ``p < alpha``. It needs two seeds; with three it has two
  degrees of freedom, so only large and consistent differences pass (``|t| > 4.30`` at 0.05).
* **Over test samples** (test-set noise): the val-selected test predictions (``predictions.npz``)
  of both runs for every common seed, resampled together — the same bootstrap draw of test
  samples for both runs and every seed — ``resamples`` times; the statistic is the mean over seeds
  of the accuracy difference. Mark ``†`` when the percentile interval at ``level`` excludes 0.

The rule, the marks and their caveats are explained in docs/tables.md ("Significance").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmbalance.errors import DataError
from mmbalance.runs.files import read_predictions

SEED_MARK = "*"
BOOTSTRAP_MARK = "†"
_NO_SPREAD = 1e-12
"""Differences whose sample std is below this (relative) are equal: the t-test is undefined."""
_CHUNK = 256
"""Bootstrap replicates drawn per block (bounds memory on large test sets)."""


@dataclass(frozen=True)
class Settings:
    """``report.significance`` of ``params.yaml`` (the defaults when the block is absent)."""

    alpha: float = 0.05
    level: float = 0.95
    resamples: int = 2000
    seed: int = 0

    @classmethod
    def of(cls, params: Mapping[str, Any]) -> Settings:
        return cls(**params.get("report", {}).get("significance", {}))


@dataclass(frozen=True)
class SeedTest:
    """Paired t-test over seeds of the differences ``d``: their mean, sample std, ``t`` and two-sided ``p``
    (NaN when fewer than two seeds, or when every difference is the same nonzero number, up to
    floating-point rounding: the test is undefined there, so it marks nothing)."""

    n: int
    mean: float
    std: float
    t: float
    p: float


@dataclass(frozen=True)
class Bootstrap:
    """Paired bootstrap over test samples: the observed mean accuracy difference and its interval."""

    delta: float
    low: float
    high: float
    n_samples: int
    n_seeds: int

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0.0 or self.high < 0.0


def paired_t_test(differences: Sequence[float]) -> SeedTest:
    """Two-sided paired t-test of ``differences`` (one per seed) against 0."""
    d = np.asarray(differences, dtype=float)
    n = len(d)
    if n == 0:
        return SeedTest(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(d.mean())
    if n < 2:
        return SeedTest(n, mean, math.nan, math.nan, math.nan)
    std = float(d.std(ddof=1))
    if std <= _NO_SPREAD * max(1.0, abs(mean)):  # equal differences up to rounding
        if abs(mean) <= _NO_SPREAD:
            return SeedTest(n, mean, 0.0, 0.0, 1.0)
        return SeedTest(n, mean, 0.0, math.copysign(math.inf, mean), math.nan)
    t = mean / (std / math.sqrt(n))
    # scipy here, not at the top: the analyses import the report, and every training process validates
    # the analyses in params, so a module-level import cost each training job ~0.6 s for nothing.
    from scipy import stats

    return SeedTest(n, mean, std, t, float(2.0 * stats.t.sf(abs(t), df=n - 1)))


def paired_bootstrap(
    correct: np.ndarray, reference: np.ndarray, *, resamples: int, level: float, seed: int
) -> Bootstrap:
    """Percentile interval of the mean over seeds of ``acc(correct) − acc(reference)``.

    Args:
        correct, reference: ``(seeds, samples)`` booleans, whether each test sample is classified
            correctly, row ``s`` of both from the same seed.
        resamples: bootstrap replicates; each draws ``samples`` test samples with replacement, the
            same draw for both runs and every seed.
        level: the interval's coverage (0.95: the 2.5 and 97.5 percentiles).
        seed: the generator's seed (the same inputs give the same interval).
    """
    correct = np.asarray(correct, dtype=float)
    reference = np.asarray(reference, dtype=float)
    if correct.shape != reference.shape or correct.ndim != 2 or correct.shape[1] == 0:
        raise ValueError(f"paired bootstrap: shapes {correct.shape} and {reference.shape} do not pair")
    per_sample = (correct - reference).mean(axis=0)  # the seeds' mean difference, per test sample
    n = len(per_sample)
    rng = np.random.default_rng(seed)
    replicates = np.empty(resamples)
    for start in range(0, resamples, _CHUNK):
        size = min(_CHUNK, resamples - start)
        replicates[start : start + size] = per_sample[rng.integers(0, n, size=(size, n))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(replicates, [tail, 1.0 - tail])
    return Bootstrap(float(per_sample.mean()), float(low), float(high), n, correct.shape[0])


def load_correct(path: Path, head: str = "fused") -> tuple[np.ndarray, np.ndarray]:
    """The test sample ids and whether ``head`` classifies each correctly (argmax of its probabilities),
    from one ``predictions.npz``."""
    ids, probs, labels = read_predictions(path, head)
    return ids, probs.argmax(axis=1) == labels


def correctness(files: Mapping[int, Path], head: str = "fused") -> tuple[np.ndarray, np.ndarray]:
    """``(ids, (seeds, samples) correct)`` of several seeds' predictions, in seed order; every file must
    hold the same test samples in the same order."""
    ids, rows = None, []
    for seed in sorted(files):
        these, correct = load_correct(files[seed], head)
        if ids is None:
            ids = these
        elif not np.array_equal(ids, these):
            raise DataError(f"{files[seed]}: other test samples than {files[min(files)]}")
        rows.append(correct)
    if ids is None:
        raise DataError("no predictions to compare")
    return ids, np.stack(rows)


def marks(seeds: SeedTest | None, bootstrap: Bootstrap | None, alpha: float) -> str:
    """``*`` for a seed test with ``p < alpha``, ``†`` for a bootstrap interval that excludes 0."""
    text = SEED_MARK if seeds is not None and not math.isnan(seeds.p) and seeds.p < alpha else ""
    return text + (BOOTSTRAP_MARK if bootstrap is not None and bootstrap.excludes_zero else "")


def rule_notes(settings: Settings, n_seeds: int | None, bootstrap: bool) -> list[str]:
    """The notes under a table with marked cells: the rule and, for few seeds, the caveat."""
    notes = [
        f"Marks: {SEED_MARK} = paired t-test over seeds, p < {settings.alpha:g} (two-sided)"
        + (
            f"; {BOOTSTRAP_MARK} = the {100 * settings.level:g} % paired-bootstrap interval over test "
            f"samples ({settings.resamples} resamples of the val-selected predictions of every common "
            "seed) excludes 0"
            if bootstrap
            else f"; no {BOOTSTRAP_MARK} here: the bootstrap reads the val-selected predictions only"
        )
        + ". No mark: the difference is within the noise that test measures (docs/tables.md, Significance)."
    ]
    if n_seeds is not None and n_seeds < 5:
        notes.append(
            f"{n_seeds} seed{'s are' if n_seeds != 1 else ' is'} few: the seed test has "
            f"{max(n_seeds - 1, 0)} degree{'s' if n_seeds != 2 else ''} of freedom and passes only large, "
            "consistent differences, so a missing * is no evidence of no effect; the "
            "bootstrap measures test-sample noise only, not the spread between trainings."
        )
    return notes


@dataclass(frozen=True)
class Comparison:
    """A run against a reference on one dataset: the seed test and, where predictions exist, the bootstrap."""

    differences: dict[int, float]
    seeds: SeedTest
    bootstrap: Bootstrap | None

    def marks(self, alpha: float) -> str:
        return marks(self.seeds, self.bootstrap, alpha)

    def cell(self, alpha: float, ddof: int = 1) -> str:
        """``Δ mean ± std`` over seeds in points (signed), then the marks: ``+1.23 ± 0.45 *†``."""
        values = [self.differences[s] for s in sorted(self.differences)]
        mean = math.fsum(values) / len(values)
        std = (
            math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - ddof))
            if len(values) > ddof
            else math.nan
        )
        spread = "–" if math.isnan(std) else f"{100 * std:.2f}"
        mark = self.marks(alpha)
        return f"{100 * mean:+.2f} ± {spread}" + (f" {mark}" if mark else "")


def compare(
    results: Any,
    dataset: str,
    method: str,
    reference: str,
    protocol: str,
    settings: Settings,
    *,
    metric: str = "acc",
    head: str = "fused",
    seeds: Sequence[int] | None = None,
) -> Comparison | None:
    """``method`` against ``reference`` on ``dataset`` (a :class:`~mmbalance.report.results.Results`),
    over their common seeds (of ``seeds`` when given); None when either has no value.

    The bootstrap runs for ``protocol == "val_selected"`` and accuracy only (what the predictions hold)
    and needs predictions of both runs for the common seeds.
    """
    first = results.values(dataset, reference, protocol, head, metric)
    second = results.values(dataset, method, protocol, head, metric)
    if first is None or second is None:
        return None
    common = sorted(set(first) & set(second) & (set(seeds) if seeds is not None else set(first)))
    if not common:
        return None
    differences = {s: second[s] - first[s] for s in common}
    test = paired_t_test(list(differences.values()))
    bootstrap = None
    if protocol == "val_selected" and metric == "acc":
        mine, theirs = results.prediction_files(dataset, method), results.prediction_files(dataset, reference)
        both = [s for s in common if s in mine and s in theirs]
        if both:
            ids, correct = correctness({s: mine[s] for s in both}, head)
            other_ids, other = correctness({s: theirs[s] for s in both}, head)
            if not np.array_equal(ids, other_ids):
                raise DataError(f"{mine[both[0]]}: other test samples than {theirs[both[0]]}")
            bootstrap = paired_bootstrap(
                correct, other, resamples=settings.resamples, level=settings.level, seed=settings.seed
            )
    return Comparison(differences, test, bootstrap)
