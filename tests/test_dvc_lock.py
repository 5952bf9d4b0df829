"""The committed dvc.lock is the one that produced the committed tables.

A fresh clone's `dvc pull` fetches what dvc.lock names, and `dvc repro` trusts it; a lock that
lags behind params.yaml or paper_tables/ makes both lie. So dvc.lock's recorded values of the
params.yaml keys of every stage must equal params.yaml's, and its recorded hash of the tables
stage's output must be that of paper_tables/ as committed. Whoever regenerates the tables
commits dvc.lock with them (README, "Regenerating the committed tables": `make workflow` runs
`dvc commit` after Snakemake).

Code dependencies are not compared: any commit to src/ would change their hashes without
changing a table. tests/test_workflow_e2e.py runs the same check on a real lock it makes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STAGES = ("features", "train", "tables")


def lock_problems(root: Path) -> list[str]:
    """What in ``root``'s dvc.lock disagrees with its params.yaml and tables folder (empty: none)."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    problems = []
    with Repo(str(root)) as repo:
        stages = {stage.name: stage for stage in repo.index.stages}
        for name in STAGES:
            stage = stages.get(name)
            if stage is None or not stage.outs or not all(out.hash_info for out in stage.outs):
                problems.append(f"dvc.lock records no outputs of stage '{name}'")
                continue
            for dep in stage.deps:
                changed = dep.workspace_status() if isinstance(dep, ParamsDependency) else {}
                for path, keys in changed.items():
                    problems.append(f"stage '{name}': {path} {dict(keys)} since dvc.lock was written")
        for out in stages["tables"].outs if "tables" in stages else []:
            for path, state in (out.workspace_status() if out.hash_info else {}).items():
                problems.append(f"stage 'tables': {path} {state} since dvc.lock was written")
    return problems


@pytest.mark.skipif(
    not (REPO / "dvc.lock").is_file(),
    reason="no dvc.lock committed yet: regenerate the tables with `make workflow` (it ends with "
    "`dvc commit`) and commit dvc.lock with paper_tables/",
)
def test_committed_lock_matches_params_and_tables() -> None:
    assert lock_problems(REPO) == []
