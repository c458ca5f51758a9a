"""The model card's results rows, written from an experiment's report (``training.oof``, ``training.paired`` or
``training.candidates`` JSON), so that the figures in ``models/README.md`` are copied from the report and never
typed by hand::

    python -m training.card training/experiments/v3-onelook-320/oof.json
    python -m training.card training/experiments/overview.json   # every experiment at a glance

``tests/test_card.py`` checks that every row this prints for a committed report is in the card, word for word.
"""

from __future__ import annotations

import json
from pathlib import Path

from cassava_edge.metadata import CASSAVA_LABELS


def _pct(value: float) -> str:
    return f"{value:.1%}"


def _interval(low_high: list[float]) -> str:
    return f"[{low_high[0] * 100:.1f}, {low_high[1] * 100:.1f}]"


def _recalls(recall: dict[str, float]) -> str:
    return " / ".join(f"{recall[label]:.2f}" for label in CASSAVA_LABELS)


def _flips(flip: dict | None) -> str:
    return "—" if flip is None else f"{flip['flipped']}/{flip['photos']} ({flip['share']:.1%})"


def figures_row(name: str, figures: dict, flip: dict | None = None, bold: bool = False) -> str:
    top1, macro = _pct(figures["top1"]), _pct(figures["macro_recall"])
    if bold:
        top1, macro = f"**{top1}**", f"**{macro}**"
    return (f"| {name} | {figures['photos']} | {top1} {_interval(figures['top1_ci95'])} | "
            f"{macro} {_interval(figures['macro_recall_ci95'])} | {_recalls(figures['recall'])} | {_flips(flip)} |")


def run_name(run: str, entry: dict) -> str:
    excluded = entry.get("excluded") or []
    also = f", fold {', '.join(map(str, excluded))} excluded" if excluded else ""
    return f"`{Path(run).name}` (validated on fold {entry['fold']}{also})"


def oof_rows(report: dict) -> list[str]:
    """The results table of a cross-validated experiment: one row per fold run, the out-of-fold rows, and the
    held-out fold's ensemble (and student) rows where the report has them."""
    rows = [figures_row(run_name(run, entry), entry["figures"], entry["flip_test"])
            for run, entry in report["runs"].items()]
    oof = report["oof"]
    rows.append(figures_row("**out of fold, all runs**", oof, oof["flip_test"], bold=True))
    if "with_prior" in oof:
        rows.append(figures_row("out of fold, with the Kaggle prior (cross-fitted per fold)", oof["with_prior"]))
    holdout = report.get("holdout")
    if holdout:
        fold, members = holdout["fold"], holdout["members"]
        models = "1 model" if members == 1 else f"{members} models"
        rows.append(figures_row(f"fold-ensemble ({models}) on fold {fold}, unseen by all", holdout["ensemble"]))
        rows.append(figures_row("the same, with the prior", holdout["ensemble_with_prior"]))
        if "student" in holdout:
            student = holdout["student"]
            rows.append(figures_row(f"distilled student on fold {fold}", student, student["flip_test"]))
            rows.append(figures_row("the student, with the prior", student["with_prior"]))
    return rows


def arm_name(runs: list[str], arm: dict) -> str:
    """One run as `run_name` names it; several (one per fold) as their names joined, with their folds."""
    if len(runs) == 1:
        return run_name(runs[0], {"fold": arm["folds"][0], "excluded": arm["excluded"]})
    names = " + ".join(f"`{Path(run).name}`" for run in runs)
    return f"{names} (validated on folds {', '.join(map(str, arm['folds']))})"


def _arm_short(runs: list[str]) -> str:
    names = " + ".join(f"`{Path(run).name}`" for run in runs)
    return names if len(runs) == 1 else f"({names})"


def _difference_row(name: str, d: dict, first: str = "the first", second: str = "the second") -> str:
    """One paired comparison (training.paired's `difference`) as a table row."""
    return (f"| {name} | {d['photos']} | "
            f"{d['top1_difference'] * 100:+.1f} points {_interval(d['top1_difference_ci95'])}, right only in {first} "
            f"{d['right']['only_a']}, only in {second} {d['right']['only_b']} (McNemar p {d['right']['mcnemar_p']:.2f}) | "
            f"{d['macro_recall_difference'] * 100:+.1f} points {_interval(d['macro_recall_difference_ci95'])} | "
            f"same answer on {d['same_answer']:.1%} | {_flipped(d, first, second)} |")


def _flipped(d: dict, first: str, second: str) -> str:
    """How two flip tests disagree; a difference with a prior on one side has none (figures with a prior carry no
    flip test)."""
    if "flipped" not in d:
        return "—"
    return (f"flipped only in {first} {d['flipped']['only_a']}, only in {second} {d['flipped']['only_b']} "
            f"(p {d['flipped']['mcnemar_p']:.2f})")


def paired_rows(report: dict) -> list[str]:
    """Both arms of a paired comparison (and any more ensemble members), all of them as an ensemble (with the
    deployment prior where the photos span folds), the line of the two arms' difference and the ensemble's
    difference from each of the two."""
    arms = [(report[name], report[f"{name}_figures"]) for name in ("a", "b")]
    arms += list(zip(report.get("also", []), report.get("also_figures", [])))  # more ensemble members
    rows = [figures_row(arm_name(runs, arm), arm["figures"], arm["flip_test"]) for runs, arm in arms]
    members = {2: "two", 3: "three", 4: "four"}.get(len(arms), str(len(arms)))
    rows.append(figures_row(f"the {members} as an ensemble (mean probabilities)", report["mean_figures"],
                            report["mean_flip_test"]))
    if "mean_with_prior" in report:  # photos of two or more folds
        rows.append(figures_row(f"the ensemble, {_prior_name(report)} (cross-fitted per fold)",
                                report["mean_with_prior"]))
    if "mean_with_nested_prior" in report:  # photos of three or more folds
        nested = report["mean_with_nested_prior"]
        strengths = ", ".join(f"{strength:g}" for strength in nested["strengths"].values())
        rows.append(figures_row(f"the ensemble, with the prior's strength chosen out of fold too ({strengths})", nested))
    rows.append(_difference_row(f"{_arm_short(report['a'])} − {_arm_short(report['b'])}", report["difference"]))
    rows += _ensemble_versus_rows(report, _prior_name(report))
    if "rival_ensemble" in report:
        rows += rival_rows(report["rival_ensemble"], " and ".join(map(_arm_short, report["rival"])),
                           _prior_name(report))
    if "judged_fold" in report:
        rows += judged_fold_rows(report["judged_fold"], _prior_name(report))
    return rows


def rival_rows(rival: dict, members: str, prior_name: str, prefix: str = "", chosen: str = "out of fold") -> list[str]:
    """A rival ensemble (training.paired --rival) given the same treatment as the ensemble, and the ensemble minus
    it under each treatment: does the extra member pay once both have the prior. `chosen` says where the prior's
    strength was chosen."""
    rows = [figures_row(f"{prefix}the rival ensemble of {members} (mean probabilities)", rival["mean"],
                        rival["mean"]["flip_test"])]
    if "mean_with_prior" in rival:
        rows.append(figures_row(f"{prefix}the rival, {prior_name}", rival["mean_with_prior"]))
    if "mean_with_nested_prior" in rival:
        nested = rival["mean_with_nested_prior"]
        strengths = nested["strengths"].values() if "strengths" in nested else [nested["strength"]]
        rows.append(figures_row(f"{prefix}the rival, with the prior's strength chosen {chosen} "
                                f"({', '.join(f'{strength:g}' for strength in strengths)})", nested))
    rows.append(_difference_row(f"{prefix}the ensemble − the rival", rival["mean_versus"], "the ensemble", "the rival"))
    for key, which in (("prior_versus", prior_name), ("nested_prior_versus", "with the nested prior")):
        if key in rival:
            rows.append(_difference_row(f"{prefix}the ensemble {which} − the rival {which}", rival[key],
                                        "the ensemble", "the rival"))
    return rows


def judged_fold_rows(judged: dict, prior_name: str) -> list[str]:
    """The same comparison on the judged folds' photos alone, their prior fitted on the other folds
    (training.paired --judge-fold): the check of a choice made on those other folds."""
    *rest, last = map(str, judged["folds"])
    on = f"on folds {', '.join(rest)} and {last} alone" if rest else f"on fold {last} alone"
    others = ", ".join(map(str, judged["other_folds"]))
    rows = [figures_row(f"{on}: the first", judged["a"], judged["a"]["flip_test"]),
            figures_row(f"{on}: the second", judged["b"], judged["b"]["flip_test"]),
            figures_row(f"{on}: the ensemble", judged["mean"], judged["mean"]["flip_test"]),
            figures_row(f"{on}: the ensemble, {prior_name} fitted on folds {others}", judged["mean_with_prior"])]
    if "mean_with_nested_prior" in judged:
        nested = judged["mean_with_nested_prior"]
        rows.append(figures_row(f"{on}: the ensemble, the prior's strength chosen on folds {others} "
                                f"({nested['strength']:g})", nested))
    rows.append(_difference_row(f"{on}: the first − the second", judged["difference"]))
    rows += _ensemble_versus_rows(judged, prior_name, f"{on}: ")
    if "rival" in judged:
        rows += rival_rows(judged["rival"], "the same members", f"{prior_name} fitted on folds {others}", f"{on}: ",
                           f"on folds {others}")
    return rows


def _ensemble_versus_rows(part: dict, prior_name: str, prefix: str = "") -> list[str]:
    """The ensemble against each of the first two members: as it is (`mean_versus`), then with each prior it has
    (`prior_versus`, `nested_prior_versus`) against each member alone; of a whole paired report, or of its judged
    folds with `prefix` naming them."""
    arms = (("a", "the first"), ("b", "the second"))
    rows = [_difference_row(f"{prefix}the ensemble − {arm}", part["mean_versus"][name], "the ensemble", arm)
            for name, arm in arms]
    for key, which in (("prior_versus", prior_name), ("nested_prior_versus", "with the nested prior")):
        if key in part:
            rows += [_difference_row(f"{prefix}the ensemble {which} − {arm} alone", part[key][name], "the ensemble", arm)
                     for name, arm in arms]
    return rows


def _prior_name(report: dict) -> str:
    """The Kaggle prior, and its strength where it is not the whole prior (training.paired --prior-strength)."""
    strength = report.get("prior_strength", 1.0)
    return "with the Kaggle prior" if strength == 1.0 else f"with the Kaggle prior to the power {strength:g}"


def candidate_rows(report: dict) -> list[str]:
    """One row per default-model candidate (training.candidates): its figures and flip test, then how it differs
    from the first candidate on the same photos and how much faster than the reference pipeline it runs."""
    first = report["candidates"][0]
    rows = []
    for name in report["candidates"]:
        row = figures_row(f"`{name}`", report["figures"][name], report["flip_test"][name])
        d = report["versus_first"].get(name)
        versus = "—" if d is None else (
            f"{d['top1_difference'] * 100:+.1f} points {_interval(d['top1_difference_ci95'])}, right only here "
            f"{d['right']['only_a']}, only in `{first}` {d['right']['only_b']} (McNemar p {d['right']['mcnemar_p']:.2f})")
        speed = report["speed"].get(name)
        ratio = "not measured" if speed is None else (
            f"{speed['ms_per_photo_mean']:.0f} ms ({speed['plan']}), **{speed['speedup_mean']:.1f}×** "
            f"(p50 {speed['speedup_p50']:.1f}×)")
        rows.append(f"{row} {versus} | {ratio} |")
    return rows


def look_rows(report: dict) -> list[str]:
    """Per candidate, top-1 and the answers that change under each look (training.candidates)."""
    rows = []
    for name in report["candidates"]:
        cells = [f"{look['top1']:.1%}, {_flips(look['flip_test'])} changed" for look in report["looks"][name].values()]
        rows.append(f"| `{name}` | {report['figures'][name]['top1']:.1%} | {' | '.join(cells)} |")
    return rows


def report_part(report: dict, part: str) -> tuple[dict, dict | None]:
    """One model's (or ensemble's) figures and flip test in a report, by name: `oof`, `oof.with_prior`,
    `holdout.ensemble`, `holdout.student` (training.oof); `a`, `b`, `also.N`, `mean`, `mean_with_prior`,
    `mean_with_nested_prior`, and each of those but `also.N` on a judged fold as `judged_fold.a` and so on
    (training.paired). Figures with a prior have no flip test."""
    if part.startswith("judged_fold."):
        figures = report["judged_fold"][part.split(".", 1)[1]]
        return figures, figures.get("flip_test")
    if part == "oof":
        return report["oof"], report["oof"]["flip_test"]
    if part == "oof.with_prior":
        return report["oof"]["with_prior"], None
    if part == "holdout.ensemble":
        return report["holdout"]["ensemble"], None
    if part == "holdout.student":
        return report["holdout"]["student"], report["holdout"]["student"]["flip_test"]
    if part in ("a", "b") or part.startswith("also."):
        arm = report[f"{part}_figures"] if part in ("a", "b") else report["also_figures"][int(part.split(".")[1])]
        return arm["figures"], arm["flip_test"]
    if part == "mean":
        return report["mean_figures"], report["mean_flip_test"]
    if part in ("mean_with_prior", "mean_with_nested_prior"):
        return report[part], None
    raise ValueError(f"a report has no part {part!r}")


def overview_rows(overview: list[dict], experiments: Path) -> list[str]:
    """The card's table of every cross-validated experiment at a glance (issue 17, item 7): per entry of
    `training/experiments/overview.json`, the figures of one part of its report (paths relative to
    `experiments`), then the folder probe and the wall time, which no report holds: they were measured by
    `python -m export.probe` and the clock, and the entry says which model and which runs."""
    rows = []
    for entry in overview:
        report = json.loads((experiments / entry["report"]).read_text(encoding="utf-8"))
        figures, flip = report_part(report, entry["part"])
        row = figures_row(f"{entry['experiment']}: {entry['model']}", figures, flip)
        rows.append(f"{row} {entry['folder_probe']} | {entry['wall_time']} |")
    return rows


def rows(report: dict) -> list[str]:
    if "candidates" in report:
        return candidate_rows(report) + look_rows(report)
    return paired_rows(report) if "difference" in report else oof_rows(report)


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Model-card table rows from an experiment report.")
    parser.add_argument("report", type=Path, help="JSON written by training.oof, training.paired or training.candidates, "
                        "or training/experiments/overview.json (the experiments at a glance)")
    args = parser.parse_args()
    try:
        report = json.loads(args.report.read_text(encoding="utf-8"))
        lines = overview_rows(report, args.report.parent) if isinstance(report, list) else rows(report)
    except (OSError, ValueError, KeyError, IndexError) as error:
        raise SystemExit(f"error: cannot read {args.report}: {error!r}") from None
    print("\n".join(lines))


if __name__ == "__main__":
    main()
