"""A run killed after an epoch and resumed ends bit-identical to an uninterrupted one (test_aug's pattern)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mmbalance import config, paths
from mmbalance.engine import loop
from tests.conftest import write_params

CLI = [sys.executable, "-m", "mmbalance"]


class KilledError(Exception):
    pass


def history(run_dir: Path) -> list[dict]:
    with open(run_dir / "history.csv", newline="") as handle:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


def assert_same_state(a: Any, b: Any, where: str = "method state") -> None:
    """Exact equality of nested dicts, lists, numbers and tensors (tensors by ``torch.equal``)."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_state(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_state(x, y, f"{where}[{index}]")
    else:
        assert a == b or (a != a and b != b), f"{where}: {a!r} != {b!r}"  # NaN equals NaN here


def train_killed_and_resumed(
    workspace: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    options: dict | None = None,
    kill_after: int = 1,
    overrides: list[str] | None = None,
) -> list[dict]:
    """Train ``method`` once straight through and once killed after epoch ``kill_after`` then resumed;
    return the history. ``options`` replace ``methods.<method>`` and the embedded synthav preset's
    ``methods.<method>`` of the workspace's params (``None`` keeps them); ``overrides`` are further
    ``key=value`` params overrides (e.g. the epoch count).

    Asserts equal histories, metrics and final checkpoints (model and method state).
    """
    torch.set_num_threads(1)
    params = config.load_params(workspace)
    settings = [f"paths.results={tmp_path / 'results'}"]
    if options is not None:
        # the embedded synthav block's own method settings would otherwise override these
        settings.append(f"methods.{method}={json.dumps(options)}")
        settings.append(f"train.embedded.synthav.methods.{method}={json.dumps(options)}")
    params = config.apply_overrides(params, [*settings, *(overrides or [])])
    resolved = paths.resolve_run(params, "synthav", method, 0)
    features = paths.feature_dir(params, "synthav")
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
    assert_same_state(a["method"], b["method"])
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    return rows


def cli_train(params_path: Path, method: str, *seeds: int) -> subprocess.Popen:
    """``mmbalance train`` of synthav on the CPU with one thread, in a process of its own (several seeds:
    one command that forks a child per seed)."""
    return subprocess.Popen(
        [
            *CLI,
            "train",
            "--params",
            str(params_path),
            "--dataset",
            "synthav",
            "--method",
            method,
            *(arg for seed in seeds for arg in ("--seed", str(seed))),
            "--device",
            "cpu",
            "--threads",
            "1",
            "--quiet",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def cli_killed_and_resumed(params: dict, tmp_path: Path, method: str) -> tuple[Path, Path]:
    """Train ``method`` (seed 0) with the CLI straight through, and again SIGKILLed as soon as its first
    checkpoint exists (in the checkpoints tree, where ``mmbalance runs`` then reports the run partial),
    then started again; assert byte-identical metrics, history and predictions. Returns the reference
    and the resumed run directories."""
    runs = {}
    for name in ("reference", "killed"):
        runs[name] = config.apply_overrides(
            params, [f"paths.results={tmp_path / name}", f"paths.checkpoints={tmp_path / f'{name}_ckpt'}"]
        )
        write_params(tmp_path / f"{name}.yaml", runs[name])  # YAML: JSON's 1e-05 would read back as a string
    reference_file, killed_file = tmp_path / "reference.yaml", tmp_path / "killed.yaml"

    assert cli_train(reference_file, method, 0).wait(timeout=300) == 0
    run_dir = paths.run_dir(runs["killed"], "synthav", method, 0)
    proc = cli_train(killed_file, method, 0)
    deadline = time.time() + 300
    checkpoint = paths.checkpoint_path(runs["killed"], "synthav", method, 0)
    while not checkpoint.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "metrics.json").exists()
    listed = subprocess.run(
        [*CLI, "runs", "--params", str(killed_file), "--json"], capture_output=True, text=True, check=True
    )
    status = {(r["method"], r["seed"]): r["status"] for r in json.loads(listed.stdout)}
    assert status[(method, 0)] == "partial"
    resumed = cli_train(killed_file, method, 0)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert "resumed from" in (run_dir / "train.log").read_text()
    reference_dir = paths.run_dir(runs["reference"], "synthav", method, 0)
    assert (run_dir / "metrics.json").read_bytes() == (reference_dir / "metrics.json").read_bytes()
    assert history(run_dir) == history(reference_dir)
    a, b = np.load(run_dir / "predictions.npz"), np.load(reference_dir / "predictions.npz")
    assert all(np.array_equal(a[k], b[k]) for k in a.files)
    return reference_dir, run_dir
