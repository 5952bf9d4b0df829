"""LFM: "Facilitating Multimodal Classification via Dynamically Learning Modality Gap" (NeurIPS 2024).

Training minimises ``L_Total = (1 − α) L_CLS + α L_MM`` (paper Eq. 1), times ``loss_scale``, with α
set at the start of every epoch by a schedule (one epoch = one outer iteration of Algorithm 1, as in
the released code). Paper-vs-code variants (methods.md §A1.5) and their switches:

* ``align_loss``: ``infonce`` — paper §3.2, symmetric InfoNCE on L2-normalised features with
  temperature ``tau`` (no value given; 0.1 here, CLIP-style); features of different widths (ResNet50
  2048-d and BERT 768-d on the image–text paper presets) first pass through a learned bias-free
  projection to the narrowest width (:mod:`mmbalance.models.projections`; the paper does not say how
  it compares them); ``js_code`` — the code's ``½KL(m‖p_a) + ½KL(m‖p_v)`` on softmax of the
  unimodal logits (§A1.2, item 1).
* ``fusion``: ``concat`` — paper, one FC on the concatenated features, ``L_CLS = CE(W z + b)``;
  ``logit_avg`` — code, per-modality linear heads (the ``sum`` fusion's heads) and
  ``L_CLS = CE(mean_m o_m)`` (= ``0.5·o_a + 0.5·o_v``); prediction ``softmax(mean_m o_m)`` (item 2).
* ``loss_scale``: 1 (paper) or 2 (code, item 5).
* ``schedule`` (item 3, 4): ``heuristic`` — LFM-H, ``α = 1 − e^{−1/t}``, ``t = epoch + 1``;
  ``cubic`` — §4.4's fitted cubic on a normalised time axis (see ``lfm_schedules.cubic``);
  ``code_poly5`` — ``Crema_epoch.py``'s 5th-degree polynomial; ``constant`` — ``α = p``;
  ``stepwise`` — Table 4's ``h(p)``; ``learned`` — LFM-LB, paper Eq. 2–3 with a CG hyper-gradient;
  ``learned_code`` — ``Crema_epoch_learnable.py``'s HVP-mean rule.
* Held-out batch of the learned schedules: the first ``alpha_batch`` samples of the validation split
  (the code holds 16 training samples out and uses 8; the paper says nothing). ``held_out_mode``
  sets the modules' mode for the extra passes, restored afterwards: ``eval`` (default: BatchNorm on
  running statistics, not updated); ``code`` — ``Crema_epoch_learnable.py``, whose α step runs in
  the mode the previous epoch's validation left: train mode at epoch 0 (the fresh model; BatchNorm
  on the batch's statistics, running statistics updated), eval mode from epoch 1; ``train`` —
  BalanceBenchmark, which calls ``model.train()`` before every α step.
* The paper's hyper-gradient solves ``(H + cg_damping·I) v = ∇_θ L_CLS(val)`` by ``cg_steps`` CG
  steps (:mod:`mmbalance.methods._hypergrad`); the steps run and the stop reason of each epoch's
  solve are logged (``cg_steps``, ``cg_stop``, ``cg_residual``).
* 3 modalities: ``L_MM`` averaged over modality pairs (paper unspecified; BalanceBenchmark's reading).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mmbalance.engine.types import Batch, Context, ModelSpec
from mmbalance.errors import MMBalanceError
from mmbalance.methods import _lfm_schedules as schedules
from mmbalance.methods._base import Logs, Method
from mmbalance.methods._hypergrad import grads, hypergradient
from mmbalance.methods._lfm_losses import info_nce, js_code, pairwise_mean
from mmbalance.models.model import ModelOutput, build_model, in_mode
from mmbalance.models.projections import project, width_projections
from mmbalance.registry import register_method

SCHEDULES = ("heuristic", "cubic", "code_poly5", "constant", "stepwise", "learned", "learned_code")
CODE_CLIP = (0.05, 0.95)
"""The released learnable rule clips α into [0.05, 0.95]; the paper (Algorithm 1) into [0, 1]."""


def code_hvp_mean(
    cls_loss: torch.Tensor, mm_loss: torch.Tensor, params: list[torch.Tensor], alpha: float
) -> float:
    """The released rule's α "gradient": ``mean((∇²_θθ L_total · ∇_θ L_cls)[first tensor])`` (§A1.2).

    ``L_total = (1 − α) L_cls + α L_mm`` on the held-out batch, without the loss scale; ``∇_θ L_cls``
    enters as a constant (``grad_outputs``), and only the block of the first parameter tensor is kept.
    """
    total = (1.0 - alpha) * cls_loss + alpha * mm_loss
    g_total = grads([total], params, create_graph=True)
    g_cls = [g.detach() for g in grads([cls_loss], params)]
    (block,) = grads(g_total, params[:1], g_cls)
    return float(block.mean())


@register_method("lfm")
class LFM(Method):
    """``(1 − α) L_CLS + α L_MM`` (Eq. 1) with α from ``schedule`` at the start of every epoch."""

    curves: ClassVar[dict[str, str]] = {"alpha": "α (weight of the matching loss)"}

    @dataclass
    class Options:
        align_loss: str = field(default="infonce", metadata={"choices": ("infonce", "js_code")})
        tau: float = 0.1
        fusion: str = field(default="concat", metadata={"choices": ("concat", "logit_avg")})
        loss_scale: float = 1.0
        schedule: str = field(default="heuristic", metadata={"choices": SCHEDULES})
        p: float = 0.5
        """α of ``constant``; ``h(p)``'s first-half α of ``stepwise``."""
        cubic_horizon: float = 30.0
        """``cubic``: the last epoch maps to ``t' = cubic_horizon``."""
        alpha_init: float = 0.95
        """Start of the learned schedules (code: 0.95; paper: not given)."""
        alpha_lr: float = 1e-4
        """η_α (code: 1e-4, halved every 20 epochs by ``learned_code``; paper: not given)."""
        alpha_batch: int = 8
        held_out_mode: str = field(default="eval", metadata={"choices": ("eval", "code", "train")})
        """Module mode of the learned schedules' held-out passes (module docstring)."""
        cg_steps: int = 5
        cg_damping: float = 100.0
        """λ of ``(H + λI)`` in the CG solve of ``learned``: above the most negative eigenvalue of ``H``
        measured on synthav (≈ −75), so every solve is positive definite (docs/methods.md)."""

    def __init__(self, options: dict[str, Any], spec: ModelSpec) -> None:
        super().__init__(options, spec)
        self.alpha = self.options.alpha_init

    def build(self) -> nn.Module:
        opts = self.options
        fusion = "sum" if opts.fusion == "logit_avg" else "concat"
        model = build_model(self.spec.modalities, self.spec.encoders, fusion, self.spec.num_classes)
        if opts.align_loss == "infonce" and len(set(model.fusion.dims.values())) > 1:
            model.add_module("matching_projections", width_projections(model.fusion.dims))
        return model

    # --- losses ----------------------------------------------------------------------------
    def fused_logits(self, outputs: ModelOutput) -> torch.Tensor:
        """``W z + b`` (concat) or ``mean_m o_m`` (logit_avg)."""
        if self.options.fusion == "logit_avg":
            return torch.stack([outputs.modality[m] for m in self.modalities]).mean(0)
        return outputs.fused

    def classification_loss(self, outputs: ModelOutput, labels: torch.Tensor) -> torch.Tensor:
        """``L_CLS`` of Eq. 1."""
        return F.cross_entropy(self.fused_logits(outputs), labels)

    def matching_loss(self, outputs: ModelOutput, model: nn.Module) -> torch.Tensor:
        """``L_MM`` of Eq. 1: InfoNCE on features (projected to one width where they differ, see
        :meth:`build`) or the code's JS on unimodal softmax, pair-averaged."""
        if self.options.align_loss == "infonce":
            features = {m: outputs.features[m] for m in self.modalities}
            projections = getattr(model, "matching_projections", None)
            if projections is not None:
                features = project(projections, features)
            return pairwise_mean(features, functools.partial(info_nce, tau=self.options.tau))
        return pairwise_mean({m: outputs.modality[m] for m in self.modalities}, js_code)

    def loss(self, outputs: ModelOutput, batch: Batch, ctx: Context) -> tuple[torch.Tensor, Logs]:
        cls = self.classification_loss(outputs, batch.labels)
        mm = self.matching_loss(outputs, ctx.model)
        total = self.options.loss_scale * ((1.0 - self.alpha) * cls + self.alpha * mm)
        return total, {"ce": float(cls.detach()), "mm": float(mm.detach())}

    def predict(self, outputs: ModelOutput) -> dict[str, torch.Tensor]:
        probs = super().predict(outputs)
        probs["fused"] = self.fused_logits(outputs).softmax(dim=1)
        return probs

    # --- α -----------------------------------------------------------------------------------
    def on_epoch_start(self, ctx: Context) -> Logs:
        opts, epoch = self.options, ctx.epoch
        logs: Logs = {}
        if opts.schedule == "learned":
            if epoch > 0:  # Algorithm 1: α moves after an inner loop over θ
                logs.update(self.paper_alpha_gradient(ctx))
                self.alpha = min(max(self.alpha - opts.alpha_lr * logs["alpha_grad"], 0.0), 1.0)
        elif opts.schedule == "learned_code":
            logs["alpha_grad"] = self.code_alpha_gradient(ctx)
            lr = schedules.code_alpha_lr(opts.alpha_lr, epoch)
            self.alpha = min(max(self.alpha - lr * logs["alpha_grad"], CODE_CLIP[0]), CODE_CLIP[1])
        else:
            self.alpha = self.scheduled_alpha(epoch, ctx.num_epochs)
        return {"alpha": self.alpha, **logs}

    def scheduled_alpha(self, epoch: int, num_epochs: int) -> float:
        opts = self.options
        if opts.schedule == "heuristic":
            return schedules.heuristic(epoch)
        if opts.schedule == "cubic":
            return schedules.cubic(epoch, num_epochs, opts.cubic_horizon)
        if opts.schedule == "code_poly5":
            return schedules.code_poly5(epoch)
        if opts.schedule == "stepwise":
            return schedules.stepwise(epoch, num_epochs, opts.p)
        return opts.p

    def held_out(self, ctx: Context, split: str, epoch: int) -> Batch:
        """The first ``alpha_batch`` samples of ``split`` in its order of ``epoch``."""
        if ctx.data is None:
            raise MMBalanceError(f"methods.lfm.schedule={self.options.schedule} needs the data splits")
        parts, count = [], 0
        for batch in ctx.data[split].epoch(epoch):
            parts.append(batch)
            count += len(batch)
            if count >= self.options.alpha_batch:
                break
        n = self.options.alpha_batch
        return Batch(
            inputs={m: torch.cat([b.inputs[m] for b in parts])[:n] for m in parts[0].inputs},
            labels=torch.cat([b.labels for b in parts])[:n],
            index=torch.cat([b.index for b in parts])[:n],
        )

    def held_out_training(self, epoch: int) -> bool:
        """Whether the held-out passes of ``epoch`` run in train mode (``held_out_mode``)."""
        mode = self.options.held_out_mode
        return mode == "train" or (mode == "code" and epoch == 0)

    def paper_alpha_gradient(self, ctx: Context) -> Logs:
        """Eq. 3: ``−∇²_{αθ}L_Total [∇²_{θθ}L_Total + λI]⁻¹ ∇_θ L_CLS(val)``, ``∂_α L_Total = L_MM − L_CLS``.

        ``L_Total`` on the epoch's first ``alpha_batch`` training samples, ``L_CLS`` on the held-out
        validation batch, ``cg_steps`` CG iterations (damping λ = ``cg_damping``) for the
        inverse-Hessian product. Returns ``alpha_grad`` and the CG solve's ``cg_steps``, ``cg_stop``
        (:data:`mmbalance.methods._hypergrad.STOP_REASONS`) and ``cg_residual``.
        """
        train, val = self.held_out(ctx, "train", ctx.epoch), self.held_out(ctx, "val", 0)
        params = [p for p in ctx.model.parameters() if p.requires_grad]
        alpha = torch.tensor(self.alpha, device=ctx.device, requires_grad=True)
        opts = self.options
        with in_mode(ctx.model, self.held_out_training(ctx.epoch)):
            outputs = ctx.model(train.inputs)
            cls = self.classification_loss(outputs, train.labels)
            inner = (1 - alpha) * cls + alpha * self.matching_loss(outputs, ctx.model)
            outer = self.classification_loss(ctx.model(val.inputs), val.labels)
            grad, info = hypergradient(inner, outer, params, alpha, opts.cg_steps, opts.cg_damping)
        return {
            "alpha_grad": float(grad),
            "cg_steps": float(info.steps),
            "cg_stop": float(info.stop),
            "cg_residual": info.residual,
        }

    def code_alpha_gradient(self, ctx: Context) -> float:
        """The released rule on the held-out batch (see :func:`code_hvp_mean`)."""
        batch = self.held_out(ctx, "val", 0)
        params = [p for p in ctx.model.parameters() if p.requires_grad]
        with in_mode(ctx.model, self.held_out_training(ctx.epoch)):
            outputs = ctx.model(batch.inputs)
            cls = self.classification_loss(outputs, batch.labels)
            return code_hvp_mean(cls, self.matching_loss(outputs, ctx.model), params, self.alpha)

    # --- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"alpha": self.alpha}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.alpha = float(state["alpha"])


@register_method("lfm_h")
class LFMHeuristic(LFM):
    """LFM-H: the paper's heuristic ``α_t = 1 − e^{−1/t}`` (paper defaults)."""

    @dataclass
    class Options(LFM.Options):
        schedule: str = field(default="heuristic", metadata={"choices": SCHEDULES})


@register_method("lfm_lb")
class LFMLearned(LFM):
    """LFM-LB: α by the bilevel hyper-gradient of Eq. 3 (paper defaults otherwise)."""

    @dataclass
    class Options(LFM.Options):
        schedule: str = field(default="learned", metadata={"choices": SCHEDULES})


@register_method("lfm_code")
class LFMCode(LFM):
    """The released ``Crema_epoch.py``: JS alignment, logit averaging, loss ×2, 5th-degree polynomial α."""

    released_code: ClassVar[bool] = True
    code_init: ClassVar[str | None] = "xavier_heads"

    @dataclass
    class Options(LFM.Options):
        align_loss: str = field(default="js_code", metadata={"choices": ("infonce", "js_code")})
        fusion: str = field(default="logit_avg", metadata={"choices": ("concat", "logit_avg")})
        loss_scale: float = 2.0
        schedule: str = field(default="code_poly5", metadata={"choices": SCHEDULES})
