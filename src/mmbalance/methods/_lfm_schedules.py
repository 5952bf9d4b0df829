"""LFM's schedules of α, the weight of the matching loss in ``L_Total = (1−α)L_CLS + αL_MM`` (Eq. 1).

Every function takes the 0-based epoch and the number of epochs of the run.
"""

from __future__ import annotations

import math

CUBIC = (1.5e-4, -6.5e-3, 3.2e-2, 1.0)
"""Paper §4.4: ``ω̂(t) = a t³ + b t² + c t + d`` fitted to the learned α curve on KineticsSounds."""

POLY5 = (0.204623704, 3.35472727e-3, 1.22989557e-4, -2.92947416e-6, 2.23835486e-8, -5.39717505e-11)
"""``Crema_epoch.py``: ``w_cls = P(e) = Σ_k POLY5[k] e^k`` (methods.md §A1.2); ``w_align = 1 − P(e)``."""

CODE_LR_HALVING = 20
"""``Crema_epoch_learnable.py`` halves the α learning rate every 20 epochs."""


def heuristic(epoch: int) -> float:
    """LFM-H, paper §3.3 and Algorithm 1: ``α_t = ω(t) = 1 − e^{−1/t}`` with ``t = epoch + 1``."""
    return 1.0 - math.exp(-1.0 / (epoch + 1))


def cubic(epoch: int, num_epochs: int, horizon: float) -> float:
    """Paper §4.4's cubic ``ω̂(t')`` on a normalised time axis, clipped to [0, 1].

    The paper leaves the unit of ``t`` open and ``ω̂`` exceeds 1 for ``t ≳ 37`` (ω̂(100) = 89), so
    the run is mapped onto ``t' = horizon · epoch / (E − 1)`` ∈ [0, horizon]: ``ω̂(0) = d = 1``
    (start on matching only, as the learned curves of Fig. 3), minimum ≈ 0.07 at ``t' ≈ 26``.
    """
    t = horizon * epoch / max(num_epochs - 1, 1)
    a, b, c, d = CUBIC
    return min(max(a * t**3 + b * t**2 + c * t + d, 0.0), 1.0)


def code_poly5(epoch: int) -> float:
    """Released ``Crema_epoch.py``: ``α = 1 − P(epoch)``, unclipped (negative for epochs 177–188)."""
    return 1.0 - sum(c * epoch**k for k, c in enumerate(POLY5))


def stepwise(epoch: int, num_epochs: int, p: float) -> float:
    """Table 4's ``h(p)``: ``α = p`` while the epoch is less than half of the epochs, then ``1 − p``."""
    return p if epoch < num_epochs / 2 else 1.0 - p


def code_alpha_lr(base: float, epoch: int) -> float:
    """The released rule's α learning rate at ``epoch``: halved at epochs 20, 40, … (persistently)."""
    return base * 0.5 ** (epoch // CODE_LR_HALVING)
