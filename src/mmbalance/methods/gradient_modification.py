"""MIE's flat-direction gradient modification (Eq. 5–8; methods.md §A2.2–A2.3).

After a stage of modality ``k``: per Linear layer of ``k``'s network, the cumulative outer
product of the layer's batch-mean input over one pass of the training data (Eq. 5,
``Ȳ = Σ_t z̄_t z̄_tᵀ``, no normalisation), its SVD ``Ȳ = U Λ Vᵀ`` and
``T = V exp(−τ (Λ − λ_min)/(λ_max − λ_min)) Vᵀ`` (Eq. 7). While the next modality ``l`` trains,
each Linear weight gradient of ``l`` is right-multiplied by ``T`` of the same-named layer of
``k`` (Eq. 8 in PyTorch's ``(out, in)`` weight layout, as in the IGM code: ``W.grad ← W.grad @ T``);
biases are left alone. The layers are found by type under a module, so widening the scope
beyond the head (Table 4) means passing a larger module (Conv2d layers would need unfolded
patches, the code's unused branch, and are not handled here).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

FLAT_TOLERANCE = 1e-10
"""``λ_max − λ_min ≤ FLAT_TOLERANCE · λ_max`` counts as a flat spectrum (the 0/0 of Eq. 7)."""


def linear_layers(module: nn.Module) -> dict[str, nn.Linear]:
    """Every ``nn.Linear`` under ``module`` by its qualified name (``"0"``, ``"2"``, ``"3"`` for a head)."""
    return {name: layer for name, layer in module.named_modules() if isinstance(layer, nn.Linear)}


@torch.no_grad()
def cumulative_input_covariance(
    layers: dict[str, nn.Linear], batches: Iterable[Any], forward: Callable[[Any], object]
) -> dict[str, torch.Tensor]:
    """Eq. 5: ``Ȳ = Σ_t z̄_t z̄_tᵀ`` (float64) of each layer's input, ``z̄_t`` its mean over batch ``t``.

    ``forward(batch)`` runs the network (the caller chooses eval mode); hooks read the inputs.
    """
    sums: dict[str, torch.Tensor] = {}

    def hook(name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], None]:
        def record(_: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            x = args[0].detach().double()
            mean = x.reshape(-1, x.shape[-1]).mean(0)
            outer = torch.outer(mean, mean)
            sums[name] = sums[name] + outer if name in sums else outer

        return record

    handles = [layer.register_forward_pre_hook(hook(name)) for name, layer in layers.items()]
    try:
        for batch in batches:
            forward(batch)
    finally:
        for handle in handles:
            handle.remove()
    return sums


def modification_matrix(covariance: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 7: ``(T, Λ)`` with ``T = V diag(exp(−τ·minmax(Λ))) Vᵀ``, symmetrised, float32.

    A flat spectrum (all singular values equal up to ``FLAT_TOLERANCE``, including ``Ȳ = 0``)
    has no sharper direction; the min–max normalisation is 0/0 there and we define ``Σ = I``, so
    ``T = I`` exactly and the gradient is unchanged.
    """
    _, singular, vh = torch.linalg.svd(covariance)
    spread = singular.max() - singular.min()
    if float(spread) <= FLAT_TOLERANCE * float(singular.max()):
        return torch.eye(covariance.shape[0]), singular.float()
    scaled = torch.exp(-tau * (singular - singular.min()) / spread)
    t = vh.T @ torch.diag(scaled) @ vh
    return ((t + t.T) / 2).float(), singular.float()


@torch.no_grad()
def modify_gradients(layers: dict[str, nn.Linear], matrices: dict[str, torch.Tensor]) -> list[str]:
    """Eq. 8: ``W.grad ← W.grad @ T`` for each layer with a same-named ``T`` of matching input size.

    Layers without such a ``T`` (e.g. a first head layer whose input size differs between the two
    modalities; the code pairs layers by weight shape) keep their gradient. Returns the names modified.
    """
    modified = []
    for name, layer in layers.items():
        t = matrices.get(name)
        if t is None or layer.weight.grad is None or t.shape[0] != layer.in_features:
            continue
        layer.weight.grad.copy_(layer.weight.grad @ t.to(layer.weight.grad))
        modified.append(name)
    return modified
