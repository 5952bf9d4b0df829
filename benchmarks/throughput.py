"""Training-epoch throughput of the real engine on synthetic CREMA-D-shaped stores (bench_gpu, bench_packing).

A run is the paper profile's ``train.paper.cremad`` preset from ``params.yaml`` with the benchmark's
scale (encoder width, batch, frame size) and engine settings, trained by
:class:`mmbalance.engine.loop.Trainer` on a store written by :mod:`benchmarks.synthetic`: the same
code path as ``mmbalance train`` (batches, prefetch, augmentation, precision, compilation), minus
evaluation, which the samples/s of a training epoch leave out.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchmarks.synthetic import write_store
from mmbalance import config, paths
from mmbalance.data.datasets._base import MANIFEST
from mmbalance.engine.loop import Trainer
from mmbalance.engine.settings import DEFAULTS

DATASET = "cremad"
AUDIO_SHAPES = {"cremad": (257, 299), "lfm_code": (257, 1250)}
"""The papers' CREMA-D spectrogram (PMR's recipe, 3 s) and the LFM/AUG code's (20-s tiling)."""


@dataclass(frozen=True)
class Scale:
    """Model and data sizes of a benchmark: ``paper`` on a GPU, ``small`` for a CPU."""

    width: int
    frame: int
    stored: int
    batch: int
    train: int

    def counts(self) -> dict[str, int]:
        return {"train": self.train, "val": 2, "test": 2}


SCALES = {
    "paper": Scale(width=64, frame=224, stored=256, batch=64, train=1024),
    "small": Scale(width=16, frame=112, stored=128, batch=16, train=48),
}
"""``paper``: ResNet18s of width 64, 224-px frames (stored at 256 for cropping), batch 64 (the paper
profile). ``small``: width 16, 112-px frames, batch 16, the real spectrogram shapes."""


class Stores:
    """Synthetic stores under ``root``, one per spectrogram shape and frame size, written on first use
    (a complete one, with its manifest, is reused: packed runs share the store their parent wrote)."""

    def __init__(self, root: Path, scale: Scale) -> None:
        self.root, self.scale = Path(root), scale

    def get(self, audio: str, frame: int) -> Path:
        folder = self.root / f"store-{audio}-{frame}-{self.scale.train}"
        if not (folder / MANIFEST).exists():
            write_store(folder, self.scale.counts(), AUDIO_SHAPES[audio], frame)
        return folder


def resolved_run(
    params_path: str | Path, method: str, scale: Scale, settings: dict[str, Any], epochs: int
) -> dict[str, Any]:
    """The resolved config of ``method`` on the paper profile's CREMA-D preset at ``scale`` with exactly
    the engine ``settings`` (``precision``, ``prefetch``, ``augment``, ...; the preset's own are dropped)."""
    params = config.read_yaml(params_path)
    params["profile"] = "paper"
    block = params["train"]["paper"][DATASET]
    for key in (*DEFAULTS, "augment"):
        block.pop(key, None)
    block.update(
        epochs=epochs,
        batch_size=scale.batch,
        eval_batch_size=scale.batch,
        encoders={m: {"name": "resnet18", "width": scale.width} for m in ("audio", "video")},
        **settings,
    )
    config.validate(params)
    return paths.resolve_run(params, DATASET, method, 0)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_epoch(trainer: Trainer, epoch: int) -> None:
    """The training part of :meth:`Trainer.run_epoch`: the method's epoch start and every step."""
    trainer.method.on_epoch_start(trainer.context(epoch))
    trainer.train_epoch(epoch)
    synchronize(trainer.device)


def timed(run_epoch: Callable[[int], None], epoch: int, device: torch.device) -> float:
    """Seconds of ``run_epoch(epoch)``, the device's queue drained before and after."""
    synchronize(device)
    start = time.perf_counter()
    run_epoch(epoch)
    synchronize(device)
    return time.perf_counter() - start


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    """``--params``, ``--device`` and ``--scale``, shared by the GPU benchmarks."""
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cuda or cpu")
    parser.add_argument("--scale", choices=sorted(SCALES), help="default: paper on CUDA, small on the CPU")


def device_kind(args: argparse.Namespace) -> str:
    """Resolve ``args.device`` (auto: CUDA if present) and ``args.scale`` (``paper`` on CUDA, ``small``
    on the CPU); return ``"cuda"`` or ``"cpu"``, the kind of device asked for (present or not)."""
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    kind = "cuda" if args.device.startswith("cuda") else "cpu"
    args.scale = args.scale or ("paper" if kind == "cuda" else "small")
    return kind
