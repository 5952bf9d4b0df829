"""Classification metrics, written here and tested against scikit-learn.

- ``acc``: share of argmax predictions equal to the label.
- ``macro_f1``: unweighted mean of per-class F1 over the classes present in labels or
  predictions (scikit-learn's ``f1_score(average="macro")`` default; F1 of a class with no
  true or predicted positives is 0).
- ``map``: mean over classes of one-vs-rest average precision on the softmax scores,
  ``AP = Σ_n (R_n − R_{n−1}) P_n`` over distinct score thresholds (scikit-learn's
  ``average_precision_score``; LFM/MIE code compute MAP exactly so). Classes without a
  positive sample are skipped (their AP is undefined).
- ``loss``: mean negative log-likelihood of the label under the head's probabilities.

And, on the encoders' features rather than the heads, the modality gap of Liang et al. (NeurIPS'22).
"""

from __future__ import annotations

import itertools

import numpy as np


def accuracy(labels: np.ndarray, probs: np.ndarray) -> float:
    return float(np.mean(probs.argmax(axis=1) == labels))


def macro_f1(labels: np.ndarray, predictions: np.ndarray) -> float:
    scores = []
    for c in np.union1d(labels, predictions):
        tp = np.sum((predictions == c) & (labels == c))
        fp = np.sum((predictions == c) & (labels != c))
        fn = np.sum((predictions != c) & (labels == c))
        denominator = 2 * tp + fp + fn
        scores.append(2 * tp / denominator if denominator else 0.0)
    return float(np.mean(scores))


def average_precision(is_positive: np.ndarray, scores: np.ndarray) -> float:
    """Step-wise AP of one binary problem; ties in ``scores`` form a single threshold."""
    order = np.argsort(-scores, kind="mergesort")
    scores, is_positive = scores[order], is_positive[order].astype(np.float64)
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    true_pos = np.cumsum(is_positive)[last_of_tie]
    predicted_pos = last_of_tie + 1
    precision = true_pos / predicted_pos
    recall = true_pos / true_pos[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def mean_average_precision(labels: np.ndarray, probs: np.ndarray) -> float:
    values = [
        average_precision(labels == c, probs[:, c]) for c in range(probs.shape[1]) if np.any(labels == c)
    ]
    return float(np.mean(values))


def nll(labels: np.ndarray, probs: np.ndarray) -> float:
    picked = probs[np.arange(labels.size), labels]
    return float(-np.mean(np.log(np.clip(picked, 1e-12, None))))


def classification_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """``loss``, ``acc``, ``macro_f1`` and ``map`` of one head."""
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=np.float64)
    return {
        "loss": nll(labels, probs),
        "acc": accuracy(labels, probs),
        "macro_f1": macro_f1(labels, probs.argmax(axis=1)),
        "map": mean_average_precision(labels, probs),
    }


def modality_gap(a: np.ndarray, b: np.ndarray) -> float:
    """The modality gap of Liang et al. (NeurIPS'22, §3; LFM §4.5, Figure 2): ``‖mean_i x̂_i − mean_i ŷ_i‖₂``,
    the Euclidean distance between the centroids of two modalities' L2-normalised features (N, D)."""

    def centroid(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        return (x / np.maximum(norms, 1e-12)).mean(axis=0)

    return float(np.linalg.norm(centroid(a) - centroid(b)))


def modality_gaps(features: dict[str, np.ndarray]) -> dict[str, float]:
    """``gap_<a>_<b>`` (:func:`modality_gap`) for every pair of modalities, in modality order; empty when
    the modalities' features differ in width (the centroids then live in different spaces)."""
    widths = {np.shape(x)[1:] for x in features.values()}
    if len(features) < 2 or len(widths) != 1:
        return {}
    return {
        f"gap_{a}_{b}": modality_gap(features[a], features[b]) for a, b in itertools.combinations(features, 2)
    }
