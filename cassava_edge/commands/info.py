"""`cassava-edge info`: the model's metadata, the providers in use and library versions."""

from __future__ import annotations

import json
from typing import Any

import click

from cassava_edge.commands.common import ClassifierOptions, build_classifier, classifier_options


@click.command()
@classifier_options
@click.option("--format", "output_format", type=click.Choice(("text", "json")), default="text", show_default=True)
def info(options: ClassifierOptions, output_format: str) -> None:
    """Show the model's metadata, the providers in use and library versions."""
    details = build_classifier(options).info()
    if output_format == "json":
        click.echo(json.dumps(details, indent=2))
        return
    for name, value in describe(details):
        click.echo(f"{name:<13}{value}")


def describe(details: dict[str, Any]) -> list[tuple[str, str]]:
    """The `info` text lines: (heading, value)."""
    meta = details["metadata"]
    contract = meta["input"]
    low, high = contract["value_range"]
    session = details["session"]
    provenance = ", ".join(
        f"{key}: {value}" for key, value in meta["provenance"].items() if isinstance(value, (str, int, float, bool))
    )
    holds = "class probabilities" if meta["output_is_probability"] else "logits (softmax applied here)"
    return [
        ("model", f"{details['model']} ({meta['precision']})"),
        ("labels", ", ".join(f"{label} ({name})" for label, name in zip(meta["labels"], meta["label_names"]))),
        ("input", f"{contract['name']} [batch, {contract['height']}, {contract['width']}, 3] {contract['dtype']} "
                  f"{contract['color']} {low:g}..{high:g}"),
        ("output", f"{meta['output_name']} [batch, {len(meta['labels'])}]: {holds}"),
        ("photo scale", f"shorter side {meta['photo']['short_side']} px"),
        ("defaults", f"scan {meta['default_scan']}, tta {meta['default_tta']}"),
        ("in use", f"scan {details['scan']}, tta {details['tta']} ({details['views_per_crop']} views per crop), "
                   f"seed {details['seed']}"),
        *validation_lines(meta["provenance"], meta["precision"]),
        ("calibration", describe_calibration(meta.get("calibration"))),
        ("trust", describe_trust(meta.get("trust"), details.get("min_confidence"))),
        ("provenance", provenance or "-"),
        ("providers", f"available {', '.join(details['providers_available'])}; "
                      f"loaded {', '.join(details['providers_loaded'])}"),
        ("session", f"chunk size {session['chunk_size']}, threads {session['intra_op_threads'] or 'auto'}, "
                    f"graph optimisation {session['graph_optimization']}"),
        ("versions", ", ".join(f"{name} {version}" for name, version in details["versions"].items())),
    ]


def validation_lines(provenance: dict[str, Any], precision: str) -> list[tuple[str, str]]:
    """The validation figures the export wrote into the metadata: training's own, then this file's."""
    lines = []
    training = provenance.get("validation_metrics")
    if isinstance(training, dict) and _number(training.get("accuracy")):
        figures = [f"accuracy {training['accuracy']:.4f}"]
        if _number(training.get("macro_f1")):
            figures.append(f"macro-F1 {training['macro_f1']:.4f}")
        on = f" on {training['count']} photos" if _number(training.get("count")) else ""
        lines.append(("validation", f"{', '.join(figures)}{on}, as measured in training"))
    export = provenance.get("export_validation")
    measured = provenance.get("measured")
    export = export if isinstance(export, dict) else {}
    if isinstance(measured, dict) and _number(measured.get("accuracy")):
        text = f"accuracy {measured['accuracy']:.4f} ({precision})"
        if _number(export.get("fp32_accuracy")) and precision != "fp32":
            text += f", fp32 {export['fp32_accuracy']:.4f}"
        if _number(export.get("photos")):
            text += f" on {export['photos']} validation photos"
        if "scan" in export and "tta" in export:
            text += f" (scan {export['scan']}, tta {export['tta']})"
        lines.append(("this file", text + ", as measured at export"))
    return lines


def describe_calibration(calibration: dict[str, Any] | None) -> str:
    if not calibration:
        return "none (probabilities as the model gives them)"
    return f"{calibration.get('method', 'temperature')} scaling, temperature {calibration['temperature']:g}"


def describe_trust(trust: dict[str, Any] | None, min_confidence: float | None = None) -> str:
    """The model's trust settings, with the minimum confidence in use (which --min-confidence overrides)."""
    model_minimum = trust["min_confidence"] if trust else None
    if min_confidence is None:
        min_confidence = model_minimum
    if not trust and min_confidence is None:
        return "none (every classified photo is ok)"
    uncertain = f"uncertain below confidence {min_confidence:g}"
    if model_minimum is None or min_confidence != model_minimum:
        uncertain += " (--min-confidence" + (f"; the model says {model_minimum:g})" if trust else ")")
    if not trust:
        return uncertain
    parts = [uncertain, f"photos under {trust['min_short_side']} px fail"]
    if trust.get("not_cassava_output"):
        parts.append(f"not_cassava when {trust['not_cassava_output']} gives >= {trust['not_cassava_threshold']:g}")
    return "; ".join(parts)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
