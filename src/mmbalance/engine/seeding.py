"""Seeds, determinism and RNG state capture (so a resumed run continues the same streams)."""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def configure_determinism(device: torch.device, deterministic: bool = True) -> None:
    """Deterministic algorithms: strict on CPU; on CUDA, cuDNN deterministic and warnings for
    the few kernels without a deterministic version (e.g. adaptive pooling backward).

    ``deterministic=False`` (``train.<profile>.<dataset>.deterministic``) allows non-deterministic
    kernels and turns on cuDNN's benchmark mode, which times the convolution algorithms of each new
    input shape and keeps the fastest: faster on a GPU, but runs no longer repeat bit for bit.
    """
    if not deterministic:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
        torch.backends.cudnn.benchmark = device.type == "cuda"
        return
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.use_deterministic_algorithms(True)


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
