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

Each row: one warm-up epoch (compilation, cuDNN autotuning; its seconds are reported), then the timed
epochs, of which the fastest gives samples/s (on a shared machine the least disturbed); peak GPU
memory. Results go to ``benchmarks/results/gpu_throughput_<cuda|cpu>.{json,md}``. Asked for a device
that is absent (``--device cuda`` without CUDA), it writes that file with every row "not measured"
instead of a number.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
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
    epoch_throughput,
    resolved_run,
    timed_epochs,
)
from mmbalance.data.audio import preload
from mmbalance.engine.loop import Trainer
from mmbalance.methods.base import Batch
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
COMPILE_RESERVE_S = 90.0
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
        Row("augmentation (its cost)", settings=augment),
        Row("all, without augmentation", settings=dict(FAST)),
    ]
    for method in ("lfm_h", "mie", "aug"):
        rows.append(Row("today: fp32, deterministic, synchronous reads", method=method))
        rows.append(Row("all, with augmentation", method=method, settings={**FAST, **augment}))
    rows.append(Row("today: fp32, deterministic, synchronous reads", audio="lfm_code"))
    rows.append(Row("all, with augmentation", audio="lfm_code", settings={**FAST, **augment}))
    rows.append(Row("today, measured again (its spread against the first row is the machine's noise)"))
    rows.append(Row("compile", settings={"compile": True}))
    rows.append(Row("all + compile, with augmentation", settings={**FAST, **augment, "compile": True}))
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


def official_throughput(
    trainer: Trainer, items: list, scale: Scale, workers: int, epochs: int
) -> dict[str, float]:
    """:func:`benchmarks.throughput.timed_epochs` of epochs fed by :class:`OfficialLoader`."""
    device = trainer.device
    generator = torch.Generator().manual_seed(0)
    loader = DataLoader(
        OfficialLoader(items, "cremad", scale.frame),
        batch_size=scale.batch,
        shuffle=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        generator=generator,
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

    return timed_epochs(epoch, epochs, device, len(items))


def measure(
    row: Row, args: argparse.Namespace, scale: Scale, stores: Stores, items: list
) -> dict[str, float]:
    torch._dynamo.reset()  # every compiled row pays its own compilation
    frame = scale.stored if row.augmented() else scale.frame
    resolved = resolved_run(args.params, row.method, scale, row.settings, args.epochs + 1)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(resolved, stores.get(row.audio, frame), Path(run_dir), args.device)
        if row.official_loader:
            return official_throughput(trainer, items, scale, args.workers, args.epochs)
        return epoch_throughput(trainer, args.epochs)


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
    parser.add_argument("--budget", type=float, default=200.0, help="seconds; later rows are not measured")
    args = parser.parse_args()
    kind = device_kind(args)
    cuda = torch.cuda.is_available()
    scale = SCALES[args.scale]
    args.epochs = args.epochs or (2 if kind == "cuda" else 3)
    if kind == "cpu":
        torch.set_num_threads(args.threads)
    rows = plan(scale)
    results: list[dict[str, float] | str] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        stores = Stores(Path(scratch), scale)
        if kind == "cuda" and not cuda:
            results = [f"{NOT_MEASURED} (no CUDA device on this machine)"] * len(rows)
        else:
            preload()
            items = write_raw(Path(scratch) / "raw", scale.train)
            for row in rows:
                reserve = COMPILE_RESERVE_S if row.settings.get("compile") else 0.0
                if kind == "cpu" and row.not_on_cpu:
                    results.append(row.not_on_cpu)
                elif time.perf_counter() - started + reserve > args.budget:
                    results.append(f"{NOT_MEASURED} (time budget of {args.budget:.0f} s spent)")
                else:
                    results.append(measure(row, args, scale, stores, items))
                print(row.method, row.audio, row.setting, results[-1], flush=True)
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
        f"samples/s of the fastest of {args.epochs} timed epoch(s) after a warm-up epoch; official loader "
        f"with {args.workers} DataLoader workers"
        + (f"; {args.threads} torch thread(s)" if kind == "cpu" else "")
        + ". MIE trains its first stage (audio, with SAM). Samples/s count training samples; evaluation is "
        "left out."
    )


if __name__ == "__main__":
    main()
