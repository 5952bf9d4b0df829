"""Per-modality linear heads plus a joint head on the concatenated features (methods.md §B8, §B13).

``o_m = W_m z_m + b_m`` for each modality and ``o_joint = MLP([z_1; …; z_M])``, the MLP laid out as
:func:`~mmbalance.models.fusions.mlp_heads.mlp_head` (``hidden=()``: one linear layer, ETMC's
pseudo-view classifier with the code's default ``--hidden []``; ``hidden=(64,)``:
``Linear → ReLU → Linear``, DOMFN's fused network). ``fused`` holds the joint head's output; how
the heads are combined into a prediction is the method's business.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mmbalance.models.fusions._base import Fusion, FusionOutput
from mmbalance.models.fusions.mlp_heads import mlp_head
from mmbalance.registry import register_fusion


@register_fusion("unimodal_and_joint")
class UnimodalAndJointHeads(Fusion):
    """One linear head per modality and one joint head over ``[z_1; …; z_M]``."""

    def __init__(self, dims: dict[str, int], num_classes: int, hidden: Sequence[int] = ()) -> None:
        super().__init__(dims, num_classes)
        self.heads = nn.ModuleDict({m: nn.Linear(d, num_classes) for m, d in dims.items()})
        self.joint = mlp_head(sum(dims.values()), hidden, num_classes)

    def forward(self, features: dict[str, torch.Tensor]) -> FusionOutput:
        modality = {m: self.heads[m](features[m]) for m in self.modalities}
        joint = self.joint(torch.cat([features[m] for m in self.modalities], dim=1))
        return FusionOutput(joint, modality)
