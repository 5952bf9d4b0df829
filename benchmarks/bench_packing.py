"""Aggregate samples/s of 1, 2, 4 and 8 training runs sharing one GPU (``GPU_SLOTS_PER_DEVICE``).

One command on a GPU machine (a few minutes on one GPU):

    python -m benchmarks.bench_packing             # CUDA if present: paper shapes; else the CPU, small shapes

For each ``k``, ``k`` processes each train Concat on the paper profile's CREMA-D shapes through the
real engine (:mod:`benchmarks.throughput`; the recommended speed settings of ``bench_gpu`` with the
paper profile's augmentation, or ``--setting today``), as the workflow's ``with_gpu.sh`` slots would run
them. Every process builds its model and runs a warm-up epoch, then waits for the others; all start
their timed epochs together. Aggregate samples/s = all processes' samples / (last end − first start).
Results go to ``benchmarks/results/gpu_packing_<cuda|cpu>.{json,md}``; asked for CUDA without one, every
row is "not measured".
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.bench_gpu import FAST, NOT_MEASURED
from benchmarks.common import write_results
from benchmarks.throughput import SCALES, Stores, add_device_arguments, device_kind, resolved_run, train_epoch
from mmbalance.engine.loop import Trainer

COLUMNS = ["runs", "aggregate_samples_per_s", "per_run_samples_per_s", "vs_one_run", "peak_gpu_mib_per_run"]
POLL_SECONDS = 0.05


def worker(args: argparse.Namespace) -> None:
    """One packed run: build, warm up, say ready, wait for ``go``, time ``epochs`` epochs, report."""
    scale = SCALES[args.scale]
    settings = setting(args.setting, scale.frame)
    frame = scale.stored if "augment" in settings else scale.frame
    if args.device == "cpu":
        torch.set_num_threads(1)
    resolved = resolved_run(args.params, "concat", scale, settings, args.epochs + 1)
    work = Path(args.work)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(resolved, Stores(work, scale).get("cremad", frame), Path(run_dir), args.device)
        train_epoch(trainer, 0)
        (work / f"ready-{args.worker}").touch()
        while not (work / "go").exists():
            time.sleep(POLL_SECONDS)
        start = time.time()
        for epoch in range(1, args.epochs + 1):
            train_epoch(trainer, epoch)
        end = time.time()
    peak = torch.cuda.max_memory_allocated() / 2**20 if args.device.startswith("cuda") else 0.0
    samples = args.epochs * len(trainer.batches["train"].labels)
    report = {"start": start, "end": end, "samples": samples, "peak_mib": peak}
    (work / f"result-{args.worker}.json").write_text(json.dumps(report))


def setting(name: str, frame: int) -> dict:
    return {**FAST, "augment": {"size": frame}} if name == "fast" else {}


def packed(args: argparse.Namespace, runs: int, work: Path) -> dict[str, float]:
    """Start ``runs`` workers on the same device; their aggregate and per-run samples/s."""
    for stale in [*work.glob("ready-*"), *work.glob("result-*"), *work.glob("go")]:
        stale.unlink()
    command = [sys.executable, "-m", "benchmarks.bench_packing", "--worker-of", str(work)]
    options = ["--params", args.params, "--device", args.device, "--scale", args.scale]
    options += ["--setting", args.setting, "--epochs", str(args.epochs)]
    procs = [subprocess.Popen([*command, str(k), *options]) for k in range(runs)]
    while len(list(work.glob("ready-*"))) < runs:
        if any(proc.poll() not in (None, 0) for proc in procs):
            raise RuntimeError(f"a packed run failed (exit {[p.returncode for p in procs]})")
        time.sleep(POLL_SECONDS)
    (work / "go").touch()
    if any(proc.wait() != 0 for proc in procs):
        raise RuntimeError(f"a packed run failed (exit {[p.returncode for p in procs]})")
    reports = [json.loads((work / f"result-{k}.json").read_text()) for k in range(runs)]
    seconds = max(r["end"] for r in reports) - min(r["start"] for r in reports)
    per_run = [r["samples"] / (r["end"] - r["start"]) for r in reports]
    return {
        "aggregate": sum(r["samples"] for r in reports) / seconds,
        "per_run": sum(per_run) / runs,
        "peak_mib": max(r["peak_mib"] for r in reports),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_device_arguments(parser)
    parser.add_argument("--runs", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--setting", choices=["fast", "today"], default="fast")
    parser.add_argument("--epochs", type=int, help="timed epochs per run (default: 3 on CUDA, 1 on the CPU)")
    parser.add_argument("--worker-of", nargs=2, metavar=("WORK", "K"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    kind = device_kind(args)
    cuda = torch.cuda.is_available()
    args.epochs = args.epochs or (3 if kind == "cuda" else 1)
    if args.worker_of:
        args.work, args.worker = args.worker_of
        worker(args)
        return
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        if kind == "cuda" and not cuda:
            missing = f"{NOT_MEASURED} (no CUDA device on this machine)"
            rows = [
                {**dict.fromkeys(COLUMNS, ""), "runs": k, "aggregate_samples_per_s": missing}
                for k in args.runs
            ]
        else:
            scale = SCALES[args.scale]
            frame = scale.stored if args.setting == "fast" else scale.frame
            Stores(work, scale).get("cremad", frame)  # written once, before the workers start
            single = None
            for runs in args.runs:
                result = packed(args, runs, work)
                single = single or result["aggregate"]
                print(runs, result, flush=True)
                rows.append(
                    {
                        "runs": runs,
                        "aggregate_samples_per_s": f"{result['aggregate']:.1f}",
                        "per_run_samples_per_s": f"{result['per_run']:.1f}",
                        "vs_one_run": f"{result['aggregate'] / single:.2f}x",
                        "peak_gpu_mib_per_run": f"{result['peak_mib']:.0f}" if result["peak_mib"] else "-",
                    }
                )
    scale = SCALES[args.scale]
    note = (
        f"`python -m benchmarks.bench_packing --device {args.device}`: k concurrent Concat runs on one "
        f"{kind} device, ResNet18 width {scale.width}, batch {scale.batch}, {scale.train} training samples, "
        f"setting `{args.setting}` ({json.dumps(setting(args.setting, scale.frame))}), {args.epochs} timed "
        "epoch(s) after a warm-up epoch, all runs timed together"
        + ("; one torch thread per run" if kind == "cpu" else "")
        + "."
    )
    write_results(f"gpu_packing_{kind}", rows, COLUMNS, note)


if __name__ == "__main__":
    main()
