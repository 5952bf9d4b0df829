"""Concat, Sum and unimodal heads (OGM-GE's ``ConcatFusion``/``SumFusion``; methods.md §B1, B2, B6)."""

from __future__ import annotations

import torch
from torch import nn

from mmbalance.models.fusions._base import Fusion, FusionOutput
from mmbalance.registry import register_fusion


@register_fusion("concat")
class ConcatFusion(Fusion):
    """``o = W [z_1; …; z_M] + b``; unimodal logits from the column blocks of W.

    OGM-GE convention (methods.md §B2): ``o_m = W[:, block_m] z_m + b / M``, so the
    per-modality logits sum exactly to the fused logits.
    """

    def __init__(self, dims: dict[str, int], num_classes: int) -> None:
        super().__init__(dims, num_classes)
        self.fc = nn.Linear(sum(dims.values()), num_classes)

    def forward(self, features: dict[str, torch.Tensor]) -> FusionOutput:
        parts = [features[m] for m in self.modalities]
        fused = self.fc(torch.cat(parts, dim=1))
        modality, start = {}, 0
        share = self.fc.bias / len(parts)
        for m, z in zip(self.modalities, parts, strict=True):
            block = self.fc.weight[:, start : start + z.shape[1]]
            modality[m] = z @ block.t() + share
            start += z.shape[1]
        return FusionOutput(fused, modality)


@register_fusion("sum")
class SumFusion(Fusion):
    """``o = Σ_m (W_m z_m + b_m)``: the fused logits are the sum of unimodal heads."""

    def __init__(self, dims: dict[str, int], num_classes: int) -> None:
        super().__init__(dims, num_classes)
        self.heads = nn.ModuleDict({m: nn.Linear(d, num_classes) for m, d in dims.items()})

    def forward(self, features: dict[str, torch.Tensor]) -> FusionOutput:
        modality = {m: self.heads[m](features[m]) for m in self.modalities}
        return FusionOutput(torch.stack(list(modality.values())).sum(0), modality)


@register_fusion("none")
class IndependentHeads(SumFusion):
    """One linear head per modality and no joint head (Unimodal baselines, methods.md §B1)."""

    def forward(self, features: dict[str, torch.Tensor]) -> FusionOutput:
        return FusionOutput(None, {m: self.heads[m](features[m]) for m in self.modalities})
