"""The ``clip`` adapter: a uint8 clip ``(B, C, T, H, W)`` → normalised → 3-D trunk → global average
over time and space (NVGesture's RGB, depth and optical-flow encoders; methods.md §C4).

Encoder keys (``train.<profile>.<dataset>.encoders.<modality>``):

* ``name``: ``i3d`` (Inception-I3D without logits, :mod:`.i3d`; 1024-d) or ``cnn3d`` (the small
  3-D CNN of :mod:`.cnn3d`, for CPU runs and tests; it also takes ``width``);
* ``in_channels``: channels of the stored clip (3 RGB, 2 optical flow, 1 depth);
* ``normalization``: ``imagenet`` — ``x/255`` then ImageNet mean/std (3 channels only; AMSS's RGB),
  ``unit`` — ``x/255`` (AMSS's depth, scaled by ``ToTensor``), ``flow`` — ``x/127.5 − 1``, a flow
  quantised to uint8 over [−1, 1] mapped back to that range;
* ``pretrained`` (optional, default null): a file holding a state dict of the trunk; for ``i3d`` in
  pytorch-i3d's names (``rgb_imagenet.pt``, ``flow_imagenet.pt``). Tensors whose shape differs from
  the trunk's (the depth encoder's 1-channel first convolution against ``rgb_imagenet.pt``'s 3
  channels) keep their random initialisation and are logged, as are trunk tensors absent from the
  file and file tensors the trunk does not have (pytorch-i3d's ``logits``). AMSS instead filters the
  checkpoint by key only, which would stop with a shape error (datasets.md §2). Nothing is downloaded.

As the other adapters, ``images`` (input handling) and ``pool`` (the per-sample global average) are
separate, so the stage-wise MMTM model (:mod:`mmbalance.models.mmtm`) runs the trunk's stages itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from mmbalance.errors import ConfigError
from mmbalance.models.encoders.adapters import IMAGENET_MEAN, IMAGENET_STD, TrunkEncoder, check_keys
from mmbalance.models.encoders.image import load_state
from mmbalance.registry import ENCODERS, register_adapter

log = logging.getLogger("mmbalance.models")

COMMON_KEYS = frozenset({"name", "in_channels", "normalization", "pretrained"})
TRUNK_KEYS = {"i3d": COMMON_KEYS, "cnn3d": COMMON_KEYS | {"width"}}
"""The keys each 3-D trunk takes."""
NORMALIZATIONS = ("imagenet", "unit", "flow")


class ClipEncoder(TrunkEncoder):
    """A (B, C, T, H, W) clip → (B, D) feature, pooled over time and space."""

    pooled_dims = (2, 3, 4)

    def __init__(self, trunk: nn.Module, in_channels: int, normalization: str) -> None:
        super().__init__(trunk)
        self.in_channels = in_channels
        self.normalization = normalization
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1, 1), persistent=False)

    def images(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) uint8 (or float on the same 0–255 scale) → float, normalised."""
        if x.dim() != 5 or x.shape[1] != self.in_channels:
            raise ConfigError(
                f"encoder of a 'clip' modality: input of shape {tuple(x.shape)}, but in_channels is "
                f"{self.in_channels} (want (batch, {self.in_channels}, frames, height, width))"
            )
        x = x.float()
        if self.normalization == "flow":
            return x / 127.5 - 1.0
        x = x / 255.0
        if self.normalization == "imagenet":
            x = (x - self.mean) / self.std
        return x

    def masked_input(self, x: torch.Tensor) -> torch.Tensor:
        """An input of ``x``'s shape whose normalised value is zero (AGM's masked modality)."""
        if self.normalization == "imagenet":
            return (self.mean * 255.0).to(x.device).expand(x.shape).contiguous()
        return torch.full(x.shape, 127.5 if self.normalization == "flow" else 0.0, device=x.device)


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did, by the trunk's state-dict keys (``unused``: the file's keys)."""

    loaded: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)


def load_pretrained(trunk: nn.Module, path: str | Path, name: str) -> LoadReport:
    """Copy every tensor of the state dict at ``path`` that fits ``trunk`` (same name under
    ``trunk.checkpoint_key``, same shape); log the rest. A missing or unreadable file, or one of
    which nothing fits, is a :class:`ConfigError` naming it."""
    if not Path(path).is_file():
        raise ConfigError(
            f"{path}: pretrained {name} weights not found; place the file there or set the encoder's "
            "pretrained: null for random initialisation"
        )
    state = load_state(path, f"pretrained {name}")
    report = LoadReport()
    fitting: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for key, own in trunk.state_dict().items():
        source = trunk.checkpoint_key(key)
        if source not in state:
            if not key.endswith("num_batches_tracked"):  # a BatchNorm counter, absent from old checkpoints
                report.missing.append(key)
            continue
        used.add(source)
        value = state[source]
        if not isinstance(value, torch.Tensor):
            raise ConfigError(f"{path}: entry '{source}' is a {type(value).__name__}, not a tensor")
        if value.shape != own.shape:
            report.mismatched.append(key)
            log.warning(
                "%s: '%s' has shape %s, the %s encoder's %s: left randomly initialised",
                path,
                source,
                tuple(value.shape),
                name,
                tuple(own.shape),
            )
            continue
        fitting[key] = value
        report.loaded.append(key)
    report.unused = sorted(set(state) - used)
    if not report.loaded:
        raise ConfigError(
            f"{path}: no tensor of this file fits the {name} encoder (is it a {name} state dict?)"
        )
    trunk.load_state_dict(fitting, strict=False)
    if report.missing:
        log.warning(
            "%s: %d %s tensors not in the file, left randomly initialised: %s",
            path,
            len(report.missing),
            name,
            report.missing,
        )
    log.info(
        "%s: loaded %d tensors into the %s encoder; ignored %d of the file's: %s",
        path,
        len(report.loaded),
        name,
        len(report.unused),
        report.unused,
    )
    return report


@register_adapter("clip")
def clip_encoder(cfg: dict) -> ClipEncoder:
    """A 3-D trunk (``i3d`` or ``cnn3d``) on the normalised clip (module docstring)."""
    name = cfg.get("name")
    if name not in TRUNK_KEYS:
        raise ConfigError(
            f"encoder of a 'clip' modality: unknown name '{name}' (known: {', '.join(TRUNK_KEYS)})"
        )
    check_keys(cfg, TRUNK_KEYS[name], "clip")
    for key in ("in_channels", "normalization"):
        if key not in cfg:
            raise ConfigError(f"encoder of a 'clip' modality: missing key '{key}'")
    channels, normalization = cfg["in_channels"], cfg["normalization"]
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ConfigError(
            f"encoder of a 'clip' modality: 'in_channels' must be a positive integer, got {channels!r}"
        )
    if normalization not in NORMALIZATIONS:
        raise ConfigError(
            f"encoder of a 'clip' modality: unknown normalization '{normalization}' "
            f"(known: {', '.join(NORMALIZATIONS)})"
        )
    if normalization == "imagenet" and channels != 3:
        raise ConfigError(
            f"encoder of a 'clip' modality: normalization 'imagenet' needs in_channels 3, got {channels}"
        )
    sizes = {"width": cfg["width"]} if "width" in TRUNK_KEYS[name] else {}
    trunk = ENCODERS.get(name)(in_channels=channels, **sizes)
    if cfg.get("pretrained"):
        load_pretrained(trunk, cfg["pretrained"], name)
    return ClipEncoder(trunk, channels, normalization)
