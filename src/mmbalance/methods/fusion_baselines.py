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
from typing import Any

import torch
import torch.nn.functional as F

from mmbalance.engine.types import Batch, Context, ModelSpec
from mmbalance.errors import ConfigError
from mmbalance.methods._base import Logs, Method
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
    """Feature concatenation + one linear layer (§B2); unimodal logits from the split weight.

    ``uniform_labels`` is the label-fitting experiment of LFM §1 (Figure 1): the target mixes the
    one-hot label with the uniform label ``1/c``, so the loss is ``(1 − u)·L_S + u·L_U`` — CE on the
    one-hot labels (``u = 0``, plain Concat), on uniform labels (``u = 1``, "label free") or LFM's
    ``0.7 L_S + 0.3 L_U`` (``u = 0.3``; label smoothing with ε = u, as the paper says). CE is linear
    in the target, so this is ``F.cross_entropy(..., label_smoothing=u)``.
    """

    fusion = "concat"

    @dataclass
    class Options:
        uniform_labels: float = 0.0
        """Weight ``u`` of the uniform-label loss L_U (0: one-hot labels only)."""

    def __init__(self, options: dict[str, Any], spec: ModelSpec) -> None:
        super().__init__(options, spec)
        if not 0.0 <= self.options.uniform_labels <= 1.0:
            raise ConfigError(
                f"methods.concat.uniform_labels: want a weight in [0, 1], got {self.options.uniform_labels}"
            )

    def loss(self, outputs: ModelOutput, batch: Batch, ctx: Context) -> tuple[torch.Tensor, Logs]:
        loss = F.cross_entropy(outputs.fused, batch.labels, label_smoothing=self.options.uniform_labels)
        return loss, {"ce_fused": float(loss.detach())}


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
