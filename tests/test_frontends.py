"""Audio front-ends (datasets.md §1): shapes, normalisation, an independent STFT, bad files."""

from __future__ import annotations

import json
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
import yaml
from scipy.signal import get_window

from mmbalance.config import apply_overrides, validate
from mmbalance.data.audio import read_wav
from mmbalance.data.extract import feature_shape
from mmbalance.errors import ConfigError, DataError
from mmbalance.paths import resolve_run
from mmbalance.registry import FRONTENDS
from tests.conftest import REPO

DEFAULT_SHAPES = {
    "pmr": (257, 299),
    "ogm_ge": (257, 188),
    "lfm_code": (257, 1250),
    "amss_ks": (257, 1003),
    "kaldi_fbank": (128, 1024),
    "ogm_vggsound": (129, 626),
}


def test_every_frontend_has_a_documented_default_shape() -> None:
    assert set(FRONTENDS.names()) == set(DEFAULT_SHAPES)


@pytest.fixture(scope="module")
def wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2.5 s at 16 kHz (shorter than every recipe's length, so tiling is exercised)."""
    rng = np.random.default_rng(0)
    t = np.arange(40000) / 16000
    x = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)
    path = tmp_path_factory.mktemp("audio") / "clip.wav"
    sf.write(path, x, 16000, subtype="PCM_16")
    return path


@pytest.mark.parametrize("name", sorted(DEFAULT_SHAPES))
def test_default_shape(name: str, wav: Path) -> None:
    frontend = FRONTENDS.get(name)
    assert frontend.output_shape() == DEFAULT_SHAPES[name]
    spec = frontend()(wav)
    assert spec.shape == DEFAULT_SHAPES[name]
    assert spec.dtype == np.float32 and np.isfinite(spec).all()


@pytest.mark.parametrize(("name", "seconds", "shape"), [("pmr", 3, (257, 299)), ("pmr", 10, (257, 1004))])
def test_pmr_shapes_of_the_papers(name: str, seconds: float, shape: tuple[int, int], wav: Path) -> None:
    frontend = FRONTENDS.get(name)
    assert frontend.output_shape(seconds) == shape
    assert frontend(seconds)(wav).shape == shape


def test_pmr_is_z_normalised(wav: Path) -> None:
    spec = FRONTENDS.get("pmr")(3.0)(wav).astype(np.float64)
    assert abs(spec.mean()) < 1e-4
    assert abs(spec.std() - 1.0) < 1e-4


def numpy_log_stft(x: np.ndarray, hop: int, center: bool, n_fft: int = 512) -> np.ndarray:
    """log(|STFT| + 1e-7) with a periodic Hann window, framed by hand (no librosa)."""
    if center:
        x = np.pad(x, n_fft // 2)
    starts = np.arange(1 + (x.size - n_fft) // hop) * hop
    frames = x[starts[:, None] + np.arange(n_fft)[None, :]] * get_window("hann", n_fft)
    return np.log(np.abs(np.fft.rfft(frames, axis=1)).T + 1e-7)


def test_pmr_matches_an_independent_computation(wav: Path) -> None:
    x, rate = sf.read(wav, dtype="float64")
    assert rate == 16000
    x = np.clip(np.tile(x, 2)[:48000], -1, 1)
    ref = numpy_log_stft(x, hop=159, center=False)
    ref = (ref - ref.mean()) / (ref.std() + 1e-9)
    np.testing.assert_allclose(FRONTENDS.get("pmr")(3.0)(wav), ref, atol=2e-3)


def test_ogm_ge_matches_an_independent_computation(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    path = tmp_path / "native.wav"
    sf.write(path, 0.2 * rng.standard_normal(22050), 22050, subtype="PCM_16")  # 1 s, no resampling
    x, _ = sf.read(path, dtype="float64")
    ref = numpy_log_stft(np.tile(x, 3), hop=353, center=True)
    np.testing.assert_allclose(FRONTENDS.get("ogm_ge")(3.0)(path), ref, atol=2e-3)


def test_ogm_vggsound_matches_an_independent_computation(wav: Path) -> None:
    """The reference doubles the clip until it lasts 10 s; the stored crop is its middle 5 s."""
    x, _ = sf.read(wav, dtype="float64")  # 2.5 s at 16 kHz: doubled twice to 10 s
    ten_seconds = np.tile(np.tile(x, 2), 2)
    assert ten_seconds.size == 160000
    ref = numpy_log_stft(np.clip(ten_seconds[40000:120000], -1, 1), hop=128, center=True, n_fft=256)
    assert ref.shape == (129, 626)
    np.testing.assert_allclose(FRONTENDS.get("ogm_vggsound")()(wav), ref, atol=2e-3)


def test_ogm_vggsound_crop_length(wav: Path) -> None:
    frontend = FRONTENDS.get("ogm_vggsound")
    assert frontend.output_shape(10.0) == (129, 1 + 160000 // 128)
    assert frontend(10.0)(wav).shape == (129, 1251)
    with pytest.raises(ConfigError, match="ogm_vggsound: seconds=12"):
        frontend(12.0)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # librosa.load imports audioread
def test_resampling_and_downmix_match_librosa_load(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    path = tmp_path / "stereo.wav"
    sf.write(path, 0.2 * rng.standard_normal((44100, 2)), 44100, subtype="PCM_16")
    ours = read_wav(path, 22050)
    ref, _ = librosa.load(path, sr=22050, mono=True)
    np.testing.assert_allclose(ours, ref, atol=1e-6)
    assert FRONTENDS.get("ogm_ge")(3.0)(path).shape == (257, 188)


def bad_files(good: Path, folder: Path) -> dict[str, Path]:
    data = good.read_bytes()
    files = {
        "truncated": data[: len(data) // 2],
        "header_only": data[:30],
        "garbage": b"this is not audio" * 50,
        "empty": b"",
    }
    out = {}
    for kind, content in files.items():
        out[kind] = folder / f"{kind}.wav"
        out[kind].write_bytes(content)
    out["missing"] = folder / "missing.wav"
    silent = folder / "no_samples.wav"
    sf.write(silent, np.zeros(0), 16000, subtype="PCM_16")
    out["no_samples"] = silent
    return out


@pytest.mark.parametrize("name", sorted(DEFAULT_SHAPES))
@pytest.mark.parametrize("kind", ["truncated", "header_only", "garbage", "empty", "missing", "no_samples"])
def test_bad_wav_raises_data_error_naming_the_file(name: str, kind: str, wav: Path, tmp_path: Path) -> None:
    path = bad_files(wav, tmp_path)[kind]
    with pytest.raises(DataError, match=path.name):
        FRONTENDS.get(name)()(path)


@pytest.mark.parametrize("kind", ["garbage", "empty"])
def test_a_file_that_is_no_audio_says_cannot_open(kind: str, wav: Path, tmp_path: Path) -> None:
    path = bad_files(wav, tmp_path)[kind]
    with pytest.raises(DataError, match=f"{path.name}: cannot open"):
        read_wav(path, 16000)


@pytest.mark.parametrize(
    ("dataset", "audio", "shape"),
    [
        ("kinetics_sounds", {"frontend": "kaldi_fbank", "seconds": 10.255}, (128, 1024)),
        ("vggsound", {"frontend": "ogm_vggsound", "seconds": 5.0}, (129, 626)),
        ("cremad", {"frontend": "kaldi_fbank", "seconds": 10.255}, (128, 1024)),
    ],
)
def test_documented_code_variants_validate_and_resolve(
    dataset: str, audio: dict, shape: tuple[int, int]
) -> None:
    """The variants params.yaml names in its comments are valid `--set` overrides of the paper preset."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    assert (
        f"frontend: {audio['frontend']}, seconds: {audio['seconds']:g}" in (REPO / "params.yaml").read_text()
    )
    params["profile"] = "paper"
    params["experiment"]["datasets"] = [dataset]
    params = apply_overrides(params, [f"features.paper.{dataset}.audio={json.dumps(audio)}"])
    validate(params)
    run = resolve_run(params, dataset, "concat", 0)
    assert run["features"]["audio"] == audio
    assert feature_shape("spectrogram", run["features"]["audio"]) == shape
