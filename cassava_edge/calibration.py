"""Calibrated confidence and selective answering, in plain numpy.

Export fits a temperature and picks a minimum confidence with these functions on the validation photos; the
runtime applies the temperature to each photo's averaged probabilities; `cassava-edge evaluate` reports the
calibration error and the risk-coverage curve with them. `probs` is always an (n, classes) array of probabilities
(one row per photo, after TTA averaging) and `labels` an (n,) array of true class indices.

"Covered" photos are those the classifier answers: confidence (top-1 probability) >= the minimum confidence.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Optional, Sequence

import numpy as np

ECE_BINS = 15
REPORTED_COVERAGES: tuple[float, ...] = (0.5, 0.8, 0.9, 1.0)
# The temperature search range: beyond these a model is so badly calibrated that scaling is not the fix.
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0
# Probabilities are floored before the log so that a hard 0 from a float32 softmax stays finite.
PROBABILITY_FLOOR = 1e-12


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of an (n, classes) array."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def sigmoid(x: np.ndarray | float) -> np.ndarray:
    """1 / (1 + exp(-x)), without overflow warnings for large |x|."""
    x = np.asarray(x, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -x))


def apply_temperature(probs: np.ndarray, temperature: float, class_bias: Optional[Sequence[float]] = None) -> np.ndarray:
    """softmax(log(probs) / temperature + class_bias) row-wise: T > 1 softens over-confident probabilities, T < 1
    sharpens; the bias (one logit offset per class, or None) moves the answers towards a deployment prior."""
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive number, got {temperature!r}")
    probs = np.asarray(probs, dtype=np.float64)
    logits = np.log(np.maximum(probs, PROBABILITY_FLOOR)) / temperature
    if class_bias is not None:
        logits = logits + np.asarray(class_bias, dtype=np.float64)
    return softmax(logits)


def negative_log_likelihood(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean -log p(true class)."""
    probs, labels = _checked(probs, labels)
    return float(-np.log(np.maximum(probs[np.arange(len(labels)), labels], PROBABILITY_FLOOR)).mean())


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising the validation negative log-likelihood of `apply_temperature(probs, T)`.

    The NLL of temperature scaling is convex in 1/T, hence unimodal in log T: a golden-section search over
    log T in [log 0.05, log 20] finds the minimum to 1e-4 (in log T) without an optimisation library.
    """
    probs, labels = _checked(probs, labels)
    log_probs = np.log(np.maximum(probs, PROBABILITY_FLOOR))

    def nll(log_t: float) -> float:
        scaled = log_probs / math.exp(log_t)
        scaled -= scaled.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(scaled).sum(axis=1))
        return float((log_norm - scaled[np.arange(len(labels)), labels]).mean())

    low, high = math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    nll_a, nll_b = nll(a), nll(b)
    while high - low > 1e-4:
        if nll_a <= nll_b:
            high, b, nll_b = b, a, nll_a
            a = high - ratio * (high - low)
            nll_a = nll(a)
        else:
            low, a, nll_a = a, b, nll_b
            b = low + ratio * (high - low)
            nll_b = nll(b)
    return float(math.exp((low + high) / 2))


@dataclass(frozen=True)
class ReliabilityBins:
    """The data of a reliability diagram: equal-width confidence bins over [0, 1]; empty bins have count 0 and
    accuracy/confidence None."""

    edges: tuple[float, ...]  # bins + 1 edges, 0 .. 1
    counts: tuple[int, ...]
    accuracy: tuple[Optional[float], ...]  # share of right answers among the bin's photos
    confidence: tuple[Optional[float], ...]  # mean confidence of the bin's photos

    @property
    def expected_calibration_error(self) -> float:
        """Sum over bins of |accuracy - confidence| weighted by the bin's share of the photos."""
        total = sum(self.counts)
        if total == 0:
            return 0.0
        return float(sum(
            count / total * abs(acc - conf)
            for count, acc, conf in zip(self.counts, self.accuracy, self.confidence)
            if acc is not None and conf is not None
        ))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def reliability_bins(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> ReliabilityBins:
    """Bin the photos by confidence into `bins` equal-width bins (a bin holds (low, high]; the first also 0)."""
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    probs, labels = _checked(probs, labels)
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    counts, accuracy, mean_confidence = [], [], []
    for b in range(bins):
        members = index == b
        count = int(members.sum())
        counts.append(count)
        accuracy.append(float(correct[members].mean()) if count else None)
        mean_confidence.append(float(confidence[members].mean()) if count else None)
    return ReliabilityBins(tuple(float(e) for e in edges), tuple(counts), tuple(accuracy), tuple(mean_confidence))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """The expected calibration error of the top-1 confidence over `bins` equal-width bins."""
    return reliability_bins(probs, labels, bins).expected_calibration_error


@dataclass(frozen=True)
class RiskCoverage:
    """The risk-coverage curve: point i answers the photos with confidence >= thresholds[i] (decreasing), which
    are coverage[i] of all photos, accuracy[i] of them right. Photos of equal confidence enter together."""

    thresholds: np.ndarray
    coverage: np.ndarray
    accuracy: np.ndarray

    @property
    def risk(self) -> np.ndarray:
        return 1.0 - self.accuracy

    def to_dict(self) -> dict[str, Any]:
        return {"thresholds": self.thresholds.tolist(), "coverage": self.coverage.tolist(),
                "accuracy": self.accuracy.tolist()}


def risk_coverage(probs: np.ndarray, labels: np.ndarray) -> RiskCoverage:
    """The curve over every distinct confidence of `probs`, from the most confident photo to all photos."""
    probs, labels = _checked(probs, labels)
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    order = np.argsort(-confidence, kind="stable")
    confidence, correct = confidence[order], correct[order]
    hits = np.cumsum(correct)
    # A threshold cannot split photos of equal confidence: keep the last point of each run of equal values.
    last = np.append(confidence[1:] != confidence[:-1], True)
    covered = np.arange(1, len(confidence) + 1)[last]
    return RiskCoverage(thresholds=confidence[last], coverage=covered / len(confidence),
                        accuracy=hits[last] / covered)


@dataclass(frozen=True)
class CoveragePoint:
    """The photos answered at one minimum confidence: their share of all photos and their accuracy (None when no
    photo is answered); `target_coverage` is the coverage asked for, when the point was found by coverage (ties of
    confidence can make `coverage` larger)."""

    min_confidence: float
    coverage: float
    accuracy: Optional[float]
    answered: int
    target_coverage: Optional[float] = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def at_threshold(probs: np.ndarray, labels: np.ndarray, min_confidence: float) -> CoveragePoint:
    """Coverage and accuracy of the photos whose confidence is >= `min_confidence`."""
    probs, labels = _checked(probs, labels)
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    answered = confidence >= min_confidence
    count = int(answered.sum())
    return CoveragePoint(
        min_confidence=float(min_confidence),
        coverage=count / len(labels),
        accuracy=float(correct[answered].mean()) if count else None,
        answered=count,
    )


def at_coverage(probs: np.ndarray, labels: np.ndarray, coverage: float) -> CoveragePoint:
    """The point answering the `coverage` share of most confident photos (more when confidences tie)."""
    if not 0.0 < coverage <= 1.0:
        raise ValueError(f"coverage must be within (0, 1], got {coverage!r}")
    curve = risk_coverage(probs, labels)
    # The first curve point reaching the coverage; the tolerance keeps 0.8 * 10 photos = 8, not 9.
    index = int(np.argmax(curve.coverage >= coverage - 1e-9))
    return replace(at_threshold(probs, labels, float(curve.thresholds[index])), target_coverage=coverage)


def coverage_table(probs: np.ndarray, labels: np.ndarray,
                   coverages: Sequence[float] = REPORTED_COVERAGES) -> list[CoveragePoint]:
    """`at_coverage` at each of `coverages` (by default 50/80/90/100%)."""
    return [at_coverage(probs, labels, c) for c in coverages]


def pick_min_confidence(probs: np.ndarray, labels: np.ndarray, target_accuracy: float = 0.92,
                        min_coverage: float = 0.75) -> float:
    """The lowest minimum confidence whose answered photos are at least `target_accuracy` right.

    The answered photos are then as many as the accuracy target allows. If that is fewer than `min_coverage` of
    the photos, the target cannot be met at that coverage and the coverage wins: the threshold answering
    `min_coverage` of the photos is returned (check its accuracy with `at_threshold`).
    """
    if not 0.0 <= target_accuracy <= 1.0 or not 0.0 < min_coverage <= 1.0:
        raise ValueError(f"target_accuracy must be within 0..1 and min_coverage within (0, 1], got "
                         f"{target_accuracy!r} and {min_coverage!r}")
    curve = risk_coverage(probs, labels)
    reaching = np.flatnonzero(curve.accuracy >= target_accuracy)
    if len(reaching) and curve.coverage[reaching[-1]] >= min_coverage - 1e-9:
        return float(curve.thresholds[reaching[-1]])
    return at_coverage(probs, labels, min_coverage).min_confidence


def _checked(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64, copy=False)
    if probs.ndim != 2 or labels.shape != (len(probs),) or len(probs) == 0:
        raise ValueError(f"expected (n, classes) probabilities and (n,) labels with n > 0, got {probs.shape} and "
                         f"{labels.shape}")
    if labels.min() < 0 or labels.max() >= probs.shape[1]:
        raise ValueError(f"labels must be class indices 0..{probs.shape[1] - 1}")
    return probs, labels
