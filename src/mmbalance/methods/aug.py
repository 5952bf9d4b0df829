"""AUG: sustained boosting with adaptive classifier assignment.

Jiang, Huang & Yang, "Rethinking Multimodal Learning from the Perspective of Mitigating
Classification Ability Disproportion", NeurIPS 2025 (official code ``njustkmg/NeurIPS25-AUG``,
HEAD 841d079 ``train_CREMAD.py``; methods.md §A3). Model: :mod:`mmbalance.models.boosted`.

Per modality ``o`` with classifiers ``f_1 … f_t`` (Sec. 3.2; Alg. 1's loss (6)): residual label
``ŷ_t``, residual error ``ε = CE(f_t, ŷ_t)``, ``ε_all = CE(Σ_{j≤t} f_j, y)``,
``ε_pre = CE(Σ_{j<t} f_j, y)``, ``L_SUB(o) = ε + ε_all + ε_pre`` (``CE(F_o, y)`` alone while
``t = 1``); sums of classifier outputs are logit sums, as in the code. Every ``t_n`` epochs the
adaptive classifier assignment (ACA, Sec. 3.3) adds a classifier to the weak modality.

Paper-vs-code variants (methods.md §A3.5) and their switches, defaults first:

* ``residual_form``: ``paper_sum_probs`` ``ŷ = y − λ Σ_{j<t} y⊙softmax(f_j)`` (Sec. 3.2) |
  ``code_ensemble_softmax`` ``ŷ = y − λ y⊙softmax(Σ_{j<t} f_j)``. Both targets are detached
  (constants of the loss), as the code detaches. ŷ is not clamped; with λ·Σ_j p_j[y] > 1 the paper
  form goes negative, as its formula does.
* ``residual_lambda`` (λ): 0.5, the HEAD code's value (paper grid {0.1, 0.2, 0.33, 0.5, 1.0};
  April-2025 upload: 0.2).
* ``new_classifier_trainable``: ``True`` (paper intent: the new ``Layer1`` joins the optimiser as
  its own param group, hyper-parameters copied from group 0) | ``False`` (code: never registered
  with the optimiser, so it stays at its random init; gradients still flow through it). A new
  ``Layer1`` is initialised by the protocol's ``init`` (``xavier_heads``: the code's ``add_layer``).
* ``update``: ``joint`` (paper Alg. 1: one step on ``Σ_o L_SUB(o)``) | ``per_modality`` (code:
  encode every modality, then per modality in order backward + step, the later modalities'
  classifiers reading the shared head already updated by the earlier ones; parameters without a
  gradient in a step are skipped, the PyTorch ≥ 2 behaviour of the code's ``zero_grad``).
* ``aca_rule``: ``difference`` (Sec. 3.3: ``s_a − σ s_v > τ`` → add to v, ``< −τ`` → add to a) |
  ``ratio`` (code: ``s_a/s_v > σ + τ`` → v, ``< σ − τ`` → a). Confidence ``s_o`` is the mean over
  the epoch's training samples of ``softmax(F_o)[y]`` taken in the training steps (code), not a
  separate pass. With more than two modalities (our generalisation): the weakest modality ``w``
  gets a classifier when the mean confidence ``r`` of the others beats it, ``r − σ s_w > τ`` or
  ``r / s_w > σ + τ``; at most one classifier per check.
* ``t_n``: epochs between checks (the paper's t_N, Sec. 4.1). 0 = ``num_epochs // 10``, the code's
  rule, kept as the default because the paper gives t_N per dataset only (20 CREMA-D, 10 KS, VGGSound,
  NVGesture, 5 Twitter, 1 Sarcasm), which every paper preset sets, and E/10 equals each of them at
  the preset's epochs. ``assign_after_first_epoch``: also check after epoch 0 — off by default (the
  paper checks every t_N epochs only), on for the code (``aug_code``).
* Confidence of ACA: both rules read the paper's ``s_o = mean_i y_iᵀ Σ_j p_ij`` with ``Σ_j p_j`` the
  softmax of the summed logits ``softmax(Σ_j f_j)`` — the code's reading, and the one consistent with
  the loss's sums of classifier outputs being logit sums; a sum of per-classifier probabilities would
  grow with the number of classifiers (up to ``n_o``) and compare classifier counts, not confidence.
* ``merge_weights``: fused logits ``Σ_o w_o F_o``; default the code's ``merge_alpha`` 0.4/0.6
  (paper silent). Must list one weight per modality.
* Not implemented: the April-2025 upload's ``w_network`` gating (not in the paper, gone in HEAD).

The paper's further experiments (methods.md §A3.1), as options:

* ``loss_terms`` (Table 2's ablation): which of ``eps``, ``eps_all``, ``eps_pre`` enter ``L_SUB``
  once a modality has two classifiers (with one, ``CE(F_o, y)`` is the loss whatever is dropped).
* ``n_fix`` (Table 3, fixed against adaptive assignment): ``0`` = ACA; ``n > 0`` = no ACA, the modality
  ``fixed_modality`` (``""``: the dataset's last, video on the audio–video datasets, the weak one on
  CREMA-D) has ``n`` classifiers from the first step, every other modality one. The paper's text
  does not say how its fixed classifiers are placed; this is our reading.
* ``gap_loss`` (Theorem 1, Figures 6–7) is logged per epoch: ``G = L_SUB(a) − L_SUB(v)`` of the first
  two modalities, the mean over the epoch's batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mmbalance.engine.types import Batch, Context, ModelSpec
from mmbalance.errors import ConfigError
from mmbalance.methods._base import Logs, Method
from mmbalance.models.boosted import BoostedClassifiers
from mmbalance.models.encoders.adapters import build_encoder
from mmbalance.models.init import initialise_heads
from mmbalance.models.model import ModelOutput, MultimodalModel
from mmbalance.registry import register_method


def residual_labels(parts: torch.Tensor, y: torch.Tensor, lam: float, form: str) -> torch.Tensor:
    """Soft targets ``ŷ_t`` of the newest classifier from the previous classifiers' logits.

    ``parts``: ``(t−1, B, K)`` logits of ``f_1 … f_{t−1}``; ``y``: integer labels. The paper's form
    (Sec. 3.2, ``paper_sum_probs``) or the code's softmax of the summed logits (``code_ensemble_softmax``).
    """
    onehot = F.one_hot(y, parts.shape[-1]).to(parts.dtype)
    parts = parts.detach()
    confidence = parts.softmax(dim=-1).sum(0) if form == "paper_sum_probs" else parts.sum(0).softmax(dim=-1)
    return onehot - lam * onehot * confidence


LOSS_TERMS = ("eps", "eps_all", "eps_pre")


def boosting_loss(
    parts: torch.Tensor, y: torch.Tensor, lam: float, form: str, terms: Sequence[str] = LOSS_TERMS
) -> dict[str, torch.Tensor]:
    """``L = ε + ε_all + ε_pre`` (Eq. 6) of one modality, with its terms; ``CE(F, y)`` when ``t = 1``.

    ``terms`` keeps a subset of the three in ``loss`` (AUG Table 2's ablation); all three are returned.
    """
    eps_all = F.cross_entropy(parts.sum(0), y)
    if parts.shape[0] == 1:
        return {"loss": eps_all, "eps_all": eps_all}
    previous, newest = parts[:-1], parts[-1]
    eps = F.cross_entropy(newest, residual_labels(previous, y, lam, form))
    eps_pre = F.cross_entropy(previous.sum(0), y)
    values = {"eps": eps, "eps_all": eps_all, "eps_pre": eps_pre}
    return {"loss": sum(values[name] for name in terms), **values}


def assign_classifier(scores: dict[str, float], rule: str, sigma: float, tau: float) -> str | None:
    """The modality that receives a new classifier under ACA (Sec. 3.3), or ``None`` in the dead zone.

    Two modalities ``(a, v)`` in their order: the paper's (``difference``) or the code's (``ratio``)
    rule verbatim. More: the weakest against the mean of the others (module docstring).
    """
    names = list(scores)
    if len(names) == 2:
        first, second = names
        sa, sv = scores[first], scores[second]
        if rule == "difference":
            gap = sa - sigma * sv
            return second if gap > tau else first if gap < -tau else None
        ratio = sa / sv if sv > 0 else float("inf")
        return second if ratio > sigma + tau else first if ratio < sigma - tau else None
    weakest = min(names, key=lambda m: scores[m])
    others = sum(scores[m] for m in names if m != weakest) / (len(names) - 1)
    sw = scores[weakest]
    if rule == "difference":
        return weakest if others - sigma * sw > tau else None
    ratio = others / sw if sw > 0 else float("inf")
    return weakest if ratio > sigma + tau else None


@register_method("aug")
class AUG(Method):
    """Boosted per-modality classifiers over a shared head, grown on the weak modality."""

    curves: ClassVar[dict[str, str]] = {
        "classifiers_{modality}": "classifiers per modality",
        "train_gap_loss": "gap loss G = L(first modality) − L(second)",
    }
    dataset_settings: ClassVar[tuple[str, ...]] = ("t_n", "merge_weights")

    @dataclass
    class Options:
        residual_form: str = field(
            default="paper_sum_probs", metadata={"choices": ("paper_sum_probs", "code_ensemble_softmax")}
        )
        residual_lambda: float = 0.5
        aca_rule: str = field(default="difference", metadata={"choices": ("difference", "ratio")})
        sigma: float = 1.0
        tau: float = 0.01
        t_n: int = 0
        """Epochs between assignments; 0 = E/10 (the code's rule; it gives every paper t_N at the paper
        presets' epochs, which set t_n anyway: see the module docstring)."""
        assign_after_first_epoch: bool = False
        """Also assign after epoch 0: the code (``aug_code``); the paper checks every t_N epochs only."""
        new_classifier_trainable: bool = True
        update: str = field(default="joint", metadata={"choices": ("joint", "per_modality")})
        merge_weights: tuple[float, ...] = (0.4, 0.6)
        hidden: int = 256
        loss_terms: list = field(default_factory=lambda: list(LOSS_TERMS))
        n_fix: int = 0
        fixed_modality: str = ""

    def __init__(self, options: dict[str, Any], spec: ModelSpec) -> None:
        super().__init__(options, spec)
        if len(self.options.merge_weights) != len(self.modalities):
            raise ConfigError(
                f"methods.aug.merge_weights: {len(self.options.merge_weights)} weights for "
                f"{len(self.modalities)} modalities {self.modalities}"
            )
        terms = self.options.loss_terms
        if not terms or len(set(terms)) != len(terms) or set(terms) - set(LOSS_TERMS):
            raise ConfigError(f"methods.aug.loss_terms: distinct names of {list(LOSS_TERMS)}, got {terms}")
        if self.options.n_fix < 0:
            raise ConfigError(
                f"methods.aug.n_fix: 0 (adaptive) or a number of classifiers, got {self.options.n_fix}"
            )
        fixed = self.options.fixed_modality or self.modalities[-1]
        if fixed not in self.modalities:
            raise ConfigError(f"methods.aug.fixed_modality: '{fixed}' is not one of {self.modalities}")
        self.added: list[str] = [fixed] * max(self.options.n_fix - 1, 0)
        """Modality of each added classifier, in the order of addition (= optimiser group order)."""
        self.confidence: dict[str, float] = {}
        self.score_sums = dict.fromkeys(self.modalities, 0.0)
        self.score_count = 0

    # --- model and optimiser -------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        return {m: 1 + self.added.count(m) for m in self.modalities}

    def build(self) -> nn.Module:
        encoders = {m: build_encoder(kind, self.spec.encoders[m]) for m, kind in self.spec.modalities.items()}
        dims = {m: enc.out_dim for m, enc in encoders.items()}
        head = BoostedClassifiers(
            dims, self.spec.num_classes, self.counts(), self.options.merge_weights, self.options.hidden
        )
        if not self.options.new_classifier_trainable:
            for layer in self.added_layers(head):
                layer.requires_grad_(False)
        return MultimodalModel(encoders, head)

    def added_layers(self, head: BoostedClassifiers) -> list[nn.Module]:
        """The added ``Layer1`` modules in the order they were added."""
        seen = dict.fromkeys(self.modalities, 0)
        layers = []
        for modality in self.added:
            seen[modality] += 1
            layers.append(head.layers[modality][seen[modality]])
        return layers

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        """Group 0: everything but the added classifiers; then one group per trainable added classifier.

        The same groups in the same order as :meth:`grow` creates them, so a resumed optimiser
        loads the saved state of a grown model.
        """
        added = self.added_layers(model.fusion)
        added_ids = {id(p) for layer in added for p in layer.parameters()}
        groups = [{"params": [p for p in model.parameters() if id(p) not in added_ids]}]
        if self.options.new_classifier_trainable:
            groups += [{"params": list(layer.parameters())} for layer in added]
        return groups

    def grow(self, modality: str, ctx: Context) -> None:
        """Add a classifier to ``modality`` and register it with the optimiser (or freeze it)."""
        layer = initialise_heads(ctx.model.fusion.add_classifier(modality), self.spec.init)
        self.added.append(modality)
        if self.options.new_classifier_trainable:
            hyper = {k: v for k, v in ctx.optimizer.param_groups[0].items() if k != "params"}
            ctx.optimizer.add_param_group({**hyper, "params": list(layer.parameters())})
        else:
            layer.requires_grad_(False)

    # --- training --------------------------------------------------------------------------
    def modality_loss(
        self, modality: str, feature: torch.Tensor, y: torch.Tensor, ctx: Context
    ) -> dict[str, torch.Tensor]:
        """The boosting loss terms of one modality; adds its batch confidence ``Σ_i softmax(F_o)_i[y_i]``."""
        parts = ctx.model.fusion.classifier_logits(modality, feature)
        opts = self.options
        terms = boosting_loss(parts, y, opts.residual_lambda, opts.residual_form, opts.loss_terms)
        score = parts.detach().sum(0).softmax(dim=1).gather(1, y[:, None]).sum()
        self.score_sums[modality] += float(score)
        return terms

    def training_step(self, batch: Batch, ctx: Context) -> Logs:
        y, precision = batch.labels, ctx.precision
        with precision.autocast():
            features = ctx.model.encode(batch.inputs)
        self.score_count += len(batch)
        logs: Logs = {}
        total = torch.zeros((), device=y.device)
        if self.options.update == "joint":
            with precision.autocast():
                terms = {m: self.modality_loss(m, features[m], y, ctx) for m in self.modalities}
                total = sum(t["loss"] for t in terms.values())
            ctx.optimizer.zero_grad(set_to_none=True)
            precision.backward(total)
            precision.step(ctx.optimizer)
        else:
            terms, used = {}, {}
            for m in self.modalities:
                with precision.autocast():
                    terms[m] = self.modality_loss(m, features[m], y, ctx)
                ctx.optimizer.zero_grad(set_to_none=True)
                precision.backward(terms[m]["loss"])
                precision.step(ctx.optimizer)
                used.update(
                    {p: p.grad for g in ctx.optimizer.param_groups for p in g["params"] if p.grad is not None}
                )
                total = total + terms[m]["loss"].detach()
            for param, grad in used.items():  # leave each parameter the gradient it was last stepped with
                param.grad = grad
        for m, t in terms.items():
            logs.update({f"{k}_{m}": float(v.detach()) for k, v in t.items()})
        first, second = self.modalities[:2]
        logs["gap_loss"] = logs[f"loss_{first}"] - logs[f"loss_{second}"]
        return {"loss": float(total.detach()), **logs}

    def on_epoch_start(self, ctx: Context) -> Logs:
        self.score_sums = dict.fromkeys(self.modalities, 0.0)
        self.score_count = 0
        return {f"classifiers_{m}": float(n) for m, n in self.counts().items()}

    def assignment_due(self, epoch: int, num_epochs: int) -> bool:
        if self.options.n_fix:
            return False
        period = self.options.t_n or max(1, num_epochs // 10)
        return (epoch == 0 and self.options.assign_after_first_epoch) or (epoch + 1) % period == 0

    def on_epoch_end(self, ctx: Context, evaluation: dict[str, dict[str, dict[str, float]]]) -> Logs:
        count = max(self.score_count, 1)
        self.confidence = {m: s / count for m, s in self.score_sums.items()}
        logs = {f"confidence_{m}": s for m, s in self.confidence.items()}
        chosen = None
        if self.assignment_due(ctx.epoch, ctx.num_epochs):
            opts = self.options
            chosen = assign_classifier(self.confidence, opts.aca_rule, opts.sigma, opts.tau)
            if chosen is not None:
                self.grow(chosen, ctx)
        logs.update({f"added_{m}": float(m == chosen) for m in self.modalities})
        return logs

    # --- inference -------------------------------------------------------------------------
    def predict(self, outputs: ModelOutput) -> dict[str, torch.Tensor]:
        """Fused: ``softmax(Σ_o w_o F_o)`` (code ``merge_alpha``); per modality ``softmax(F_o)``."""
        probs = {m: outputs.modality[m].softmax(dim=1) for m in self.modalities}
        return {"fused": outputs.fused.softmax(dim=1), **probs}

    # --- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "added": list(self.added),
            "confidence": dict(self.confidence),
            "score_sums": dict(self.score_sums),
            "score_count": self.score_count,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.added = list(state["added"])
        self.confidence = dict(state["confidence"])
        self.score_sums = dict(state["score_sums"])
        self.score_count = int(state["score_count"])
