"""G-Blend: gradient blending by the overfitting-to-generalisation ratio (OGR).

Wang, Tran & Feiszli, "What Makes Training Multi-modal Classification Networks Hard?", CVPR 2020
(no official code; BalanceBenchmark ``GBlending`` at 4c1482f; methods.md §B10).

Model: fusion ``concat_heads`` — one linear head per modality next to the fused concat head.
Loss (§3.3): ``Σ_k w_k CE(o_k, y)`` over ``k ∈ {modalities…, fused}``.

Weights (§3.2, Eq. 5–6, approximated as in §3.3): for each ``k`` a deep copy of the current model is
trained on ``CE(o_k, y)`` alone for ``super_epoch`` epochs on the training split. ``o_k`` of a
modality reads only that modality's encoder and head, so the copy is the unimodal network with the
other modalities' inputs absent (they are not computed). Before and after, per-sample **mean**
losses of ``o_k`` are measured on the training and on the validation split (eval mode); with
``O = L_val − L_train``:

``ΔG_k = L_val(start) − L_val(end)``, ``ΔO_k = O(end) − O(start)``, ``w_k ∝ |ΔG_k / ΔO_k²|``,
normalised to sum 1 (:func:`blend_weights`).

Schedules (``schedule``):

* ``offline`` (default; the paper's Algorithm 1 and main experiments): one estimate, from the
  initial model, before the first epoch.
* ``online`` (§3.3's online G-Blend; BalanceBenchmark's ``method: online``): re-estimated from the
  current model at the start of every ``super_epoch``-th epoch.

Choices and deviations:

* BalanceBenchmark compares the *summed* training loss over batches (taken while training, in train
  mode) with the summed test loss — different scales; here both are per-sample means of the same
  model in eval mode, on the validation split (never the test split). Its ``offline`` trains the
  copies for the whole run (``super_epoch = epochs``); here ``super_epoch`` applies to both schedules.
* The copies train with a fresh optimiser of the run's kind and current hyper-parameters (no momentum
  state), on the batches of epochs ``e … e+N−1`` of the training order
  (:func:`mmbalance.engine.copies.train_copy`); they run under
  ``torch.random.fork_rng``, so the main run's random stream is the same with or without them and a
  resumed run re-estimates identically.
* ``ΔO_k²`` below 1e-12 is taken as 1e-12; if every ``ΔG_k`` is 0 the weights are uniform.
* Without data splits in the context (unit tests of a single step) the weights keep their uniform
  initial value.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mmbalance.engine.copies import train_copy
from mmbalance.engine.types import Batch, Context, ModelSpec
from mmbalance.errors import ConfigError
from mmbalance.methods._base import Logs, Method
from mmbalance.models.model import ModelOutput
from mmbalance.registry import register_method

FUSED = "fused"
MIN_SQUARED_OVERFIT = 1e-12


@dataclass(frozen=True)
class OGRLosses:
    """Per-sample mean losses of one output before (``start``) and after (``end``) a super-epoch."""

    train_start: float
    val_start: float
    train_end: float
    val_end: float

    @property
    def generalisation(self) -> float:
        """``ΔG = L_val(start) − L_val(end)``."""
        return self.val_start - self.val_end

    @property
    def overfitting(self) -> float:
        """``ΔO = O(end) − O(start)`` with ``O = L_val − L_train``."""
        return (self.val_end - self.train_end) - (self.val_start - self.train_start)


def blend_weights(losses: dict[str, OGRLosses]) -> dict[str, float]:
    """``w_k = |ΔG_k / ΔO_k²| / Σ_j |ΔG_j / ΔO_j²|`` (paper Eq. 6 with the §3.3 estimates)."""
    raw = {
        k: abs(ogr.generalisation / max(ogr.overfitting**2, MIN_SQUARED_OVERFIT)) for k, ogr in losses.items()
    }
    total = sum(raw.values())
    if total == 0:
        return {k: 1.0 / len(raw) for k in raw}
    return {k: r / total for k, r in raw.items()}


def output_logits(model: nn.Module, output: str, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """``o_k``: the fused head on every modality, or modality ``k``'s head on its encoder alone."""
    if output == FUSED:
        return model(inputs).fused
    return model.fusion.heads[output](model.encoders[output](inputs[output]))


@torch.no_grad()
def mean_loss(model: nn.Module, output: str, batches: Iterable[Batch]) -> float:
    """Per-sample mean CE of ``o_k`` over ``batches`` in eval mode (the model's mode is restored)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for batch in batches:
        logits = output_logits(model, output, batch.inputs)
        total += float(F.cross_entropy(logits.float(), batch.labels, reduction="sum"))
        count += len(batch)
    model.train(was_training)
    return total / count


@register_method("gblend")
class GBlend(Method):
    """Weighted sum of unimodal and fused CE with OGR-estimated weights."""

    fusion = "concat_heads"
    curves: ClassVar[dict[str, str]] = {
        "blend_weight_{modality}": "G-Blend loss weight w_m",
        "blend_weight_fused": "G-Blend loss weight of the fused head",
    }

    @dataclass
    class Options:
        schedule: str = field(default="offline", metadata={"choices": ("offline", "online")})
        super_epoch: int = 10
        """Epochs each copy trains per estimate; ``online`` re-estimates every ``super_epoch`` epochs."""

    def __init__(self, options: dict[str, Any], spec: ModelSpec) -> None:
        super().__init__(options, spec)
        if self.options.super_epoch < 1:
            raise ConfigError(
                f"methods.gblend.super_epoch: want a positive integer, got {self.options.super_epoch}"
            )
        self.outputs = [*self.modalities, FUSED]
        self.weights = {k: 1.0 / len(self.outputs) for k in self.outputs}

    # --- weights -----------------------------------------------------------------------------
    def estimate_due(self, epoch: int) -> bool:
        if self.options.schedule == "offline":
            return epoch == 0
        return epoch % self.options.super_epoch == 0

    def on_epoch_start(self, ctx: Context) -> Logs:
        logs: Logs = {}
        if self.estimate_due(ctx.epoch) and ctx.data is not None:
            losses = self.estimate(ctx)
            self.weights = blend_weights(losses)
            for k, ogr in losses.items():
                logs.update({f"ogr_gain_{k}": ogr.generalisation, f"ogr_overfit_{k}": ogr.overfitting})
        logs.update({f"blend_weight_{k}": w for k, w in self.weights.items()})
        return logs

    def estimate(self, ctx: Context) -> dict[str, OGRLosses]:
        """The OGR losses of every output, each from its own copy of the current model."""
        devices = [ctx.device] if ctx.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            return {k: self.super_epoch_losses(k, ctx) for k in self.outputs}

    def super_epoch_losses(self, output: str, ctx: Context) -> OGRLosses:
        """Train a copy on ``CE(o_k)`` for ``super_epoch`` epochs; mean losses before and after."""
        data = ctx.data
        train_start = mean_loss(ctx.model, output, data["train"].epoch(0))
        val_start = mean_loss(ctx.model, output, data["val"].epoch(0))
        model = train_copy(
            ctx.model,
            ctx.optimizer,
            data["train"],
            ctx.epoch,
            self.options.super_epoch,
            lambda net, batch: F.cross_entropy(output_logits(net, output, batch.inputs), batch.labels),
            ctx.precision,
        )
        train_end = mean_loss(model, output, data["train"].epoch(0))
        val_end = mean_loss(model, output, data["val"].epoch(0))
        return OGRLosses(train_start, val_start, train_end, val_end)

    # --- training ----------------------------------------------------------------------------
    def loss(self, outputs: ModelOutput, batch: Batch, ctx: Context) -> tuple[torch.Tensor, Logs]:
        """``Σ_k w_k CE(o_k, y)`` over the unimodal heads and the fused head."""
        logits = {FUSED: outputs.fused, **outputs.modality}
        losses = {k: F.cross_entropy(logits[k], batch.labels) for k in self.outputs}
        total = sum(self.weights[k] * losses[k] for k in self.outputs)
        return total, {f"ce_{k}": float(v.detach()) for k, v in losses.items()}

    # --- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"weights": dict(self.weights)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.weights = {k: float(w) for k, w in state["weights"].items()}
