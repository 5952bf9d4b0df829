"""End to end: the real Snakefile on a tiny synthav, then the DVC round trip.

The tests work in one temporary copy of the project (its git-tracked and untracked,
not-ignored files) with a tiny params.yaml: 2 methods x 2 seeds, 2 epochs, small encoders
(Concat and MSLR, which declares a per-epoch figure of its own), and one sensitivity sweep of
MSLR's window on the first seed (its point 5 is MSLR's own run, so it adds one).

1. ``snakemake`` (the default target) builds data, features, the 4 runs, the summary, the
   tables and figures; ``snakemake --report`` collects them into one HTML file. A run whose
   outputs were deleted resumes from its checkpoint in the checkpoints tree.
2. A smaller matrix removes the figures it no longer produces (Snakemake path).
3. ``dvc repro`` records what Snakemake built without training again, ``dvc push`` sends it to
   a local remote, and a fresh ``git clone`` + ``dvc pull results`` (no checkpoints) +
   ``dvc repro --allow-missing`` trains nothing, as does ``dvc pull`` + ``dvc repro``; the
   tables are byte-identical. Changing one method's hyper-parameter then trains exactly that
   method's runs, and a smaller matrix removes its figures (DVC path).
4. A clone that reaches no remote: ``dvc pull`` fails (the README explains the message) and
   ``dvc repro`` rebuilds everything, to byte-identical tables.

A job's log under logs/train/ exists only if the job ran, which is how "trained nothing" and
"trained exactly these" are checked (logs/ is neither in git nor in DVC).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mmbalance import config as mmcfg
from mmbalance import paths as mmpaths
from mmbalance.report.costs import COST_STEM
from tests.conftest import TINY_OVERRIDES
from tests.test_dvc_lock import lock_problems
from tests.test_workflow import copy_project, job_counts

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
METHODS = ["concat", "mslr"]
HISTORY_FIGURE = "synthav_lr_scale"  # MSLR's per-epoch figure (Method.curves)
# One sensitivity sweep for the first seed: 5 is MSLR's default (its own run), so the sweep adds one
# run, SWEEP_POINT on seed 0. (Not a sweep of Concat: Concat keeps the Grad-CAM epochs, which a sweep
# point does not, so none of its points would be Concat's own run.)
SWEEP = "mslr_window"
SWEEP_POINT = "mslr_window_3"
SEEDS = [0, 1]
DATASET = "synthav"
ENV = {
    **os.environ,
    # This venv's snakemake, dvc and mmbalance first: the jobs call `mmbalance` by name.
    "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),
    "GIT_AUTHOR_NAME": "mmbalance tests",
    "GIT_AUTHOR_EMAIL": "tests@mmbalance.invalid",
    "GIT_COMMITTER_NAME": "mmbalance tests",
    "GIT_COMMITTER_EMAIL": "tests@mmbalance.invalid",
}


def sh(*cmd, cwd: Path, timeout: int = 600, stdout_only: bool = False) -> str:
    """Run a command; fail the test with its output if it fails; return its output."""
    result = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{output}"
    return result.stdout if stdout_only else output


def tiny_params() -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    overrides = {
        **TINY_OVERRIDES,
        "experiment.methods": METHODS,
        "experiment.seeds": SEEDS,
        "experiment.datasets": [DATASET],
        "train.embedded.synthav.epochs": 2,
        f"sweeps.{SWEEP}": {"method": "mslr", "values": {"window": [5, 3]}},
        "experiment.sweeps": [SWEEP],
        "experiment.sweep_seeds": 1,
    }
    params = mmcfg.apply_overrides(params, [f"{k}={json.dumps(v)}" for k, v in overrides.items()])
    mmcfg.validate(params)
    return params


def write_params(project: Path, params: dict) -> None:
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def train_logs(project: Path) -> list[Path]:
    """Logs of the train jobs that ran in this directory (one per dataset x method, all its seeds)."""
    return sorted((project / "logs" / "train").glob("**/*.log"))


def snapshot(paths) -> dict[Path, tuple[bytes, int]]:
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in paths}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """The tiny project after one full `snakemake` run; the DVC remote will sit beside it."""
    root = tmp_path_factory.mktemp("e2e")
    project = root / "project"
    copy_project(project)
    write_params(project, tiny_params())
    sh(BIN / "snakemake", cwd=project)
    return project


def test_snakemake_builds_tables_figures_and_report(project):
    params = mmcfg.load_params(project / "params.yaml")
    for method, seed in itertools.product(METHODS, SEEDS):
        run = project / mmpaths.run_dir(params, DATASET, method, seed)
        for name in ("metrics.json", "history.csv", "predictions.npz", "train.log"):
            assert (run / name).is_file(), run / name
        assert sorted(p.name for p in run.iterdir()) == [
            "history.csv",
            "metrics.json",
            "predictions.npz",
            "train.log",
        ]
        assert (project / mmpaths.checkpoint_path(params, DATASET, method, seed)).is_file()
    assert (project / mmpaths.run_dir(params, DATASET, SWEEP_POINT, 0) / "metrics.json").is_file()
    assert not (project / mmpaths.run_dir(params, DATASET, SWEEP_POINT, 1)).exists()
    assert len(train_logs(project)) == len(METHODS) + 1  # one job per method, one for the sweep point
    assert len(list((project / "benchmarks" / "train").glob("**/*.tsv"))) == len(METHODS) + 1
    assert (project / "results" / DATASET / "summary.csv").is_file()
    machine = json.loads(
        (project / mmpaths.run_dir(params, DATASET, "concat", 0) / "metrics.json").read_text()
    )
    assert machine["machine"]["accelerator"] == "none (CPU)"

    tables = project / "paper_tables"
    for suffix in ("md", "csv", "tex"):
        assert (tables / f"{DATASET}_main.{suffix}").stat().st_size > 0
    assert (tables / f"{DATASET}_modality_curves.png").read_bytes().startswith(b"\x89PNG")
    assert (tables / f"{DATASET}_modality_curves.pdf").read_bytes().startswith(b"%PDF")
    assert (tables / f"{HISTORY_FIGURE}.png").is_file()
    sweep = (tables / f"{DATASET}_sweep_{SWEEP}.md").read_text()
    assert f"| 3 | {SWEEP_POINT} |" in sweep and "| 5 | mslr (default) |" in sweep, sweep
    assert (tables / f"{DATASET}_sweep_{SWEEP}.png").read_bytes().startswith(b"\x89PNG")
    assert "Measured on: " in (tables / f"{DATASET}_training_cost.md").read_text()
    assert "bootstrap Δ" in (tables / f"{DATASET}_significance.md").read_text()

    # (Outside the project: report.html is not part of the git or DVC content checked below.)
    report_html = project.parent / "report.html"
    sh(BIN / "snakemake", "--report", report_html, cwd=project)
    report = report_html.read_text()
    assert f"{DATASET}_main.csv" in report and f"{DATASET}_modality_curves.png" in report
    assert f"{DATASET}_sweep_{SWEEP}.png" in report and f"{DATASET}_training_cost.png" in report

    assert "Nothing to be done" in sh(BIN / "snakemake", "--dry-run", cwd=project)


def test_a_run_whose_outputs_were_deleted_resumes_from_the_checkpoints_tree(project):
    """What Snakemake leaves of a job it interrupted after the last checkpoint: no outputs."""
    params = mmcfg.load_params(project / "params.yaml")
    run = project / mmpaths.run_dir(params, DATASET, "mslr", 1)
    outputs = ("metrics.json", "history.csv", "predictions.npz")
    before = {name: (run / name).read_bytes() for name in outputs}
    for name in outputs:
        (run / name).unlink()
    sh(BIN / "snakemake", cwd=project)
    checkpoint = mmpaths.checkpoint_path(params, DATASET, "mslr", 1)
    assert f"resumed from {checkpoint} after epoch 1" in (run / "train.log").read_text()
    assert {name: (run / name).read_bytes() for name in outputs} == before


def test_a_smaller_matrix_removes_the_figures_it_no_longer_produces(project):
    """Snakemake path: the tables rule reruns and `mmbalance tables` removes MSLR's figure; with the
    matrix restored, the figure is back and nothing was trained."""
    tables = project / "paper_tables"
    full = {p.name: p.read_bytes() for p in tables.iterdir()}
    original = (project / "params.yaml").read_text()
    logs = train_logs(project)
    params = mmcfg.load_params(project / "params.yaml")
    write_params(
        project, {**params, "experiment": {**params["experiment"], "methods": ["concat"], "sweeps": []}}
    )
    try:
        sh(BIN / "snakemake", cwd=project)
        assert not list(tables.glob(f"{HISTORY_FIGURE}.*"))
        assert f"{HISTORY_FIGURE}.png" not in (tables / "outputs.txt").read_text()
    finally:
        (project / "params.yaml").write_text(original)
    sh(BIN / "snakemake", cwd=project)
    assert {p.name: p.read_bytes() for p in tables.iterdir()} == full
    assert train_logs(project) == logs


def test_editing_a_layout_or_published_number_rebuilds_only_the_tables(project):
    """The report package's files (layouts, published numbers) are inputs of the tables rule.

    The edit changes the content (Snakemake does not rerun for a newer file with the same
    checksum); the file's bytes and times are put back afterwards."""
    import mmbalance.report

    package = Path(mmbalance.report.__file__).parent
    layout = package / "layouts" / "lfm_table1.yaml"
    for edited in (layout, package / "paper_numbers" / "lfm_table1_main_comparison.csv"):
        before, text = edited.stat(), edited.read_bytes()
        try:
            edited.write_bytes(text + b"\n")
            counts = job_counts(sh(BIN / "snakemake", "--dry-run", cwd=project))
        finally:
            edited.write_bytes(text)
            os.utime(edited, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert counts == {"default": 1, "tables": 1, "total": 2}, (edited, counts)


def test_dvc_round_trip_retrains_only_what_changed(project):
    dvc = BIN / "dvc"
    remote = project.parent / "mmbalance-dvc-remote"  # where .dvc/config's default remote points
    sh("git", "init", "-q", cwd=project)
    sh("git", "add", "-A", cwd=project)
    sh("git", "commit", "-qm", "tiny project", cwd=project)

    # DVC records what Snakemake already built. data/ is deleted first so that the features
    # stage really runs; its new feature store is then newer than every run's metrics, and
    # still the train stage trains nothing (ancient() inputs + content-addressed paths).
    runs = sorted((project / "results").glob("**/metrics.json"))
    before = snapshot(runs)
    shutil.rmtree(project / "data")
    sh(dvc, "repro", cwd=project)
    features = project / mmpaths.feature_dir(mmcfg.load_params(project / "params.yaml"), DATASET)
    assert (features / "manifest.json").stat().st_mtime_ns > max(mtime for _, mtime in before.values())
    assert snapshot(runs) == before
    assert len(train_logs(project)) == len(METHODS) + 1
    assert "up to date" in sh(dvc, "status", cwd=project)
    shown = json.loads(sh(dvc, "metrics", "show", "--json", cwd=project, stdout_only=True))
    metrics = shown[""]["data"]["paper_tables/metrics.json"]["data"]
    assert set(metrics[DATASET]) == {*METHODS, SWEEP_POINT}
    plots = project.parent / "plots"
    sh(dvc, "plots", "show", "--out", plots, cwd=project)
    assert list(plots.glob("**/*.png")), "the image plot renders offline"

    # The check tests/test_dvc_lock.py runs on the committed lock, on this real one.
    assert lock_problems(project) == []
    table = project / "paper_tables" / f"{DATASET}_main.md"
    text = table.read_bytes()
    table.write_bytes(text + b"\n")
    assert lock_problems(project) == ["stage 'tables': paper_tables modified since dvc.lock was written"]
    table.write_bytes(text)

    sh("git", "add", "-A", cwd=project)
    sh("git", "commit", "-qm", "dvc repro", cwd=project)
    sh(dvc, "push", cwd=project)
    assert remote.is_dir()
    tables = {p.name: p.read_bytes() for p in (project / "paper_tables").iterdir()}
    ckpt = mmcfg.load_params(project / "params.yaml")["paths"]["checkpoints"]

    # A fresh clone pulls the results alone (no checkpoints, no data): repro trains nothing.
    clone = project.parent / "clone"
    sh("git", "clone", "-q", project, clone, cwd=project.parent)
    sh(dvc, "pull", "results", cwd=clone)
    assert (clone / "results").is_dir() and not (clone / ckpt).exists() and not (clone / "data").exists()
    output = sh(dvc, "repro", "--allow-missing", cwd=clone)
    assert "Running stage" not in output, output
    assert train_logs(clone) == []
    # ... and everything on request: checkpoints and data too, then repro runs no stage either.
    sh(dvc, "pull", cwd=clone)
    assert (clone / ckpt).is_dir() and (clone / "data").is_dir()
    assert "up to date" in sh(dvc, "status", cwd=clone)
    output = sh(dvc, "repro", cwd=clone)
    assert "Running stage" not in output, output
    assert train_logs(clone) == []
    assert {p.name: p.read_bytes() for p in (clone / "paper_tables").iterdir()} == tables

    # One method's hyper-parameter changes: only its runs (new run id) are trained.
    params = mmcfg.load_params(clone / "params.yaml")
    params["methods"]["mslr"] = {**params["methods"].get("mslr", {}), "coefficients": [0.8, 1.2]}
    write_params(clone, params)
    concat_runs = [clone / mmpaths.run_dir(params, DATASET, "concat", s) / "metrics.json" for s in SEEDS]
    untouched = snapshot(concat_runs)
    sh(dvc, "repro", cwd=clone)
    trained = {log.with_suffix("").relative_to(clone / "logs" / "train") for log in train_logs(clone)}
    expected = {
        mmpaths.run_dir(params, DATASET, method, 0).parent.relative_to(params["paths"]["results"])
        for method in ("mslr", SWEEP_POINT)  # the sweep's point reads methods.mslr too
    }
    assert trained == expected
    assert len(train_logs(clone)) == 2  # MSLR's job (every seed) and the sweep point's (its seed)
    assert snapshot(concat_runs) == untouched
    new_run_id = mmpaths.resolve_run(params, DATASET, "mslr", 0)["run_id"]
    assert new_run_id in (clone / "results" / DATASET / "summary.csv").read_text()
    assert (clone / mmpaths.checkpoint_path(params, DATASET, "mslr", 0)).is_file()
    assert "up to date" in sh(dvc, "status", cwd=clone)

    # DVC path: a smaller matrix reruns the tables stage, and MSLR's figure goes.
    write_params(
        clone, {**params, "experiment": {**params["experiment"], "methods": ["concat"], "sweeps": []}}
    )
    sh(dvc, "repro", cwd=clone)
    assert not list((clone / "paper_tables").glob(f"{HISTORY_FIGURE}.*"))
    assert len(train_logs(clone)) == 2


def test_a_clone_without_a_remote_fails_to_pull_and_rebuilds_everything(project):
    """Runs after the round trip (which committed the project): a clone whose default remote
    (../mmbalance-dvc-remote) does not exist, as for a user with no access to any remote."""
    isolated = project.parent / "isolated" / "clone"
    isolated.parent.mkdir()
    sh("git", "clone", "-q", project, isolated, cwd=project.parent)
    pulled = subprocess.run(
        [str(BIN / "dvc"), "pull"], cwd=isolated, env=ENV, capture_output=True, text=True, timeout=600
    )
    assert pulled.returncode != 0
    message = pulled.stdout + pulled.stderr
    assert "failed to pull data from the cloud" in message and "Is your cache up to date?" in message, message
    sh(BIN / "dvc", "repro", cwd=isolated, timeout=1200)
    assert len(train_logs(isolated)) == len(METHODS) + 1
    rebuilt = {p.name: p.read_bytes() for p in (isolated / "paper_tables").iterdir()}
    committed = {p.name: p.read_bytes() for p in (project / "paper_tables").iterdir()}
    assert rebuilt.keys() == committed.keys()
    # Every number is the same except the training cost's, which are wall times of the retraining.
    measured_times = {name for name in committed if name.startswith(f"{DATASET}_{COST_STEM}.")}
    assert measured_times
    assert {n: b for n, b in rebuilt.items() if n not in measured_times} == {
        n: b for n, b in committed.items() if n not in measured_times
    }
