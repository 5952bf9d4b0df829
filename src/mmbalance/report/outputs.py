"""What ``mmbalance tables`` wrote last, so that what the current ``params.yaml`` no longer produces goes.

The tables folder is shared: ``paper_tables/`` is committed to git, other commands may write into it,
and the files of a method or dataset that left the matrix would otherwise stay beside the new ones,
looking current. So every ``mmbalance tables`` ends by comparing what it wrote with the record of
its previous run (``outputs.txt`` in the folder: one file name a line) and removes the files that
record lists and this run did not write; then it writes the new record. Files it never wrote are never
touched. The record is not one of the workflow's declared outputs on purpose: Snakemake deletes a
job's declared outputs before running it, and the record must survive until the command reads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mmbalance.io import atomic_open

RECORD = "outputs.txt"
HEADER = "# Files the last `mmbalance tables` wrote here; the next one removes those it no longer writes.\n"


def read_record(out_dir: Path) -> list[str]:
    """The file names the previous run recorded (none when there is no record)."""
    path = Path(out_dir) / RECORD
    if not path.is_file():
        return []
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def replace_outputs(out_dir: Path, written: Sequence[Path]) -> list[Path]:
    """Remove what the previous run recorded but this one did not write; record ``written`` (files in
    ``out_dir``). Returns the removed paths."""
    out_dir = Path(out_dir)
    names = sorted({Path(path).relative_to(out_dir).as_posix() for path in written})
    removed = []
    for name in sorted(set(read_record(out_dir)) - set(names)):
        stale = out_dir / name
        if "/" not in name and name != RECORD and stale.is_file():
            stale.unlink()
            removed.append(stale)
    with atomic_open(out_dir / RECORD, encoding="utf-8") as handle:
        handle.write(HEADER + "".join(f"{name}\n" for name in names))
    return removed
