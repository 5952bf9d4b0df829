"""The training engine end to end on a tiny generated dataset: output contract, determinism,
kill-and-resume bit-identity and one-line CLI errors."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch

from mmbalance import config, paths
from mmbalance.engine.loop import train
from mmbalance.engine.metrics import classification_metrics
from mmbalance.errors import MMBalanceError
from tests.conftest import write_params
from tests.resume_check import CLI, cli_killed_and_resumed, cli_train


def run_train(params_path: Path, method: str, seed: int, out: Path) -> dict:
    params = config.load_params(params_path)
    resolved = paths.resolve_run(params, "synthav", method, seed)
    return train(resolved, paths.feature_dir(params, "synthav"), out, device="cpu", progress=False)


def history_without_timing(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


def test_output_contract(tiny_workspace: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    metrics = run_train(tiny_workspace, "ogm_ge", 0, tmp_path / "run")
    on_disk = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    assert on_disk["heads"] == ["fused", "audio", "video"]
    assert on_disk["config_hash"] == on_disk["run_id"] == on_disk["config"]["run_id"]
    env = on_disk["environment"]  # what the numbers depend on besides the config (README, Reproducibility)
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability() != ""
    assert env["device"] == "cpu" and env["gpu"] is None and env["threads"] == 1
    assert (
        env["packages"]["torch"] == metadata.version("torch") and env["packages"]["numpy"] == np.__version__
    )
    assert env["torch_build"]["mkldnn"] == torch.backends.mkldnn.is_available()
    for protocol in ("val_selected", "best_test", "last"):
        for head in on_disk["heads"]:
            assert set(on_disk["protocols"][protocol]["test"][head]) == {"acc", "macro_f1", "map"}
    assert on_disk["protocols"]["last"]["epochs"]["fused"] == 2
    history = history_without_timing(tmp_path / "run" / "history.csv")
    assert [int(r["epoch"]) for r in history] == [0, 1, 2]
    assert {"train_loss", "train_coef_audio", "test_video_acc", "val_fused_map", "lr"} <= set(history[0])
    best_val = max(range(3), key=lambda i: (float(history[i]["val_fused_acc"]), -i))
    assert on_disk["protocols"]["val_selected"]["epochs"]["fused"] == best_val
    best_test = max(float(r["test_fused_acc"]) for r in history)
    assert on_disk["protocols"]["best_test"]["test"]["fused"]["acc"] == pytest.approx(best_test)
    predictions = np.load(tmp_path / "run" / "predictions.npz")
    assert set(predictions.files) == {"labels", "ids", "fused", "audio", "video"}
    for head in ("fused", "audio", "video"):
        recomputed = classification_metrics(predictions["labels"], predictions[head])
        reported = on_disk["protocols"]["val_selected"]["test"][head]
        for metric in ("acc", "macro_f1", "map"):
            assert recomputed[metric] == pytest.approx(reported[metric]), (head, metric)


def test_unimodal_selects_each_head_on_its_own(tiny_workspace: Path, tmp_path: Path) -> None:
    metrics = run_train(tiny_workspace, "unimodal", 0, tmp_path / "run")
    history = history_without_timing(tmp_path / "run" / "history.csv")
    for head in ("audio", "video"):
        best = max(range(3), key=lambda i: (float(history[i][f"val_{head}_acc"]), -i))
        assert metrics["protocols"]["val_selected"]["epochs"][head] == best


def test_same_seed_same_metrics(tiny_workspace: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    run_train(tiny_workspace, "concat", 1, tmp_path / "a")
    run_train(tiny_workspace, "concat", 1, tmp_path / "b")
    assert (tmp_path / "a" / "metrics.json").read_bytes() == (tmp_path / "b" / "metrics.json").read_bytes()
    assert history_without_timing(tmp_path / "a" / "history.csv") == history_without_timing(
        tmp_path / "b" / "history.csv"
    )
    run_train(tiny_workspace, "concat", 0, tmp_path / "c")
    assert (tmp_path / "a" / "metrics.json").read_bytes() != (tmp_path / "c" / "metrics.json").read_bytes()


def test_kill_and_resume_is_bit_identical(tiny_workspace: Path, tmp_path: Path) -> None:
    cli_killed_and_resumed(config.load_params(tiny_workspace), tmp_path, "ogm_ge")


@pytest.mark.parametrize("method", ["mie", "aug"])
def test_seeds_of_one_command_train_as_they_would_alone(
    tiny_workspace: Path, tmp_path: Path, method: str
) -> None:
    """`--seed 1 --seed 0` forks one child per seed after the imports: each seed's outputs are
    byte-identical to a command that trains that seed alone (no state leaks from one seed to the next)."""
    params = config.load_params(tiny_workspace)
    together, alone = (
        config.apply_overrides(
            params, [f"paths.results={tmp_path / n}", f"paths.checkpoints={tmp_path / n}_ckpt"]
        )
        for n in ("together", "alone")
    )
    proc = cli_train(write_params(tmp_path / "together.yaml", together), method, 1, 0)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert out.count("val-selected test acc") == 2
    for seed in (0, 1):
        assert cli_train(write_params(tmp_path / "alone.yaml", alone), method, seed).wait(timeout=300) == 0
        a = paths.run_dir(together, "synthav", method, seed)
        b = paths.run_dir(alone, "synthav", method, seed)
        assert (a / "metrics.json").read_bytes() == (b / "metrics.json").read_bytes()
        assert history_without_timing(a / "history.csv") == history_without_timing(b / "history.csv")
        assert (a / "predictions.npz").read_bytes() == (b / "predictions.npz").read_bytes()
        assert (a / "train.log").read_text().count("INFO epoch ") == 3  # its own epochs, and only them


def children_of(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux)")
def test_a_killed_command_takes_its_seed_child_with_it(tiny_workspace: Path, tmp_path: Path) -> None:
    """SIGKILL of `mmbalance train --seed 0 --seed 1` (what a workflow manager does) must not leave a
    forked seed training on behind its back."""
    params = config.apply_overrides(
        config.load_params(tiny_workspace),
        [
            f"paths.results={tmp_path / 'results'}",
            f"paths.checkpoints={tmp_path / 'checkpoints'}",
            "train.embedded.synthav.epochs=200",
        ],
    )
    proc = cli_train(write_params(tmp_path / "params.yaml", params), "concat", 0, 1)
    checkpoint = paths.checkpoint_path(params, "synthav", "concat", 0)
    deadline = time.time() + 300
    while not checkpoint.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline
        time.sleep(0.01)
    children = children_of(proc.pid)
    assert len(children) == 1
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while Path(f"/proc/{children[0]}").exists() and time.time() < deadline:
        status = Path(f"/proc/{children[0]}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if status == "Z":  # reaped by init soon; a zombie no longer runs
            break
        time.sleep(0.05)
    assert not Path(f"/proc/{children[0]}").exists() or status == "Z"


def test_resuming_a_finished_checkpoint_rewrites_every_output(tiny_workspace: Path, tmp_path: Path) -> None:
    """Snakemake deletes the outputs of a job it interrupts; the last checkpoint must bring them all back."""
    run_dir = tmp_path / "run"
    run_train(tiny_workspace, "concat", 0, run_dir)
    outputs = ("metrics.json", "history.csv", "predictions.npz")
    before = {name: (run_dir / name).read_bytes() for name in outputs}
    for name in outputs:
        (run_dir / name).unlink()
    run_train(tiny_workspace, "concat", 0, run_dir)
    assert {name: (run_dir / name).read_bytes() for name in outputs} == before


def test_foreign_checkpoint_is_refused(tiny_workspace: Path, tmp_path: Path) -> None:
    run_train(tiny_workspace, "concat", 0, tmp_path / "run")
    (tmp_path / "run" / "metrics.json").unlink()
    with pytest.raises(MMBalanceError, match="checkpoint of run"):
        run_train(tiny_workspace, "sum", 0, tmp_path / "run")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--dataset", "synthav", "--method", "nope", "--seed", "0"], "unknown method 'nope'"),
        (["train", "--dataset", "synthav", "--method", "sum", "--seed", "0", "--run-id", "x"], "--run-id x"),
        (["extract", "--dataset", "synthav", "--set", "features.embedded.synthav.video.size=big"], "size"),
        (["download", "--dataset", "nope"], "unknown dataset 'nope'"),
        (
            ["train", "--dataset", "synthav", "--method", "sum", "--seed", "1", "--seed", "1"],
            "--seed 1 given twice",
        ),
    ],
)
def test_user_errors_are_one_line(tiny_workspace: Path, args: list[str], message: str) -> None:
    proc = subprocess.run([*CLI, *args, "--params", str(tiny_workspace)], capture_output=True, text=True)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("mmbalance: error:"), proc.stderr
    assert message in lines[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("size", "shuffle", "expected"),
    [(9, True, [4, 5]), (9, False, [4, 4, 1]), (8, True, [4, 4]), (10, True, [4, 4, 2]), (1, True, [1])],
)
def test_training_batches_never_end_with_a_single_sample(
    size: int, shuffle: bool, expected: list[int]
) -> None:
    from mmbalance.engine.batches import SplitBatches

    batches = SplitBatches(
        {"x": np.arange(size, dtype=np.float32)[:, None]},
        np.zeros(size),
        4,
        torch.device("cpu"),
        shuffle,
        seed=1,
    )
    epoch = list(batches.epoch(3))
    assert [len(b) for b in epoch] == expected and len(batches) == len(expected)
    assert sorted(int(i) for b in epoch for i in b.index) == list(range(size))
