"""A run killed after an epoch and resumed ends bit-identical to an uninterrupted one (test_aug's pattern)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from mmbalance import config
from mmbalance.engine import loop


class KilledError(Exception):
    pass


def history(run_dir: Path) -> list[dict]:
    with open(run_dir / "history.csv", newline="") as handle:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


def train_killed_and_resumed(
    workspace: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    options: dict | None = None,
    kill_after: int = 1,
) -> list[dict]:
    """Train ``method`` once straight through and once killed after epoch ``kill_after`` then resumed;
    return the history. ``options`` replace ``methods.<method>`` of the workspace's params (``None``
    keeps them).

    Asserts equal histories, metrics and final checkpoints (model and method state).
    """
    torch.set_num_threads(1)
    params = config.load_params(workspace)
    overrides = [f"paths.results={tmp_path / 'results'}"]
    if options is not None:
        overrides.append(f"methods.{method}={json.dumps(options)}")
    params = config.apply_overrides(params, overrides)
    resolved = config.resolve_run(params, "synthav", method, 0)
    features = config.feature_dir(params, "synthav")
    loop.train(resolved, features, tmp_path / "reference", device="cpu", progress=False)
    rows = history(tmp_path / "reference")

    save = loop.save_checkpoint

    def save_then_die(path: Path, state: dict) -> None:
        save(path, state)
        if state["epoch"] == kill_after:
            raise KilledError

    monkeypatch.setattr(loop, "save_checkpoint", save_then_die)
    with pytest.raises(KilledError):
        loop.train(resolved, features, tmp_path / "resumed", device="cpu", progress=False)
    assert not (tmp_path / "resumed" / "metrics.json").exists()
    monkeypatch.setattr(loop, "save_checkpoint", save)
    loop.train(resolved, features, tmp_path / "resumed", device="cpu", progress=False)
    assert history(tmp_path / "resumed") == rows
    reference = (tmp_path / "reference" / "metrics.json").read_bytes()
    assert (tmp_path / "resumed" / "metrics.json").read_bytes() == reference
    a = torch.load(tmp_path / "reference" / loop.CHECKPOINT, weights_only=False)
    b = torch.load(tmp_path / "resumed" / loop.CHECKPOINT, weights_only=False)
    assert repr(a["method"]) == repr(b["method"])
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    return rows
