"""Every registered method, enrolled automatically: a run killed after an epoch's checkpoint and
started again ends bit-identical to an uninterrupted run (history, metrics, method state, weights).

This is what makes a method's ``state_dict`` complete: anything it keeps between epochs (running
averages, prototypes, projection matrices, stage counters, model snapshots) and forgets to save
shows up here as a diverging history after the resume.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from mmbalance import config
from mmbalance.engine import loop
from mmbalance.registry import METHODS

KILL_AFTER_EPOCH = 0


class KilledError(Exception):
    """Stands for SIGKILL right after a checkpoint was written."""


def history(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "history.csv", newline="") as handle:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


@pytest.mark.parametrize("name", METHODS.names())
def test_killed_run_resumes_bit_identical(
    name: str, tiny_workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.set_num_threads(1)
    params = config.load_params(tiny_workspace)
    resolved = config.resolve_run(params, "synthav", name, 0)
    features = config.feature_dir(params, "synthav")
    loop.train(resolved, features, tmp_path / "reference", device="cpu", progress=False)

    save = loop.save_checkpoint

    def save_then_die(path: Path, state: dict) -> None:
        save(path, state)
        if state["epoch"] == KILL_AFTER_EPOCH:
            raise KilledError

    monkeypatch.setattr(loop, "save_checkpoint", save_then_die)
    with pytest.raises(KilledError):
        loop.train(resolved, features, tmp_path / "resumed", device="cpu", progress=False)
    assert not (tmp_path / "resumed" / "metrics.json").exists()
    monkeypatch.setattr(loop, "save_checkpoint", save)
    loop.train(resolved, features, tmp_path / "resumed", device="cpu", progress=False)

    assert history(tmp_path / "resumed") == history(tmp_path / "reference")
    reference = (tmp_path / "reference" / "metrics.json").read_bytes()
    assert (tmp_path / "resumed" / "metrics.json").read_bytes() == reference
    a = torch.load(tmp_path / "reference" / loop.CHECKPOINT, weights_only=False)
    b = torch.load(tmp_path / "resumed" / loop.CHECKPOINT, weights_only=False)
    assert repr(a["method"]) == repr(b["method"])
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"]), name
