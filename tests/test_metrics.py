"""The metrics module against scikit-learn, including ties and absent classes."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, log_loss

from mmbalance.engine.metrics import average_precision, classification_metrics, mean_average_precision


def random_probs(rng: np.random.Generator, n: int, c: int, ties: bool) -> np.ndarray:
    logits = rng.normal(size=(n, c))
    if ties:
        logits = np.round(logits, 0)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_sklearn(seed: int, ties: bool) -> None:
    rng = np.random.default_rng(seed)
    n, c = 57, 5
    labels = rng.integers(0, c, size=n)
    probs = random_probs(rng, n, c, ties)
    got = classification_metrics(labels, probs)
    assert got["acc"] == pytest.approx(accuracy_score(labels, probs.argmax(1)))
    assert got["macro_f1"] == pytest.approx(f1_score(labels, probs.argmax(1), average="macro"))
    present = [k for k in range(c) if np.any(labels == k)]
    expected_map = np.mean([average_precision_score(labels == k, probs[:, k]) for k in present])
    assert got["map"] == pytest.approx(expected_map)
    assert got["loss"] == pytest.approx(log_loss(labels, probs, labels=list(range(c))))


def test_average_precision_hand_computed() -> None:
    # scores 0.9(+), 0.8(-), 0.7(+), 0.7(-): thresholds 0.9 -> P=1,R=.5 ; 0.8 -> P=.5,R=.5 ; 0.7 -> P=.5,R=1
    ap = average_precision(np.array([1, 0, 1, 0], bool), np.array([0.9, 0.8, 0.7, 0.7]))
    assert ap == pytest.approx(0.5 * 1.0 + 0.5 * 0.5)


def test_class_without_positives_is_skipped() -> None:
    labels = np.array([0, 0, 1, 1])
    probs = np.array([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.3, 0.6, 0.1]])
    assert mean_average_precision(labels, probs) == pytest.approx(1.0)


def test_macro_f1_perfect_and_absent_prediction() -> None:
    labels = np.array([0, 1, 2, 2])
    probs = np.eye(3)[[0, 1, 1, 2]]
    expected = f1_score(labels, probs.argmax(1), average="macro")
    assert classification_metrics(labels, probs)["macro_f1"] == pytest.approx(expected)
