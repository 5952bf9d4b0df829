"""Where the time of an embedded training run goes: start-up, steps, evaluation, checkpoints.

For one method on the embedded dataset (features extracted with these params), CPU seconds
(``time.process_time``, so a busy machine disturbs the numbers less than wall time would) of:

- ``start-up``: what a training process pays besides its epochs (imports of torch and of the compiler
  stack every optimiser loads, params validation, the trainer's store, model and optimiser, the
  outputs): the CPU time of a whole one-epoch ``mmbalance train`` minus that epoch's in-process cost;
- ``train epoch``: the training steps of one epoch;
- ``evaluate val + test``: the per-epoch evaluation of both splits;
- ``checkpoint + history``: the per-epoch checkpoint and ``history.csv`` writes.

``--params`` may name several files (e.g. the previous schedule and this one) to compare them; they
are measured in alternation (epoch by epoch, then start-up by start-up), medians reported.
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


def profile(params_files: list[str], method: str, epochs: int, repeats: int = 3) -> list[dict[str, str]]:
    """One row per params file. The files are measured in alternation — epoch ``e`` of every file, then
    epoch ``e + 1`` — and the start-up runs likewise, so a machine whose speed drifts during the
    benchmark (a shared VM's does, by tens of percent) disturbs every row alike."""
    splits = ("val", "test")
    with tempfile.TemporaryDirectory() as tmp:
        trainers, resolved = [], []
        for index, params_file in enumerate(params_files):
            params = config.load_params(params_file)
            resolved.append(paths.resolve_run(params, "synthav", method, 0))
            run_dir = Path(tmp) / f"run{index}"
            trainers.append(Trainer(resolved[-1], paths.feature_dir(params, "synthav"), run_dir, "cpu"))
        train = [[] for _ in params_files]
        evaluation = [[] for _ in params_files]
        writes = [[] for _ in params_files]
        for epoch in range(epochs):
            for index, trainer in enumerate(trainers):
                trainer.model.train()
                train[index].append(cpu_seconds(lambda e=epoch, t=trainer: t.train_epoch(e)))
                evaluation[index].append(
                    cpu_seconds(lambda t=trainer: [evaluate(t.model, t.method, t.batches[s]) for s in splits])
                )
                trainer.history.append({"epoch": epoch})
                writes[index].append(
                    cpu_seconds(
                        lambda e=epoch, t=trainer: (
                            save_checkpoint(t.run_dir / CHECKPOINT, t.state(e))
                            or write_history(t.run_dir, t.history)
                        )
                    )
                )
        one_epoch = [[] for _ in params_files]
        for repeat in range(repeats):
            for index, params_file in enumerate(params_files):
                results = Path(tmp) / f"cli{index}-{repeat}"
                one_epoch[index].append(one_epoch_cli_cpu(params_file, method, results))
    median = lambda values: sorted(values)[len(values) // 2]  # noqa: E731
    rows = []
    for index, params_file in enumerate(params_files):
        per_epoch = median(train[index]) + median(evaluation[index]) + median(writes[index])
        first = train[index][0] + evaluation[index][0] + writes[index][0]
        start = median(one_epoch[index]) - first
        run_epochs = resolved[index]["train"]["epochs"]
        rows.append(
            {
                "params": params_file,
                "method": method,
                "epochs": str(run_epochs),
                "start-up (s)": f"{start:.2f}",
                "train epoch (s)": f"{median(train[index]):.3f}",
                "evaluate val + test (s)": f"{median(evaluation[index]):.3f}",
                "checkpoint + history (s)": f"{median(writes[index]):.3f}",
                "epoch (s)": f"{per_epoch:.3f}",
                "run, estimated (s)": f"{start + per_epoch * run_epochs:.1f}",
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", nargs="+", default=["params.yaml"])
    parser.add_argument("--method", default="concat")
    parser.add_argument("--epochs", type=int, default=5, help="epochs timed in-process (median reported)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = profile(args.params, args.method, args.epochs)
    columns = list(rows[0])
    note = (
        f"CPU seconds of one embedded `{args.method}` run (1 thread), by part; the run estimate is "
        "start-up + epochs x (train + evaluate + writes); `python -m benchmarks.bench_embedded`."
    )
    write_results("embedded_profile", rows, columns, note)


if __name__ == "__main__":
    main()
