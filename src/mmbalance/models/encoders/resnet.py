"""ResNet family (BasicBlock) with configurable width, depth and input channels.

The papers use ResNet18 trained from scratch for audio (1 input channel, a log
spectrogram seen as a 1×F×T image) and video (3 channels, frames folded into the
batch and average-pooled over time and space; methods.md §C2). ``width`` is the
channel count of the first stage (64 gives the papers' ResNet18; the embedded
profile uses 16), so one code path serves both profiles.
"""

from __future__ import annotations

import torch
from torch import nn

from mmbalance.models.encoders._staged import StagedTrunk
from mmbalance.registry import register_encoder


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with a residual connection (He et al. 2016)."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNetTrunk(StagedTrunk):
    """Stem (7×7/2 conv, 3×3/2 max-pool) and four stages; returns the last feature map.

    ``stage_channels[i]`` is the channel count of stage ``i + 1``'s output (for models that
    act between stages, such as MMTM).
    """

    def __init__(self, blocks: tuple[int, int, int, int], in_channels: int, width: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 7, 2, 3, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
        stages = []
        self.stage_channels: list[int] = []
        in_planes = width
        for index, count in enumerate(blocks):
            planes = width * 2**index
            self.stage_channels.append(planes)
            layers = [BasicBlock(in_planes, planes, 1 if index == 0 else 2)]
            layers += [BasicBlock(planes, planes, 1) for _ in range(count - 1)]
            stages.append(nn.Sequential(*layers))
            in_planes = planes
        self.stages = nn.ModuleList(stages)
        self.out_channels = in_planes
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)


@register_encoder("resnet18")
def resnet18(in_channels: int, width: int = 64) -> ResNetTrunk:
    """ResNet18: [2, 2, 2, 2] basic blocks (the papers' audio and video encoder)."""
    return ResNetTrunk((2, 2, 2, 2), in_channels, width)


@register_encoder("resnet10")
def resnet10(in_channels: int, width: int = 64) -> ResNetTrunk:
    """ResNet10: [1, 1, 1, 1] basic blocks, a cheaper member of the family for CPU smoke runs."""
    return ResNetTrunk((1, 1, 1, 1), in_channels, width)


@register_encoder("resnet34")
def resnet34(in_channels: int, width: int = 64) -> ResNetTrunk:
    """ResNet34: [3, 4, 6, 3] basic blocks (AUG Table 4's larger encoder, model capacity)."""
    return ResNetTrunk((3, 4, 6, 3), in_channels, width)
