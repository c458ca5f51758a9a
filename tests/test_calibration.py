"""Temperature scaling, calibration error and the risk-coverage curve on synthetic sets with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from cassava_edge.calibration import (
    apply_temperature,
    at_coverage,
    at_threshold,
    coverage_table,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    pick_min_confidence,
    reliability_bins,
    risk_coverage,
    sigmoid,
    softmax,
)

TRUE_TEMPERATURE = 3.0


@pytest.fixture(scope="module")
def over_confident() -> tuple[np.ndarray, np.ndarray]:
    """2,000 photos whose labels are drawn from calibrated probabilities, reported sharpened by 1/3 (T = 3 undoes
    it): the over-confidence of a network trained with cross-entropy, in miniature."""
    rng = np.random.default_rng(7)
    count, classes = 2000, 5
    hint = rng.integers(0, classes, count)
    logits = rng.normal(0.0, 1.0, (count, classes))
    logits[np.arange(count), hint] += 1.5
    calibrated = softmax(logits)
    labels = np.array([rng.choice(classes, p=row) for row in calibrated])
    return apply_temperature(calibrated, 1 / TRUE_TEMPERATURE), labels


def test_temperature_scaling_lowers_the_calibration_error(over_confident: tuple[np.ndarray, np.ndarray]) -> None:
    probs, labels = over_confident
    temperature = fit_temperature(probs, labels)
    assert temperature == pytest.approx(TRUE_TEMPERATURE, rel=0.15)
    calibrated = apply_temperature(probs, temperature)
    before, after = expected_calibration_error(probs, labels), expected_calibration_error(calibrated, labels)
    assert before > 0.15 and after < 0.05
    assert negative_log_likelihood(calibrated, labels) < negative_log_likelihood(probs, labels)
    np.testing.assert_array_equal(calibrated.argmax(axis=1), probs.argmax(axis=1))  # calibration keeps the answers


def test_a_calibrated_set_keeps_a_temperature_near_one(over_confident: tuple[np.ndarray, np.ndarray]) -> None:
    probs, labels = over_confident
    calibrated = apply_temperature(probs, TRUE_TEMPERATURE)
    assert fit_temperature(calibrated, labels) == pytest.approx(1.0, rel=0.15)


def test_apply_temperature() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3]])
    np.testing.assert_allclose(apply_temperature(probs, 1.0), probs)
    softer = apply_temperature(probs, 2.0)
    np.testing.assert_allclose(softer.sum(axis=1), 1.0)
    np.testing.assert_allclose(softer[0], np.sqrt(probs[0]) / np.sqrt(probs[0]).sum())
    assert apply_temperature(np.array([[1.0, 0.0]]), 2.0)[0, 1] > 0  # a hard zero stays finite
    with pytest.raises(ValueError, match="positive"):
        apply_temperature(probs, 0.0)


def test_calibration_error_by_hand() -> None:
    # Ten photos at confidence 0.9 of which 7 are right, ten at 0.55 of which 6 are right.
    probs = np.array([[0.9, 0.1]] * 10 + [[0.55, 0.45]] * 10)
    labels = np.array([0] * 7 + [1] * 3 + [0] * 6 + [1] * 4)
    assert expected_calibration_error(probs, labels) == pytest.approx(0.5 * 0.2 + 0.5 * 0.05)
    bins = reliability_bins(probs, labels)
    assert len(bins.edges) == 16 and sum(bins.counts) == 20
    filled = [i for i, count in enumerate(bins.counts) if count]
    assert filled == [8, 13]  # (0.533, 0.6] and (0.867, 0.933]
    assert bins.accuracy[13] == pytest.approx(0.7) and bins.confidence[13] == pytest.approx(0.9)
    assert bins.accuracy[0] is None and bins.to_dict()["counts"][8] == 10


def test_risk_coverage_by_hand() -> None:
    # Confidences 0.9, 0.8, 0.8, 0.6, 0.6 (equal ones enter together); right, wrong, right, right, wrong.
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.4, 0.6], [0.4, 0.6]])
    labels = np.array([0, 1, 1, 1, 0])
    curve = risk_coverage(probs, labels)
    np.testing.assert_allclose(curve.thresholds, [0.9, 0.8, 0.6])
    np.testing.assert_allclose(curve.coverage, [0.2, 0.6, 1.0])
    np.testing.assert_allclose(curve.accuracy, [1.0, 2 / 3, 0.6])
    np.testing.assert_allclose(curve.risk, [0.0, 1 / 3, 0.4])
    assert at_threshold(probs, labels, 0.85).to_dict() == {
        "min_confidence": 0.85, "coverage": 0.2, "accuracy": 1.0, "answered": 1, "target_coverage": None}
    assert at_threshold(probs, labels, 0.95).accuracy is None
    point = at_coverage(probs, labels, 0.4)  # the tie takes it to 60%
    assert (point.min_confidence, point.coverage, point.answered, point.target_coverage) == (0.8, 0.6, 3, 0.4)
    assert [p.coverage for p in coverage_table(probs, labels)] == [0.6, 1.0, 1.0, 1.0]


def test_pick_min_confidence() -> None:
    # Sorted by confidence: right x8, wrong, right, wrong x2 -> accuracy 1.0 down to 9/12.
    confidence = np.linspace(0.95, 0.6, 12)
    probs = np.stack([confidence, 1 - confidence], axis=1)
    labels = np.array([0] * 8 + [1, 0, 1, 1])
    # 9/10 right when answering the ten most confident: the lowest threshold reaching 90%.
    assert pick_min_confidence(probs, labels, target_accuracy=0.9, min_coverage=0.5) == pytest.approx(confidence[9])
    assert pick_min_confidence(probs, labels, target_accuracy=0.75, min_coverage=0.5) == pytest.approx(confidence[-1])
    # 100% right only covers 8/12 < 75%: the coverage wins and the threshold answers 9 photos.
    assert pick_min_confidence(probs, labels, target_accuracy=1.0, min_coverage=0.75) == pytest.approx(confidence[8])
    with pytest.raises(ValueError, match="target_accuracy"):
        pick_min_confidence(probs, labels, target_accuracy=1.5)


def test_inputs_are_checked() -> None:
    with pytest.raises(ValueError, match="labels"):
        fit_temperature(np.full((3, 2), 0.5), np.array([0, 1]))
    with pytest.raises(ValueError, match="class indices"):
        expected_calibration_error(np.full((2, 2), 0.5), np.array([0, 2]))
    with pytest.raises(ValueError, match="coverage"):
        at_coverage(np.full((2, 2), 0.5), np.array([0, 1]), 0.0)


def test_sigmoid_is_stable() -> None:
    np.testing.assert_allclose(sigmoid(np.array([-1000.0, 0.0, 1000.0])), [0.0, 0.5, 1.0])
    assert float(sigmoid(2.0)) == pytest.approx(1 / (1 + np.exp(-2.0)))
