"""`cassava-edge info`: the model's metadata, the providers in use and library versions."""

from __future__ import annotations

import json
from typing import Any

import click

from cassava_edge.commands.common import ClassifierOptions, build_classifier, classifier_options
from cassava_edge.looks import Look
from cassava_edge.models import describe_plan, plan_validation


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
        ("look", describe_look(meta.get("look"), details.get("look"))),
        ("in use", f"scan {details['scan']}, tta {details['tta']} ({details['views_per_crop']} views per crop), "
                   f"seed {details['seed']}"),
        *member_lines(meta["provenance"]),
        *validation_lines(meta),
        ("calibration", describe_calibration(meta.get("calibration"))),
        ("trust", describe_trust(meta.get("trust"), details.get("min_confidence"))),
        ("provenance", provenance or "-"),
        ("providers", f"available {', '.join(details['providers_available'])}; "
                      f"loaded {', '.join(details['providers_loaded'])}"),
        ("session", f"chunk size {session['chunk_size']}, threads {session['intra_op_threads'] or 'auto'}, "
                    f"graph optimisation {session['graph_optimization']}"),
        ("versions", ", ".join(f"{name} {version}" for name, version in details["versions"].items())),
    ]


def member_lines(provenance: dict[str, Any]) -> list[tuple[str, str]]:
    """For a joined model (`python -m export --join`): the checkpoints whose probabilities it averages."""
    members = provenance.get("members")
    if not isinstance(members, list) or not members:
        return []
    names = []
    for member in members:
        checkpoint = member.get("checkpoint") or {}
        backbone = (member.get("training_config") or {}).get("backbone")
        names.append(f"{checkpoint.get('path', '?')}" + (f" ({backbone})" if backbone else ""))
    return [("joins", f"the mean of {len(members)} models' probabilities: {', '.join(names)}")]


def validation_lines(meta: dict[str, Any]) -> list[tuple[str, str]]:
    """The validation figures the export wrote into the metadata, each naming the plan it was measured with: first
    this file's with its default plan (what users get, and what the model card states), then training's own (the
    checkpoint's, fp32, on the plans training ran), then this file's without TTA as the export checked it."""
    provenance, precision = meta["provenance"], meta["precision"]
    defaults = (meta["default_scan"], meta["default_tta"])
    lines = []
    figures = plan_validation(provenance)
    if figures is not None:
        text = f"accuracy {figures['accuracy']:.4f}" + _other_figures(figures)
        on = f" on {figures['photos']} photos" if _number(figures.get("photos")) else ""
        plan = describe_plan(figures.get("scan"), figures.get("tta"), *defaults)
        lines.append(("validation", f"{text} ({precision}){on}, {plan}, as measured at export"))
    training = provenance.get("validation_metrics")
    if isinstance(training, dict) and _number(training.get("accuracy")):
        text = f"accuracy {training['accuracy']:.4f}" + _other_figures(training) + " (the checkpoint)"
        on = f" on {training['count']} photos" if _number(training.get("count")) else ""
        if "plan" in training:
            # Training's plans are scans; it runs them without TTA unless it says otherwise.
            on += f", {describe_plan(training['plan'], training.get('tta', 'none'), *defaults)}"
        plans = training.get("plans")
        others = [f"scan {name} {values['accuracy']:.4f}" for name, values in sorted((plans or {}).items())
                  if name != training.get("plan") and isinstance(values, dict) and _number(values.get("accuracy"))]
        if others:
            on += f" ({'; '.join(others)})"
        lines.append(("in training", f"{text}{on}, as measured in training"))
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
            text += f", {describe_plan(export['scan'], export['tta'], *defaults)}"
        lines.append(("this file", text + ", as measured at export"))
    return lines


def _other_figures(figures: dict[str, Any]) -> str:
    """", macro recall R, macro-F1 F" for those of the two that `figures` holds."""
    names = (("macro_recall", "macro recall"), ("macro_f1", "macro-F1"))
    return "".join(f", {name} {figures[key]:.4f}" for key, name in names if _number(figures.get(key)))


def describe_look(model: dict[str, Any] | None, in_use: dict[str, Any] | None) -> str:
    """The look every photo is given before its crops are cut (metadata `look`), and whether it is in use."""
    if not model:
        return "none (photos are scaled and cropped as they are)"
    text = f"every photo first {Look(**model).describe()}"
    return text if in_use else text + " (turned off here: figures were measured with it)"


def describe_calibration(calibration: dict[str, Any] | None) -> str:
    if not calibration:
        return "none (probabilities as the model gives them)"
    text = f"{calibration.get('method', 'temperature')} scaling, temperature {calibration['temperature']:g}"
    bias = calibration.get("class_bias")
    if not bias:
        return text
    # The bias changes answers, not only confidences: say so, and for which class mix.
    offsets = ", ".join(f"{offset:+.2f}" for offset in bias)
    return f"{text}; class bias {offsets} (answers for {calibration.get('prior') or 'another class mix'})"


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
