"""Samples per second of a training epoch on the paper profile's CREMA-D shapes, speed setting by setting.

One command on a GPU machine (under 5 minutes on one GPU: a time budget stops it, leaving the rows it
could not reach "not measured"):

    python -m benchmarks.bench_gpu        # CUDA if present: the paper shapes; else the CPU, small shapes

Rows, all through the real engine (:mod:`benchmarks.throughput`) on synthetic stores of CREMA-D's shapes
(spectrogram 257×299 and one frame; the LFM/AUG code's 257×1250):

- **today's path**: fp32, deterministic kernels, synchronous reads from the memory-mapped store, no
  augmentation (frames stored at the model's size);
- **each setting alone** (Concat): ``prefetch: 2``, ``precision: bf16`` / ``fp16``,
  ``deterministic: false``, ``channels_last: true``, ``compile: true``, and ``augment`` (its cost:
  frames stored larger, cropped and flipped on the device);
- **all together**: bf16, non-deterministic, channels_last, prefetch 2 (the recommended speed
  settings), with the paper profile's augmentation; and with ``compile`` too;
- **the official kind of loader**: a ``DataLoader`` with workers that reads each WAV and runs librosa's
  STFT (PMR's recipe) and decodes each JPEG frame (480×360, CREMA-D's) with PIL and torchvision's
  ``RandomResizedCrop`` + flip, per item and epoch, feeding the same model in fp32 with
  deterministic kernels;
- Concat, LFM-H, MIE (its first stage: the audio network, with SAM's two passes) and AUG, today's
  path and all together; Concat on the LFM code's spectrograms.

Each row: its trainer built and one warm-up epoch run (compilation, cuDNN autotuning; its seconds are
reported), then timed epochs in rounds over all rows (a swing of a shared machine's load hits a whole
round); the fastest epoch of a row gives its samples/s; peak GPU memory of the row. Results go to
``benchmarks/results/gpu_throughput_<cuda|cpu>.{json,md}``. Asked for a device that is absent
(``--device cuda`` without CUDA), it writes that file with every row "not measured" instead of a
number.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from benchmarks.common import write_results
from benchmarks.synthetic import write_raw
from benchmarks.throughput import (
    SCALES,
    Scale,
    Stores,
    add_device_arguments,
    device_kind,
    resolved_run,
    timed,
    train_epoch,
)
from mmbalance.data.audio import preload
from mmbalance.engine.loop import Trainer
from mmbalance.engine.types import Batch
from mmbalance.registry import FRONTENDS

FAST = {"prefetch": 2, "precision": "bf16", "deterministic": False, "channels_last": True}
"""The recommended speed settings (README "GPUs"): every one of them but ``compile``."""
COLUMNS = [
    "shapes",
    "method",
    "setting",
    "samples_per_s",
    "vs_today",
    "vs_on_the_fly",
    "first_epoch_s",
    "peak_gpu_mib",
]
NOT_MEASURED = "not measured"
FP16_ON_CPU = (
    "not measured on the CPU: float16 convolutions have no fast CPU kernel (one 16-channel 56x56 conv "
    "forward and backward takes 2.8 s in fp16 against 0.036 s in fp32 on the development machine)"
)
WARM_UP_SHARE = 0.65
"""Share of the budget for building and warming up the rows; the rest times them."""
COMPILE_RESERVE_S = 60.0
"""A compiled row starts only with this much of the budget left (compiling two ResNet18s takes a minute)."""


@dataclass(frozen=True)
class Row:
    """One measurement: ``method`` with the engine ``settings`` on the ``audio`` shapes."""

    setting: str
    method: str = "concat"
    settings: dict[str, Any] = field(default_factory=dict)
    audio: str = "cremad"
    official_loader: bool = False
    not_on_cpu: str = ""
    """Why the row is not measured on a CPU (empty: it is)."""

    def augmented(self) -> bool:
        return "augment" in self.settings


def plan(scale: Scale) -> list[Row]:
    """The rows, most important first (the time budget cuts from the end)."""
    augment = {"augment": {"size": scale.frame}}
    rows = [
        Row("today: fp32, deterministic, synchronous reads"),
        Row(
            "official kind of loader (librosa + JPEG per item, DataLoader workers), fp32",
            official_loader=True,
        ),
        Row(
            "all: bf16 + deterministic false + channels_last + prefetch 2, with augmentation",
            settings={**FAST, **augment},
        ),
        Row("prefetch 2", settings={"prefetch": 2}),
        Row("bf16", settings={"precision": "bf16"}),
        Row("fp16 (gradient scaler)", settings={"precision": "fp16"}, not_on_cpu=FP16_ON_CPU),
        Row("deterministic false (cuDNN benchmark)", settings={"deterministic": False}),
        Row("channels_last", settings={"channels_last": True}),
        Row("compile", settings={"compile": True}),
        Row("augmentation (its cost)", settings=augment),
        Row("all, without augmentation", settings=dict(FAST)),
        Row("today, measured again (its spread against the first row is the machine's noise)"),
        Row("all + compile, with augmentation", settings={**FAST, **augment, "compile": True}),
    ]
    for method in ("lfm_h", "mie", "aug"):
        rows.append(Row("today: fp32, deterministic, synchronous reads", method=method))
        rows.append(Row("all, with augmentation", method=method, settings={**FAST, **augment}))
    rows.append(Row("today: fp32, deterministic, synchronous reads", audio="lfm_code"))
    rows.append(Row("all, with augmentation", audio="lfm_code", settings={**FAST, **augment}))
    return rows


class OfficialLoader(Dataset):
    """Per item: the WAV → PMR spectrogram with librosa, the JPEG → PIL → RandomResizedCrop + flip (uint8)."""

    def __init__(self, items: list, audio: str, frame: int) -> None:
        self.items = items
        self.frontend = FRONTENDS.get("pmr" if audio == "cremad" else "lfm_code")(
            3.0 if audio == "cremad" else 20.0
        )
        self.transform = v2.Compose(
            [v2.PILToTensor(), v2.RandomResizedCrop(frame), v2.RandomHorizontalFlip()]
        )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        wav, jpg, label = self.items[index]
        spectrogram = torch.from_numpy(self.frontend(wav)).half()
        with Image.open(jpg) as image:
            frame = self.transform(image.convert("RGB"))
        return spectrogram, frame[None], label


def official_epochs(trainer: Trainer, items: list, scale: Scale, workers: int) -> Callable[[int], None]:
    """An epoch of ``trainer``'s method fed by :class:`OfficialLoader` (new workers every epoch, as the
    official scripts' ``DataLoader``)."""
    device = trainer.device
    loader = DataLoader(
        OfficialLoader(items, "cremad", scale.frame),
        batch_size=scale.batch,
        shuffle=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(0),
    )

    def epoch(index: int) -> None:
        trainer.method.on_epoch_start(trainer.context(index))
        for audio, video, labels in loader:
            batch = Batch(
                {"audio": audio.to(device, non_blocking=True), "video": video.to(device, non_blocking=True)},
                labels.to(device),
                torch.arange(len(labels)),
            )
            trainer.method.training_step(batch, trainer.context(index))

    return epoch


@dataclass
class Live:
    """A row's trainer, built and warmed up, and its timings so far."""

    run_epoch: Callable[[int], None]
    samples: int
    first_epoch_s: float
    peak_mib: float
    fastest: float = math.inf

    def result(self) -> dict[str, float]:
        rate = self.samples / self.fastest
        return {"samples_per_s": rate, "first_epoch_s": self.first_epoch_s, "peak_mib": self.peak_mib}


def prepare(
    row: Row, args: argparse.Namespace, scale: Scale, stores: Stores, items: list, run_dir: Path
) -> Live:
    """Build ``row``'s trainer and run its warm-up epoch (compilation, autotuning, page cache); its GPU
    memory is the peak during the warm-up above what was allocated before it was built."""
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    frame = scale.stored if row.augmented() else scale.frame
    resolved = resolved_run(args.params, row.method, scale, row.settings, args.epochs + 1)
    trainer = Trainer(resolved, stores.get(row.audio, frame), run_dir, args.device)
    if row.official_loader:
        run_epoch, samples = official_epochs(trainer, items, scale, args.workers), len(items)
    else:
        run_epoch, samples = (lambda epoch: train_epoch(trainer, epoch)), len(trainer.batches["train"].labels)
    first = timed(run_epoch, 0, device)
    peak = (torch.cuda.max_memory_allocated(device) - before) / 2**20 if device.type == "cuda" else 0.0
    return Live(run_epoch, samples, first, peak)


def measure_all(rows: list[Row], args: argparse.Namespace, scale: Scale, scratch: Path) -> list[dict | str]:
    """Every row built and warmed up (within :data:`WARM_UP_SHARE` of the budget), then timed in rounds,
    one epoch of every row per round, until the budget is spent: a swing of the machine's load hits all
    rows of a round alike, and each row keeps its fastest epoch. Rows left without a timed epoch are
    "not measured"."""
    started = time.perf_counter()
    device = torch.device(args.device)
    stores = Stores(scratch, scale)
    preload()
    items = write_raw(scratch / "raw", scale.train)
    live: dict[int, Live] = {}
    results: list[dict | str] = [f"{NOT_MEASURED} (time budget of {args.budget:.0f} s spent)"] * len(rows)
    for index, row in enumerate(rows):
        reserve = COMPILE_RESERVE_S if row.settings.get("compile") else 0.0
        if device.type == "cpu" and row.not_on_cpu:
            results[index] = row.not_on_cpu
        elif time.perf_counter() - started + reserve <= WARM_UP_SHARE * args.budget:
            run_dir = scratch / "runs" / str(index)
            live[index] = prepare(row, args, scale, stores, items, run_dir)
            print("warmed up:", row.method, row.audio, row.setting, flush=True)
    for epoch in range(1, args.epochs + 1):
        for index, entry in live.items():
            if time.perf_counter() - started > args.budget:
                break
            entry.fastest = min(entry.fastest, timed(entry.run_epoch, epoch, device))
            results[index] = entry.result()
            print(f"epoch {epoch}:", rows[index].method, rows[index].setting, results[index], flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_device_arguments(parser)
    parser.add_argument("--epochs", type=int, help="timed epochs per row (default: 2 on CUDA, 3 on the CPU)")
    parser.add_argument(
        "--workers", type=int, default=min(16, os.cpu_count() or 1), help="DataLoader workers"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (CPU runs)")
    parser.add_argument("--budget", type=float, default=240.0, help="seconds; later rows are not measured")
    args = parser.parse_args()
    kind = device_kind(args)
    scale = SCALES[args.scale]
    args.epochs = args.epochs or (2 if kind == "cuda" else 3)
    if kind == "cpu":
        torch.set_num_threads(args.threads)
    rows = plan(scale)
    if kind == "cuda" and not torch.cuda.is_available():
        results: list[dict | str] = [f"{NOT_MEASURED} (no CUDA device on this machine)"] * len(rows)
    else:
        with tempfile.TemporaryDirectory() as scratch:
            results = measure_all(rows, args, scale, Path(scratch))
    write_results(f"gpu_throughput_{kind}", table(rows, results), COLUMNS, note(args, scale, kind))


def table(rows: list[Row], results: list[dict[str, float] | str]) -> list[dict[str, str]]:
    """The result rows; speed-ups against today's path of the same method and shapes and against the
    official loader (Concat, CREMA-D shapes)."""
    rates = [value["samples_per_s"] if isinstance(value, dict) else None for value in results]
    today = {
        (r.method, r.audio): rate
        for r, rate in zip(rows, rates, strict=True)
        if r.setting.startswith("today:")
    }
    official = next((rate for r, rate in zip(rows, rates, strict=True) if r.official_loader), None)
    out = []
    for row, value in zip(rows, results, strict=True):
        shapes = "257x299 + 1 frame" if row.audio == "cremad" else "257x1250 + 1 frame (LFM code)"
        line = {"shapes": shapes, "method": row.method, "setting": row.setting}
        if isinstance(value, str):
            out.append({**line, **dict.fromkeys(COLUMNS[3:], ""), "samples_per_s": value})
            continue
        base = today.get((row.method, row.audio))
        line.update(
            samples_per_s=f"{value['samples_per_s']:.1f}",
            vs_today=f"{value['samples_per_s'] / base:.2f}x" if base else "",
            vs_on_the_fly=f"{value['samples_per_s'] / official:.2f}x"
            if official and (row.method, row.audio) == ("concat", "cremad")
            else "",
            first_epoch_s=f"{value['first_epoch_s']:.1f}",
            peak_gpu_mib=f"{value['peak_mib']:.0f}" if value["peak_mib"] else "-",
        )
        out.append(line)
    return out


def note(args: argparse.Namespace, scale: Scale, kind: str) -> str:
    return (
        f"Training-epoch samples/s on `{kind}` (`python -m benchmarks.bench_gpu --device {args.device}`): "
        f"ResNet18 width {scale.width} per modality, batch {scale.batch}, {scale.train} training samples, "
        f"frames {scale.frame} px (stored at {scale.stored} px where augmented), "
        f"samples/s of the fastest of {args.epochs} timed epoch(s), timed in rounds over all rows after a "
        "warm-up epoch each; official loader "
        f"with {args.workers} DataLoader workers"
        + (f"; {args.threads} torch thread(s)" if kind == "cpu" else "")
        + ". MIE trains its first stage (audio, with SAM). Samples/s count training samples; evaluation is "
        "left out."
    )


if __name__ == "__main__":
    main()
