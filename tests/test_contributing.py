"""CONTRIBUTING.md is true: its layers are the import rules of tests/test_layers.py, every file it names
exists, and following its lists for a toy method, dataset, encoder and analysis works (and the
registry-wide tests fail until the toy's test case is added, saying what to add)."""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from torch import nn

from mmbalance import config, pipeline
from mmbalance.analysis._base import Analysis
from mmbalance.cli import main
from mmbalance.data.datasets._base import Dataset
from mmbalance.methods._base import Method
from mmbalance.models.encoders.adapters import build_encoder
from mmbalance.registry import ANALYSES, DATASETS, ENCODERS, METHODS, Registry
from tests import test_layers, test_registries
from tests.conftest import REPO, make_batch, tiny_params

GUIDE = (REPO / "CONTRIBUTING.md").read_text(encoding="utf-8")
PACKAGE = REPO / "src" / "mmbalance"


def layer_rows() -> dict[str, tuple[list[str], set[str]]]:
    """layer → (its modules, the layers it may import), from the guide's table."""
    section = GUIDE.split("## Layers", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] not in ("layer", "---"):
            modules = re.findall(r"`([^`]+)`", cells[1])
            allowed = set() if cells[2] == "nothing else" else {c.strip() for c in cells[2].split(",")}
            rows[cells[0]] = (modules, allowed)
    return rows


def test_the_layers_are_the_import_rules() -> None:
    rows = layer_rows()
    assert set(rows) == set(test_layers.BELOW)
    for layer, (modules, allowed) in rows.items():
        assert allowed == test_layers.BELOW[layer], layer
        for module in modules:
            assert (PACKAGE / module).exists(), module
            name = "mmbalance." + module.removesuffix("/").removesuffix(".py").replace("/", ".")
            assert test_layers.layer(name) == layer, module


def test_every_path_named_exists() -> None:
    named = set(re.findall(r"`((?:src|tests|workflow|docs)/[^`\s]+|[\w.]+\.(?:md|yaml))`", GUIDE))
    assert len(named) > 20
    for path in named:
        # a placeholder (<name>, <kind>, <table>) names a file to create: its folder must exist
        target = REPO / path.split("<")[0] if "<" in path else REPO / path
        assert target.exists() if "<" not in path else target.parent.exists(), path


@contextlib.contextmanager
def registered(registry: Registry, name: str, obj: Any) -> Iterator[Any]:
    """``obj`` registered under ``name`` for the block (a toy plugin; the registry is restored)."""
    registry.register(name)(obj)
    try:
        yield obj
    finally:
        registry._entries.pop(name)


class ToyMethod(Method):
    """Toy: Concat with a label-smoothed loss (step 1 of "Add a method")."""

    @dataclasses.dataclass
    class Options:
        smoothing: float = 0.1

    def loss(self, outputs: Any, batch: Any, ctx: Any) -> tuple[torch.Tensor, dict[str, float]]:
        loss = nn.functional.cross_entropy(
            outputs.fused, batch.labels, label_smoothing=self.options.smoothing
        )
        return loss, {"smoothed_ce": float(loss.detach())}


def test_a_toy_method_is_listed_configured_and_trained(tmp_path: Path, capsys, tiny_spec) -> None:
    with registered(METHODS, "toy", ToyMethod):
        assert main(["methods"]) == 0 and "smoothing = 0.1" in capsys.readouterr().out
        params = tiny_params(tmp_path, **{"methods.toy": {"smoothing": 0.2}, "experiment.methods": ["toy"]})
        assert config.method_options(params, "toy", dataset="synthav") == {"smoothing": 0.2}
        method = ToyMethod({"smoothing": 0.2}, tiny_spec)
        model = method.build()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        ctx = context_of(model, optimizer, method)
        logs = method.training_step(make_batch(), ctx)
        assert set(logs) == {"loss", "smoothed_ce"} and logs["loss"] == logs["smoothed_ce"]


def context_of(model: nn.Module, optimizer: torch.optim.Optimizer, method: Method) -> Any:
    from mmbalance.engine.types import Context

    return Context(model, optimizer, 0, 1, 0, torch.device("cpu"), method.modalities, 3)


@dataclasses.dataclass
class ToyConfig:
    clips: int = 2


class ToyDataset(Dataset):
    """Toy: audio only, whose missing files are "gone"."""

    modalities: ClassVar[dict[str, str]] = {"audio": "spectrogram"}
    Config = ToyConfig
    unit = "recordings"
    missing_reason = "gone"


def test_a_toy_dataset_needs_its_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with registered(DATASETS, "toy", ToyDataset):
        facts = pipeline.dataset_facts("toy")
        assert (facts.modalities, facts.unit, facts.missing_reason) == (("audio",), "recordings", "gone")
        with pytest.raises(pytest.fail.Exception, match="'toy' has no test fixture: add a builder"):
            test_registries.test_every_dataset_prepares_extracts_and_trains_a_step(
                "toy", tmp_path, monkeypatch
            )


class ToyTrunk(nn.Module):
    """Toy: one convolution."""

    def __init__(self, in_channels: int, width: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, 3, padding=1)
        self.out_channels = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_a_toy_encoder_serves_a_kind_once_it_has_a_case(monkeypatch: pytest.MonkeyPatch) -> None:
    with registered(ENCODERS, "toy", ToyTrunk):
        encoder = build_encoder("spectrogram", {"name": "toy", "width": 5})
        assert encoder(test_registries.kind_input("spectrogram")).shape == (test_registries.BATCH, 5)
        with pytest.raises(pytest.fail.Exception, match="encoder 'toy' has no case"):
            test_registries.test_every_encoder_builds_and_gives_features("toy")
        cases = {**test_registries.ENCODER_CASES, "toy": ("frames", {"name": "toy", "width": 3})}
        monkeypatch.setattr(test_registries, "ENCODER_CASES", cases)
        test_registries.test_every_encoder_builds_and_gives_features("toy")


class ToyAnalysis(Analysis):
    """Toy: one table per dataset."""

    name = "toy"

    def outputs(self, dataset: str, out_dir: Path) -> list[Path]:
        return [Path(out_dir) / f"{self.stem(dataset)}.csv"]


def test_a_toy_analysis_is_planned_by_the_workflow_api(tmp_path: Path) -> None:
    with registered(ANALYSES, "toy", ToyAnalysis):
        params = tiny_params(tmp_path)
        assert "toy" in pipeline.analysis_names()
        assert pipeline.analysis_outputs(params, "toy") == [tmp_path / "paper_tables" / "synthav_toy.csv"]
        assert pipeline.analysis_inputs(params, "toy") == []  # no methods: nothing to train first
