"""The ``image`` adapter: a uint8 ``(B, 3, H, W)`` image → normalised → ResNet trunk → global average pool.

``name: resnet50`` is torchvision's ResNet50 (Bottleneck [3, 4, 6, 3]) without its ``fc``: the
2048-d pooled feature (methods.md §C3: AMSS replaces ``fc``; IGM keeps the 1000-d ImageNet logits,
which we do not). Any other name is a trunk of the ResNet family of :mod:`.resnet` with its
``width`` (``resnet18`` width 16 for the embedded preset and tests). Random initialisation unless
``weights`` names a file: a state dict for that trunk, for ResNet50 torchvision's ImageNet
checkpoint (``resnet50-11ad3fa6.pth`` is ``IMAGENET1K_V2``, the weights AMSS loads; ``fc.*`` keys
are ignored). Nothing is ever downloaded.

``mean``/``std`` (0-1 scale, RGB) normalise the pixels; ImageNet's by default. AMSS uses
per-dataset values (datasets.md §2), which the paper presets in ``params.yaml`` set.
``input_size`` optionally resizes (bilinear) before the trunk.

The ResNet50 is exposed as ``stem`` + ``stages`` like the other trunks, so the stage-wise MMTM
model can run it.

``name: clip_vit_b32`` (and ``clip_tiny``) is CLIP's image tower (:mod:`.clip_towers`): the
projected image embedding, CLIP's mean/std by default, ``weights`` a Hugging Face checkpoint folder;
it takes neither ``width`` nor ``input_size``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from mmbalance.errors import ConfigError, reject_unknown
from mmbalance.models.encoders._clip_towers import CLIP_MEAN, CLIP_STD, IMAGE_SIZES, clip_image_encoder
from mmbalance.models.encoders._staged import StagedTrunk
from mmbalance.models.encoders.adapters import IMAGENET_MEAN, IMAGENET_STD, NormalisedImages, TrunkEncoder
from mmbalance.registry import ENCODERS, register_adapter

IMAGE_KEYS = frozenset({"name", "width", "weights", "mean", "std", "input_size"})


def load_state(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    """A state dict from a user's file; a missing or unreadable file is a :class:`ConfigError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"{path}: {what} weights not found; place them there (docs/datasets.md) "
            f"or set the encoder's weights: null for random initialisation"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, pickle errors, … on a bad file
        raise ConfigError(f"{path}: not a readable PyTorch state dict ({exc})") from exc
    if not isinstance(state, dict):
        raise ConfigError(f"{path}: expected a state dict, got {type(state).__name__}")
    return state


class ResNet50Trunk(StagedTrunk):
    """torchvision's ResNet50 as ``stem`` + four ``stages`` (no pooling, no ``fc``)."""

    def __init__(self, weights: str | None) -> None:
        super().__init__()
        # Imported here: torchvision costs about a second of start-up in every training process, and only
        # this encoder needs it.
        import torchvision

        net = torchvision.models.resnet50(weights=None)
        if weights:
            state = {k: v for k, v in load_state(weights, "ResNet50").items() if not k.startswith("fc.")}
            missing, unexpected = net.load_state_dict(state, strict=False)
            missing = [k for k in missing if not k.startswith("fc.")]
            if missing or unexpected:
                raise ConfigError(
                    f"{weights}: not a torchvision ResNet50 state dict (missing {missing[:3]}, "
                    f"unexpected {list(unexpected)[:3]})"
                )
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.stages = nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4])
        self.stage_channels = [256, 512, 1024, 2048]
        self.out_channels = 2048


class ImageEncoder(NormalisedImages, TrunkEncoder):
    """A (B, 3, H, W) uint8 image → (B, D) feature, pooled over space."""

    def __init__(
        self, trunk: nn.Module, mean: Sequence[float], std: Sequence[float], input_size: Sequence[int] | None
    ) -> None:
        super().__init__(mean, std, trunk=trunk, input_size=input_size)

    def images(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) uint8 → float, normalised, resized to ``input_size`` when set."""
        return self.resize(self.normalise(x))


def _triple(cfg: dict, key: str, default: Sequence[float]) -> list[float]:
    value = cfg.get(key, default)
    if not (
        isinstance(value, list | tuple) and len(value) == 3 and all(isinstance(v, int | float) for v in value)
    ):
        raise ConfigError(f"encoder of an 'image' modality: '{key}' must be three numbers, got {value!r}")
    return [float(v) for v in value]


@register_adapter("image")
def image_encoder(cfg: dict) -> nn.Module:
    """ResNet50 (torchvision), a ResNet-family trunk of ``width`` or a CLIP image tower (module docstring)."""
    reject_unknown(sorted(cfg), IMAGE_KEYS, context="encoder of an 'image' modality: ")
    weights = cfg.get("weights")
    if cfg["name"] in IMAGE_SIZES:
        return clip_image_encoder(cfg, _triple(cfg, "mean", CLIP_MEAN), _triple(cfg, "std", CLIP_STD))
    if cfg["name"] == "resnet50":
        if "width" in cfg:
            raise ConfigError(
                "encoder of an 'image' modality: resnet50 has no 'width' (torchvision's ResNet50)"
            )
        trunk: nn.Module = ResNet50Trunk(weights)
    else:
        if "width" not in cfg:
            raise ConfigError(f"encoder of an 'image' modality: '{cfg['name']}' needs 'width'")
        trunk = ENCODERS.get(cfg["name"])(in_channels=3, width=cfg["width"])
        if weights:
            try:
                trunk.load_state_dict(load_state(weights, cfg["name"]))
            except RuntimeError as exc:
                raise ConfigError(
                    f"{weights}: does not fit {cfg['name']} width {cfg['width']} ({exc})"
                ) from exc
    return ImageEncoder(
        trunk, _triple(cfg, "mean", IMAGENET_MEAN), _triple(cfg, "std", IMAGENET_STD), cfg.get("input_size")
    )


image_encoder.model_names = ("resnet50", *IMAGE_SIZES)  # besides the trunks of ENCODERS (mmbalance encoders)
