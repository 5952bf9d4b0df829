"""What a run's numbers depend on besides its configuration, recorded in ``metrics.json``.

Same seed and configuration give byte-identical results on one machine and environment; across
machines the kernels that run can differ (README, "Reproducibility"). So every run records the
versions of the packages that compute its numbers (training: torch, torchvision, numpy, scikit-learn;
features and tokenisation, recorded again here because a run's store may be rebuilt: scipy,
librosa, soxr, soundfile, av, opencv, pillow, transformers, tokenizers), torch's build (CUDA,
cuDNN, MKL and oneDNN), the CPU capability ATen dispatches its vectorised kernels to
(``torch.backends.cpu.get_cpu_capability()``), the CPU and GPU model, the number of threads, and the
environment variables that change kernel dispatch when set.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

import mmbalance

PACKAGES = (
    "torch",
    "torchvision",
    "numpy",
    "scikit-learn",
    "scipy",
    "librosa",
    "soxr",
    "soundfile",
    "av",
    "opencv-python-headless",
    "pillow",
    "transformers",
    "tokenizers",
)
DISPATCH_VARIABLES = (
    "ATEN_CPU_CAPABILITY",
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
    "MKL_CBWR",
    "MKL_ENABLE_INSTRUCTIONS",
    "CUBLAS_WORKSPACE_CONFIG",
)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what ``platform`` knows)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict[str, Any]:
    """The ``environment`` block of ``metrics.json`` for a run on ``device`` (module docstring)."""
    cuda = device.type == "cuda"
    return {
        "mmbalance": mmbalance.__version__,
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in PACKAGES},
        "torch_build": {
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "mkl": torch.backends.mkl.is_available(),
            "mkldnn": torch.backends.mkldnn.is_available(),
        },
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu": cpu_model(),
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if cuda else None,
        "threads": torch.get_num_threads(),
        "dispatch_variables": {name: os.environ[name] for name in DISPATCH_VARIABLES if name in os.environ},
    }
