"""Cross-validation figures (training/oof.py): intervals, the flip share and the deployment-prior fit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cassava_edge_training.oof import (
    KAGGLE_COUNTS, Scored, apply_prior, cross_fitted_prior, figures, fit_prior, flip_share, kaggle_prior,
    nested_prior, wilson,
)


def _scored(labels: np.ndarray, probs: np.ndarray) -> Scored:
    return Scored([("cassava", f"{i}.jpg") for i in range(len(labels))], labels, probs)


def _skewed_model(seed: int = 0, n: int = 2000, healthy_boost: float = 2.5) -> Scored:
    """Photos drawn with Kaggle's class mix; a model that knows the leaf fairly well but over-predicts Healthy
    (as a model trained with most Healthy photos from another folder does)."""
    rng = np.random.default_rng(seed)
    prior = np.asarray(list(KAGGLE_COUNTS.values()), float)
    labels = rng.choice(5, n, p=prior / prior.sum())
    logits = rng.normal(0, 1.0, (n, 5))
    logits[np.arange(n), labels] += 2.0
    logits += np.log(prior / prior.sum())  # a model trained on photos of this mix knows the mix ...
    logits[:, 4] += healthy_boost  # ... unless its training photos held more Healthy
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return _scored(labels, probs)


def test_wilson_interval_matches_the_textbook_values() -> None:
    low, high = wilson(80, 100)
    assert low == pytest.approx(0.7112, abs=1e-3) and high == pytest.approx(0.8666, abs=1e-3)
    assert wilson(0, 0) == (0.0, 0.0)


def test_figures_report_top1_macro_recall_and_per_class_recall() -> None:
    labels = np.asarray([0, 0, 1, 1, 2, 3, 3, 3, 4, 4])
    predicted = np.asarray([0, 1, 1, 1, 2, 3, 3, 0, 4, 3])
    result = figures(_scored(labels, np.eye(5)[predicted]), bootstrap=200)
    assert result["top1"] == pytest.approx(0.7)
    assert result["recall"] == {"CBB": 0.5, "CBSD": 1.0, "CGM": 1.0, "CMD": pytest.approx(2 / 3), "Healthy": 0.5}
    assert result["macro_recall"] == pytest.approx(np.mean([0.5, 1.0, 1.0, 2 / 3, 0.5]))
    low, high = result["macro_recall_ci95"]
    assert low <= result["macro_recall"] <= high and low < high


def test_flip_share_counts_changed_answers_and_where_they_went() -> None:
    labels = np.asarray([0, 1, 2, 3])
    before = _scored(labels, np.eye(5)[[0, 1, 2, 3]])
    after = _scored(labels, np.eye(5)[[0, 4, 2, 4]])
    assert flip_share(before, after) == {"photos": 4, "flipped": 2, "share": 0.5, "towards": {"Healthy": 2}}


def test_the_prior_fit_undoes_a_learned_class_skew_on_unseen_photos() -> None:
    fit = _skewed_model(seed=1)
    temperature, bias = fit_prior(fit, KAGGLE_COUNTS)
    assert bias[4] < bias[:4].min()  # Healthy, the over-predicted class, is pushed down
    held = _skewed_model(seed=2)
    raw = np.mean(held.probs.argmax(1) == held.labels)
    corrected = np.mean(apply_prior(held.probs, temperature, bias).argmax(1) == held.labels)
    assert corrected > raw + 0.05


def test_the_bias_follows_the_skew_and_not_the_photos() -> None:
    _, plain = fit_prior(_skewed_model(seed=3, healthy_boost=0.0), KAGGLE_COUNTS)
    _, skewed = fit_prior(_skewed_model(seed=3, healthy_boost=2.5), KAGGLE_COUNTS)
    assert skewed[4] - skewed[:4].mean() < plain[4] - plain[:4].mean() - 1.0


def test_the_cross_fitted_prior_never_fits_a_fold_on_itself() -> None:
    """A fold whose photos alone carry a skew: fitted on the other folds, the correction does not see it."""
    scored = _skewed_model(seed=4, n=1000, healthy_boost=0.0)
    fold_of = {key: i % 2 for i, key in enumerate(scored.keys)}
    odd = np.asarray([fold_of[k] == 1 for k in scored.keys])
    scored.probs[odd] = np.eye(5)[4] * 0.9 + 0.02  # fold 1: always Healthy
    corrected = cross_fitted_prior(scored, fold_of, KAGGLE_COUNTS)
    # Fold 0 is corrected by a fit on fold 1's all-Healthy answers, so it loses accuracy; fold 1 keeps answering
    # Healthy because fold 0 (unskewed) taught no correction against it. A fit on each fold itself would fix both.
    assert np.mean(corrected.probs[odd].argmax(1) == 4) > 0.9


def test_the_prior_strength_runs_from_every_class_alike_to_kaggles_mix() -> None:
    total = sum(KAGGLE_COUNTS.values())
    assert kaggle_prior(1.0) == pytest.approx({label: count / total for label, count in KAGGLE_COUNTS.items()})
    assert kaggle_prior(0.0) == pytest.approx({label: 0.2 for label in KAGGLE_COUNTS})
    half = kaggle_prior(0.5)
    assert kaggle_prior(0.0)["CMD"] < half["CMD"] < kaggle_prior(1.0)["CMD"]  # CMD, the common class, in between
    assert sum(half.values()) == pytest.approx(1.0)


def test_the_nested_prior_chooses_each_folds_strength_and_bias_without_it() -> None:
    """Scrambling one fold's labels changes nothing of how that fold's photos are corrected: its strength and its
    bias come from the other folds only. A strength or bias chosen with the fold itself would move."""
    scored = _skewed_model(seed=5, n=600)
    fold_of = {key: i % 3 for i, key in enumerate(scored.keys)}
    fold0 = np.asarray([fold_of[k] == 0 for k in scored.keys])
    corrected, strengths = nested_prior(scored, fold_of)
    assert set(strengths) == {0, 1, 2} and all(0.0 <= s <= 1.0 for s in strengths.values())
    scrambled = Scored(scored.keys, scored.labels.copy(), scored.probs)
    scrambled.labels[fold0] = np.random.default_rng(0).permutation(scrambled.labels[fold0])
    again, strengths_again = nested_prior(scrambled, fold_of)
    np.testing.assert_array_equal(again.probs[fold0], corrected.probs[fold0])
    assert strengths_again[0] == strengths[0]
    assert not np.array_equal(again.probs[~fold0], corrected.probs[~fold0])  # the other folds did learn from it
    with pytest.raises(ValueError, match="three folds"):
        nested_prior(scored, {key: i % 2 for i, key in enumerate(scored.keys)})


EXPERIMENTS = Path(__file__).resolve().parents[1] / "training" / "experiments"
REPORTS = sorted(EXPERIMENTS.glob("*/oof.json"))
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def test_there_are_committed_experiment_reports() -> None:
    assert (EXPERIMENTS / "v3-onelook-320" / "oof.json") in REPORTS


@pytest.mark.skipif(not (DATA / "cassava").is_dir(), reason="needs ../shared/data/cassava (the photos' labels)")
@pytest.mark.parametrize("path", REPORTS, ids=lambda p: p.parent.name)
def test_the_committed_experiment_report_follows_from_its_probabilities(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model card's out-of-fold figures come from the committed per-fold probabilities: recomputed here from
    them (no model, no training), they must match the committed report."""
    import json

    from cassava_edge_training.oof import evaluate_runs

    monkeypatch.chdir(EXPERIMENTS.parents[1])  # the runs name their data folders relative to the project root
    report = json.loads(path.read_text())
    runs = [Path(run) for run in report["runs"]]  # relative to the project root, as the report was written
    student = Path(report["holdout"]["student"]["run"]) if "student" in report["holdout"] else None
    again = evaluate_runs(runs, report["holdout"]["fold"], student)
    assert again["oof"]["photos"] == report["oof"]["photos"]
    assert again["oof"]["top1"] == pytest.approx(report["oof"]["top1"])
    assert again["oof"]["macro_recall"] == pytest.approx(report["oof"]["macro_recall"])
    assert again["oof"]["flip_test"]["flipped"] == report["oof"]["flip_test"]["flipped"]
    assert again["holdout"]["ensemble"]["top1"] == pytest.approx(report["holdout"]["ensemble"]["top1"])
