"""`cassava-edge models`: every bundled model by name, with its variants, sizes, input size and validation figures."""

from __future__ import annotations

import click

from cassava_edge.metadata import ModelMetadata
from cassava_edge.models import (
    BundledModel,
    bundled_models,
    default_model_name,
    describe_plan,
    export_validation,
    plan_validation,
)


@click.command("models")
def models_command() -> None:
    """List the bundled models (pass a name to --model); figures are read from each file's metadata."""
    found = bundled_models()
    if not found:
        raise click.ClickException("no bundled models; pass --model a file or folder")
    for model in found:
        for line in describe_model(model, is_default=model.name == default_model_name()):
            click.echo(line)


def describe_model(model: BundledModel, is_default: bool = False) -> list[str]:
    """The lines of one model: a heading, then one line per variant file."""
    height, width = model.crop_size
    default = ", the default" if is_default else ""
    lines = [f"{model.name} (input {height}x{width}, {_mib(model.size_bytes)} in all{default})"]
    for variant in model.variants:
        size = _mib(variant.path.stat().st_size)
        lines.append(f"  {variant.precision:<5} {variant.path.name:<28} {size:>9}  {describe_figures(variant.metadata)}")
    return lines


def describe_figures(metadata: ModelMetadata) -> str:
    """This file's validation figures, each naming its plan: the default plan's first (what users get), then the
    export's check without TTA."""
    parts = []
    default = plan_validation(metadata.provenance)
    if default is not None:
        recall = default.get("macro_recall")
        figures = f"accuracy {default['accuracy']:.4f}" + (
            f", macro recall {recall:.4f}" if isinstance(recall, (int, float)) else "")
        plan = describe_plan(default.get("scan"), default.get("tta"), metadata.default_scan, metadata.default_tta)
        photos = f" on {default['photos']} photos" if "photos" in default else ""
        parts.append(f"{figures}{photos}, {plan}")
    checked = export_validation(metadata)
    if checked is not None:
        parts.append(f"accuracy {checked[0]:.4f} ({checked[1]})")
    return "; ".join(parts) + ", measured at export" if parts else "no validation figure"


def _mib(size_bytes: int) -> str:
    return f"{size_bytes / 2**20:.1f} MiB"
