"""MSLR: modality-specific learning rates for additive late fusion.

Yao & Mihalcea, "Modality-specific Learning Rates for Effective Multimodal Additive Late-fusion",
Findings of ACL 2022; implementation as in the AGM repository (``Lingy12/AGM_ICCV2023`` at a24f2ce,
``--methods MSLR``; methods.md §B14).

Late fusion (fusion ``sum``: per-modality encoder and linear classifier, summed logits) trained with
CE on the fused logits. After backward, the gradients of modality ``m``'s encoder **and** unimodal
classifier are multiplied by ``c_m`` — under SGD (with momentum) the same update as a learning rate
``c_m·η`` for that branch; weight decay, added by the optimiser after the scaling, is not scaled.

Variants (``variant``):

* ``dynamic`` (default; the AGM-repo "dynamic MSLR", the implementation behind the MSLR rows of the
  LFM/MIE tables): ``c_m`` starts at ``coefficients[m]`` (audio 0.9, video 1.1 in the repo); at the
  end of every epoch ``t`` with at least ``window`` earlier epochs,
  ``c_m = c_m,init · acc_m(t) / mean(acc_m(t−window) … acc_m(t−1))`` with ``acc_m`` the unimodal
  head's accuracy on the **validation** split (the repo uses the test split).
* ``static`` (the paper's "Keep": fixed per-modality learning rates from unimodal tuning, from the
  literature, not checked against code): ``c_m = coefficients[m]`` throughout.

``coefficients`` lists one multiplier per modality in the dataset's modality order, so the method
works for any number of modalities (a list of the wrong length is a ``ConfigError``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import nn

from mmbalance.engine.types import Batch, Context, ModelSpec
from mmbalance.errors import ConfigError
from mmbalance.methods._base import Logs, Method
from mmbalance.models.model import ModelOutput
from mmbalance.registry import register_method


def dynamic_coefficients(
    initial: Mapping[str, float], accuracy: Mapping[str, Sequence[float]], window: int
) -> dict[str, float]:
    """``c_m = c_m,init · acc_m(t) / mean(acc_m(t−window … t−1))`` (AGM repo's dynamic MSLR).

    ``accuracy[m]`` holds the held-out accuracy of every finished epoch, the current one last. With
    fewer than ``window`` earlier epochs, or a zero mean, ``c_m`` stays at its initial value.
    """
    coefficients = {}
    for m, init in initial.items():
        history = accuracy[m]
        coefficients[m] = init
        if len(history) > window:
            previous = sum(history[-window - 1 : -1]) / window
            if previous > 0:
                coefficients[m] = init * history[-1] / previous
    return coefficients


def branch_parameters(model: nn.Module, modality: str) -> Iterator[nn.Parameter]:
    """Modality ``m``'s encoder and unimodal classifier: the parameters MSLR scales."""
    yield from model.encoders[modality].parameters()
    yield from model.fusion.heads[modality].parameters()


@register_method("mslr")
class MSLR(Method):
    """Sum of unimodal heads; each branch's gradients scaled by its coefficient after backward."""

    fusion = "sum"
    curves: ClassVar[dict[str, str]] = {"lr_scale_{modality}": "MSLR learning-rate multiplier c_m"}
    dataset_settings: ClassVar[tuple[str, ...]] = ("coefficients",)

    @dataclass
    class Options:
        variant: str = field(default="dynamic", metadata={"choices": ("dynamic", "static")})
        coefficients: list = field(default_factory=lambda: [0.9, 1.1])
        """Initial (``dynamic``) or fixed (``static``) multipliers, one per modality in dataset order."""
        window: int = 5
        """``dynamic``: number of earlier epochs averaged in the denominator (repo: 5)."""

    def __init__(self, options: dict[str, Any], spec: ModelSpec) -> None:
        super().__init__(options, spec)
        opts = self.options
        if len(opts.coefficients) != len(self.modalities) or any(c <= 0 for c in opts.coefficients):
            raise ConfigError(
                f"methods.mslr.coefficients: one positive multiplier per modality {self.modalities} "
                f"(dataset order), got {opts.coefficients}"
            )
        if opts.window < 1:
            raise ConfigError(f"methods.mslr.window: want a positive integer, got {opts.window}")
        self.initial = {m: float(c) for m, c in zip(self.modalities, opts.coefficients, strict=True)}
        self.coefficients = dict(self.initial)
        self.accuracy: dict[str, list[float]] = {m: [] for m in self.modalities}

    def after_backward(self, outputs: ModelOutput, batch: Batch, ctx: Context) -> Logs:
        """``g ← c_m · g`` for every parameter of modality ``m``'s encoder and classifier."""
        for m, c in self.coefficients.items():
            for param in branch_parameters(ctx.model, m):
                if param.grad is not None:
                    param.grad.mul_(c)
        return {}

    def on_epoch_start(self, ctx: Context) -> Logs:
        return {f"lr_scale_{m}": c for m, c in self.coefficients.items()}

    def on_epoch_end(self, ctx: Context, evaluation: dict[str, dict[str, dict[str, float]]]) -> Logs:
        """``dynamic``: record each unimodal validation accuracy and set the next epoch's ``c_m``."""
        if self.options.variant == "static":
            return {}
        for m in self.modalities:
            self.accuracy[m].append(evaluation["val"][m]["acc"])
        self.coefficients = dynamic_coefficients(self.initial, self.accuracy, self.options.window)
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {
            "coefficients": dict(self.coefficients),
            "accuracy": {m: list(a) for m, a in self.accuracy.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.coefficients = {m: float(c) for m, c in state["coefficients"].items()}
        self.accuracy = {m: [float(a) for a in accs] for m, accs in state["accuracy"].items()}
