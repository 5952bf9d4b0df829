# Shared setup of the mmbalance workflow: config validation, the container image, wildcard
# constraints and every input function. Output paths are never spelt out here by hand:
# they come from mmbalance.pipeline (run files, manifests, summaries, the report's and the
# analyses' outputs), the same functions the `mmbalance` CLI writes with, so the workflow and
# the CLI cannot disagree about a path. params.yaml itself is read with mmbalance.config.

from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

import mmbalance.config as mmcfg
from mmbalance import pipeline
from mmbalance.errors import MMBalanceError

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
REPORT_SOURCES = pipeline.report_sources()

# The analyses' sources and the report helpers they draw and tabulate with: editing them reruns the
# analyses (DVC's tables stage depends on both folders).
ANALYSIS_SOURCES = pipeline.analysis_sources()

DATASETS = config["experiment"]["datasets"]
# The datasets whose raw data is generated: a dataset that reads another's (sarcasm_clip reads
# sarcasm's) has that dataset's raw folder, so one `generate` job serves both.
RAW_DATASETS = sorted({mmcfg.raw_dataset(dataset) for dataset in DATASETS})
METHODS = mmcfg.experiment_methods(config)
SEEDS = config["experiment"]["seeds"]
# Every run to train per dataset, {method: seeds}: the experiment's methods and the runs of its
# sensitivity sweeps (points that no experiment run serves, their defaults and references).
RUNS = pipeline.run_matrix(config)
RUN_NAMES = sorted({method for runs in RUNS.values() for method in runs})
N_RUNS = sum(len(seeds) for runs in RUNS.values() for seeds in runs.values())
TABLES = config["paths"]["tables"]
HASH = pipeline.ID_PATTERN

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
    return str(pipeline.raw_manifest(config, dataset))


def feature_manifest(dataset):
    """The manifest that `mmbalance extract` writes last, for the configured features."""
    return str(pipeline.feature_manifest(config, dataset))


def run_files(name, datasets=None):
    """`name` (e.g. metrics.json) in every run dir of the matrix (sweep runs included),
    optionally for some datasets."""
    runs = {dataset: RUNS[dataset] for dataset in datasets or DATASETS}
    return [str(path) for path in pipeline.run_files(config, name, runs)]


def seed_files(name, seeds):
    """`name` in the run dir of each of `seeds`, with the {dataset}, {method} and {run_id}
    wildcards of a train rule: one job trains all seeds of a run."""
    return [pipeline.run_file_pattern(config, seed, name) for seed in seeds]


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
    sweep_seeds = tuple(pipeline.sweep_seeds(config))
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
    return str(pipeline.summary_csv(config, dataset))


# Every file `mmbalance tables` writes, by group (mmbalance.report.build.OUTPUT_GROUPS): main
# tables, paper tables, comparisons, figures, sweeps, training cost, the headline metrics.
REPORT_OUTPUTS = {
    group: [str(path) for path in files]
    for group, files in pipeline.report_outputs(config).items()
}


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
ANALYSIS_NAMES = pipeline.analysis_names()


def analysis_inputs(name):
    """The run files analysis `name` reads (the workflow trains those runs first), every dataset."""
    return [str(path) for path in pipeline.analysis_inputs(config, name)]


def analysis_outputs(name, reported):
    """Every file analysis `name` writes into the tables folder, the reported ones or the others."""
    return [str(path) for path in pipeline.analysis_outputs(config, name, reported)]
