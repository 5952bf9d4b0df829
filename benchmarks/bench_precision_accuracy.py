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
from pathlib import Path

import torch

from benchmarks.common import write_results
from mmbalance import config, paths
from mmbalance.data.extract import extract
from mmbalance.data.generate import generate
from mmbalance.engine.loop import train

DATASET = "synthav"
COLUMNS = ["method", "fp32_acc", "bf16_acc", "bf16_minus_fp32", "per_seed_difference"]


def mean_std(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.2f} ± {100 * spread:.2f}"


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
    accuracy: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for method in args.methods:
            for precision in ("fp32", "bf16"):
                run_params = config.apply_overrides(params, [f"{block}={precision}"])
                for seed in args.seeds:
                    resolved = paths.resolve_run(run_params, DATASET, method, seed)
                    out = Path(scratch) / method / precision / str(seed)
                    metrics = train(resolved, features, out, device=args.device, progress=False)
                    acc = metrics["protocols"]["val_selected"]["test"]["fused"]["acc"]
                    accuracy.setdefault((method, precision), []).append(acc)
                    print(method, precision, seed, acc, flush=True)
    rows = []
    for method in args.methods:
        fp32, bf16 = accuracy[(method, "fp32")], accuracy[(method, "bf16")]
        differences = [100 * (b - a) for a, b in zip(fp32, bf16, strict=True)]
        rows.append(
            {
                "method": method,
                "fp32_acc": mean_std(fp32),
                "bf16_acc": mean_std(bf16),
                "bf16_minus_fp32": f"{statistics.mean(differences):+.2f}",
                "per_seed_difference": ", ".join(f"{d:+.2f}" for d in differences),
            }
        )
    kind = "cuda" if torch.cuda.is_available() and args.device != "cpu" else "cpu"
    note = (
        f"`{DATASET}`, profile `{params['profile']}`, seeds {args.seeds}, device `{kind}`: val-selected "
        "fused test accuracy (%) of whole runs, mean ± sample std over seeds; the difference is paired "
        "by seed (percentage points)."
    )
    write_results(f"precision_accuracy_{params['profile']}_{kind}", rows, COLUMNS, note)


if __name__ == "__main__":
    main()
