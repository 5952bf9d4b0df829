"""``image``: a still image (JPEG, PNG, GIF, …) → uint8 RGB ``(3, size, size)``.

The stored array is the papers' *test-time* geometry; normalisation happens in the encoder
(:mod:`mmbalance.models.encoders.image`), and train-time augmentation is not stored (the store
holds one fixed array per sample, so every epoch sees the same pixels, as at test time).

``resize`` picks the geometry (datasets.md §2, methods.md §C3):

- ``stretch`` (default): ``Resize((size, size))``, the aspect ratio is not kept — AMSS's image–text
  transform for train and test, which MIE and AUG point to for preprocessing;
- ``crop``: the shorter side to ``size``, then the centre ``size × size`` — IGM's (MIE code)
  ``Resize(size)`` followed by a centre crop, the usual ImageNet/CLIP test transform.

Bilinear resampling with PIL (what torchvision's ``Resize`` does on PIL images). Palette, grey,
CMYK and alpha images are converted to RGB (alpha dropped); an animated GIF gives its first frame.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mmbalance.data.kinds._base import FeatureKind
from mmbalance.errors import ConfigError, DataError, reject_unknown
from mmbalance.registry import register_kind

RESIZE = ("stretch", "crop")


def load_image(path: Path, size: int, resize: str) -> np.ndarray:
    """uint8 ``(3, size, size)`` of one image file (module docstring); undecodable → :class:`DataError`."""
    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, … on bad files
        raise DataError(f"{path}: not a decodable image ({type(exc).__name__}: {exc})") from exc
    if resize == "stretch":
        rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
    else:
        width, height = rgb.size
        scale = size / min(width, height)
        new = (max(size, round(width * scale)), max(size, round(height * scale)))
        rgb = rgb.resize(new, Image.Resampling.BILINEAR)
        left, top = (new[0] - size) // 2, (new[1] - size) // 2
        rgb = rgb.crop((left, top, left + size, top + size))
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1))


@register_kind("image")
class ImageKind(FeatureKind):
    needs = ("size", "resize")
    dtype = np.uint8

    def check(self, modality: str, cfg: Mapping[str, Any] | None) -> dict[str, Any]:
        checked = super().check(modality, cfg)
        reject_unknown(
            sorted(checked), self.needs, prefix=f"{modality}.", context="features: ", shown=self.needs
        )
        if checked["resize"] not in RESIZE:
            raise ConfigError(
                f"features: '{modality}.resize': {checked['resize']!r} is not one of {list(RESIZE)}"
            )
        if not isinstance(checked["size"], int) or checked["size"] < 8:
            raise ConfigError(
                f"features: '{modality}.size': expected an integer >= 8, got {checked['size']!r}"
            )
        return checked

    def shape(self, cfg: Mapping[str, Any]) -> tuple[int, ...]:
        return (3, int(cfg["size"]), int(cfg["size"]))

    def compute(self, path: Path, cfg: Mapping[str, Any]) -> np.ndarray:
        return load_image(path, int(cfg["size"]), str(cfg["resize"]))
