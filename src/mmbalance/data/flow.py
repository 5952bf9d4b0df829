"""Optical flow between consecutive frames, and its uint8 storage (NVGesture's third modality).

**A reproducibility gap.** The NVGesture papers use RGB, depth and optical flow, but no source says how
the flow was computed: AMSS loads precomputed ``flow_data/{train,test}/{idx}.npy`` (H×W×2×T) and ships
no script (datasets.md §2). Two algorithms are offered:

- ``farneback`` (default): ``cv2.calcOpticalFlowFarneback`` (in the ``opencv-python-headless`` wheel),
  with the parameters of OpenCV's own optical-flow tutorial unless ``params.yaml`` says otherwise:
  ``pyr_scale 0.5, levels 3, winsize 15, iterations 3, poly_n 5, poly_sigma 1.2, flags 0``.
- ``tvl1``: ``cv2.optflow.DualTVL1OpticalFlow_create()`` with OpenCV's defaults, the TV-L1 flow of the
  I3D paper (Carreira & Zisserman 2017). It exists only in ``opencv-contrib-python-headless``;
  asking for it without that wheel is a :class:`~mmbalance.errors.ConfigError` saying so.

Both run on 8-bit grey images (``cv2.COLOR_BGR2GRAY``) and return ``(H, W, 2)`` float32 displacements
in pixels, channel 0 horizontal (x) and 1 vertical (y), from the first frame to the second.

**Storage** (the I3D/TV-L1 convention): values are clipped to ``[-bound, bound]`` pixels (default 20)
and mapped linearly to 0..255, ``q = round((clip(f, -bound, bound) / bound + 1) · 127.5)`` with
round-half-to-even (``numpy.rint``); zero flow is 128. :func:`dequantise` inverts it up to half a step,
``bound / 255`` pixels.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from mmbalance.errors import ConfigError, reject_unknown

ALGORITHMS = ("farneback", "tvl1")
FARNEBACK_DEFAULTS: dict[str, float | int] = {
    "pyr_scale": 0.5,
    "levels": 3,
    "winsize": 15,
    "iterations": 3,
    "poly_n": 5,
    "poly_sigma": 1.2,
}
"""OpenCV's optical-flow tutorial values; ``levels``, ``winsize``, ``iterations``, ``poly_n`` are integers."""
INTEGER_PARAMETERS = frozenset({"levels", "winsize", "iterations", "poly_n"})
DEFAULT_BOUND = 20.0
TVL1_PACKAGE = "opencv-contrib-python-headless"


def has_tvl1() -> bool:
    """Whether this OpenCV build has the TV-L1 flow (the contrib wheel's ``cv2.optflow``)."""
    return hasattr(cv2, "optflow") and hasattr(cv2.optflow, "DualTVL1OpticalFlow_create")


def check_farneback(params: Any, where: str) -> dict[str, float | int]:
    """The Farnebäck parameters over the defaults; an unknown name or a bad value is a ConfigError."""
    if not isinstance(params, Mapping):
        raise ConfigError(f"features: '{where}': expected a mapping of Farnebäck parameters, got {params!r}")
    reject_unknown(
        sorted(params),
        FARNEBACK_DEFAULTS,
        prefix=f"{where}.",
        context="features: ",
        shown=list(FARNEBACK_DEFAULTS),
    )
    merged = {**FARNEBACK_DEFAULTS, **params}
    for key, value in merged.items():
        integral = key in INTEGER_PARAMETERS
        ok = isinstance(value, int) if integral else isinstance(value, int | float)
        if isinstance(value, bool) or not ok or value <= 0:
            kind = "a positive integer" if integral else "a positive number"
            raise ConfigError(f"features: '{where}.{key}': expected {kind}, got {value!r}")
    if not merged["pyr_scale"] < 1:
        raise ConfigError(f"features: '{where}.pyr_scale': must be below 1, got {merged['pyr_scale']!r}")
    return merged


def farneback(previous: np.ndarray, following: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    """Farnebäck flow between two grey uint8 frames: float32 ``(H, W, 2)`` (x, y) in pixels."""
    p = {**FARNEBACK_DEFAULTS, **params}
    return cv2.calcOpticalFlowFarneback(
        previous,
        following,
        None,
        float(p["pyr_scale"]),
        int(p["levels"]),
        int(p["winsize"]),
        int(p["iterations"]),
        int(p["poly_n"]),
        float(p["poly_sigma"]),
        0,
    )


def tvl1(previous: np.ndarray, following: np.ndarray) -> np.ndarray:
    """TV-L1 flow (OpenCV contrib defaults) between two grey uint8 frames: float32 ``(H, W, 2)``."""
    if not has_tvl1():
        raise ConfigError(f"flow algorithm tvl1 needs cv2.optflow: pip install {TVL1_PACKAGE}")
    return cv2.optflow.DualTVL1OpticalFlow_create().calc(previous, following, None)


def clip_flow(frames: np.ndarray, algorithm: str, params: Mapping[str, Any]) -> np.ndarray:
    """Flow between consecutive frames of BGR uint8 ``(n, H, W, 3)``: float32 ``(n - 1, H, W, 2)``."""
    grey = [cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) for frame in frames]
    height, width = frames.shape[1:3]
    out = np.empty((max(0, len(grey) - 1), height, width, 2), dtype=np.float32)
    for t in range(len(grey) - 1):
        out[t] = (
            farneback(grey[t], grey[t + 1], params)
            if algorithm == "farneback"
            else tvl1(grey[t], grey[t + 1])
        )
    return out


def quantise(flow: np.ndarray, bound: float) -> np.ndarray:
    """``round((clip(f, -bound, bound) / bound + 1) · 127.5)`` as uint8 (module docstring)."""
    scaled = (np.clip(flow, -bound, bound) / bound + 1.0) * 127.5
    return np.rint(scaled).astype(np.uint8)


def dequantise(stored: np.ndarray, bound: float) -> np.ndarray:
    """Pixels (float32) from stored uint8 flow: ``(q / 127.5 - 1) · bound``."""
    return ((stored.astype(np.float32) / 127.5) - 1.0) * np.float32(bound)


ZERO_FLOW = int(quantise(np.zeros(1, dtype=np.float32), DEFAULT_BOUND)[0])
"""The stored value of zero flow (128, whatever the bound), used to pad short clips."""
