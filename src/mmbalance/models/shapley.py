"""Shapley-style unimodal outputs from masked forward passes, with gradient-scaling identities (AGM).

Li et al., "Boosting Multi-modal Model Performance with Adaptive Gradient Modulation", ICCV 2023
(``Lingy12/AGM_ICCV2023``; methods.md §B16). For modalities ``M`` and a coalition ``S ⊆ M``,
``f(S)`` is the model's output with the inputs of the modalities outside ``S`` masked. The output
attributed to modality ``m`` is

``m_m = Σ_{S ⊆ M∖{m}} |S|!(|M|−|S|−1)!/|M|! · (f(S ∪ {m}) − f(S))`` with ``f(∅) := 0``,

i.e. the Shapley value plus ``f(∅)/|M|``, so that ``Σ_m m_m = f(M)``. For two modalities this is the
repo's ``m_a = ½(f(a,v) − f(0,v) + f(a,0))``, ``m_v = ½(f(a,v) − f(a,0) + f(0,v))``; for three it
is BalanceBenchmark's ``GradMod`` (weights 1/3, 1/6, 1/3).

As in the repo, ``f(M)`` is the ordinary forward pass (in the model's current mode) and every masked
pass runs with all modules in eval mode: BatchNorm normalises with its running statistics and does
not update them (so zero inputs never enter the statistics), which means that during training the
masked outputs come from the running-average network while ``f(M)`` uses batch statistics; at
evaluation every pass is in eval mode. ``masked_gradients=False`` (repo) runs the masked passes
without autograd; ``True`` lets gradients flow through them too.

A masked input is the stored input whose *normalised* value is zero, as the repo's ``zeros_like``
on its already-normalised tensors: the encoder says which input that is (``masked_input``: the
frame and image encoders' mean colour, ImageNet's or the preset's; the clip encoder's ImageNet
mean colour, 0 for ``unit``, 127.5 for ``flow``; CLIP's text tower the empty text, whose tokens
have no zero); zeros for an encoder that does not (spectrograms, BERT tokens).
Eval-mode passes treat samples independently, so each masked modality is encoded once (one sample)
and each real input once, then the fusion combines them per coalition (the same values as the
repo's separate full passes, with fewer encoder calls).
"""

from __future__ import annotations

import contextlib
import itertools
import math

import torch
from torch import nn

from mmbalance.models.fusions._base import Fusion, FusionOutput
from mmbalance.models.model import ModelOutput, MultimodalModel, in_mode

Coalition = frozenset[str]


def masked_input(encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """An input of ``x``'s shape whose normalised value is zero: the encoder's own ``masked_input``
    (the image and frame encoders' mean colour, ...), else zeros (spectrograms, BERT tokens)."""
    own = getattr(encoder, "masked_input", None)
    return own(x) if own is not None else torch.zeros_like(x)


def shapley_outputs(outputs: dict[Coalition, torch.Tensor], modalities: list[str]) -> dict[str, torch.Tensor]:
    """``m_m`` for every modality from the outputs ``f(S)`` of every non-empty coalition ``S``."""
    n = len(modalities)
    result = {}
    for m in modalities:
        others = [o for o in modalities if o != m]
        total = torch.zeros_like(outputs[frozenset(modalities)])
        for size in range(n):
            weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
            for members in itertools.combinations(others, size):
                coalition = frozenset(members)
                with_m = outputs[coalition | {m}]
                total = total + weight * (with_m - outputs[coalition] if coalition else with_m)
        result[m] = total
    return result


class GradientScale(nn.Module):
    """Identity whose backward hook multiplies the gradient by ``scale`` (the repo's ``Modality_out``)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = 1.0
        self.register_full_backward_hook(self.scale_gradient)

    def scale_gradient(
        self, module: nn.Module, grad_input: tuple[torch.Tensor | None, ...], grad_output: tuple
    ) -> tuple[torch.Tensor | None, ...]:
        return tuple(None if g is None else g * self.scale for g in grad_input)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class ShapleyModel(MultimodalModel):
    """A multimodal model whose per-modality outputs are the Shapley outputs ``m_m`` behind ``scales[m]``.

    ``fused`` is ``f(M)``; ``modality[m]`` is ``m_m`` after its :class:`GradientScale`, so a loss on
    ``Σ_m modality[m]`` (= ``f(M)``) sends modality ``m``'s share of the gradient through ``scales[m]``.
    """

    def __init__(
        self,
        encoders: dict[str, nn.Module],
        fusion: Fusion,
        masked_gradients: bool = False,
    ) -> None:
        super().__init__(encoders, fusion)
        self.masked_gradients = masked_gradients
        self.scales = nn.ModuleDict({m: GradientScale() for m in self.modalities})

    def masked(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        """The masked input of ``modality`` (:func:`masked_input` of its encoder)."""
        return masked_input(self.encoders[modality], x)

    def coalition_outputs(self, inputs: dict[str, torch.Tensor]) -> dict[Coalition, torch.Tensor]:
        """``f(S)`` of every non-empty proper coalition, all modules in eval mode."""
        grad = contextlib.nullcontext() if self.masked_gradients else torch.no_grad()
        with in_mode(self, False), grad:
            present = self.encode(inputs)
            absent = {m: self.encoders[m](self.masked(m, inputs[m][:1])) for m in self.modalities}
            outputs = {}
            for size in range(1, len(self.modalities)):
                for members in itertools.combinations(self.modalities, size):
                    features = {
                        m: present[m] if m in members else absent[m].expand_as(present[m])
                        for m in self.modalities
                    }
                    outputs[frozenset(members)] = self.fusion(features).fused
        return outputs

    def forward(self, inputs: dict[str, torch.Tensor]) -> ModelOutput:
        features = self.encode(inputs)
        full = self.fusion(features).fused
        outputs = self.coalition_outputs(inputs)
        outputs[frozenset(self.modalities)] = full
        contributions = shapley_outputs(outputs, self.modalities)
        modality = {m: self.scales[m](contributions[m]) for m in self.modalities}
        return ModelOutput(features, FusionOutput(full, modality))
