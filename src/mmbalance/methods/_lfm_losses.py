"""LFM's modality-matching losses ``L_MM`` (paper §3.2) and the released code's alignment loss.

With more than two modalities both are averaged over all unordered modality pairs (the paper
gives nothing for 3 modalities; BalanceBenchmark averages pairwise JS; methods.md §A1.3).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
import torch.nn.functional as F


def info_nce(z_j: torch.Tensor, z_l: torch.Tensor, tau: float) -> torch.Tensor:
    """Symmetric InfoNCE on cosine similarities, paper §3.2 (the ``L_MM`` of Eq. 1).

    ``s(r, k) = cos(z_r^(j), z_k^(l))``; ``L = −1/(2 n_b) Σ_r [log softmax_k(s(r,k)/τ)[r]
    + log softmax_k(s(k,r)/τ)[r]]``.
    """
    logits = F.normalize(z_j, dim=1) @ F.normalize(z_l, dim=1).t() / tau
    target = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def js_code(o_a: torch.Tensor, o_v: torch.Tensor) -> torch.Tensor:
    """The released code's ``Alignment()`` (methods.md §A1.2): ``½KL(m‖p_a) + ½KL(m‖p_v)``.

    ``p = softmax(o)``, ``m = ½(p_a + p_v)``, batch-mean reduction. PyTorch's ``kl_div(log p, m)``
    is ``KL(m‖p)``, the reverse of the textbook Jensen–Shannon ``½KL(p_a‖m) + ½KL(p_v‖m)``.
    """
    log_a, log_v = o_a.log_softmax(dim=1), o_v.log_softmax(dim=1)
    m = 0.5 * (log_a.exp() + log_v.exp())
    return 0.5 * (F.kl_div(log_a, m, reduction="batchmean") + F.kl_div(log_v, m, reduction="batchmean"))


def pairwise_mean(
    tensors: dict[str, torch.Tensor], loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """``loss`` averaged over all unordered pairs of modalities (in the given order)."""
    pairs = list(itertools.combinations(tensors.values(), 2))
    return sum(loss(a, b) for a, b in pairs) / len(pairs)
