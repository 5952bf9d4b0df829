"""Defining properties of the fusion modules."""

from __future__ import annotations

import pytest
import torch

from mmbalance.errors import ConfigError
from mmbalance.models.fusions._base import ProbedFusion
from mmbalance.registry import FUSIONS

DIMS = {"audio": 8, "video": 6}


def features(batch: int = 5) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {m: torch.randn(batch, d) for m, d in DIMS.items()}


def test_concat_unimodal_logits_sum_to_fused() -> None:
    fusion = FUSIONS.get("concat")(DIMS, 4)
    out = fusion(features())
    assert torch.allclose(out.modality["audio"] + out.modality["video"], out.fused, atol=1e-6)
    z = features()
    expected_audio = z["audio"] @ fusion.fc.weight[:, :8].t() + fusion.fc.bias / 2
    assert torch.allclose(out.modality["audio"], expected_audio)


def test_sum_fused_is_sum_of_heads() -> None:
    out = FUSIONS.get("sum")(DIMS, 4)(features())
    assert torch.allclose(out.modality["audio"] + out.modality["video"], out.fused)


def test_weight_fusion_is_convex_mix_of_heads() -> None:
    out = FUSIONS.get("weight")(DIMS, 4)(features())
    w = out.extras["attention"]
    assert torch.allclose(w.sum(1), torch.ones(5))
    mix = w[:, :1] * out.modality["audio"] + w[:, 1:] * out.modality["video"]
    assert torch.allclose(mix, out.fused, atol=1e-6)


@pytest.mark.parametrize("name", ["film", "gated"])
def test_probe_heads_do_not_reach_encoders(name: str) -> None:
    fusion = FUSIONS.get(name)(DIMS, 4)
    assert isinstance(fusion, ProbedFusion)
    z = {m: t.requires_grad_() for m, t in features().items()}
    out = fusion(z)
    out.modality["audio"].sum().backward()
    assert z["audio"].grad is None and z["video"].grad is None


def test_film_matches_formula() -> None:
    fusion = FUSIONS.get("film")(DIMS, 4)
    z = features()
    gamma, beta = fusion.film(z["audio"]).chunk(2, dim=1)
    expected = fusion.fc(gamma * z["video"] + beta)
    assert torch.allclose(fusion(z).fused, expected)


def test_film_with_three_modalities_conditions_the_concatenation_of_the_others() -> None:
    dims = {"a": 4, "b": 3, "c": 2}
    fusion = FUSIONS.get("film")(dims, 3)
    z = {m: torch.randn(5, d) for m, d in dims.items()}
    gamma, beta = fusion.film(z["a"]).chunk(2, dim=1)
    assert gamma.shape == (5, 5)
    expected = fusion.fc(gamma * torch.cat([z["b"], z["c"]], dim=1) + beta)
    assert torch.allclose(fusion(z).fused, expected)


def test_gated_with_three_modalities_gates_the_concatenation_of_the_others() -> None:
    dims = {"a": 4, "b": 3, "c": 2}
    fusion = FUSIONS.get("gated")(dims, 3)
    z = {m: torch.randn(5, d) for m, d in dims.items()}
    value = fusion.value_fc(torch.cat([z["b"], z["c"]], dim=1))
    expected = fusion.fc(torch.sigmoid(fusion.gate_fc(z["a"])) * value)
    assert torch.allclose(fusion(z).fused, expected)


@pytest.mark.parametrize("name", ["film", "gated"])
def test_acting_fusions_need_two_modalities(name: str) -> None:
    with pytest.raises(ConfigError, match="at least 2 modalities, got 1"):
        FUSIONS.get(name)({"a": 4}, 3)


def test_resnet_adapters_name_an_unknown_encoder_key() -> None:
    from mmbalance.errors import ConfigError
    from mmbalance.models.encoders.adapters import build_encoder

    with pytest.raises(ConfigError, match="unknown key 'widht'"):
        build_encoder("frames", {"name": "resnet10", "widht": 4})
    with pytest.raises(ConfigError, match="missing key 'width'"):
        build_encoder("spectrogram", {"name": "resnet10"})
