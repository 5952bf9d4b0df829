"""The contract of a modality kind's feature extractor (``mmbalance extract``).

A kind names the settings it needs under ``features.<profile>.<dataset>.<modality>``, the dtype and
per-clip shape of its array, and computes that array from one raw file. Extraction runs
``compute`` in worker processes (numpy, librosa, PyAV, PIL, OpenCV; never torch), so it must be
picklable state-free code.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mmbalance.errors import ConfigError


class FeatureKind:
    """Base class; register subclasses with ``@register_kind(name)``."""

    needs: ClassVar[tuple[str, ...]] = ()
    """Keys required in the modality's feature settings."""
    dtype: ClassVar[type] = np.float32

    def check(self, modality: str, cfg: Mapping[str, Any] | None) -> dict[str, Any]:
        """The modality's settings, after checking every key in :attr:`needs` is there."""
        missing = [key for key in self.needs if not isinstance(cfg, Mapping) or key not in cfg]
        if missing:
            raise ConfigError(f"features: missing key '{modality}.{missing[0]}'")
        return dict(cfg or {})

    def shape(self, cfg: Mapping[str, Any]) -> tuple[int, ...]:
        """The per-clip array shape."""
        raise NotImplementedError

    def compute(self, path: Path, cfg: Mapping[str, Any]) -> np.ndarray:
        """The array of one raw file (shape :meth:`shape`, dtype :attr:`dtype`)."""
        raise NotImplementedError

    def preload(self, cfg: Mapping[str, Any] | None = None) -> None:
        """Import heavy libraries (or build what ``cfg``, a modality's checked settings, needs) once in
        the parent before worker processes fork (optional)."""
