"""AUG (methods.md §A3): residual labels, boosting losses, ACA, growth with the optimiser, resume."""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mmbalance.config import typed_options
from mmbalance.engine.optim import build_optimizer
from mmbalance.engine.seeding import configure_determinism
from mmbalance.engine.types import Context, ModelSpec
from mmbalance.errors import ConfigError
from mmbalance.methods.aug import AUG, assign_classifier, boosting_loss, residual_labels
from tests.conftest import make_batch
from tests.resume_check import train_killed_and_resumed

LN2 = math.log(2.0)


def setup(spec: ModelSpec, **options):
    configure_determinism(torch.device("cpu"))
    torch.manual_seed(0)
    method = AUG(typed_options(AUG.Options(), options, "methods.aug"), spec)
    model = method.build()
    optimizer = build_optimizer(
        method.param_groups(model), {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4}
    )
    return method, model, optimizer


def context(model, optimizer, method, epoch: int = 0) -> Context:
    return Context(model, optimizer, epoch, 3, 0, torch.device("cpu"), method.modalities, 3)


def force_growth(method: AUG, ctx: Context, weak: str) -> None:
    """End an epoch with ``weak`` far less confident than the other modality (ACA check at epoch 0)."""
    method.score_sums = {m: (1.0 if m == weak else 5.0) for m in method.modalities}
    method.score_count = 10
    method.on_epoch_end(ctx, {})


def test_residual_labels_by_hand() -> None:
    # f_1 = (0, 0, 0) → p_1 = (1/3, 1/3, 1/3); f_2 = (ln 2, 0, 0) → p_2 = (1/2, 1/4, 1/4)
    parts = torch.tensor([[[0.0, 0.0, 0.0]] * 2, [[LN2, 0.0, 0.0]] * 2])
    y = torch.tensor([0, 1])
    paper = residual_labels(parts, y, 0.5, "paper_sum_probs")
    expected_paper = torch.tensor([[1 - 0.5 * (1 / 3 + 1 / 2), 0, 0], [0, 1 - 0.5 * (1 / 3 + 1 / 4), 0]])
    assert torch.allclose(paper, expected_paper)
    # Σ logits = (ln 2, 0, 0) → softmax = (1/2, 1/4, 1/4)
    code = residual_labels(parts, y, 0.5, "code_ensemble_softmax")
    assert torch.allclose(code, torch.tensor([[1 - 0.25, 0, 0], [0, 1 - 0.125, 0]]))


def test_loss_terms_match_independent_computation() -> None:
    torch.manual_seed(1)
    parts = torch.randn(3, 4, 5, requires_grad=True)
    y = torch.tensor([0, 4, 2, 2])
    terms = boosting_loss(parts, y, 0.33, "paper_sum_probs")

    def ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # −Σ_k t_k log softmax_k, mean
        log_p = logits - logits.exp().sum(1, keepdim=True).log()
        return -(target * log_p).sum(1).mean()

    onehot = torch.eye(5)[y]
    probs = [parts[j].exp() / parts[j].exp().sum(1, keepdim=True) for j in range(2)]
    target = onehot - 0.33 * onehot * (probs[0] + probs[1])
    assert torch.allclose(terms["eps"], ce(parts[2], target.detach()))
    assert torch.allclose(terms["eps_all"], ce(parts[0] + parts[1] + parts[2], onehot))
    assert torch.allclose(terms["eps_pre"], ce(parts[0] + parts[1], onehot))
    assert torch.allclose(terms["loss"], terms["eps"] + terms["eps_all"] + terms["eps_pre"])
    single = boosting_loss(parts[:1], y, 0.33, "paper_sum_probs")
    assert set(single) == {"loss", "eps_all"} and torch.allclose(single["loss"], ce(parts[0], onehot))
    # the residual target is a constant: ε sends no gradient into the previous classifiers
    (grad,) = torch.autograd.grad(terms["eps"], parts)
    assert torch.count_nonzero(grad[:2]) == 0 and torch.count_nonzero(grad[2]) > 0


@pytest.mark.parametrize(
    ("scores", "rule", "sigma", "expected"),
    [
        ({"audio": 0.6, "video": 0.5}, "difference", 1.0, "video"),
        ({"audio": 0.5, "video": 0.6}, "difference", 1.0, "audio"),
        ({"audio": 0.2, "video": 0.195}, "difference", 1.0, None),  # gap 0.005 in the dead zone τ
        ({"audio": 0.2, "video": 0.195}, "ratio", 1.0, "video"),  # ratio 1.026 > σ + τ
        ({"audio": 0.9, "video": 0.895}, "ratio", 1.0, None),  # ratio 1.0056: relative dead zone
        ({"audio": 0.195, "video": 0.2}, "ratio", 1.0, "audio"),
        ({"audio": 0.6, "video": 0.5}, "difference", 1.2, None),  # 0.6 − 1.2·0.5 = 0
        ({"audio": 0.6, "video": 0.5}, "ratio", 1.2, None),
        ({"audio": 0.6, "video": 0.5, "text": 0.3}, "difference", 1.0, "text"),
        ({"audio": 0.5, "video": 0.5, "text": 0.495}, "difference", 1.0, None),
        ({"audio": 0.5, "video": 0.5, "text": 0.3}, "ratio", 1.0, "text"),
    ],
)
def test_assignment_rule(scores: dict, rule: str, sigma: float, expected: str | None) -> None:
    assert assign_classifier(scores, rule, sigma, 0.01) == expected


def test_assignment_schedule(tiny_spec: ModelSpec) -> None:
    """The paper by default: every t_N epochs only; the code (``aug_code``) also checks after epoch 0."""
    method = AUG(typed_options(AUG.Options(), {"t_n": 4}, "m"), tiny_spec)
    assert [e for e in range(12) if method.assignment_due(e, 12)] == [3, 7, 11]
    method = AUG(typed_options(AUG.Options(), {"t_n": 4, "assign_after_first_epoch": True}, "m"), tiny_spec)
    assert [e for e in range(12) if method.assignment_due(e, 12)] == [0, 3, 7, 11]
    method = AUG(typed_options(AUG.Options(), {}, "m"), tiny_spec)
    assert [e for e in range(200) if method.assignment_due(e, 200)] == list(range(19, 200, 20))


@pytest.mark.parametrize("init", ["pytorch", "xavier_heads"])
def test_added_classifier_follows_the_protocol_initialisation(tiny_spec: ModelSpec, init: str) -> None:
    """``xavier_heads`` (the code's ``add_layer``): Xavier-normal weight, zero bias; ``pytorch``: a
    nonzero bias within PyTorch's ``±1/√fan_in``."""
    spec = ModelSpec(tiny_spec.modalities, tiny_spec.encoders, tiny_spec.num_classes, init=init)
    method, model, optimizer = setup(spec)
    force_growth(method, context(model, optimizer, method), "video")
    new = model.fusion.layers["video"][1]
    fan_in = new.in_features
    if init == "xavier_heads":
        assert torch.count_nonzero(new.bias) == 0
        std = math.sqrt(2.0 / (new.in_features + new.out_features))
        assert float(new.weight.detach().std()) == pytest.approx(std, rel=0.1)
    else:
        assert torch.count_nonzero(new.bias) == new.out_features
        assert float(new.bias.detach().abs().max()) <= 1 / math.sqrt(fan_in)
        assert float(new.weight.detach().abs().max()) <= 1 / math.sqrt(fan_in)


def test_new_classifier_is_trained_by_default(tiny_spec: ModelSpec) -> None:
    method, model, optimizer = setup(tiny_spec)
    ctx = context(model, optimizer, method)
    force_growth(method, ctx, "video")
    assert method.counts() == {"audio": 1, "video": 2}
    new = model.fusion.layers["video"][1]
    assert len(optimizer.param_groups) == 2
    assert optimizer.param_groups[1]["params"] == list(new.parameters())
    assert {k: v for k, v in optimizer.param_groups[1].items() if k != "params"} == {
        k: v for k, v in optimizer.param_groups[0].items() if k != "params"
    }
    before = new.weight.detach().clone()
    logs = method.training_step(make_batch(), ctx)
    assert {"eps_video", "eps_pre_video", "eps_all_video", "eps_all_audio"} <= set(logs)
    assert new.weight.grad is not None and torch.count_nonzero(new.weight.grad) > 0
    assert not torch.equal(new.weight, before)


def test_code_variant_keeps_new_classifier_frozen(tiny_spec: ModelSpec) -> None:
    method, model, optimizer = setup(tiny_spec, new_classifier_trainable=False, update="per_modality")
    ctx = context(model, optimizer, method)
    force_growth(method, ctx, "video")
    new = model.fusion.layers["video"][1]
    assert len(optimizer.param_groups) == 1
    assert all(not p.requires_grad for p in new.parameters())
    weight, bias = new.weight.detach().clone(), new.bias.detach().clone()
    encoder = {n: p.detach().clone() for n, p in model.encoders["video"].named_parameters()}
    head = model.fusion.shared.weight.detach().clone()
    method.training_step(make_batch(), ctx)
    method.training_step(make_batch(seed=1), ctx)
    assert torch.equal(new.weight, weight) and torch.equal(new.bias, bias) and new.weight.grad is None
    assert all(p.grad is not None for p in model.encoders["video"].parameters())
    changed = [n for n, p in model.encoders["video"].named_parameters() if not torch.equal(p, encoder[n])]
    assert changed and not torch.equal(model.fusion.shared.weight, head)
    # the frozen layer is rebuilt frozen and stays out of the optimiser
    rebuilt = AUG(vars(method.options), tiny_spec)
    rebuilt.load_state_dict(method.state_dict())
    assert all(not p.requires_grad for p in rebuilt.build().fusion.layers["video"][1].parameters())


def test_param_groups_after_growth_equal_rebuilt_ones(tiny_spec: ModelSpec) -> None:
    method, model, optimizer = setup(tiny_spec)
    ctx = context(model, optimizer, method)
    force_growth(method, ctx, "video")
    method.training_step(make_batch(), ctx)
    force_growth(method, ctx, "audio")
    method.training_step(make_batch(seed=1), ctx)
    assert method.added == ["video", "audio"]

    torch.manual_seed(5)  # a different init: every weight must come from the checkpoint
    fresh = AUG(vars(method.options), tiny_spec)
    fresh.load_state_dict(method.state_dict())
    rebuilt = fresh.build()
    rebuilt.load_state_dict(model.state_dict())
    rebuilt_optimizer = build_optimizer(fresh.param_groups(rebuilt), {"name": "sgd", "lr": 0.5})
    rebuilt_optimizer.load_state_dict(copy.deepcopy(optimizer.state_dict()))  # a checkpoint shares no tensors

    def group_names(m, opt) -> list[list[str]]:
        names = {id(p): n for n, p in m.named_parameters()}
        return [[names[id(p)] for p in g["params"]] for g in opt.param_groups]

    assert group_names(rebuilt, rebuilt_optimizer) == group_names(model, optimizer)
    assert group_names(model, optimizer)[1:] == [
        ["fusion.layers.video.1.weight", "fusion.layers.video.1.bias"],
        ["fusion.layers.audio.1.weight", "fusion.layers.audio.1.bias"],
    ]
    hyper = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    assert [{k: v for k, v in g.items() if k != "params"} for g in rebuilt_optimizer.param_groups] == hyper
    batch = make_batch(seed=2)
    torch.manual_seed(9)
    method.training_step(batch, ctx)
    torch.manual_seed(9)
    fresh.training_step(batch, context(rebuilt, rebuilt_optimizer, fresh))
    for (name, a), b in zip(model.state_dict().items(), rebuilt.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


@pytest.mark.parametrize(("update", "steps"), [("joint", 1), ("per_modality", 2)])
def test_update_modes_step_counts(tiny_spec: ModelSpec, update: str, steps: int) -> None:
    method, model, optimizer = setup(tiny_spec, update=update)
    calls = []
    original = optimizer.step
    optimizer.step = lambda *a, **k: (calls.append(1), original(*a, **k))[1]
    method.training_step(make_batch(), context(model, optimizer, method))
    assert len(calls) == steps


def test_per_modality_second_step_sees_updated_shared_head(tiny_spec: ModelSpec) -> None:
    """The code's order: the video loss is computed after the audio step has moved the shared head."""
    method, model, optimizer = setup(tiny_spec, update="per_modality")
    joint, joint_model, joint_optimizer = setup(tiny_spec, update="joint")
    batch = make_batch()
    logs = method.training_step(batch, context(model, optimizer, method))
    joint_logs = joint.training_step(batch, context(joint_model, joint_optimizer, joint))
    assert logs["loss_audio"] == joint_logs["loss_audio"]
    assert logs["loss_video"] != joint_logs["loss_video"]


def test_predict_fusion_weights(tiny_spec: ModelSpec) -> None:
    batch = make_batch()
    for weights in ((0.4, 0.6), (0.5, 0.5)):
        method, model, _ = setup(tiny_spec, merge_weights=weights)
        model.eval()
        with torch.no_grad():
            outputs = model(batch.inputs)
            probs = method.predict(outputs)
        fa, fv = outputs.modality["audio"], outputs.modality["video"]
        assert torch.allclose(probs["fused"], F.softmax(weights[0] * fa + weights[1] * fv, dim=1))
        assert torch.allclose(probs["audio"], fa.softmax(1)) and torch.allclose(probs["video"], fv.softmax(1))
        assert torch.allclose(fa, outputs.fusion.extras["audio"].sum(0))
    with pytest.raises(ConfigError, match="merge_weights"):
        AUG(typed_options(AUG.Options(), {"merge_weights": [1.0]}, "m"), tiny_spec)


def test_training_grows_records_and_resumes_bit_identical(
    tiny_workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """τ = −1 forces a classifier onto video at every check (t_n = 3 // 10 → every epoch)."""
    rows = train_killed_and_resumed(tiny_workspace, tmp_path, monkeypatch, "aug", {"tau": -1.0})
    assert [r["classifiers_video"] for r in rows] == ["1.0", "2.0", "3.0"]
    assert [r["classifiers_audio"] for r in rows] == ["1.0"] * 3
    assert {"confidence_audio", "train_eps_video", "added_video"} <= set(rows[0])


# --- the paper's further experiments: Table 2's loss ablation, Table 3's fixed assignment, G ------------


@pytest.mark.parametrize("terms", [["eps_all", "eps_pre"], ["eps", "eps_pre"], ["eps", "eps_all"], ["eps"]])
def test_loss_terms_keep_a_subset_of_eq_6(terms: list[str]) -> None:
    torch.manual_seed(2)
    parts = torch.randn(3, 4, 5)
    y = torch.tensor([0, 4, 2, 2])
    full = boosting_loss(parts, y, 0.5, "paper_sum_probs")
    ablated = boosting_loss(parts, y, 0.5, "paper_sum_probs", terms)
    assert torch.allclose(ablated["loss"], sum(full[t] for t in terms))
    assert all(torch.equal(ablated[t], full[t]) for t in ("eps", "eps_all", "eps_pre"))
    # one classifier: CE(F, y) whatever is dropped
    single = boosting_loss(parts[:1], y, 0.5, "paper_sum_probs", terms)
    assert torch.allclose(single["loss"], F.cross_entropy(parts[0], y))


def test_fixed_assignment_starts_with_n_fix_classifiers_and_never_assigns(tiny_spec: ModelSpec) -> None:
    method, model, optimizer = setup(tiny_spec, n_fix=4)
    assert method.counts() == {"audio": 1, "video": 4} and len(model.fusion.layers["video"]) == 4
    assert len(optimizer.param_groups) == 4  # the fixed classifiers are trained from the first step
    ctx = context(model, optimizer, method)
    logs = method.training_step(make_batch(), ctx)
    assert {"eps_video", "eps_pre_video"} <= set(logs) and "eps_audio" not in logs
    force_growth(method, ctx, "audio")  # ACA would add to audio; fixed assignment adds nothing
    assert method.counts() == {"audio": 1, "video": 4}
    assert not any(method.assignment_due(e, 200) for e in range(200))
    audio, _, _ = setup(tiny_spec, n_fix=3, fixed_modality="audio")
    assert audio.counts() == {"audio": 3, "video": 1}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"loss_terms": ["eps", "eps_al"]}, "methods.aug.loss_terms"),
        ({"loss_terms": []}, "methods.aug.loss_terms"),
        ({"loss_terms": ["eps", "eps"]}, "methods.aug.loss_terms"),
        ({"n_fix": -1}, "methods.aug.n_fix"),
        ({"n_fix": 2, "fixed_modality": "text"}, "methods.aug.fixed_modality: 'text' is not one of"),
    ],
)
def test_bad_ablation_options_are_named(tiny_spec: ModelSpec, options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        AUG(typed_options(AUG.Options(), options, "methods.aug"), tiny_spec)


@pytest.mark.parametrize("update", ["joint", "per_modality"])
def test_gap_loss_is_the_first_modality_loss_minus_the_second(tiny_spec: ModelSpec, update: str) -> None:
    method, model, optimizer = setup(tiny_spec, update=update)
    ctx = context(model, optimizer, method)
    force_growth(method, ctx, "video")
    logs = method.training_step(make_batch(), ctx)
    assert logs["gap_loss"] == logs["loss_audio"] - logs["loss_video"]
    assert "train_gap_loss" in AUG.curves


def test_resnet34_has_the_block_counts_of_he_et_al() -> None:
    from mmbalance.models.encoders.resnet import resnet34

    trunk = resnet34(in_channels=1, width=4)
    assert [len(stage) for stage in trunk.stages] == [3, 4, 6, 3] and trunk.out_channels == 32
    assert trunk(torch.randn(2, 1, 32, 32)).shape == (2, 32, 1, 1)
