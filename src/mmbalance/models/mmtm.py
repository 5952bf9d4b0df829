"""MMTM: multimodal transfer modules between the encoders' stages (ResNet, I3D, cnn3d; methods.md §B4).

Joze, Shaban, Iuzzolino & Koishida, "MMTM: Multimodal Transfer Module for CNN Fusion", CVPR 2020,
Sec. 3 (squeeze, multimodal excitation), as implemented by the Greedy code
(``nyukat/greedy_multimodal_learning`` a190e03, ``MMTM_mitigate``). After each selected stage every
modality's map ``A_m`` is squeezed by global average pooling ``S_m`` (the encoder's own ``pool``:
over the frames of a clip too, and over time and space for a 3-D clip map),
``Z = ReLU(W [S_1; …; S_M] + b)`` with ``int(2·Σ_m C_m / ratio)`` units, ``E_m = W_m Z + b_m``,
and ``A_m ← k·σ(E_m) ⊙ A_m`` channel-wise, the same gate for every frame and position of a clip
(``k = 2`` in the paper, ``1`` in the Greedy code). More than two modalities: the
squeezes of all of them are concatenated (our generalisation of the two-stream module).

The trunks run jointly, stage by stage; input handling (``images``) and pooling (``pool``) are
the encoders' own (:mod:`mmbalance.models.encoders.adapters`), so a model without transfer
modules computes exactly what the plain encoders compute.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mmbalance.errors import ConfigError
from mmbalance.models.fusions._base import Fusion
from mmbalance.models.model import ModelOutput, MultimodalModel, build_encoders
from mmbalance.registry import FUSIONS

GateOverride = dict[str, dict[str, torch.Tensor]]
"""``{modality: {stage: (C,) gate}}``: gates used instead of the computed ones (Greedy's curation)."""


class MMTM(nn.Module):
    """One transfer module: per-modality squeezes in, per-modality channel gates out (Sec. 3)."""

    def __init__(self, channels: dict[str, int], ratio: int, gate_scale: float) -> None:
        super().__init__()
        self.modalities = list(channels)
        total = sum(channels.values())
        bottleneck = int(2 * total / ratio)
        self.squeeze = nn.Linear(total, bottleneck)
        self.excite = nn.ModuleDict({m: nn.Linear(bottleneck, c) for m, c in channels.items()})
        self.gate_scale = gate_scale

    def forward(self, squeezed: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``g_m = k·σ(W_m ReLU(W [S_1; …; S_M] + b) + b_m)``, (B, C_m) for each modality."""
        joint = torch.relu(self.squeeze(torch.cat([squeezed[m] for m in self.modalities], dim=1)))
        return {m: self.gate_scale * torch.sigmoid(self.excite[m](joint)) for m in self.modalities}


def rescale(fmap: torch.Tensor, gate: torch.Tensor, batch: int) -> torch.Tensor:
    """A map times a per-sample (B, C) gate, channel-wise: a (B·T, C, h, w) map of frames folded into
    the batch gets the same gate for all T frames; a (B, C, …) map (spectrogram, 3-D clip map) is
    gated over all its time and space positions."""
    clip = fmap.view(batch, -1, *fmap.shape[1:])
    return (clip * gate.view(batch, 1, -1, *[1] * (fmap.dim() - 2))).view_as(fmap)


class MMTMModel(MultimodalModel):
    """The encoders' trunks run stage by stage, an :class:`MMTM` after each selected stage.

    ``stages`` are 1-based stage indices. ``forward`` returns the usual :class:`ModelOutput`;
    ``fusion.extras`` also holds, per stage ``s`` and modality ``m``, the computed excitation gate
    ``excitation_{s}_{m}`` and the gate actually applied ``gate_{s}_{m}`` (they differ only where
    ``replace`` overrides a gate).
    """

    def __init__(
        self,
        encoders: dict[str, nn.Module],
        fusion: Fusion,
        stages: Sequence[int],
        ratio: int,
        gate_scale: float,
    ) -> None:
        super().__init__(encoders, fusion)
        if len(self.modalities) < 2:
            raise ConfigError(f"MMTM needs at least 2 modalities, got {self.modalities}")
        trunks = {m: getattr(enc, "trunk", None) for m, enc in encoders.items()}
        staged = [m for m, t in trunks.items() if not hasattr(t, "stage_channels")]
        if staged:
            raise ConfigError(f"MMTM needs staged (ResNet, I3D, cnn3d) encoders; {staged} have none")
        depths = {len(t.stages) for t in trunks.values()}
        if len(depths) != 1:
            raise ConfigError(f"MMTM needs encoders with the same number of stages, got {sorted(depths)}")
        self.depth = depths.pop()
        if ratio <= 0 or not stages or any(not 1 <= s <= self.depth for s in stages):
            raise ConfigError(
                f"MMTM stages must be a non-empty subset of 1..{self.depth} and ratio > 0, "
                f"got stages {list(stages)}, ratio {ratio}"
            )
        self.mmtm = nn.ModuleDict(
            {
                str(s): MMTM({m: t.stage_channels[s - 1] for m, t in trunks.items()}, ratio, gate_scale)
                for s in sorted(set(stages))
            }
        )

    def transfer(
        self,
        stage: str,
        maps: dict[str, torch.Tensor],
        batch: int,
        replace: dict[str, torch.Tensor] | None = None,
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Squeeze, excite and rescale the stage maps: ``(rescaled maps, computed gates, applied gates)``.

        ``replace[m]`` (a (C,) vector) is applied to every sample instead of ``m``'s computed gate,
        detached, so no gradient flows through it.
        """
        squeezed = {m: self.encoders[m].pool(maps[m], batch) for m in self.modalities}
        excitation = self.mmtm[stage](squeezed)
        gates = dict(excitation)
        for m, vector in (replace or {}).items():
            gates[m] = vector.detach().expand(batch, -1)
        return {m: rescale(maps[m], gates[m], batch) for m in self.modalities}, excitation, gates

    def encode_with_gates(
        self, inputs: dict[str, torch.Tensor], replace: GateOverride | None = None
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Features per modality and the gates of every transfer module (see the class docstring)."""
        batch = inputs[self.modalities[0]].shape[0]
        maps = {m: self.encoders[m].trunk.stem(self.encoders[m].images(inputs[m])) for m in self.modalities}
        gates: dict[str, torch.Tensor] = {}
        for index in range(self.depth):
            maps = {m: self.encoders[m].trunk.stages[index](maps[m]) for m in self.modalities}
            stage = str(index + 1)
            if stage in self.mmtm:
                overrides = {m: by_stage[stage] for m, by_stage in (replace or {}).items()}
                maps, excitation, applied = self.transfer(stage, maps, batch, overrides)
                gates.update({f"excitation_{stage}_{m}": g for m, g in excitation.items()})
                gates.update({f"gate_{stage}_{m}": g for m, g in applied.items()})
        features = {m: self.encoders[m].pool(maps[m], batch) for m in self.modalities}
        return features, gates

    def encode(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.encode_with_gates(inputs)[0]

    def forward(self, inputs: dict[str, torch.Tensor], replace: GateOverride | None = None) -> ModelOutput:
        features, gates = self.encode_with_gates(inputs, replace)
        output = self.fusion(features)
        output.extras.update(gates)
        return ModelOutput(features, output)


def build_mmtm_model(
    modalities: dict[str, str],
    encoder_cfgs: dict[str, dict],
    fusion: str,
    num_classes: int,
    stages: Sequence[int],
    ratio: int,
    gate_scale: float,
) -> MMTMModel:
    """Encoders per modality, MMTMs after ``stages`` and the named fusion over the features."""
    encoders = build_encoders(modalities, encoder_cfgs)
    dims = {m: enc.out_dim for m, enc in encoders.items()}
    return MMTMModel(encoders, FUSIONS.get(fusion)(dims, num_classes), stages, ratio, gate_scale)
