"""Inception-I3D up to its pooled 1024-d feature (Carreira & Zisserman, "Quo Vadis, Action
Recognition? A New Model and the Kinetics Dataset", CVPR 2017, Sec. 2.4 and Fig. 3).

The network is Inception-v1 (Szegedy et al. 2015) inflated to 3-D, laid out as the Kinetics-I3D
graph that piergiaj/pytorch-i3d's ``InceptionI3d`` mirrors (the encoder of every NVGesture code base;
methods.md §C4, datasets.md §2):

* ``Conv3d_1a_7x7``: 7×7×7 convolution, stride 2, 64 channels; ``MaxPool3d_2a_3x3``: 1×3×3, stride
  (1, 2, 2);
* ``Conv3d_2b_1x1`` (64) and ``Conv3d_2c_3x3`` (3×3×3, 192);
* ``MaxPool3d_3a_3x3`` (1×3×3, stride (1, 2, 2)), ``Mixed_3b``, ``Mixed_3c``;
* ``MaxPool3d_4a_3x3`` (3×3×3, stride 2), ``Mixed_4b`` … ``Mixed_4f``;
* ``MaxPool3d_5a_2x2`` (2×2×2, stride 2), ``Mixed_5b``, ``Mixed_5c`` (1024 channels).

Every convolution is a :class:`Unit3d`: no bias, BatchNorm (eps 1e-3, momentum 0.01: TF's decay
0.99), ReLU. An Inception block has four branches — 1×1×1; 1×1×1 → 3×3×3; 1×1×1 → 3×3×3 (the 5×5
branch of Inception-v1 is 3×3×3 in I3D); 3×3×3 max-pool (stride 1) → 1×1×1 — concatenated on
channels; :data:`INCEPTION_CHANNELS` holds the published channel numbers. Every convolution and
pooling pads as TensorFlow's ``"SAME"`` (:func:`same_padding`), computed from the input size at
run time; pooling pads with −∞ (TF ignores padded positions). pytorch-i3d pads its pools with
zeros, which gives the same maxima here because every pool reads ReLU outputs (≥ 0).

Removed: the logits layer (average pool 2×7×7, dropout, 1×1×1 convolution to the classes). The
feature is the global average of ``Mixed_5c`` over time and space (the clip adapter's ``pool``), so
any clip size works; pytorch-i3d's ``extract_features`` instead returns the 2×7×7 average pool
(stride 1), whose mean over time weighs the first and last frame positions half as much.

As in the other trunks the network is ``stem`` + four ``stages`` (stage outputs 192, 480, 832,
1024 channels; stages 2–4 begin with the downsampling pools), so the stage-wise MMTM model runs it.
The modules keep pytorch-i3d's names under ``stem.`` / ``stages.<i>.``, so its checkpoints
(``rgb_imagenet.pt``, ``flow_imagenet.pt``) load by :meth:`InceptionI3dTrunk.checkpoint_key`.
PyTorch's default initialisation, as pytorch-i3d (AMSS trains it from scratch).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mmbalance.models.encoders._staged import StagedTrunk
from mmbalance.registry import register_encoder

Triple = tuple[int, int, int]

INCEPTION_CHANNELS: dict[str, tuple[int, int, int, int, int, int]] = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}
"""Per block: branch 0 (1×1×1), branch 1 (1×1×1, 3×3×3), branch 2 (1×1×1, 3×3×3), branch 3 (1×1×1 after
the pool); the output has ``c[0] + c[2] + c[4] + c[5]`` channels (Inception-v1's Table 1)."""


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow ``"SAME"`` padding of one dimension: ``(before, after)``.

    The output has ``⌈size/stride⌉`` positions; the total padding ``max((out − 1)·stride + kernel −
    size, 0)`` is split with the extra position after.
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel: Triple, stride: Triple, value: float = 0.0) -> torch.Tensor:
    """``x`` (B, C, T, H, W) padded for a ``"SAME"`` window of ``kernel``/``stride``."""
    pads: list[int] = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride), strict=True):
        pads += same_padding(int(size), k, s)
    return F.pad(x, pads, value=value)


def triple(value: int | Sequence[int]) -> Triple:
    t, h, w = (value, value, value) if isinstance(value, int) else value
    return int(t), int(h), int(w)


class Unit3d(nn.Module):
    """``"SAME"``-padded Conv3d without bias → BatchNorm3d(eps 1e-3, momentum 0.01) → ReLU."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int | Triple, stride: int | Triple = 1
    ) -> None:
        super().__init__()
        self.kernel, self.stride = triple(kernel), triple(stride)
        self.conv3d = nn.Conv3d(in_channels, out_channels, self.kernel, self.stride, bias=False)
        self.bn = nn.BatchNorm3d(out_channels, eps=1e-3, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv3d(pad_same(x, self.kernel, self.stride))))


class MaxPool3dSame(nn.Module):
    """Max pooling with ``"SAME"`` padding (padded positions never win: −∞)."""

    def __init__(self, kernel: int | Triple, stride: int | Triple) -> None:
        super().__init__()
        self.kernel, self.stride = triple(kernel), triple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = pad_same(x, self.kernel, self.stride, value=float("-inf"))
        return F.max_pool3d(padded, self.kernel, self.stride)


class InceptionBlock(nn.Module):
    """Four branches concatenated on channels; names ``b0``, ``b1a``/``b1b``, ``b2a``/``b2b``, ``b3b``."""

    def __init__(self, in_channels: int, channels: Sequence[int]) -> None:
        super().__init__()
        c0, c1a, c1b, c2a, c2b, c3 = channels
        self.b0 = Unit3d(in_channels, c0, 1)
        self.b1a = Unit3d(in_channels, c1a, 1)
        self.b1b = Unit3d(c1a, c1b, 3)
        self.b2a = Unit3d(in_channels, c2a, 1)
        self.b2b = Unit3d(c2a, c2b, 3)
        self.b3a = MaxPool3dSame(3, 1)
        self.b3b = Unit3d(in_channels, c3, 1)
        self.out_channels = c0 + c1b + c2b + c3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x)))
        return torch.cat(branches, dim=1)


class InceptionI3dTrunk(StagedTrunk):
    """``stem`` (``Conv3d_1a_7x7``, ``MaxPool3d_2a_3x3``) and four stages up to ``Mixed_5c``."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            OrderedDict(
                Conv3d_1a_7x7=Unit3d(in_channels, 64, 7, 2),
                MaxPool3d_2a_3x3=MaxPool3dSame((1, 3, 3), (1, 2, 2)),
            )
        )
        pools = {
            "Mixed_3b": ("MaxPool3d_3a_3x3", MaxPool3dSame((1, 3, 3), (1, 2, 2))),
            "Mixed_4b": ("MaxPool3d_4a_3x3", MaxPool3dSame(3, 2)),
            "Mixed_5b": ("MaxPool3d_5a_2x2", MaxPool3dSame(2, 2)),
        }
        stages = [OrderedDict(Conv3d_2b_1x1=Unit3d(64, 64, 1), Conv3d_2c_3x3=Unit3d(64, 192, 3))]
        channels = 192
        for name, widths in INCEPTION_CHANNELS.items():
            if name in pools:
                pool_name, pool = pools[name]
                stages.append(OrderedDict({pool_name: pool}))
            block = InceptionBlock(channels, widths)
            stages[-1][name] = block
            channels = block.out_channels
        self.stages = nn.ModuleList([nn.Sequential(stage) for stage in stages])
        self.stage_channels = [192, 480, 832, 1024]
        self.out_channels = channels

    @staticmethod
    def checkpoint_key(key: str) -> str:
        """pytorch-i3d's name of one of our state-dict keys: ``stem.`` / ``stages.<i>.`` dropped."""
        parts = key.split(".")
        return ".".join(parts[1:] if parts[0] == "stem" else parts[2:])


@register_encoder("i3d")
def i3d(in_channels: int) -> InceptionI3dTrunk:
    """Inception-I3D without logits, ``in_channels`` input channels (3 RGB, 2 optical flow, 1 depth)."""
    return InceptionI3dTrunk(in_channels)
