"""MLA: multimodal learning with alternating unimodal adaptation.

Zhang, Yoon, Bansal & Yao, "Multimodal Representation Learning by Alternating Unimodal Adaptation",
CVPR 2024 (official code ``Cecile-hi/Multimodal-Learning-with-Alternating-Unimodal-Adaptation``,
HEAD ``ab6c184``, ``main.py`` with ``--gs_flag`` and ``utils.GSPlugin``; methods.md §B17).

Model: one encoder per modality and one head shared by all of them, ``o_m = H(z_m)`` with
``H = Linear(D→C)`` (fusion ``shared_head``). Per batch the features of every modality are
computed once; then for each modality in turn (dataset order): ``CE(H(z_m), y)``, backward, the
gradient modification of ``H``'s weight, an optimiser step and cleared gradients — so the next
modality's loss reads the head the previous step has just moved. The modification is the
orthogonal weight modification (OWM) of the head weight gradient with a projector ``P`` kept over
the whole training (initially ``I_D``): ``r = mean_batch(z_m)``, ``k = P rᵀ``,
``P ← P − k kᵀ / (α + r k)``, ``P ← P / ‖P‖_F``, then ``∇W ← ∇W Pᵀ``, with
``α = 0.1^{1 + b/N}`` for batch ``b`` of ``N`` (the code's ``before_update``). The very first
update of the training is not modified (the code's ``exp_count != 0``); the bias is never modified.

Paper-vs-code variants (methods.md §B17) and their switches, defaults first:

* ``gm``: ``replace`` (paper: ``∇W ← ∇W Pᵀ``) | ``off`` (released HEAD: the plugin matches only a
  parameter named ``module.weight`` but receives the bare ``fc_out``, so neither the projection nor
  the update of ``P`` ever runs — alternating unimodal steps on a shared head) | ``add``
  (BalanceBenchmark: ``∇W ← ∇W + ∇W Pᵀ``).
* ``owm_denominator``: ``scalar`` (``α + r P rᵀ``, the OWM recursive-least-squares update of
  Zeng et al. 2019 as written in the spec) | ``elementwise`` (every code version, MLA and
  BalanceBenchmark, computes ``torch.mm(k, r)``, the ``D×D`` outer product ``k r``, so each entry of
  ``k kᵀ`` is divided by its own ``α + k_i r_j``).
* ``inference``: ``entropy`` (the paper's test-time uncertainty-based fusion, the MLA rows of the
  NJUST tables, "Weight" in MIE Table 1) | ``fixed`` (the code's default without ``--dynamic``).
  Both weight the *logits*, then take the softmax, as the code does.
* ``entropy_scope``: ``sample`` (our reading of the paper: each sample's prediction entropy
  ``H_m = −Σ_k p_mk log p_mk``, ``w_m ∝ exp(H_max − H_m)`` per sample; also BalanceBenchmark) |
  ``batch`` (the code's ``calculate_entropy``: softmax over the *batch* dimension of the logits,
  entropy summed over the whole evaluation batch, one weight per modality and batch — a sample's
  prediction then depends on the other samples of its batch and on ``eval_batch_size``).
* ``fixed_weights``: one logit weight per modality; empty = the code's defaults, ``av_alpha`` 0.55
  / 0.45 for two modalities (``main(av_alpha=0.55)``), ``a/v/t_alpha`` 0.35 / 0.25 / 0.4 for three.

Three or more modalities: the per-modality steps run in dataset order over all of them (the code's
``--modal3``). The gradient steps of modalities after the first skip parameters without a gradient
(the PyTorch ≥ 2 ``zero_grad(set_to_none=True)`` behaviour; methods.md §C5.4).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmbalance.engine.types import Batch, Context, ModelSpec
from mmbalance.errors import ConfigError
from mmbalance.methods._base import Logs, Method
from mmbalance.models.model import ModelOutput
from mmbalance.registry import register_method

CODE_FIXED_WEIGHTS = {2: [0.55, 0.45], 3: [0.35, 0.25, 0.4]}
"""The code's fixed logit weights: ``main(av_alpha=0.55)``; ``--a_alpha/--v_alpha/--t_alpha``."""


def owm_alpha(batch_index: int, num_batches: int) -> float:
    """``α = 0.1^{1 + b/N}``: the OWM regulariser of batch ``b`` of ``N`` (code ``before_update``)."""
    return 0.1 ** (1.0 + batch_index / num_batches)


def owm_update(
    projector: torch.Tensor, features: torch.Tensor, alpha: float, denominator: str
) -> torch.Tensor:
    """One OWM update of ``P`` with the batch mean ``r`` of ``features`` (B, D); returns ``P/‖P‖_F``.

    ``k = P rᵀ``; ``scalar``: ``P − k kᵀ/(α + r k)``; ``elementwise``: ``P − (k kᵀ) ⊘ (α + k r)``.
    """
    r = features.mean(dim=0, keepdim=True)
    k = projector @ r.t()
    if denominator == "scalar":
        updated = projector - (k @ k.t()) / (alpha + r @ k)
    else:
        updated = projector - (k @ k.t()) / (alpha + k @ r)
    return updated / torch.linalg.matrix_norm(updated)


def modify_gradient(grad: torch.Tensor, projector: torch.Tensor, mode: str) -> torch.Tensor:
    """``replace``: ``g Pᵀ``; ``add``: ``g + g Pᵀ``; ``off``: ``g``."""
    if mode == "off":
        return grad
    projected = grad @ projector.t()
    return projected if mode == "replace" else grad + projected


def entropy_weights(logits: dict[str, torch.Tensor], scope: str) -> torch.Tensor:
    """Fusion weights ``w_m = exp(H_max − H_m) / Σ_j exp(H_max − H_j)`` (MLA's uncertainty fusion).

    ``sample``: ``H_m`` per sample over classes, weights ``(M, B, 1)``; ``batch``: ``H_m`` of the
    softmax over the batch dimension summed over the whole batch (the code), weights ``(M, 1, 1)``.
    """
    stacked = torch.stack(list(logits.values()))
    dim = 2 if scope == "sample" else 1
    log_p = stacked.float().log_softmax(dim=dim)
    entropy = -(log_p.exp() * log_p).sum(dim=2)
    if scope == "batch":
        entropy = entropy.sum(dim=1, keepdim=True)
    return (-entropy).softmax(dim=0).unsqueeze(-1)


@register_method("mla")
class MLA(Method):
    """Alternating per-modality steps on a shared head with OWM-projected head gradients."""

    fusion = "shared_head"

    @dataclass
    class Options:
        gm: str = field(default="replace", metadata={"choices": ("replace", "off", "add")})
        owm_denominator: str = field(default="scalar", metadata={"choices": ("scalar", "elementwise")})
        inference: str = field(default="entropy", metadata={"choices": ("entropy", "fixed")})
        entropy_scope: str = field(default="sample", metadata={"choices": ("sample", "batch")})
        fixed_weights: list = field(default_factory=list)

    def __init__(self, options: dict[str, Any], spec: ModelSpec) -> None:
        super().__init__(options, spec)
        self.fixed_weights = self.resolve_fixed_weights()
        self.projector: torch.Tensor | None = None
        """OWM's ``P`` (D×D), created at the first modified update."""
        self.updates = 0
        """Per-modality updates so far (the code's ``exp_count``): the first one is not modified."""

    def resolve_fixed_weights(self) -> list[float]:
        given = [float(w) for w in self.options.fixed_weights]
        weights = given or CODE_FIXED_WEIGHTS.get(len(self.modalities))
        if weights is None or len(weights) != len(self.modalities):
            if self.options.inference == "fixed":
                raise ConfigError(
                    f"methods.mla.fixed_weights: want one weight per modality {self.modalities}, got "
                    f"{self.options.fixed_weights} (the code's defaults exist for 2 and 3 modalities only)"
                )
            return []
        return weights

    def head_layer(self, model: nn.Module) -> nn.Linear:
        """The shared ``Linear(D→C)`` whose weight gradient OWM modifies (the code's ``fc_out``)."""
        return model.fusion.head[-1]

    # --- training --------------------------------------------------------------------------
    def modify(self, layer: nn.Linear, features: torch.Tensor, alpha: float) -> bool:
        """OWM: update ``P`` with ``features``, modify ``layer.weight.grad`` (not first update, not off)."""
        if self.options.gm == "off" or self.updates == 0:
            return False
        if self.projector is None:
            self.projector = torch.eye(features.shape[1])
        projector = self.projector.to(features.device)
        self.projector = owm_update(projector, features.detach(), alpha, self.options.owm_denominator)
        layer.weight.grad = modify_gradient(layer.weight.grad, self.projector, self.options.gm)
        return True

    def training_step(self, batch: Batch, ctx: Context) -> Logs:
        y, precision = batch.labels, ctx.precision
        with precision.autocast():
            features = ctx.model.encode(batch.inputs)
        num_batches = len(ctx.data["train"]) if ctx.data is not None else 1
        alpha = owm_alpha(ctx.step % num_batches, num_batches)
        layer = self.head_layer(ctx.model)
        logs: Logs = {"owm_alpha": alpha}
        stepped: dict[nn.Parameter, torch.Tensor] = {}
        fusion = ctx.model.fusion
        for m in self.modalities:
            with precision.autocast():
                inputs = fusion.head_input(m, features[m])
                loss = F.cross_entropy(fusion.head(inputs), y)
            ctx.optimizer.zero_grad(set_to_none=True)
            precision.backward(loss)
            finite = precision.unscale(ctx.optimizer)
            logs[f"modified_{m}"] = float(finite and self.modify(layer, inputs.float(), alpha))
            precision.step(ctx.optimizer)
            self.updates += 1
            stepped.update({p: p.grad for p in ctx.model.parameters() if p.grad is not None})
            logs[f"loss_{m}"] = float(loss.detach())
        for param, grad in stepped.items():  # leave each parameter the gradient it was last stepped with
            param.grad = grad
        logs["loss"] = sum(logs[f"loss_{m}"] for m in self.modalities) / len(self.modalities)
        return logs

    # --- inference -------------------------------------------------------------------------
    def fusion_weights(self, logits: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(M, ·, 1)`` weights of the modalities' logits: entropy-based or fixed."""
        if self.options.inference == "entropy":
            return entropy_weights(logits, self.options.entropy_scope)
        reference = next(iter(logits.values()))
        return torch.tensor(self.fixed_weights, device=reference.device).view(-1, 1, 1)

    def predict(self, outputs: ModelOutput) -> dict[str, torch.Tensor]:
        """Fused: ``softmax(Σ_m w_m o_m)``; per modality ``softmax(H(z_m))``."""
        logits = {m: outputs.modality[m].float() for m in self.modalities}
        weights = self.fusion_weights(logits)
        fused = (weights * torch.stack(list(logits.values()))).sum(0)
        return {"fused": fused.softmax(dim=1), **{m: o.softmax(dim=1) for m, o in logits.items()}}

    # --- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        projector = None if self.projector is None else self.projector.detach().cpu().clone()
        return {"projector": projector, "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        projector = state["projector"]
        self.projector = None if projector is None else projector.clone()
        self.updates = int(state["updates"])
