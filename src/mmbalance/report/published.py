"""The published numbers (``report/paper_numbers/*.csv``, shipped with the package), loaded and checked.

Each CSV row is one published cell: ``paper,table,method,dataset,setting,metric,value,std,note``. A
metric written ``ACC (inferred: …)`` is split into the metric ``ACC`` and the caveat in parentheses,
so layouts name metrics by their short label and tables still print the caveat. The value keeps its
text as printed in the paper (its precision) besides the number.
"""

from __future__ import annotations

import csv
import functools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mmbalance.errors import DataError

COLUMNS = ("paper", "table", "method", "dataset", "setting", "metric", "value", "std", "note")
_METRIC = re.compile(r"^(?P<metric>[^()]+?)\s*(?:\((?P<caveat>.*)\))?$")

Key = tuple[str, str, str, str]  # (method, dataset, setting, metric)


@dataclass(frozen=True)
class Published:
    """One published cell of a paper table."""

    source: str
    paper: str
    table: str
    method: str
    dataset: str
    setting: str
    metric: str
    value: float
    text: str
    std: float | None
    std_text: str
    note: str
    metric_caveat: str

    @property
    def key(self) -> Key:
        return (self.method, self.dataset, self.setting, self.metric)

    def display(self) -> str:
        """The number as printed in the paper, with its ``± std`` where the paper gives one."""
        return f"{self.text} ± {self.std_text}" if self.std_text else self.text


def _number(path: Path, line: int, column: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{path}: line {line}: '{column}' = {text!r} is not a number") from None
    if not math.isfinite(value):
        raise DataError(f"{path}: line {line}: '{column}' = {text!r} is not finite")
    return value


def read_published(path: Path) -> dict[Key, Published]:
    """One paper-number CSV, keyed by (method, dataset, setting, metric).

    Raises:
        DataError: wrong columns, a non-numeric value or std, an empty method/dataset/metric, or a
            key given twice.
    """
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise DataError(f"{path}: columns {reader.fieldnames}, expected {list(COLUMNS)}")
        cells: dict[Key, Published] = {}
        for row in reader:
            line = reader.line_num
            for column in ("paper", "table", "method", "dataset", "metric", "value"):
                if not row[column].strip():
                    raise DataError(f"{path}: line {line}: empty '{column}'")
            match = _METRIC.match(row["metric"].strip())
            if match is None:
                raise DataError(f"{path}: line {line}: cannot read metric {row['metric']!r}")
            std_text = row["std"].strip()
            cell = Published(
                source=path.stem,
                paper=row["paper"],
                table=row["table"],
                method=row["method"],
                dataset=row["dataset"],
                setting=row["setting"],
                metric=match["metric"],
                value=_number(path, line, "value", row["value"].strip()),
                text=row["value"].strip(),
                std=_number(path, line, "std", std_text) if std_text else None,
                std_text=std_text,
                note=row["note"].strip(),
                metric_caveat=(match["caveat"] or "").strip(),
            )
            if cell.key in cells:
                raise DataError(f"{path}: line {line}: {'/'.join(cell.key)} given twice")
            cells[cell.key] = cell
    return cells


def shipped_dir() -> Path:
    """The folder of the paper-number CSVs inside the installed package."""
    return Path(str(resources.files("mmbalance.report").joinpath("paper_numbers")))


@functools.cache
def shipped() -> Mapping[str, Mapping[Key, Published]]:
    """Every shipped CSV by file stem (e.g. ``lfm_table1_main_comparison``)."""
    return {path.stem: read_published(path) for path in sorted(shipped_dir().glob("*.csv"))}
