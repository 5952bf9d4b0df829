"""Fusion baselines trained with plain cross-entropy on the fused output (methods.md §B1–B7).

Each differs only in its fusion module, so each is a one-line plugin. FiLM (``affine``) and the
gated fusion (``gated``) are defined for a pair — one modality conditions or gates the other; with
more modalities the first acts on the concatenation of the others
(:mod:`mmbalance.models.fusions.conditional`).
``gated`` is the gated reading of LFM's "Channel" row (OGM-GE ``GatedFusion``); the MMTM
reading, the one LFM cites, is the method ``channel`` (:mod:`mmbalance.methods.channel`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mmbalance.methods.base import Batch, Context, Logs, Method
from mmbalance.models.model import ModelOutput
from mmbalance.registry import register_method


@register_method("unimodal")
class Unimodal(Method):
    """One encoder + linear head per modality, each trained alone (Unimodal-1/2/…; §B1).

    The per-modality CE losses are summed; since no parameter is shared the gradients are
    exactly those of separate models. Each head is selected on its own validation accuracy.
    The "fused" row averages the heads' probabilities (reported for completeness only).
    """

    fusion = "none"
    select_per_head = True


@register_method("concat")
class Concat(Method):
    """Feature concatenation + one linear layer (§B2); unimodal logits from the split weight."""

    fusion = "concat"


@register_method("sum")
class Sum(Method):
    """Sum of unimodal linear heads' logits (§B6)."""

    fusion = "sum"


@register_method("affine")
class Affine(Method):
    """FiLM: the first modality predicts a scale and shift of the second (§B3; of the others when more)."""

    fusion = "film"


@register_method("gated")
class Gated(Method):
    """Gated fusion: a sigmoid gate from the first modality on the second (§B4, gated reading; on the
    others when more)."""

    fusion = "gated"


@register_method("weight")
class Weight(Method):
    """Prediction weighting by learned attention over modalities (CMML; §B7).

    Loss as in OMML's supervised part: ``fused_weight·CE(o) + modality_weight·Σ_m CE(p_m)``.
    """

    fusion = "weight"

    @dataclass
    class Options:
        fused_weight: float = 3.0
        modality_weight: float = 1.0

    def loss(self, outputs: ModelOutput, batch: Batch, ctx: Context) -> tuple[torch.Tensor, Logs]:
        y = batch.labels
        fused = F.cross_entropy(outputs.fused, y)
        unimodal = {m: F.cross_entropy(outputs.modality[m], y) for m in self.modalities}
        loss = self.options.fused_weight * fused + self.options.modality_weight * sum(unimodal.values())
        logs = {"ce_fused": float(fused.detach())}
        logs.update({f"ce_{m}": float(v.detach()) for m, v in unimodal.items()})
        attention = outputs.fusion.extras["attention"].detach().mean(0)
        logs.update({f"attention_{m}": float(a) for m, a in zip(self.modalities, attention, strict=True)})
        return loss, logs
