"""Grad-CAM of the visual and audio encoders at chosen epochs (LFM Figure 4, AUG Figure 4).

For each method (first seed) and each chosen epoch, the model kept after that epoch
(checkpoints ``epoch<k>``: the runs of these methods keep those epochs, ``config.kept_epochs``) and a
fixed set of test samples (the first test sample of each class, then the second, ... in class order),
the class-activation map of every modality with a convolutional encoder (spectrogram, frames, image)
by Grad-CAM (Selvaraju et al. ICCV'17) with the PyPI ``grad-cam`` package: the map of one stage of the
encoder's trunk for the sample's true class, on the fused logits (a late-fusion model without fused
logits: the modality's own), the other modalities' inputs unchanged; ReLU, upsampled to the input and
scaled to [0, 1] per map by the package. Frames get one map per frame.

The stage is ``stage`` of the trunk (``-1``: the last, the papers' choice), or the deepest stage before
it whose map is at least :data:`MIN_MAP` pixels on each side: on the embedded profile's 24-pixel
frames the last stage's map is 1×1, which carries no location.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mmbalance import config
from mmbalance.analysis import _runs as runs
from mmbalance.analysis._base import Analysis
from mmbalance.engine.checkpoint import epoch_checkpoint_name
from mmbalance.errors import ConfigError
from mmbalance.io import atomic_path, write_csv
from mmbalance.registry import register_analysis

CAM_KINDS = ("spectrogram", "frames", "image")
MIN_MAP = 4


def trunk_stages(encoder: nn.Module) -> nn.ModuleList | None:
    """The stages of a convolutional encoder's trunk (ResNet family, ResNet50), or None."""
    return getattr(getattr(encoder, "trunk", None), "stages", None)


def to_images(kind: str, x: torch.Tensor) -> torch.Tensor:
    """A modality's input as the (B, C, H, W) float batch the package expects: a spectrogram (B, F, T) as
    one channel, a clip of frames (B, T, 3, H, W) with its frames stacked as channels, an image as is."""
    if kind == "spectrogram":
        return x.float().unsqueeze(1)
    if kind == "frames":
        return x.float().flatten(1, 2)
    return x.float()


class TargetLogits(nn.Module):
    """The model as a function of one modality's input in image layout, the other modalities' inputs
    fixed: returns the logits Grad-CAM differentiates (fused, or the modality's own without fused ones)."""

    def __init__(self, model: nn.Module, modality: str, inputs: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.model = model
        self.modality = modality
        self.inputs = inputs
        self.shape = tuple(inputs[modality].shape)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        outputs = self.model({**self.inputs, self.modality: images.reshape(self.shape)})
        return outputs.fused if outputs.fused is not None else outputs.modality[self.modality]


def choose_stage(encoder: nn.Module, x: torch.Tensor, stage: int) -> int:
    """Index of the trunk stage to map: ``stage``, or the deepest one before it whose output is at least
    :data:`MIN_MAP` pixels high and wide (one sample's forward pass records the sizes)."""
    stages = trunk_stages(encoder)
    sizes: list[tuple[int, int]] = []
    hooks = [s.register_forward_hook(lambda _m, _i, out: sizes.append(tuple(out.shape[-2:]))) for s in stages]
    try:
        with torch.no_grad():
            encoder(x[:1])
    finally:
        for hook in hooks:
            hook.remove()
    index = stage % len(stages)
    while index > 0 and min(sizes[index]) < MIN_MAP:
        index -= 1
    return index


def gradcam_maps(
    model: nn.Module,
    modality: str,
    kind: str,
    inputs: dict[str, torch.Tensor],
    labels: torch.Tensor,
    stage: int,
) -> np.ndarray:
    """Grad-CAM maps of ``modality`` for the true ``labels``, in [0, 1]: (B, F, T) for spectrograms,
    (B, T, H, W) for frames, (B, H, W) for images."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    x = inputs[modality]
    layer = trunk_stages(model.encoders[modality])[stage]
    model.requires_grad_(True)  # a model saved mid-stage may have had some modules frozen (MIE)
    wrapper = TargetLogits(model, modality, inputs)
    with GradCAM(model=wrapper, target_layers=[layer]) as cam:
        maps = cam(input_tensor=to_images(kind, x), targets=[ClassifierOutputTarget(int(y)) for y in labels])
    if kind == "frames":
        return maps.reshape(x.shape[0], x.shape[1], *maps.shape[-2:])
    return maps


def display_input(kind: str, x: np.ndarray) -> np.ndarray:
    """What a map is drawn over: the spectrogram, the middle frame of a clip, the image (H, W, 3)."""
    if kind == "frames":
        return np.moveaxis(x[x.shape[0] // 2], 0, -1)
    if kind == "image":
        return np.moveaxis(x, 0, -1)
    return x.astype(np.float32)


def display_map(kind: str, cam: np.ndarray) -> np.ndarray:
    """The map drawn over :func:`display_input` (the middle frame's for clips)."""
    return cam[cam.shape[0] // 2] if kind == "frames" else cam


def pick_samples(labels: np.ndarray, count: int) -> list[int]:
    """``count`` test indices: the first sample of each class in class order, then the second, ..."""
    by_class = [np.flatnonzero(labels == c).tolist() for c in np.unique(labels)]
    picked: list[int] = []
    rank = 0
    while len(picked) < count and any(rank < len(members) for members in by_class):
        picked += [members[rank] for members in by_class if rank < len(members)][: count - len(picked)]
        rank += 1
    return picked


@register_analysis("gradcam")
class GradCAMAnalysis(Analysis):
    """Grad-CAM grids, rows = samples, columns = epochs, per method and modality (LFM Fig. 4, AUG Fig. 4)."""

    name = "gradcam"
    all_seeds = False

    @dataclasses.dataclass
    class Options:
        methods: list = dataclasses.field(default_factory=lambda: ["concat", "lfm_h"])
        """Concat and the method compared with it (LFM Figure 4: CONCAT and LFM)."""
        epochs: list = dataclasses.field(default_factory=lambda: [0, 6, -1])
        """0-based epochs (``-1`` the last): LFM's first, 7th and last. The runs of ``methods`` keep them."""
        samples: int = 4
        """Test samples per method (rows)."""
        stage: int = -1
        """Trunk stage whose activations are mapped (``-1`` the last; see the module docstring)."""

    def outputs(self, dataset: str, out_dir: Path) -> list[Path]:
        stem = Path(out_dir) / self.stem(dataset)
        return [*self.figure_files(dataset, out_dir), stem.with_suffix(".csv"), stem.with_suffix(".npz")]

    def cam_modalities(self, dataset: str) -> list[str]:
        return [m for m, kind in self.modality_kinds(dataset).items() if kind in CAM_KINDS]

    def run(self, dataset: str, out_dir: Path) -> list[Path]:
        from mmbalance.analysis._figures import plot_gradcam

        if self.options.samples < 1:
            raise ConfigError(f"analysis.gradcam.samples: want at least 1, got {self.options.samples}")
        kinds = self.modality_kinds(dataset)
        modalities = self.cam_modalities(dataset)
        epochs = config.epochs_within(
            self.options.epochs, config.train_config(self.params, dataset)["epochs"]
        )
        store = runs.feature_store(self.params, dataset)
        test = store.split("test")
        picked = pick_samples(np.asarray(test.labels), self.options.samples)
        grid: dict[str, Any] = {"methods": {}, "samples": [test.ids[i] for i in picked], "epochs": epochs}
        rows: list[dict[str, Any]] = []
        arrays: dict[str, np.ndarray] = {
            "sample_index": np.array(picked),
            "label": np.asarray(test.labels)[picked],
        }
        for method in self.options.methods:
            if method not in self.methods():
                grid["methods"][method] = None
                continue
            checkpoints = self.checkpoint_dirs(dataset, method)[0]
            grid["methods"][method] = {}
            for epoch in epochs:
                found = self.epoch_maps(checkpoints, epoch, store, picked, kinds, modalities)
                for modality, (maps, stage, probs) in found.items():
                    arrays[f"{method}/{modality}/epoch{epoch}"] = maps.astype(np.float16)
                    grid["methods"][method][(modality, epoch)] = [
                        display_map(kinds[modality], c) for c in maps
                    ]
                    rows += self.summary_rows(method, epoch, modality, stage, maps, probs, picked, test)
        inputs = self.display_inputs(store, picked, kinds, modalities)
        stem = Path(out_dir) / self.stem(dataset)
        columns = [
            "method",
            "seed",
            "epoch",
            "modality",
            "sample",
            "index",
            "label",
            "predicted",
            "label_probability",
            "stage",
            "peak_row",
            "peak_col",
            "map_mean",
        ]
        write_csv(stem.with_suffix(".csv"), rows, columns)
        with atomic_path(stem.with_suffix(".npz")) as tmp, open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)
        formats = self.params["report"]["figure_formats"]
        figures = plot_gradcam(grid, inputs, kinds, modalities, stem, formats, dataset)
        return [*figures, stem.with_suffix(".csv"), stem.with_suffix(".npz")]

    def epoch_maps(
        self,
        checkpoint_dir: Path,
        epoch: int,
        store: Any,
        picked: list[int],
        kinds: dict[str, str],
        modalities: list[str],
    ) -> dict[str, tuple[np.ndarray, int, np.ndarray]]:
        """``{modality: (maps, stage, fused probabilities)}`` of the model kept after ``epoch``."""
        method, model, state = runs.load_model(checkpoint_dir, epoch_checkpoint_name(epoch), store)
        batch = self.sample_batch(store, state, picked)
        with torch.no_grad():
            probs = method.predict(model(batch.inputs))["fused"].float().numpy()
        found = {}
        for modality in modalities:
            if trunk_stages(model.encoders[modality]) is None:
                continue  # not a convolutional trunk (CLIP's ViT): no Grad-CAM
            stage = choose_stage(model.encoders[modality], batch.inputs[modality], self.options.stage)
            maps = gradcam_maps(model, modality, kinds[modality], batch.inputs, batch.labels, stage)
            found[modality] = (maps, stage, probs)
        return found

    @staticmethod
    def sample_batch(store: Any, state: dict[str, Any], picked: list[int]) -> Any:
        """The picked test samples as one batch, read as evaluation reads them."""
        data = runs.batches(store, state, "test", rows=picked)
        data.batch_size = len(picked)
        return next(data.epoch())

    def display_inputs(
        self, store: Any, picked: list[int], kinds: dict[str, str], modalities: list[str]
    ) -> dict[str, list[np.ndarray]]:
        test = store.split("test")
        return {
            m: [display_input(kinds[m], np.asarray(test.arrays[m][i])) for i in picked] for m in modalities
        }

    def summary_rows(
        self,
        method: str,
        epoch: int,
        modality: str,
        stage: int,
        maps: np.ndarray,
        probs: np.ndarray,
        picked: list[int],
        test: Any,
    ) -> list[dict[str, Any]]:
        kind_map: Callable[[np.ndarray], np.ndarray] = (
            (lambda c: c[c.shape[0] // 2]) if maps.ndim == 4 else (lambda c: c)
        )
        rows = []
        for row, index in enumerate(picked):
            shown = kind_map(maps[row])
            peak = np.unravel_index(int(np.argmax(shown)), shown.shape)
            label = int(test.labels[index])
            rows.append(
                {
                    "method": method,
                    "seed": self.seeds()[0],
                    "epoch": epoch,
                    "modality": modality,
                    "sample": test.ids[index],
                    "index": index,
                    "label": label,
                    "predicted": int(probs[row].argmax()),
                    "label_probability": float(probs[row, label]),
                    "stage": stage,
                    "peak_row": peak[0] / max(shown.shape[0] - 1, 1),
                    "peak_col": peak[1] / max(shown.shape[1] - 1, 1),
                    "map_mean": float(maps[row].mean()),
                }
            )
        return rows
