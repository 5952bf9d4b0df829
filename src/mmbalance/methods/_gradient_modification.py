"""MIE's flat-direction gradient modification (Eq. 5–8; methods.md §A2.2–A2.3).

After a stage of modality ``k``: per layer of ``k``'s network in the modification scope, the
cumulative outer product of the layer's batch-mean input over one pass of the training data
(Eq. 5, ``Ȳ = Σ_t z̄_t z̄_tᵀ``, no normalisation), its SVD ``Ȳ = U Λ Vᵀ`` and
``T = V exp(−τ (Λ − λ_min)/(λ_max − λ_min)) Vᵀ`` (Eq. 7). While the next modality ``l`` trains,
each weight gradient of ``l``'s same-named layer is right-multiplied by ``T`` (Eq. 8 in PyTorch's
``(out, in)`` weight layout, as in the IGM code: ``W.grad ← W.grad @ T``); biases are left alone.

Linear layers use their batch-mean input vector ``z̄_t``. Convolutions (the wider scopes of Table 4)
follow the IGM code's ``Conv2d`` branch (``compute_cov``; computed there, but its modification
touches the head only): the batch-mean input is unfolded into its *patches* with the convolution's
kernel, stride, padding and dilation, and every position ``l`` adds its outer product,
``Ȳ += Σ_l p̄_{t,l} p̄_{t,l}ᵀ`` (``patchesᵀ·patches``), with the weight seen as ``(out, in·kh·kw)``;
a 3-D convolution (I3D, cnn3d on NVGesture) likewise with ``(out, in·kt·kh·kw)``. (A Linear is the
one-position case.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

FLAT_TOLERANCE = 1e-10
"""``λ_max − λ_min ≤ FLAT_TOLERANCE · λ_max`` counts as a flat spectrum (the 0/0 of Eq. 7)."""


ModifiableLayer = nn.Linear | nn.Conv2d | nn.Conv3d


def linear_layers(module: nn.Module) -> dict[str, nn.Linear]:
    """Every ``nn.Linear`` under ``module`` by its qualified name (``"0"``, ``"2"``, ``"3"`` for a head)."""
    return {name: layer for name, layer in module.named_modules() if isinstance(layer, nn.Linear)}


def modifiable_layers(module: nn.Module) -> dict[str, ModifiableLayer]:
    """Every ``nn.Linear`` and ungrouped ``nn.Conv2d``/``Conv3d`` under ``module``, in registration order."""
    return {
        name: layer
        for name, layer in module.named_modules()
        if isinstance(layer, nn.Linear) or (isinstance(layer, nn.Conv2d | nn.Conv3d) and layer.groups == 1)
    }


def input_size(layer: ModifiableLayer) -> int:
    """The size of the vector a weight row multiplies: ``in`` (Linear), ``in·kh·kw`` (Conv2d) or
    ``in·kt·kh·kw`` (Conv3d)."""
    if isinstance(layer, nn.Linear):
        return layer.in_features
    return layer.in_channels * math.prod(layer.kernel_size)


def mean_patches(layer: ModifiableLayer, x: torch.Tensor) -> torch.Tensor:
    """``(D, L)``: the patches of the batch-mean input ``x̄`` at the layer's ``L`` positions, one per
    column, laid out as the flattened weight (channel, then kernel offsets); a Linear's ``x̄`` is the
    one column (its input averaged over the batch and any leading dimensions)."""
    if isinstance(layer, nn.Linear):
        return x.reshape(-1, x.shape[-1]).mean(0)[:, None]
    x = x.mean(0, keepdim=True)
    if isinstance(layer, nn.Conv2d):
        return F.unfold(x, layer.kernel_size, layer.dilation, layer.padding, layer.stride)[0]
    pt, ph, pw = layer.padding
    x = F.pad(x, (pw, pw, ph, ph, pt, pt))
    for dim, (k, s, d) in enumerate(zip(layer.kernel_size, layer.stride, layer.dilation, strict=True), 2):
        x = x.unfold(dim, (k - 1) * d + 1, s)[..., ::d]  # appends this dimension's kernel offsets
    # (1, C, T', H', W', kt, kh, kw) → (C·kt·kh·kw, T'·H'·W')
    return x[0].permute(0, 4, 5, 6, 1, 2, 3).reshape(input_size(layer), -1)


def scope_layers(head: nn.Module, encoder: nn.Module, fraction: float | None) -> dict[str, ModifiableLayer]:
    """The layers of one modality's network that gradient modification touches (MIE Table 4).

    ``fraction=None`` is the paper's and the code's scope: the head's Linear layers (named as in the
    head). Otherwise layers are taken from the output downwards — the head's, then the encoder's in
    reverse order (named ``encoder.<name>``) — while the parameters taken so far are below
    ``fraction`` of the network's parameters: with a ResNet18 and a 3-layer head, the head alone is
    the paper's 1.3 %, ``fraction=1.0`` every layer.
    """
    heads = linear_layers(head)
    if fraction is None:
        return heads
    ordered = [*reversed(list(heads.items()))]
    ordered += [(f"encoder.{n}", layer) for n, layer in reversed(list(modifiable_layers(encoder).items()))]
    total = sum(p.numel() for p in (*head.parameters(), *encoder.parameters()))
    chosen: dict[str, ModifiableLayer] = {}
    taken = 0
    for name, layer in ordered:
        if taken >= fraction * total:
            break
        chosen[name] = layer
        taken += sum(p.numel() for p in layer.parameters())
    return chosen


@torch.no_grad()
def cumulative_input_covariance(
    layers: dict[str, ModifiableLayer], batches: Iterable[Any], forward: Callable[[Any], object]
) -> dict[str, torch.Tensor]:
    """Eq. 5: ``Ȳ = Σ_t z̄_t z̄_tᵀ`` (float64) of each layer's input, ``z̄_t`` its mean over batch ``t``;
    for a convolution ``Σ_t Σ_l p̄_{t,l} p̄_{t,l}ᵀ`` over the patches of the batch-mean input
    (:func:`mean_patches`).

    ``forward(batch)`` runs the network (the caller chooses eval mode); hooks read the inputs.
    """
    sums: dict[str, torch.Tensor] = {}

    def hook(name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], None]:
        def record(layer: ModifiableLayer, args: tuple[torch.Tensor, ...]) -> None:
            patches = mean_patches(layer, args[0].detach().double())
            outer = patches @ patches.T
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
def modify_gradients(layers: dict[str, ModifiableLayer], matrices: dict[str, torch.Tensor]) -> list[str]:
    """Eq. 8: ``W.grad ← W.grad @ T`` for each layer with a same-named ``T`` of matching input size
    (a convolution's gradient viewed as ``(out, in·kh·kw)``).

    Layers without such a ``T`` (e.g. a first head layer or stem whose input size differs between
    modalities; the code pairs layers by weight shape) keep their gradient. Returns the names modified.
    """
    modified = []
    for name, layer in layers.items():
        t = matrices.get(name)
        grad = layer.weight.grad
        if t is None or grad is None or t.shape[0] != input_size(layer):
            continue
        flat = grad.reshape(grad.shape[0], -1)
        grad.copy_((flat @ t.to(grad)).reshape(grad.shape))
        modified.append(name)
    return modified
