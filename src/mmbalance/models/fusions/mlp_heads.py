"""Per-modality 3-layer classification heads, no joint head (MIE's ψ_m; methods.md §A2.1).

``ψ_m = FC(D×256) → ReLU → FC(256×64) → FC(64×C)`` with no activation between the last two
layers, as in the paper and the IGM code. The fused prediction is left to the method
(late fusion of the per-modality probabilities).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import nn

from mmbalance.models.fusions._base import Fusion, FusionOutput
from mmbalance.registry import register_fusion


def mlp_head(in_dim: int, hidden: Sequence[int], num_classes: int) -> nn.Sequential:
    """``Linear(in, h_0) → ReLU → Linear(h_0, h_1) → … → Linear(h_last, C)``: ReLU only after the first."""
    dims = [in_dim, *hidden, num_classes]
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(pairwise(dims)):
        layers.append(nn.Linear(d_in, d_out))
        if i == 0 and len(dims) > 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


@register_fusion("mlp_heads")
class MLPHeads(Fusion):
    """One ``mlp_head`` per modality; ``fused`` is ``None``."""

    def __init__(self, dims: dict[str, int], num_classes: int, hidden: Sequence[int] = (256, 64)) -> None:
        super().__init__(dims, num_classes)
        self.heads = nn.ModuleDict({m: mlp_head(d, hidden, num_classes) for m, d in dims.items()})

    def forward(self, features: dict[str, torch.Tensor]) -> FusionOutput:
        return FusionOutput(None, {m: self.heads[m](features[m]) for m in self.modalities})
