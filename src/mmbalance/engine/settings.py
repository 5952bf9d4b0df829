"""The engine's speed settings of a training preset (``train.<profile>.<dataset>``).

==================  =========  ====================================================================
key                 default    what it does
==================  =========  ====================================================================
``precision``       ``fp32``   ``bf16``/``fp16``: the training steps and evaluation run under autocast
                               (:mod:`mmbalance.engine.precision`; ``fp16`` with a gradient scaler)
``deterministic``   ``true``   ``false``: cuDNN benchmark mode and non-deterministic kernels allowed
                               (:func:`mmbalance.engine.seeding.configure_determinism`)
``channels_last``   ``false``  the 2-D encoders' weights (and so their activations) in NHWC layout
``compile``         ``false``  each encoder compiled with ``torch.compile`` (in place, same weights)
``prefetch``        ``0``      batches read ahead by a background thread (:mod:`mmbalance.engine.prefetch`)
``augment``         none       train-time crop and flip of ``frames`` (:mod:`mmbalance.engine.augment`)
==================  =========  ====================================================================

A setting at its default is left out of the resolved configuration
(:func:`mmbalance.config.train_config`), so the run ids, ``metrics.json`` and predictions of runs
that do not use these settings are those of the engine before they existed. ``prefetch`` never
enters a run id: a run computes exactly the same with or without it. This module imports no torch
(:mod:`mmbalance.config` reads it); :mod:`mmbalance.engine.acceleration` applies the model settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULTS: dict[str, Any] = {
    "precision": "fp32",
    "deterministic": True,
    "channels_last": False,
    "compile": False,
    "prefetch": 0,
}
UNHASHED = ("prefetch",)
"""Settings that cannot change what a run computes, left out of its run id."""


@dataclass(frozen=True)
class EngineSettings:
    """The settings above for one run (defaults filled in)."""

    precision: str = DEFAULTS["precision"]
    deterministic: bool = DEFAULTS["deterministic"]
    channels_last: bool = DEFAULTS["channels_last"]
    compile: bool = DEFAULTS["compile"]
    prefetch: int = DEFAULTS["prefetch"]
    augment: Mapping[str, Any] | None = None

    @classmethod
    def of(cls, train_cfg: Mapping[str, Any]) -> EngineSettings:
        """The settings of a resolved ``train`` block (absent keys take their defaults)."""
        return cls(**{key: train_cfg[key] for key in (*DEFAULTS, "augment") if key in train_cfg})


def without_defaults(train_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``train_cfg`` without the settings that equal their default (module docstring)."""
    return {k: v for k, v in train_cfg.items() if not (k in DEFAULTS and v == DEFAULTS[k])}


def hashed(train_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a ``train`` block that enters the run id (all but :data:`UNHASHED`)."""
    return {k: v for k, v in train_cfg.items() if k not in UNHASHED}
