"""The ``mmbalance`` command line: one subcommand per pipeline stage.

Argument parsing and error reporting only; each subcommand calls one function of the
package. User mistakes (bad params, missing files, unknown names) end with one line on
stderr and exit status 2, not a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from mmbalance import config, paths
from mmbalance.errors import MMBalanceError
from mmbalance.registry import ADAPTERS, DATASETS, ENCODERS, METHODS

SEED_MAX = 2**32 - 1
"""The largest seed numpy's and torch's generators all accept."""
DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


class Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (``mmbalance train: error: ...``), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _threads(value: str) -> int:
    try:
        threads = int(value)
    except ValueError:
        threads = 0
    if threads < 1:
        raise argparse.ArgumentTypeError(f"{value!r}: expected an integer >= 1")
    return threads


def _seed(value: str) -> int:
    try:
        seed = int(value)
    except ValueError:
        seed = -1
    if not 0 <= seed <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"{value!r}: expected an integer in 0..{SEED_MAX}")
    return seed


def _device(value: str) -> str:
    if not DEVICE.fullmatch(value):
        raise argparse.ArgumentTypeError(f"{value!r}: expected auto, cpu, cuda or cuda:N")
    return value


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml", help="parameter file (default: params.yaml)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a params key, e.g. --set train.embedded.synthav.epochs=3 (repeatable)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="mmbalance",
        description="Multimodal classification under modality imbalance: generate, extract, train, report.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "generate",
        aliases=["download"],
        help="prepare a dataset's raw files: generate synthav, download and verify a real dataset",
    )
    _common(p)
    p.add_argument("--dataset", required=True)
    p.add_argument("--threads", type=_threads, default=1, help="worker processes")

    p = sub.add_parser("extract", help="extract features once into a memory-mapped store")
    _common(p)
    p.add_argument("--dataset", required=True)
    p.add_argument("--threads", type=_threads, default=1, help="worker processes")

    p = sub.add_parser(
        "train",
        help="train the dataset x method run for each seed (resumes from its checkpoint)",
        description="Train one dataset x method run per --seed. Several seeds are trained one after the "
        "other, each in a process forked from this one after the imports, so the start-up is paid once "
        "and every seed gives the same result as when trained alone.",
    )
    _common(p)
    p.add_argument("--dataset", required=True)
    p.add_argument("--method", required=True)
    p.add_argument(
        "--seed",
        type=_seed,
        required=True,
        action="append",
        help=f"0..{SEED_MAX}, repeatable: --seed 0 --seed 1",
    )
    p.add_argument("--threads", type=_threads, default=1, help="torch CPU threads")
    p.add_argument(
        "--device", type=_device, default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N"
    )
    p.add_argument("--run-id", help="refuse to run unless params resolve to this run id (used by Snakemake)")

    p = sub.add_parser("aggregate", help="mean ± std over seeds of a dataset's configured runs")
    _common(p)
    p.add_argument("--dataset", required=True)
    p.add_argument("--out", help="summary CSV (default: <results>/<dataset>/summary.csv)")

    p = sub.add_parser(
        "tables",
        help="from the summaries and histories alone: the main table, the papers' tables beside the "
        "published numbers, the discrepancy and protocol tables, and the figures, into paper_tables/",
    )
    _common(p)
    p.add_argument("--out-dir", help="output folder (default: paths.tables)")

    p = sub.add_parser(
        "analyse",
        aliases=["analyze"],
        help="one of the papers' analyses of the trained runs (representation_gap, label_fitting, gradcam, "
        "loss_landscape, mie_stages, missing_modality) into paper_tables/",
    )
    _common(p)
    p.add_argument("--name", required=True, help="the analysis (params.yaml `analysis:`; docs/tables.md)")
    p.add_argument(
        "--dataset", action="append", help="a dataset (repeatable; default: every one of experiment.datasets)"
    )
    p.add_argument("--out-dir", help="output folder (default: paths.tables)")
    p.add_argument("--threads", type=_threads, default=1, help="torch CPU threads")

    p = sub.add_parser("runs", help="list the configured runs with their paths and status")
    _common(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")

    sub.add_parser("methods", help="list registered methods with their default options")
    sub.add_parser("datasets", help="list registered datasets with their modalities")
    sub.add_parser("encoders", help="list registered encoders and the modality kinds they serve")
    return parser


def cmd_generate(args: argparse.Namespace, params: dict) -> None:
    from mmbalance.data.generate import generate

    out = paths.raw_dir(params, args.dataset)
    manifest = generate(
        args.dataset,
        config.data_config(params, args.dataset),
        out,
        workers=args.threads,
        progress=not args.quiet,
    )
    print(manifest)


def cmd_extract(args: argparse.Namespace, params: dict) -> None:
    from mmbalance.data.extract import extract

    manifest = extract(
        args.dataset,
        paths.raw_dir(params, args.dataset),
        config.feature_config(params, args.dataset),
        paths.feature_dir(params, args.dataset),
        workers=args.threads,
        progress=not args.quiet,
    )
    print(manifest)


def train_seed(args: argparse.Namespace, params: dict, seed: int) -> None:
    """Train (or resume) the run of one seed and write its outputs."""
    import torch

    from mmbalance.engine.loop import train
    from mmbalance.runlock import run_lock

    resolved = paths.resolve_run(params, args.dataset, args.method, seed)
    if args.run_id is not None and args.run_id != resolved["run_id"]:
        raise MMBalanceError(
            f"--run-id {args.run_id}: params now resolve to run id {resolved['run_id']} "
            "(params changed since the workflow was planned; re-run snakemake)"
        )
    run_dir = paths.run_dir(params, args.dataset, args.method, seed)
    torch.set_num_threads(args.threads)
    run_dir.mkdir(parents=True, exist_ok=True)
    with run_lock(run_dir):
        handler = logging.FileHandler(run_dir / "train.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger = logging.getLogger("mmbalance")
        logger.addHandler(handler)
        try:
            metrics = train(
                resolved,
                paths.feature_dir(params, args.dataset),
                run_dir,
                device=args.device,
                progress=not args.quiet,
                checkpoint_dir=paths.checkpoint_dir(params, args.dataset, args.method, seed),
            )
        finally:
            logger.removeHandler(handler)
            handler.close()
    chosen = metrics["protocols"]["val_selected"]
    print(
        f"{run_dir}: val-selected test acc {chosen['test']['fused']['acc']:.4f} "
        f"(epoch {chosen['epochs']['fused']})"
    )


def _die_with_parent(parent: int) -> None:
    """Have the kernel kill this forked child when its parent dies (Linux ``PR_SET_PDEATHSIG``), so a
    killed ``mmbalance train`` never leaves a seed training on behind a workflow's back."""
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _train_child(args: argparse.Namespace, params: dict, seed: int, parent: int) -> None:
    """A forked child's body: one seed, user errors as one line and exit status 2."""
    _die_with_parent(parent)
    try:
        train_seed(args, params, seed)
    except MMBalanceError as exc:
        print(f"mmbalance: error: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.stdout.flush()


def cmd_train(args: argparse.Namespace, params: dict) -> None:
    """One seed here; several seeds each in a child forked after the heavy imports.

    A training process spends about 3 s of CPU importing torch and its compiler stack (which every
    optimiser loads) before its first step, as long as a whole embedded run's first epochs; forking
    after the imports pays that once per job, and each seed still starts from the same untouched
    interpreter state, so it trains exactly as it would alone. The first failing seed stops the
    command with its exit status.
    """
    repeated = sorted({seed for seed in args.seed if args.seed.count(seed) > 1})
    if repeated:
        raise MMBalanceError(f"--seed {repeated[0]} given twice")
    if len(args.seed) == 1:
        train_seed(args, params, args.seed[0])
        return
    import multiprocessing

    import torch._dynamo  # noqa: F401  (imported by every optimiser's first use; once here, not per child)

    import mmbalance.engine.loop  # noqa: F401

    for registry in (METHODS, ENCODERS, DATASETS):
        registry.names()
    context = multiprocessing.get_context("fork")
    for seed in args.seed:
        child = context.Process(
            target=_train_child, args=(args, params, seed, os.getpid()), name=f"seed{seed}"
        )
        child.start()
        child.join()
        if child.exitcode != 0:
            raise SystemExit(child.exitcode if child.exitcode and child.exitcode > 0 else 1)


def cmd_aggregate(args: argparse.Namespace, params: dict) -> None:
    from mmbalance.report.aggregate import aggregate
    from mmbalance.runs.files import METRICS
    from mmbalance.runs.matrix import finished_runs, summary_path

    files = [d / METRICS for dirs in finished_runs(params, args.dataset).values() for d in dirs]
    if not files:
        raise MMBalanceError(f"no finished runs for dataset '{args.dataset}'; train first")
    out = Path(args.out) if args.out else summary_path(params, args.dataset)
    aggregate(files, out, ddof=params["report"]["std_ddof"])
    print(out)


def cmd_tables(args: argparse.Namespace, params: dict) -> None:
    from mmbalance.pipeline import write_tables

    written, removed = write_tables(params, Path(args.out_dir) if args.out_dir else None)
    for path in written:
        print(path)
    for path in removed:
        print(f"removed {path} (no longer produced)")


def cmd_analyse(args: argparse.Namespace, params: dict) -> None:
    import torch

    from mmbalance.registry import ANALYSES

    torch.set_num_threads(args.threads)
    analysis = ANALYSES.get(args.name)(params)
    out_dir = Path(args.out_dir or params["paths"]["tables"])
    for dataset in args.dataset or params["experiment"]["datasets"]:
        if dataset not in params["experiment"]["datasets"]:
            raise MMBalanceError(f"--dataset {dataset}: not in experiment.datasets")
        missing = [path for path in analysis.inputs(dataset) if not path.is_file()]
        if missing:
            raise MMBalanceError(
                f"{missing[0]}: not found ({len(missing)} run file(s) missing); train the runs first"
            )
        for path in analysis.run(dataset, out_dir):
            print(path)


def cmd_runs(args: argparse.Namespace, params: dict) -> None:
    from mmbalance.runs.matrix import run_status

    rows = run_status(params)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for row in rows:
        print(f"{row['status']:8} {row['path']}")


def cmd_methods(args: argparse.Namespace) -> None:
    for name in METHODS.names():
        cls = METHODS.get(name)
        defaults = dataclasses.asdict(cls.Options())
        summary = (cls.__doc__ or "").strip().splitlines()[0]
        print(f"{name:12} {summary}")
        for key, value in defaults.items():
            print(f"{'':12}   {key} = {value!r}")


def cmd_datasets(args: argparse.Namespace) -> None:
    for name in DATASETS.names():
        plugin = DATASETS.get(name)
        modalities = ", ".join(f"{m} ({k})" for m, k in plugin.modalities.items())
        shared = f"; the raw data of {plugin.raw_from}" if plugin.raw_from else ""
        print(f"{name:16} {modalities}{shared}")


def cmd_encoders(args: argparse.Namespace) -> None:
    for name in ENCODERS.names():
        summary = (ENCODERS.get(name).__doc__ or "").strip().splitlines()[0]
        print(f"{name:12} {summary}")
    print("adapters (modality kind -> encoder input handling; names: the models it builds itself):")
    for kind in ADAPTERS.names():
        adapter = ADAPTERS.get(kind)
        summary = (adapter.__doc__ or "").strip().splitlines()[0]
        print(f"{kind:12} {summary}")
        names = getattr(adapter, "model_names", ())
        if names:
            print(f"{'':12}   names: {', '.join(names)}")


INFO_COMMANDS = {"methods": cmd_methods, "datasets": cmd_datasets, "encoders": cmd_encoders}

COMMANDS = {
    "generate": cmd_generate,
    "download": cmd_generate,
    "extract": cmd_extract,
    "train": cmd_train,
    "aggregate": cmd_aggregate,
    "tables": cmd_tables,
    "analyse": cmd_analyse,
    "analyze": cmd_analyse,
    "runs": cmd_runs,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        if args.command in INFO_COMMANDS:
            INFO_COMMANDS[args.command](args)
        else:
            params = config.load_params(args.params, args.overrides)
            COMMANDS[args.command](args, params)
    except MMBalanceError as exc:
        print(f"mmbalance: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        # a path the user gave cannot be read or written (a file where a folder must be, no permission)
        print(f"mmbalance: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
