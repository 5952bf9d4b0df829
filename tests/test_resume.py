"""Every registered method, enrolled automatically: a run killed after an epoch's checkpoint and
started again ends bit-identical to an uninterrupted run (history, metrics, method state, weights).

This is what makes a method's ``state_dict`` complete: anything it keeps between epochs (running
averages, prototypes, projection matrices, stage counters, model snapshots) and forgets to save
shows up here as a diverging history after the resume. Methods whose state only matters under
particular options also test those in their own files, with the same helper.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mmbalance.registry import METHODS
from tests.resume_check import train_killed_and_resumed


@pytest.mark.parametrize("name", METHODS.names())
def test_killed_run_resumes_bit_identical(
    name: str, tiny_workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train_killed_and_resumed(tiny_workspace, tmp_path, monkeypatch, name, kill_after=0)
