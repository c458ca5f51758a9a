"""Classification metrics in plain numpy, shared by training's validation report and `cassava-edge evaluate`."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def mean_per_photo(rows: np.ndarray, owner: np.ndarray, photos: int) -> np.ndarray:
    """(photos, k) float64: the mean of the `rows` (crops x k) of each photo, `owner[i]` being row i's photo, as
    the runtime averages a photo's crops (a photo without rows gets zeros)."""
    sums = np.zeros((photos, rows.shape[1]), np.float64)
    np.add.at(sums, owner, rows)
    return sums / np.maximum(np.bincount(owner, minlength=photos), 1)[:, None]


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    """Counts: rows are the ground truth, columns the prediction."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)), 1)
    return matrix


def classification_report(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, macro recall, per-class precision/recall/F1/support, confusion (counts and row-normalised).

    A class with no photos gets recall None (not 0) so it does not pull the macro figures down."""
    matrix = confusion_matrix(y_true, y_pred, len(labels))
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    hits = np.diag(matrix)
    per_class = {}
    recalls, f1s = [], []
    for i, label in enumerate(labels):
        precision = hits[i] / predicted[i] if predicted[i] else 0.0
        recall = hits[i] / support[i] if support[i] else None
        f1 = (2 * precision * recall / (precision + recall) if recall and precision + recall > 0 else 0.0)
        if recall is not None:
            recalls.append(recall)
            f1s.append(f1)
        per_class[label] = {
            "precision": float(precision),
            "recall": None if recall is None else float(recall),
            "f1": float(f1),
            "support": int(support[i]),
        }
    total = int(matrix.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        normalised = np.where(support[:, None] > 0, matrix / np.maximum(support[:, None], 1), 0.0)
    return {
        "count": total,
        "accuracy": float(hits.sum() / total) if total else 0.0,
        "macro_f1": float(np.mean(f1s)) if f1s else 0.0,
        "macro_recall": float(np.mean(recalls)) if recalls else 0.0,
        "per_class": per_class,
        "labels": list(labels),
        "confusion": matrix.tolist(),
        "confusion_normalised": np.round(normalised, 4).tolist(),
    }
