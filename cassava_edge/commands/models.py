"""`cassava-edge models`: every bundled model by name, with its variants, sizes, input size and validation figures."""

from __future__ import annotations

import click

from cassava_edge.models import BundledModel, bundled_models, default_model_name, export_validation


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
        figure = export_validation(variant.metadata)
        accuracy = f"accuracy {figure[0]:.4f} ({figure[1]}, measured at export)" if figure else "no validation figure"
        lines.append(f"  {variant.precision:<5} {variant.path.name:<28} {_mib(variant.path.stat().st_size):>9}  {accuracy}")
    return lines


def _mib(size_bytes: int) -> str:
    return f"{size_bytes / 2**20:.1f} MiB"
