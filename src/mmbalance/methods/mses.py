"""MSES: modality-specific early stopping (Fujimori et al., ACPR 2019; methods.md §B9).

Implementation followed: the AGM repository's (``Lingy12/AGM_ICCV2023``, ``run/CREMAD_main.py``,
``--methods MSES``) as the spec describes it; that file was not available here, and the paper text
neither, so no equation numbers are cited.

Late fusion (the ``sum`` fusion: fused logits are the sum of the unimodal heads), trained with CE
on the fused logits. After every epoch, for each modality still training: its held-out loss
``L_t`` — here the **validation** loss of its head (the AGM code uses the test set) — is smoothed
with the previous *raw* value, ``L̃_t = w L_{t−1} + (1 − w) L_t`` (``w = 0.6``; ``L̃_0 = L_0``), and
the epoch of the minimum of ``L̃`` is tracked (strict improvement: the earliest minimum wins). When
``epoch − best_epoch ≥ patience`` the modality stops: its gradient multiplier becomes 0 (encoder and
unimodal head) for the rest of training, and the whole model is rolled back to the weights it had
at the end of that modality's best epoch. The weights of each modality's best epoch are kept in the
method state, so a resumed run rolls back exactly. The optimiser state (momentum) and the learning
rate schedule are not rolled back: the snapshot holds model weights only, as a model checkpoint
reload would. Modalities that stop at the same epoch roll back in modality order (the last one's
snapshot is loaded). When every modality has stopped, training steps do nothing.

A zero multiplier is applied exactly: a stopped branch's parameters get no gradient (so neither
SGD momentum nor weight decay moves them, which a gradient scaled by 0 would still allow) and its
modules run in eval mode during training (its BatchNorm statistics stay as they are).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mmbalance.engine.types import Batch, Context, ModelSpec
from mmbalance.methods._base import Logs, Method
from mmbalance.models.model import MultimodalModel
from mmbalance.registry import register_method


def smoothed_loss(previous: float | None, current: float, weight: float) -> float:
    """``L̃_t = w L_{t−1} + (1 − w) L_t`` with the previous raw loss; ``L_t`` itself at the first epoch."""
    return current if previous is None else weight * previous + (1.0 - weight) * current


def clone_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@dataclass
class Tracker:
    """One modality's early-stopping record."""

    previous: float | None = None
    best: float = float("inf")
    best_epoch: int = -1
    stopped: bool = False

    def observe(self, loss: float, epoch: int, weight: float) -> float:
        """Record ``L_t`` of ``epoch``; returns ``L̃_t`` (a new best moves ``best_epoch`` to ``epoch``)."""
        smoothed = smoothed_loss(self.previous, loss, weight)
        self.previous = loss
        if smoothed < self.best:
            self.best, self.best_epoch = smoothed, epoch
        return smoothed


@register_method("mses")
class MSES(Method):
    """Late fusion whose branches stop, one by one, at their own validation-loss minimum."""

    fusion = "sum"
    curves: ClassVar[dict[str, str]] = {"multiplier_{modality}": "gradient multiplier (MSES)"}
    dataset_settings: ClassVar[tuple[str, ...]] = ("patience",)

    @dataclass
    class Options:
        patience: int = 80
        smoothing: float = 0.6
        """Weight ``w`` of the previous epoch's raw loss in ``L̃_t``."""

    def __init__(self, options: dict[str, Any], spec: ModelSpec) -> None:
        super().__init__(options, spec)
        self.trackers = {m: Tracker() for m in self.modalities}
        self.snapshots: dict[str, dict[str, torch.Tensor]] = {}
        """Model weights at the end of each still-training modality's best epoch."""

    def multipliers(self) -> dict[str, float]:
        return {m: 0.0 if t.stopped else 1.0 for m, t in self.trackers.items()}

    def branch(self, model: MultimodalModel, modality: str) -> list[nn.Module]:
        """Encoder and unimodal head of ``modality``: what its multiplier scales."""
        return [model.encoders[modality], model.fusion.heads[modality]]

    def freeze_stopped(self, model: MultimodalModel) -> None:
        for modality, tracker in self.trackers.items():
            for module in self.branch(model, modality):
                module.requires_grad_(not tracker.stopped)
                if tracker.stopped:
                    module.eval()

    # --- training --------------------------------------------------------------------------
    def on_epoch_start(self, ctx: Context) -> Logs:
        return {f"multiplier_{m}": k for m, k in self.multipliers().items()}

    def training_step(self, batch: Batch, ctx: Context) -> Logs:
        self.freeze_stopped(ctx.model)
        if all(t.stopped for t in self.trackers.values()):
            with torch.no_grad(), ctx.precision.autocast():
                loss = F.cross_entropy(ctx.model(batch.inputs).fused, batch.labels)
            return {"loss": float(loss), "ce_fused": float(loss)}
        return super().training_step(batch, ctx)

    def on_epoch_end(self, ctx: Context, evaluation: dict[str, dict[str, dict[str, float]]]) -> Logs:
        """Smooth each training modality's validation loss, snapshot its best epoch, stop and roll back."""
        opts = self.options
        logs: Logs = {}
        stopping = []
        for modality, tracker in self.trackers.items():
            if tracker.stopped:
                continue
            smoothed = tracker.observe(evaluation["val"][modality]["loss"], ctx.epoch, opts.smoothing)
            logs[f"smoothed_val_loss_{modality}"] = smoothed
            if tracker.best_epoch == ctx.epoch:
                self.snapshots[modality] = clone_state(ctx.model)
            elif ctx.epoch - tracker.best_epoch >= opts.patience:
                stopping.append(modality)
        for modality in stopping:
            self.trackers[modality].stopped = True
            ctx.model.load_state_dict(self.snapshots.pop(modality))
        for modality, tracker in self.trackers.items():
            logs[f"best_epoch_{modality}"] = float(tracker.best_epoch)
            logs[f"stopped_{modality}"] = float(modality in stopping)
        return logs

    # --- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "trackers": {m: vars(t).copy() for m, t in self.trackers.items()},
            "snapshots": {m: {k: v.clone() for k, v in s.items()} for m, s in self.snapshots.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.trackers = {m: Tracker(**t) for m, t in state["trackers"].items()}
        self.snapshots = {m: {k: v.clone() for k, v in s.items()} for m, s in state["snapshots"].items()}
