"""`cassava-edge evaluate`: accuracy, macro-F1, per-class figures and the confusion matrix on labelled photos."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from cassava_edge.commands.common import (
    ClassifierOptions, UsageFailure, build_classifier, check_output_file, classifier_options, make_folders,
)
from cassava_edge.commands.progress import Progress
from cassava_edge.results import Classification
from cassava_edge.writers import RunSummary, speed_text


@click.command()
@click.argument("data", type=click.Path(exists=True, file_okay=False))
@classifier_options
@click.option("--labels", "labels_csv", type=click.Path(exists=True, dir_okay=False),
              help="CSV with image_id,label for the photos in DATA [default: train.csv or labels.csv found in DATA].")
@click.option("--ids", type=click.Path(exists=True, dir_okay=False), help="Evaluate only the image ids listed.")
@click.option("--json", "json_path", type=click.Path(), callback=check_output_file,
              help="Write the report as JSON (missing folders are created, as for every output here).")
@click.option("--heatmap", type=click.Path(), callback=check_output_file,
              help="Write the confusion heatmap (PNG).")
@click.option("--calibration-plot", type=click.Path(), callback=check_output_file,
              help="Write the reliability diagram (PNG; needs matplotlib).")
@click.option("--risk-coverage-plot", type=click.Path(), callback=check_output_file,
              help="Write the risk-coverage curve (PNG; needs matplotlib).")
@click.option("--quiet", "-q", is_flag=True,
              help="The report only: no progress, speed or summary lines (failures are still named).")
@click.option("--verbose", "-v", is_flag=True,
              help="Also show the model, provider and session settings, and each photo's time per stage.")
def evaluate(data: str, options: ClassifierOptions, labels_csv: str | None, ids: str | None,
             json_path: str | None, heatmap: str | None, calibration_plot: str | None,
             risk_coverage_plot: str | None, quiet: bool, verbose: bool) -> None:
    """Accuracy, macro-F1, per-class precision/recall and confusion matrix on labelled photos.

    DATA is a Kaggle-layout folder (train.csv + train_images/), a folder with labels.csv + images/, or any folder
    with --labels. Photos that fail to decode are counted and named (exit 1), the rest still evaluated."""
    from cassava_edge.evaluate import draw_confusion_heatmap, draw_reliability_diagram, draw_risk_coverage
    from cassava_edge.evaluate import evaluate as run_evaluation, require_matplotlib
    from cassava_edge.labelled import read_ids, read_labelled

    from cassava_edge.commands.classify import describe_classifier

    if quiet and verbose:
        raise UsageFailure("--quiet and --verbose cannot be used together")
    for option, value in (("--calibration-plot", calibration_plot), ("--risk-coverage-plot", risk_coverage_plot)):
        if value:
            require_matplotlib(option)  # before the run, not after it
    classifier = build_classifier(options)
    photos = read_labelled(data, labels_csv, read_ids(ids) if ids else None, num_classes=len(classifier.labels))
    if verbose:
        click.echo(describe_classifier(classifier), err=True)
    summary = RunSummary()
    with Progress(len(photos), "evaluating", quiet=quiet) as progress:
        def on_result(result: Classification) -> None:
            summary.add(result)
            if verbose and result.ok and result.speed is not None:
                progress.echo(f"{result.source}: {result.status}, {speed_text(result.speed)}")
            progress.update(1)

        evaluation = run_evaluation(classifier, photos, on_result=on_result)
    summary.finish()
    report = evaluation.to_dict()
    for line in format_report(report):
        click.echo(line)
    for option, path, write in (
        ("--json", json_path, lambda p: Path(p).write_text(json.dumps(report, indent=2), encoding="utf-8")),
        ("--heatmap", heatmap, lambda p: draw_confusion_heatmap(report, p)),
        ("--calibration-plot", calibration_plot, lambda p: draw_reliability_diagram(evaluation, p)),
        ("--risk-coverage-plot", risk_coverage_plot, lambda p: draw_risk_coverage(evaluation, p)),
    ):
        if path:
            make_folders(path, option)
            write(path)
    for failure in report["failed"]:
        click.echo(f"failed: {failure['source']}: {failure['error']}", err=True)
    if not quiet:
        speed = summary.speed_line()
        if speed is not None:
            click.echo(speed, err=True)  # before the summary, which stays the closing line
        click.echo(summary.line(), err=True)
    if report["failed"]:
        sys.exit(1)


def format_report(report: dict[str, Any]) -> list[str]:
    """The evaluation report as text: headline figures, per-class table, confusion counts and row shares, then
    statuses, calibration and accuracy at each coverage."""
    labels = report["labels"]
    width = max(len("truth/pred"), *(len(label) for label in labels)) + 2
    lines = [
        f"model {report['model']} ({report['precision']}), tta {report['tta']}, scan {report['scan']}, "
        f"{', '.join(report['providers'])}",
        f"photos {report['count']}  accuracy {report['accuracy']:.4f}  macro-F1 {report['macro_f1']:.4f}  "
        f"macro recall {report['macro_recall']:.4f}  failed {len(report['failed'])}",
        "",
        f"{'class':<{width}}precision  recall     f1  support",
    ]
    for label in labels:
        row = report["per_class"][label]
        recall = "    n/a" if row["recall"] is None else f"{row['recall']:7.3f}"
        lines.append(f"{label:<{width}}{row['precision']:9.3f}  {recall}  {row['f1']:5.3f}  {row['support']:7d}")
    header = "".join(f"{label:>{width}}" for label in labels)
    corner = "truth/pred"
    lines += ["", f"{corner:<{width}}{header}   (counts)"]
    lines += [f"{label:<{width}}" + "".join(f"{n:>{width}d}" for n in row) for label, row in zip(labels, report["confusion"])]
    lines += ["", f"{corner:<{width}}{header}   (row shares)"]
    lines += [f"{label:<{width}}" + "".join(f"{v:>{width}.2f}" for v in row)
              for label, row in zip(labels, report["confusion_normalised"])]
    from cassava_edge.evaluate import trust_lines  # imported late: the module loads onnxruntime

    return [*lines, "", *trust_lines(report)]
