"""3-D clip encoders: Inception-I3D, the small cnn3d and the ``clip`` adapter (methods.md §C4)."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F

from mmbalance.errors import ConfigError
from mmbalance.models.encoders.adapters import build_encoder
from mmbalance.models.encoders.clip import load_pretrained
from mmbalance.models.encoders.i3d import MaxPool3dSame, Unit3d, i3d, same_padding

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def clip(cfg: dict) -> torch.nn.Module:
    return build_encoder("clip", cfg)


def uint8_clip(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


# --- TF "SAME" padding -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"),
    [
        (32, 7, 2, (2, 3)),  # out 16: 15·2 + 7 − 32 = 5, the odd one after
        (8, 7, 2, (2, 3)),  # out 4: 3·2 + 7 − 8 = 5
        (10, 3, 2, (0, 1)),  # out 5: 4·2 + 3 − 10 = 1
        (9, 3, 2, (1, 1)),  # out 5: 4·2 + 3 − 9 = 2
        (4, 2, 2, (0, 0)),  # out 2: 1·2 + 2 − 4 = 0
        (5, 3, 1, (1, 1)),
        (5, 1, 1, (0, 0)),
        (1, 3, 2, (1, 1)),  # out 1: 0 + 3 − 1 = 2
    ],
)
def test_same_padding_hand_computed(size: int, kernel: int, stride: int, expected: tuple[int, int]) -> None:
    assert same_padding(size, kernel, stride) == expected


def test_unit_convolves_the_input_padded_by_hand() -> None:
    """A 7×7×7 stride-2 unit on (T, H, W) = (5, 10, 9): pads (2, 3) (2, 3) (3, 3) by hand, output ⌈n/2⌉."""
    torch.manual_seed(0)
    unit = Unit3d(2, 4, 7, 2).eval()
    x = torch.randn(1, 2, 5, 10, 9)
    # T: out 3, 2·2 + 7 − 5 = 6 → (3, 3); H: out 5, 4·2 + 7 − 10 = 5 → (2, 3); W: 8 + 7 − 9 = 6 → (3, 3)
    padded = F.pad(x, (3, 3, 2, 3, 3, 3))
    expected = torch.relu(unit.bn(F.conv3d(padded, unit.conv3d.weight, stride=2)))
    out = unit(x)
    assert out.shape == (1, 4, 3, 5, 5)
    torch.testing.assert_close(out, expected)
    assert unit.bn.eps == 1e-3 and unit.bn.momentum == 0.01 and unit.conv3d.bias is None


def test_same_max_pool_never_takes_the_padding() -> None:
    """All inputs −1: zero padding would put 0 on the borders; "SAME" pooling keeps −1 everywhere."""
    out = MaxPool3dSame(3, 2)(torch.full((1, 1, 4, 5, 5), -1.0))
    assert out.shape == (1, 1, 2, 3, 3)
    assert torch.equal(out, torch.full_like(out, -1.0))


# --- Inception-I3D -------------------------------------------------------------------------------
@pytest.mark.parametrize(("channels", "normalization"), [(3, "imagenet"), (2, "flow"), (1, "unit")])
def test_i3d_gives_a_1024_feature_for_each_input_kind(channels: int, normalization: str) -> None:
    encoder = clip({"name": "i3d", "in_channels": channels, "normalization": normalization}).eval()
    with torch.no_grad():
        feature = encoder(uint8_clip((1, channels, 8, 32, 32)))
    assert encoder.out_dim == 1024 and feature.shape == (1, 1024)
    assert torch.isfinite(feature).all()


def i3d_parameters_by_hand(in_channels: int) -> int:
    """Inception-I3D without logits from the published layer table (Carreira & Zisserman Fig. 3,
    Inception-v1's channels): ``k³·c_in·c_out`` per convolution (no bias) plus BatchNorm's γ, β."""

    def unit(c_in: int, c_out: int, k: int) -> int:
        return k**3 * c_in * c_out + 2 * c_out

    total = unit(in_channels, 64, 7) + unit(64, 64, 1) + unit(64, 192, 3)
    c_in = 192
    for c0, c1a, c1b, c2a, c2b, c3 in [
        (64, 96, 128, 16, 32, 32),
        (128, 128, 192, 32, 96, 64),
        (192, 96, 208, 16, 48, 64),
        (160, 112, 224, 24, 64, 64),
        (128, 128, 256, 24, 64, 64),
        (112, 144, 288, 32, 64, 64),
        (256, 160, 320, 32, 128, 128),
        (256, 160, 320, 32, 128, 128),
        (384, 192, 384, 48, 128, 128),
    ]:
        total += unit(c_in, c0, 1) + unit(c_in, c1a, 1) + unit(c1a, c1b, 3)
        total += unit(c_in, c2a, 1) + unit(c2a, c2b, 3) + unit(c_in, c3, 1)
        c_in = c0 + c1b + c2b + c3
    assert c_in == 1024
    return total


@pytest.mark.parametrize("channels", [1, 2, 3])
def test_i3d_parameter_count(channels: int) -> None:
    count = sum(p.numel() for p in i3d(channels).parameters())
    assert count == i3d_parameters_by_hand(channels)
    if channels == 3:  # the paper's Table 1: 12M for one I3D stream (12.7M with 400 Kinetics logits)
        assert count + 1024 * 400 + 400 == pytest.approx(12.7e6, rel=0.01)


def test_i3d_stages_downsample_as_published() -> None:
    trunk = i3d(3)
    x = torch.randn(2, 3, 8, 32, 32)
    shapes = [tuple(trunk.stem(x).shape)]
    x = trunk.stem(x)
    for stage in trunk.stages:
        x = stage(x)
        shapes.append(tuple(x.shape))
    # conv 1a /2 in T, H, W; pool 2a /2 in H, W; stage 1 keeps; pools 3a (H, W), 4a and 5a (T, H, W)
    assert shapes == [
        (2, 64, 4, 8, 8),
        (2, 192, 4, 8, 8),
        (2, 480, 4, 4, 4),
        (2, 832, 2, 2, 2),
        (2, 1024, 1, 1, 1),
    ]
    assert trunk.stage_channels == [192, 480, 832, 1024]


# --- pretrained weights --------------------------------------------------------------------------
def pytorch_i3d_checkpoint(in_channels: int) -> dict[str, torch.Tensor]:
    """A state dict in pytorch-i3d's names (top-level end points, ``logits`` included), random values."""
    torch.manual_seed(123)
    trunk = i3d(in_channels)
    state = {
        trunk.checkpoint_key(k): torch.randn_like(v.float()).to(v.dtype)
        for k, v in trunk.state_dict().items()
    }
    state["logits.conv3d.weight"] = torch.randn(400, 1024, 1, 1, 1)
    state["logits.conv3d.bias"] = torch.randn(400)
    return state


def test_checkpoint_names_are_pytorch_i3d_names() -> None:
    names = set(pytorch_i3d_checkpoint(3))
    for expected in (
        "Conv3d_1a_7x7.conv3d.weight",
        "Conv3d_1a_7x7.bn.running_var",
        "Conv3d_2c_3x3.bn.bias",
        "Mixed_3b.b0.conv3d.weight",
        "Mixed_4f.b2b.bn.weight",
        "Mixed_5c.b3b.conv3d.weight",
    ):
        assert expected in names
    assert not any(n.startswith(("stem.", "stages.")) for n in names)


def test_rgb_checkpoint_loads_fully_and_ignores_the_logits(tmp_path) -> None:
    state = pytorch_i3d_checkpoint(3)
    path = tmp_path / "rgb_imagenet.pt"
    torch.save(state, path)
    encoder = clip({"name": "i3d", "in_channels": 3, "normalization": "imagenet", "pretrained": str(path)})
    for key, value in encoder.trunk.state_dict().items():
        assert torch.equal(value, state[encoder.trunk.checkpoint_key(key)]), key


def test_depth_encoder_keeps_a_random_first_convolution_and_reports_it(tmp_path, caplog) -> None:
    """The 1-channel depth I3D from ``rgb_imagenet.pt``: the 3-channel ``Conv3d_1a_7x7`` weight stays
    at its random initialisation and is logged; every other tensor is the checkpoint's."""
    state = pytorch_i3d_checkpoint(3)
    path = tmp_path / "rgb_imagenet.pt"
    torch.save(state, path)
    cfg = {"name": "i3d", "in_channels": 1, "normalization": "unit"}
    torch.manual_seed(7)
    random = clip(cfg).trunk.state_dict()
    torch.manual_seed(7)
    with caplog.at_level(logging.INFO, logger="mmbalance.models"):
        encoder = clip({**cfg, "pretrained": str(path)})
    first = "stem.Conv3d_1a_7x7.conv3d.weight"
    for key, value in encoder.trunk.state_dict().items():
        expected = random[key] if key == first else state[encoder.trunk.checkpoint_key(key)]
        assert torch.equal(value, expected), key
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Conv3d_1a_7x7.conv3d.weight" in warnings[0]
    assert "(64, 3, 7, 7, 7)" in warnings[0] and "(64, 1, 7, 7, 7)" in warnings[0]
    assert any("logits.conv3d.weight" in r.getMessage() for r in caplog.records)


def test_tensors_missing_from_the_file_are_reported(tmp_path) -> None:
    state = pytorch_i3d_checkpoint(2)
    del state["Mixed_5c.b0.conv3d.weight"]
    path = tmp_path / "flow_partial.pt"
    torch.save(state, path)
    trunk = i3d(2)
    report = load_pretrained(trunk, path, "i3d")
    assert report.missing == ["stages.3.Mixed_5c.b0.conv3d.weight"]
    assert report.mismatched == [] and report.unused == ["logits.conv3d.bias", "logits.conv3d.weight"]


def test_bad_pretrained_files_name_the_file(tmp_path) -> None:
    cfg = {"name": "i3d", "in_channels": 3, "normalization": "imagenet"}
    with pytest.raises(ConfigError, match=r"nowhere\.pt: pretrained i3d weights not found"):
        clip({**cfg, "pretrained": str(tmp_path / "nowhere.pt")})
    unrelated = tmp_path / "resnet.pt"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, unrelated)
    with pytest.raises(ConfigError, match=r"resnet\.pt: no tensor of this file fits the i3d encoder"):
        clip({**cfg, "pretrained": str(unrelated)})
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match=r"garbage\.pt: not a readable PyTorch state dict"):
        clip({**cfg, "pretrained": str(garbage)})


def test_cnn3d_loads_its_own_state_dict(tmp_path) -> None:
    cfg = {"name": "cnn3d", "width": 4, "in_channels": 2, "normalization": "flow"}
    torch.manual_seed(1)
    source = clip(cfg).trunk.state_dict()
    path = tmp_path / "cnn3d.pt"
    torch.save(source, path)
    torch.manual_seed(2)
    loaded = clip({**cfg, "pretrained": str(path)}).trunk.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in source.items())


# --- the clip adapter ------------------------------------------------------------------------------
def test_normalisations_hand_computed() -> None:
    values = [[0, 51, 255], [10, 128, 200], [255, 0, 77]]  # channel × position
    x = torch.tensor(values, dtype=torch.uint8).view(1, 3, 1, 1, 3)
    imagenet = clip({"name": "cnn3d", "width": 4, "in_channels": 3, "normalization": "imagenet"})
    unit = clip({"name": "cnn3d", "width": 4, "in_channels": 3, "normalization": "unit"})
    flow = clip({"name": "cnn3d", "width": 4, "in_channels": 3, "normalization": "flow"})
    for c in range(3):
        for position in range(3):
            v = values[c][position]
            assert float(imagenet.images(x)[0, c, 0, 0, position]) == pytest.approx(
                (v / 255 - MEAN[c]) / STD[c], abs=1e-6
            )
            assert float(unit.images(x)[0, c, 0, 0, position]) == pytest.approx(v / 255, abs=1e-6)
            assert float(flow.images(x)[0, c, 0, 0, position]) == pytest.approx(v / 127.5 - 1, abs=1e-6)
    assert float(flow.images(x)[0, 0, 0, 0, 1]) == pytest.approx(-0.6)  # 51/127.5 − 1


@pytest.mark.parametrize(("channels", "normalization"), [(3, "imagenet"), (1, "unit"), (2, "flow")])
def test_masked_input_normalises_to_zero(channels: int, normalization: str) -> None:
    encoder = clip({"name": "cnn3d", "width": 4, "in_channels": channels, "normalization": normalization})
    x = uint8_clip((2, channels, 2, 4, 4))
    masked = encoder.masked_input(x)
    assert masked.shape == x.shape
    torch.testing.assert_close(encoder.images(masked), torch.zeros(x.shape), atol=1e-6, rtol=0)


def test_cnn3d_shapes() -> None:
    encoder = clip({"name": "cnn3d", "width": 4, "in_channels": 2, "normalization": "flow"})
    trunk = encoder.trunk
    x = encoder.images(uint8_clip((2, 2, 4, 16, 16)))
    x = trunk.stem(x)
    shapes = [tuple(x.shape)]
    for stage in trunk.stages:
        x = stage(x)
        shapes.append(tuple(x.shape))
    # stem /2 in H, W; stage 1 keeps; stages 2–4 halve T, H, W (padding 1: ⌊(n − 1)/2⌋ + 1)
    assert shapes == [(2, 4, 4, 8, 8), (2, 4, 4, 8, 8), (2, 8, 2, 4, 4), (2, 16, 1, 2, 2), (2, 32, 1, 1, 1)]
    assert trunk.stage_channels == [4, 8, 16, 32] and encoder.out_dim == 32
    feature = encoder(uint8_clip((2, 2, 4, 16, 16)))
    torch.testing.assert_close(
        feature, trunk(encoder.images(uint8_clip((2, 2, 4, 16, 16)))).mean(dim=(2, 3, 4))
    )


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"name": "i3d", "in_channels": 3}, "missing key 'normalization'"),
        ({"name": "i3d", "normalization": "unit"}, "missing key 'in_channels'"),
        ({"name": "cnn3d", "in_channels": 1, "normalization": "unit"}, "missing key 'width'"),
        ({"name": "i3d", "width": 8, "in_channels": 1, "normalization": "unit"}, "unknown key 'width'"),
        (
            {"name": "i3d", "in_channels": 1, "normalization": "unit", "weights": None},
            "unknown key 'weights'",
        ),
        ({"name": "i3d", "in_channels": 1, "normalization": "imagenet"}, "'imagenet' needs in_channels 3"),
        ({"name": "i3d", "in_channels": 3, "normalization": "kinetics"}, "unknown normalization 'kinetics'"),
        ({"name": "i3d", "in_channels": 0, "normalization": "unit"}, "'in_channels' must be a positive"),
        ({"name": "resnet18", "in_channels": 3, "normalization": "unit"}, "unknown name 'resnet18'"),
    ],
)
def test_bad_encoder_config_names_the_key(cfg: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        clip(cfg)


def test_input_with_the_wrong_channel_count_is_a_clear_error() -> None:
    encoder = clip({"name": "cnn3d", "width": 4, "in_channels": 2, "normalization": "flow"})
    with pytest.raises(ConfigError, match=r"in_channels is 2"):
        encoder(uint8_clip((2, 3, 2, 8, 8)))


def test_registry_lists_the_3d_encoders() -> None:
    from mmbalance.registry import ADAPTERS, ENCODERS

    assert {"i3d", "cnn3d"} <= set(ENCODERS.names()) and "clip" in ADAPTERS


def test_the_encoders_command_lists_every_encoder_and_adapter(capsys: pytest.CaptureFixture) -> None:
    from mmbalance.cli import main
    from mmbalance.registry import ADAPTERS, ENCODERS

    assert main(["encoders"]) == 0
    listed = {line.split()[0] for line in capsys.readouterr().out.splitlines() if line and line[0] != " "}
    assert set(ENCODERS.names()) | set(ADAPTERS.names()) <= listed
    assert {"i3d", "cnn3d", "clip"} <= listed
