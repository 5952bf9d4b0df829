"""ML-LSTM (methods.md §B5, mmbalance interpretation): shapes, the LSTM recurrence, order, probes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mmbalance.config import typed_options
from mmbalance.engine.types import ModelSpec
from mmbalance.methods.ml_lstm import MLLSTM
from mmbalance.models.fusions._base import ProbedFusion
from mmbalance.registry import FUSIONS
from tests.conftest import NUM_CLASSES, make_batch


def features(dims: dict[str, int], batch: int = 5) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {m: torch.randn(batch, d, generator=gen) for m, d in dims.items()}


@pytest.mark.parametrize("dims", [{"audio": 8, "video": 8}, {"audio": 8, "video": 6, "depth": 5}])
def test_output_shapes_and_projections(dims: dict[str, int]) -> None:
    torch.manual_seed(0)
    fusion = FUSIONS.get("lstm")(dims, 4, hidden=7, layers=2)
    assert isinstance(fusion, ProbedFusion)
    out = fusion(features(dims))
    assert out.fused.shape == (5, 4)
    assert {m: o.shape for m, o in out.modality.items()} == {m: (5, 4) for m in dims}
    equal = len(set(dims.values())) == 1
    for m, d in dims.items():
        project = fusion.project[m]
        assert isinstance(project, torch.nn.Identity) if equal else project.in_features == d
    assert fusion.lstm.input_size == max(dims.values())


def test_fused_logits_follow_the_lstm_recurrence() -> None:
    """Hand-unrolled 2-layer LSTM (i, f, g, o gates) over [z_audio, z_video], then the Linear."""
    torch.manual_seed(0)
    dims = {"audio": 6, "video": 6}
    fusion = FUSIONS.get("lstm")(dims, 3, hidden=5, layers=2)
    z = features(dims)
    sequence = [z["audio"], z["video"]]
    for layer in range(2):
        w_ih, w_hh = getattr(fusion.lstm, f"weight_ih_l{layer}"), getattr(fusion.lstm, f"weight_hh_l{layer}")
        bias = getattr(fusion.lstm, f"bias_ih_l{layer}") + getattr(fusion.lstm, f"bias_hh_l{layer}")
        h = c = torch.zeros(5, 5)
        outputs = []
        for x in sequence:
            i, f, g, o = (x @ w_ih.t() + h @ w_hh.t() + bias).chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outputs.append(h)
        sequence = outputs
    expected = fusion.fc(sequence[-1])
    assert torch.allclose(fusion(z).fused, expected, atol=1e-6)


def test_modality_order_matters() -> None:
    torch.manual_seed(0)
    dims = {"audio": 6, "video": 6}
    fusion = FUSIONS.get("lstm")(dims, 3, hidden=5, layers=2)
    z = features(dims)
    swapped = {"audio": z["video"], "video": z["audio"]}
    assert not torch.allclose(fusion(z).fused, fusion(swapped).fused, atol=1e-4)


def test_probes_train_without_reaching_the_encoders(tiny_spec: ModelSpec) -> None:
    torch.manual_seed(0)
    method = MLLSTM(
        typed_options(MLLSTM.Options(), {"hidden": 16, "layers": 3}, "methods.ml_lstm"), tiny_spec
    )
    model = method.build()
    assert (model.fusion.lstm.hidden_size, model.fusion.lstm.num_layers) == (16, 3)
    batch = make_batch()
    out = model(batch.inputs)
    sum(F.cross_entropy(out.modality[m], batch.labels) for m in method.modalities).backward()
    assert all(p.grad is None for p in model.encoders.parameters())
    assert all(p.grad is not None for p in model.fusion.probes.parameters())
    assert out.fused.shape == (len(batch), NUM_CLASSES)
