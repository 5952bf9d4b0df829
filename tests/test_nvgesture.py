"""NVGesture's prepare step on a tiny release in the real layout: list parsing and its errors, the
instructions for gated data, archive extraction, linking, missing and undecodable videos, validation."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import sys
from collections import Counter
from pathlib import Path

import pytest

from mmbalance.cli import main
from mmbalance.data.datasets import nvgesture
from mmbalance.data.datasets._base import read_split_rows
from mmbalance.data.download import md5_file
from mmbalance.errors import ConfigError, DataError
from mmbalance.registry import DATASETS
from tests.nvgesture_fixtures import EXPECTED, LIST_FILES, TEST, TRAIN, Gesture, data_config, make_release

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def small_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fixture release's list lengths stand in for the release's 1,050 / 482."""
    monkeypatch.setattr(nvgesture.NVGesture, "expected_lines", EXPECTED)


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_release(tmp_path_factory.mktemp("release"))


def prepare(root: Path, out: Path, **overrides) -> dict:
    path = DATASETS.get("nvgesture")().prepare(data_config(root, **overrides), out, 1, False)
    return json.loads(path.read_text())


def test_registered_with_three_clip_modalities_and_25_classes() -> None:
    plugin = DATASETS.get("nvgesture")()
    assert plugin.modalities == {"rgb": "clip", "depth": "clip", "flow": "clip"}
    assert plugin.class_names({}) == [f"class_{k:02d}" for k in range(1, 26)]
    assert nvgesture.NVGesture.expected_lines == {"train": 1050, "test": 482}


def test_list_line_format(tmp_path: Path) -> None:
    path = tmp_path / "nvgesture_train_correct_cvpr2016_v2.lst"
    path.write_text(
        "path:./Video_data/class_01/subject13_r0 depth:sk_depth:146:226 color:sk_color:146:226 "
        "duo_left:duo_left:170:263 label:1\n\n"
        "path:./Video_data/class_25/subject3_r2 depth:sk_depth:10:90 color:sk_color:11:91 "
        "duo_left:duo_left:1:2 label:25\n"
    )
    first, last = nvgesture.parse_list(path)
    assert first == nvgesture.Sample(
        clip_id="class_01_subject13_r0",
        label=0,
        subject="13",
        color=nvgesture.Segment("Video_data/class_01/subject13_r0/sk_color.avi", 146, 226),
        depth=nvgesture.Segment("Video_data/class_01/subject13_r0/sk_depth.avi", 146, 226),
    )
    assert (last.label, last.subject, last.color.start, last.depth.end) == (24, "3", 11, 90)


GOOD = "path:./Video_data/class_01/subject1_r0 depth:sk_depth:2:12 color:sk_color:2:12 label:1"


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (GOOD.replace(" label:1", ""), "no 'label:' field"),
        (GOOD.replace("label:1", "label:26"), "label 26 outside 1..25"),
        (GOOD.replace("label:1", "label:0"), "label 0 outside 1..25"),
        (GOOD.replace("label:1", "label:one"), "label 'one' is not an integer"),
        (GOOD.replace(" depth:sk_depth:2:12", ""), "no 'depth:' field"),
        (GOOD.replace("color:sk_color:2:12", "color:sk_color:2:x"), "color: start and end must be integers"),
        (GOOD.replace("color:sk_color:2:12", "color:sk_color:12:2"), "color: expected 0 <= start < end"),
        (GOOD.replace("depth:sk_depth:2:12", "depth:sk_depth:2"), "depth: expected '<video>:<start>:<end>'"),
        (GOOD + " garbage", "not key:value in 'garbage'"),
        (GOOD + " label:2", "repeated key in 'label:2'"),
        (GOOD.replace("./Video_data/", "./Other/"), "is not ./Video_data/<class>/<sample>"),
        (GOOD.replace("class_01/", "../"), "is not ./Video_data/<class>/<sample>"),
    ],
)
def test_a_malformed_line_names_the_file_and_line(tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "nvgesture_test_correct_v2.lst"
    path.write_text(GOOD.replace("subject1", "subject9") + "\n" + line + "\n")
    with pytest.raises(DataError) as err:
        nvgesture.parse_list(path)
    assert f"{path}: line 2" in str(err.value) and problem in str(err.value)


def test_without_the_release_it_says_what_to_request_and_where_to_put_it(tmp_path: Path) -> None:
    for root in (tmp_path / "absent", tmp_path):
        with pytest.raises(DataError) as err:
            prepare(root, tmp_path / "raw")
        message = str(err.value)
        assert nvgesture.REQUEST_PAGE in message and "nvGesture_v1.7z.001" in message
        assert str(root.resolve()) in message and "Video_data/" in message
        assert "nvgesture_train_correct_cvpr2016_v2.lst" in message and "7z x nvGesture_v1.7z.001" in message
    assert not (tmp_path / "raw" / "manifest.json").exists()


def test_the_message_reaches_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(
        [
            "download",
            "--params",
            str(REPO / "params.yaml"),
            "--dataset",
            "nvgesture",
            "--quiet",
            "--set",
            f"paths.data={tmp_path / 'data'}",
            "--set",
            f"data.nvgesture.root={tmp_path / 'nothing'}",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("mmbalance: error: nvgesture:") and nvgesture.REQUEST_PAGE in err


def fake_7z(folder: Path, source: Path | None, exit_code: int = 0) -> Path:
    """A stand-in ``7z`` on PATH: logs its arguments and copies ``source``'s content into ``-o<dir>``."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "7z"
    script.write_text(
        f"#!{sys.executable}\n"
        "import shutil, sys\n"
        f"open({str(folder / 'calls.txt')!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
        f"if {exit_code}:\n"
        "    sys.stderr.write('ERROR: Missing volume : nvGesture_v1.7z.002\\n'); sys.exit(2)\n"
        "out = next(a[2:] for a in sys.argv if a.startswith('-o'))\n"
        f"shutil.copytree({str(source)!r}, out, dirs_exist_ok=True, symlinks=True)\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return folder


def test_an_archive_without_7z_stops_with_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "nvGesture_v1.7z.001").write_bytes(b"7z")
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(DataError) as err:
        prepare(tmp_path / "root", tmp_path / "raw")
    assert f"cd {tmp_path / 'root'} && 7z x nvGesture_v1.7z.001" in str(err.value)
    assert "p7zip-full" in str(err.value)


@pytest.mark.usefixtures("small_lists")
def test_the_archive_is_extracted_with_7z(
    tmp_path: Path, release: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "nvGesture_v1.7z.001").write_bytes(b"7z")
    (root / "nvGesture_v1.7z.002").write_bytes(b"7z")
    tools = fake_7z(tmp_path / "bin", release)
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    manifest = prepare(root, tmp_path / "raw")
    assert manifest["counts"] == {"train": 8, "val": 2, "test": 3}
    assert (root / "Video_data" / TRAIN[0].folder / "sk_color.avi").is_file()
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(".")) == []  # staging removed
    (call,) = (tools / "calls.txt").read_text().splitlines()
    assert call.startswith("x -y -o") and call.endswith(str(root / "nvGesture_v1.7z.001"))
    prepare(root, tmp_path / "raw")  # extracted once: the second run finds Video_data/
    assert len((tools / "calls.txt").read_text().splitlines()) == 1


def test_a_failing_7z_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "nvGesture_v1.7z.001").write_bytes(b"7z")
    monkeypatch.setenv("PATH", str(fake_7z(tmp_path / "bin", None, exit_code=2)))
    with pytest.raises(DataError) as err:
        prepare(root, tmp_path / "raw")
    assert "Missing volume" in str(err.value) and "completely downloaded" in str(err.value)
    assert not (root / "Video_data").exists() and [p.name for p in root.iterdir()] == ["nvGesture_v1.7z.001"]


@pytest.mark.usefixtures("small_lists")
def test_prepare_links_the_videos_and_writes_splits(tmp_path: Path, release: Path) -> None:
    raw = tmp_path / "raw"
    manifest = prepare(release, raw)
    assert manifest["dataset"] == "nvgesture"
    assert manifest["counts"] == {"train": 8, "val": 2, "test": 3}
    assert manifest["listed"] == {"train": 8, "val": 2, "test": 3}
    assert manifest["missing"] == {"train": 0, "val": 0, "test": 0}
    assert manifest["lists_pinned"] is False
    for split, name in zip(("train", "test"), LIST_FILES["release"], strict=True):
        entry = manifest["lists"][split]
        md5 = md5_file(release / name)
        assert entry == {
            "file": f"lists/{name}",
            "md5": md5,
            "gestures": EXPECTED[split],
            "naming": "release",
        }
        assert (raw / entry["file"]).read_bytes() == (release / name).read_bytes()
    for gesture in [*TRAIN, *TEST]:
        for sensor in ("sk_color.avi", "sk_depth.avi"):
            linked = raw / "Video_data" / gesture.folder / sensor
            assert linked.is_symlink() and linked.resolve() == (
                release / "Video_data" / gesture.folder / sensor
            )
            assert f"Video_data/{gesture.folder}/{sensor}" in manifest["files"]
    # validation: 0.2 of each class of the training list, in list order
    val = read_split_rows(raw, "val", nvgesture.SPLIT_FIELDS)
    assert Counter(row["label"] for row in val) == {0: 1, 1: 1}
    train_ids = [row["clip_id"] for row in read_split_rows(raw, "train")]
    assert train_ids == [g.clip_id for g in TRAIN if g.clip_id not in {row["clip_id"] for row in val}]
    items = {item.clip_id: item for item in DATASETS.get("nvgesture")().items(raw, "test")}
    last = items[TEST[-1].clip_id]
    assert last.label == 1
    assert last.paths["rgb"] == last.paths["flow"] == raw / "Video_data" / TEST[-1].folder / "sk_color.avi"
    assert last.paths["depth"] == raw / "Video_data" / TEST[-1].folder / "sk_depth.avi"
    assert last.settings == {m: {"start": 10, "end": 20} for m in ("rgb", "depth", "flow")}
    assert (raw / "classes.txt").read_text().splitlines()[24] == "class_25"


@pytest.mark.usefixtures("small_lists")
def test_the_amss_list_names_are_accepted(tmp_path: Path) -> None:
    root = make_release(tmp_path / "root", naming="amss")
    manifest = prepare(root, tmp_path / "raw")
    assert manifest["lists"]["test"]["naming"] == "amss"
    assert manifest["lists"]["test"]["file"] == "lists/nvgesture_test_correct_v2.lst"


def test_a_list_of_the_wrong_length_stops(tmp_path: Path, release: Path) -> None:
    with pytest.raises(DataError) as err:
        prepare(release, tmp_path / "raw")
    assert "nvgesture_train_correct_cvpr2016_v2.lst: 10 gestures, expected 1050" in str(err.value)


@pytest.mark.usefixtures("small_lists")
def test_a_gesture_listed_twice_stops(tmp_path: Path) -> None:
    root = make_release(tmp_path / "root", test=[*TEST[:2], TRAIN[0]])
    with pytest.raises(DataError, match="class_01_subject1_r0 is listed twice \\(train, test\\)"):
        prepare(root, tmp_path / "raw")


@pytest.mark.usefixtures("small_lists")
def test_missing_videos_are_counted_never_dropped_silently(tmp_path: Path) -> None:
    root = make_release(tmp_path / "root")
    (root / "Video_data" / TEST[0].folder / "sk_depth.avi").unlink()
    shutil.rmtree(root / "Video_data" / TRAIN[9].folder)
    with pytest.raises(DataError) as err:
        prepare(root, tmp_path / "raw")
    message = str(err.value)
    assert "2 listed gestures have no video" in message and "max_missing allows 0" in message
    assert f"{TEST[0].folder}/sk_depth.avi" in message
    manifest = prepare(root, tmp_path / "raw", max_missing=2)
    split_of_9 = "val" if TRAIN[9].clip_id in manifest["missing_clips"]["val"] else "train"
    assert manifest["missing_clips"]["test"] == [TEST[0].clip_id]
    assert manifest["missing_clips"][split_of_9] == [TRAIN[9].clip_id]
    assert sum(manifest["missing"].values()) == 2 and manifest["missing"]["test"] == 1
    assert manifest["counts"]["test"] == 2 and manifest["listed"]["test"] == 3
    rows = read_split_rows(tmp_path / "raw", "test")
    assert TEST[0].clip_id not in {row["clip_id"] for row in rows}
    missing = (tmp_path / "raw" / "missing.csv").read_text().splitlines()
    assert f"test,{TEST[0].clip_id},Video_data/{TEST[0].folder}/sk_depth.avi,not found" in missing


@pytest.mark.usefixtures("small_lists")
def test_an_undecodable_video_stops_naming_it(tmp_path: Path) -> None:
    root = make_release(tmp_path / "root")
    bad = root / "Video_data" / TRAIN[3].folder / "sk_color.avi"
    bad.write_bytes(b"not a video" * 100)
    with pytest.raises(DataError) as err:
        prepare(root, tmp_path / "raw")
    assert str(bad) in str(err.value) and "delete its gesture folder" in str(err.value)


@pytest.mark.usefixtures("small_lists")
def test_subject_disjoint_validation(tmp_path: Path, release: Path) -> None:
    manifest = prepare(release, tmp_path / "raw", subject_disjoint=True, val_fraction=0.3)
    subjects = {
        s: {r["subject"] for r in read_split_rows(tmp_path / "raw", s, ["subject"])} for s in ("train", "val")
    }
    assert subjects["val"] and not subjects["train"] & subjects["val"]
    assert manifest["counts"]["val"] >= 3 and manifest["counts"]["train"] + manifest["counts"]["val"] == 10


def test_validation_rule_is_crema_d_s() -> None:
    samples = [
        nvgesture.Sample(
            g.clip_id, g.label - 1, str(g.subject), nvgesture.Segment("a", 0, 1), nvgesture.Segment("b", 0, 1)
        )
        for g in [
            Gesture(label, subject, r) for label in (1, 2, 3) for subject in range(1, 8) for r in (0, 1)
        ]
    ]
    cfg = {"val_fraction": 0.1, "val_seed": 3, "subject_disjoint": False}
    train, val = nvgesture.carve(samples, cfg, Path("x.lst"))
    assert Counter(s.label for s in val) == {0: 1, 1: 1, 2: 1}  # floor(0.1 * 14 + 0.5) per class
    assert nvgesture.carve(samples, cfg, Path("x.lst")) == (train, val)
    assert len(train) + len(val) == len(samples)
    nameless = [nvgesture.Sample("x", 0, "", samples[0].color, samples[0].depth)]
    with pytest.raises(DataError, match=re.escape("x.lst: sample x has no 'subject<number>'")):
        nvgesture.carve(nameless, {**cfg, "subject_disjoint": True}, Path("x.lst"))


def test_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape("unknown key 'data.nvgesture.rot'")):
        DATASETS.get("nvgesture")().prepare({"rot": "x"}, tmp_path, 1, False)
    with pytest.raises(ConfigError, match=re.escape("val_fraction: 1.5")):
        prepare(tmp_path, tmp_path / "raw", val_fraction=1.5)
    with pytest.raises(ConfigError, match=re.escape("'data.nvgesture.link': 'move'")):
        prepare(tmp_path, tmp_path / "raw", link="move")
