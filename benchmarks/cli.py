"""`cassava-edge benchmark` / `python -m benchmarks.latency`: the command line of the latency benchmark."""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Iterable, Sequence

import click

from cassava_edge.commands.common import UsageFailure, check_output_path, model_file_or_name
from cassava_edge.contract import DEFAULT_SEED
from cassava_edge.models import PRECISIONS, bundled_models_dir
from cassava_edge.scan import SCAN_PLANS
from cassava_edge.session import PROVIDERS
from cassava_edge.sources import find_images
from cassava_edge.tta import TTA_PRESETS
from .harness import INSTALL_HINT, REPO_ROOT, PhotoPlan, RunConfig, run_benchmark
from .reference import SEED_B3
from .report import print_report, write_chart


def output_file(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """click callback for --json/--chart: create the file's folder (BENCHMARKS.md writes into `out/`, which a fresh
    clone lacks), then refuse what still cannot be written, as every output option does."""
    if value is not None and not Path(value).parent.exists():
        try:
            Path(value).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            name = max(param.opts, key=len) if param.opts else param.name
            raise UsageFailure(f"{name} {value}: cannot write there: {exc.strerror or exc}") from None
    return check_output_path(ctx, param, value)


def _split(values: Iterable[str]) -> list[str]:
    """Repeatable options that also take comma lists: ('a,b', 'c') -> ['a', 'b', 'c'], duplicates dropped."""
    items: list[str] = []
    for value in values:
        for item in value.split(","):
            item = item.strip()
            if item and item not in items:
                items.append(item)
    return items


def _choices(values: Iterable[str], allowed: Sequence[str], option: str) -> list[str]:
    items = _split(values)
    unknown = [item for item in items if item not in allowed]
    if unknown:
        raise click.BadParameter(f"{', '.join(unknown)} (choose from {', '.join(allowed)})", param_hint=option)
    return items


def _chunk_sizes(values: Iterable[str]) -> list[int]:
    sizes = []
    for item in _split(values):
        if not item.isdigit() or int(item) < 1:
            raise click.BadParameter(f"{item!r} is not a positive integer", param_hint="--chunk-size")
        sizes.append(int(item))
    return sizes


def _require(module: str, option: str, install: str) -> None:
    try:
        found = importlib.util.find_spec(module) is not None
    except ImportError:  # a finder that refuses the name
        found = False
    if not found:
        raise click.UsageError(f"{option} needs {module}, which is not installed: {install}")


def default_photos_dir() -> Path | None:
    """$CASSAVA_EDGE_DATA/cassava/train_images, else ../shared/data/cassava/train_images next to the repository."""
    data = os.environ.get("CASSAVA_EDGE_DATA")
    base = Path(data) if data else REPO_ROOT.parent / "shared" / "data"
    folder = base / "cassava" / "train_images"
    return folder if folder.is_dir() else None


@click.command("benchmark", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model", callback=model_file_or_name, help="Model file or folder of variants [default: bundled].")
@click.option("--photos", multiple=True, type=click.Path(exists=True),
              help="Photo files or folders (repeatable) [default: ../shared/data/cassava/train_images].")
@click.option("--count", type=click.IntRange(min=1), default=20, show_default=True, help="Timed photos.")
@click.option("--warmup", type=click.IntRange(min=0), default=2, show_default=True,
              help="Untimed photos after the first call.")
@click.option("--tta", multiple=True, help=f"TTA presets, repeatable or comma list: {', '.join(TTA_PRESETS)} "
              "[default: the model's].")
@click.option("--scan", multiple=True, help=f"Scan plans: {', '.join(SCAN_PLANS)} [default: the model's].")
@click.option("--provider", multiple=True, help=f"Providers: {', '.join(PROVIDERS)} [default: auto].")
@click.option("--variant", multiple=True, help=f"Model precisions from a folder: {', '.join(PRECISIONS)} "
              "[default: picked for the provider].")
@click.option("--chunk-size", multiple=True, help="Views per onnxruntime call, repeatable or comma list "
              "[default: the session's].")
@click.option("--threads", type=click.IntRange(min=1), help="onnxruntime (and Keras, matmul) threads "
              "[default: onnxruntime's, one per physical core].")
@click.option("--seed", type=int, default=DEFAULT_SEED, show_default=True, help="Seed of the 'seed' TTA preset.")
@click.option("--json", "json_path", type=click.Path(), callback=output_file,
              help="Write every figure to FILE (its folder is created).")
@click.option("--chart", "chart_path", type=click.Path(), callback=output_file,
              help="Write a latency chart (PNG; its folder is created).")
@click.option("--roofline", is_flag=True, help="Measure fp32 matmul GFLOP/s and report each run against it.")
@click.option("--roofline-seconds", type=click.FloatRange(min=0.1), default=3.0, show_default=True,
              help="How long the matmul measurement runs.")
@click.option("--compare-keras", "keras_model", metavar="MODEL.keras|seed-b3",
              help="Also time the reference Keras pipeline: a .keras model, or seed-b3 (EfficientNetB3 512, "
              "random weights, speed only).")
def benchmark_command(
    model: str | None,
    photos: tuple[str, ...],
    count: int,
    warmup: int,
    tta: tuple[str, ...],
    scan: tuple[str, ...],
    provider: tuple[str, ...],
    variant: tuple[str, ...],
    chunk_size: tuple[str, ...],
    threads: int | None,
    seed: int,
    json_path: str | None,
    chart_path: str | None,
    roofline: bool,
    roofline_seconds: float,
    keras_model: str | None,
) -> None:
    """Time the runtime per photo for each configuration; optionally against the reference Keras pipeline."""
    configs = [
        RunConfig(p, v, t, s, c)
        for p, v, t, s, c in itertools.product(
            _choices(provider, PROVIDERS, "--provider") or ["auto"],
            _choices(variant, PRECISIONS, "--variant") or [None],
            _choices(tta, TTA_PRESETS, "--tta") or [None],
            _choices(scan, SCAN_PLANS, "--scan") or [None],
            _chunk_sizes(chunk_size) or [None],
        )
    ]
    if model is None and not any(bundled_models_dir().glob("*.onnx")):
        raise click.UsageError(f"no bundled model in {bundled_models_dir()}; pass --model")
    if keras_model and keras_model != SEED_B3 and not Path(keras_model).is_file():
        raise click.BadParameter(f"{keras_model}: no such file (a .keras model, or {SEED_B3})",
                                 param_hint="--compare-keras")
    # Optional dependencies are checked before anything runs: a missing one is a usage error naming the install.
    if keras_model:
        _require("keras", "--compare-keras", 'pip install "cassava-edge[export]"')
    if chart_path:
        _require("matplotlib", "--chart", INSTALL_HINT)
    plan = _photo_plan(photos, count, warmup)
    report = run_benchmark(configs, plan, model=model, threads=threads, seed=seed, keras_model=keras_model,
                           roofline_seconds=roofline_seconds if roofline else None)
    context = click.get_current_context()
    report.command_line = command_line(context)
    report.argv = list(sys.argv)
    report.options = dict(context.params)
    print_report(report)
    if report.measured_nothing:
        # Nothing was measured: a JSON and an empty chart would look like results.
        click.echo(f"error: no configuration finished ({len(report.configurations)} tried); nothing written", err=True)
        sys.exit(1)
    if json_path:
        Path(json_path).write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
        click.echo(f"wrote {json_path}")
    if chart_path:
        write_chart(report, Path(chart_path))
        click.echo(f"wrote {chart_path}")
    if report.failed:
        sys.exit(1)


def command_line(context: click.Context) -> str:
    """The command as given, rebuilt from the parsed options (sys.argv is not ours under CliRunner or a group)."""
    words = context.command_path.split()
    for param in context.command.params:
        if not isinstance(param, click.Option) or param.name is None:
            continue
        value = context.params.get(param.name)
        if value is None or value == () or value is False or value == param.default:
            continue
        flag = max(param.opts, key=len)
        if param.is_flag:
            words.append(flag)
        else:
            for item in value if param.multiple else (value,):
                words += [flag, str(item)]
    return shlex.join(words)


def _photo_plan(photos: tuple[str, ...], count: int, warmup: int) -> PhotoPlan:
    if not photos:
        folder = default_photos_dir()
        if folder is None:
            raise click.UsageError("no photos: pass --photos (../shared/data/cassava/train_images is absent)")
        photos = (str(folder),)
    files = [str(path) for path in find_images(photos)][:count]
    for path in files:
        # Read once here so that no configuration pays for cold disk reads that the later ones skip.
        Path(path).read_bytes()
    return PhotoPlan(
        first=files[0],
        warmup=[files[i % len(files)] for i in range(warmup)],
        timed=[files[i % len(files)] for i in range(count)],
    )


def main() -> None:
    benchmark_command(prog_name="benchmark")
