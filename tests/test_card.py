"""The model card's experiment rows are copied from the committed reports (training/card.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cassava_edge_training.card import figures_row, overview_rows, report_part, rows

ROOT = Path(__file__).resolve().parents[1]
REPORTS = sorted((ROOT / "training" / "experiments").glob("*/*.json"))


def _figures(top1: float) -> dict:
    return {"photos": 200, "top1": top1, "top1_ci95": [0.7, 0.8], "macro_recall": 0.6,
            "macro_recall_ci95": [0.5, 0.7], "recall": {"CBB": 0.1, "CBSD": 0.2, "CGM": 0.3, "CMD": 0.9,
                                                        "Healthy": 0.8}}


def test_a_row_carries_every_figure() -> None:
    row = figures_row("run", _figures(0.755), {"photos": 200, "flipped": 9, "share": 0.045})
    assert row == ("| run | 200 | 75.5% [70.0, 80.0] | 60.0% [50.0, 70.0] | 0.10 / 0.20 / 0.30 / 0.90 / 0.80 | "
                   "9/200 (4.5%) |")
    assert figures_row("run", _figures(0.756)) != figures_row("run", _figures(0.755))


def test_there_are_committed_reports() -> None:
    assert REPORTS, "training/experiments holds no report"


@pytest.mark.parametrize("report", REPORTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_row_of_a_committed_report_is_in_the_card_word_for_word(report: Path) -> None:
    card = (ROOT / "models" / "README.md").read_text(encoding="utf-8")
    missing = [row for row in rows(json.loads(report.read_text(encoding="utf-8"))) if row not in card]
    assert not missing, f"models/README.md lacks (or changed) these rows of {report.name}:\n" + "\n".join(missing)


def test_a_paired_report_of_several_folds_names_every_run_of_each_arm() -> None:
    flips = {"photos": 400, "flipped": 9, "share": 0.0225}
    arm = {"folds": [0, 4], "excluded": [4], "figures": _figures(0.8), "flip_test": flips}
    discordant = {"only_a": 3, "only_b": 1, "both": 300, "mcnemar_p": 0.625}
    difference = {"photos": 400, "top1_difference": 0.005, "top1_difference_ci95": [-0.01, 0.02],
                  "macro_recall_difference": 0.0, "macro_recall_difference_ci95": [-0.02, 0.02],
                  "right": discordant, "same_answer": 0.99, "flipped": discordant}
    report = {"a": ["runs/x-fold0", "runs/x-fold4"], "b": ["runs/y-fold0", "runs/y-fold4"], "a_figures": arm,
              "b_figures": arm, "mean_figures": _figures(0.8), "mean_flip_test": {"photos": 400, "flipped": 4, "share": 0.01},
              "difference": difference,
              "mean_versus": {"a": {**difference, "top1_difference": 0.01}, "b": {**difference, "top1_difference": -0.02}}}
    first, _, mean, a_minus_b, mean_minus_a, mean_minus_b = rows(report)
    assert first.startswith("| `x-fold0` + `x-fold4` (validated on folds 0, 4) | 200 |")
    assert mean.endswith("| 4/400 (1.0%) |")  # the ensemble's own flip test
    assert a_minus_b.startswith("| (`x-fold0` + `x-fold4`) − (`y-fold0` + `y-fold4`) | 400 | +0.5 points")
    assert mean_minus_a.startswith("| the ensemble − the first | 400 | +1.0 points")
    assert "right only in the ensemble 3, only in the first 1" in mean_minus_a
    assert mean_minus_b.startswith("| the ensemble − the second | 400 | -2.0 points")
    with_prior = rows({**report, "mean_with_prior": _figures(0.85)})[3]  # photos of two folds: the deployment prior
    assert with_prior.startswith("| the ensemble, with the Kaggle prior (cross-fitted per fold) |")
    assert "85.0%" in with_prior
    # A prior at another strength says so; the strength chosen out of fold gets its own row, and the ensemble with
    # its prior is compared with each member alone (no flip test: figures with a prior have none).
    versus = {name: {key: value for key, value in difference.items() if key != "flipped"} for name in ("a", "b")}
    swept = rows({**report, "mean_with_prior": _figures(0.85), "prior_strength": 0.5,
                  "mean_with_nested_prior": {**_figures(0.83), "strengths": {"0": 0.5, "4": 0.75}},
                  "prior_versus": versus, "nested_prior_versus": versus})
    assert swept[3].startswith("| the ensemble, with the Kaggle prior to the power 0.5 (cross-fitted per fold) |")
    assert swept[4].startswith("| the ensemble, with the prior's strength chosen out of fold too (0.5, 0.75) |")
    assert swept[8].startswith("| the ensemble with the Kaggle prior to the power 0.5 − the first alone | 400 |")
    assert swept[11].startswith("| the ensemble with the nested prior − the second alone |") and swept[11].endswith("| — |")
    # A judged fold (training.paired --judge-fold): its rows name the fold and the folds its prior was fitted on.
    judged_figures = {**_figures(0.9), "flip_test": flips}
    judged = {"folds": [4], "other_folds": [0, 1, 2], "a": judged_figures, "b": judged_figures, "mean": judged_figures,
              "difference": difference, "mean_versus": {"a": difference, "b": difference},
              "mean_with_prior": _figures(0.87), "prior_versus": versus,
              "mean_with_nested_prior": {**_figures(0.86), "strength": 0.375}, "nested_prior_versus": versus}
    judged_rows = rows({**report, "judged_fold": judged})[6:]
    assert judged_rows[0].startswith("| on fold 4 alone: the first | 200 | 90.0%") and judged_rows[0].endswith("| 9/400 (2.2%) |")
    assert judged_rows[3].startswith("| on fold 4 alone: the ensemble, with the Kaggle prior fitted on folds 0, 1, 2 | 200 | 87.0%")
    assert judged_rows[4].startswith("| on fold 4 alone: the ensemble, the prior's strength chosen on folds 0, 1, 2 (0.375) |")
    assert judged_rows[5].startswith("| on fold 4 alone: the first − the second | 400 | +0.5 points")
    assert judged_rows[-1].startswith("| on fold 4 alone: the ensemble with the nested prior − the second alone |")
    assert len(judged_rows) == 12
    two = rows({**report, "judged_fold": {**judged, "folds": [3, 4], "other_folds": [0, 1, 2]}})[6:]
    assert two[0].startswith("| on folds 3 and 4 alone: the first | 200 |")
    assert two[3].startswith("| on folds 3 and 4 alone: the ensemble, with the Kaggle prior fitted on folds 0, 1, 2 |")
    assert report_part({"judged_fold": judged}, "judged_fold.mean_with_prior") == (_figures(0.87), None)
    assert report_part({"judged_fold": judged}, "judged_fold.a") == (judged_figures, flips)


def test_a_rival_ensemble_gets_its_own_rows_pooled_and_on_the_judged_folds() -> None:
    """training.paired --rival: the rival's figures under each treatment, then the ensemble minus the rival under
    the same treatment, pooled and (prefixed) on the judged folds."""
    flips = {"photos": 400, "flipped": 6, "share": 0.015}
    arm = {"folds": [0, 1, 2], "excluded": [], "figures": _figures(0.8), "flip_test": flips}
    discordant = {"only_a": 29, "only_b": 12, "both": 300, "mcnemar_p": 0.01}
    difference = {"photos": 400, "top1_difference": 0.017, "top1_difference_ci95": [0.005, 0.03],
                  "macro_recall_difference": 0.015, "macro_recall_difference_ci95": [-0.001, 0.031],
                  "right": discordant, "same_answer": 0.95}
    rival = {"mean": {**_figures(0.78), "flip_test": flips}, "mean_versus": {**difference, "flipped": discordant},
             "mean_with_prior": _figures(0.81), "prior_versus": difference,
             "mean_with_nested_prior": {**_figures(0.822), "strengths": {"0": 0.25, "1": 0.5, "2": 0.25}},
             "nested_prior_versus": difference}
    report = {"a": ["r/x-fold0", "r/x-fold1", "r/x-fold2"], "b": ["r/y-fold0", "r/y-fold1", "r/y-fold2"],
              "a_figures": arm, "b_figures": arm, "mean_figures": _figures(0.8), "mean_flip_test": flips,
              "difference": {**difference, "flipped": discordant},
              "mean_versus": {"a": {**difference, "flipped": discordant}, "b": {**difference, "flipped": discordant}},
              "rival": [["r/x-fold0", "r/x-fold1", "r/x-fold2"], ["r/z-fold0", "r/z-fold1", "r/z-fold2"]],
              "rival_ensemble": rival}
    rival_rows = rows(report)[6:]
    assert rival_rows[0].startswith("| the rival ensemble of (`x-fold0` + `x-fold1` + `x-fold2`) and (`z-fold0` + "
                                    "`z-fold1` + `z-fold2`) (mean probabilities) | 200 | 78.0%")
    assert rival_rows[0].endswith("| 6/400 (1.5%) |")
    assert rival_rows[1].startswith("| the rival, with the Kaggle prior | 200 | 81.0%")
    assert rival_rows[2].startswith("| the rival, with the prior's strength chosen out of fold (0.25, 0.5, 0.25) | 200 | 82.2%")
    assert rival_rows[3].startswith("| the ensemble − the rival | 400 | +1.7 points [0.5, 3.0], right only in the "
                                    "ensemble 29, only in the rival 12 (McNemar p 0.01) | +1.5 points [-0.1, 3.1] |")
    assert rival_rows[3].endswith("flipped only in the ensemble 29, only in the rival 12 (p 0.01) |")
    assert rival_rows[4].startswith("| the ensemble with the Kaggle prior − the rival with the Kaggle prior | 400 |")
    assert rival_rows[5].startswith("| the ensemble with the nested prior − the rival with the nested prior | 400 |")
    assert rival_rows[5].endswith("| — |") and len(rival_rows) == 6
    judged_figures = {**_figures(0.9), "flip_test": flips}
    versus = {"a": difference, "b": difference}
    judged = {"folds": [2], "other_folds": [0, 1], "a": judged_figures, "b": judged_figures, "mean": judged_figures,
              "difference": difference, "mean_versus": versus, "mean_with_prior": _figures(0.87),
              "prior_versus": versus,
              "rival": {"mean": {**_figures(0.84), "flip_test": flips}, "mean_versus": difference,
                        "mean_with_prior": _figures(0.83), "prior_versus": difference}}
    judged_rows = rows({**report, "judged_fold": judged})[12:]
    assert judged_rows[-4].startswith("| on fold 2 alone: the rival ensemble of the same members (mean probabilities) "
                                      "| 200 | 84.0%")
    assert judged_rows[-3].startswith("| on fold 2 alone: the rival, with the Kaggle prior fitted on folds 0, 1 | 200 | 83.0%")
    assert judged_rows[-2].startswith("| on fold 2 alone: the ensemble − the rival | 400 |")
    assert judged_rows[-1].startswith("| on fold 2 alone: the ensemble with the Kaggle prior fitted on folds 0, 1 − the "
                                      "rival with the Kaggle prior fitted on folds 0, 1 | 400 |")


OVERVIEW = ROOT / "training" / "experiments" / "overview.json"


def test_the_experiments_at_a_glance_are_in_the_card_word_for_word() -> None:
    """Item 7's table: one row per entry of overview.json, its figures read from the committed report it names."""
    overview = json.loads(OVERVIEW.read_text(encoding="utf-8"))
    card = (ROOT / "models" / "README.md").read_text(encoding="utf-8")
    table = overview_rows(overview, OVERVIEW.parent)
    assert len(table) == len(overview) and len(set(table)) == len(table)
    missing = [row for row in table if row not in card]
    assert not missing, "models/README.md lacks (or changed) these rows of overview.json:\n" + "\n".join(missing)


def test_a_report_part_is_found_by_name_or_refused() -> None:
    flips = {"photos": 200, "flipped": 9, "share": 0.045}
    oof = {"oof": {**_figures(0.7), "flip_test": flips, "with_prior": _figures(0.75)}}
    assert report_part(oof, "oof") == (oof["oof"], flips)
    assert report_part(oof, "oof.with_prior") == (_figures(0.75), None)
    arm = {"figures": _figures(0.8), "flip_test": flips}
    paired = {"a_figures": arm, "b_figures": {**arm, "figures": _figures(0.6)}, "also_figures": [arm],
              "mean_figures": _figures(0.9), "mean_flip_test": flips}
    assert report_part(paired, "b")[0]["top1"] == 0.6
    assert report_part(paired, "also.0")[0]["top1"] == 0.8
    assert report_part(paired, "mean") == (_figures(0.9), flips)
    with pytest.raises(ValueError, match="no part 'best'"):
        report_part(paired, "best")
