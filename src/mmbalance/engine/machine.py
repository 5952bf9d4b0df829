"""What a run was measured on: recorded in ``metrics.json`` (``machine``) next to the per-epoch
``seconds`` of ``history.csv``, so a training-cost table can say which machine its times come from."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch

CPUINFO = Path("/proc/cpuinfo")


def cpu_model(cpuinfo: Path = CPUINFO) -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``), else what :func:`platform.processor` says."""
    try:
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def describe(device: torch.device) -> dict[str, Any]:
    """The machine a run trains on: CPU model and logical cores, torch threads, accelerator, versions.

    The same on every run of one machine and setting (``metrics.json`` stays byte-identical there).
    """
    accelerator = torch.cuda.get_device_name(device) if device.type == "cuda" else "none (CPU)"
    return {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count() or 0,
        "torch_threads": torch.get_num_threads(),
        "accelerator": accelerator,
        "system": f"{platform.system()} {platform.machine()}",
        "torch": torch.__version__,
    }
