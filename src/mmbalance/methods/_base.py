"""The method interface: a method is its losses and its update step, never a copy of the loop.

The one loop (``mmbalance.engine.loop``) calls, per epoch, ``on_epoch_start``, then
``training_step`` for each batch, evaluates with ``predict``, then ``on_epoch_end``.
The default ``training_step`` is forward → ``loss`` → backward → ``after_backward`` →
optimiser step, so most methods override only ``loss`` (LFM, DOMFN, ETMC, PMR …) or
only ``after_backward`` (OGM-GE, MSLR …); methods with extra passes (SAM, MLA, AUG,
MMPareto) override ``training_step``. Every step runs its forward passes and losses under
``ctx.precision.autocast()`` and its backward passes, gradients and optimiser steps through
``ctx.precision`` (:mod:`mmbalance.engine.precision`), so bf16 and fp16 apply to every method.
Everything a method keeps between steps is in ``state_dict`` so a resumed run is bit-identical;
everything it wants recorded per epoch is returned as logs and lands in ``history.csv``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mmbalance.engine.types import Batch, Context, ModelSpec
from mmbalance.models.model import ModelOutput, build_model

Logs = dict[str, float]


class Method:
    """Base class of every method plugin. Subclasses set ``fusion`` and may define ``Options``."""

    fusion: ClassVar[str] = "concat"
    select_per_head: ClassVar[bool] = False
    """True when each head is a separate model (Unimodal): protocols select epochs per head."""
    dataset_settings: ClassVar[tuple[str, ...]] = ()
    """Options that are a dataset's schedule or shape settings (AUG's t_N, MIE's stage lengths): the
    only ones of ``methods.<name>`` and ``train.<profile>.<dataset>.methods.<name>`` that reach a run
    reproducing released code (:func:`mmbalance.config.reaching_settings`)."""
    released_code: ClassVar[bool] = False
    """True for a registered method whose defaults are a released code's constants (``lfm_code``)."""
    code_init: ClassVar[str | None] = None
    """The released code's initialisation of the heads (:mod:`mmbalance.models.init`), for a
    ``released_code`` method; ``None``: the protocol's."""
    curves: ClassVar[dict[str, str]] = {}
    """``history.csv`` columns worth a per-epoch figure, with their axis label; ``{modality}`` in a
    column name stands for each modality (one line per modality). The report draws one figure per
    column, with a line for every method of the matrix that declares it."""

    @dataclass
    class Options:
        """Method hyper-parameters with their defaults (overridden by ``methods.<name>`` in params)."""

    def __init__(self, options: dict[str, Any], spec: ModelSpec) -> None:
        self.options = self.Options(**options)
        self.spec = spec
        self.modalities = list(spec.modalities)

    # --- model and optimiser -------------------------------------------------------------
    def build(self) -> nn.Module:
        """Encoders per modality and the method's fusion (an ``Options.fusion`` field overrides it).

        Must depend only on the options and ``state_dict()``: on resume the loop loads the method
        state first and builds again, so a model that grew during training (AUG's added
        classifiers) comes back with the same structure before its weights are loaded.
        """
        fusion = getattr(self.options, "fusion", self.fusion)
        spec = self.spec
        return build_model(spec.modalities, spec.encoders, fusion, spec.num_classes, **self.fusion_options())

    def fusion_options(self) -> dict[str, Any]:
        """The fusion's own settings (keyword arguments after the feature sizes and the number of
        classes), taken from the method's options; default none."""
        return {}

    def param_groups(self, model: nn.Module) -> Iterable[Any]:
        """What the optimiser updates; default: every parameter in one group."""
        return model.parameters()

    # --- training --------------------------------------------------------------------------
    def training_step(self, batch: Batch, ctx: Context) -> Logs:
        """Forward and loss (under autocast), backward, gradient surgery, optimiser step.

        ``after_backward`` sees true gradients; it is skipped with the step when they are not finite
        (fp16 overflow, bf16 NaN).
        """
        with ctx.precision.autocast():
            outputs, forward_logs = self.training_forward(batch, ctx)
            loss, logs = self.loss(outputs, batch, ctx)
        ctx.optimizer.zero_grad(set_to_none=True)
        ctx.precision.backward(loss)
        if ctx.precision.unscale(ctx.optimizer):
            logs.update(self.after_backward(outputs, batch, ctx))
        ctx.precision.step(ctx.optimizer)
        return {"loss": float(loss.detach()), **logs, **forward_logs}

    def training_forward(self, batch: Batch, ctx: Context) -> tuple[ModelOutput, Logs]:
        """The training step's forward pass (under autocast) and what it logs; default: the model on
        the batch, nothing logged."""
        return ctx.model(batch.inputs), {}

    def loss(self, outputs: ModelOutput, batch: Batch, ctx: Context) -> tuple[torch.Tensor, Logs]:
        """Default: CE on the fused logits (plus the probe heads' CE where the fusion has probes).

        Without a joint head (``fusion = "none"``) the sum of the unimodal CEs.
        """
        y = batch.labels
        if outputs.fused is None:
            losses = {m: F.cross_entropy(outputs.modality[m], y) for m in self.modalities}
            return sum(losses.values()), {f"ce_{m}": float(v.detach()) for m, v in losses.items()}
        loss = F.cross_entropy(outputs.fused, y)
        logs = {"ce_fused": float(loss.detach())}
        return loss + self.probe_loss(outputs, batch, ctx), logs

    def probe_loss(self, outputs: ModelOutput, batch: Batch, ctx: Context) -> torch.Tensor:
        """CE of the probe heads on detached features (zero when the fusion has none)."""
        if not getattr(ctx.model.fusion, "uses_probes", False):
            return torch.zeros((), device=batch.labels.device)
        return sum(F.cross_entropy(outputs.modality[m], batch.labels) for m in self.modalities)

    def after_backward(self, outputs: ModelOutput, batch: Batch, ctx: Context) -> Logs:
        """Gradient surgery between backward and the optimiser step; default: none."""
        return {}

    def on_epoch_start(self, ctx: Context) -> Logs:
        return {}

    def on_epoch_end(self, ctx: Context, evaluation: dict[str, dict[str, dict[str, float]]]) -> Logs:
        """Called after validation and test evaluation of the epoch (``evaluation[split][head][metric]``)."""
        return {}

    # --- inference -------------------------------------------------------------------------
    def heads(self) -> list[str]:
        return ["fused", *self.modalities]

    def predict(self, outputs: ModelOutput) -> dict[str, torch.Tensor]:
        """Class probabilities per head; without a joint head the fused prediction averages them."""
        probs = {m: outputs.modality[m].softmax(dim=1) for m in self.modalities}
        if outputs.fused is None:
            fused = torch.stack(list(probs.values())).mean(0)
        else:
            fused = outputs.fused.softmax(dim=1)
        return {"fused": fused, **probs}

    # --- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        del state
