"""Paired comparison of two recipes validated on the same photos (issue 17: the same fold with and without
``--one-look``, at equal cost).

Two runs scored on the same photos differ far less by chance than their two intervals suggest: most photos are
right (or wrong) under both. The question is only how the photos where they disagree split, so the comparison
counts those (an exact McNemar test) and bootstraps the differences of top-1 and macro recall over photos, the same
resampled photos for both runs. The flip test is compared the same way: photos whose answer changes under the
Roboflow look in one run and not in the other::

    python -m training.paired runs/v3b/onelook-384-fold4 runs/v3b/plain-384-fold4 --output paired.json

Over several folds, each arm's runs (one per fold) are pooled, as out-of-fold figures are::

    python -m training.paired runs/v3b/onelook-384-fold{0,4} --versus runs/v3/onelook-fold{0,4}

A fold kept out of every decision judges the decisions made on the others (`--judge-fold K`, repeatable): the same
figures on that fold's photos alone, its prior fitted (and its strength chosen) on the other folds only.

Whether one more member pays is a question of two ensembles on the same photos, each given the same prior: the
ensemble of a, b and `--also` is paired against a rival ensemble, one `--rival` per member::

    python -m training.paired A0 A1 A2 --versus B0 B1 B2 --also C0 C1 C2 --rival A0 A1 A2 --rival C0 C1 C2
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from cassava_edge.metadata import CASSAVA_LABELS

from .oof import (KAGGLE_COUNTS, PLAN, PRIOR_STRENGTHS, Scored, cross_fitted_prior, cross_fitted_prior_of_fold,
                  evaluate_runs, figures, fit_prior, flip_share, folds_of_runs, kaggle_prior, macro_recall, nested_prior,
                  nested_prior_of_fold, read_probabilities)


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Exact two-sided McNemar p-value: under 'no difference' each disagreement is a fair coin."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def discordant(a: np.ndarray, b: np.ndarray) -> dict:
    """How two per-photo yes/no outcomes (right answer, flipped answer) disagree."""
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    return {"only_a": only_a, "only_b": only_b, "both": int((a & b).sum()), "mcnemar_p": mcnemar_p(only_a, only_b)}


def aligned(a: Scored, b: Scored,
            different_photos: str = "the two runs were validated on different photos: compare runs of the same fold",
            ) -> Scored:
    """b's rows in a's order; refuses runs validated on other photos (with `different_photos`) or that give a photo
    other labels."""
    if sorted(a.keys) != sorted(b.keys):
        raise ValueError(different_photos)
    b = b.subset(a.keys)
    if not np.array_equal(a.labels, b.labels):
        raise ValueError("the two runs give the same photo different labels")
    return b


def paired(a: Scored, b: Scored, bootstrap: int = 2000, seed: int = 0) -> dict:
    """a minus b on the same photos: top-1 and macro-recall differences with percentile-bootstrap intervals,
    the discordant photos of top-1, and how often the two answer alike."""
    b = aligned(a, b)
    pred_a, pred_b = a.probs.argmax(1), b.probs.argmax(1)
    right_a, right_b = pred_a == a.labels, pred_b == a.labels
    rng = np.random.default_rng(seed)
    n = len(a.labels)
    top1, macro = [], []
    for rows in (rng.integers(0, n, n) for _ in range(bootstrap)):
        top1.append(right_a[rows].mean() - right_b[rows].mean())
        macro.append(macro_recall(a.labels[rows], pred_a[rows]) - macro_recall(a.labels[rows], pred_b[rows]))
    return {
        "photos": n,
        "top1_difference": float(right_a.mean() - right_b.mean()),
        "top1_difference_ci95": [float(np.percentile(top1, 2.5)), float(np.percentile(top1, 97.5))],
        "macro_recall_difference": macro_recall(a.labels, pred_a) - macro_recall(a.labels, pred_b),
        "macro_recall_difference_ci95": [float(np.percentile(macro, 2.5)), float(np.percentile(macro, 97.5))],
        "right": discordant(right_a, right_b),
        "same_answer": float(np.mean(pred_a == pred_b)),
    }


def _concat(parts: list[Scored]) -> Scored:
    return Scored([k for p in parts for k in p.keys], np.concatenate([p.labels for p in parts]),
                  np.concatenate([p.probs for p in parts]))


def _arm(runs: Sequence[Path]) -> tuple[dict, Scored, Scored]:
    """One arm's pooled figures and flip test (as training.oof reports them), its own probabilities and its
    Roboflow-look ones, rows aligned."""
    report = evaluate_runs(list(runs), None, None)  # refuses two runs of one arm on the same photos
    pooled = {key: value for key, value in report["oof"].items() if key not in ("flip_test", "with_prior")}
    entries = list(report["runs"].values())
    summary = {"folds": [entry["fold"] for entry in entries],
               "excluded": sorted({fold for entry in entries for fold in entry["excluded"]}),
               "figures": pooled, "flip_test": report["oof"]["flip_test"]}
    own = _concat([read_probabilities(run / f"last.{PLAN}.probabilities.csv") for run in runs])
    # evaluate_runs cached each run's Roboflow-look probabilities beside its own ones.
    look = _concat([read_probabilities(run / f"last.{PLAN}.roboflow-look.probabilities.csv") for run in runs])
    return summary, own, look.subset(own.keys)


def _versus(own_a: Scored, look_a: Scored, own_b: Scored, look_b: Scored) -> dict:
    """`paired` of a against b, plus how their flip tests disagree (photos whose answer changes under the
    Roboflow look in one and not in the other). Each look's rows must follow its own run's."""
    result = paired(own_a, own_b)  # refuses runs validated on different photos
    own_b, look_b = own_b.subset(own_a.keys), look_b.subset(own_a.keys)
    flipped_a = own_a.probs.argmax(1) != look_a.probs.argmax(1)
    flipped_b = own_b.probs.argmax(1) != look_b.probs.argmax(1)
    result["flipped"] = discordant(flipped_a, flipped_b)
    return result


def compare_runs(runs_a: Sequence[Path], runs_b: Sequence[Path], also: Sequence[Sequence[Path]] = (),
                 prior_strength: float = 1.0, prior_sweep: bool = False, prior_fit_exclude: Sequence[str] = (),
                 judge_folds: Sequence[int] = (), rival: Sequence[Sequence[Path]] = ()) -> dict:
    """Each arm's figures and flip test, pooled over its runs (one per fold, as out-of-fold figures are), and the
    paired differences over all their photos. Both arms must have been validated on the same photos.

    The two arms are also scored as a two-model ensemble (their mean probabilities, under each look): what a
    teacher or a shipped pair made of both would answer. Its own flip test and its paired tests against each arm
    say whether the pair beats its members beyond chance. Each arm of `also` (validated on the same photos) joins
    that ensemble as one more member, to ask whether a third model adds to the pair. `prior_strength`,
    `prior_sweep` and `prior_fit_exclude` (FOLDER[=IDS] specs, recorded in the report) go to `ensemble_prior`;
    `judge_folds` adds the same figures on those folds' photos alone (`judged_fold`). `rival` (each member's runs,
    validated on the same photos) is a second ensemble the first is paired against (`versus_rival`), pooled and on
    the judged folds."""
    report: dict = {"a": [str(run) for run in runs_a], "b": [str(run) for run in runs_b]}
    report["a_figures"], own_a, look_a = _arm(runs_a)
    report["b_figures"], own_b, look_b = _arm(runs_b)
    report["difference"] = _versus(own_a, look_a, own_b, look_b)
    own_b, look_b = own_b.subset(own_a.keys), look_b.subset(own_a.keys)
    members = [(own_a, look_a), (own_b, look_b)]
    if also:
        report["also"], report["also_figures"] = [[str(run) for run in runs] for runs in also], []
        for runs in also:
            summary, own, look = _member(own_a, runs)
            report["also_figures"].append(summary)
            members.append((own, look))
    # A rival's member is usually one of the ensemble's own (the pair an extra member is judged against): reuse it.
    read = {frozenset(map(Path, runs)): member for runs, member in zip([runs_a, runs_b, *also], members)}
    if prior_fit_exclude:
        report["prior_fit_exclude"] = list(prior_fit_exclude)
    fold_of = folds_of_runs(list(runs_a))[1]
    # Corrected once here, as both the ensemble's own figures and its pairing against a rival need them.
    corrected = prior_corrected(member_means(members)[0], fold_of, prior_strength, prior_sweep)
    report.update(ensemble(members, fold_of, prior_strength, prior_sweep, parse_judged(prior_fit_exclude), corrected))
    rival_members = [read.get(frozenset(map(Path, runs))) or _member(own_a, runs)[1:] for runs in rival]
    if rival:
        report["rival"] = [[str(run) for run in runs] for runs in rival]
        report["rival_ensemble"] = versus_rival(members, rival_members, fold_of, prior_strength, prior_sweep,
                                                corrected)
    if judge_folds:
        report["judged_fold"] = judged_fold(members, fold_of, judge_folds, prior_strength, rival_members)
    return report


def _member(own_a: Scored, runs: Sequence[Path]) -> tuple[dict, Scored, Scored]:
    """One more ensemble member (`--also`, `--rival`) as `_arm` reads it, its rows in arm a's order; refuses runs
    validated on other photos."""
    summary, own, look = _arm(runs)
    own = aligned(own_a, own, f"{', '.join(map(str, runs))} were validated on other photos than arm a's runs")
    return summary, own, look.subset(own_a.keys)


def versus_rival(members: Sequence[tuple[Scored, Scored]], rival: Sequence[tuple[Scored, Scored]],
                 fold_of: dict[tuple[str, str], int], prior_strength: float = 1.0, nested: bool = False,
                 corrected: PriorCorrected | None = None) -> dict:
    """The ensemble of `members` against a rival ensemble on the same photos, each treated alike: their mean
    probabilities (with the flip test), each with the Kaggle prior at `prior_strength` cross-fitted per fold (two
    folds or more), and with `nested` (three folds or more) each with the prior's strength chosen out of fold.
    Pairing the ensemble against one member alone mixes the gain of the extra member with the prior's; against an
    ensemble given the same prior, only the member is left to differ. The rival's figures, in `judged_fold`'s
    shape, and each paired difference as ours minus the rival's. `corrected` is the ensemble's own
    `prior_corrected`, when the caller has it already."""
    ours, ours_look = member_means(members)
    theirs, theirs_look = member_means(rival)
    report: dict = {"mean": {**figures(theirs), "flip_test": flip_share(theirs, theirs_look)},
                    "mean_versus": _versus(ours, ours_look, theirs, theirs_look)}
    ours_corrected = corrected or prior_corrected(ours, fold_of, prior_strength, nested)
    theirs_corrected = prior_corrected(theirs, fold_of, prior_strength, nested)
    if ours_corrected is None or theirs_corrected is None:
        return report
    report["mean_with_prior"] = figures(theirs_corrected.with_prior)
    report["prior_versus"] = paired(ours_corrected.with_prior, theirs_corrected.with_prior)
    if ours_corrected.nested is not None and theirs_corrected.nested is not None:
        report["mean_with_nested_prior"] = {**figures(theirs_corrected.nested), "strengths": theirs_corrected.strengths}
        report["nested_prior_versus"] = paired(ours_corrected.nested, theirs_corrected.nested)
    return report


JUDGED = -1  # the pseudo-fold judged_fold gathers its judged folds into (real folds count from 0)


def judged_fold(members: Sequence[tuple[Scored, Scored]], fold_of: dict[tuple[str, str], int],
                folds: Sequence[int], prior_strength: float = 1.0,
                rival: Sequence[tuple[Scored, Scored]] = ()) -> dict:
    """Members a and b and their ensemble on the photos of the judged folds alone, with the ensemble's prior fitted
    on the other folds only (at `prior_strength`, and, with two other folds or more, at the strength chosen on them
    too), and each paired against a and b there. Out-of-fold figures pooled over folds can hide a choice made on
    those same folds (which recipe, which prior); folds that took no part in the choice say whether it holds.
    Several judged folds are judged as one: the prior is fitted once, on the others. A `rival` ensemble is judged
    there the same way, and paired against this one (`rival`)."""
    (own_a, look_a), (own_b, look_b) = members[0], members[1]
    judged = sorted(set(folds))
    held = sorted({fold_of[key] for key in own_a.keys})
    # The judged folds become one pseudo-fold, so the per-fold fits below leave all of them out at once.
    fold_of = {key: JUDGED if fold in judged else fold for key, fold in fold_of.items()}
    keys = [key for key in own_a.keys if fold_of[key] == JUDGED]
    others = {fold_of[key] for key in own_a.keys} - {JUDGED}
    if not judged or not set(judged) <= set(held) or not others:
        raise ValueError(f"cannot judge folds {judged}: the runs hold folds {held}, and the judged folds need "
                         "another fold to fit their prior on")
    own_mean, look_mean = member_means(members)
    on_fold = {name: (own.subset(keys), look.subset(keys))
               for name, (own, look) in (("a", (own_a, look_a)), ("b", (own_b, look_b)), ("mean", (own_mean, look_mean)))}
    report: dict = {"folds": judged, "other_folds": sorted(others)}
    for name, (own, look) in on_fold.items():
        report[name] = {**figures(own), "flip_test": flip_share(own, look)}
    report["difference"] = _versus(*on_fold["a"], *on_fold["b"])
    report["mean_versus"] = {name: _versus(*on_fold["mean"], *on_fold[name]) for name in ("a", "b")}
    with_prior = cross_fitted_prior_of_fold(own_mean, fold_of, JUDGED, kaggle_prior(prior_strength))
    report["mean_with_prior"] = figures(with_prior)
    report["prior_versus"] = {name: paired(with_prior, on_fold[name][0]) for name in ("a", "b")}
    if len(others) >= 2:  # the strength's choice is itself cross-fitted over the other folds
        nested, strength = nested_prior_of_fold(own_mean, fold_of, JUDGED)
        report["mean_with_nested_prior"] = {**figures(nested), "strength": strength}
        report["nested_prior_versus"] = {name: paired(nested, on_fold[name][0]) for name in ("a", "b")}
    if rival:
        theirs, theirs_look = member_means(rival)
        theirs_on_fold = theirs.subset(keys), theirs_look.subset(keys)
        versus: dict = {"mean": {**figures(theirs_on_fold[0]), "flip_test": flip_share(*theirs_on_fold)},
                        "mean_versus": _versus(*on_fold["mean"], *theirs_on_fold)}
        theirs_prior = cross_fitted_prior_of_fold(theirs, fold_of, JUDGED, kaggle_prior(prior_strength))
        versus["mean_with_prior"] = figures(theirs_prior)
        versus["prior_versus"] = paired(with_prior, theirs_prior)
        if len(others) >= 2:
            theirs_nested, theirs_strength = nested_prior_of_fold(theirs, fold_of, JUDGED)
            versus["mean_with_nested_prior"] = {**figures(theirs_nested), "strength": theirs_strength}
            versus["nested_prior_versus"] = paired(nested, theirs_nested)
        report["rival"] = versus
    return report


Judged = tuple[tuple[str, frozenset[str] | None], ...]  # (folder name, its ids or None for all of its photos)


def parse_judged(specs: Sequence[str]) -> Judged:
    """`--prior-fit-exclude FOLDER[=IDS]` values, read as `training.candidates --photos` reads its own: a folder's
    photos (by its name), or only the ids listed in IDS."""
    from cassava_edge.labelled import read_ids

    judged = []
    for spec in specs:
        folder, _, ids = spec.partition("=")
        judged.append((Path(folder).name, frozenset(read_ids(ids)) if ids else None))
    return tuple(judged)


def is_judged(key: tuple[str, str], judged: Judged) -> bool:
    return any(key[0] == folder and (ids is None or key[1] in ids) for folder, ids in judged)


class PriorCorrected(NamedTuple):
    """An ensemble's mean probabilities with the Kaggle prior: at one strength, cross-fitted per fold, and (when
    asked for, from three folds on) with the strength chosen out of fold, and each fold's chosen strength."""
    with_prior: Scored
    nested: Scored | None = None
    strengths: dict[int, float] | None = None


def prior_corrected(mean: Scored, fold_of: dict[tuple[str, str], int], strength: float = 1.0,
                    nested: bool = False) -> PriorCorrected | None:
    """`mean` with the prior at `strength` cross-fitted per fold and, with `nested`, `oof.nested_prior`'s
    correction. None for photos of one fold, where there is nothing to fit the prior on but the photos scored."""
    folds = {fold_of[key] for key in mean.keys}
    if len(folds) < 2:
        return None
    with_prior = cross_fitted_prior(mean, fold_of, kaggle_prior(strength))
    if nested and len(folds) >= 3:
        return PriorCorrected(with_prior, *nested_prior(mean, fold_of))
    return PriorCorrected(with_prior)


def ensemble_prior(mean: Scored, fold_of: dict[tuple[str, str], int], members: dict[str, Scored],
                   strength: float = 1.0, sweep: bool = False, fit_exclude: Judged = (),
                   corrected: PriorCorrected | None = None) -> dict:
    """The deployment prior (issue 17, item 6) for the ensemble: its figures with the Kaggle prior at `strength`
    (`oof.kaggle_prior`), each fold's photos corrected by a prior fitted on the other folds' photos (so never on
    the photos scored), paired against each of `members` (name -> its own probabilities, rows as `mean`'s) as it
    answers alone; and the fit on all its photos but those of `fit_exclude` (the photos a shipped model is judged
    on), for `python -m export.prior` to write into a joined model that none of these photos trained. With
    `sweep`, the figures at every strength too (the trade of top-1 for macro recall) and, from three folds on, with
    the strength chosen out of fold as well (`oof.nested_prior`). `corrected` is `prior_corrected(mean, fold_of,
    strength, sweep)` when the caller has it already. Empty for photos of one fold, where there is nothing to fit
    the prior on but the photos scored."""
    corrected = corrected or prior_corrected(mean, fold_of, strength, sweep)
    if corrected is None:
        return {}
    fit_on = mean.subset([key for key in mean.keys if not is_judged(key, fit_exclude)])
    temperature, bias = fit_prior(fit_on, kaggle_prior(strength))
    with_prior = corrected.with_prior
    report = {"kaggle_prior": KAGGLE_COUNTS, "prior_strength": strength, "mean_with_prior": figures(with_prior),
              "prior_versus": {name: paired(with_prior, own) for name, own in members.items()},
              "prior_fit": {"photos": len(fit_on.keys), "excluded_photos": len(mean.keys) - len(fit_on.keys),
                            "strength": strength, "temperature": temperature,
                            "bias": dict(zip(CASSAVA_LABELS, map(float, bias)))}}
    if sweep:
        report["prior_sweep"] = []
        for each in PRIOR_STRENGTHS:
            corrected_at = with_prior if each == strength else cross_fitted_prior(mean, fold_of, kaggle_prior(each))
            predicted = corrected_at.probs.argmax(1)
            report["prior_sweep"].append({"strength": each, "top1": float(np.mean(predicted == mean.labels)),
                                          "macro_recall": macro_recall(mean.labels, predicted)})
        if corrected.nested is not None:
            report["mean_with_nested_prior"] = {**figures(corrected.nested), "strengths": corrected.strengths}
            report["nested_prior_versus"] = {name: paired(corrected.nested, own) for name, own in members.items()}
    return report


def member_means(members: Sequence[tuple[Scored, Scored]]) -> tuple[Scored, Scored]:
    """The ensemble's probabilities under each look: the members' mean of their own ones, and of their Roboflow-look
    ones (every member holds the same photos in the same order)."""
    own_a = members[0][0]
    return (Scored(own_a.keys, own_a.labels, np.mean([own.probs for own, _ in members], axis=0)),
            Scored(own_a.keys, own_a.labels, np.mean([look.probs for _, look in members], axis=0)))


def ensemble(members: Sequence[tuple[Scored, Scored]], fold_of: dict[tuple[str, str], int] | None = None,
             prior_strength: float = 1.0, prior_sweep: bool = False, prior_fit_exclude: Judged = (),
             corrected: PriorCorrected | None = None) -> dict:
    """Models' mean probabilities (under each look) scored as one model: its figures, its flip test, its paired
    tests against the first two members (a and b) and, given each photo's fold, its deployment prior
    (`ensemble_prior`). Each member is (its own probabilities, its Roboflow-look ones); all hold the same photos
    in the same order. `corrected` goes to `ensemble_prior`."""
    (own_a, look_a), (own_b, look_b) = members[0], members[1]
    own_mean, look_mean = member_means(members)
    return {"mean_figures": figures(own_mean), "mean_flip_test": flip_share(own_mean, look_mean),
            "mean_versus": {"a": _versus(own_mean, look_mean, own_a, look_a),
                            "b": _versus(own_mean, look_mean, own_b, look_b)},
            **(ensemble_prior(own_mean, fold_of, {"a": own_a, "b": own_b}, prior_strength, prior_sweep,
                              prior_fit_exclude, corrected) if fold_of is not None else {})}


def _print_versus_members(versus_by_member: dict[str, dict]) -> None:
    """The ensemble with a prior against each member alone (ensemble_prior's `prior_versus` and the nested one)."""
    for name, versus in versus_by_member.items():
        print(f"  that - {name}: top-1 {versus['top1_difference']:+.1%} (McNemar p {versus['right']['mcnemar_p']:.3f}),"
              f" macro recall {versus['macro_recall_difference']:+.1%}")


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Paired comparison of two recipes validated on the same photos.")
    parser.add_argument("runs", nargs="+", type=Path,
                        help="run A and run B; or, with --versus, arm A's runs (one per fold)")
    parser.add_argument("--versus", nargs="+", type=Path, default=None,
                        help="arm B's runs, validated on the same folds as arm A's")
    parser.add_argument("--also", nargs="+", type=Path, action="append", default=[], metavar="RUN",
                        help="one more ensemble member's runs (one per fold, validated on arm A's photos); repeatable")
    parser.add_argument("--prior-strength", type=float, default=1.0,
                        help="the ensemble's deployment prior: Kaggle's class shares to this power (1: Kaggle's mix, "
                             "0: every class alike; default 1)")
    parser.add_argument("--prior-sweep", action="store_true",
                        help="also score the ensemble's prior at every strength, and (three folds or more) with the "
                             "strength chosen out of fold")
    parser.add_argument("--prior-fit-exclude", action="append", default=[], metavar="FOLDER[=IDS]",
                        help="photos the prior written for export is not fitted on (a folder's, or only the ids "
                             "listed in IDS): those a shipped model is judged on; repeatable")
    parser.add_argument("--judge-fold", type=int, action="append", default=[], metavar="K",
                        help="also report the figures on fold K's photos alone, its prior fitted on the other folds; "
                             "repeatable (the folds are judged together)")
    parser.add_argument("--rival", nargs="+", type=Path, action="append", default=[], metavar="RUN",
                        help="one member of a rival ensemble (its runs, one per fold, validated on arm A's photos), "
                             "paired against the ensemble of A, B and --also with the same prior; repeatable")
    parser.add_argument("--output", type=Path, default=None, help="write the report as JSON here")
    args = parser.parse_args()
    if not 0.0 <= args.prior_strength <= 1.0:
        parser.error(f"--prior-strength must be between 0 and 1, got {args.prior_strength}")
    if args.versus is None and len(args.runs) != 2:
        parser.error("give two runs, or arm A's runs then --versus and arm B's")
    runs_a, runs_b = (args.runs, args.versus) if args.versus is not None else (args.runs[:1], args.runs[1:])
    try:
        report = compare_runs(runs_a, runs_b, args.also, args.prior_strength, args.prior_sweep,
                              args.prior_fit_exclude, args.judge_fold, args.rival)
    except (OSError, ValueError, KeyError) as error:
        raise SystemExit(f"error: {error}") from None
    if args.output:
        args.output.write_text(json.dumps(report, indent=2))
    d = report["difference"]
    for name in ("a", "b"):
        figures = report[f"{name}_figures"]["figures"]
        flips = report[f"{name}_figures"]["flip_test"]
        print(f"{name} {' + '.join(report[name])}: top-1 {figures['top1']:.1%}, "
              f"macro recall {figures['macro_recall']:.1%}, flip {flips['flipped']}/{flips['photos']}")
    for runs, arm in zip(report.get("also", []), report.get("also_figures", [])):
        print(f"also {' + '.join(runs)}: top-1 {arm['figures']['top1']:.1%}, "
              f"macro recall {arm['figures']['macro_recall']:.1%}, flip {arm['flip_test']['flipped']}/{arm['flip_test']['photos']}")
    mean, mean_flips = report["mean_figures"], report["mean_flip_test"]
    members = "a and b" if "also" not in report else f"a, b and {len(report['also'])} more"
    print(f"mean of {members}: top-1 {mean['top1']:.1%}, macro recall {mean['macro_recall']:.1%}, "
          f"flip {mean_flips['flipped']}/{mean_flips['photos']}")
    if "mean_with_prior" in report:
        prior = report["mean_with_prior"]
        print(f"mean of {members} with the Kaggle prior at strength {report['prior_strength']:g} (cross-fitted per "
              f"fold): top-1 {prior['top1']:.1%}, macro recall {prior['macro_recall']:.1%}")
        _print_versus_members(report["prior_versus"])
        if "prior_sweep" in report:
            print("  by strength: " + ", ".join(f"{row['strength']:g}: {row['top1']:.1%} / "
                                                f"{row['macro_recall']:.1%}" for row in report["prior_sweep"]))
    if "mean_with_nested_prior" in report:
        nested = report["mean_with_nested_prior"]
        print(f"mean of {members} with the strength chosen out of fold ({nested['strengths']}): top-1 "
              f"{nested['top1']:.1%}, macro recall {nested['macro_recall']:.1%}")
        _print_versus_members(report["nested_prior_versus"])
    for name in ("a", "b"):
        versus = report["mean_versus"][name]
        print(f"mean - {name}: top-1 {versus['top1_difference']:+.1%} (right only in the mean "
              f"{versus['right']['only_a']}, only in {name} {versus['right']['only_b']}, "
              f"McNemar p {versus['right']['mcnemar_p']:.3f}); flipped only in the mean {versus['flipped']['only_a']}, "
              f"only in {name} {versus['flipped']['only_b']} (p {versus['flipped']['mcnemar_p']:.3f})")
    print(f"a - b over {d['photos']} photos: top-1 {d['top1_difference']:+.1%} "
          f"[{d['top1_difference_ci95'][0]:+.1%}, {d['top1_difference_ci95'][1]:+.1%}] "
          f"(right only in a {d['right']['only_a']}, only in b {d['right']['only_b']}, "
          f"McNemar p {d['right']['mcnemar_p']:.3f}); macro recall {d['macro_recall_difference']:+.1%} "
          f"[{d['macro_recall_difference_ci95'][0]:+.1%}, {d['macro_recall_difference_ci95'][1]:+.1%}]; "
          f"flipped only in a {d['flipped']['only_a']}, only in b {d['flipped']['only_b']} "
          f"(p {d['flipped']['mcnemar_p']:.3f})")
    if "rival_ensemble" in report:
        _print_rival(report["rival_ensemble"], f"the rival ({len(report['rival'])} members)")
    if "judged_fold" in report:
        _print_judged_fold(report["judged_fold"])


def _print_rival(rival: dict, name: str) -> None:
    """The rival ensemble's figures and the ensemble minus the rival, as is and with each prior."""
    for part, versus, treatment in (("mean", "mean_versus", "as is"),
                                    ("mean_with_prior", "prior_versus", "with the prior"),
                                    ("mean_with_nested_prior", "nested_prior_versus", "with the nested prior")):
        if part in rival:
            figures, d = rival[part], rival[versus]
            print(f"{name} {treatment}: top-1 {figures['top1']:.1%}, macro recall {figures['macro_recall']:.1%}; "
                  f"the ensemble - the rival: top-1 {d['top1_difference']:+.1%} (right only in the ensemble "
                  f"{d['right']['only_a']}, only in the rival {d['right']['only_b']}, McNemar p "
                  f"{d['right']['mcnemar_p']:.3f}), macro recall {d['macro_recall_difference']:+.1%}")


def _print_judged_fold(judged: dict) -> None:
    print(f"on folds {judged['folds']} alone (their prior fitted on folds {judged['other_folds']}):")
    for name in ("a", "b", "mean", "mean_with_prior", "mean_with_nested_prior"):
        if name in judged:
            figures = judged[name]
            print(f"  {name}: top-1 {figures['top1']:.1%}, macro recall {figures['macro_recall']:.1%}")
    for key in ("prior_versus", "nested_prior_versus"):
        if key in judged:
            print(f"  {key}:")
            _print_versus_members(judged[key])
    if "rival" in judged:
        _print_rival(judged["rival"], "  the rival")


if __name__ == "__main__":
    main()
