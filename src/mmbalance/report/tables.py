"""Tables from the summary CSV: a generic :class:`Table` with Markdown, CSV and LaTeX renderers,
and the main comparison table with both evaluation protocols side by side.

Later tables (paper numbers beside ours) build a :class:`Table` and call :func:`write_table`.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmbalance.errors import MMBalanceError
from mmbalance.io import atomic_open
from mmbalance.report.aggregate import index_summary, mean_std, read_summary
from mmbalance.report.clips import clip_counts, missing_clip_note
from mmbalance.report.convergence import convergence_note, convergence_summary, marked, unconverged_seeds
from mmbalance.report.plan import DatasetFacts

TABLE_FORMATS = ("md", "csv", "tex")
"""The files of every table, in the order :func:`write_table` writes them."""
MAIN_STEM = "main"
"""The main table of a dataset is ``<dataset>_main``."""
NOT_RUN = "not run"
NOT_APPLICABLE = "—"
NO_STD = "–"

PROTOCOLS = {
    "val_selected": (
        "val-selected (ours)",
        "the epoch with the best validation fused accuracy; its test metrics are reported "
        "(no test-set selection).",
    ),
    "best_test": (
        "best-on-test (papers)",
        "the epoch with the best test fused accuracy, as in the LFM/MIE/AUG code; optimistic, because the "
        "test set selects the epoch.",
    ),
}
MAIN_METRICS = (("acc", "ACC"), ("map", "MAP"), ("macro_f1", "macro-F1"))
UNIMODAL = "unimodal"

_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
    "α": r"$\alpha$",
    "×": r"$\times$",
    "·": r"$\cdot$",
    "–": "--",
    "—": "---",
    "†": r"\textdagger{}",
    "‡": r"\textdaggerdbl{}",
}


@dataclass(frozen=True)
class Table:
    """A rendered-agnostic table: a header, rows of text cells, optional spanning column groups.

    Attributes:
        header: one label per column.
        rows: rows of cells, each as long as ``header``.
        groups: optional (label, span) pairs over the columns, left to right, spans summing to the
            number of columns; an empty label leaves those columns ungrouped (e.g. the row-label column).
        caption: one-line caption.
        notes: footnote lines (seeds, std convention, protocol definitions, caveats).
        label: LaTeX ``\\label`` key (empty: none).
        align: one of ``l``/``c``/``r`` per column; default: first column left, the others right.
        wide: LaTeX scales the tabular to the text width (``\\resizebox``, needs ``graphicx``) and
            uses a page-wide ``table*`` float.
    """

    header: Sequence[str]
    rows: Sequence[Sequence[str]]
    groups: Sequence[tuple[str, int]] = ()
    caption: str = ""
    notes: Sequence[str] = ()
    label: str = ""
    align: str = ""
    wide: bool = False

    def __post_init__(self) -> None:
        width = len(self.header)
        for row in self.rows:
            if len(row) != width:
                raise ValueError(f"table row {list(row)} has {len(row)} cells, header has {width}")
        if self.groups and sum(span for _, span in self.groups) != width:
            raise ValueError(f"column groups {list(self.groups)} do not span the {width} columns")
        if self.align and (len(self.align) != width or set(self.align) - set("lcr")):
            raise ValueError(f"align {self.align!r} must be one of l/c/r per column ({width} columns)")

    @property
    def alignment(self) -> str:
        """The column alignment, one of ``l``/``c``/``r`` per column."""
        return self.align or "l" + "r" * (len(self.header) - 1)

    def flat_header(self) -> list[str]:
        """Column labels prefixed with their group label (``group: label``), for one-row headers."""
        labels = []
        columns = iter(self.header)
        for group, span in self.groups or [("", len(self.header))]:
            for _ in range(span):
                column = next(columns)
                labels.append(f"{group}: {column}" if group else column)
        return labels


def render_markdown(table: Table) -> str:
    """GitHub-flavoured Markdown: bold caption, one-row header (groups prefixed), notes as a list."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.replace("|", r"\|") for cell in cells) + " |"

    rule = {"l": ":---", "c": ":---:", "r": "---:"}
    parts = [f"**{table.caption}**", ""] if table.caption else []
    parts += [line(table.flat_header()), line([rule[a] for a in table.alignment])]
    parts += [line(row) for row in table.rows]
    if table.notes:
        parts += [""] + [f"- {note}" for note in table.notes]
    return "\n".join(parts) + "\n"


def render_csv(table: Table) -> str:
    """CSV with the one-row (group-prefixed) header and the same cells as the Markdown."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(table.flat_header())
    writer.writerows(table.rows)
    return buffer.getvalue()


def latex_escape(text: str) -> str:
    """Escape LaTeX special characters; ``±`` becomes ``$\\pm$``, dashes become ``--``/``---``."""
    return "".join(_LATEX_ESCAPES.get(char, char) for char in text)


def render_latex(table: Table) -> str:
    """A booktabs ``table`` float: grouped header with ``\\cmidrule``, caption, label, notes below."""
    float_env = "table*" if table.wide else "table"
    packages = "booktabs, graphicx" if table.wide else "booktabs"
    lines = [
        f"% Generated by mmbalance; needs \\usepackage{{{packages}}}. Do not edit by hand.",
        f"\\begin{{{float_env}}}[t]",
        r"  \centering",
        r"  \small",
    ]
    if table.caption:
        lines.append(f"  \\caption{{{latex_escape(table.caption)}}}")
    if table.label:
        lines.append(f"  \\label{{{table.label}}}")
    if table.wide:
        lines.append(r"  \resizebox{\textwidth}{!}{%")
    lines += [f"  \\begin{{tabular}}{{{table.alignment}}}", r"    \toprule"]
    if table.groups:
        cells, rules, start = [], [], 1
        for group, span in table.groups:
            end = start + span - 1
            if group:
                cells.append(f"\\multicolumn{{{span}}}{{c}}{{{latex_escape(group)}}}")
                rules.append(f"\\cmidrule(lr){{{start}-{end}}}")
            else:
                cells += [""] * span
            start = end + 1
        lines += ["    " + " & ".join(cells) + r" \\", "    " + " ".join(rules)]
    lines += ["    " + " & ".join(latex_escape(c) for c in table.header) + r" \\", r"    \midrule"]
    lines += ["    " + " & ".join(latex_escape(c) for c in row) + r" \\" for row in table.rows]
    lines += [r"    \bottomrule", r"  \end{tabular}" + ("}" if table.wide else "")]
    if table.notes:
        lines += [r"  \par\smallskip", r"  {\footnotesize\raggedright"]
        lines += [f"    {latex_escape(note)}\\par" for note in table.notes]
        lines.append("  }")
    lines.append(f"\\end{{{float_env}}}")
    return "\n".join(lines) + "\n"


def write_table(table: Table, out_dir: Path, stem: str) -> list[Path]:
    """Write ``<stem>.md``, ``<stem>.csv`` and ``<stem>.tex`` (:data:`TABLE_FORMATS`) into ``out_dir``
    (temp + rename each)."""
    written = []
    renderers = {"md": render_markdown, "csv": render_csv, "tex": render_latex}
    for suffix in TABLE_FORMATS:
        path = Path(out_dir) / f"{stem}.{suffix}"
        render = renderers[suffix]
        with atomic_open(path, "w", newline="", encoding="utf-8") as handle:
            handle.write(render(table))
        written.append(path)
    return written


def format_pct(mean: float, std: float) -> str:
    """A fraction's ``mean ± std`` in percent with 2 decimals; a NaN mean or std renders as ``–``."""
    if math.isnan(mean):
        return NO_STD
    spread = NO_STD if math.isnan(std) else f"{100 * std:.2f}"
    return f"{100 * mean:.2f} ± {spread}"


def _check_ddof(row: Mapping[str, Any], ddof: int, source: Path) -> None:
    """Refuse a summary whose std was computed with another ddof than the one the table states."""
    _, std = mean_std([float(v) for v in row["values"].split(";")], ddof)
    if not (math.isnan(std) and math.isnan(row["std"])) and not math.isclose(std, row["std"], abs_tol=1e-12):
        raise MMBalanceError(
            f"{source}: std of {row['method']}/{row['head']}/{row['metric']} was not computed "
            f"with ddof={ddof}; re-run aggregate with the same ddof"
        )


def _main_rows(
    index: Mapping[tuple, Mapping[str, Any]],
    methods: Sequence[str],
    modalities: Sequence[str],
    ddof: int,
    source: Path,
    marks: Mapping[str, str],
) -> tuple[list[list[str]], list[Mapping[str, Any]]]:
    """The rows of the main table and the summary rows they used; ``marks`` go after the val-selected
    fused ACC of their method."""
    used: list[Mapping[str, Any]] = []
    width = len(PROTOCOLS) * (len(MAIN_METRICS) + len(modalities))

    def cell(method: str, protocol: str, head: str, metric: str) -> str:
        row = index.get((method, protocol, "test", head, metric))
        if row is None:
            return NOT_APPLICABLE
        _check_ddof(row, ddof, source)
        used.append(row)
        return format_pct(row["mean"], row["std"])

    table_rows = []
    for method in methods:
        ran = any(key[0] == method for key in index)
        convergence = unconverged_seeds(index, method)
        if method == UNIMODAL:
            entries = [(f"Unimodal-{i} ({m})", m, [m]) for i, m in enumerate(modalities, start=1)]
        else:
            entries = [(method, "fused", list(modalities))]
        for label, head, acc_heads in entries:
            if not ran:
                table_rows.append([label] + [NOT_RUN] * width)
                continue
            cells = [marked(label, convergence)]
            for protocol in PROTOCOLS:
                cells += [cell(method, protocol, head, metric) for metric, _ in MAIN_METRICS]
                if protocol == "val_selected" and head == "fused" and marks.get(method):
                    cells[-len(MAIN_METRICS)] += f" {marks[method]}"
                cells += [
                    cell(method, protocol, m, "acc") if m in acc_heads else NOT_APPLICABLE for m in modalities
                ]
            table_rows.append(cells)
    return table_rows, used


def _seed_note(used: Sequence[Mapping[str, Any]]) -> str:
    """Say how many seeds each method used (one phrase when all agree)."""
    per_method = {row["method"]: (row["n_seeds"], row["seeds"].replace(";", ", ")) for row in used}
    if not per_method:
        return "Seeds: no method has results yet."
    if len(set(per_method.values())) == 1:
        n, seeds = next(iter(per_method.values()))
        return f"Seeds: {n} per method ({seeds})."
    return "Seeds: " + "; ".join(f"{m}: {n} ({s})" for m, (n, s) in per_method.items()) + "."


def write_main_table(
    summary_csv: Path,
    out_dir: Path,
    dataset: str,
    methods: Sequence[str],
    modalities: Sequence[str],
    *,
    ddof: int = 1,
    marks: Mapping[str, str] | None = None,
    mark_notes: Sequence[str] = (),
    facts: DatasetFacts | None = None,
) -> list[Path]:
    """Write ``<dataset>_main.{md,csv,tex}``: every method under both protocols, side by side.

    Args:
        summary_csv: the summary written by :func:`mmbalance.report.aggregate.aggregate`.
        out_dir: where the three files go (temp + rename each).
        dataset: the dataset whose rows are tabulated.
        methods: row order; ``unimodal`` expands into one ``Unimodal-i (<modality>)`` row per modality,
            numbered in ``modalities`` order; a method without summary rows renders as "not run".
        modalities: the per-modality accuracy columns, in order.
        ddof: the std convention the summary was aggregated with (stated in the notes, checked
            against the per-seed values).
        marks: method → significance marks placed after its val-selected fused ACC
            (:mod:`mmbalance.report.significance_table`), explained by ``mark_notes``.
        facts: the dataset's words for its missing-clip footnote (needed when clips are missing).

    A last note says how many clips of each split were unavailable when the runs report missing
    clips (:mod:`mmbalance.report.clips`).

    Returns:
        The paths of the Markdown, CSV and LaTeX files.
    """
    summary_csv = Path(summary_csv)
    index = index_summary(read_summary(summary_csv), summary_csv, dataset)
    rows, used = _main_rows(index, methods, modalities, ddof, summary_csv, marks or {})
    columns = [label for _, label in MAIN_METRICS] + [f"Acc {m}" for m in modalities]
    run_ids = {row["method"]: row["run_id"] for row in used}
    std_kind = "sample std (ddof=1)" if ddof == 1 else f"std with ddof={ddof}"
    notes = [
        _seed_note(used),
        f"Cells: test-set mean ± {std_kind} over seeds, in percent; {NO_STD} where the std is undefined "
        f"(too few seeds); {NOT_APPLICABLE} = not applicable or not logged; {NOT_RUN} = no results.",
        "ACC, MAP, macro-F1: fused prediction (Unimodal rows: that modality's own model); "
        "Acc <modality>: that modality's head.",
        *(f"{label}: {definition}" for label, definition in PROTOCOLS.values()),
        *mark_notes,
    ]
    if run_ids:
        notes.append("Run ids: " + ", ".join(f"{m} {rid}" for m, rid in run_ids.items()) + ".")
    convergence = {m: c for m in run_ids if (c := unconverged_seeds(index, m)) is not None}
    notes += [note for note in (convergence_summary(convergence), convergence_note(convergence)) if note]
    missing = missing_clip_note(dataset, clip_counts(index, summary_csv), facts)
    if missing:
        notes.append(missing)
    table = Table(
        header=["Method", *columns, *columns],
        rows=rows,
        groups=[("", 1), *((label, len(columns)) for label, _ in PROTOCOLS.values())],
        caption=f"{dataset}: main comparison on the test set (%), both evaluation protocols",
        notes=notes,
        label=f"tab:{dataset}_{MAIN_STEM}",
    )
    return write_table(table, out_dir, f"{dataset}_{MAIN_STEM}")
