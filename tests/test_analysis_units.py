"""Unit tests of the analyses' numbers against independent computations: the modality gap (numpy loops),
Concat's label mixing (hand-written cross-entropies), the loss landscape (a quadratic whose surface is
known), Grad-CAM (the package's own output and a hand computation) and missing-modality masking."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from mmbalance import config, paths
from mmbalance.analysis import gradcam as cam_module
from mmbalance.analysis import landscape
from mmbalance.analysis.missing_modality import missing_mask, predict_missing
from mmbalance.engine.batches import SplitBatches
from mmbalance.engine.metrics import modality_gap, modality_gaps
from mmbalance.engine.types import ModelSpec
from mmbalance.errors import ConfigError
from mmbalance.models.shapley import masked_input
from mmbalance.registry import METHODS
from tests.conftest import NUM_CLASSES, make_batch, tiny_params

# --- modality gap (Liang et al. NeurIPS'22) ------------------------------------------------


def test_modality_gap_is_the_distance_of_normalised_centroids() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(7, 5)) * 3, rng.normal(size=(7, 5)) + 2
    centroid_a = [sum(a[i, j] / math.sqrt(sum(a[i] ** 2)) for i in range(7)) / 7 for j in range(5)]
    centroid_b = [sum(b[i, j] / math.sqrt(sum(b[i] ** 2)) for i in range(7)) / 7 for j in range(5)]
    expected = math.sqrt(sum((x - y) ** 2 for x, y in zip(centroid_a, centroid_b, strict=True)))
    assert modality_gap(a, b) == pytest.approx(expected, rel=1e-12)
    assert modality_gap(a, a) == 0.0
    # Scaling a sample does not move it on the sphere; opposite unit vectors are 2 apart.
    assert modality_gap(a * 5, b) == pytest.approx(expected, rel=1e-12)
    assert modality_gap(np.array([[1.0, 0.0]]), np.array([[-3.0, 0.0]])) == pytest.approx(2.0)


def test_modality_gaps_every_pair_or_none_when_widths_differ() -> None:
    rng = np.random.default_rng(1)
    three = {m: rng.normal(size=(4, 3)) for m in ("rgb", "depth", "flow")}
    gaps = modality_gaps(three)
    assert list(gaps) == ["gap_rgb_depth", "gap_rgb_flow", "gap_depth_flow"]
    assert gaps["gap_depth_flow"] == modality_gap(three["depth"], three["flow"])
    assert modality_gaps({"image": rng.normal(size=(4, 8)), "text": rng.normal(size=(4, 6))}) == {}


# --- label fitting: Concat's uniform_labels ------------------------------------------------


@pytest.mark.parametrize("u", [0.0, 0.3, 1.0])
def test_concat_loss_mixes_one_hot_and_uniform_label_losses(u: float, tiny_spec: ModelSpec) -> None:
    torch.manual_seed(0)
    method = METHODS.get("concat")({"uniform_labels": u}, tiny_spec)
    model = method.build()
    batch = make_batch()
    outputs = model(batch.inputs)
    loss, _ = method.loss(outputs, batch, None)
    log_p = outputs.fused.log_softmax(dim=1)
    l_s = -log_p[torch.arange(len(batch)), batch.labels].mean()  # one-hot labels
    l_u = -(log_p / NUM_CLASSES).sum(dim=1).mean()  # uniform labels 1/c
    assert float(loss.detach()) == pytest.approx(float(((1 - u) * l_s + u * l_u).detach()), rel=1e-6)


def test_concat_refuses_a_label_weight_outside_0_1(tiny_spec: ModelSpec) -> None:
    with pytest.raises(ConfigError, match="uniform_labels"):
        METHODS.get("concat")({"uniform_labels": 1.5}, tiny_spec)


# --- kept epochs and the analysis block ----------------------------------------------------


def test_epochs_within_counts_negative_from_the_end_and_drops_the_rest() -> None:
    assert config.epochs_within([0, 6, -1], 16) == [0, 6, 15]
    assert config.epochs_within([0, 6, -1], 3) == [0, 2]
    assert config.epochs_within([-1, 2, 2, -20], 3) == [2]


def test_only_the_gradcam_methods_keep_epochs_and_change_run_id(tmp_path) -> None:
    params = tiny_params(tmp_path)
    epochs = params["train"]["embedded"]["synthav"]["epochs"]
    for method in params["analysis"]["gradcam"]["methods"]:
        kept = paths.resolve_run(params, "synthav", method, 0)["train"]["keep_epochs"]
        assert kept == config.epochs_within(params["analysis"]["gradcam"]["epochs"], epochs)
    assert "keep_epochs" not in paths.resolve_run(params, "synthav", "sum", 0)["train"]
    before = paths.resolve_run(params, "synthav", "concat", 0)["run_id"]
    params["analysis"]["gradcam"]["epochs"] = [0]
    assert paths.resolve_run(params, "synthav", "concat", 0)["run_id"] != before
    params["train"]["embedded"]["synthav"]["keep_epochs"] = [1]
    assert paths.resolve_run(params, "synthav", "sum", 0)["train"]["keep_epochs"] == [1]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("analysis.gradcam.epoch", [0], "unknown key 'analysis.gradcam.epoch'"),
        ("analysis.gradcam.samples", 0, "analysis.gradcam.samples"),
        ("analysis.loss_landscape.methods", ["concat", "nope"], "analysis.loss_landscape.methods"),
        ("analysis.sweep", {}, "unknown key 'analysis.sweep'"),
    ],
)
def test_analysis_block_errors_name_the_key(tmp_path, key: str, value, message: str) -> None:
    import json

    params = tiny_params(tmp_path)
    bad = config.apply_overrides(params, [f"{key}={json.dumps(value)}"])
    with pytest.raises(ConfigError, match=message):
        config.validate(bad)


def test_schema_and_defaults_list_the_same_analysis_options() -> None:
    from mmbalance.registry import ANALYSES

    properties = config.schema()["properties"]["analysis"]["properties"]
    assert set(properties) == set(ANALYSES.names())
    for name in ANALYSES.names():
        fields = {f.name for f in __import__("dataclasses").fields(ANALYSES.get(name).Options)}
        assert set(properties[name]["properties"]) == fields, name


# --- loss landscape on a known quadratic ---------------------------------------------------


def test_filter_normalised_direction_has_the_filters_norms_and_skips_biases() -> None:
    layer = nn.Conv2d(3, 4, 3)
    d = landscape.filter_normalised_direction(list(layer.parameters()), torch.Generator().manual_seed(0))
    assert torch.allclose(d[0].flatten(1).norm(dim=1), layer.weight.detach().flatten(1).norm(dim=1))
    assert torch.count_nonzero(d[1]) == 0
    again = landscape.filter_normalised_direction(list(layer.parameters()), torch.Generator().manual_seed(0))
    assert all(torch.equal(x, y) for x, y in zip(d, again, strict=True))


def test_landscape_of_a_quadratic_is_the_closed_form_and_restores_the_weights() -> None:
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(3, 4, dtype=torch.float64))
    target = torch.randn(3, 4, dtype=torch.float64)
    scale = torch.rand(3, 4, dtype=torch.float64) + 0.5

    def loss() -> float:  # L(w) = ½ Σ s (w − t)²
        return float(0.5 * (scale * (w - target) ** 2).sum())

    gen = torch.Generator().manual_seed(3)
    d1 = landscape.filter_normalised_direction([w], gen)
    d2 = landscape.filter_normalised_direction([w], gen)
    w0 = w.detach().clone()
    alphas, betas = np.linspace(-1, 1, 5), np.linspace(-0.5, 0.5, 3)
    grid = [(a, b) for a in alphas for b in betas]
    values = landscape.surface(loss, [w], [d1, d2], grid)
    r0 = w0 - target
    for (a, b), value in zip(grid, values, strict=True):
        step = a * d1[0] + b * d2[0]
        expected = 0.5 * (scale * (r0 + step) ** 2).sum()  # exact, independent of the module
        assert value == pytest.approx(float(expected), rel=1e-12)
    assert torch.equal(w.detach(), w0)
    # Sharpness: mean over ±r of the two directions of ½ Σ s (r0 ± r d)² − L(w0) = ½ r² mean_k Σ s d_k².
    r = 0.3
    expected = 0.5 * r**2 * float(((scale * d1[0] ** 2).sum() + (scale * d2[0] ** 2).sum()) / 2)
    assert landscape.sharpness(loss, [w], [d1, d2], r) == pytest.approx(expected, rel=1e-9)


# --- Grad-CAM -----------------------------------------------------------------------------


class TinyConvNet(nn.Module):
    """conv (padding keeps the input size) → ReLU → global pool → linear; the target layer is ``conv``."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(2, 5, 3, padding=1)
        self.head = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def test_gradcam_package_matches_the_hand_computed_map() -> None:
    """Grad-CAM (Selvaraju et al.): ReLU(Σ_c mean_ij(∂y/∂A_c) A_c), min-max scaled per map (the package
    scales twice, with 1e-7 in the denominator). The map has the input's size: no resize."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    net = TinyConvNet()
    x = torch.randn(2, 2, 6, 7, generator=torch.Generator().manual_seed(1))
    labels = [2, 0]
    with GradCAM(model=net, target_layers=[net.conv]) as cam:
        maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(y) for y in labels])
    assert maps.shape == (2, 6, 7)
    for i, y in enumerate(labels):
        a = net.conv(x[i : i + 1])
        (grad,) = torch.autograd.grad(net.head(torch.relu(a).mean(dim=(2, 3)))[0, y], a)
        raw = torch.relu((grad.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1))[0].detach().numpy()
        for _ in range(2):  # scaled per layer, then again after averaging the (one) layer
            raw = (raw - raw.min()) / (raw.max() - raw.min() + 1e-7)
        np.testing.assert_allclose(maps[i], raw, atol=1e-6)


def tiny_model(spec: ModelSpec, method: str = "concat") -> tuple:
    torch.manual_seed(0)
    m = METHODS.get(method)({}, spec)
    model = m.build()
    model.eval()
    return m, model


def test_gradcam_maps_are_the_packages_on_each_encoder(tiny_spec: ModelSpec) -> None:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    _, model = tiny_model(tiny_spec)
    batch = make_batch(batch_size=3)
    for modality, kind in tiny_spec.modalities.items():
        stage = cam_module.choose_stage(model.encoders[modality], batch.inputs[modality], 1)
        maps = cam_module.gradcam_maps(model, modality, kind, batch.inputs, batch.labels, stage)
        x = batch.inputs[modality]
        expected_shape = (3, *x.shape[1:]) if kind == "spectrogram" else (3, x.shape[1], *x.shape[-2:])
        assert maps.shape == expected_shape
        assert maps.min() >= 0.0 and maps.max() <= 1.0 + 1e-6
        wrapper = cam_module.TargetLogits(model, modality, batch.inputs)
        layer = cam_module.trunk_stages(model.encoders[modality])[stage]
        with GradCAM(model=wrapper, target_layers=[layer]) as cam:
            direct = cam(
                cam_module.to_images(kind, x), [ClassifierOutputTarget(int(y)) for y in batch.labels]
            )
        np.testing.assert_array_equal(maps.reshape(direct.shape), direct)


def test_choose_stage_steps_back_to_a_map_of_at_least_4_pixels(tiny_spec: ModelSpec) -> None:
    _, model = tiny_model(tiny_spec)
    video = make_batch().inputs["video"]  # 16-pixel frames: stage maps 4, 2, 1, 1 pixels
    assert cam_module.choose_stage(model.encoders["video"], video, -1) == 0
    assert cam_module.pick_samples(np.array([2, 0, 1, 0, 2, 1]), 4) == [1, 2, 0, 3]


# --- missing modality ----------------------------------------------------------------------


def test_missing_mask_counts_and_nests() -> None:
    small, large = missing_mask(90, 0.2, 0), missing_mask(90, 0.5, 0)
    assert small.sum() == 18 and large.sum() == 45
    assert np.all(large[small])
    assert missing_mask(90, 0.2, 0).tolist() != missing_mask(90, 0.2, 1).tolist()


def split_of(batch, batch_size: int) -> SplitBatches:
    arrays = {m: x.numpy() for m, x in batch.inputs.items()}
    return SplitBatches(arrays, batch.labels.numpy(), batch_size, torch.device("cpu"))


@pytest.mark.parametrize("method", ["concat", "mla", "channel", "agm"])
def test_missing_modality_replaces_exactly_the_masked_samples_inputs(
    method: str, tiny_spec: ModelSpec
) -> None:
    """Reference: the model run on inputs whose masked samples were replaced by hand. The feature path
    (fusion on stored features, for standard models) must give the same probabilities."""
    m, model = tiny_model(tiny_spec, method)
    batch = make_batch(batch_size=7, seed=3)
    data = split_of(batch, batch_size=4)
    mask = np.array([True, False, False, True, True, False, False])
    with torch.no_grad():  # what the engine stores with the selected model (ignored by non-standard models)
        features = {k: v.numpy() for k, v in model(batch.inputs).features.items()}
    for modality in tiny_spec.modalities:
        inputs = {k: v.clone() for k, v in batch.inputs.items()}
        blank = masked_input(model.encoders[modality], inputs[modality]).float()
        replaced = inputs[modality].float()
        replaced[torch.from_numpy(mask)] = blank[torch.from_numpy(mask)]
        inputs[modality] = replaced
        with torch.no_grad():
            expected = m.predict(model(inputs))["fused"].numpy()
        got = predict_missing(m, model, data, modality, mask, features)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
        clean = predict_missing(m, model, data, None, np.zeros(7, bool), features)
        with torch.no_grad():
            np.testing.assert_allclose(
                clean, m.predict(model(batch.inputs))["fused"].numpy(), rtol=1e-5, atol=1e-6
            )
        assert not np.allclose(got[mask], clean[mask])
        np.testing.assert_allclose(got[~mask], clean[~mask], rtol=1e-5, atol=1e-6)
