"""Missing modality at test time (AUG Table 5), for every method of the matrix.

Each run is evaluated at its val-selected epoch (``ckpt/selected.pt``: the model and method state as
evaluated at the epoch the validation split selects, :mod:`mmbalance.engine.checkpoint`) with a share
of the test samples missing one modality: that modality's input replaced by its encoder's masked input,
the input whose normalised value is zero (AGM's mechanism, :func:`mmbalance.models.shapley.masked_input`:
the mean colour for frames and images, zeros for spectrograms). The same samples miss the modality for
every method and seed (``sample_seed``), and the 20 % are among the 50 %. Fused test accuracy per
missing modality and share, mean ± std over seeds, one table for all methods.

Evaluation mode treats samples independently, so for models whose forward is ``fusion(encode(x))``
the outputs are recomputed from the test features the engine stored with the selected model, with the
masked modality's feature (one encoder pass of the masked input) in the missing samples; models that
act across modalities inside the encoders (MMTM: ``channel``, ``greedy``) or around them (AGM's
Shapley model) are run on the masked inputs. Both give the outputs a forward pass on the masked inputs
gives (tests/test_analysis_missing.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mmbalance import config
from mmbalance.analysis import _runs as runs
from mmbalance.analysis._base import Analysis
from mmbalance.engine.batches import SplitBatches
from mmbalance.engine.metrics import accuracy
from mmbalance.io import write_csv
from mmbalance.methods._base import Method
from mmbalance.models.shapley import masked_input
from mmbalance.registry import register_analysis
from mmbalance.report.aggregate import mean_std
from mmbalance.report.tables import Table, format_pct, write_table

COMPLETE = "complete"


def missing_mask(n: int, share: float, seed: int) -> np.ndarray:
    """Which of ``n`` samples miss the modality: the first ``round(share·n)`` of a seeded permutation, so a
    smaller share's samples are among a larger one's."""
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng(seed).permutation(n)[: round(share * n)]] = True
    return mask


@torch.no_grad()
def predict_missing(
    method: Method,
    model: nn.Module,
    data: SplitBatches,
    modality: str | None,
    mask: np.ndarray,
    features: Mapping[str, np.ndarray] | None = None,
) -> np.ndarray:
    """Fused test probabilities with ``modality`` masked in the samples of ``mask`` (None: none masked).

    With ``features`` (the split's encoder features) and a :func:`runs.standard_forward` model only the
    fusion runs; otherwise the model runs on the inputs with the masked samples' input replaced.
    """
    from_features = features is not None and runs.standard_forward(model)
    absent = None
    parts = []
    for batch in data.epoch():
        index = batch.index.numpy()
        chosen = torch.from_numpy(mask[index]).to(batch.labels.device)
        if from_features:
            if absent is None and modality is not None:
                encoder = model.encoders[modality]
                absent = encoder(masked_input(encoder, batch.inputs[modality][:1]))
            z = {
                m: torch.from_numpy(np.asarray(f[index])).to(batch.labels.device) for m, f in features.items()
            }
            if modality is not None:
                z[modality] = torch.where(chosen[:, None], absent.expand_as(z[modality]), z[modality])
            outputs = runs.fuse(model, z)
        else:
            inputs = dict(batch.inputs)
            if modality is not None:
                x = inputs[modality]
                blank = masked_input(model.encoders[modality], x)
                keep = chosen.view(-1, *([1] * (x.dim() - 1)))
                inputs[modality] = torch.where(
                    keep, blank, x
                )  # promotes uint8 frames to the float mean colour
            outputs = model(inputs)
        parts.append(method.predict(outputs)["fused"].float().cpu().numpy())
    return np.concatenate(parts)


@register_analysis("missing_modality")
class MissingModality(Analysis):
    """Fused test accuracy with a share of the test samples missing one modality (AUG Table 5)."""

    name = "missing_modality"

    @dataclasses.dataclass
    class Options:
        methods: list = dataclasses.field(default_factory=list)
        """Methods to evaluate; empty: every method of the experiment matrix."""
        shares: list = dataclasses.field(default_factory=lambda: [0.2, 0.5])
        """Shares of the test samples that miss the modality (AUG Table 5: 20 % and 50 %)."""
        sample_seed: int = 0
        """Seed of the draw of the samples that miss it."""

    def methods(self) -> list[str]:
        return super().methods() if self.options.methods else config.experiment_methods(self.params)

    def outputs(self, dataset: str, out_dir: Path) -> list[Path]:
        stem = Path(out_dir) / self.stem(dataset)
        return [*(stem.with_suffix(s) for s in (".md", ".csv", ".tex")), Path(f"{stem}_runs.csv")]

    def evaluate_run(
        self, checkpoint_dir: Path, store: Any, modalities: list[str]
    ) -> dict[tuple[str, float], float]:
        """``{(missing modality, share): fused test accuracy}`` of one run, ``(complete, 0)`` included."""
        method, model, state = runs.load_model(checkpoint_dir, "selected", store)
        data = runs.batches(store, state, "test")
        features = state.get("test_features")
        n = data.labels.size
        result = {
            (COMPLETE, 0.0): accuracy(
                data.labels, predict_missing(method, model, data, None, np.zeros(n, bool), features)
            )
        }
        for modality in modalities:
            for share in self.options.shares:
                mask = missing_mask(n, share, self.options.sample_seed)
                probs = predict_missing(method, model, data, modality, mask, features)
                result[(modality, float(share))] = accuracy(data.labels, probs)
        return result

    def run(self, dataset: str, out_dir: Path) -> list[Path]:
        modalities = self.modalities(dataset)
        shares = [float(s) for s in self.options.shares]
        columns = [(COMPLETE, 0.0)] + [(m, s) for m in modalities for s in shares]
        store = runs.feature_store(self.params, dataset)
        ddof = self.params["report"]["std_ddof"]
        raw: list[dict[str, Any]] = []
        table_rows = []
        for method in self.methods():
            per_seed = [
                self.evaluate_run(d, store, modalities) for d in self.checkpoint_dirs(dataset, method)
            ]
            for seed, values in zip(self.seeds(), per_seed, strict=True):
                raw += [
                    {"method": method, "seed": seed, "missing": m, "share": s, "acc": values[(m, s)]}
                    for m, s in columns
                ]
            table_rows.append(
                [method, *(format_pct(*mean_std([v[c] for v in per_seed], ddof)) for c in columns)]
            )
        stem = Path(out_dir) / self.stem(dataset)
        seeds = ", ".join(str(s) for s in self.seeds())
        table = Table(
            header=["method", "none missing", *(f"{100 * s:g} %" for _ in modalities for s in shares)],
            groups=[("", 2), *((f"{m} missing", len(shares)) for m in modalities)],
            rows=table_rows,
            caption=f"{dataset}: fused test accuracy (%) when a share of the test samples misses a modality",
            notes=[
                f"Mean ± std (ddof {ddof}) over seeds {seeds}, the model of each run's val-selected epoch.",
                "A missing modality's input is replaced by its encoder's masked input (zero after "
                "normalisation: the mean colour of frames and images, zeros for spectrograms), in the same "
                f"samples for every method and seed (sample_seed {self.options.sample_seed}; the smaller "
                "share's samples are among the larger one's). AUG Table 5 is the aug row.",
            ],
            label=f"tab:{self.stem(dataset)}",
        )
        written = write_table(table, out_dir, self.stem(dataset))
        write_csv(Path(f"{stem}_runs.csv"), raw, ["method", "seed", "missing", "share", "acc"])
        return [*written, Path(f"{stem}_runs.csv")]
