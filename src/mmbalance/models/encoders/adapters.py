"""Input adapters that turn a modality's stored features into a feature vector.

The kind of a modality (declared by its dataset) decides the adapter, a builder registered with
``@register_adapter(kind)`` (a new kind adds one file under ``models/encoders/``):
``spectrogram`` — (B, F, T) float → 1-channel image → trunk → global average pool;
``frames`` — (B, T, 3, H, W) uint8 → ImageNet-normalised, frames folded into the
batch → trunk → average pool over time and space (the LFM/AUG ``VideoEncoder``).

Each adapter is ``pool(trunk(images(x)), batch)``: ``images`` is the input handling and
``pool`` the per-sample global average, so a model that runs the trunks stage by stage
(MMTM, :mod:`mmbalance.models.mmtm`) shares both with the plain encoders.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmbalance.errors import ConfigError, reject_unknown
from mmbalance.registry import ADAPTERS, ENCODERS, register_adapter

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class TrunkEncoder(nn.Module):
    """Base of the adapters that run a trunk (``out_channels``) on images: ``forward`` is
    ``pool(trunk(images(x)))``. A subclass says how its input becomes the trunk's images and, when not
    by a global average over :attr:`pooled_dims`, how the trunk's map is pooled into one feature."""

    pooled_dims: tuple[int, ...] = (2, 3)
    """The dimensions of the trunk's map averaged by the default :meth:`pool` (space)."""

    def __init__(self, trunk: nn.Module, input_size: Sequence[int] | None = None) -> None:
        super().__init__()
        self.trunk = trunk
        self.input_size = tuple(input_size) if input_size else None
        self.out_dim: int = trunk.out_channels

    def images(self, x: torch.Tensor) -> torch.Tensor:
        """The modality's input → the trunk's input."""
        raise NotImplementedError

    def resize(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) images resized (bilinear) to ``input_size`` when it is set."""
        if self.input_size is None:
            return x
        return F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False)

    def pool(self, fmap: torch.Tensor, batch: int) -> torch.Tensor:
        """The trunk's map → (B, C): the average over :attr:`pooled_dims`."""
        del batch
        return fmap.mean(dim=self.pooled_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.trunk(self.images(x)), x.shape[0])


class NormalisedImages(nn.Module):
    """Base of the image encoders: uint8 RGB pixels → ``(x/255 − mean)/std`` (0-1 scale, per channel),
    and AGM's masked image, the one whose normalised value is zero (the mean colour). Other arguments
    go to the next base (a :class:`TrunkEncoder`'s trunk and input size)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], **rest: Any) -> None:
        super().__init__(**rest)
        self.register_buffer(
            "mean", torch.tensor(list(mean), dtype=torch.float32).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer(
            "std", torch.tensor(list(std), dtype=torch.float32).view(1, 3, 1, 1), persistent=False
        )

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) uint8 → float, normalised with the encoder's mean and std."""
        return (x.float().div(255.0) - self.mean) / self.std

    def masked_input(self, x: torch.Tensor) -> torch.Tensor:
        """AGM's masked image (:mod:`mmbalance.models.shapley`): zero after normalisation, the mean colour
        (any leading dimensions: images or clips of frames)."""
        return (self.mean * 255.0).expand(x.shape).contiguous()


class SpectrogramEncoder(TrunkEncoder):
    """A (B, F, T) spectrogram → (B, D) feature."""

    def images(self, x: torch.Tensor) -> torch.Tensor:
        """(B, F, T) → (B, 1, F, T) float, average-pooled to ``input_size`` when set."""
        x = x.float().unsqueeze(1)
        if self.input_size is not None:
            x = F.adaptive_avg_pool2d(x, self.input_size)
        return x


class FramesEncoder(NormalisedImages, TrunkEncoder):
    """A (B, T, 3, H, W) uint8 clip → (B, D) feature, pooled over time and space (masked: ImageNet's mean)."""

    def __init__(self, trunk: nn.Module, input_size: Sequence[int] | None) -> None:
        super().__init__(IMAGENET_MEAN, IMAGENET_STD, trunk=trunk, input_size=input_size)

    def images(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) uint8 → (B·T, 3, H, W) ImageNet-normalised, resized to ``input_size`` when set."""
        return self.resize(self.normalise(x.flatten(0, 1)))

    def pool(self, fmap: torch.Tensor, batch: int) -> torch.Tensor:
        """(B·T, C, h, w) trunk map → (B, C): average over frames and space."""
        return fmap.view(batch, -1, *fmap.shape[1:]).mean(dim=(1, 3, 4))


RESNET_KEYS = frozenset({"name", "width", "input_size"})


def check_keys(cfg: dict, allowed: frozenset[str], kind: str) -> None:
    """Stop on a key the adapter of ``kind`` does not take (the schema leaves encoder keys open)."""
    reject_unknown(sorted(cfg), allowed, context=f"encoder of a '{kind}' modality: ")
    if "width" not in cfg and "width" in allowed:
        raise ConfigError(f"encoder of a '{kind}' modality: missing key 'width'")


@register_adapter("spectrogram")
def spectrogram_encoder(cfg: dict) -> SpectrogramEncoder:
    """A 1-channel trunk (``cfg["name"]``, ``width``) on the spectrogram seen as an image."""
    check_keys(cfg, RESNET_KEYS, "spectrogram")
    trunk = ENCODERS.get(cfg["name"])(in_channels=1, width=cfg["width"])
    return SpectrogramEncoder(trunk, cfg.get("input_size"))


@register_adapter("frames")
def frames_encoder(cfg: dict) -> FramesEncoder:
    """A 3-channel trunk (``cfg["name"]``, ``width``) per frame, pooled over time and space."""
    check_keys(cfg, RESNET_KEYS, "frames")
    trunk = ENCODERS.get(cfg["name"])(in_channels=3, width=cfg["width"])
    return FramesEncoder(trunk, cfg.get("input_size"))


def build_encoder(kind: str, cfg: dict) -> nn.Module:
    """The encoder of a modality of ``kind`` (its registered adapter) from the modality's encoder config;
    an unknown kind is a ``ConfigError`` listing the known ones."""
    return ADAPTERS.get(kind)(cfg)
