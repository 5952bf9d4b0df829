"""``clip``: a video segment → uint8 ``(C, frames, size, size)`` (NVGesture; datasets.md §2, methods.md §C4).

Settings (``features.<profile>.<dataset>.<modality>``):

- ``content``: ``rgb`` (C = 3, RGB order), ``depth`` (C = 1: channel 0 of the decoded frame, as AMSS
  keeps ``frame[..., 0]`` of the depth sensor's video) or ``flow`` (C = 2: optical flow x, y between
  consecutive frames of the video, :mod:`mmbalance.data.flow`);
- ``frames`` (the container: NVGesture's 80), ``size`` (frames resized to ``size × size``: 256) and
  ``step`` (default 1: every frame; ``step: 5`` spans an 80-frame gesture with 16 frames, a store
  25× smaller for CPU runs);
- flow only: ``algorithm`` (``farneback``, default, or ``tvl1``), ``bound`` (pixels, default 20)
  and ``farneback`` (parameter overrides, :data:`mmbalance.data.flow.FARNEBACK_DEFAULTS`).

Per clip, the dataset gives the segment: ``start`` (default 0) and ``end`` (default none: as many
frames as the container holds) (:attr:`mmbalance.data.datasets._base.Item.settings`); the frames are
read by :func:`mmbalance.data.segment.read_segment`. A clip shorter than the container is zero-padded
at the end as in AMSS; flow is padded with zero flow (stored 128). Flow frame ``t`` is the flow from
frame ``t`` to ``t + 1``, so the last read frame has none (it is padding). Flow is computed on the
resized frames, so its pixels are those of the stored ``size × size`` grid.

The array is the whole container; train-time windows and crops are taken per batch
(:mod:`mmbalance.engine.clip_sampling`). Disk: ``frames × size² × C`` bytes per clip (NVGesture's
paper settings: 5.2 MB per channel, 31.5 MB per clip with the 6 channels, about 48 GB for 1,532 clips).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mmbalance.data.flow import (
    ALGORITHMS,
    DEFAULT_BOUND,
    TVL1_PACKAGE,
    ZERO_FLOW,
    check_farneback,
    clip_flow,
    has_tvl1,
    quantise,
)
from mmbalance.data.kinds._base import FeatureKind
from mmbalance.data.segment import read_segment
from mmbalance.errors import ConfigError, reject_unknown
from mmbalance.registry import register_kind

CHANNELS = {"rgb": 3, "depth": 1, "flow": 2}
FLOW_KEYS = frozenset({"algorithm", "bound", "farneback"})
KEYS = frozenset({"content", "frames", "size", "step"}) | FLOW_KEYS


def _positive_int(modality: str, cfg: Mapping[str, Any], key: str, least: int) -> None:
    value = cfg[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigError(f"features: '{modality}.{key}': expected an integer >= {least}, got {value!r}")


@register_kind("clip")
class ClipKind(FeatureKind):
    needs = ("content", "frames", "size")
    dtype = np.uint8

    def check(self, modality: str, cfg: Mapping[str, Any] | None) -> dict[str, Any]:
        checked = super().check(modality, cfg)
        reject_unknown(sorted(checked), KEYS, prefix=f"{modality}.", context="features: ")
        content = checked["content"]
        if content not in CHANNELS:
            raise ConfigError(f"features: '{modality}.content': {content!r} is not one of {list(CHANNELS)}")
        _positive_int(modality, checked, "frames", 1)
        _positive_int(modality, checked, "size", 8)
        _positive_int(modality, {"step": 1, **checked}, "step", 1)
        flow_keys = sorted(set(checked) & FLOW_KEYS)
        if content != "flow" and flow_keys:
            raise ConfigError(f"features: '{modality}.{flow_keys[0]}' applies to content: flow only")
        if content == "flow":
            algorithm = checked.get("algorithm", "farneback")
            if algorithm not in ALGORITHMS:
                raise ConfigError(
                    f"features: '{modality}.algorithm': {algorithm!r} is not one of {list(ALGORITHMS)}"
                )
            if algorithm == "tvl1" and not has_tvl1():
                raise ConfigError(
                    f"features: '{modality}.algorithm': tvl1 needs OpenCV's contrib module cv2.optflow, "
                    f"absent from this OpenCV {cv2.__version__}; pip uninstall opencv-python-headless && "
                    f"pip install {TVL1_PACKAGE} (same version), or use algorithm: farneback"
                )
            bound = checked.get("bound", DEFAULT_BOUND)
            if isinstance(bound, bool) or not isinstance(bound, int | float) or bound <= 0:
                raise ConfigError(f"features: '{modality}.bound': expected a positive number, got {bound!r}")
            check_farneback(checked.get("farneback", {}), f"{modality}.farneback")
        return checked

    def shape(self, cfg: Mapping[str, Any]) -> tuple[int, ...]:
        return (CHANNELS[cfg["content"]], int(cfg["frames"]), int(cfg["size"]), int(cfg["size"]))

    def compute(self, path: Path, cfg: Mapping[str, Any]) -> np.ndarray:
        content, frames, size = cfg["content"], int(cfg["frames"]), int(cfg["size"])
        end = cfg.get("end")
        bgr = read_segment(
            path,
            int(cfg.get("start", 0)),
            None if end is None else int(end),
            frames,
            int(cfg.get("step", 1)),
            size,
        )
        out = np.zeros(self.shape(cfg), dtype=np.uint8)
        n = bgr.shape[0]
        if content == "rgb":
            out[:, :n] = bgr[..., ::-1].transpose(3, 0, 1, 2)
        elif content == "depth":
            out[0, :n] = bgr[..., 0]
        else:
            flow = clip_flow(bgr, cfg.get("algorithm", "farneback"), cfg.get("farneback", {}))
            out[:] = ZERO_FLOW
            out[:, : n - 1] = quantise(flow, float(cfg.get("bound", DEFAULT_BOUND))).transpose(3, 0, 1, 2)
        return out

    def preload(self, cfg: Mapping[str, Any] | None = None) -> None:
        """One OpenCV thread per process: extraction parallelises over worker processes, and OpenCV's
        own pool must not be running when they are forked."""
        cv2.setNumThreads(1)
