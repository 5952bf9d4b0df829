"""ReconBoost: modality-alternating boosting with reconcilement and global rectification.

Hua, Xu, Bao, Yang & Huang, "ReconBoost: Boosting Can Achieve Modality Reconcilement", ICML 2024
(official code ``huacong/ReconBoost`` at ``14ab57a``, ``train.py`` and ``models/dynamic_net.py``;
methods.md §B18). Model: fusion ``boosted_ensemble``, ``g_m = H(φ_m(x_m))`` with one shared head
``H = Linear(D→256) → ReLU → Linear(256→C)`` and the ensemble ``F = β Σ_m g_m`` (β learnable,
initially ``boost_rate`` = 1.0).

The loop's epochs are cut into stages of ``epochs_per_stage + correct_epochs`` epochs; stage ``s``
picks modality ``m = modalities[s mod M]`` (the code's fixed alternation a, v, a, …) and has two phases:

1. *Boosting* (``epochs_per_stage`` epochs): only ``φ_m`` and ``H`` are trained, on the
   reconcilement loss ``L = −w1·mean_k y_k log softmax(g_m)_k + w2·mean_k y_k softmax(F_{−m})_k
   log softmax(g_m)_k`` (:func:`reconcilement_loss`; the code's ``boosting_loss``) plus, from stage 1
   on, the memory-consolidation ("GA") term ``α·MSE(softmax(g_m), softmax(g_{m'}))`` with ``m'`` the
   previous stage's modality (:func:`consolidation_loss`). ``F_{−m} = β Σ g_j`` over the modalities
   already in the ensemble other than ``m``, without gradient; while none is (stage 0) the code's
   ensemble is the scalar ``c0`` whose softmax over its single column is 1, so the second term reads
   ``w2·mean_k y_k log softmax(g_m)_k``.
2. *Global rectification* (``correct_epochs`` epochs): ``CE(β Σ_{j ∈ E} g_j, y)`` updates every
   encoder in the ensemble ``E``, ``H`` and ``β``. ``E`` holds the modalities of stages ``0…s``.

Parameters outside the phase have ``requires_grad`` off, so they receive no gradient and the
optimiser leaves them (and their momentum) alone. The code builds a new SGD optimiser for every
phase; ``reset_optimizer_state`` (default on) clears the momentum buffers at each phase start.
The other modalities' forward passes in the boosting phase run in training mode without gradient,
as the code's ensemble forward does (their BatchNorm statistics follow the batch); the passes that
give ``F_{−m}`` and ``g_{m'}`` are one forward here (two in the code).

Paper-vs-code variants and protocol choices (methods.md §B18):

* ``ga``: ``on`` (paper: the MSE's gradient flows into ``g_m``, ``g_{m'}`` a fixed target) |
  ``off`` (code and BalanceBenchmark: both arguments detached, so the term is logged but adds no
  gradient).
* The code evaluates only after each stage's rectification; the loop evaluates every epoch, so the
  fused head is ``β Σ`` over the modalities whose first stage has begun (stage 0: ``β g_a`` — the
  code's ensemble would still be the constant ``c0``).
* The code's ×0.1 learning-rate drop every 30 stages (CREMA-D) belongs to the shared schedule
  (``train.scheduler``), as do its SGD hyper-parameters (lr 0.01, momentum 0.9, wd 5e-4).
* Not reproduced: ``--use_pretrain`` (encoders initialised from OGM-GE checkpoints) and the saving
  of the best-test stage.

More than two modalities: the alternation cycles over all of them (the code's MOSEI order); ``m'``
is the previous stage's modality.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mmbalance.engine.types import Batch, Context, ModelSpec
from mmbalance.errors import ConfigError
from mmbalance.methods._base import Logs, Method
from mmbalance.models.model import ModelOutput, MultimodalModel
from mmbalance.registry import register_method

BOOST, CORRECT = "boost", "correct"


@dataclass(frozen=True)
class Phase:
    """Epoch ``first`` opens phase ``kind`` of stage ``stage``, which picks ``modality``."""

    stage: int
    modality: str
    kind: str
    first: int


def phase_at(epoch: int, epochs_per_stage: int, correct_epochs: int, modalities: list[str]) -> Phase:
    """The stage and phase of loop epoch ``epoch``: each stage is boosting then rectification epochs."""
    length = epochs_per_stage + correct_epochs
    stage, within = divmod(epoch, length)
    modality = modalities[stage % len(modalities)]
    if within < epochs_per_stage:
        return Phase(stage, modality, BOOST, stage * length)
    return Phase(stage, modality, CORRECT, stage * length + epochs_per_stage)


def reconcilement_loss(
    logits: torch.Tensor, rest: torch.Tensor | None, y: torch.Tensor, w1: float, w2: float
) -> torch.Tensor:
    """``mean_i [−w1·mean_k y_ik log p_ik + w2·mean_k y_ik q_ik log p_ik]`` (the code's ``boosting_loss``).

    ``p = softmax(logits)`` of the trained learner ``g_m``; ``q = softmax(rest)`` of the ensemble
    without it, ``F_{−m}`` (detached), or 1 when the ensemble is still empty (the code's ``c0``).
    """
    log_p = logits.log_softmax(dim=1)
    onehot = F.one_hot(y, logits.shape[1]).to(log_p.dtype)
    agreement = torch.ones_like(log_p) if rest is None else rest.detach().softmax(dim=1)
    per_sample = (-w1 * onehot * log_p + w2 * onehot * agreement * log_p).mean(dim=1)
    return per_sample.mean()


def consolidation_loss(logits: torch.Tensor, previous: torch.Tensor, ga: str) -> torch.Tensor:
    """``MSE(softmax(g_m), softmax(g_{m'}))``: gradient into ``g_m`` only (``on``) or none (``off``)."""
    current = logits.softmax(dim=1)
    if ga == "off":
        current = current.detach()
    return F.mse_loss(current, previous.detach().softmax(dim=1))


@register_method("reconboost")
class ReconBoost(Method):
    """Stage-wise boosting over modalities on a shared head, each stage closed by global rectification."""

    fusion = "boosted_ensemble"
    dataset_settings: ClassVar[tuple[str, ...]] = ("epochs_per_stage", "correct_epochs")

    @dataclass
    class Options:
        epochs_per_stage: int = 4
        correct_epochs: int = 4
        weight1: float = 5.0
        weight2: float = 1.0
        alpha: float = 0.5
        ga: str = field(default="on", metadata={"choices": ("on", "off")})
        boost_rate: float = 1.0
        head_hidden: list = field(default_factory=lambda: [256])
        reset_optimizer_state: bool = True

    def __init__(self, options: dict[str, Any], spec: ModelSpec) -> None:
        super().__init__(options, spec)
        opts = self.options
        if opts.epochs_per_stage < 1 or opts.correct_epochs < 0:
            raise ConfigError(
                "methods.reconboost: want epochs_per_stage >= 1 and correct_epochs >= 0, got "
                f"{opts.epochs_per_stage} and {opts.correct_epochs}"
            )
        if len(self.modalities) < 2:
            raise ConfigError(
                f"methods.reconboost: boosting over modalities needs two or more, got {self.modalities}"
            )
        self.stage = 0

    def fusion_options(self) -> dict[str, Any]:
        return {"hidden": tuple(self.options.head_hidden), "boost_rate": self.options.boost_rate}

    # --- schedule ----------------------------------------------------------------------------
    def phase_at(self, epoch: int) -> Phase:
        return phase_at(epoch, self.options.epochs_per_stage, self.options.correct_epochs, self.modalities)

    def ensemble(self, stage: int) -> list[str]:
        """Modalities in the ensemble once stage ``stage`` has begun: those of stages ``0…stage``."""
        return self.modalities[: min(stage + 1, len(self.modalities))]

    def trained(self, model: MultimodalModel, phase: Phase) -> list[nn.Parameter]:
        """The phase's parameters: ``φ_m`` and ``H`` (boosting); the ensemble's encoders, ``H`` and β —
        each encoder with its projection to the shared head's width, where it has one."""
        fusion = model.fusion
        members = [phase.modality] if phase.kind == BOOST else self.ensemble(phase.stage)
        branches = [
            p for m in members for p in (*model.encoders[m].parameters(), *fusion.projections[m].parameters())
        ]
        if phase.kind == BOOST:
            return [*branches, *fusion.head.parameters()]
        return [*branches, *fusion.head.parameters(), fusion.boost_rate]

    def enter(self, model: MultimodalModel, phase: Phase) -> None:
        """Only the phase's parameters require gradients."""
        self.stage = phase.stage
        trained = {id(p) for p in self.trained(model, phase)}
        for p in model.parameters():
            p.requires_grad_(id(p) in trained)

    def on_epoch_start(self, ctx: Context) -> Logs:
        phase = self.phase_at(ctx.epoch)
        self.enter(ctx.model, phase)
        if self.options.reset_optimizer_state and ctx.epoch == phase.first:
            ctx.optimizer.state.clear()
        return {
            "stage": float(phase.stage),
            "stage_modality": float(self.modalities.index(phase.modality)),
            "rectification": float(phase.kind == CORRECT),
            "boost_rate": float(ctx.model.fusion.boost_rate.detach()),
        }

    # --- training ----------------------------------------------------------------------------
    def training_step(self, batch: Batch, ctx: Context) -> Logs:
        phase = self.phase_at(ctx.epoch)
        self.enter(ctx.model, phase)
        with ctx.precision.autocast():
            if phase.kind == BOOST:
                loss, logs = self.boosting_loss(ctx.model, batch, phase)
            else:
                loss, logs = self.rectification_loss(ctx.model, batch, phase)
        ctx.optimizer.zero_grad(set_to_none=True)
        ctx.precision.backward(loss)
        ctx.precision.step(ctx.optimizer)
        return {"loss": float(loss.detach()), **logs}

    def boosting_loss(self, model: MultimodalModel, batch: Batch, phase: Phase) -> tuple[torch.Tensor, Logs]:
        """Reconcilement loss of ``g_m`` plus ``α``·consolidation after stage 0 (phase 1)."""
        opts, m, y = self.options, phase.modality, batch.labels
        fusion = model.fusion
        logits = fusion.logits(m, model.encoders[m](batch.inputs[m]))
        others = [j for j in self.ensemble(phase.stage - 1) if j != m] if phase.stage > 0 else []
        with torch.no_grad():
            other_logits = {j: fusion.logits(j, model.encoders[j](batch.inputs[j])) for j in others}
        rest = model.fusion.boost_rate * torch.stack(list(other_logits.values())).sum(0) if others else None
        reconcile = reconcilement_loss(logits, rest, y, opts.weight1, opts.weight2)
        logs = {"reconcile": float(reconcile.detach())}
        loss = reconcile
        if phase.stage > 0:
            previous = self.modalities[(phase.stage - 1) % len(self.modalities)]
            consolidation = consolidation_loss(logits, other_logits[previous], opts.ga)
            loss = loss + opts.alpha * consolidation
            logs["consolidation"] = float(consolidation.detach())
        return loss, logs

    def rectification_loss(
        self, model: MultimodalModel, batch: Batch, phase: Phase
    ) -> tuple[torch.Tensor, Logs]:
        """``CE(β Σ_{j ∈ E} g_j, y)`` over the ensemble ``E`` (phase 2)."""
        members = self.ensemble(phase.stage)
        fusion = model.fusion
        logits = torch.stack([fusion.logits(j, model.encoders[j](batch.inputs[j])) for j in members]).sum(0)
        loss = F.cross_entropy(model.fusion.boost_rate * logits, batch.labels)
        return loss, {"ensemble_ce": float(loss.detach())}

    # --- inference ---------------------------------------------------------------------------
    def predict(self, outputs: ModelOutput) -> dict[str, torch.Tensor]:
        """Fused: ``softmax(β Σ_{j ∈ E} g_j)`` over the current ensemble; per modality ``softmax(g_m)``."""
        members = self.ensemble(self.stage)
        beta = outputs.fusion.extras["boost_rate"]
        fused = beta * torch.stack([outputs.modality[j] for j in members]).sum(0)
        probs = {m: outputs.modality[m].softmax(dim=1) for m in self.modalities}
        return {"fused": fused.softmax(dim=1), **probs}

    # --- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"stage": self.stage}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stage = int(state["stage"])
