"""Where the time of an embedded training run goes: start-up, steps, evaluation, checkpoints.

For one method on the embedded dataset (features extracted with these params), CPU seconds
(``time.process_time``, so a busy machine disturbs the numbers less than wall time would) of:

- ``start-up``: what a training process pays besides its epochs (imports of torch and of the compiler
  stack every optimiser loads, params validation, the trainer's store, model and optimiser, the
  outputs): the CPU time of a whole one-epoch ``mmbalance train`` minus that epoch's in-process cost;
- ``train epoch``: the training steps of one epoch;
- ``evaluate val + test``: the per-epoch evaluation of both splits;
- ``checkpoint + history``: the per-epoch checkpoint and ``history.csv`` writes.

``--params`` may name several files (e.g. the previous schedule and this one) to compare them.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import write_results
from mmbalance import config, paths
from mmbalance.engine.checkpoint import save_checkpoint
from mmbalance.engine.evaluate import evaluate
from mmbalance.engine.loop import CHECKPOINT, Trainer
from mmbalance.runs.files import write_history


def cpu_seconds(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def one_epoch_cli_cpu(params_file: str, method: str, results: Path) -> float:
    """CPU seconds (user + system, children included) of a whole one-epoch ``mmbalance train``."""
    code = (
        "import resource, subprocess, sys;"
        "subprocess.run(sys.argv[1:], check=True, capture_output=True);"
        "u = resource.getrusage(resource.RUSAGE_CHILDREN); print(u.ru_utime + u.ru_stime)"
    )
    command = [
        sys.executable, "-c", code, sys.executable, "-m", "mmbalance", "train", "--params", params_file,
        "--dataset", "synthav", "--method", method, "--seed", "0", "--threads", "1", "--quiet",
        "--set", "train.embedded.synthav.epochs=1", "--set", f"paths.results={results}",
    ]  # fmt: skip
    return float(subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip())


def profile(params_file: str, method: str, epochs: int) -> dict[str, str]:
    params = config.load_params(params_file)
    resolved = paths.resolve_run(params, "synthav", method, 0)
    splits = ("val", "test")
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        trainer = Trainer(resolved, paths.feature_dir(params, "synthav"), run_dir, "cpu")
        train, evaluation, writes = [], [], []
        for epoch in range(epochs):
            trainer.model.train()
            train.append(cpu_seconds(lambda e=epoch: trainer.train_epoch(e)))
            evaluation.append(
                cpu_seconds(
                    lambda: [evaluate(trainer.model, trainer.method, trainer.batches[s]) for s in splits]
                )
            )
            trainer.history.append({"epoch": epoch})
            writes.append(
                cpu_seconds(
                    lambda e=epoch: (
                        save_checkpoint(run_dir / CHECKPOINT, trainer.state(e))
                        or write_history(trainer.run_dir, trainer.history)
                    )
                )
            )
        one_epoch = one_epoch_cli_cpu(params_file, method, Path(tmp) / "cli")
    median = lambda values: sorted(values)[len(values) // 2]  # noqa: E731
    per_epoch = median(train) + median(evaluation) + median(writes)
    start = one_epoch - train[0] - evaluation[0] - writes[0]
    return {
        "params": params_file,
        "method": method,
        "epochs": str(resolved["train"]["epochs"]),
        "start-up (s)": f"{start:.2f}",
        "train epoch (s)": f"{median(train):.3f}",
        "evaluate val + test (s)": f"{median(evaluation):.3f}",
        "checkpoint + history (s)": f"{median(writes):.3f}",
        "epoch (s)": f"{per_epoch:.3f}",
        "run, estimated (s)": f"{start + per_epoch * resolved['train']['epochs']:.1f}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", nargs="+", default=["params.yaml"])
    parser.add_argument("--method", default="concat")
    parser.add_argument("--epochs", type=int, default=5, help="epochs timed in-process (median reported)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [profile(path, args.method, args.epochs) for path in args.params]
    columns = list(rows[0])
    note = (
        f"CPU seconds of one embedded `{args.method}` run (1 thread), by part; the run estimate is "
        "start-up + epochs x (train + evaluate + writes); `python -m benchmarks.bench_embedded`."
    )
    write_results("embedded_profile", rows, columns, note)


if __name__ == "__main__":
    main()
