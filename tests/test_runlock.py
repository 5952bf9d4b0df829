"""One writer per run directory: a second ``mmbalance train`` of the same run stops, naming the directory
and the holder's pid; the lock a killed process leaves behind blocks nobody."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mmbalance import config, paths
from mmbalance.runlock import LOCK_NAME, RunLockedError, run_lock
from tests.conftest import write_params

CLI = [sys.executable, "-m", "mmbalance"]
HOLD = (
    "import sys, time\n"
    "from mmbalance.runlock import run_lock\n"
    "with run_lock(sys.argv[1]):\n"
    "    print('held', flush=True)\n"
    "    time.sleep(600)\n"
)


def hold(directory: Path) -> subprocess.Popen:
    """Another process holding the lock of ``directory`` until killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(directory)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def cli_train(params: Path) -> subprocess.CompletedProcess:
    args = ["train", "--params", str(params), "--dataset", "synthav", "--method", "concat", "--seed", "0"]
    return subprocess.run(
        [*CLI, *args, "--device", "cpu", "--quiet"], capture_output=True, text=True, timeout=600
    )


def test_second_train_of_a_run_stops_naming_dir_and_pid_and_a_dead_holder_blocks_nobody(
    tiny_workspace: Path, tmp_path: Path
) -> None:
    overrides = [f"paths.results={tmp_path / 'results'}", f"paths.checkpoints={tmp_path / 'checkpoints'}"]
    params = config.apply_overrides(config.load_params(tiny_workspace), overrides)
    params_file = tmp_path / "params.yaml"
    write_params(params_file, params)  # YAML: JSON's 1e-05 would read back as a string
    run_dir = paths.run_dir(params, "synthav", "concat", 0)
    run_dir.mkdir(parents=True)
    holder = hold(run_dir)
    try:
        blocked = cli_train(params_file)
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert blocked.returncode == 2, blocked.stderr
    lines = blocked.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in blocked.stderr, blocked.stderr
    assert str(run_dir) in lines[0] and f"pid {holder.pid} " in lines[0], lines[0]
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "train.log").exists()

    # The killed holder's file is still there, with its pid; the lock itself died with it.
    assert (run_dir / LOCK_NAME).read_text().split()[0] == str(holder.pid)
    done = cli_train(params_file)
    assert done.returncode == 0, done.stderr
    assert (run_dir / "metrics.json").is_file()
    assert not (run_dir / LOCK_NAME).exists()


def test_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    with run_lock(tmp_path) as path:
        assert path.read_text().split()[0] == str(os.getpid())
        with pytest.raises(RunLockedError, match=f"{tmp_path}: .*pid {os.getpid()} "), run_lock(tmp_path):
            pass
    assert not path.exists()
    with run_lock(tmp_path):
        pass


def test_lock_survives_an_error_and_releases(tmp_path: Path) -> None:
    with pytest.raises(ValueError), run_lock(tmp_path):
        raise ValueError("boom")
    with run_lock(tmp_path):
        assert (tmp_path / LOCK_NAME).is_file()
