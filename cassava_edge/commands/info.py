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
    return [
        ("model", f"{details['model']} ({meta['precision']})"),
        ("labels", ", ".join(f"{label} ({name})" for label, name in zip(meta["labels"], meta["label_names"]))),
        ("input", f"{contract['name']} [batch, {contract['height']}, {contract['width']}, 3] {contract['dtype']} "
                  f"{contract['color']} {low:g}..{high:g}"),
        ("output", f"{meta['output_name']} ({'probabilities' if meta['output_is_probability'] else 'logits'})"),
        ("photo scale", f"shorter side {meta['photo']['short_side']} px"),
        ("defaults", f"scan {meta['default_scan']}, tta {meta['default_tta']}"),
        ("in use", f"scan {details['scan']}, tta {details['tta']} ({details['views_per_crop']} views per crop), "
                   f"seed {details['seed']}"),
        ("provenance", provenance or "-"),
        ("providers", f"available {', '.join(details['providers_available'])}; "
                      f"loaded {', '.join(details['providers_loaded'])}"),
        ("session", f"chunk size {session['chunk_size']}, threads {session['intra_op_threads'] or 'auto'}, "
                    f"graph optimisation {session['graph_optimization']}"),
        ("versions", ", ".join(f"{name} {version}" for name, version in details["versions"].items())),
    ]
