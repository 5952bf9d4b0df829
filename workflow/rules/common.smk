# Shared setup of the mmbalance workflow: config validation, the container image, wildcard
# constraints and every input function. Output paths are never spelt out here by hand:
# they come from mmbalance.config (raw_dir, feature_dir, run_dir), the same functions the
# `mmbalance` CLI writes with, so the workflow and the CLI cannot disagree about a path.

import itertools
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

import mmbalance.analysis
import mmbalance.config as mmcfg
import mmbalance.sweeps
import mmbalance.report
from mmbalance.cli import summary_path
from mmbalance.errors import MMBalanceError
from mmbalance.registry import ANALYSES
from mmbalance.registry import DATASETS as DATASET_REGISTRY
from mmbalance.report.curves import curve_figures
from mmbalance.report.discrepancies import discrepancy_stems
from mmbalance.report.paper_tables import paper_table_stems
from mmbalance.report.protocol_table import PROTOCOL_STEM
from mmbalance.report.sensitivity import sweep_stems
from mmbalance.report.significance_table import SIGNIFICANCE_STEM
from mmbalance.report.costs import COST_STEM
from mmbalance.report.studies import study_stems

# Every shell command passes this file to the CLI, which re-reads it; Snakemake's own copy
# (`configfile:` in the Snakefile) must therefore be exactly its content (checked below).
PARAMS_FILE = "params.yaml"

# The project image. `--config container=images/mmbalance.sif` points the workflow at a
# local SIF (no pull, works offline); the key is taken out before params.yaml is validated.
# The directive only takes effect with --use-apptainer/--use-singularity (--sdm apptainer).
IMAGE = config.pop("container", "docker://ghcr.io/mmbalance/mmbalance:0.1.0")

# Fail before building the DAG with the one line the CLI gives: mmbalance's own checks first (the
# same JSON schema, reported as the key at fault, then registered dataset and method names and
# option types), so a mistake never ends in Snakemake's dump of the schema and the config.
# Snakemake's validate() then passes by construction; set_default=False keeps the config
# identical to the file the CLI reads.
try:
    mmcfg.validate(config, source=PARAMS_FILE)
except MMBalanceError as exc:
    raise WorkflowError(str(exc)) from None
validate(config, "../schemas/params.schema.yaml", set_default=False)
if config != mmcfg.read_yaml(PARAMS_FILE):
    raise WorkflowError(
        f"the config differs from {PARAMS_FILE}, which the mmbalance CLI reads: "
        "--config/--configfile overrides are not passed on to it (only --config container=... is); "
        f"edit {PARAMS_FILE} instead (DVC tracks the same file)"
    )

# The tables' own sources: the report code, its layouts, the published numbers and the dataset
# labels. They are inputs of the tables rule, so editing a layout or a published number rebuilds
# the tables (DVC's tables stage depends on the same folder).
REPORT_SOURCES = sorted(
    str(path)
    for path in Path(mmbalance.report.__file__).parent.rglob("*")
    if path.is_file() and "__pycache__" not in path.parts
)

# The analyses' sources and the report helpers they draw and tabulate with: editing them reruns the
# analyses (DVC's tables stage depends on both folders).
ANALYSIS_SOURCES = sorted(
    [
        str(path)
        for path in Path(mmbalance.analysis.__file__).parent.rglob("*.py")
        if "__pycache__" not in path.parts
    ]
    + [
        str(Path(mmbalance.report.__file__).parent / name)
        for name in ("figures.py", "tables.py")
    ]
)

DATASETS = config["experiment"]["datasets"]
# The datasets whose raw data is generated: a dataset that reads another's (sarcasm_clip reads
# sarcasm's) has that dataset's raw folder, so one `generate` job serves both.
RAW_DATASETS = sorted({mmcfg.raw_dataset(dataset) for dataset in DATASETS})
METHODS = mmcfg.experiment_methods(config)
SEEDS = config["experiment"]["seeds"]
# Every run to train per dataset, {method: seeds}: the experiment's methods and the runs of its
# sensitivity sweeps (points that no experiment run serves, their defaults and references).
RUNS = {dataset: mmcfg.run_seeds(config, dataset) for dataset in DATASETS}
RUN_NAMES = sorted({method for runs in RUNS.values() for method in runs})
N_RUNS = sum(len(seeds) for runs in RUNS.values() for seeds in runs.values())
DATA = config["paths"]["data"]
RESULTS = config["paths"]["results"]
TABLES = config["paths"]["tables"]
FIGURE_FORMATS = config["report"]["figure_formats"]
HASH = f"[0-9a-f]{{{mmcfg.HASH_LENGTH}}}"

# Threads, memory and wall time of one seed's training run per profile (SLURM: --cpus-per-task,
# --mem and -t; a train job's runtime is this times its number of seeds). The embedded profile
# trains with one thread per run: tiny models gain little from more, two runs in parallel on two
# cores finish sooner, and a fixed thread count keeps CPU results bit-identical whatever --cores
# is (reduction order can depend on the thread count).
TRAIN_RESOURCES = {
    "embedded": {"threads": 1, "mem_mb": 4000, "runtime": 60},
    "paper": {"threads": 4, "mem_mb": 32000, "runtime": 24 * 60},
}[config["profile"]]


wildcard_constraints:
    dataset="|".join(sorted(set(DATASETS) | set(RAW_DATASETS))),
    method="|".join(RUN_NAMES),
    data_id=HASH,
    feature_id=rf"[a-z0-9_]+-{HASH}",
    run_id=HASH,


def raw_manifest(dataset):
    """The manifest that `mmbalance generate` writes last, for the configured data."""
    return str(mmcfg.raw_dir(config, dataset) / "manifest.json")


def feature_manifest(dataset):
    """The manifest that `mmbalance extract` writes last, for the configured features."""
    return str(mmcfg.feature_dir(config, dataset) / "manifest.json")


def run_files(name, datasets=None):
    """`name` (e.g. metrics.json) in every run dir of the matrix (sweep runs included),
    optionally for some datasets."""
    return [
        str(mmcfg.run_dir(config, dataset, method, seed) / name)
        for dataset in datasets or DATASETS
        for method, seeds in RUNS[dataset].items()
        for seed in seeds
    ]


def seed_files(name, seeds):
    """`name` in the run dir of each of `seeds`, with the {dataset}, {method} and {run_id}
    wildcards of a train rule: one job trains all seeds of a run."""
    return [
        f"{RESULTS}/{{dataset}}/{{method}}/{{run_id}}/seed{seed}/{name}"
        for seed in seeds
    ]


def train_groups():
    """The train rules and their runs, {rule: (seeds, [method, ...])}: a rule's outputs (one set per
    seed) cannot vary between its jobs, so the runs that train every seed of experiment.seeds
    (`train`) and the sweep points that train only its first experiment.sweep_seeds (`train_sweep`)
    have a rule each. Both rules always exist (DVC's train stage names them); one without runs
    matches no method."""
    seeds_of = {}
    for dataset, runs in RUNS.items():
        for method, seeds in runs.items():
            if seeds_of.setdefault(method, tuple(seeds)) != tuple(seeds):
                raise WorkflowError(
                    f"{method} would train seeds {seeds_of[method]} on one dataset and {tuple(seeds)}"
                    f" on {dataset}; a run name must have the same seeds on every dataset"
                )
    sweep_seeds = tuple(mmbalance.sweeps.seeds(config))
    groups = {"train": (tuple(SEEDS), []), "train_sweep": (sweep_seeds, [])}
    for method, seeds in sorted(seeds_of.items()):
        group = "train" if seeds == tuple(SEEDS) else "train_sweep"
        if seeds != groups[group][0]:
            raise WorkflowError(
                f"{method} trains seeds {seeds}, neither {SEEDS} nor {sweep_seeds}"
            )
        groups[group][1].append(method)
    return groups


def summary_csv(dataset):
    """Mean ± std over seeds of one dataset's runs, where `mmbalance tables` reads it."""
    return str(summary_path(config, dataset))


def table_files(suffix):
    """One main table per configured dataset, in the format of `suffix`."""
    return [f"{TABLES}/{dataset}_main.{suffix}" for dataset in DATASETS]


def paper_table_files(suffix):
    """The papers' tables beside the published numbers (one per layout of mmbalance.report
    and protocol), known before any result exists, in the format of `suffix`."""
    return [f"{TABLES}/{stem}.{suffix}" for stem in paper_table_stems()]


def comparison_table_files():
    """The discrepancy tables (one per protocol) and the protocol table, in every format."""
    return [
        f"{TABLES}/{stem}.{suffix}"
        for stem in [*discrepancy_stems(), PROTOCOL_STEM]
        for suffix in ("md", "csv", "tex")
    ]


def dataset_table_files(stem):
    """`<dataset>_<stem>` tables of every dataset in every format (md, csv, tex)."""
    return [
        f"{TABLES}/{dataset}_{stem}.{suffix}"
        for dataset, suffix in itertools.product(DATASETS, ("md", "csv", "tex"))
    ]


def sweep_files(suffixes):
    """The figure and table of every selected sweep on every dataset, in the `suffixes` given."""
    return [
        f"{TABLES}/{stem}.{suffix}"
        for dataset in DATASETS
        for stem in sweep_stems(config, dataset)
        for suffix in suffixes
    ]


def study_table_files():
    """The "ours only" tables (AUG Tables 2-4), per protocol, in every format."""
    return [
        f"{TABLES}/{stem}.{suffix}"
        for stem in study_stems()
        for suffix in ("md", "csv", "tex")
    ]


def dataset_figure_files(stem):
    """`<dataset>_<stem>` figures of every dataset in every configured format."""
    return [
        f"{TABLES}/{dataset}_{stem}.{fmt}"
        for dataset, fmt in itertools.product(DATASETS, FIGURE_FORMATS)
    ]


def history_figure_files():
    """Per-epoch figures the configured methods declare (LFM's α, AUG's classifiers; Method.curves)."""
    return [
        f"{TABLES}/{dataset}_{figure.stem}.{fmt}"
        for dataset in DATASETS
        for figure in curve_figures(
            config, METHODS, list(DATASET_REGISTRY.get(dataset).modalities)
        )
        for fmt in FIGURE_FORMATS
    ]


def ancient_input(path_function):
    """An input function giving `path_function(dataset)` flagged ancient().

    Data, features and runs live at paths content-addressed by their config, so an existing
    file at the configured path is the right one whatever its mtime. After `dvc pull` or a
    git clone, mtimes are arbitrary and no .snakemake metadata exists (workflow.md §2.7, §5);
    without ancient() Snakemake would retrain every run whose features were pulled later
    than its metrics.
    """
    return lambda wildcards: ancient(path_function(wildcards.dataset))


# --- the analysis stage (workflow/rules/analysis.smk) ---------------------------------------
ANALYSIS_NAMES = ANALYSES.names()
# Written by the analyses but not shown in the report: LaTeX tables and the Grad-CAM maps.
UNREPORTED_SUFFIXES = (".tex", ".npz")


def analysis_inputs(name):
    """The run files analysis `name` reads (the workflow trains those runs first), every dataset."""
    analysis = ANALYSES.get(name)(config)
    return [str(path) for dataset in DATASETS for path in analysis.inputs(dataset)]


def analysis_outputs(name, reported):
    """Every file analysis `name` writes into the tables folder, the reported ones or the others."""
    analysis = ANALYSES.get(name)(config)
    return [
        str(path)
        for dataset in DATASETS
        for path in analysis.outputs(dataset, Path(TABLES))
        if (path.suffix not in UNREPORTED_SUFFIXES) == reported
    ]
