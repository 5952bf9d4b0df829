"""Loss landscapes along filter-normalised random directions (Li et al., NeurIPS'18; MIE Figures 5–6).

Around trained weights ``θ``, the loss is evaluated at ``θ + α·d₁`` (1-D) and ``θ + α·d₁ + β·d₂``
(2-D) for random directions ``d`` drawn from a seeded Gaussian and **filter-normalised** (Li et al.
§4): every filter ``d_i`` (a slice along a weight's first axis: a convolution's output channel, a
linear layer's output unit) is rescaled to the norm of the same filter of ``θ``, ``d_i ← d_i/‖d_i‖·‖θ_i‖``,
and biases and normalisation parameters (one-dimensional tensors) are left unperturbed (``d = 0``, the
paper's "ignore biasbn"), so distances are relative to each filter's scale and comparable between
networks. The sharpness summary is the loss rise at distance ``r``: the mean of
``L(θ ± r·d₁)`` and ``L(θ ± r·d₂)`` minus ``L(θ)``.

The analysis ``loss_landscape`` does this per modality for Concat ("Baseline"), MLA and MIE: the
directions span the modality's encoder, and the loss is the cross-entropy of that modality's head on a
fixed subset of the training split (its first ``samples`` samples), with every module in eval mode.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mmbalance.analysis import _runs as runs
from mmbalance.analysis._base import Analysis
from mmbalance.errors import ConfigError
from mmbalance.io import write_csv
from mmbalance.registry import register_analysis
from mmbalance.report.tables import Table, write_table

Loss = Callable[[], float]


def filter_normalised_direction(
    params: Sequence[torch.Tensor], generator: torch.Generator
) -> list[torch.Tensor]:
    """A Gaussian direction with each filter rescaled to the norm of the parameter's filter; zero for
    one-dimensional parameters (biases, BatchNorm). Drawn on the CPU from ``generator`` (repeatable)."""
    direction = []
    for p in params:
        d = torch.randn(p.shape, generator=generator, dtype=torch.float32).to(p.device, p.dtype)
        if p.dim() <= 1:
            d.zero_()
        else:
            theta = p.detach().flatten(1).norm(dim=1)
            scale = theta / d.flatten(1).norm(dim=1).clamp_min(1e-12)
            d = d * scale.view(-1, *([1] * (p.dim() - 1)))
        direction.append(d)
    return direction


@torch.no_grad()
def surface(
    loss: Loss,
    params: Sequence[torch.Tensor],
    directions: Sequence[Sequence[torch.Tensor]],
    coordinates: Sequence[Sequence[float]],
) -> np.ndarray:
    """``L(θ + Σ_k c_k·d_k)`` for each point ``c`` of ``coordinates`` (one coefficient per direction);
    the parameters are restored exactly afterwards."""
    origin = [p.detach().clone() for p in params]
    values = []
    try:
        for point in coordinates:
            for p, p0, *ds in zip(params, origin, *directions, strict=True):
                p.copy_(p0 + sum(c * d for c, d in zip(point, ds, strict=True)))
            values.append(loss())
    finally:
        for p, p0 in zip(params, origin, strict=True):
            p.copy_(p0)
    return np.array(values, dtype=np.float64)


def sharpness(
    loss: Loss, params: Sequence[torch.Tensor], directions: Sequence[Sequence[torch.Tensor]], r: float
) -> float:
    """Mean loss rise at distance ``r`` along ``±`` each direction: ``mean_k,± L(θ ± r·d_k) − L(θ)``."""
    k = len(directions)
    points = [[0.0] * k] + [
        [sign * r if j == i else 0.0 for j in range(k)] for i in range(k) for sign in (1, -1)
    ]
    values = surface(loss, params, directions, points)
    return float(values[1:].mean() - values[0])


@register_analysis("loss_landscape")
class LossLandscape(Analysis):
    """1-D and 2-D loss surfaces per modality and a sharpness table (MIE Figures 5–6)."""

    name = "loss_landscape"
    all_seeds = False

    @dataclasses.dataclass
    class Options:
        methods: list = dataclasses.field(default_factory=lambda: ["concat", "mla", "mie"])
        """MIE Figure 5's Baseline (Concat), MLA and MIE."""
        samples: int = 64
        """The fixed training subset: the first ``samples`` samples of the training split."""
        span: float = 0.5
        """Coefficients run over [−span, span] (units of the filter-normalised directions)."""
        points_1d: int = 15
        points_2d: int = 7
        """Points along the 1-D line and along each side of the 2-D grid."""
        radius: float = 0.25
        """Distance at which the sharpness (loss rise) is measured."""
        direction_seed: int = 0
        """Seed of the directions (the same for every method, one stream per modality)."""

    def outputs(self, dataset: str, out_dir: Path) -> list[Path]:
        stem = Path(out_dir) / self.stem(dataset)
        table = [Path(f"{stem}_sharpness{s}") for s in (".md", ".csv", ".tex")]
        return [*self.figure_files(dataset, out_dir), stem.with_suffix(".csv"), *table]

    def check(self) -> None:
        opts = self.options
        if opts.samples < 1 or opts.points_1d < 2 or opts.points_2d < 2 or opts.span <= 0 or opts.radius <= 0:
            raise ConfigError(
                "analysis.loss_landscape: want samples >= 1, points_1d, points_2d >= 2, span, radius > 0"
            )

    def run(self, dataset: str, out_dir: Path) -> list[Path]:
        from mmbalance.analysis._figures import plot_loss_landscape

        self.check()
        opts = self.options
        modalities = self.modalities(dataset)
        store = runs.feature_store(self.params, dataset)
        line = np.linspace(-opts.span, opts.span, opts.points_1d)
        side = np.linspace(-opts.span, opts.span, opts.points_2d)
        grid = [(a, b) for a in side for b in side]
        surfaces: dict[str, Any] = {"line": line, "side": side, "methods": {}}
        rows: list[dict[str, Any]] = []
        sharp: dict[str, dict[str, tuple[float, float]]] = {}
        for method in opts.methods:
            if method not in self.methods():
                surfaces["methods"][method] = None
                continue
            _, model, state = runs.load_model(self.checkpoint_dirs(dataset, method)[0], "last", store)
            batch = self.training_subset(store, state)
            surfaces["methods"][method], sharp[method] = {}, {}
            for index, modality in enumerate(modalities):
                loss, params = self.modality_loss(model, batch, modality)
                generator = torch.Generator().manual_seed(opts.direction_seed * 1000 + index)
                d1 = filter_normalised_direction(params, generator)
                d2 = filter_normalised_direction(params, generator)
                one = surface(loss, params, [d1], [[a] for a in line])
                two = surface(loss, params, [d1, d2], grid).reshape(len(side), len(side))
                rise = sharpness(loss, params, [d1, d2], opts.radius)
                surfaces["methods"][method][modality] = (one, two)
                sharp[method][modality] = (loss(), rise)
                rows += [
                    {
                        "method": method,
                        "modality": modality,
                        "surface": "1d",
                        "alpha": a,
                        "beta": 0.0,
                        "loss": v,
                    }
                    for a, v in zip(line, one, strict=True)
                ]
                rows += [
                    {
                        "method": method,
                        "modality": modality,
                        "surface": "2d",
                        "alpha": a,
                        "beta": b,
                        "loss": v,
                    }
                    for (a, b), v in zip(grid, two.ravel(), strict=True)
                ]
        stem = Path(out_dir) / self.stem(dataset)
        write_csv(stem.with_suffix(".csv"), rows, ["method", "modality", "surface", "alpha", "beta", "loss"])
        table = self.sharpness_table(dataset, sharp, modalities)
        written = write_table(table, out_dir, f"{self.stem(dataset)}_sharpness")
        formats = self.params["report"]["figure_formats"]
        figures = plot_loss_landscape(surfaces, modalities, stem, formats, dataset)
        return [*figures, stem.with_suffix(".csv"), *written]

    def training_subset(self, store: Any, state: dict[str, Any]) -> Any:
        """The first ``samples`` training samples as one batch, read as evaluation reads them."""
        n = min(self.options.samples, len(store.split("train").labels))
        data = runs.batches(store, state, "train", rows=list(range(n)))
        data.batch_size = n
        return next(data.epoch())

    @staticmethod
    def modality_loss(model: nn.Module, batch: Any, modality: str) -> tuple[Loss, list[torch.Tensor]]:
        """The CE of ``modality``'s head on ``batch`` as a function of the modality's encoder parameters
        (the other modalities' features computed once when the model is ``fusion(encode(x))``)."""
        params = list(model.encoders[modality].parameters())
        if runs.standard_forward(model):
            with torch.no_grad():
                fixed = {m: model.encoders[m](x) for m, x in batch.inputs.items() if m != modality}

            def forward() -> Any:
                return runs.fuse(model, {**fixed, modality: model.encoders[modality](batch.inputs[modality])})
        else:

            def forward() -> Any:
                return model(batch.inputs)

        @torch.no_grad()
        def loss() -> float:
            return float(F.cross_entropy(forward().modality[modality].float(), batch.labels))

        return loss, params

    def sharpness_table(
        self, dataset: str, sharp: dict[str, dict[str, tuple[float, float]]], modalities: list[str]
    ) -> Table:
        r = self.options.radius
        rows = [
            [method, *(f"{values[m][k]:.4f}" for m in modalities for k in (0, 1))]
            for method, values in sharp.items()
        ]
        return Table(
            header=["method", *(h for _ in modalities for h in ("loss", f"rise at {r:g}"))],
            groups=[("", 1), *((m, 2) for m in modalities)],
            rows=rows,
            caption=f"{dataset}: training loss of each modality's head and its rise at distance {r:g}",
            notes=[
                f"Seed {self.seeds()[0]}, last epoch; cross-entropy on the first {self.options.samples} "
                "training samples, every module in eval mode.",
                f"rise at {r:g}: mean of L(θ ± {r:g}·d) over two filter-normalised random directions d of "
                "the modality's encoder, minus L(θ); larger = sharper (Li et al. NeurIPS'18, MIE §4.6.1).",
            ],
            label=f"tab:{self.stem(dataset)}_sharpness",
        )
