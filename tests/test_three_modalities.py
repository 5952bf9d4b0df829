"""Three clip modalities (NVGesture's RGB, depth and optical flow; methods.md §C4) for every method.

Every registered method, enrolled automatically: three epochs of the loop's calls (``on_epoch_start``,
``training_step`` per batch, evaluation, ``on_epoch_end``) on tiny in-memory splits of three ``clip``
modalities with the small cnn3d encoder, then a round trip of the method state and the model weights.
The methods defined for a pair only stop with a ``ConfigError`` naming the method and the count.
Then the pieces the three modalities and 3-D maps change: MMTM on 5-D maps (also on I3D), OGM-GE's
5-D convolution gradients and MIE's 3-D convolution patches.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmbalance.config import typed_options
from mmbalance.engine.batches import SplitBatches
from mmbalance.engine.evaluate import evaluate
from mmbalance.engine.optim import build_optimizer
from mmbalance.engine.seeding import configure_determinism
from mmbalance.engine.types import Context, ModelSpec
from mmbalance.methods._base import Method
from mmbalance.methods._gradient_modification import cumulative_input_covariance, input_size
from mmbalance.methods.channel import Channel
from mmbalance.methods.ogm_ge import OGMGE, modulation_coefficients
from mmbalance.registry import METHODS

CPU = torch.device("cpu")
NUM_CLASSES = 3
KINDS = {"rgb": "clip", "depth": "clip", "flow": "clip"}
CHANNELS = {"rgb": 3, "depth": 1, "flow": 2}
NORMALIZATION = {"rgb": "imagenet", "depth": "unit", "flow": "flow"}
OPTIONS = {
    "aug": {"merge_weights": [0.33, 0.33, 0.34], "t_n": 1},  # the April-2025 code's NVGesture weights
    "mslr": {"coefficients": [1.0, 1.0, 1.0], "window": 1},
    "gblend": {"super_epoch": 1},
    "mie": {"stage_epochs": [1]},
    "reconboost": {"epochs_per_stage": 1, "correct_epochs": 1},
    "mses": {"patience": 1},
    "domfn": {"pretrain_epochs": 1},
    "greedy": {"epsilon": 0.0, "start_epoch": 0, "window": 1},
}
"""Options a three-modality run needs (one value per modality) or that make three epochs reach the
method's later phases (stages, assignments, stops, curation)."""


def spec(name: str = "cnn3d") -> ModelSpec:
    sizes = {"width": 4} if name == "cnn3d" else {}
    encoders = {
        m: {"name": name, **sizes, "in_channels": CHANNELS[m], "normalization": NORMALIZATION[m]}
        for m in KINDS
    }
    return ModelSpec(modalities=dict(KINDS), encoders=encoders, num_classes=NUM_CLASSES)


def split(size: int, seed: int, batch_size: int, shuffle: bool = False) -> SplitBatches:
    """``size`` clips of 2 frames of 16×16 per modality, uint8 (B, C, T, H, W) as clips are stored."""
    rng = np.random.default_rng(seed)
    arrays = {m: rng.integers(0, 256, (size, c, 2, 16, 16), dtype=np.uint8) for m, c in CHANNELS.items()}
    return SplitBatches(arrays, np.arange(size) % NUM_CLASSES, batch_size, CPU, shuffle=shuffle, seed=seed)


def make_method(name: str, model_spec: ModelSpec) -> Method:
    cls = METHODS.get(name)
    return cls(typed_options(cls.Options(), OPTIONS.get(name, {}), f"methods.{name}"), model_spec)


def train(name: str, epochs: int = 3) -> tuple[Method, nn.Module, dict[str, SplitBatches]]:
    """The loop's calls for ``epochs`` epochs; checks losses, first-step gradients and predictions."""
    configure_determinism(CPU)
    torch.manual_seed(0)
    method = make_method(name, spec())
    model = method.build()
    optimizer = build_optimizer(method.param_groups(model), {"name": "sgd", "lr": 0.01, "momentum": 0.9})
    data = {"train": split(8, 0, 4, shuffle=True), "val": split(6, 1, 6), "test": split(6, 2, 6)}
    step = 0

    def context(epoch: int) -> Context:
        return Context(model, optimizer, epoch, epochs, step, CPU, method.modalities, NUM_CLASSES, data)

    for epoch in range(epochs):
        method.on_epoch_start(context(epoch))
        model.train()
        for batch in data["train"].epoch(epoch):
            logs = method.training_step(batch, context(epoch))
            assert math.isfinite(logs["loss"]), f"{name}: loss {logs['loss']} at epoch {epoch}"
            if step == 0:
                trained = [n for n, p in model.named_parameters() if p.requires_grad]
                missing = [n for n in trained if model.get_parameter(n).grad is None]
                assert trained and not missing, f"{name}: no gradient for {missing}"
            step += 1
        evaluation = {s: evaluate(model, method, data[s])[0] for s in ("val", "test")}
        for head, metrics in evaluation["test"].items():
            assert math.isfinite(metrics["loss"]), f"{name}: test loss of {head}"
        method.on_epoch_end(context(epoch), evaluation)
    return method, model, data


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_trains_on_three_clip_modalities(name: str) -> None:
    method, model, data = train(name)
    batch = next(data["test"].epoch())
    model.eval()
    with torch.no_grad():
        probs = method.predict(model(batch.inputs))
    assert set(probs) == set(method.heads()) and {"rgb", "depth", "flow"} <= set(probs)
    for head, p in probs.items():
        assert p.shape == (len(batch), NUM_CLASSES), head
        torch.testing.assert_close(p.sum(1), torch.ones(len(batch)), atol=1e-5, rtol=0)

    state = method.state_dict()
    fresh = METHODS.get(name)(vars(method.options), spec())
    fresh.load_state_dict(state)
    assert repr(fresh.state_dict()) == repr(state)
    rebuilt = fresh.build()
    rebuilt.load_state_dict(model.state_dict())
    rebuilt.eval()
    with torch.no_grad():
        again = fresh.predict(rebuilt(batch.inputs))
    for head, p in probs.items():
        assert torch.equal(again[head], p), head


# --- MMTM on 3-D maps ----------------------------------------------------------------------------
def test_mmtm_squeezes_and_gates_3d_maps_over_time_and_space() -> None:
    torch.manual_seed(0)
    model = Channel(typed_options(Channel.Options(), {}, "methods.channel"), spec()).build()
    block = model.mmtm["2"]  # stage 2 of width-4 cnn3d: 8 channels per modality
    assert block.squeeze.out_features == int(2 * 3 * 8 / 4)
    gen = torch.Generator().manual_seed(1)
    maps = {m: torch.rand(2, 8, 3, 4, 5, generator=gen) + 0.1 for m in KINDS}
    rescaled, excitation, _ = model.transfer("2", maps, 2)
    squeezed = torch.cat([maps[m].mean(dim=(2, 3, 4)) for m in KINDS], dim=1)
    z = torch.relu(squeezed @ block.squeeze.weight.t() + block.squeeze.bias)
    for m in KINDS:
        layer = block.excite[m]
        expected = 2.0 * torch.sigmoid(z @ layer.weight.t() + layer.bias)
        torch.testing.assert_close(excitation[m], expected)
        torch.testing.assert_close(rescaled[m], maps[m] * expected[:, :, None, None, None])


def test_channel_couples_two_i3d_streams_stage_by_stage() -> None:
    """MMTM after the four I3D stages (192, 480, 832, 1024 channels): one step sends gradients into
    every transfer module and both encoders."""
    torch.manual_seed(0)
    two = spec("i3d")
    two = ModelSpec({m: "clip" for m in ("rgb", "depth")}, {m: two.encoders[m] for m in ("rgb", "depth")}, 3)
    model = Channel(typed_options(Channel.Options(), {}, "methods.channel"), two).build()
    assert [block.squeeze.in_features for block in model.mmtm.values()] == [384, 960, 1664, 2048]
    inputs = {
        m: torch.randint(0, 256, (2, CHANNELS[m], 8, 32, 32), dtype=torch.uint8) for m in ("rgb", "depth")
    }
    out = model(inputs)
    assert out.fused.shape == (2, 3) and out.features["rgb"].shape == (2, 1024)
    F.cross_entropy(out.fused, torch.tensor([0, 1])).backward()
    for name in (
        "mmtm.1.squeeze.weight",
        "mmtm.4.excite.depth.weight",
        "encoders.rgb.trunk.stem.Conv3d_1a_7x7.conv3d.weight",
    ):
        grad = model.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name


# --- OGM-GE: 3-D convolution weights ----------------------------------------------------------------
def test_ogm_scales_the_5d_convolution_gradients() -> None:
    torch.manual_seed(0)
    method = OGMGE({"alpha": 0.8, "modulation": "OGM", "start_epoch": 0, "end_epoch": 5}, spec())
    model = method.build()
    batch = next(split(6, 0, 6).epoch())
    outputs = model(batch.inputs)
    F.cross_entropy(outputs.fused, batch.labels).backward()
    raw = {n: p.grad.clone() for n, p in model.named_parameters()}
    ctx = Context(model, torch.optim.SGD(model.parameters(), lr=0.0), 0, 10, 0, CPU, method.modalities, 3)
    method.after_backward(outputs, batch, ctx)
    y = batch.labels[:, None]
    scores = {m: float(outputs.modality[m].detach().softmax(1).gather(1, y).sum()) for m in KINDS}
    expected = modulation_coefficients(scores, 0.8)
    assert sum(k < 1.0 for k in expected.values()) == 2  # both modalities above the weakest are slowed
    conv_weights = 0
    for name, p in model.named_parameters():
        modality = name.split(".")[1] if name.startswith("encoders.") else None
        if modality is not None and p.dim() == 5:
            conv_weights += 1
            torch.testing.assert_close(p.grad, raw[name] * expected[modality])
        else:
            assert torch.equal(p.grad, raw[name]), name
    assert conv_weights == 3 * 5  # stem and four stages per cnn3d


# --- MIE: covariance of 3-D convolution input patches ------------------------------------------------
def test_conv3d_covariance_sums_the_outer_products_of_all_patches() -> None:
    """Eq. 5 for a Conv3d (kernel 2×3×3, stride (1, 2, 1), padding (1, 1, 0), dilation (1, 1, 2)) as the
    IGM code's convolution branch: every patch of the batch-mean input adds its outer product, the
    patches sliced here by hand from the padded input."""
    torch.manual_seed(0)
    conv = nn.Conv3d(2, 3, (2, 3, 3), stride=(1, 2, 1), padding=(1, 1, 0), dilation=(1, 1, 2), bias=False)
    assert input_size(conv) == conv.weight[0].numel() == 2 * 2 * 3 * 3
    batches = [torch.randn(n, 2, 3, 5, 7) for n in (2, 3)]
    covariances = cumulative_input_covariance({"c": conv}, batches, conv)
    expected = torch.zeros(36, 36, dtype=torch.float64)
    for x in batches:
        padded = F.pad(x.double(), (0, 0, 1, 1, 1, 1))
        out_t, out_h, out_w = conv(x).shape[2:]
        for t in range(out_t):
            for h in range(out_h):
                for w in range(out_w):
                    patch = padded[:, :, t : t + 2, 2 * h : 2 * h + 3, w : w + 5 : 2].reshape(len(x), -1)
                    expected += torch.outer(patch.mean(0), patch.mean(0))
    torch.testing.assert_close(covariances["c"], expected)
