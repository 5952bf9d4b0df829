"""Missing-clip counts: raw manifest → feature store → metrics.json → summary → table footnotes."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from mmbalance import config, paths
from mmbalance.data.datasets._base import clip_availability
from mmbalance.data.extract import extract
from mmbalance.engine.loop import train
from mmbalance.errors import DataError, MMBalanceError
from mmbalance.pipeline import dataset_facts
from mmbalance.report.aggregate import CLIPS, aggregate, read_summary
from mmbalance.report.discrepancies import Pair, build_discrepancy_table
from mmbalance.report.headline import headline_metrics
from mmbalance.report.layouts import load_layouts
from mmbalance.report.paper_tables import build_paper_table
from mmbalance.report.protocol_table import build_protocol_table
from mmbalance.report.results import Results
from mmbalance.report.tables import render_csv, render_latex, render_markdown, write_main_table
from tests.test_paper_tables import RUNS, SEEDS, write_run

# --- the counts of a raw manifest, in each form the datasets write -------------------------------

COUNTS = {"train": 90, "val": 10, "test": 30}
EXPECTED = {
    "train": {"listed": 100, "found": 90, "missing": 10},
    "val": {"listed": 10, "found": 10, "missing": 0},
    "test": {"listed": 33, "found": 30, "missing": 3},
}


@pytest.mark.parametrize(
    "extra",
    [
        {
            "listed": {"train": 100, "val": 10, "test": 33},
            "missing": {"train": 10, "val": 0, "test": 3},
        },  # YouTube
        {
            "listed": {"train": 100, "val": 10, "test": 33},
            "missing_images": {"train": 10, "val": 0, "test": 3},
        },
        {"missing": {"train": 10, "val": 0, "test": 3}, "missing_clips": {"train": ["a"] * 10}},  # CREMA-D
    ],
    ids=["youtube", "imagetext", "cremad"],
)
def test_clip_availability_reads_every_manifest_form(extra: dict) -> None:
    assert clip_availability({"counts": COUNTS, **extra}, Path("m.json")) == EXPECTED


def test_a_generated_dataset_reports_nothing() -> None:
    assert clip_availability({"counts": COUNTS, "generator": "mmbalance"}, Path("m.json")) is None


@pytest.mark.parametrize(
    "extra",
    [
        {"listed": {"train": 80, "val": 10, "test": 33}},  # fewer listed than found
        {"listed": {"train": 100, "val": 10}},  # a split without a count
        {"listed": {"train": 100, "val": 10.0, "test": 33}},  # not an integer
        {"listed": {"train": 100, "val": 10, "test": 33}, "missing": {"train": 9, "val": 0, "test": 3}},
    ],
)
def test_unusable_counts_name_the_manifest(extra: dict) -> None:
    with pytest.raises(DataError, match=re.escape("raw/manifest.json: clip counts of split")):
        clip_availability({"counts": COUNTS, **extra}, Path("raw/manifest.json"))


# --- extraction and training carry them (a tiny generated dataset posing as one with gaps) ---------


def test_extract_and_train_copy_the_counts(tiny_workspace: Path, tmp_path: Path) -> None:
    params = config.load_params(tiny_workspace)
    raw = tmp_path / "raw"
    shutil.copytree(paths.raw_dir(params, "synthav"), raw)
    manifest = json.loads((raw / "manifest.json").read_text())
    found = manifest["counts"]
    gaps = {"train": 5, "val": 0, "test": 2}
    manifest["listed"] = {split: found[split] + gaps[split] for split in found}
    (raw / "manifest.json").write_text(json.dumps(manifest))
    store = tmp_path / "store"
    extract("synthav", raw, config.feature_config(params, "synthav"), store, workers=1, progress=False)
    expected = {s: {"listed": found[s] + gaps[s], "found": found[s], "missing": gaps[s]} for s in found}
    assert json.loads((store / "manifest.json").read_text())["clips"] == expected

    resolved = paths.resolve_run(params, "synthav", "concat", 0)
    resolved["train"]["epochs"] = 1
    train(resolved, store, tmp_path / "run", device="cpu", progress=False)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["clips"] == expected

    summary = tmp_path / "summary.csv"
    aggregate([tmp_path / "run" / "metrics.json"], summary)
    counts = {(r["split"], r["metric"]): r["mean"] for r in read_summary(summary) if r["protocol"] == CLIPS}
    assert counts[("train", "missing")] == 5 and counts[("test", "listed")] == found["test"] + 2
    md = write_main_table(
        summary, tmp_path, "synthav", ["concat"], ["audio", "video"], facts=dataset_facts("synthav")
    )[0].read_text()
    assert (
        f"- synthav: 5 of {found['train'] + 5} train and 2 of {found['test'] + 2} test clips were "
        "unavailable (missing at the source); numbers are on the remaining clips." in md
    )


def test_counts_that_disagree_with_the_split_files_stop_extraction(
    tiny_workspace: Path, tmp_path: Path
) -> None:
    params = config.load_params(tiny_workspace)
    raw = tmp_path / "raw"
    shutil.copytree(paths.raw_dir(params, "synthav"), raw)
    manifest = json.loads((raw / "manifest.json").read_text())
    manifest["missing"] = dict.fromkeys(manifest["counts"], 0)
    manifest["counts"]["val"] += 1
    (raw / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=r"manifest.json: counts \d+ clips in split 'val'"):
        extract(
            "synthav",
            raw,
            config.feature_config(params, "synthav"),
            tmp_path / "s",
            workers=1,
            progress=False,
        )


def test_synthav_stores_and_runs_carry_no_counts(tiny_workspace: Path) -> None:
    params = config.load_params(tiny_workspace)
    store = json.loads((paths.feature_dir(params, "synthav") / "manifest.json").read_text())
    assert "clips" not in store


# --- aggregation and the footnotes -----------------------------------------------------------------

KS_CLIPS = {
    "train": {"listed": 13318, "found": 12084, "missing": 1234},
    "val": {"listed": 1481, "found": 1481, "missing": 0},
    "test": {"listed": 2597, "found": 2396, "missing": 201},
}
KS_NOTE = (
    "kinetics_sounds: 1,234 of 13,318 train and 201 of 2,597 test clips were unavailable (deleted or private "
    "YouTube videos, or clips not obtained or not decodable); numbers are on the remaining clips."
)


def with_clips(run: Path, clips: dict | None) -> Path:
    path = run / "metrics.json"
    if clips is not None:
        path.write_text(json.dumps(json.loads(path.read_text()) | {"clips": clips}))
    return path


def fixture_results(tmp_path: Path, ks_clips: dict | None) -> Results:
    summaries, histories = {}, {}
    for dataset in ("synthav", "kinetics_sounds"):
        clips = ks_clips if dataset == "kinetics_sounds" else None
        runs = [
            (m, write_run(tmp_path / "results", dataset, m, s))
            for d, m in RUNS
            if d == dataset
            for s in SEEDS
        ]
        summaries[dataset] = tmp_path / f"{dataset}_summary.csv"
        aggregate([with_clips(run, clips) for _, run in runs], summaries[dataset])
        histories[dataset] = {}
        for method, run in runs:
            histories[dataset].setdefault(method, []).append(run / "history.csv")
    return Results(summaries, histories, facts={d: dataset_facts(d) for d in summaries})


def test_every_table_with_the_dataset_gets_the_footnote(tmp_path: Path) -> None:
    results = fixture_results(tmp_path, KS_CLIPS)
    assert results.clip_counts("kinetics_sounds") == KS_CLIPS and results.clip_counts("synthav") is None
    layouts = load_layouts()
    paper = build_paper_table(layouts["lfm_table1"], results, "val_selected", ["synthav", "kinetics_sounds"])
    assert paper.notes[-1] == KS_NOTE and sum(n == KS_NOTE for n in paper.notes) == 1
    paper = build_paper_table(layouts["lfm_table2"], results, "val_selected", ["synthav", "kinetics_sounds"])
    assert KS_NOTE not in paper.notes  # a table of VGGSound only
    pair = Pair("LFM", "matching loss", "lfm_h", "lfm_h_js", "align_loss: js_code", "code")
    discrepancy = build_discrepancy_table(
        results, ["synthav", "kinetics_sounds"], "val_selected", pairs=[pair]
    )
    assert discrepancy.notes[-1] == KS_NOTE
    protocol = build_protocol_table(results, ["lfm_lb"], {"synthav": ["audio", "video"]})
    assert KS_NOTE not in protocol.notes  # kinetics_sounds is not in it
    protocol = build_protocol_table(results, ["lfm_lb"], {"kinetics_sounds": ["audio", "video"]})
    assert protocol.notes[-1] == KS_NOTE
    assert f"- {KS_NOTE}\n" in render_markdown(protocol)
    assert "1,234 of 13,318 train and 201 of 2,597 test clips" in render_latex(protocol)
    assert "unavailable" not in render_csv(protocol)  # the CSV holds the cells only

    summary = tmp_path / "kinetics_sounds_summary.csv"
    md, csv_file, tex = write_main_table(
        summary,
        tmp_path / "out",
        "kinetics_sounds",
        ["lfm_lb"],
        ["audio", "video"],
        facts=dataset_facts("kinetics_sounds"),
    )
    assert md.read_text().rstrip("\n").endswith(f"- {KS_NOTE}")
    assert "201 of 2,597 test" in tex.read_text() and "unavailable" not in csv_file.read_text()
    assert all(row["protocol"] != CLIPS for row in read_summary(summary) if row["metric"] == "acc")
    assert CLIPS not in headline_metrics({"kinetics_sounds": summary})["kinetics_sounds"]["lfm_lb"]


def test_no_footnote_without_missing_clips(tmp_path: Path) -> None:
    complete = {
        split: {"listed": n, "found": n, "missing": 0} for split, n in (("train", 9), ("val", 1), ("test", 3))
    }
    results = fixture_results(tmp_path, complete)
    assert results.clip_counts("kinetics_sounds") == complete
    protocol = build_protocol_table(results, ["lfm_lb"], {"kinetics_sounds": ["audio", "video"]})
    assert not any("unavailable" in note for note in protocol.notes)
    summary = tmp_path / "kinetics_sounds_summary.csv"
    md = write_main_table(summary, tmp_path / "out", "kinetics_sounds", ["lfm_lb"], ["audio", "video"])[0]
    assert "unavailable" not in md.read_text()


def test_seeds_or_methods_with_different_counts_are_refused(tmp_path: Path) -> None:
    runs = [write_run(tmp_path / "a", "kinetics_sounds", "lfm_lb", seed) for seed in (0, 1)]
    other = {**KS_CLIPS, "test": {"listed": 2597, "found": 2397, "missing": 200}}
    files = [with_clips(runs[0], KS_CLIPS), with_clips(runs[1], other)]
    with pytest.raises(MMBalanceError, match="report different clip counts"):
        aggregate(files, tmp_path / "summary.csv")

    ks = [with_clips(write_run(tmp_path / "b", "kinetics_sounds", "lfm_lb", s), KS_CLIPS) for s in SEEDS]
    synth = [with_clips(write_run(tmp_path / "b", "synthav", "lfm_h", s), other) for s in SEEDS]
    mixed = [json.loads(p.read_text()) | {"dataset": "kinetics_sounds"} for p in synth]
    for path, data in zip(synth, mixed, strict=True):
        path.write_text(json.dumps(data))
    aggregate(ks + synth, tmp_path / "mixed.csv")
    with pytest.raises(DataError, match="lfm_h and lfm_lb report different clip counts"):
        Results({"kinetics_sounds": tmp_path / "mixed.csv"}).clip_counts("kinetics_sounds")


@pytest.mark.parametrize(
    ("clips", "message"),
    [
        ({"train": {"listed": 3, "found": 2}}, "'clips.train' must hold listed, found, missing"),
        ({"train": {"listed": 3, "found": 2, "missing": -1}}, "'clips.train.missing' = -1 is not a count"),
        ({"train": {"listed": 3, "found": 2, "missing": 2}}, "'clips.train': listed is not found + missing"),
        ({"train": [3, 2, 1]}, "'clips.train' is not an object"),
    ],
)
def test_corrupt_counts_name_the_metrics_file(tmp_path: Path, clips: dict, message: str) -> None:
    path = with_clips(write_run(tmp_path, "kinetics_sounds", "lfm_lb", 0), clips)
    with pytest.raises(DataError, match=re.escape(f"{path}: corrupt metrics file ({message}")):
        aggregate([path], tmp_path / "summary.csv")
