"""Test accuracy of fp32 against bf16 training on ``synthav`` for Concat, LFM-H, MIE and AUG.

Whole runs through the engine (``mmbalance train``'s code path) with ``precision: fp32`` and
``precision: bf16``, every other setting as ``params.yaml`` has it, on the active profile or
``--profile``; the val-selected fused test accuracy, mean ± sample std over the seeds, and the
paired difference bf16 − fp32 per seed. On a GPU, ``--profile paper`` measures what the paper profile
documents (4 methods × 2 precisions × 3 seeds of 100 epochs: hours, not minutes); on a CPU the
embedded profile takes minutes. The dataset is generated and extracted under ``--data`` if needed.

    python -m benchmarks.bench_precision_accuracy --profile paper       # on a GPU machine
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.common import write_results
from mmbalance import config, paths
from mmbalance.data.extract import extract
from mmbalance.data.generate import generate
from mmbalance.engine.loop import train

DATASET = "synthav"
COLUMNS = ["method", "fp32_acc", "bf16_acc", "bf16_minus_fp32", "per_seed_difference", "bf16_skipped_steps"]


def mean_std(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.2f} ± {100 * spread:.2f}"


@dataclass(frozen=True)
class Outcome:
    """One whole run: its val-selected fused test accuracy, or why it has none to compare."""

    acc: float | None
    note: str = ""
    skipped: int | None = None
    """Optimiser steps skipped for non-finite gradients (``metrics.json``; bf16 and fp16 runs only)."""

    @property
    def clean(self) -> bool:
        """Finished without diverging: its accuracy can be averaged and compared."""
        return self.acc is not None and not self.note

    def __str__(self) -> str:
        return self.note if self.acc is None else f"{self.acc:.4f}{f' ({self.note})' if self.note else ''}"


def run_outcome(resolved: dict, features: Path, out: Path, device: str) -> Outcome:
    """Train one run; a run whose losses became non-finite is kept but marked ``diverged`` (its
    accuracy is chance), and a run that stops with an error is recorded with the error's first line,
    so one failing precision does not lose the other measurements."""
    try:
        metrics = train(resolved, features, out, device=device, progress=False)
    except Exception as error:  # a measurement, not a workflow: record what happened and go on
        return Outcome(None, f"failed: {type(error).__name__}: {str(error).splitlines()[0]}")
    acc = metrics["protocols"]["val_selected"]["test"]["fused"]["acc"]
    note = "diverged" if metrics["convergence"]["diverged"] else ""
    return Outcome(acc, note, metrics.get("skipped_steps"))


def precision_row(method: str, fp32: list[Outcome], bf16: list[Outcome]) -> dict[str, str]:
    """Mean ± std of the runs that finished without diverging, the paired difference over the seeds
    where both did, per seed either the difference or what happened to the bf16 run, and per seed
    the bf16 run's skipped steps."""

    def summary(outcomes: list[Outcome]) -> str:
        clean = [o.acc for o in outcomes if o.clean]
        lost = len(outcomes) - len(clean)
        return (mean_std(clean) if clean else "—") + (
            f" ({lost} of {len(outcomes)} diverged or failed)" if lost else ""
        )

    differences, per_seed = [], []
    for a, b in zip(fp32, bf16, strict=True):
        if a.clean and b.clean:
            differences.append(100 * (b.acc - a.acc))
            per_seed.append(f"{differences[-1]:+.2f}")
        else:
            per_seed.append(f"fp32 {a}" if b.clean else f"bf16 {b}")
    return {
        "method": method,
        "fp32_acc": summary(fp32),
        "bf16_acc": summary(bf16),
        "bf16_minus_fp32": f"{statistics.mean(differences):+.2f}" if differences else "—",
        "per_seed_difference": ", ".join(per_seed),
        "bf16_skipped_steps": ", ".join("—" if o.skipped is None else str(o.skipped) for o in bf16),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--profile", choices=["embedded", "paper"], help="default: params.yaml's")
    parser.add_argument("--methods", nargs="+", default=["concat", "lfm_h", "mie", "aug"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--data", default="data", help="paths.data: where the dataset is (or is made)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params = config.read_yaml(args.params)
    params["profile"] = args.profile or params["profile"]
    params["paths"]["data"] = args.data
    config.validate(params)
    raw, features = paths.raw_dir(params, DATASET), paths.feature_dir(params, DATASET)
    if not (features / "manifest.json").exists():
        generate(DATASET, config.data_config(params, DATASET), raw, workers=args.threads, progress=False)
        extract(
            DATASET,
            raw,
            config.feature_config(params, DATASET),
            features,
            workers=args.threads,
            progress=False,
        )
    block = f"train.{params['profile']}.{DATASET}.precision"
    outcomes: dict[tuple[str, str], list[Outcome]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for method in args.methods:
            for precision in ("fp32", "bf16"):
                run_params = config.apply_overrides(params, [f"{block}={precision}"])
                for seed in args.seeds:
                    resolved = paths.resolve_run(run_params, DATASET, method, seed)
                    out = Path(scratch) / method / precision / str(seed)
                    outcome = run_outcome(resolved, features, out, args.device)
                    outcomes.setdefault((method, precision), []).append(outcome)
                    print(method, precision, seed, outcome, flush=True)
    rows = [
        precision_row(method, outcomes[(method, "fp32")], outcomes[(method, "bf16")])
        for method in args.methods
    ]
    kind = "cuda" if torch.cuda.is_available() and args.device != "cpu" else "cpu"
    note = (
        f"`{DATASET}`, profile `{params['profile']}`, seeds {args.seeds}, device `{kind}`: val-selected "
        "fused test accuracy (%) of whole runs, mean ± sample std over the seeds whose run neither diverged "
        "(non-finite losses: chance accuracy) nor failed; the difference is paired by seed (percentage "
        "points) over the seeds where both runs finished. bf16_skipped_steps: per seed, the optimiser steps "
        "skipped because a gradient was not finite (engine.precision)."
    )
    write_results(f"precision_accuracy_{params['profile']}_{kind}", rows, COLUMNS, note)


if __name__ == "__main__":
    main()
