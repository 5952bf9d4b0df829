"""FiLM (Affine) and gated fusion (OGM-GE ``FiLM``/``GatedFusion``; methods.md §B3, §B4).

Both are defined for a pair: the first modality conditions (FiLM) or gates (gated) the second. With
more modalities (NVGesture, where LFM Table 1 reports Affine without saying how) the first modality
acts on the concatenation ``[z_2; …; z_M]`` of the others — our generalisation, documented in
docs/methods.md. For two modalities the modules, their parameter shapes and their initialisation are
those of the pair definition.
"""

from __future__ import annotations

import torch
from torch import nn

from mmbalance.models.fusions._base import FusionOutput, ProbedFusion, require_at_least_two
from mmbalance.registry import register_fusion


def split_first(dims: dict[str, int], name: str) -> tuple[str, list[str], int]:
    """The acting (first) modality, the modalities acted on and their concatenated width."""
    first, *rest = require_at_least_two(dims, name)
    return first, rest, sum(dims[m] for m in rest)


@register_fusion("film")
class FiLMFusion(ProbedFusion):
    """``[γ; β] = W_c z_1 + b_c``, ``o = W (γ ⊙ z_2 + β) + b``: the first modality conditions the second
    (with more modalities, ``z_2`` is the concatenation of the others)."""

    def __init__(self, dims: dict[str, int], num_classes: int) -> None:
        super().__init__(dims, num_classes)
        self.condition, self.targets, width = split_first(dims, "film")
        self.film = nn.Linear(dims[self.condition], 2 * width)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, features: dict[str, torch.Tensor]) -> FusionOutput:
        gamma, beta = self.film(features[self.condition]).chunk(2, dim=1)
        target = torch.cat([features[m] for m in self.targets], dim=1)
        fused = self.fc(gamma * target + beta)
        return FusionOutput(fused, self.probe_logits(features))


@register_fusion("gated")
class GatedFusion(ProbedFusion):
    """``o = W (σ(W_1 z_1) ⊙ W_2 z_2) + b``: the first modality gates the second (Kiela et al.; with
    more modalities, ``z_2`` is the concatenation of the others)."""

    def __init__(self, dims: dict[str, int], num_classes: int, hidden: int = 512) -> None:
        super().__init__(dims, num_classes)
        self.gate, self.values, width = split_first(dims, "gated")
        self.gate_fc = nn.Linear(dims[self.gate], hidden)
        self.value_fc = nn.Linear(width, hidden)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, features: dict[str, torch.Tensor]) -> FusionOutput:
        value = torch.cat([features[m] for m in self.values], dim=1)
        gated = torch.sigmoid(self.gate_fc(features[self.gate])) * self.value_fc(value)
        return FusionOutput(self.fc(gated), self.probe_logits(features))
