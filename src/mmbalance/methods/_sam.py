"""Sharpness-aware minimisation steps for MIE (Foret et al. 2021; MIE Eq. 3–4; methods.md §A2.2–A2.3).

Two readings, chosen by MIE's ``sam`` option:

* :func:`faithful_sam_gradients` — the paper: ``ε* = ρ ∇L/‖∇L‖₂`` with the global 2-norm over the
  trained parameters (Eq. 3), gradient taken at ``θ + ε*`` (Eq. 4), ``θ`` restored bit for bit.
* :func:`code_sam_loss` — the IGM release: each tensor moved *permanently* by ``ρ g/‖g‖`` (its own
  norm), the head re-applied to the unperturbed features, loss ``(1−f)·L + f·L_perturbed``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mmbalance.engine.precision import Precision

FP32 = Precision()


def global_norm(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """``‖(t_1, …, t_n)‖₂`` over all entries of all tensors."""
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in tensors]))


def faithful_sam_gradients(
    params: Sequence[nn.Parameter],
    loss_fn: Callable[[], torch.Tensor],
    rho: float,
    buffers: Sequence[torch.Tensor] = (),
    precision: Precision = FP32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Leave ``∇L(θ)|_{θ+ε*}`` in ``p.grad`` (Eq. 4) with ``θ`` restored exactly; return both losses.

    ``loss_fn`` runs a fresh forward pass (under ``precision``'s autocast; ``ε*`` from true gradients,
    ``p.grad`` as ``precision.backward`` leaves it). ``buffers`` (BatchNorm running statistics) are put
    back after the perturbed pass, so each batch enters them once. A zero gradient gives ``ε* = 0``.
    """
    with precision.autocast():
        loss = loss_fn()
    grads = [
        torch.zeros_like(p) if g is None else g
        for p, g in zip(params, precision.grad(loss, list(params), allow_unused=True), strict=True)
    ]
    norm = global_norm(grads)
    scale = rho / norm if float(norm) > 0 else 0.0
    saved_params = [p.detach().clone() for p in params]
    saved_buffers = [b.clone() for b in buffers]
    with torch.no_grad():
        for p, g in zip(params, grads, strict=True):
            p.add_(g * scale)
    for p in params:
        p.grad = None
    with precision.autocast():
        perturbed = loss_fn()
    precision.backward(perturbed)
    with torch.no_grad():
        for p, saved in zip(params, saved_params, strict=True):
            p.copy_(saved)
        for b, saved in zip(buffers, saved_buffers, strict=True):
            b.copy_(saved)
    return loss.detach(), perturbed.detach()


def code_sam_loss(
    params: Sequence[nn.Parameter],
    loss: torch.Tensor,
    head: nn.Module,
    features: torch.Tensor,
    labels: torch.Tensor,
    rho: float,
    flat_ratio: float,
    precision: Precision = FP32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """IGM's step: ``p.data += ρ g_p/‖g_p‖`` per tensor (kept), ``L₁ = CE(ψ(z), y)`` on the old ``z``.

    Returns ``((1 − flat_ratio)·loss + flat_ratio·L₁, L₁)``; ``loss`` keeps its graph for the
    caller's backward. Tensors with a zero gradient are left alone (the code would write NaN).
    The gradients are ``precision``'s true ones; the head runs under its autocast.
    """
    grads = precision.grad(loss, list(params), retain_graph=True, allow_unused=True)
    for p, g in zip(params, grads, strict=True):
        if g is not None and float(torch.linalg.vector_norm(g)) > 0:
            p.data.add_(rho * g / torch.linalg.vector_norm(g))
    with precision.autocast():
        perturbed = F.cross_entropy(head(features), labels)
    return (1.0 - flat_ratio) * loss + flat_ratio * perturbed, perturbed
