"""The heads' initialisation, a protocol setting (``train.<profile>.<dataset>.init``): what each scheme
does to a model, that the loop applies the resolved one, and that the schema knows the same schemes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from mmbalance import config, paths
from mmbalance.engine.loop import Trainer
from mmbalance.engine.types import ModelSpec
from mmbalance.models.init import INITS, initialise_heads
from mmbalance.registry import METHODS


def linear_layers(module: nn.Module) -> list[nn.Linear]:
    return [layer for layer in module.modules() if isinstance(layer, nn.Linear)]


def test_schema_lists_the_implemented_schemes() -> None:
    assert tuple(config.schema()["$defs"]["init"]["enum"]) == INITS


@pytest.mark.parametrize("name", ["concat", "weight", "affine", "mie", "aug"])
def test_xavier_heads_sets_every_fusion_linear_and_leaves_the_encoders(
    tiny_spec: ModelSpec, name: str
) -> None:
    torch.manual_seed(0)
    model = METHODS.get(name)(vars(METHODS.get(name).Options()), tiny_spec).build()
    encoders = {k: v.clone() for k, v in model.encoders.state_dict().items()}
    pytorch = {k: v.clone() for k, v in model.fusion.state_dict().items()}
    initialise_heads(model.fusion, "pytorch")
    assert all(torch.equal(v, pytorch[k]) for k, v in model.fusion.state_dict().items())
    initialise_heads(model.fusion, "xavier_heads")
    assert all(torch.equal(v, encoders[k]) for k, v in model.encoders.state_dict().items())
    layers = linear_layers(model.fusion)
    assert layers
    for layer in layers:
        assert layer.bias is None or torch.count_nonzero(layer.bias) == 0
    # Xavier-normal: std √(2/(fan_in + fan_out)), pooled over the layers as z-scores
    z = torch.cat([(w.detach() / math.sqrt(2 / sum(w.shape))).flatten() for w in (x.weight for x in layers)])
    assert float(z.std()) == pytest.approx(1.0, abs=0.15) and abs(float(z.mean())) < 0.15
    with pytest.raises(ValueError, match="unknown initialisation"):
        initialise_heads(model.fusion, "xavier")


@pytest.mark.parametrize("init", INITS)
def test_the_loop_applies_the_resolved_initialisation(
    tiny_workspace: Path, tmp_path: Path, init: str
) -> None:
    params = config.load_params(tiny_workspace, [f"train.embedded.synthav.init={init}"])
    resolved = paths.resolve_run(params, "synthav", "concat", 0)
    assert resolved["train"]["init"] == init
    trainer = Trainer(resolved, paths.feature_dir(params, "synthav"), tmp_path, device="cpu")
    assert trainer.method.spec.init == init
    (head,) = linear_layers(trainer.model.fusion)
    assert (torch.count_nonzero(head.bias) == 0) == (init == "xavier_heads")
