"""Helpers shared by the benchmark scripts: timing and result files."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch

from mmbalance.io import atomic_open, write_json

RESULTS = Path(__file__).resolve().parent / "results"


def time_calls(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median seconds per call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def machine() -> dict:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def write_results(name: str, rows: list[dict], columns: list[str], note: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    write_json(RESULTS / f"{name}.json", {"machine": machine(), "note": note, "rows": rows})
    with atomic_open(RESULTS / f"{name}.md") as handle:
        handle.write(f"# {name}\n\n{note}\n\nMachine: `{json.dumps(machine())}`\n\n")
        handle.write("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n")
        for row in rows:
            handle.write("| " + " | ".join(str(row[c]) for c in columns) + " |\n")
    print((RESULTS / f"{name}.md").read_text())
