"""A small 3-D CNN for clips: the CPU and test stand-in for Inception-I3D (:mod:`.i3d`).

``stem``: Conv3d 3×3×3, stride (1, 2, 2), ``width`` channels, BatchNorm, ReLU. Four stages of one
Conv3d 3×3×3 (padding 1) → BatchNorm → ReLU with ``width·2^i`` output channels; stage 1 keeps the
resolution, stages 2–4 halve time and space (stride 2), as I3D's stages 2–4 begin with a
downsampling pool. Four stages like the ResNet and I3D trunks, so the stage-wise MMTM model runs it.
Kaiming-normal (fan-out) initialisation, as the ResNet trunks. Not from a paper: a mmbalance preset.
"""

from __future__ import annotations

from torch import nn

from mmbalance.models.encoders._staged import StagedTrunk
from mmbalance.registry import register_encoder


def conv_bn_relu(in_channels: int, out_channels: int, stride: int | tuple[int, int, int]) -> nn.Sequential:
    """Conv3d 3×3×3 (padding 1, no bias) → BatchNorm3d → ReLU."""
    return nn.Sequential(
        nn.Conv3d(in_channels, out_channels, 3, stride, 1, bias=False),
        nn.BatchNorm3d(out_channels),
        nn.ReLU(inplace=True),
    )


class SmallCNN3dTrunk(StagedTrunk):
    """``stem`` and four Conv3d-BN-ReLU ``stages``; returns the last (B, C, T', H', W') map."""

    def __init__(self, in_channels: int, width: int) -> None:
        super().__init__()
        self.stem = conv_bn_relu(in_channels, width, (1, 2, 2))
        self.stage_channels = [width * 2**i for i in range(4)]
        inputs = [width, *self.stage_channels[:-1]]
        self.stages = nn.ModuleList(
            [
                conv_bn_relu(c_in, c_out, 1 if i == 0 else 2)
                for i, (c_in, c_out) in enumerate(zip(inputs, self.stage_channels, strict=True))
            ]
        )
        self.out_channels = self.stage_channels[-1]
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    @staticmethod
    def checkpoint_key(key: str) -> str:
        """A checkpoint of this trunk uses its own state-dict names."""
        return key


@register_encoder("cnn3d")
def cnn3d(in_channels: int, width: int) -> SmallCNN3dTrunk:
    """The small 3-D CNN with ``width`` channels in its stem and first stage."""
    return SmallCNN3dTrunk(in_channels, width)
