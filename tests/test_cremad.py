"""CREMA-D: shipped reference files, a generated repository in the real layout served over file://,
verification, resuming, missing clips, local clones, extraction shapes and one training epoch."""

from __future__ import annotations

import codecs
import csv
import json
import os
from collections import Counter
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import yaml

from mmbalance.config import apply_overrides, data_config, feature_config, validate
from mmbalance.data.datasets import cremad
from mmbalance.data.datasets._base import sha256_file
from mmbalance.data.download import md5_file
from mmbalance.data.extract import extract, feature_shape
from mmbalance.data.generate import generate
from mmbalance.data.store import open_store
from mmbalance.engine.loop import train
from mmbalance.errors import ConfigError, DataError
from mmbalance.paths import feature_dir, raw_dir, resolve_run, run_dir
from mmbalance.registry import DATASETS
from tests.conftest import REPO

SENTENCES = ("DFA", "IEO", "TIE")
LEVELS = {"DFA": "XX", "IEO": "HI", "TIE": "XX"}
TEST_ACTOR = "1004"


def clip_name(actor: str, sentence: str, emotion: str) -> str:
    return f"{actor}_{sentence}_{emotion}_{LEVELS[sentence]}"


FIXTURE_SPLITS = {
    "train": [
        clip_name(actor, SENTENCES[k], emotion)
        for k, actor in enumerate(("1001", "1002", "1003"))
        for emotion in cremad.LABELS
    ],
    "test": [clip_name(TEST_ACTOR, "DFA", emotion) for emotion in cremad.LABELS],
}


def write_wav(path: Path, label: int, seed: int) -> None:
    """A 16 kHz mono PCM_16 clip (the AudioWAV format), 0.6 s of a label-dependent tone and noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(9600) / 16000
    wave = 0.3 * np.sin(2 * np.pi * (300 + 100 * label) * t) + 0.01 * rng.standard_normal(t.size)
    sf.write(path, wave.astype(np.float32), 16000, subtype="PCM_16")


def write_flv(path: Path, label: int) -> None:
    """A Flash video like VideoFlash/*.flv: FLV container, Sorenson H.263 (flv1) video at 30 fps for
    1.5 s and an MP3 audio stream; the picture's grey level encodes the label."""
    with av.open(str(path), "w", format="flv") as container:
        video = container.add_stream("flv1", rate=30)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        video.codec_context.thread_count = 1
        audio = container.add_stream("libmp3lame", rate=22050, layout="mono")
        for index in range(45):
            level = 40 * label + index
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), level, np.uint8), format="rgb24")
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        samples = (0.1 * np.sin(np.arange(33075) * 0.05)).astype(np.float32)[None]
        sound = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        sound.sample_rate = 22050
        container.mux(audio.encode(sound))
        container.mux(audio.encode(None))


def write_split(path: Path, clips: list[str], bom: bool) -> None:
    """An OGM-GE split file: ``clip,EMO`` rows with CRLF line ends, optionally with a UTF-8 BOM."""
    text = "".join(f"{clip},{clip.split('_')[2]}\r\n" for clip in clips)
    path.write_bytes((codecs.BOM_UTF8 if bom else b"") + text.encode())


def make_repo(root: Path) -> Path:
    """A CREMA-D repository in its real layout (AudioWAV/, VideoFlash/) with the fixture clips."""
    (root / "AudioWAV").mkdir(parents=True)
    (root / "VideoFlash").mkdir()
    for seed, clip in enumerate(FIXTURE_SPLITS["train"] + FIXTURE_SPLITS["test"]):
        label = cremad.LABELS.index(clip.split("_")[2])
        write_wav(root / cremad.media_path(clip, "audio"), label, seed)
        write_flv(root / cremad.media_path(clip, "video"), label)
    return root


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_repo(tmp_path_factory.mktemp("CREMA-D"))


def make_reference(folder: Path, repo: Path) -> cremad.Reference:
    """Reference files for the fixture: split CSVs (train with a BOM) and an LFS manifest of its media."""
    folder.mkdir(parents=True, exist_ok=True)
    write_split(folder / "train.csv", FIXTURE_SPLITS["train"], bom=True)
    write_split(folder / "test.csv", FIXTURE_SPLITS["test"], bom=False)
    rows = ["path\tsha256\tsize"]
    for path in sorted(repo.rglob("*.*")):
        rel = path.relative_to(repo).as_posix()
        rows.append(f"{rel}\t{sha256_file(path)}\t{path.stat().st_size}")
    (folder / "lfs.tsv").write_text("\n".join(rows) + "\n")
    return cremad.Reference(
        folder=folder,
        splits={s: (f"{s}.csv", md5_file(folder / f"{s}.csv")) for s in ("train", "test")},
        manifest=("lfs.tsv", md5_file(folder / "lfs.tsv")),
    )


@pytest.fixture
def reference(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> cremad.Reference:
    """The fixture's reference files stand in for the packaged ones."""
    ref = make_reference(tmp_path / "reference", repo)
    monkeypatch.setattr(cremad.CremaD, "reference", ref)
    return ref


def url_config(repo: Path, **changes: object) -> dict:
    """``data.cremad`` reading the fixture repository through a file:// URL template."""
    return {"source": "url", "url": repo.as_uri() + "/{path}", "val_fraction": 0.34, **changes}


def prepare(cfg: dict, out: Path) -> dict:
    generate("cremad", cfg, out, workers=1, progress=False)
    return json.loads((out / "manifest.json").read_text())


# --- the shipped reference files ------------------------------------------------------------------


def test_shipped_splits_and_manifest_match_the_spec() -> None:
    lists, lfs = cremad.load_reference(cremad.PACKAGED)  # md5 of all three files checked
    assert {split: len(clips) for split, clips in lists.items()} == {"train": 6698, "test": 744}
    everything = lists["train"] + lists["test"]
    assert Counter(cremad.LABELS[c.label] for c in everything) == {
        "ANG": 1271, "DIS": 1271, "FEA": 1271, "HAP": 1271, "SAD": 1271, "NEU": 1087,
    }  # fmt: skip
    assert len({c.actor for c in lists["test"]}) == 91  # the test set shares every actor (AGM#2)
    sizes = Counter()
    for rel, (digest, size) in lfs.items():
        sizes[rel.split("/")[0]] += size
        assert len(digest) == 64
    assert sizes == {"AudioWAV": 605_899_936, "VideoFlash": 2_443_021_141}
    assert len(lfs) == 2 * 7442
    assert all(cremad.media_path(c.clip_id, m) in lfs for c in everything for m in cremad.MEDIA)
    assert cremad.read_split_csv(cremad.PACKAGED.folder / "ogm_ge_train.csv")[0] == cremad.Clip(
        "1088_IOM_NEU_XX", 0, "1088"
    )


def test_validation_is_stratified_seeded_or_actor_disjoint() -> None:
    lists, _ = cremad.load_reference(cremad.PACKAGED)
    train, val = cremad.carve_validation(lists["train"], 0.1, 0, actor_disjoint=False)
    assert (len(train), len(val)) == (6028, 670)
    per_class = Counter(c.label for c in lists["train"])
    assert Counter(c.label for c in val) == {k: int(np.floor(0.1 * n + 0.5)) for k, n in per_class.items()}
    assert cremad.carve_validation(lists["train"], 0.1, 0, False) == (train, val)
    assert cremad.carve_validation(lists["train"], 0.1, 1, False)[1] != val
    order = {c.clip_id: i for i, c in enumerate(lists["train"])}
    assert [order[c.clip_id] for c in val] == sorted(order[c.clip_id] for c in val)
    train, val = cremad.carve_validation(lists["train"], 0.1, 0, actor_disjoint=True)
    assert not {c.actor for c in train} & {c.actor for c in val}
    assert len(val) >= 670 and len(train) + len(val) == 6698


def test_split_files_with_bom_crlf_and_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    write_split(path, ["1001_DFA_ANG_XX", "1002_IEO_NEU_HI"], bom=True)
    assert cremad.read_split_csv(path) == [
        cremad.Clip("1001_DFA_ANG_XX", 5, "1001"),
        cremad.Clip("1002_IEO_NEU_HI", 0, "1002"),
    ]
    path.write_bytes(b"1001_DFA_ANG_XX,SAD\r\n")
    with pytest.raises(DataError, match=r"train.csv: line 1: label SAD differs"):
        cremad.read_split_csv(path)
    path.write_bytes(b"1001_DFA_ANG_XX,ANG\r\nnot-a-clip,ANG\r\n")
    with pytest.raises(DataError, match=r"line 2: 'not-a-clip' is not a CREMA-D clip name"):
        cremad.read_split_csv(path)


def test_altered_reference_file_is_named(repo: Path, tmp_path: Path) -> None:
    ref = make_reference(tmp_path / "reference", repo)
    with open(ref.folder / "test.csv", "ab") as handle:
        handle.write(b"1001_DFA_SAD_XX,SAD\r\n")
    with pytest.raises(DataError, match=r"test.csv: md5 [0-9a-f]{32}, expected"):
        cremad.load_reference(ref)


def test_sources_and_settings() -> None:
    assert cremad.source_location({"source": "github"}).format(path="AudioWAV/1001_DFA_ANG_XX.wav") == (
        "https://media.githubusercontent.com/media/CheyneyComputerScience/CREMA-D/master/AudioWAV/1001_DFA_ANG_XX.wav"
    )
    assert cremad.source_location({"source": "gitlab"}).startswith(
        "https://gitlab.com/cs-cooper-lab/crema-d-mirror/"
    )
    with pytest.raises(ConfigError, match=r"data.cremad.url: .* must contain '\{path\}'"):
        cremad.source_location({"source": "url", "url": "https://example.org/"})
    with pytest.raises(DataError, match=r"data.cremad.root: '' is not a folder. Clone CREMA-D"):
        cremad.source_location({"source": "root", "root": ""})
    assert DATASETS.get("cremad")().class_names({}) == ["NEU", "HAP", "SAD", "FEA", "DIS", "ANG"]


# --- prepare: download, verify, resume, missing clips, local clones ---------------------------------


def test_download_layout_counts_and_manifest(repo: Path, reference: cremad.Reference, tmp_path: Path) -> None:
    out = tmp_path / "raw"
    manifest = prepare(url_config(repo), out)
    assert manifest["counts"] == {"train": 12, "val": 6, "test": 6}
    assert manifest["missing"] == {"train": 0, "val": 0, "test": 0}
    assert manifest["config"]["source"] == "url" and manifest["config"]["link"] == "symlink"
    assert manifest["label_map"] == {"NEU": 0, "HAP": 1, "SAD": 2, "FEA": 3, "DIS": 4, "ANG": 5}
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(manifest["files"]) == on_disk
    assert all(sha256_file(out / rel) == digest for rel, digest in manifest["files"].items())
    for split in ("train", "test"):  # the LFM/AUG annotations layout, byte for byte
        assert (out / "annotations" / f"{split}.csv").read_bytes() == (
            reference.folder / f"{split}.csv"
        ).read_bytes()
    plugin = DATASETS.get("cremad")()
    items = {split: plugin.items(out, split) for split in ("train", "val", "test")}
    assert [i.clip_id for i in items["test"]] == FIXTURE_SPLITS["test"]
    assert sorted(i.clip_id for i in items["train"] + items["val"]) == sorted(FIXTURE_SPLITS["train"])
    assert Counter(i.label for i in items["val"]) == dict.fromkeys(range(6), 1)
    for item in items["val"]:
        assert item.label == cremad.LABELS.index(item.clip_id.split("_")[2])
        assert item.paths["audio"] == out / "AudioWAV" / f"{item.clip_id}.wav"
        assert item.paths["video"].read_bytes() == (repo / "VideoFlash" / f"{item.clip_id}.flv").read_bytes()


def test_rerun_skips_verified_files_and_resumes_partial_ones(
    repo: Path, reference: cremad.Reference, tmp_path: Path
) -> None:
    out = tmp_path / "raw"
    prepare(url_config(repo), out)
    wav = out / "AudioWAV" / f"{FIXTURE_SPLITS['train'][0]}.wav"
    os.utime(wav, (1, 1))
    flv = out / "VideoFlash" / f"{FIXTURE_SPLITS['test'][2]}.flv"
    content = flv.read_bytes()
    flv.unlink()
    (out / "manifest.json").unlink()
    part = flv.with_name(flv.name + ".part")
    part.write_bytes(content[: len(content) // 2])  # an interrupted download
    prepare(url_config(repo), out)
    assert wav.stat().st_mtime == 1  # present and verified: not fetched again
    assert flv.read_bytes() == content and not part.exists()
    assert not list(out.rglob("*.part"))


def test_wrong_checksum_stops_naming_the_file(
    repo: Path, reference: cremad.Reference, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = "VideoFlash/" + FIXTURE_SPLITS["train"][4] + ".flv"
    lines = (reference.folder / "lfs.tsv").read_text().splitlines()
    lines = [
        f"{bad}\t{'0' * 64}\t{line.split(chr(9))[2]}" if line.startswith(bad) else line for line in lines
    ]
    (reference.folder / "lfs.tsv").write_text("\n".join(lines) + "\n")
    ref = replace(reference, manifest=("lfs.tsv", md5_file(reference.folder / "lfs.tsv")))
    monkeypatch.setattr(cremad.CremaD, "reference", ref)
    out = tmp_path / "raw"
    with pytest.raises(
        DataError,
        match=rf"{Path(bad).name}: downloaded file is wrong: sha256 [0-9a-f]{{64}}, expected 0{{64}}",
    ):
        prepare(url_config(repo), out)
    assert not (out / bad).exists() and not (out / f"{bad}.part").exists()
    assert not (out / "manifest.json").exists()


def test_missing_clips_stop_or_are_counted(repo: Path, reference: cremad.Reference, tmp_path: Path) -> None:
    source = tmp_path / "mirror"
    for folder in ("AudioWAV", "VideoFlash"):
        (source / folder).mkdir(parents=True)
        for path in (repo / folder).iterdir():
            os.symlink(path, source / folder / path.name)
    gone = FIXTURE_SPLITS["test"][3]
    (source / "VideoFlash" / f"{gone}.flv").unlink()
    with pytest.raises(
        DataError, match=rf"1 clips missing .*test 1; first: VideoFlash/{gone}.flv.*max_missing allows 0"
    ):
        prepare(url_config(source), tmp_path / "raw")
    manifest = prepare(url_config(source, max_missing=1), tmp_path / "raw")
    with pytest.raises(
        DataError, match=r"AudioWAV/1001_DFA_NEU_XX.wav not found at file://.*/empty/\{path\}"
    ):
        prepare(url_config(tmp_path / "empty"), tmp_path / "raw-empty")  # a wrong source stops at once
    assert manifest["missing"] == {"train": 0, "val": 0, "test": 1}
    assert manifest["missing_clips"]["test"] == [gone]
    assert manifest["counts"]["test"] == 5
    assert gone not in {i.clip_id for i in DATASETS.get("cremad")().items(tmp_path / "raw", "test")}


def test_local_clone_is_linked_not_copied(repo: Path, reference: cremad.Reference, tmp_path: Path) -> None:
    clip = FIXTURE_SPLITS["train"][0]
    out = tmp_path / "raw"
    prepare({"source": "root", "root": str(repo), "val_fraction": 0.34}, out)
    link = out / "AudioWAV" / f"{clip}.wav"
    assert link.is_symlink() and link.resolve() == (repo / "AudioWAV" / f"{clip}.wav").resolve()
    out = tmp_path / "raw-hard"
    prepare({"source": "root", "root": str(repo), "link": "hardlink", "val_fraction": 0.34}, out)
    assert os.path.samefile(out / "AudioWAV" / f"{clip}.wav", repo / "AudioWAV" / f"{clip}.wav")


def test_clone_without_lfs_content_says_what_to_do(
    repo: Path, reference: cremad.Reference, tmp_path: Path
) -> None:
    clone = tmp_path / "clone"
    for folder in ("AudioWAV", "VideoFlash"):
        (clone / folder).mkdir(parents=True)
        for path in (repo / folder).iterdir():
            digest, size = sha256_file(path), path.stat().st_size
            pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{digest}\nsize {size}\n"
            (clone / folder / path.name).write_text(pointer)
    with pytest.raises(DataError, match=r"clone/AudioWAV/.*\.wav: a Git LFS pointer.*git lfs pull"):
        prepare({"source": "root", "root": str(clone), "val_fraction": 0.34}, tmp_path / "raw")


# --- params, extraction and training ---------------------------------------------------------------


def cremad_params(root: Path, repo: Path, profile: str) -> dict:
    """The repository's params.yaml with experiment.datasets = [cremad], paths under ``root``."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    overrides = {
        "profile": profile,
        "experiment.datasets": ["cremad"],
        "experiment.seeds": [0],
        "paths.data": str(root / "data"),
        "paths.results": str(root / "results"),
        "paths.checkpoints": str(root / "checkpoints"),
        "data.cremad.source": "url",
        "data.cremad.url": repo.as_uri() + "/{path}",
        "data.cremad.val_fraction": 0.34,
    }
    params = apply_overrides(params, [f"{k}={json.dumps(v)}" for k, v in overrides.items()])
    validate(params)
    return params


def test_params_blocks_validate_and_resolve(repo: Path, tmp_path: Path) -> None:
    for profile in ("embedded", "paper"):
        params = cremad_params(tmp_path, repo, profile)
        run = resolve_run(params, "cremad", "lfm_h", 0)
        assert run["data"]["source"] == "url" and run["features"]["audio"]["frontend"] == "pmr"
    assert run["train"]["optimizer"] == {"name": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 1.0e-4}
    assert run["train"]["scheduler"] == {"name": "step", "step_size": 70, "gamma": 0.1}
    assert (run["train"]["epochs"], run["train"]["batch_size"]) == (200, 64)
    # frames stored large enough to crop from; training crops and flips them to 224 (the loaders' transform)
    assert run["features"]["video"] == {"frames": 1, "rate": 1.0, "size": 256}
    assert run["train"]["augment"] == {"size": 224}
    assert feature_shape("spectrogram", run["features"]["audio"]) == (257, 299)  # the papers' text
    assert feature_shape("spectrogram", {"frontend": "ogm_ge", "seconds": 3.0}) == (257, 188)  # variants
    assert feature_shape("spectrogram", {"frontend": "lfm_code", "seconds": 20.0}) == (257, 1250)
    repo_params = yaml.safe_load((REPO / "params.yaml").read_text())
    assert repo_params["data"]["cremad"] == {k: v for k, v in vars(cremad.Config()).items()}
    assert "cremad" not in repo_params["experiment"]["datasets"]
    for key, value, message in (
        ("data.cremad.sorce", "github", "unknown key 'data.cremad.sorce'"),
        ("data.cremad.source", "dropbox", "'data.cremad.source': 'dropbox' is not one of"),
        ("data.cremad.val_fraction", "a", "'data.cremad.val_fraction': expected float"),
    ):
        with pytest.raises(ConfigError, match=message):
            validate(apply_overrides(params, [f"{key}={value}"]))


def test_paper_shapes_and_one_training_epoch(repo: Path, reference: cremad.Reference, tmp_path: Path) -> None:
    params = cremad_params(tmp_path, repo, "paper")
    tiny = {
        "epochs": 1,
        "batch_size": 8,
        "eval_batch_size": 16,
        "encoders": {
            "audio": {"name": "resnet10", "width": 4, "input_size": [32, 32]},
            "video": {"name": "resnet10", "width": 4, "input_size": [32, 32]},
        },
    }
    params = apply_overrides(params, [f"train.paper.cremad.{k}={json.dumps(v)}" for k, v in tiny.items()])
    validate(params)
    generate("cremad", data_config(params, "cremad"), raw_dir(params, "cremad"), workers=1, progress=False)
    extract(
        "cremad", raw_dir(params, "cremad"), feature_config(params, "cremad"), feature_dir(params, "cremad"),
        workers=1, progress=False,
    )  # fmt: skip
    store = open_store(feature_dir(params, "cremad"), verify=True)
    assert store.class_names == list(cremad.LABELS)
    for split, count in {"train": 12, "val": 6, "test": 6}.items():
        data = store.split(split)
        assert data.arrays["audio"].shape == (count, 257, 299) and data.arrays["audio"].dtype == np.float16
        assert (
            data.arrays["video"].shape == (count, 1, 3, 256, 256) and data.arrays["video"].dtype == np.uint8
        )
    test = store.split("test")
    # the one frame is the centre 1-fps frame (t = 1 s of 1.5 s: grey 40·label + 30)
    for row, label in enumerate(test.labels):
        assert abs(float(test.arrays["video"][row].mean()) - (40 * label + 30)) < 3
    resolved = resolve_run(params, "cremad", "lfm_h", 0)
    metrics = train(
        resolved, feature_dir(params, "cremad"), run_dir(params, "cremad", "lfm_h", 0), "cpu", False
    )
    assert metrics["epochs_trained"] == 1 and metrics["dataset"] == "cremad"
    with open(run_dir(params, "cremad", "lfm_h", 0) / "history.csv", newline="") as handle:
        history = list(csv.DictReader(handle))
    assert len(history) == 1 and np.isfinite(float(history[0]["train_loss"]))
