"""`cassava-edge classify`: photos in, one result per photo out (table, json, jsonl or csv), then a summary.

Everything the user typed is checked before the model loads: paths, the output file, options that do not fit
the chosen format. Results are written as they come, one row per photo, failed ones included.
"""

from __future__ import annotations

import contextlib
import io
import signal
import sys
import threading
from pathlib import Path
from typing import Iterable, Iterator, TextIO

import click

from cassava_edge.classifier import Classifier
from cassava_edge.commands.bulk import (
    EXIT_INTERRUPTED,
    PARQUET,
    BulkOptions,
    bulk_options,
    check_bulk_options,
    interrupted_line,
    ray_results,
    skip_done,
    writer_class,
)
from cassava_edge.commands.common import (
    ClassifierOptions,
    UsageFailure,
    build_classifier,
    check_output_file,
    classifier_options,
    given_on_command_line,
    make_folders,
    note,
)
from cassava_edge.commands.progress import Progress
from cassava_edge.imaging import ImageSource
from cassava_edge.results import FAILED, Classification
from cassava_edge.sources import STDIN, describe_hidden, describe_skipped, find_sources
from cassava_edge.writers import FORMATS, ResultWriter, RunSummary, TableWriter, speed_text

# Formats with room for per-crop, per-view probabilities.
VIEW_FORMATS = ("json", "jsonl")


@click.command()
@click.argument("paths", nargs=-1, required=True)
@classifier_options
@click.option("--top-k", type=click.IntRange(min=1), default=3, show_default=True,
              help="Classes listed per photo (at most the model's classes; csv lists them all).")
@click.option("--format", "output_format", type=click.Choice((*FORMATS, PARQUET)), default="table",
              show_default=True,
              help="Output format.")
@click.option("--output", "-o", type=click.Path(), callback=check_output_file,
              help="Write results to FILE, creating its missing folders [default: standard output].")
@click.option("--views", is_flag=True, help="Include per-crop, per-view probabilities (json and jsonl only).")
@click.option("--hidden", is_flag=True,
              help="Also search hidden files and folders (names starting with .) inside the folders given.")
@click.option("--quiet", "-q", is_flag=True,
              help="Results only: no progress, summary or speed lines (errors are still shown).")
@click.option("--verbose", "-v", is_flag=True,
              help="Also show the model, provider and session settings, and each photo's time per stage.")
@bulk_options
def classify(
    paths: tuple[str, ...], options: ClassifierOptions, top_k: int, output_format: str, output: str | None, views: bool,
    hidden: bool, quiet: bool, verbose: bool, bulk: BulkOptions,
) -> None:
    """Classify photos: files, folders (recursively), glob patterns, or - for one photo on standard input.

    Large runs: --workers, --engine ray, --format parquet and --resume (see the README's bulk runs section)."""
    if quiet and verbose:
        raise UsageFailure("--quiet and --verbose cannot be used together")
    check_format_options(output_format, views)
    output_format, output = check_bulk_options(bulk, output_format, output, views)
    sources = find_sources(paths, hidden=hidden)
    if sources.skipped and not quiet:
        click.echo(describe_skipped(sources.skipped), err=True)
    if sources.hidden and not quiet:
        click.echo(describe_hidden(sources.hidden), err=True)
    photos = skip_done(sources.photos, bulk.resume, quiet=quiet)
    classifier = build_classifier(options)
    top_k = cap_top_k(top_k, len(classifier.labels))
    if verbose:
        click.echo(describe_classifier(classifier), err=True)
    summary = RunSummary()  # the run's clock starts here, so that it counts Ray's start-up
    if bulk.engine == "ray" and photos:
        results: Iterable[Classification] = ray_results(photos, options, classifier, bulk, top_k)
    else:
        inputs: list[ImageSource] = [read_stdin() if path == Path(STDIN) else path for path in photos]
        results = classifier.classify_many(inputs, top_k=top_k, return_views=views, workers=bulk.workers)
    option = "--resume" if bulk.resume is not None else "--output"
    with open_output(output, option, binary=output_format == PARQUET, append=bulk.resume is not None) as stream:
        writer = make_writer(output_format, stream, classifier, top_k)
        write_results(
            results, writer, summary, len(photos), shares_terminal=output is None, quiet=quiet, verbose=verbose
        )
    if not quiet:
        speed = summary.speed_line()
        if speed is not None:
            click.echo(speed, err=True)  # before the summary, which stays the closing line
        click.echo(summary.line(), err=True)
    if summary.interrupted:
        click.echo(interrupted_line(summary.total, output_format, output, resumed=bulk.resume is not None), err=True)
        sys.exit(EXIT_INTERRUPTED)
    if summary.counts[FAILED]:
        sys.exit(1)


def check_format_options(output_format: str, views: bool) -> None:
    """Refuse options the chosen format cannot show; note those it ignores."""
    if views and output_format not in VIEW_FORMATS:
        raise UsageFailure(f"--views needs --format {' or '.join(VIEW_FORMATS)} ({output_format} has no room for "
                           "per-view probabilities)")
    if output_format == "csv" and given_on_command_line("top_k"):
        note("--top-k has no effect with --format csv, which has a column for every class")


def cap_top_k(top_k: int, classes: int) -> int:
    if top_k > classes:
        if given_on_command_line("top_k"):
            note(f"--top-k {top_k} is more than the model's {classes} classes; listing {classes}")
        return classes
    return top_k


def describe_classifier(classifier: Classifier) -> str:
    """--verbose: what runs, e.g. "model models/x.int8.onnx (int8), provider CPUExecutionProvider, tta flip (2
    views per crop), scan center, chunk size 4, intra-op threads 0 (onnxruntime's default)"."""
    session = classifier.session.describe()
    threads = session["intra_op_threads"] or "0 (onnxruntime's default)"
    return (
        f"model {session['path']} ({classifier.metadata.precision}), "
        f"provider {', '.join(session['providers_loaded'])}, "
        f"tta {classifier.tta.name} ({classifier.tta.views_per_crop} views per crop), scan {classifier.scan}, "
        f"chunk size {session['chunk_size']}, intra-op threads {threads}"
    )


def make_writer(output_format: str, stream: TextIO, classifier: Classifier, top_k: int) -> ResultWriter:
    """The writer of `output_format`; the table, for people, also names each diagnosis in full (from the model's
    metadata)."""
    if output_format == "table":
        return TableWriter(stream, classifier.labels, top_k, label_names=classifier.metadata.label_names)
    return writer_class(output_format)(stream, classifier.labels, top_k)  # type: ignore[no-any-return]


def read_stdin() -> io.BytesIO:
    """The photo piped into standard input, named <stdin> in the results."""
    stdin = click.get_binary_stream("stdin")
    if stdin.isatty():
        raise UsageFailure("- reads a photo from standard input, which is a terminal here; "
                           "pipe one in: cassava-edge classify - < leaf.jpg")
    photo = io.BytesIO(stdin.read())
    photo.name = "<stdin>"
    return photo


@contextlib.contextmanager
def open_output(
    output: str | None, option: str = "--output", *, binary: bool = False, append: bool = False
) -> Iterator[TextIO]:
    """The output file (created only now, after every check passed, with its missing folders), or standard
    output; `binary` for Parquet, `append` to add to a resumed run's file. `option` names it in errors."""
    if output is None:
        yield click.get_text_stream("stdout")
        return
    make_folders(output, option)
    mode = ("a" if append else "w") + ("b" if binary else "")
    try:
        stream = open(output, mode, **({} if binary else {"encoding": "utf-8", "newline": ""}))
    except OSError as exc:  # checked before the model loaded, but the place may have changed since
        raise UsageFailure(f"{option} {output}: cannot write there: {exc.strerror or exc}") from None
    with stream:
        yield stream  # type: ignore[misc]


@contextlib.contextmanager
def interrupt_held() -> Iterator[None]:
    """Hold a Ctrl-C that arrives inside the block until the block has run, then raise it (main thread only:
    other threads never receive signals). Without it a result could be written but not yet counted."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received and previous is not signal.SIG_IGN:
        raise KeyboardInterrupt


def write_results(
    results: Iterable[Classification], writer: ResultWriter, summary: RunSummary, total: int, *,
    shares_terminal: bool, quiet: bool = False, verbose: bool = False
) -> None:
    """Write each result as it arrives, with failures also named on stderr and the progress kept off the results'
    lines, counting them in `summary`. `quiet`: no progress; `verbose`: a line per photo with its stage times.
    Ctrl-C stops the run but not the writing: the results so far stay written and the file complete (closed JSON
    array, Parquet footer), and `summary.interrupted` says so."""
    writer.start()
    with Progress(total, results=writer.stream if shares_terminal else None, quiet=quiet) as progress:
        try:
            for result in results:
                progress.before_result()
                with interrupt_held():  # written and counted together, so the closing line's count is the file's
                    writer.write(result)
                    summary.add(result)
                if not result.ok:
                    progress.echo(f"failed: {result.source}: {result.error}")
                elif verbose and result.speed is not None:
                    label = f" {result.label}" if result.label else ""
                    progress.echo(f"{result.source}: {result.status}{label}, {speed_text(result.speed)}")
                progress.update(1)
        except KeyboardInterrupt:
            summary.interrupted = True
            close = getattr(results, "close", None)
            if close is not None:
                close()  # stop the engine now: cancels the photos not started (threads, Ray tasks)
    writer.finish()
    summary.finish()
