"""Paired comparison of two runs on the same photos (training/paired.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cassava_edge_training.oof import Scored, apply_prior, figures, fit_prior, kaggle_prior, nested_prior
from cassava_edge_training.paired import (compare_runs, discordant, ensemble, judged_fold, mcnemar_p, paired,
                                         parse_judged, versus_rival)


def _scored(labels: list[int], predicted: list[int], keys: list[str] | None = None) -> Scored:
    keys = keys or [f"{i}.jpg" for i in range(len(labels))]
    return Scored([("cassava", k) for k in keys], np.asarray(labels), np.eye(5)[predicted] * 0.9 + 0.02)


def test_mcnemar_matches_the_binomial_tails() -> None:
    assert mcnemar_p(0, 6) == pytest.approx(2 / 64)
    assert mcnemar_p(3, 3) == 1.0
    assert mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(1, 9) == pytest.approx(2 * 11 / 1024)


def test_discordant_counts_each_side() -> None:
    a = np.asarray([True, True, False, False, True])
    b = np.asarray([True, False, True, False, False])
    assert discordant(a, b) == {"only_a": 2, "only_b": 1, "both": 1, "mcnemar_p": 1.0}


def test_paired_difference_counts_the_photos_where_the_runs_disagree() -> None:
    labels = [0, 1, 2, 3, 4, 3, 3, 3]
    a = _scored(labels, [0, 1, 2, 3, 4, 3, 3, 0])  # 7 right
    b = _scored(labels, [0, 0, 2, 3, 3, 3, 3, 3])  # 6 right
    result = paired(a, b, bootstrap=200)
    assert result["top1_difference"] == pytest.approx(1 / 8)
    assert result["right"]["only_a"] == 2 and result["right"]["only_b"] == 1
    assert result["same_answer"] == pytest.approx(5 / 8)
    low, high = result["top1_difference_ci95"]
    assert low <= result["top1_difference"] <= high


def test_paired_aligns_rows_by_photo_and_refuses_different_photos() -> None:
    a = _scored([0, 1, 2], [0, 1, 2], keys=["x", "y", "z"])
    shuffled = _scored([2, 0, 1], [2, 0, 1], keys=["z", "x", "y"])
    assert paired(a, shuffled, bootstrap=10)["top1_difference"] == 0.0
    with pytest.raises(ValueError, match="different photos"):
        paired(a, _scored([0, 1, 2], [0, 1, 2], keys=["x", "y", "w"]), bootstrap=10)


def _probs(rows: list[list[float]], keys: list[str], labels: list[int]) -> Scored:
    return Scored([("cassava", k) for k in keys], np.asarray(labels), np.asarray(rows))


def test_the_ensemble_is_scored_against_each_member_and_under_the_look() -> None:
    """Photo 0: a alone is wrong, b alone right, their mean right. Photo 1: both right. Photo 2: a right and
    confident, b wrong and unsure, the mean right. Under the look only b's answer on photo 1 changes, and the
    mean's does not."""
    keys, labels = ["0.jpg", "1.jpg", "2.jpg"], [0, 1, 2]
    own_a = _probs([[0.4, 0.6, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 0.9, 0.1, 0]], keys, labels)
    own_b = _probs([[0.9, 0.1, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 0.4, 0.6, 0]], keys, labels)
    look_a = own_a
    look_b = _probs([[0.9, 0.1, 0, 0, 0], [0.6, 0.4, 0, 0, 0], [0, 0, 0.4, 0.6, 0]], keys, labels)
    result = ensemble([(own_a, look_a), (own_b, look_b)])
    assert result["mean_figures"]["top1"] == 1.0
    assert result["mean_flip_test"]["flipped"] == 0  # (1 + 0.4) / 2 still answers CBSD on photo 1
    versus_a, versus_b = result["mean_versus"]["a"], result["mean_versus"]["b"]
    assert (versus_a["right"]["only_a"], versus_a["right"]["only_b"]) == (1, 0)
    assert (versus_b["right"]["only_a"], versus_b["right"]["only_b"]) == (1, 0)
    assert versus_a["flipped"]["only_b"] == 0 and versus_b["flipped"]["only_b"] == 1
    assert versus_a["top1_difference"] == pytest.approx(1 / 3)


def test_a_third_member_joins_the_mean_but_the_paired_tests_stay_against_a_and_b() -> None:
    """Photo 0: a and b are split (0.55 CBB from a, 0.55 CBSD from b) and the mean of the two is a tie that
    argmax gives to CBB, wrong; a third member sure of CBSD makes the mean right. The paired tests still compare
    the mean with a and with b."""
    keys, labels = ["0.jpg", "1.jpg"], [1, 3]
    a = _probs([[0.55, 0.45, 0, 0, 0], [0, 0, 0, 1, 0]], keys, labels)
    b = _probs([[0.45, 0.55, 0, 0, 0], [0, 0, 0, 1, 0]], keys, labels)
    c = _probs([[0, 1, 0, 0, 0], [0, 0, 0, 1, 0]], keys, labels)
    assert ensemble([(a, a), (b, b)])["mean_figures"]["top1"] == 0.5
    result = ensemble([(a, a), (b, b), (c, c)])
    assert result["mean_figures"]["top1"] == 1.0
    assert result["mean_versus"]["a"]["right"]["only_a"] == 1  # right only in the mean, against a (wrong on 0)
    assert result["mean_versus"]["b"]["right"]["only_a"] == 0  # b was right on photo 0 already


def _members_on_kaggles_mix(n: int, knowledge: float, healthy_boost: float = 0.0) -> tuple[Scored, Scored]:
    """Two models' answers on `n` photos drawn with Kaggle's class mix: each knows the mix, adds `knowledge` to the
    right class's logit and `healthy_boost` to Healthy's, with its own noise."""
    counts = np.asarray([1087, 2189, 2386, 13158, 2577], float)
    labels = np.random.default_rng(0).choice(5, n, p=counts / counts.sum())
    keys = [f"{i}.jpg" for i in range(n)]

    def member(seed: int) -> Scored:
        logits = np.random.default_rng(seed).normal(0, 1.0, (n, 5)) + np.log(counts / counts.sum())
        logits[np.arange(n), labels] += knowledge
        logits[:, 4] += healthy_boost
        return _probs((np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).tolist(), keys, labels.tolist())

    return member(1), member(2)


def test_the_ensemble_prior_is_fitted_on_other_folds_and_exported_from_all() -> None:
    """Two members that both over-answer Healthy on CMD-heavy photos (Kaggle's mix): the ensemble's prior, fitted
    per fold on the other fold, pulls Healthy down and wins back top-1; the exported fit uses every photo; photos of
    a single fold get no prior (nothing to fit it on but the photos scored)."""
    n = 1200
    a, b = _members_on_kaggles_mix(n, knowledge=2.0, healthy_boost=2.5)  # trained on a Healthy-heavy mix
    fold_of = {key: i % 2 for i, key in enumerate(a.keys)}
    result = ensemble([(a, a), (b, b)], fold_of)
    assert result["mean_with_prior"]["photos"] == n
    assert result["mean_with_prior"]["top1"] > result["mean_figures"]["top1"] + 0.05
    assert result["prior_fit"]["photos"] == n
    bias = result["prior_fit"]["bias"]
    assert bias["Healthy"] < min(bias[label] for label in ("CBB", "CBSD", "CGM", "CMD"))
    assert "mean_with_prior" not in ensemble([(a, a), (b, b)], {key: 0 for key in a.keys})
    assert "mean_with_prior" not in ensemble([(a, a), (b, b)])


def test_the_prior_strength_trades_top1_for_macro_recall_and_its_fit_leaves_out_the_judged_photos(
    tmp_path: Path,
) -> None:
    """Members like the above (weaker, no Healthy skew) over three folds: the full prior gives the most answers right, none at all the
    best macro recall (the sweep says so at every strength); from three folds on the strength is also chosen out of
    fold and compared with each member alone; the fit written for export leaves out the ids it is told to."""
    n = 600
    a, b = _members_on_kaggles_mix(n, knowledge=1.0)  # weak members: the prior has much to trade
    keys = [key for _, key in a.keys]
    fold_of = {key: i % 3 for i, key in enumerate(a.keys)}
    ids = tmp_path / "judged.txt"
    ids.write_text("".join(f"{key}\n" for key in keys[:100]))
    judged = parse_judged([f"../shared/data/cassava={ids}"])
    full = ensemble([(a, a), (b, b)], fold_of, prior_strength=1.0, prior_sweep=True, prior_fit_exclude=judged)
    none = ensemble([(a, a), (b, b)], fold_of, prior_strength=0.0)
    assert "prior_sweep" not in ensemble([(a, a), (b, b)], fold_of)  # the sweep is asked for
    assert full["mean_with_prior"]["top1"] > none["mean_with_prior"]["top1"] + 0.1
    assert none["mean_with_prior"]["macro_recall"] > full["mean_with_prior"]["macro_recall"] + 0.03
    sweep = full["prior_sweep"]
    assert [row["strength"] for row in sweep] == pytest.approx([k / 8 for k in range(9)])
    assert sweep[-1]["top1"] == pytest.approx(full["mean_with_prior"]["top1"])
    assert sweep[0]["macro_recall"] == pytest.approx(none["mean_with_prior"]["macro_recall"])
    assert full["prior_fit"]["photos"] == n - 100 and full["prior_fit"]["excluded_photos"] == 100
    assert full["prior_fit"]["strength"] == 1.0 and none["prior_fit"]["strength"] == 0.0
    nested = full["mean_with_nested_prior"]
    assert nested["photos"] == n and set(nested["strengths"]) == {0, 1, 2}
    versus = full["prior_versus"]["a"]
    assert versus["top1_difference"] == pytest.approx(full["mean_with_prior"]["top1"] - np.mean(a.probs.argmax(1) == a.labels))
    assert set(full["nested_prior_versus"]) == {"a", "b"}


def test_a_judged_fold_is_scored_alone_with_a_prior_fitted_on_the_other_folds_only() -> None:
    """Three folds, fold 2 judged: each figure is the one of its photos alone; the prior applied to them is the one
    fitted on folds 0 and 1 (the judged fold's own answers take no part), its strength chosen there too."""
    n = 600
    a, b = _members_on_kaggles_mix(n, knowledge=1.0, healthy_boost=2.5)
    fold_of = {key: i % 3 for i, key in enumerate(a.keys)}
    judged = judged_fold([(a, a), (b, b)], fold_of, [2])
    keys = [key for key in a.keys if fold_of[key] == 2]
    others = [key for key in a.keys if fold_of[key] != 2]
    mean = Scored(a.keys, a.labels, (a.probs + b.probs) / 2)
    assert judged["folds"] == [2] and judged["other_folds"] == [0, 1]
    assert judged["a"]["photos"] == judged["mean_with_prior"]["photos"] == len(keys) == n // 3
    assert judged["b"]["top1"] == pytest.approx(figures(b.subset(keys))["top1"])
    temperature, bias = fit_prior(mean.subset(others), kaggle_prior(1.0))
    expected = Scored(keys, a.labels[2::3], apply_prior(mean.subset(keys).probs, temperature, bias))
    assert judged["mean_with_prior"]["top1"] == pytest.approx(figures(expected)["top1"])
    assert judged["mean_with_prior"]["top1"] > judged["mean"]["top1"] + 0.05  # the Healthy skew is undone
    nested, strengths = nested_prior(mean, fold_of)
    assert judged["mean_with_nested_prior"]["strength"] == strengths[2]
    assert judged["mean_with_nested_prior"]["top1"] == pytest.approx(figures(nested.subset(keys))["top1"])
    assert judged["prior_versus"]["a"]["photos"] == len(keys)
    assert judged["difference"]["flipped"]["only_a"] == 0  # each member's look is itself here: nothing flips
    with pytest.raises(ValueError, match=r"cannot judge folds \[2, 5\]: the runs hold folds \[0, 1, 2\]"):
        judged_fold([(a, a), (b, b)], fold_of, [2, 5])
    with pytest.raises(ValueError, match="another fold"):
        judged_fold([(a, a), (b, b)], fold_of, [0, 1, 2])
    lone = judged_fold([(a, a), (b, b)], {key: 2 if fold_of[key] == 2 else 0 for key in a.keys}, [2])
    assert "mean_with_nested_prior" not in lone  # one other fold: no strength to choose out of fold


def test_several_judged_folds_are_judged_together_with_one_prior_fitted_on_the_rest() -> None:
    """Four folds, folds 2 and 3 judged as one: their photos together, the prior fitted once on folds 0 and 1 (not
    per judged fold, which would fit each on the other judged fold's photos)."""
    n = 800
    a, b = _members_on_kaggles_mix(n, knowledge=1.0, healthy_boost=2.5)
    fold_of = {key: i % 4 for i, key in enumerate(a.keys)}
    judged = judged_fold([(a, a), (b, b)], fold_of, [3, 2])
    keys = [key for key in a.keys if fold_of[key] >= 2]
    mean = Scored(a.keys, a.labels, (a.probs + b.probs) / 2)
    assert judged["folds"] == [2, 3] and judged["other_folds"] == [0, 1]
    assert judged["a"]["photos"] == judged["mean_with_nested_prior"]["photos"] == len(keys) == n // 2
    temperature, bias = fit_prior(mean.subset([key for key in a.keys if fold_of[key] < 2]), kaggle_prior(1.0))
    expected = Scored(keys, mean.subset(keys).labels, apply_prior(mean.subset(keys).probs, temperature, bias))
    assert judged["mean_with_prior"]["top1"] == pytest.approx(figures(expected)["top1"])
    assert judged["mean_with_prior"]["recall"] == pytest.approx(figures(expected)["recall"])
    assert judged["prior_versus"]["b"]["photos"] == len(keys)


def test_an_ensemble_is_paired_against_a_rival_ensemble_given_the_same_prior() -> None:
    """Three members against the rival pair of the first two, over three folds: the rival's figures are the pair's
    own (as `ensemble` scores it), each treatment pairs like with like, a sure third member shows, and a rival of
    the same members differs by nothing under any treatment; on a judged fold the rival is judged as the pair is."""
    n = 600
    a, b = _members_on_kaggles_mix(n, knowledge=1.0)
    c = _members_on_kaggles_mix(n, knowledge=3.0)[1]  # a far surer member
    fold_of = {key: i % 3 for i, key in enumerate(a.keys)}
    three, pair = [(a, a), (b, b), (c, c)], [(a, a), (b, b)]
    pair_alone, three_alone = ensemble(pair, fold_of, prior_sweep=True), ensemble(three, fold_of, prior_sweep=True)
    result = versus_rival(three, pair, fold_of, nested=True)
    assert result["mean"] == {**pair_alone["mean_figures"], "flip_test": pair_alone["mean_flip_test"]}
    assert result["mean_with_prior"] == pair_alone["mean_with_prior"]
    assert result["mean_with_nested_prior"] == pair_alone["mean_with_nested_prior"]
    assert result["mean_versus"]["top1_difference"] > 0.05
    assert result["mean_versus"]["top1_difference"] == pytest.approx(
        three_alone["mean_figures"]["top1"] - pair_alone["mean_figures"]["top1"])
    assert result["prior_versus"]["top1_difference"] == pytest.approx(
        three_alone["mean_with_prior"]["top1"] - pair_alone["mean_with_prior"]["top1"])
    assert result["nested_prior_versus"]["top1_difference"] == pytest.approx(
        three_alone["mean_with_nested_prior"]["top1"] - pair_alone["mean_with_nested_prior"]["top1"])
    assert result["nested_prior_versus"]["right"]["only_a"] > result["nested_prior_versus"]["right"]["only_b"]
    same = versus_rival(pair, pair, fold_of, nested=True)
    for key in ("mean_versus", "prior_versus", "nested_prior_versus"):
        assert same[key]["top1_difference"] == 0.0 and same[key]["same_answer"] == 1.0
    assert "mean_with_nested_prior" not in versus_rival(three, pair, fold_of)  # the nested prior is asked for
    judged = judged_fold(three, fold_of, [2], rival=pair)
    pair_judged = judged_fold(pair, fold_of, [2])
    assert judged["rival"]["mean"]["top1"] == pytest.approx(pair_judged["mean"]["top1"])
    assert judged["rival"]["mean_with_prior"] == pair_judged["mean_with_prior"]
    assert judged["rival"]["mean_with_nested_prior"] == pair_judged["mean_with_nested_prior"]
    assert judged["rival"]["prior_versus"]["top1_difference"] == pytest.approx(
        judged["mean_with_prior"]["top1"] - pair_judged["mean_with_prior"]["top1"])
    assert judged["rival"]["prior_versus"]["photos"] == n // 3
    assert "rival" not in pair_judged


EXPERIMENT = Path(__file__).resolve().parents[1] / "training" / "experiments"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.skipif(not (DATA / "cassava").is_dir(), reason="needs ../shared/data/cassava (the photos' labels)")
def test_a_committed_run_against_itself_differs_by_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(EXPERIMENT.parents[1])
    run = Path("training/experiments/v3-onelook-320/onelook-fold4")
    report = compare_runs([run], [run])
    assert report["difference"]["photos"] == 201
    assert report["difference"]["top1_difference"] == 0.0
    assert report["difference"]["right"]["only_a"] == report["difference"]["right"]["only_b"] == 0
    assert report["difference"]["flipped"]["only_a"] == 0
    assert report["a_figures"]["flip_test"]["flipped"] == 15  # the card's figure for this run
    assert report["mean_figures"]["top1"] == report["a_figures"]["figures"]["top1"]  # a run averaged with itself
    assert report["mean_flip_test"]["flipped"] == 15
    for arm in ("a", "b"):
        assert report["mean_versus"][arm]["right"]["only_a"] == report["mean_versus"][arm]["right"]["only_b"] == 0
        assert report["mean_versus"][arm]["flipped"]["only_a"] == report["mean_versus"][arm]["flipped"]["only_b"] == 0


@pytest.mark.skipif(not (DATA / "cassava").is_dir(), reason="needs ../shared/data/cassava (the photos' labels)")
def test_arms_of_several_folds_pool_their_photos(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two folds per arm: the photos add up, and the pooled counts are the sums of the per-fold ones."""
    monkeypatch.chdir(EXPERIMENT.parents[1])
    root = Path("training/experiments/v3-onelook-320")
    fold0, fold4 = root / "onelook-fold0", root / "onelook-fold4"
    with pytest.raises(ValueError, match="different photos"):
        compare_runs([fold0], [fold4])
    pooled = compare_runs([fold0, fold4], [fold4, fold0])  # the order of an arm's runs does not matter
    per_fold = [compare_runs([fold], [fold]) for fold in (fold0, fold4)]
    assert pooled["difference"]["photos"] == sum(r["difference"]["photos"] for r in per_fold) > 201
    assert pooled["difference"]["top1_difference"] == 0.0
    assert pooled["a_figures"]["folds"] == [0, 4] and pooled["b_figures"]["folds"] == [4, 0]
    assert pooled["a_figures"]["flip_test"]["flipped"] == sum(r["a_figures"]["flip_test"]["flipped"] for r in per_fold)
    with pytest.raises(ValueError, match="same photo"):
        compare_runs([fold0, fold0], [fold0, fold4])
    with pytest.raises(ValueError, match="other photos"):
        compare_runs([fold0], [fold0], [[fold4]])  # a third member validated elsewhere
    three = compare_runs([fold0, fold4], [fold0, fold4], [[fold4, fold0]])
    assert three["mean_figures"] == pooled["a_figures"]["figures"]  # one model thrice is that model
    assert len(three["also_figures"]) == 1 and "also" not in pooled
    with pytest.raises(ValueError, match="other photos"):
        compare_runs([fold0], [fold0], rival=[[fold4]])  # a rival validated elsewhere
    rivalled = compare_runs([fold0, fold4], [fold0, fold4], rival=[[fold4, fold0]])
    assert rivalled["rival_ensemble"]["mean"] == {**pooled["a_figures"]["figures"],
                                                  "flip_test": pooled["a_figures"]["flip_test"]}
    assert rivalled["rival_ensemble"]["prior_versus"]["top1_difference"] == 0.0
    assert "rival_ensemble" not in pooled


PAIRED_REPORTS = sorted(EXPERIMENT.glob("*/paired-*.json"))


@pytest.mark.skipif(not (DATA / "cassava").is_dir(), reason="needs ../shared/data/cassava (the photos' labels)")
@pytest.mark.parametrize("path", PAIRED_REPORTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_a_committed_paired_report_follows_from_its_probabilities(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The card's paired figures, recomputed from the committed per-photo probabilities (no model)."""
    import json

    monkeypatch.chdir(EXPERIMENT.parents[1])
    report = json.loads(path.read_text())
    also = [[Path(run) for run in runs] for runs in report.get("also", [])]
    judge = report["judged_fold"]["folds"] if "judged_fold" in report else ()
    rival = [[Path(run) for run in runs] for runs in report.get("rival", [])]
    again = compare_runs([Path(run) for run in report["a"]], [Path(run) for run in report["b"]], also,
                         report.get("prior_strength", 1.0), "prior_sweep" in report, report.get("prior_fit_exclude", ()),
                         judge, rival)
    for key in ("top1_difference", "macro_recall_difference", "same_answer"):
        assert again["difference"][key] == pytest.approx(report["difference"][key])
    assert again["difference"]["right"] == report["difference"]["right"]
    assert again["difference"]["flipped"] == report["difference"]["flipped"]
    assert again["mean_figures"]["top1"] == pytest.approx(report["mean_figures"]["top1"])
    assert again["mean_flip_test"]["flipped"] == report["mean_flip_test"]["flipped"]
    assert ("mean_with_prior" in again) == ("mean_with_prior" in report)
    if "mean_with_prior" in report:
        assert again["mean_with_prior"]["top1"] == pytest.approx(report["mean_with_prior"]["top1"])
        assert again["mean_with_prior"]["macro_recall"] == pytest.approx(report["mean_with_prior"]["macro_recall"])
        assert again["prior_fit"]["bias"] == pytest.approx(report["prior_fit"]["bias"])
        assert again["prior_fit"]["photos"] == report["prior_fit"]["photos"]
    if "prior_sweep" in report:
        for row, committed in zip(again["prior_sweep"], report["prior_sweep"], strict=True):
            assert row == pytest.approx(committed)
        assert again["mean_with_nested_prior"]["top1"] == pytest.approx(report["mean_with_nested_prior"]["top1"])
    if judge:
        for part in ("a", "b", "mean", "mean_with_prior", "mean_with_nested_prior"):
            if part in report["judged_fold"]:
                assert again["judged_fold"][part]["top1"] == pytest.approx(report["judged_fold"][part]["top1"])
                assert again["judged_fold"][part]["recall"] == pytest.approx(report["judged_fold"][part]["recall"])
    for arm in ("a", "b"):
        assert again["mean_versus"][arm]["right"] == report["mean_versus"][arm]["right"]
        assert again["mean_versus"][arm]["flipped"] == report["mean_versus"][arm]["flipped"]
    assert ("rival_ensemble" in again) == ("rival_ensemble" in report)
    rivals = [(again["rival_ensemble"], report["rival_ensemble"])] if rival else []
    if rival and judge:
        rivals.append((again["judged_fold"]["rival"], report["judged_fold"]["rival"]))
    for recomputed, committed in rivals:
        assert recomputed["mean"]["top1"] == pytest.approx(committed["mean"]["top1"])
        assert recomputed["mean"]["flip_test"]["flipped"] == committed["mean"]["flip_test"]["flipped"]
        for key in ("mean_versus", "prior_versus", "nested_prior_versus"):
            if key in committed:
                assert recomputed[key]["right"] == committed[key]["right"]
                assert recomputed[key]["macro_recall_difference"] == pytest.approx(committed[key]["macro_recall_difference"])
