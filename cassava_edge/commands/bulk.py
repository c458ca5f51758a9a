"""The bulk-run options of `cassava-edge classify`: decoding threads, the Ray engine, Parquet output, resuming.

Kept apart from classify.py so that the everyday command reads simply; every check here runs before any model
loads or Ray starts, and every failure is one line (exit 2).
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from typing import Iterator

import click

from cassava_edge.classifier import Classifier
from cassava_edge.commands.common import (
    ClassifierOptions,
    UsageFailure,
    check_output_file,
    given_on_command_line,
    option_group,
)
from cassava_edge.results import Classification
from cassava_edge.rows import ParquetWriter, not_done, resume_from

ENGINES = ("local", "ray")
PARQUET = "parquet"
RAY_HINT = 'pip install "cassava-edge[ray]"'
EXIT_INTERRUPTED = 130  # 128 + SIGINT: what shells report for a command stopped with Ctrl-C


@dataclasses.dataclass(frozen=True)
class BulkOptions:
    workers: int | None
    engine: str
    ray_address: str | None
    actors: int | None
    cpus_per_actor: float
    gpus_per_actor: float
    resume: str | None


# Adds the bulk-run options; the command receives them as `bulk: BulkOptions`.
bulk_options = option_group(BulkOptions, "bulk", [
    click.option("--workers", type=click.IntRange(min=0),
                 help="Threads classifying groups of photos side by side, so that decoding overlaps the model; "
                      "0 does one group after the other [default: one per core, at most 8; on Ray: per actor, "
                      "one per CPU it reserves]."),
    click.option("--engine", type=click.Choice(ENGINES), default="local", show_default=True,
                 help="local: this process; ray: a Ray Data actor pool (local Ray, --ray-address or RAY_ADDRESS)."),
    click.option("--ray-address", metavar="ADDRESS", envvar="RAY_ADDRESS",
                 help="Ray cluster to run on (host:port, ray://host:port or auto) [default: start a local Ray]."),
    click.option("--actors", type=click.IntRange(min=1),
                 help="Ray: Classifiers running at once [default: the cluster's CPUs (or GPUs) / per actor]."),
    click.option("--cpus-per-actor", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
                 help="Ray: CPUs each actor reserves (also its onnxruntime threads)."),
    click.option("--gpus-per-actor", type=click.FloatRange(min=0), default=0.0, show_default=True,
                 help="Ray: GPUs each actor reserves; above 0 the actors run on CUDA."),
    click.option("--resume", type=click.Path(dir_okay=False), metavar="FILE", callback=check_output_file,
                 help="Skip the photos FILE (JSON lines of an earlier run) already holds and append the new "
                      "results to it (a missing FILE is created, and its missing folders)."),
])


def check_bulk_options(
    bulk: BulkOptions, output_format: str, output: str | None, views: bool
) -> tuple[str, str | None]:
    """Refuse combinations that cannot work, before anything loads; returns the (format, output) to use."""
    if bulk.engine == "local":
        for name in ("ray_address", "actors", "cpus_per_actor", "gpus_per_actor"):
            if given_on_command_line(name):
                raise UsageFailure(f"--{name.replace('_', '-')} needs --engine ray")
    else:
        if importlib.util.find_spec("ray") is None or importlib.util.find_spec("ray.data") is None:
            raise UsageFailure(f"--engine ray needs Ray Data, which is not installed: {RAY_HINT}")
        if views:
            raise UsageFailure("--views is not available with --engine ray (its rows keep no per-view probabilities)")
    if output_format == PARQUET:
        if importlib.util.find_spec("pyarrow") is None:
            raise UsageFailure(
                '--format parquet needs pyarrow, which is not installed: pip install "cassava-edge[parquet]"'
            )
        if output is None and bulk.resume is None:
            raise UsageFailure("--format parquet needs --output FILE (Parquet is not written to a terminal)")
    if bulk.resume is not None:
        if output_format != "jsonl" and given_on_command_line("output_format"):
            raise UsageFailure(f"--resume appends JSON lines; it cannot be used with --format {output_format}")
        if output is not None and Path(output).absolute() != Path(bulk.resume).absolute():
            raise UsageFailure("--resume FILE writes to FILE; leave out --output or give the same file")
        return "jsonl", bulk.resume
    return output_format, output


def skip_done(photos: list[Path], resume: str | None, *, quiet: bool = False) -> list[Path]:
    """The photos still to do: all of them, or those a resumed run's file does not hold yet (noted on stderr
    unless `quiet`)."""
    if resume is None or not Path(resume).exists():
        return photos
    if Path("-") in photos:
        raise UsageFailure("--resume cannot be used with - (standard input has no name to remember)")
    todo = not_done(photos, resume_from(resume))
    if not quiet:
        click.echo(f"resuming {resume}: {len(photos) - len(todo)} of {len(photos)} photos already done",
                   err=True)
    return todo


def interrupted_line(written: int, output_format: str, output: str | None, *, resumed: bool) -> str:
    """The closing line of a run stopped with Ctrl-C: how many results were written where, and how to go on."""
    line = f"interrupted: {written} result{'' if written == 1 else 's'} written to {output or 'standard output'}"
    if resumed:
        return f"{line}; run the same command again to classify the rest"
    if output is not None and output_format == "jsonl":
        return f"{line}; to classify the rest, run the same command with --resume {output}"
    return f"{line}; to be able to go on after a stop, run with --resume FILE (JSON lines, written as they come)"


def ray_results(
    photos: list[Path], options: ClassifierOptions, classifier: Classifier, bulk: BulkOptions, top_k: int
) -> Iterator[Classification]:
    """Classify on Ray (started here, or the cluster at --ray-address) and stream the results back in order."""
    import logging

    import ray.data

    from cassava_edge.ray import classify_dataset, connect, iter_classifications

    if Path("-") in photos:
        raise UsageFailure("--engine ray cannot read - (standard input); save the photo to a file")
    connect(bulk.ray_address)
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # our progress line replaces Ray Data's bars and logs
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.execution_options.preserve_order = True  # the same row order as the local engine
    classifier_options = {
        "model": options.model, "variant": options.variant, "tta": options.tta, "scan": options.scan,
        "seed": options.seed, "min_confidence": options.min_confidence, "chunk_size": options.chunk_size,
    }
    if options.provider != "auto":
        classifier_options["provider"] = options.provider
    if options.threads is not None:
        classifier_options["threads"] = options.threads
    dataset = classify_dataset(
        photos,
        classifier_options=classifier_options,
        actors=bulk.actors or _default_actors(bulk),
        num_cpus=bulk.cpus_per_actor,
        num_gpus=bulk.gpus_per_actor,
        workers=bulk.workers,
    )
    return iter_classifications(dataset, top_k)


def _default_actors(bulk: BulkOptions) -> int:
    """As many actors as the cluster has room for, by the resource each one reserves most of."""
    import ray

    resources = ray.cluster_resources()
    if bulk.gpus_per_actor > 0:
        return max(1, int(resources.get("GPU", 0) // bulk.gpus_per_actor))
    return max(1, int(resources.get("CPU", 1) // bulk.cpus_per_actor))


def writer_class(output_format: str) -> type:
    """The writer of `output_format`, parquet included."""
    from cassava_edge.writers import WRITERS

    return ParquetWriter if output_format == PARQUET else WRITERS[output_format]
