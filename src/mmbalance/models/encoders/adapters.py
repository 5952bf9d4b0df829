"""Input adapters that turn a modality's stored features into a feature vector.

The kind of a modality (declared by its dataset) decides the adapter:
``spectrogram`` — (B, F, T) float → 1-channel image → trunk → global average pool;
``frames`` — (B, T, 3, H, W) uint8 → ImageNet-normalised, frames folded into the
batch → trunk → average pool over time and space (the LFM/AUG ``VideoEncoder``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mmbalance.errors import ConfigError
from mmbalance.registry import ENCODERS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class SpectrogramEncoder(nn.Module):
    """A (B, F, T) spectrogram → (B, D) feature."""

    def __init__(self, trunk: nn.Module, input_size: Sequence[int] | None) -> None:
        super().__init__()
        self.trunk = trunk
        self.input_size = tuple(input_size) if input_size else None
        self.out_dim: int = trunk.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().unsqueeze(1)
        if self.input_size is not None:
            x = F.adaptive_avg_pool2d(x, self.input_size)
        return self.trunk(x).mean(dim=(2, 3))


class FramesEncoder(nn.Module):
    """A (B, T, 3, H, W) uint8 clip → (B, D) feature, pooled over time and space."""

    def __init__(self, trunk: nn.Module, input_size: Sequence[int] | None) -> None:
        super().__init__()
        self.trunk = trunk
        self.input_size = tuple(input_size) if input_size else None
        self.out_dim: int = trunk.out_channels
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, frames = x.shape[:2]
        x = x.flatten(0, 1).float().div_(255.0)
        x = (x - self.mean) / self.std
        if self.input_size is not None:
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False)
        fmap = self.trunk(x)
        return fmap.view(batch, frames, *fmap.shape[1:]).mean(dim=(1, 3, 4))


ADAPTERS: dict[str, tuple[type[nn.Module], int]] = {
    "spectrogram": (SpectrogramEncoder, 1),
    "frames": (FramesEncoder, 3),
}


def build_encoder(kind: str, cfg: dict) -> nn.Module:
    """Build the encoder for a modality of ``kind`` from ``{name, width, input_size}``."""
    if kind not in ADAPTERS:
        raise ConfigError(f"no encoder adapter for modality kind '{kind}' (known: {', '.join(ADAPTERS)})")
    adapter, channels = ADAPTERS[kind]
    trunk = ENCODERS.get(cfg["name"])(in_channels=channels, width=cfg["width"])
    return adapter(trunk, cfg.get("input_size"))
