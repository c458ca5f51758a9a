"""The `cassava-edge` command: a thin click layer over the Classifier API.

Commands share the options that build a Classifier through `classifier_options` and `build_classifier`, so a
new command (evaluate, benchmark, ...) gets the same --model/--provider/... flags by adding one decorator.
Exit codes: 0 all files classified, 1 some files failed, 2 usage errors (bad path or option, unusable model).
"""

from __future__ import annotations

import csv
import functools
import glob
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, TextIO

import click

from cassava_edge import __version__
from cassava_edge.classifier import Classifier
from cassava_edge.errors import CassavaEdgeError
from cassava_edge.models import PRECISIONS
from cassava_edge.results import Classification
from cassava_edge.scan import SCAN_PLANS
from cassava_edge.session import PROVIDERS
from cassava_edge.tta import TTA_PRESETS

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
FORMATS = ("table", "json", "jsonl", "csv")


class UsageFailure(click.ClickException):
    """A user error: printed as one 'Error: ...' line, exit code 2 like click's own usage errors."""

    exit_code = 2


class CliGroup(click.Group):
    """Turns any CassavaEdgeError escaping a command into a one-line error instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CassavaEdgeError as exc:
            raise UsageFailure(str(exc)) from None


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


def classifier_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the options that build a Classifier; the command receives them as `options: ClassifierOptions`."""

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        fields = ClassifierOptions.__dataclass_fields__
        options = ClassifierOptions(**{name: kwargs.pop(name) for name in fields})
        return command(options=options, **kwargs)

    decorators = [
        click.option("--model", type=click.Path(), help="Model file or folder of variants [default: bundled model]."),
        click.option("--provider", type=click.Choice(PROVIDERS), default="auto", show_default=True,
                     help="Execution provider; auto uses CUDA when it loads, else CPU."),
        click.option("--variant", type=click.Choice(PRECISIONS), help="Precision to pick from a model folder."),
        click.option("--threads", type=click.IntRange(min=1),
                     help="onnxruntime intra-op threads [default: all cores]."),
        click.option("--chunk-size", type=click.IntRange(min=1),
                     help="Views per onnxruntime call [default: 4 on CPU, 32 on CUDA]."),
        click.option("--tta", type=click.Choice(TTA_PRESETS), help="Test-time augmentation [default: the model's]."),
        click.option("--scan", type=click.Choice(SCAN_PLANS), help="Crop plan [default: the model's]."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed of the 'seed' TTA preset."),
    ]
    for decorate in reversed(decorators):
        wrapper = decorate(wrapper)
    return wrapper


def build_classifier(options: ClassifierOptions) -> Classifier:
    """The Classifier the options describe; user errors become a one-line usage failure (exit 2)."""
    try:
        return Classifier(
            model=options.model,
            provider=options.provider,
            variant=options.variant,
            threads=options.threads,
            chunk_size=options.chunk_size,
            tta=options.tta,
            scan=options.scan,
            seed=options.seed,
        )
    except CassavaEdgeError as exc:
        raise UsageFailure(str(exc)) from None


def find_images(paths: Iterable[str]) -> list[Path]:
    """Files named, image files under folders (recursive), and glob matches (expanded here for shells that don't)."""
    found: dict[Path, Path] = {}  # resolved -> as given, to drop duplicates but keep the user's spelling

    def add(path: Path) -> None:
        found.setdefault(path.resolve(), path)

    def add_folder(folder: Path) -> None:
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
                add(path)

    for raw in paths:
        path = Path(raw)
        if path.is_file():
            add(path)  # named explicitly: used whatever its extension
        elif path.is_dir():
            add_folder(path)
        elif any(char in raw for char in "*?["):
            matches = sorted(glob.glob(raw, recursive=True))
            if not matches:
                raise UsageFailure(f"no files match {raw}")
            for match in map(Path, matches):
                if match.is_dir():
                    add_folder(match)
                elif match.suffix.lower() in IMAGE_EXTENSIONS:
                    add(match)
        else:
            raise UsageFailure(f"no such file or directory: {raw}")
    if not found:
        raise UsageFailure(f"no images found in {', '.join(paths)} (extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})")
    return list(found.values())


class ResultWriter:
    """Writes results as they arrive, flushing each one so an interrupted run keeps what it did."""

    def __init__(self, stream: TextIO, labels: tuple[str, ...], top_k: int) -> None:
        self.stream = stream
        self.labels = labels
        self.top_k = top_k

    def start(self) -> None: ...

    def write(self, result: Classification) -> None:
        self._write(result)
        self.stream.flush()

    def _write(self, result: Classification) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        self.stream.flush()


class TableWriter(ResultWriter):
    """Aligned columns for people; failed files appear only on stderr."""

    def start(self) -> None:
        self.width = max(len("label"), *(len(label) for label in self.labels))
        # Each top-k entry is "<label> 0.123", joined by ", ".
        self.top_width = self.top_k * (self.width + 6) + 2 * (self.top_k - 1)
        self.stream.write(f"{'label':<{self.width}}  confidence  {'top-k':<{self.top_width}}  source\n")

    def _write(self, result: Classification) -> None:
        if not result.ok:
            return
        top = ", ".join(f"{label} {p:.3f}" for label, p in result.top_k)
        self.stream.write(
            f"{result.label:<{self.width}}  {result.confidence:>10.3f}  {top:<{self.top_width}}  {result.source}\n"
        )


class JsonlWriter(ResultWriter):
    """One JSON object per line, failed files included with ok false and their error."""

    def _write(self, result: Classification) -> None:
        self.stream.write(json.dumps(result.to_dict()) + "\n")


class JsonWriter(ResultWriter):
    """One JSON array; written item by item, so it is complete only when the run is."""

    def start(self) -> None:
        self.count = 0
        self.stream.write("[")

    def _write(self, result: Classification) -> None:
        self.stream.write(("," if self.count else "") + "\n  " + json.dumps(result.to_dict()))
        self.count += 1

    def finish(self) -> None:
        self.stream.write("\n]\n")
        super().finish()


class CsvWriter(ResultWriter):
    """source, ok, label, confidence, one probability column per label, error."""

    def start(self) -> None:
        self.writer = csv.writer(self.stream, lineterminator="\n")
        self.writer.writerow(["source", "ok", "label", "confidence", *self.labels, "error"])

    def _write(self, result: Classification) -> None:
        probs = [f"{result.probabilities[label]:.6f}" if result.ok else "" for label in self.labels]
        confidence = f"{result.confidence:.6f}" if result.confidence is not None else ""
        self.writer.writerow([result.source, result.ok, result.label or "", confidence, *probs, result.error or ""])


WRITERS: dict[str, type[ResultWriter]] = {
    "table": TableWriter,
    "json": JsonWriter,
    "jsonl": JsonlWriter,
    "csv": CsvWriter,
}


@click.group(cls=CliGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="cassava-edge", message="%(prog)s %(version)s")
def cli() -> None:
    """Classify cassava leaf photos into five disease classes with an ONNX model."""


@cli.command()
@click.argument("paths", nargs=-1, required=True)
@classifier_options
@click.option("--top-k", type=click.IntRange(min=1), default=3, show_default=True, help="Classes listed per photo.")
@click.option("--format", "output_format", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), help="Write results to FILE.")
@click.option("--views", is_flag=True, help="Include per-crop, per-view probabilities (json and jsonl).")
def classify(
    paths: tuple[str, ...], options: ClassifierOptions, top_k: int, output_format: str, output: str | None, views: bool
) -> None:
    """Classify photos: files, folders (recursively) and glob patterns."""
    files = find_images(paths)
    classifier = build_classifier(options)
    return_views = views and output_format in ("json", "jsonl")
    failed = 0
    stream = open(output, "w", encoding="utf-8", newline="") if output else sys.stdout
    try:
        writer = WRITERS[output_format](stream, classifier.labels, min(top_k, len(classifier.labels)))
        writer.start()
        results = classifier.classify_many(files, top_k=top_k, return_views=return_views)
        with _progress(len(files)) as progress:
            for result in results:
                writer.write(result)
                if not result.ok:
                    failed += 1
                    click.echo(f"failed: {result.source}: {result.error}", err=True)
                progress.update(1)
        writer.finish()
    finally:
        if output:
            stream.close()
    if failed:
        click.echo(f"{failed} of {len(files)} files failed", err=True)
        sys.exit(1)


@cli.command()
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


@cli.command()
@click.argument("data", type=click.Path(exists=True, file_okay=False))
@classifier_options
@click.option("--labels", "labels_csv", type=click.Path(exists=True, dir_okay=False),
              help="CSV with image_id,label for the photos in DATA [default: train.csv or labels.csv found in DATA].")
@click.option("--ids", type=click.Path(exists=True, dir_okay=False), help="Evaluate only the image ids listed.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, writable=True), help="Write the report as JSON.")
@click.option("--heatmap", type=click.Path(dir_okay=False, writable=True), help="Write the confusion heatmap (PNG).")
def evaluate(data: str, options: ClassifierOptions, labels_csv: str | None, ids: str | None,
             json_path: str | None, heatmap: str | None) -> None:
    """Accuracy, macro-F1, per-class precision/recall and confusion matrix on labelled photos.

    DATA is a Kaggle-layout folder (train.csv + train_images/), a folder with labels.csv + images/, or any folder
    with --labels. Photos that fail to decode are counted and named (exit 1), the rest still evaluated."""
    from cassava_edge.evaluate import draw_confusion_heatmap, evaluate as run_evaluation
    from cassava_edge.labelled import read_ids, read_labelled

    classifier = build_classifier(options)
    photos = read_labelled(data, labels_csv, read_ids(ids) if ids else None, num_classes=len(classifier.labels))
    with _progress(len(photos)) as progress:
        report = run_evaluation(classifier, photos, progress=progress.update)
    for line in format_report(report):
        click.echo(line)
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=2), encoding="utf-8")
    if heatmap:
        draw_confusion_heatmap(report, heatmap)
    for failure in report["failed"]:
        click.echo(f"failed: {failure['source']}: {failure['error']}", err=True)
    if report["failed"]:
        click.echo(f"{len(report['failed'])} of {len(photos)} photos failed", err=True)
        sys.exit(1)


def format_report(report: dict[str, Any]) -> list[str]:
    """The evaluation report as text: headline figures, per-class table, confusion counts and row shares."""
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
    return lines


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


class _NoProgress:
    def __enter__(self) -> "_NoProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, steps: int) -> None:
        return None


def _progress(total: int) -> Any:
    """A progress bar on stderr, only when there is more than one file."""
    if total <= 1:
        return _NoProgress()
    return click.progressbar(length=total, label="classifying", file=sys.stderr)


def _add_benchmark_command() -> None:
    """`cassava-edge benchmark` lives in benchmarks/ (its module imports only numpy, click and cassava_edge; the
    Keras comparison imports TensorFlow only when asked for). Absent from a wheel built without it."""
    try:
        from benchmarks.latency import benchmark_command
    except ImportError:
        return
    cli.add_command(benchmark_command, "benchmark")


_add_benchmark_command()


def main() -> None:
    """Console entry point (`cassava-edge`)."""
    cli(prog_name="cassava-edge")


if __name__ == "__main__":
    main()
