"""Greedy: balanced multimodal learning by re-balancing steps (methods.md §B12).

Wu, Jastrzebski, Cho & Geras, "Characterizing and Overcoming the Greedy Nature of Learning in
Multi-modal Deep Neural Networks", ICML 2022 (official code ``nyukat/greedy_multimodal_learning``,
``Bias_Mitigation_Strong`` in ``src/callbacks.py``, ``MMTM_mitigate`` in ``src/balanced_mmtm.py``).
Model: two encoders coupled by MMTMs (:mod:`mmbalance.models.mmtm`, as ``channel``), one linear
classifier per branch, prediction ``ŷ = (ŷ_0 + ŷ_1)/2`` (paper Fig. 1; code ``MMTM_MVCNN``), loss
``Σ_m CE(ŷ_m)`` (code ``blend_loss``).

Per training step without curation, after backward (the code's ``compute_BDR``):

* conditional learning speed of modality ``m`` over a parameter set ``P``: ``‖∇_P‖² / ‖P‖²``
  (sums over the whole set), accumulated over steps: ``M_main,m`` over ``m``'s own branch — its
  encoder and its classifier (with ``head=concat`` the shared Concat head belongs to no branch) —
  and ``M_bypass,m`` over the MMTM parameters that touch ``m``: every module's squeeze layer
  (shared by both modalities) and ``m``'s excitation layers;
* ``BDR_m = log10(M_bypass,m / M_main,m)``, ``d = BDR_0 − BDR_1`` (modalities in dataset order);
* from ``start_epoch`` on, if ``|d| > ε`` a curation window opens for the next ``window`` (Q)
  steps on modality ``c = 0`` if ``d > 0`` else ``1``: in every MMTM ``c``'s gate is replaced by
  its running-average gate (detached, the same for every sample) while the other modality's gate
  is computed normally. Speeds are not accumulated during a window (as in the code).

More than two modalities (NVGesture; the paper and the code define ``d`` for a pair only, and the
NJUST tables do not say how Greedy was run on three): our generalisation keeps the rule's reading —
the curated modality is the one that learns most through the bypass relative to its own branch.
``d = max_m BDR_m − min_m BDR_m`` (≥ 0) and the window, when ``d > ε``, is on ``argmax_m BDR_m``
(the first in dataset order on ties); the other modalities' gates are computed normally. For two
modalities this is the rule above (``|BDR_0 − BDR_1| > ε``, curate the larger), and ``d`` keeps its
sign there.

Running average (our decision, documented): per MMTM and modality, the cumulative mean over all
training forward passes so far of the batch-mean computed gate (``k·σ(E_m)``, before any
replacement), updated after each training forward, so a window uses the average of the steps
before it; evaluation passes neither update nor use it (the code updates it on every forward,
evaluation included, and evaluates in curation mode when a window is open at the end of an epoch).
``running_average=code_quirk`` reproduces the code's update of the second modality's average with
the first modality's gate (both then hold modality 0's average; needs equal channel counts).

Switches (defaults first): ``stages`` ``[1, 2, 3, 4]`` (spec §B12) | ``[2, 3, 4]`` (code
``mmtm2..4``); ``gate`` ``2sigmoid`` (MMTM paper) | ``sigmoid`` (code); ``head``
``branch_average`` (paper Fig. 1 and code) | ``concat`` (the spec's "concat head" reading: CE on
a Concat head, per-modality logits from its column blocks); ``start_epoch`` is 0-based: the
default 1 is the code's ``starting_epoch=2`` counted from 1 (Poutyne's epochs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmbalance.engine.types import Batch, Context, ModelSpec
from mmbalance.errors import ConfigError
from mmbalance.methods._base import Logs
from mmbalance.methods.channel import Channel
from mmbalance.models.mmtm import GateOverride, MMTMModel
from mmbalance.models.model import ModelOutput
from mmbalance.registry import register_method

HEAD_FUSIONS = {"branch_average": "sum", "concat": "concat"}


def parameter_sets(model: MMTMModel, modality: str) -> dict[str, list[nn.Parameter]]:
    """``main``: the modality's encoder and its own classifier if any; ``bypass``: the MMTM parameters
    touching it (every squeeze layer, shared by all modalities, and the modality's excitation layers)."""
    main = list(model.encoders[modality].parameters())
    heads = getattr(model.fusion, "heads", None)
    if heads is not None:
        main += list(heads[modality].parameters())
    bypass = [
        p
        for block in model.mmtm.values()
        for p in (*block.squeeze.parameters(), *block.excite[modality].parameters())
    ]
    return {"main": main, "bypass": bypass}


def learning_speed(params: list[nn.Parameter]) -> float:
    """``‖∇θ‖² / ‖θ‖²`` over a parameter set (one step's term of the conditional learning speed)."""
    grad = sum(float(p.grad.detach().pow(2).sum()) for p in params if p.grad is not None)
    weight = sum(float(p.detach().pow(2).sum()) for p in params)
    return grad / weight if weight > 0 else 0.0


def bdr_difference(
    speeds: dict[str, dict[str, float]], modalities: list[str]
) -> tuple[dict[str, float], float]:
    """``BDR_m = log10(M_bypass,m / M_main,m)`` per modality and ``d`` (NaN if a BDR is undefined):
    ``BDR_0 − BDR_1`` for two modalities, ``max_m BDR_m − min_m BDR_m`` for more."""
    bdr = {}
    for m in modalities:
        bypass, main = speeds["bypass"][m], speeds["main"][m]
        bdr[m] = math.log10(bypass / main) if bypass > 0 and main > 0 else math.nan
    if len(modalities) == 2:
        first, second = modalities
        return bdr, bdr[first] - bdr[second]
    values = list(bdr.values())
    if any(math.isnan(v) for v in values):
        return bdr, math.nan
    return bdr, max(values) - min(values)


def curated_modality(bdr: dict[str, float], d: float, modalities: list[str]) -> str:
    """The modality a window curates: ``c = 0`` if ``d > 0`` else ``1`` (two); ``argmax_m BDR_m`` (more)."""
    if len(modalities) == 2:
        return modalities[0] if d > 0 else modalities[1]
    return max(modalities, key=lambda m: bdr[m])


@register_method("greedy")
class Greedy(Channel):
    """MMTM-coupled encoders trained with curation windows chosen from conditional learning speeds."""

    @dataclass
    class Options(Channel.Options):
        head: str = field(default="branch_average", metadata={"choices": tuple(HEAD_FUSIONS)})
        epsilon: float = 0.01
        window: int = 5
        start_epoch: int = 1
        running_average: str = field(default="own", metadata={"choices": ("own", "code_quirk")})

    def __init__(self, options: dict[str, Any], spec: ModelSpec) -> None:
        super().__init__(options, spec)
        if self.options.window < 1:
            raise ConfigError(f"methods.greedy.window: must be ≥ 1, got {self.options.window}")
        self.speeds = {kind: dict.fromkeys(self.modalities, 0.0) for kind in ("main", "bypass")}
        self.curated: str | None = None
        self.window_left = 0
        self.averages: dict[str, dict[str, torch.Tensor]] = {}
        self.average_count = 0

    # --- model ---------------------------------------------------------------------------
    def head_fusion(self) -> str:
        return HEAD_FUSIONS[self.options.head]

    def build(self) -> nn.Module:
        model = super().build()
        if self.options.running_average == "code_quirk":
            uneven = [
                s
                for s, block in model.mmtm.items()
                if len({e.out_features for e in block.excite.values()}) > 1
            ]
            if uneven:
                raise ConfigError(
                    "methods.greedy.running_average=code_quirk copies one modality's gate into the other's "
                    f"average and needs equal channel counts; stages {uneven} differ"
                )
        return model

    # --- running averages and curation ---------------------------------------------------
    @torch.no_grad()
    def update_running_averages(self, extras: dict[str, torch.Tensor], stages: list[str]) -> None:
        """Cumulative mean of the batch-mean computed gates (the code's ``running_avg_weight_*``), in fp32
        whatever the precision of the forward pass."""
        n = self.average_count
        first = self.modalities[0]
        for stage in stages:
            means = {m: extras[f"excitation_{stage}_{m}"].float().mean(0) for m in self.modalities}
            if self.options.running_average == "code_quirk":
                means = dict.fromkeys(self.modalities, means[first])
            previous = self.averages.get(stage, {})
            self.averages[stage] = {
                m: (mean + previous[m].to(mean.device) * n) / (n + 1) if previous else mean.clone()
                for m, mean in means.items()
            }
        self.average_count = n + 1

    def curation(self, device: torch.device) -> GateOverride | None:
        """The gate replacement of the current step: the curated modality's running averages, if any."""
        if self.window_left == 0 or self.curated is None:
            return None
        return {
            self.curated: {stage: gates[self.curated].to(device) for stage, gates in self.averages.items()}
        }

    def accumulate(self, model: MMTMModel) -> float:
        """Add this step's ``‖∇‖²/‖θ‖²`` of each modality's main and bypass sets; return the new ``d``."""
        for m in self.modalities:
            for kind, params in parameter_sets(model, m).items():
                self.speeds[kind][m] += learning_speed(params)
        return bdr_difference(self.speeds, self.modalities)[1]

    def advance(self, d: float, epoch: int) -> None:
        """After a step outside a window: open a window of ``window`` steps when ``|d| > ε``."""
        if epoch >= self.options.start_epoch and abs(d) > self.options.epsilon:
            bdr = bdr_difference(self.speeds, self.modalities)[0]
            self.curated = curated_modality(bdr, d, self.modalities)
            self.window_left = self.options.window

    # --- training --------------------------------------------------------------------------
    def training_forward(self, batch: Batch, ctx: Context) -> tuple[ModelOutput, Logs]:
        """Forward (inside a window the curated modality's gates replaced by their running averages),
        then the running averages updated; logs which modality was curated."""
        replace = self.curation(batch.labels.device)
        curated = next(iter(replace)) if replace else None
        outputs = ctx.model(batch.inputs, replace=replace)
        self.update_running_averages(outputs.fusion.extras, list(ctx.model.mmtm))
        return outputs, {f"curated_{m}": float(m == curated) for m in self.modalities}

    def after_backward(self, outputs: ModelOutput, batch: Batch, ctx: Context) -> Logs:
        """Count down an open window; otherwise accumulate speeds and maybe open a window."""
        if self.window_left > 0:
            self.window_left -= 1
            if self.window_left == 0:
                self.curated = None
            return {}
        self.advance(self.accumulate(ctx.model), ctx.epoch)
        return {}

    def loss(self, outputs: ModelOutput, batch: Batch, ctx: Context) -> tuple[torch.Tensor, Logs]:
        """CE on the Concat head, or the code's ``Σ_m CE(o_m)`` over the branch classifiers."""
        if self.options.head == "concat":
            return super().loss(outputs, batch, ctx)
        losses = {m: F.cross_entropy(outputs.modality[m], batch.labels) for m in self.modalities}
        return sum(losses.values()), {f"ce_{m}": float(v.detach()) for m, v in losses.items()}

    def on_epoch_end(self, ctx: Context, evaluation: dict[str, dict[str, dict[str, float]]]) -> Logs:
        bdr, d = bdr_difference(self.speeds, self.modalities)
        return {**{f"bdr_{m}": v for m, v in bdr.items()}, "d_bdr": d}

    # --- inference -------------------------------------------------------------------------
    def predict(self, outputs: ModelOutput) -> dict[str, torch.Tensor]:
        """``branch_average``: fused = softmax of the mean branch logits (the code's ``(x_0 + x_1)/2``)."""
        probs = super().predict(outputs)
        if self.options.head == "branch_average":
            probs["fused"] = (
                torch.stack([outputs.modality[m] for m in self.modalities]).mean(0).softmax(dim=1)
            )
        return probs

    # --- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "speeds": {kind: dict(values) for kind, values in self.speeds.items()},
            "curated": self.curated,
            "window_left": self.window_left,
            "averages": {
                s: {m: t.detach().cpu().clone() for m, t in g.items()} for s, g in self.averages.items()
            },
            "average_count": self.average_count,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.speeds = {kind: dict(values) for kind, values in state["speeds"].items()}
        self.curated = state["curated"]
        self.window_left = state["window_left"]
        self.averages = {s: {m: t.clone() for m, t in g.items()} for s, g in state["averages"].items()}
        self.average_count = state["average_count"]
