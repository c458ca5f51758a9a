"""What the commands share: the options that build a Classifier, the usage-error exception, output-path checks.

A new command gets the same --model/--provider/... flags as the others by adding `@classifier_options`, and an
output option is checked before anything runs with `callback=check_output_path` (or `check_output_file` where
the command creates the file's missing folders).
"""

from __future__ import annotations

import functools
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import click
from click.core import ParameterSource

from cassava_edge.contract import DEFAULT_SEED
from cassava_edge.classifier import Classifier
from cassava_edge.errors import CassavaEdgeError
from cassava_edge.models import PRECISIONS, model_names
from cassava_edge.scan import SCAN_PLANS
from cassava_edge.session import PROVIDERS
from cassava_edge.tta import TTA_PRESETS


class UsageFailure(click.ClickException):
    """A user error: printed as one 'Error: ...' line, exit code 2 like click's own usage errors."""

    exit_code = 2


@dataclass(frozen=True)
class ClassifierOptions:
    model: str | None
    provider: str
    variant: str | None
    threads: int | None
    chunk_size: int | None
    tta: str | None
    scan: str | None
    seed: int
    min_confidence: float | None


def option_group(
    packed_as: type, keyword: str, options: list[Callable[[Callable[..., Any]], Any]]
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A decorator that adds the click `options` to a command, which receives their values packed into one
    `packed_as` dataclass (its fields named as the options) as the keyword argument `keyword`."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            packed = packed_as(**{name: kwargs.pop(name) for name in packed_as.__dataclass_fields__})
            return command(**{keyword: packed}, **kwargs)

        for option in reversed(options):
            wrapper = option(wrapper)
        return wrapper

    return decorate


# Adds the options that build a Classifier; the command receives them as `options: ClassifierOptions`.
classifier_options = option_group(ClassifierOptions, "options", [
    click.option("--model", type=click.Path(), help="Model file or folder of variants [default: bundled model]."),
    click.option("--provider", type=click.Choice(PROVIDERS), default="auto", show_default=True,
                 help="Execution provider; auto uses CUDA when it loads, else CPU."),
    click.option("--variant", type=click.Choice(PRECISIONS), help="Precision to pick from a model folder."),
    click.option("--threads", type=click.IntRange(min=1),
                 help="onnxruntime intra-op threads [default: onnxruntime's, one per physical core]."),
    click.option("--chunk-size", type=click.IntRange(min=1),
                 help="Views per onnxruntime call [default: 4 on CPU, 32 on CUDA]."),
    click.option("--tta", type=click.Choice(TTA_PRESETS), help="Test-time augmentation [default: the model's]."),
    click.option("--scan", type=click.Choice(SCAN_PLANS), help="Crop plan [default: the model's]."),
    click.option("--seed", type=int, default=DEFAULT_SEED, show_default=True, help="Seed of the 'seed' TTA preset."),
    click.option("--min-confidence", type=click.FloatRange(0, 1),
                 help="Calibrated confidence under which a photo is 'uncertain' [default: the model's]."),
])


def build_classifier(options: ClassifierOptions) -> Classifier:
    """The Classifier the options describe; user errors become a one-line usage failure (exit 2)."""
    try:
        classifier = Classifier(
            model=options.model,
            provider=options.provider,
            variant=options.variant,
            threads=options.threads,
            chunk_size=options.chunk_size,
            tta=options.tta,
            scan=options.scan,
            seed=options.seed,
            min_confidence=options.min_confidence,
        )
    except CassavaEdgeError as exc:
        raise UsageFailure(str(exc)) from None
    if given_on_command_line("seed") and classifier.tta.name != "seed":
        note(f"--seed has no effect with tta {classifier.tta.name} (only the 'seed' preset draws random views)")
    return classifier


def model_file_or_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """click callback for a --model that must be known before any work starts (the benchmarks): an existing file or
    folder, or the name of a bundled model (e.g. cassava-lite0-512), as every command's --model takes it."""
    names = model_names()
    if value is None or Path(value).exists() or value in names:
        return value
    raise click.BadParameter(f"{value}: no such model file or folder (bundled models: {', '.join(names) or 'none'})",
                             ctx=ctx, param=param)


def check_output_path(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """click callback for an output file option: refuse, before any model loads, a path that cannot be written
    (its folder missing, a folder in its place, no permission, a place that takes no files such as /proc), in one
    line naming the option and the path."""
    return _checked_output(param, value, creates_folders=False)


def check_output_file(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """As check_output_path, for an output whose missing folders the command creates (see `make_folders`):
    a missing folder is fine where it could be created."""
    return _checked_output(param, value, creates_folders=True)


def _checked_output(param: click.Parameter, value: str | None, *, creates_folders: bool) -> str | None:
    if value is None:
        return None
    problem = _output_problem(Path(value), creates_folders)
    if problem:
        raise UsageFailure(f"{option_name(param)} {value}: cannot write there: {problem}")
    return value


def _output_problem(path: Path, creates_folders: bool) -> str | None:
    """Why `path` cannot be written, or None. For a new file permission bits say nothing to root or in /proc, so
    the check makes an anonymous temporary file in the folder that would hold it (gone when closed)."""
    if path.is_dir():
        return "it is a folder"
    folder = path.parent
    if not folder.exists() and creates_folders:
        while not folder.exists():  # the folder the missing ones would be created in
            folder = folder.parent
    if not folder.is_dir():
        return f"folder {folder} does not exist" if not folder.exists() else f"{folder} is not a folder"
    if path.exists():
        return None if os.access(path, os.W_OK) else "permission denied"
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        return "permission denied" if isinstance(exc, PermissionError) else f"{folder} takes no new files"
    return None


def make_folders(path: str, option: str) -> None:
    """Create the missing folders of an output file checked by check_output_file; a failure is its one line."""
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageFailure(f"{option} {path}: cannot write there: {exc.strerror or exc}") from None


def option_name(param: click.Parameter) -> str:
    """The long spelling of an option (--output, not -o), as errors name it."""
    return max(param.opts, key=len) if param.opts else str(param.name)


def given_on_command_line(name: str) -> bool:
    """Whether the current command's parameter `name` was typed by the user (not its default)."""
    ctx = click.get_current_context(silent=True)
    return ctx is not None and ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE


def note(message: str) -> None:
    """A one-line note on stderr about an option that was adjusted or has no effect."""
    click.echo(f"note: {message}", err=True)
