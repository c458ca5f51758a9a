"""`cassava-edge evaluate`: accuracy, macro-F1, per-class precision/recall and the confusion matrix of a model
on labelled photos, with the confusion heatmap drawn by OpenCV (the runtime stays free of plotting libraries)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np

from cassava_edge.classifier import Classifier
from cassava_edge.errors import CassavaEdgeError
from cassava_edge.labelled import LabelledPhoto
from cassava_edge.metrics import classification_report


def evaluate(classifier: Classifier, photos: Sequence[LabelledPhoto],
             progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Classify every photo and report; photos that fail to decode are counted and named, not fatal."""
    y_true, y_pred, failed = [], [], []
    for photo, result in zip(photos, classifier.classify_many(str(p.path) for p in photos)):
        if result.ok:
            y_true.append(photo.label)
            y_pred.append(result.label_index)
        else:
            failed.append({"source": str(photo.path), "error": result.error})
        if progress:
            progress(1)
    report = classification_report(y_true, y_pred, classifier.labels)
    report["failed"] = failed
    report["model"] = str(classifier.session.path)
    report["precision"] = classifier.metadata.precision
    report["tta"] = classifier.tta.name
    report["scan"] = classifier.scan
    report["providers"] = list(classifier.session.providers)
    return report


def draw_confusion_heatmap(report: dict[str, Any], path: str | Path, title: str = "") -> None:
    """Ground truth (rows) x prediction (columns), coloured by row share, each cell with count and share."""
    labels = report["labels"]
    counts = np.asarray(report["confusion"])
    shares = np.asarray(report["confusion_normalised"], dtype=float)
    cell, left, top, n = 110, 130, 90, len(labels)
    canvas = np.full((top + n * cell + 70, left + n * cell + 30, 3), 255, np.uint8)
    colours = cv2.applyColorMap((shares * 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for i in range(n):
        for j in range(n):
            x, y = left + j * cell, top + i * cell
            colour = tuple(int(c) for c in colours[i, j])
            cv2.rectangle(canvas, (x, y), (x + cell - 2, y + cell - 2), colour, -1)
            ink = (0, 0, 0) if shares[i, j] > 0.6 else (255, 255, 255)
            cv2.putText(canvas, str(counts[i, j]), (x + 12, y + 48), font, 0.9, ink, 2, cv2.LINE_AA)
            cv2.putText(canvas, f"{shares[i, j]:.0%}", (x + 12, y + 85), font, 0.6, ink, 1, cv2.LINE_AA)
        cv2.putText(canvas, labels[i], (10, top + i * cell + cell // 2 + 8), font, 0.7, (0, 0, 0), 2, cv2.LINE_AA)
        cv2.putText(canvas, labels[i], (left + i * cell + 10, top - 15), font, 0.7, (0, 0, 0), 2, cv2.LINE_AA)
    cv2.putText(canvas, "prediction", (left + n * cell // 2 - 60, top - 50), font, 0.8, (0, 0, 0), 2, cv2.LINE_AA)
    cv2.putText(canvas, "rows: ground truth", (10, top - 50), font, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    footer = title or f"accuracy {report['accuracy']:.1%}  macro-F1 {report['macro_f1']:.3f}  n={report['count']}"
    cv2.putText(canvas, footer, (10, top + n * cell + 45), font, 0.7, (0, 0, 0), 2, cv2.LINE_AA)
    ok, data = cv2.imencode(".png", canvas)
    if not ok:
        raise CassavaEdgeError(f"could not encode the heatmap for {path}")
    Path(path).write_bytes(data.tobytes())
