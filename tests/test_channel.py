"""Channel = MMTM (methods.md §B4): the excitation formula, frame sharing, cross-modal gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mmbalance.config import typed_options
from mmbalance.engine.types import ModelSpec
from mmbalance.errors import ConfigError
from mmbalance.methods.channel import Channel
from mmbalance.models.mmtm import MMTMModel
from mmbalance.models.model import build_model
from tests.conftest import NUM_CLASSES, make_batch

BATCH, FRAMES = 2, 3


def channel_model(spec: ModelSpec, **options) -> MMTMModel:
    torch.manual_seed(0)
    return Channel(typed_options(Channel.Options(), options, "methods.channel"), spec).build()


def stage_maps(channels: int = 8) -> dict[str, torch.Tensor]:
    """Positive stage maps: audio (B, C, h, w), video (B·T, C, h, w) with frames folded into the batch."""
    gen = torch.Generator().manual_seed(1)
    return {
        "audio": torch.rand(BATCH, channels, 3, 5, generator=gen) + 0.1,
        "video": torch.rand(BATCH * FRAMES, channels, 4, 4, generator=gen) + 0.1,
    }


@pytest.mark.parametrize(("gate", "scale"), [("2sigmoid", 2.0), ("sigmoid", 1.0)])
def test_excitation_matches_hand_computation(tiny_spec: ModelSpec, gate: str, scale: float) -> None:
    model = channel_model(tiny_spec, gate=gate)
    block = model.mmtm["2"]  # stage 2 of a width-4 ResNet: 8 channels per modality
    assert block.squeeze.out_features == int(2 * (8 + 8) / 4)
    maps = stage_maps()
    rescaled, excitation, applied = model.transfer("2", maps, BATCH)

    s_a = maps["audio"].mean(dim=(2, 3))
    s_v = maps["video"].view(BATCH, FRAMES, 8, 4, 4).mean(dim=(1, 3, 4))
    z = torch.relu(torch.cat([s_a, s_v], 1) @ block.squeeze.weight.t() + block.squeeze.bias)
    for m in ("audio", "video"):
        layer = block.excite[m]
        expected = scale * torch.sigmoid(z @ layer.weight.t() + layer.bias)
        assert torch.allclose(excitation[m], expected, atol=1e-6), m
        assert torch.equal(applied[m], excitation[m])
    assert torch.allclose(rescaled["audio"], maps["audio"] * excitation["audio"][:, :, None, None])


def test_video_excitation_is_shared_across_frames(tiny_spec: ModelSpec) -> None:
    model = channel_model(tiny_spec)
    maps = stage_maps()
    rescaled, excitation, _ = model.transfer("2", maps, BATCH)
    ratio = (rescaled["video"] / maps["video"]).view(BATCH, FRAMES, 8, 16)
    for sample in range(BATCH):
        for frame in range(FRAMES):
            per_channel = ratio[sample, frame]
            expected = excitation["video"][sample][:, None].expand_as(per_channel)
            assert torch.allclose(per_channel, expected, atol=1e-6), (sample, frame)
    assert not torch.allclose(excitation["video"][0], excitation["video"][1])


def test_neutral_gates_give_exactly_the_plain_encoders(tiny_spec: ModelSpec) -> None:
    """With zero excitation layers every gate is 2σ(0) = 1: the staged forward is the encoders' own."""
    model = channel_model(tiny_spec)
    for block in model.mmtm.values():
        for layer in block.excite.values():
            torch.nn.init.zeros_(layer.weight)
            torch.nn.init.zeros_(layer.bias)
    model.eval()
    inputs = make_batch().inputs
    with torch.no_grad():
        features = model.encode(inputs)
        for m in ("audio", "video"):
            assert torch.allclose(features[m], model.encoders[m](inputs[m]), atol=1e-6), m


def test_unimodal_logits_receive_cross_modal_gradient(tiny_spec: ModelSpec) -> None:
    """Audio's split-head logits reach the video encoder through the MMTMs; with plain Concat they cannot."""
    batch = make_batch()

    def video_encoder_gradient(model: torch.nn.Module) -> float:
        F.cross_entropy(model(batch.inputs).modality["audio"], batch.labels).backward()
        grads = [p.grad for p in model.encoders["video"].parameters()]
        return sum(float(g.abs().sum()) for g in grads if g is not None)

    assert video_encoder_gradient(channel_model(tiny_spec)) > 0
    torch.manual_seed(0)
    concat = build_model(tiny_spec.modalities, tiny_spec.encoders, "concat", NUM_CLASSES)
    assert video_encoder_gradient(concat) == 0.0


def test_three_modalities_concatenate_all_squeezes(tiny_spec: ModelSpec) -> None:
    spec = ModelSpec(
        modalities={**tiny_spec.modalities, "depth": "frames"},
        encoders={**tiny_spec.encoders, "depth": tiny_spec.encoders["video"]},
        num_classes=NUM_CLASSES,
    )
    model = channel_model(spec)
    assert model.mmtm["3"].squeeze.in_features == 3 * 16
    assert model.mmtm["3"].squeeze.out_features == int(2 * 3 * 16 / 4)
    batch = make_batch()
    inputs = {**batch.inputs, "depth": batch.inputs["video"].flip(1)}
    out = model(inputs)
    assert out.fused.shape == (len(batch), NUM_CLASSES)
    assert set(out.modality) == {"audio", "video", "depth"}
    assert torch.allclose(sum(out.modality.values()), out.fused, atol=1e-5)


def test_stage_selection(tiny_spec: ModelSpec) -> None:
    assert list(channel_model(tiny_spec, stages=[2, 3, 4]).mmtm) == ["2", "3", "4"]
    for bad in ([0], [5], []):
        with pytest.raises(ConfigError, match="stages"):
            channel_model(tiny_spec, stages=bad)
