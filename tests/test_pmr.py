"""PMR: prototypes, the prototypical cross-entropy and the ρ rule that picks it (methods.md §B15)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mmbalance.config import typed_options
from mmbalance.engine import loop
from mmbalance.engine.batches import SplitBatches
from mmbalance.engine.types import Context, ModelSpec
from mmbalance.methods.ogm_ge import modulation_coefficients
from mmbalance.methods.pmr import PMR, prototype_logits
from tests.conftest import make_batch
from tests.resume_check import train_killed_and_resumed


def split(samples: int = 80, batch_size: int = 8) -> SplitBatches:
    """A shuffled training split of ``samples`` tiny clips: 10 batches, so prototypes use the first one."""
    batch = make_batch(samples, seed=1)
    arrays = {m: x.numpy() for m, x in batch.inputs.items()}
    return SplitBatches(arrays, batch.labels.numpy(), batch_size, torch.device("cpu"), shuffle=True, seed=0)


def setup(spec: ModelSpec, **options) -> tuple[PMR, torch.nn.Module, Context]:
    torch.manual_seed(0)
    method = PMR(typed_options(PMR.Options(), options, "pmr"), spec)
    model = method.build()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    ctx = Context(model, optimizer, 0, 16, 0, torch.device("cpu"), method.modalities, spec.num_classes)
    ctx.data = {"train": split()}
    return method, model, ctx


def independent_class_means(
    model: torch.nn.Module, data: SplitBatches, epoch: int
) -> dict[str, torch.Tensor]:
    """Class means over the first batch of ``epoch``'s order, one sample at a time, in eval mode."""
    index = torch.from_numpy(data.order(epoch)[: data.batch_size])
    model.eval()
    with torch.no_grad():
        per_sample = [
            model.encode({m: torch.from_numpy(a[i : i + 1]) for m, a in data.arrays.items()}) for i in index
        ]
    model.train()
    labels = torch.from_numpy(data.labels)[index]
    means = {}
    for m in per_sample[0]:
        rows = torch.cat([f[m] for f in per_sample])
        means[m] = torch.stack([rows[labels == k].mean(0) for k in range(3)])
    return means


def test_prototypes_are_class_means_then_smoothed(tiny_spec: ModelSpec) -> None:
    method, model, ctx = setup(tiny_spec)
    data = ctx.data["train"]
    assert len(data) == 10
    assert all(set(data.labels[data.order(e)[:8]].tolist()) == {0, 1, 2} for e in range(3))
    method.on_epoch_start(ctx)
    first = independent_class_means(model, data, 0)
    for m in method.modalities:
        assert torch.allclose(method.prototypes[m], first[m], atol=1e-5)
    assert model.training

    method.training_step(make_batch(), ctx)  # move the encoders
    method.on_epoch_end(ctx, {})  # after epoch 0: the code takes no momentum
    after_zero = independent_class_means(model, data, 1)
    for m in method.modalities:
        assert torch.allclose(method.prototypes[m], after_zero[m], atol=1e-5)

    ctx.epoch = 1
    method.training_step(make_batch(seed=3), ctx)
    method.on_epoch_end(ctx, {})
    fresh = independent_class_means(model, data, 2)
    for m in method.modalities:
        expected = 0.8 * fresh[m] + 0.2 * after_zero[m]
        assert torch.allclose(method.prototypes[m], expected, atol=1e-5)


def test_absent_class_keeps_its_prototype(tiny_spec: ModelSpec) -> None:
    method, _, ctx = setup(tiny_spec, momentum=0.0)
    method.on_epoch_start(ctx)
    old = {m: c.clone() for m, c in method.prototypes.items()}
    batch = make_batch(6)
    keep = batch.labels != 2
    arrays = {m: x[keep].numpy() for m, x in batch.inputs.items()}
    ctx.data = {"train": SplitBatches(arrays, batch.labels[keep].numpy(), 4, torch.device("cpu"))}
    method.training_step(make_batch(), ctx)
    ctx.epoch = 3
    method.on_epoch_end(ctx, {})
    for m in method.modalities:
        assert torch.equal(method.prototypes[m][2], old[m][2])
        assert not torch.equal(method.prototypes[m][0], old[m][0])


def test_prototype_logits_are_negative_euclidean_distances() -> None:
    torch.manual_seed(0)
    z, c = torch.randn(5, 7), torch.randn(3, 7)
    expected = torch.tensor(
        [[-float(torch.linalg.vector_norm(z[i] - c[k])) for k in range(3)] for i in range(5)]
    )
    assert torch.allclose(prototype_logits(z, c), expected, atol=1e-6)


@pytest.mark.parametrize("stronger", ["audio", "video"])
def test_ratio_selects_the_weak_modality_pce(tiny_spec: ModelSpec, stronger: str) -> None:
    """The stronger modality gets its class means as prototypes, the other equal ones (uniform scores)."""
    method, model, ctx = setup(tiny_spec, alpha=0.7)
    batch = make_batch()
    with torch.no_grad():
        features = model.encode(batch.inputs)
    prototypes = {}
    for m, z in features.items():
        means = torch.stack([z[batch.labels == k].mean(0) for k in range(3)])
        prototypes[m] = means if m == stronger else means.mean(0, keepdim=True).repeat(3, 1)
    method.prototypes = prototypes
    outputs = model(batch.inputs)
    loss, logs = method.loss(outputs, batch, ctx)

    weak = "video" if stronger == "audio" else "audio"
    pce = {
        m: F.cross_entropy(-torch.cdist(outputs.features[m].detach(), prototypes[m]), batch.labels)
        for m in ("audio", "video")
    }
    ce = F.cross_entropy(outputs.fused.detach(), batch.labels)
    assert logs[f"pce_{weak}"] == pytest.approx(pce[weak].item(), rel=1e-5)
    assert logs[f"pce_{stronger}"] == pytest.approx(pce[stronger].item(), rel=1e-5)
    assert (logs["ratio"] > 1) == (stronger == "audio")
    assert logs[f"coef_{weak}"] == 0.7 and logs[f"coef_{stronger}"] == 0.0
    assert loss.item() == pytest.approx((ce + 0.7 * pce[weak]).item(), rel=1e-5)

    ctx.epoch = 101  # outside the modulation window: CE alone
    loss, _ = method.loss(outputs, batch, ctx)
    assert loss.item() == pytest.approx(ce.item(), rel=1e-6)


def test_three_modalities_use_ogm_coefficients_on_prototype_scores() -> None:
    spec = ModelSpec(
        modalities={"audio": "spectrogram", "video": "frames", "flow": "frames"},
        encoders={m: {"name": "resnet10", "width": 4} for m in ("audio", "video", "flow")},
        num_classes=3,
    )
    method, model, ctx = setup(spec, eta=0.5)
    batch = make_batch()
    batch.inputs["flow"] = batch.inputs["video"].flip(0)
    method.prototypes = {m: torch.randn(3, 32) for m in method.modalities}
    with torch.no_grad():
        outputs = model(batch.inputs)
        loss, _ = method.loss(outputs, batch, ctx)
    assert loss.item() == pytest.approx(F.cross_entropy(outputs.fused, batch.labels).item())
    y = batch.labels[:, None]
    scores = {
        m: float(prototype_logits(outputs.features[m], method.prototypes[m]).softmax(1).gather(1, y).sum())
        for m in method.modalities
    }
    expected = modulation_coefficients(scores, 0.5)
    assert method.coefficients == pytest.approx(expected)
    assert min(expected.values()) < 1.0


def test_training_resumes_bit_identical(
    tiny_workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = train_killed_and_resumed(tiny_workspace, tmp_path, monkeypatch, "pmr")
    assert {"train_pce_audio", "train_ratio", "train_coef_video"} <= set(rows[0])
    a = torch.load(tmp_path / "reference" / loop.CHECKPOINT, weights_only=False)
    b = torch.load(tmp_path / "resumed" / loop.CHECKPOINT, weights_only=False)
    assert all(
        torch.equal(a["method"]["prototypes"][m], b["method"]["prototypes"][m]) for m in ("audio", "video")
    )
