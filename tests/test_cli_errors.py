"""Every subcommand fed wrong arguments ends with exit status 2 and one line on stderr, never a traceback.

The sweep runs ``mmbalance.cli.main`` in this process (argparse's own errors end in ``SystemExit(2)``);
a few cases also run the real command, where a traceback would show in the output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mmbalance import config
from mmbalance.cli import main
from tests.conftest import tiny_params, write_params

CLI = [sys.executable, "-m", "mmbalance"]
SEED_MAX = 2**32 - 1


@pytest.fixture(scope="module")
def empty_params(tmp_path_factory) -> Path:
    """Tiny params whose data and results folders are empty: every stage finds nothing to read."""
    root = tmp_path_factory.mktemp("cli_errors")
    return write_params(root / "params.yaml", tiny_params(root))


TRAIN = ["train", "--dataset", "synthav", "--method", "concat"]
WRONG = {
    "no command": ([], "COMMAND"),
    "unknown command": (["trian"], "invalid choice: 'trian'"),
    "generate without --dataset": (["generate"], "--dataset"),
    "generate unknown dataset": (["generate", "--dataset", "nope"], "unknown dataset 'nope'"),
    "download unknown option": (["download", "--dataset", "synthav", "--bogus"], "--bogus"),
    "generate --threads 0": (["generate", "--dataset", "synthav", "--threads", "0"], "--threads"),
    "generate --threads x": (["generate", "--dataset", "synthav", "--threads", "x"], "--threads"),
    "extract before generate": (["extract", "--dataset", "synthav"], "raw manifest not found"),
    "extract --set without =": (["extract", "--dataset", "synthav", "--set", "oops"], "--set 'oops'"),
    "extract --set unknown key": (["extract", "--dataset", "synthav", "--set", "profil=paper"], "'profil'"),
    "extract --set bad value": (
        ["extract", "--dataset", "synthav", "--set", "train.embedded.synthav.epochs=many"],
        "epochs",
    ),
    "train without --seed": (TRAIN, "--seed"),
    "train --seed -1": ([*TRAIN, "--seed", "-1"], f"0..{SEED_MAX}"),
    "train --seed 2**32": ([*TRAIN, "--seed", str(SEED_MAX + 1)], f"0..{SEED_MAX}"),
    "train --seed x": ([*TRAIN, "--seed", "x"], f"0..{SEED_MAX}"),
    "train --device gpu": ([*TRAIN, "--seed", "0", "--device", "gpu"], "auto, cpu, cuda or cuda:N"),
    "train --device cuda:x": ([*TRAIN, "--seed", "0", "--device", "cuda:x"], "auto, cpu, cuda or cuda:N"),
    "train --threads -2": ([*TRAIN, "--seed", "0", "--threads", "-2"], "--threads"),
    "train unknown method": (
        ["train", "--dataset", "synthav", "--method", "nope", "--seed", "0"],
        "unknown method 'nope'",
    ),
    "train unknown dataset": (
        ["train", "--dataset", "nope", "--method", "concat", "--seed", "0"],
        "unknown dataset 'nope'",
    ),
    "train wrong --run-id": ([*TRAIN, "--seed", "0", "--run-id", "abc"], "--run-id abc"),
    "train before extract": ([*TRAIN, "--seed", "0", "--device", "cpu"], "not a complete feature store"),
    "train --device cuda:99": ([*TRAIN, "--seed", "0", "--device", "cuda:99"], "--device cuda:99: "),
    "aggregate before train": (["aggregate", "--dataset", "synthav"], "no finished runs"),
    "aggregate unknown dataset": (["aggregate", "--dataset", "nope"], "unknown dataset 'nope'"),
    "tables before aggregate": (["tables"], "summary.csv: not found"),
    "runs unknown option": (["runs", "--csv"], "--csv"),
    "methods unknown option": (["methods", "--all"], "--all"),
    "datasets argument": (["datasets", "synthav"], "synthav"),
    "encoders unknown option": (["encoders", "-v"], "-v"),
}
PARAMS_ERRORS = {
    "missing params file": ("missing.yaml", "missing.yaml: file not found"),
    "params file is a folder": (".", "file not found"),
}


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def run_main(args: list[str], capsys) -> tuple[int, str]:
    try:
        status = main(args)
    except SystemExit as exc:
        status = exc.code
    return status, capsys.readouterr().err


@pytest.mark.parametrize("case", sorted(WRONG))
def test_wrong_arguments_exit_2_with_one_line(case: str, empty_params: Path, capsys) -> None:
    args, expected = WRONG[case]
    uses_params = len(args) > 0 and args[0] in {"generate", "download", "extract", "train", "aggregate"}
    uses_params = uses_params or args[:1] in (["tables"], ["runs"])
    status, stderr = run_main([*args, *(["--params", str(empty_params)] if uses_params else [])], capsys)
    assert status == 2, stderr
    line = one_error_line(stderr)
    assert line.startswith("mmbalance"), line
    assert expected in line, line


@pytest.mark.parametrize("case", sorted(PARAMS_ERRORS))
@pytest.mark.parametrize("command", ["generate", "extract", "train", "aggregate", "tables", "runs"])
def test_bad_params_file_is_one_line_for_every_stage(case: str, command: str, tmp_path: Path, capsys) -> None:
    name, expected = PARAMS_ERRORS[case]
    extra = {
        "generate": ["--dataset", "synthav"],
        "extract": ["--dataset", "synthav"],
        "train": ["--dataset", "synthav", "--method", "concat", "--seed", "0"],
        "aggregate": ["--dataset", "synthav"],
    }.get(command, [])
    status, stderr = run_main([command, *extra, "--params", str(tmp_path / name)], capsys)
    assert status == 2
    assert expected in one_error_line(stderr)


def test_an_unwritable_output_is_one_line(empty_params: Path, tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    args = ["generate", "--dataset", "synthav", "--params", str(empty_params)]
    status, stderr = run_main([*args, "--set", f"paths.data={blocker}/data"], capsys)
    assert status == 2
    assert str(blocker) in one_error_line(stderr)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([*TRAIN, "--seed", "-1"], f"0..{SEED_MAX}"),
        ([*TRAIN, "--seed", "0", "--device", "gpu"], "auto, cpu, cuda or cuda:N"),
    ],
)
def test_real_command_prints_one_line(args: list[str], expected: str, empty_params: Path) -> None:
    proc = subprocess.run([*CLI, *args, "--params", str(empty_params)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert expected in one_error_line(proc.stderr)


def test_a_rejected_seed_leaves_no_run_directory(empty_params: Path, capsys) -> None:
    results = Path(config.load_params(empty_params)["paths"]["results"])
    status, _ = run_main([*TRAIN, "--seed", "-1", "--params", str(empty_params)], capsys)
    assert status == 2
    assert not results.exists() or not any(results.rglob("seed-1"))
