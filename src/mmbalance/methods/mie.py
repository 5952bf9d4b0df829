"""MIE: modal-aware interactive enhancement (Jiang et al.; methods.md §A2, official code IGM ``19aa8e5``).

Late-fusion model with one encoder and one 3-layer head per modality (fusion ``mlp_heads``).
Training alternates over modalities in stages (Alg. 1): stage ``s`` trains only modality
``j_s = modalities[s mod M]`` for ``stage_epochs[s mod len(stage_epochs)]`` epochs (the code's
``epoch_list``; the list is cycled, so ``[25, 50]`` is CREMA-D's ``[25, 50]×6``). The other
modalities are frozen for the stage (``requires_grad`` off, so they get no gradient, as in the
code where they are not in the graph). Per batch of stage ``s``: a SAM step on ``θ_j`` (Eq. 3–4,
:mod:`mmbalance.methods._sam`), then for ``s > 0`` the gradient modification of ``j``'s head
Linear weights by the matrices ``T`` of the previously trained modality (Eq. 7–8,
:mod:`mmbalance.methods._gradient_modification`), then the optimiser step. At the end of each stage
``T`` of its modality is built from one eval-mode pass over the training data (Eq. 5), and the
singular values of each ``Ȳ`` are logged (``sv_<m>_<layer>_max`` / ``_mean``, the paper's Table 5).
Inference: late fusion of the per-modality probabilities (§3.3).

Paper-vs-code variants (methods.md §A2.5) and their switches:

* SAM — ``sam="faithful"`` (default): ``ε = ρ g/‖g‖`` with the global norm over the trained
  modality's encoder and head, gradient at ``θ+ε``, ``θ`` restored exactly, BatchNorm statistics
  updated by the unperturbed pass only. ``sam="code"``: IGM's per-tensor perturbation added
  permanently, head re-applied to the old features, ``(1−flat_ratio)·L + flat_ratio·L_perturbed``.
  ``sam="off"``: plain CE (the "w/o SAM" ablation).
* ρ — the paper's 1e-10 (audio) / 1e-15 (image, text) are below fp32 resolution of the weights, so
  SAM is a numerical no-op with them; the default ``rho=[0.05]`` is Foret et al.'s default
  (one value for every modality, or one per modality in the dataset's modality order).
* Mixup — the code mixes the trained modality's input with ``Beta(α, α)`` (α = 1.0); off here by
  default (``mixup_alpha=0``), set ``mixup_alpha=1.0`` for the code.
* Stage restarts — the code builds a new optimiser and ``StepLR`` per stage: ``reset_optimizer_state``
  (default on) clears the momentum buffers at each stage start, ``restart_schedule`` (default off, the
  paper's single schedule; on = the code) restarts the configured learning-rate schedule. Before each
  stage the code reloads the best checkpoint so far by *test* macro-F1, over all stages:
  ``reload_best="test"`` reproduces that (test-set-driven training, for reproduction only),
  ``"val"`` does the same on the validation split, ``"off"`` (default, the paper) continues from the
  last epoch. After a reload the previous modality's matrices are rebuilt from the reloaded weights,
  as the code computes them after loading.
* Fusion — ``fusion_rule="average"`` (mean of softmax, the code) or ``"weight"`` (MLA-style entropy
  weighting, the paper's "Weight" rows; not in the code): per sample, ``w_m ∝ exp(H_max − H_m)``
  with ``H_m`` the entropy of modality ``m``'s softmax, i.e. ``w = softmax_m(−H_m)``, applied to the
  probabilities. This is BalanceBenchmark's per-sample reading; MLA's official code takes the
  entropy over the whole test batch (methods.md §B17), which makes a prediction depend on the
  other samples of its batch, so it is not reproduced.
* GM scope — ``gm_scope="head"`` (paper default, the code): the head's Linear layers; ``"off"``: no
  modification (the "w/o GM" ablation); ``"fraction"``: the layers from the output downwards that
  hold ``gm_fraction`` of the modality network's parameters, convolutions included (Table 4's
  100/50/30 % scopes; not in the code, which has an unused Conv2d branch). Layer spectra are logged
  for the head only (Table 5), whatever the scope.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mmbalance.engine.precision import Precision
from mmbalance.engine.types import Batch, Context
from mmbalance.errors import ConfigError, TrainingError
from mmbalance.methods._base import Logs, Method
from mmbalance.methods._gradient_modification import (
    ModifiableLayer,
    cumulative_input_covariance,
    modification_matrix,
    modify_gradients,
    scope_layers,
)
from mmbalance.methods._sam import code_sam_loss, faithful_sam_gradients
from mmbalance.models.model import ModelOutput, MultimodalModel
from mmbalance.registry import register_method


@dataclass(frozen=True)
class Stage:
    """Stage ``index`` trains ``modality`` during epochs ``first``…``last`` (inclusive)."""

    index: int
    modality: str
    first: int
    last: int


def stage_at(epoch: int, stage_epochs: list[int], modalities: list[str]) -> Stage:
    """The stage containing ``epoch``: stage lengths cycle through ``stage_epochs``, modalities in order."""
    index, first = 0, 0
    while True:
        length = stage_epochs[index % len(stage_epochs)]
        if epoch < first + length:
            return Stage(index, modalities[index % len(modalities)], first, first + length - 1)
        first += length
        index += 1


def mixup(x: torch.Tensor, y: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The code's input mixup: ``λx + (1−λ)x[π]``, ``λ ~ Beta(α, α)``; identity when ``α = 0``."""
    if alpha <= 0:
        return x, y, 1.0
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    perm = torch.randperm(x.shape[0])
    x = x.float()
    return lam * x + (1.0 - lam) * x[perm], y[perm], lam


def mixed_ce(logits: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor, lam: float) -> torch.Tensor:
    """``λ·CE(o, y_a) + (1−λ)·CE(o, y_b)`` (plain CE when ``λ = 1``)."""
    if lam == 1.0:
        return F.cross_entropy(logits, y_a)
    return lam * F.cross_entropy(logits, y_a) + (1.0 - lam) * F.cross_entropy(logits, y_b)


def entropy_weighted(probs: dict[str, torch.Tensor]) -> torch.Tensor:
    """``Σ_m w_m p_m`` with per-sample ``w = softmax_m(−H(p_m))`` (MLA's ``exp(H_max − H_m)``, normalised)."""
    stacked = torch.stack(list(probs.values()))
    entropy = -(stacked * stacked.clamp_min(1e-12).log()).sum(-1)
    weights = (-entropy).softmax(dim=0)
    return (weights[..., None] * stacked).sum(0)


@register_method("mie")
class MIE(Method):
    """Stage-wise alternating unimodal training with SAM and flat-direction gradient modification."""

    fusion = "mlp_heads"
    dataset_settings: ClassVar[tuple[str, ...]] = ("stage_epochs",)

    @dataclass
    class Options:
        stage_epochs: list = field(default_factory=lambda: [1, 2])
        """Stage lengths in epochs, cycled; the code's CREMA-D/KS ``[25, 50]`` scaled to 16 epochs."""
        tau: float = 0.4
        sam: str = field(default="faithful", metadata={"choices": ("faithful", "code", "off")})
        rho: list = field(default_factory=lambda: [0.05])
        flat_ratio: float = 0.3
        mixup_alpha: float = 0.0
        gm_scope: str = field(default="head", metadata={"choices": ("head", "off", "fraction")})
        gm_fraction: float = 0.3
        """Share of the network's parameters modified when ``gm_scope="fraction"`` (Table 4's best)."""
        fusion_rule: str = field(default="average", metadata={"choices": ("average", "weight")})
        head_hidden: list = field(default_factory=lambda: [256, 64])
        reset_optimizer_state: bool = True
        restart_schedule: bool = False
        reload_best: str = field(default="off", metadata={"choices": ("off", "val", "test")})

    def __init__(self, options: dict[str, Any], spec: Any) -> None:
        super().__init__(options, spec)
        opts = self.options
        if not opts.stage_epochs or any(not isinstance(n, int) or n < 1 for n in opts.stage_epochs):
            raise ConfigError(f"methods.mie.stage_epochs: want positive integers, got {opts.stage_epochs}")
        if len(opts.rho) not in (1, len(self.modalities)):
            raise ConfigError(
                f"methods.mie.rho: one value or one per modality {self.modalities}, got {opts.rho}"
            )
        if not 0.0 < opts.gm_fraction <= 1.0:
            raise ConfigError(f"methods.mie.gm_fraction: want a share in (0, 1], got {opts.gm_fraction}")
        self.rho = dict(zip(self.modalities, opts.rho * len(self.modalities), strict=False))
        self.matrices: dict[str, dict[str, torch.Tensor]] = {}
        self.stage = 0
        self.modality = self.modalities[0]
        self.best_f1 = -math.inf
        self.best_weights: dict[str, torch.Tensor] | None = None

    def fusion_options(self) -> dict[str, Any]:
        return {"hidden": tuple(self.options.head_hidden)}

    def stage_at(self, epoch: int) -> Stage:
        return stage_at(epoch, self.options.stage_epochs, self.modalities)

    def enter_stage(self, model: MultimodalModel, stage: Stage) -> None:
        """Train only ``stage.modality``: the other modalities' parameters stop requiring gradients."""
        self.stage, self.modality = stage.index, stage.modality
        for m in self.modalities:
            for p in (*model.encoders[m].parameters(), *model.fusion.heads[m].parameters()):
                p.requires_grad_(m == stage.modality)

    def on_epoch_start(self, ctx: Context) -> Logs:
        stage = self.stage_at(ctx.epoch)
        self.enter_stage(ctx.model, stage)
        logs = {"stage": float(stage.index), "stage_modality": float(self.modalities.index(stage.modality))}
        if stage.index == 0 or ctx.epoch != stage.first:
            return logs
        if self.options.reset_optimizer_state:
            for p in ctx.model.parameters():
                ctx.optimizer.state.pop(p, None)
        if self.options.restart_schedule and ctx.schedule is not None:
            ctx.schedule.restart()
        if self.options.reload_best != "off" and self.best_weights is not None:
            ctx.model.load_state_dict(self.best_weights)
            logs["reloaded"] = 1.0
            if self.options.gm_scope != "off" and ctx.data is not None:
                previous = self.modalities[(stage.index - 1) % len(self.modalities)]
                self.build_matrices(ctx.model, previous, ctx.data["train"].epoch(ctx.epoch - 1))
        return logs

    # --- training --------------------------------------------------------------------------
    def training_step(self, batch: Batch, ctx: Context) -> Logs:
        stage = self.stage_at(ctx.epoch)
        self.enter_stage(ctx.model, stage)
        j = stage.modality
        encoder, head = ctx.model.encoders[j], ctx.model.fusion.heads[j]
        params = [*encoder.parameters(), *head.parameters()]
        x, y_b, lam = mixup(batch.inputs[j], batch.labels, self.options.mixup_alpha)
        y = batch.labels
        ctx.optimizer.zero_grad(set_to_none=True)
        logs = self.sam_backward(encoder, head, params, x, y, y_b, lam, ctx.precision)
        modified = self.modify(ctx.model, stage) if ctx.precision.unscale(ctx.optimizer) else []
        logs["gm_layers"] = float(len(modified))
        ctx.precision.step(ctx.optimizer)
        return logs

    def sam_backward(
        self,
        encoder: nn.Module,
        head: nn.Module,
        params: list[nn.Parameter],
        x: torch.Tensor,
        y: torch.Tensor,
        y_b: torch.Tensor,
        lam: float,
        precision: Precision,
    ) -> Logs:
        """Leave the step's gradient in ``p.grad`` according to ``sam``; return the losses. Forward
        passes run under ``precision``'s autocast, backward passes through it."""
        sam, rho = self.options.sam, self.rho[self.modality]
        if sam == "faithful":
            objective: Callable[[], torch.Tensor] = lambda: mixed_ce(head(encoder(x)), y, y_b, lam)  # noqa: E731
            loss, perturbed = faithful_sam_gradients(
                params, objective, rho, buffers=list(encoder.buffers()), precision=precision
            )
            return {"loss": float(loss), "loss_perturbed": float(perturbed)}
        with precision.autocast():
            z = encoder(x)
            loss = mixed_ce(head(z), y, y_b, lam)
        if sam == "off":
            precision.backward(loss)
            return {"loss": float(loss.detach())}
        total, perturbed = code_sam_loss(params, loss, head, z, y, rho, self.options.flat_ratio, precision)
        precision.backward(total)
        return {"loss": float(loss.detach()), "loss_perturbed": float(perturbed.detach())}

    def modify(self, model: MultimodalModel, stage: Stage) -> list[str]:
        """Eq. 8 with ``T`` of the previous stage's modality (none in the first stage or with GM off)."""
        if self.options.gm_scope == "off" or stage.index == 0:
            return []
        previous = self.modalities[(stage.index - 1) % len(self.modalities)]
        matrices = self.matrices.get(previous)
        if matrices is None:
            return []
        return modify_gradients(self.scope(model, stage.modality), matrices)

    def scope(self, model: MultimodalModel, modality: str) -> dict[str, ModifiableLayer]:
        """The layers of ``modality``'s network under gradient modification (``gm_scope``)."""
        fraction = self.options.gm_fraction if self.options.gm_scope == "fraction" else None
        return scope_layers(model.fusion.heads[modality], model.encoders[modality], fraction)

    # --- end of a stage: the modification matrices of its modality ---------------------------
    def on_epoch_end(self, ctx: Context, evaluation: dict[str, dict[str, dict[str, float]]]) -> Logs:
        self.remember_best(ctx.model, evaluation)
        stage = self.stage_at(ctx.epoch)
        finished = ctx.epoch == stage.last or ctx.epoch == ctx.num_epochs - 1
        if self.options.gm_scope == "off" or not finished or ctx.data is None:
            return {}
        return self.build_matrices(ctx.model, stage.modality, ctx.data["train"].epoch(ctx.epoch))

    def remember_best(self, model: nn.Module, evaluation: dict[str, dict[str, dict[str, float]]]) -> None:
        """Keep the weights of the best epoch so far by fused macro-F1 on the ``reload_best`` split
        (never reset between stages, as in the code)."""
        split = self.options.reload_best
        if split == "off":
            return
        f1 = evaluation[split]["fused"]["macro_f1"]
        if f1 > self.best_f1:
            self.best_f1 = f1
            self.best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def build_matrices(self, model: MultimodalModel, modality: str, batches: Any) -> Logs:
        """Eq. 5–7 for ``modality``'s head over ``batches`` in eval mode; logs the spectra (Table 5)."""
        encoder, head = model.encoders[modality], model.fusion.heads[modality]
        was_training = model.training
        model.eval()
        covariances = cumulative_input_covariance(
            self.scope(model, modality), batches, lambda batch: head(encoder(batch.inputs[modality]))
        )
        model.train(was_training)
        logs: Logs = {}
        self.matrices[modality] = {}
        for name, covariance in covariances.items():
            if not bool(torch.isfinite(covariance).all()):
                raise TrainingError(
                    f"MIE: the input covariance (Eq. 5) of {modality}'s layer '{name}' is not finite, so its "
                    "SVD (Eq. 7) is undefined: the model's features diverged (see history.csv's train_loss)"
                )
            t, singular = modification_matrix(covariance, self.options.tau)
            self.matrices[modality][name] = t
            if not name.startswith("encoder."):
                logs[f"sv_{modality}_{name}_max"] = float(singular.max())
                logs[f"sv_{modality}_{name}_mean"] = float(singular.mean())
        return logs

    # --- inference -------------------------------------------------------------------------
    def heads(self) -> list[str]:
        return ["fused", *self.modalities]

    def predict(self, outputs: ModelOutput) -> dict[str, torch.Tensor]:
        probs = {m: outputs.modality[m].softmax(dim=1) for m in self.modalities}
        if self.options.fusion_rule == "weight":
            fused = entropy_weighted(probs)
        else:
            fused = torch.stack(list(probs.values())).mean(0)
        return {"fused": fused, **probs}

    # --- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "modality": self.modality,
            "matrices": {m: {n: t.clone() for n, t in ts.items()} for m, ts in self.matrices.items()},
            "best_f1": self.best_f1,
            "best_weights": None if self.best_weights is None else dict(self.best_weights),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stage = int(state["stage"])
        self.modality = str(state["modality"])
        self.matrices = {m: {n: t.clone() for n, t in ts.items()} for m, ts in state["matrices"].items()}
        self.best_f1 = float(state["best_f1"])
        weights = state["best_weights"]
        self.best_weights = None if weights is None else {k: v.clone() for k, v in weights.items()}
