"""`cassava-edge evaluate`: accuracy, macro-F1, per-class precision/recall and the confusion matrix of a model
on labelled photos, how well its confidence is calibrated and how accurate its answers are at each coverage.

The confusion heatmap is drawn by OpenCV; the reliability diagram and the risk-coverage curve need matplotlib,
imported only when one is drawn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import cv2
import numpy as np

from cassava_edge.calibration import (
    ECE_BINS,
    CoveragePoint,
    ReliabilityBins,
    RiskCoverage,
    coverage_table,
    reliability_bins,
    risk_coverage,
)
from cassava_edge.classifier import Classifier
from cassava_edge.errors import CassavaEdgeError
from cassava_edge.labelled import LabelledPhoto
from cassava_edge.metrics import classification_report
from cassava_edge.results import FAILED, OK, STATUSES, Classification


@dataclass(frozen=True)
class EvaluationReport:
    """What `evaluate` measured. The classification figures (`metrics`) score the top-1 class of every classified
    photo, whatever its status; `answered` is the share and accuracy of the photos with status ok; `coverage`
    the accuracy of the most confident 50/80/90/100% of the classified photos."""

    model: str
    precision: str
    tta: str
    scan: str
    providers: list[str]
    metrics: dict[str, Any]  # `metrics.classification_report`: count, accuracy, macro_f1, per_class, confusion...
    failed: list[dict[str, Optional[str]]]  # source and error of each photo that could not be classified
    status_counts: dict[str, int]
    min_confidence: Optional[float]  # the classifier's (the model's default unless overridden)
    temperature: Optional[float]  # the model's calibration, None when it has none
    calibration_error: Optional[float]  # expected calibration error over ECE_BINS bins; None without photos
    reliability: Optional[ReliabilityBins]
    answered: Optional[CoveragePoint]  # the ok photos among the classified ones
    coverage: list[CoveragePoint] = field(default_factory=list)
    prior: Optional[str] = None  # the deployment prior the model's class bias answers for, None without one
    curve: Optional[RiskCoverage] = None  # one point per distinct confidence: for plots, not in to_dict

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; the classification figures are top-level keys (count, accuracy, ...)."""
        return {
            **self.metrics,
            "failed": self.failed,
            "model": self.model,
            "precision": self.precision,
            "tta": self.tta,
            "scan": self.scan,
            "providers": self.providers,
            "status_counts": self.status_counts,
            "min_confidence": self.min_confidence,
            "temperature": self.temperature,
            "prior": self.prior,
            "calibration_error": self.calibration_error,
            "calibration_bins": ECE_BINS,
            "reliability": None if self.reliability is None else self.reliability.to_dict(),
            "answered": None if self.answered is None else self.answered.to_dict(),
            "coverage": [point.to_dict() for point in self.coverage],
        }


def evaluate(classifier: Classifier, photos: Sequence[LabelledPhoto],
             on_result: Callable[[Classification], None] | None = None) -> EvaluationReport:
    """Classify every photo and report; photos that fail to decode are counted and named, not fatal. `on_result`
    sees each photo's result as it comes (progress, the run's speed line)."""
    rows, labels, statuses, failed = [], [], [], []
    for photo, result in zip(photos, classifier.classify_many(str(p.path) for p in photos)):
        statuses.append(result.status)
        if result.status == FAILED:
            failed.append({"source": str(photo.path), "error": result.error})
        else:
            rows.append([result.probabilities[label] for label in classifier.labels])
            labels.append(photo.label)
        if on_result:
            on_result(result)
    probs, truth = np.asarray(rows, dtype=np.float64).reshape(-1, len(classifier.labels)), np.asarray(labels)
    # The top-1 class of every classified photo, including those whose label an app would not show.
    predicted = probs.argmax(axis=1)
    ok = np.array([status == OK for status in statuses if status != FAILED], dtype=bool)
    classified = len(truth) > 0
    calibration = classifier.metadata.calibration
    reliability = reliability_bins(probs, truth) if classified else None
    return EvaluationReport(
        model=str(classifier.session.path),
        precision=classifier.metadata.precision,
        tta=classifier.tta.name,
        scan=classifier.scan,
        providers=list(classifier.session.providers),
        metrics=classification_report(truth.tolist(), predicted.tolist(), classifier.labels),
        failed=failed,
        status_counts={status: statuses.count(status) for status in STATUSES},
        min_confidence=classifier.min_confidence,
        temperature=calibration.temperature if calibration else None,
        prior=calibration.prior if calibration and calibration.class_bias is not None else None,
        calibration_error=reliability.expected_calibration_error if reliability else None,
        reliability=reliability,
        answered=CoveragePoint(
            min_confidence=classifier.min_confidence or 0.0,
            coverage=float(ok.mean()),
            accuracy=float((predicted[ok] == truth[ok]).mean()) if ok.any() else None,
            answered=int(ok.sum()),
        ) if classified else None,
        coverage=coverage_table(probs, truth) if classified else [],
        curve=risk_coverage(probs, truth) if classified else None,
    )


def trust_lines(report: dict[str, Any]) -> list[str]:
    """The calibration, status and coverage figures of a report (`EvaluationReport.to_dict()`) as text."""
    counts = report["status_counts"]
    lines = ["statuses: " + ", ".join(f"{counts[status]} {status}" for status in STATUSES)]
    if report["calibration_error"] is None:
        return lines
    temperature = report["temperature"]
    lines.append(
        f"calibration: ECE {report['calibration_error']:.4f} ({report['calibration_bins']} bins), "
        + ("not calibrated by the model" if temperature is None else f"temperature {temperature:.3f}")
        + (f", class bias for {report['prior']}" if report.get("prior") else "")
    )
    answered = report["answered"]
    minimum = "none" if report["min_confidence"] is None else f"{report['min_confidence']:.3f}"
    accuracy = "-" if answered["accuracy"] is None else f"{answered['accuracy']:.1%}"
    lines.append(f"ok photos at min confidence {minimum}: coverage {answered['coverage']:.1%}, accuracy {accuracy}")
    lines.append("most confident  answered  min confidence  accuracy")
    lines += [f"{point['target_coverage']:>14.0%}  {point['coverage']:>8.1%}  {point['min_confidence']:>14.3f}  "
              f"{point['accuracy']:>8.1%}" for point in report["coverage"]]
    return lines


def require_matplotlib(what: str) -> None:
    """Raise a one-line CassavaEdgeError when matplotlib, needed to draw `what`, is not installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise CassavaEdgeError(f"drawing {what} needs matplotlib: pip install matplotlib") from None


def draw_reliability_diagram(report: EvaluationReport, path: str | Path) -> None:
    """Accuracy against mean confidence per confidence bin, with the diagonal of perfect calibration."""
    if report.reliability is None:
        raise CassavaEdgeError("no photo was classified: there is no reliability diagram to draw")
    bins = report.reliability
    plt = _pyplot("the reliability diagram")
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(5.5, 6.5), sharex=True,
                                         gridspec_kw={"height_ratios": [3, 1]})
    edges = np.asarray(bins.edges)
    width = edges[1] - edges[0]
    filled = [i for i, count in enumerate(bins.counts) if count]
    top.bar(edges[filled], [bins.accuracy[i] for i in filled], width=width, align="edge", edgecolor="black",
            color="#4c72b0", label="accuracy")
    top.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    top.plot([bins.confidence[i] for i in filled], [bins.accuracy[i] for i in filled], "o", color="#dd8452",
             markersize=4, label="bin mean confidence")
    top.set(ylabel="accuracy", xlim=(0, 1), ylim=(0, 1),
            title=f"{Path(report.model).name}: ECE {bins.expected_calibration_error:.3f} ({len(bins.counts)} bins)")
    top.legend(loc="best")
    bottom.bar(edges[:-1], bins.counts, width=width, align="edge", edgecolor="black", color="#999999")
    bottom.set(xlabel="confidence (top-1 probability)", ylabel="photos")
    _save(plt, figure, path)


def draw_risk_coverage(report: EvaluationReport, path: str | Path) -> None:
    """Accuracy of the answered photos against their share, as the minimum confidence falls; the model's default
    minimum marked."""
    if report.curve is None or report.answered is None:
        raise CassavaEdgeError("no photo was classified: there is no risk-coverage curve to draw")
    plt = _pyplot("the risk-coverage curve")
    figure, axes = plt.subplots(figsize=(6, 4.5))
    axes.plot(report.curve.coverage, report.curve.accuracy, color="#4c72b0", label="most confident photos first")
    point = report.answered
    if point.accuracy is not None:
        axes.plot([point.coverage], [point.accuracy], "o", color="#c44e52",
                  label=f"ok at min confidence {point.min_confidence:.2f}")
    axes.set(xlabel="coverage (share of photos answered)", ylabel="accuracy of the answered photos", xlim=(0, 1.01),
             title=f"{Path(report.model).name}: risk-coverage")
    axes.grid(alpha=0.3)
    axes.legend(loc="best")
    _save(plt, figure, path)


def _pyplot(what: str) -> Any:
    require_matplotlib(what)
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def _save(plt: Any, figure: Any, path: str | Path) -> None:
    figure.tight_layout()
    figure.savefig(str(path), dpi=120)
    plt.close(figure)


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
