"""Which CPU kernel dispatch changes a training run's numbers: evidence for the README's reproducibility
statement (what holds across machines, what only on the same machine).

A short synthav run (small data, the embedded encoders, 3 epochs, one thread) of each method is
trained once per setting below, each in a fresh process (the dispatch variables are read when torch
loads), and compared bit for bit with the baseline: metrics.json's protocols, history.csv without its
timing column, and the test probabilities of predictions.npz (largest absolute difference).

Settings: the baseline twice (same machine, same process setup: must be identical); two threads; ATen's
vectorised kernels at AVX2 or without vectorisation (``ATEN_CPU_CAPABILITY``); oneDNN's convolutions
limited to AVX2 or AVX-512 without AMX (``ONEDNN_MAX_CPU_ISA``); oneDNN off
(``torch.backends.mkldnn.enabled = False``: ATen's own convolution); MKL's GEMM at AVX2
(``MKL_ENABLE_INSTRUCTIONS``); and all three AVX2 limits together, the kernels an AVX2-only machine
(no AVX-512) would run.

    python -m benchmarks.dispatch_probe                    # results/dispatch_probe.{md,json}
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

from benchmarks.common import write_results
from mmbalance import config, paths
from mmbalance.data.extract import extract
from mmbalance.data.generate import generate

SETTINGS: dict[str, tuple[dict[str, str], bool, int]] = {
    # name: (environment, oneDNN enabled, threads)
    "baseline": ({}, True, 1),
    "baseline, again": ({}, True, 1),
    "2 threads": ({}, True, 2),
    "ATEN_CPU_CAPABILITY=avx2": ({"ATEN_CPU_CAPABILITY": "avx2"}, True, 1),
    "ATEN_CPU_CAPABILITY=default": ({"ATEN_CPU_CAPABILITY": "default"}, True, 1),
    "ONEDNN_MAX_CPU_ISA=AVX2": ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, True, 1),
    "ONEDNN_MAX_CPU_ISA=AVX512_CORE": ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}, True, 1),
    "oneDNN off": ({}, False, 1),
    "MKL_ENABLE_INSTRUCTIONS=AVX2": ({"MKL_ENABLE_INSTRUCTIONS": "AVX2"}, True, 1),
    "all three at AVX2": (
        {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
        True,
        1,
    ),
}
SMALL = {
    "data.synthav.clips_per_class": {"train": 16, "val": 8, "test": 8},
    "data.synthav.duration": 1.0,
    "features.embedded.synthav.audio.seconds": 1.0,
    "train.embedded.synthav.epochs": 3,
    "experiment.seeds": [0],
}
TRAIN = """
import sys, torch
torch.backends.mkldnn.enabled = sys.argv[1] == "on"
from mmbalance.cli import main
sys.exit(main(sys.argv[2:]))
"""


def history(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


def outcome(run: Path) -> dict:
    """What the comparison reads of a finished run."""
    predictions = np.load(run / "predictions.npz")
    return {
        "protocols": json.loads((run / "metrics.json").read_text())["protocols"],
        "history": history(run / "history.csv"),
        "probs": {k: predictions[k] for k in predictions.files if k not in ("labels", "ids")},
    }


def compare(base: dict, other: dict) -> dict:
    acc = other["protocols"]["val_selected"]["test"]["fused"]["acc"]
    return {
        "identical": base["protocols"] == other["protocols"] and base["history"] == other["history"],
        "max_prob_diff": max(
            float(np.abs(base["probs"][k] - other["probs"][k]).max()) for k in base["probs"]
        ),
        "fused_acc": round(100 * acc, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--methods", nargs="+", default=["unimodal", "concat"])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dispatch-probe-"))
    params = config.load_params(args.params, [f"{k}={json.dumps(v)}" for k, v in SMALL.items()])
    params["paths"] = {name: str(work / name) for name in ("data", "results", "checkpoints", "tables")}
    params_file = work / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    generate(
        "synthav", config.data_config(params, "synthav"), paths.raw_dir(params, "synthav"), progress=False
    )
    extract(
        "synthav",
        paths.raw_dir(params, "synthav"),
        config.feature_config(params, "synthav"),
        paths.feature_dir(params, "synthav"),
        progress=False,
    )
    outcomes: dict[str, dict[str, dict]] = {}
    for name in args.settings:
        variables, onednn, threads = SETTINGS[name]
        outcomes[name] = {}
        for method in args.methods:
            run = paths.run_dir(params, "synthav", method, 0)
            for folder in (run, paths.checkpoint_path(params, "synthav", method, 0).parent):
                for file in folder.glob("*") if folder.is_dir() else []:
                    file.unlink()
            cli = ["train", "--params", str(params_file), "--dataset", "synthav", "--method", method]
            cli += ["--seed", "0", "--device", "cpu", "--threads", str(threads), "--quiet"]
            subprocess.run(
                [sys.executable, "-c", TRAIN, "on" if onednn else "off", *cli],
                env={**os.environ, **variables},
                check=True,
            )
            outcomes[name][method] = outcome(run)
            print(name, method, "done", flush=True)
    rows = []
    for name in args.settings:
        row = {"setting": name}
        for method in args.methods:
            result = compare(outcomes[args.settings[0]][method], outcomes[name][method])
            row[f"{method} identical"] = "yes" if result["identical"] else "**no**"
            row[f"{method} max |Δp|"] = f"{result['max_prob_diff']:.1e}"
            row[f"{method} acc"] = result["fused_acc"]
        rows.append(row)
    columns = ["setting", *(f"{m} {c}" for m in args.methods for c in ("identical", "max |Δp|", "acc"))]
    note = (
        f"synthav {SMALL['data.synthav.clips_per_class']} clips per class, "
        f"{SMALL['train.embedded.synthav.epochs']} epochs, embedded encoders, seed 0. 'identical': "
        "metrics.json protocols and history.csv (without timing) equal to the baseline's bit for bit; "
        "max |Δp|: largest difference of a test probability (predictions.npz); acc: val-selected test "
        "accuracy of the fused head (%)."
    )
    write_results("dispatch_probe", rows, columns, note)


if __name__ == "__main__":
    main()
