"""`cassava-edge benchmark-bulk FOLDER`: photos/s of a bulk run, side by side in one process.

Engines: the local engine with ``workers 0`` (one group after the other, the pre-pipeline behaviour), the local
engine pipelined (``workers`` threads, default one per core), and Ray Data with 1 and 2 actors (one CPU each).
Rounds are interleaved and each round starts with a different engine, so a change in the machine's load (a
training run, other jobs) hits every engine alike; the ratio to ``workers 0`` is taken within each round.

Every engine's results are compared with ``workers 0``: same statuses and labels, largest probability
difference. Ray's wall time includes starting its actors (a fixed cost per run, seconds on a small machine),
so "first result" is reported too; a long run on a cluster amortises it.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import click

from cassava_edge.classifier import Classifier
from cassava_edge.commands.common import model_file_or_name
from cassava_edge.pipeline import default_workers
from cassava_edge.results import Classification
from cassava_edge.sources import find_images

from .machine import describe_machine, load_average


@dataclass
class Engine:
    name: str
    classify: Callable[[list[Path]], Iterable[Classification]]
    rates: list[float] = field(default_factory=list)  # photos/s per round
    first_result_s: list[float] = field(default_factory=list)
    results: list[Classification] = field(default_factory=list)


def time_engine(engine: Engine, photos: list[Path]) -> None:
    started = time.perf_counter()
    results, first = [], None
    for result in engine.classify(photos):
        results.append(result)
        if first is None:
            first = time.perf_counter() - started
    engine.rates.append(len(photos) / (time.perf_counter() - started))
    engine.first_result_s.append(first or 0.0)
    engine.results = results


def local_engines(classifier: Classifier, workers: int) -> list[Engine]:
    return [
        Engine("local, workers 0", lambda photos: classifier.classify_many(photos, workers=0)),
        Engine(f"local, pipelined ({workers} workers)",
               lambda photos: classifier.classify_many(photos, workers=workers)),
    ]


def ray_engines(actor_counts: list[int], model: str | None) -> list[Engine]:
    import ray.data

    from cassava_edge.ray import classify_dataset, connect, iter_classifications

    connect(None)
    ray.data.DataContext.get_current().enable_progress_bars = False
    ray.data.DataContext.get_current().execution_options.preserve_order = True

    def engine(actors: int) -> Engine:
        def classify(photos: list[Path]) -> Iterable[Classification]:
            dataset = classify_dataset(photos, classifier_options={"model": model}, actors=actors, batch_size=8)
            return iter_classifications(dataset)

        return Engine(f"Ray Data, {actors} actor{'s' if actors > 1 else ''} x 1 CPU", classify)

    return [engine(actors) for actors in actor_counts]


def compare(engine: Engine, reference: Engine) -> dict[str, Any]:
    """Same statuses and labels as the reference, and the largest probability difference."""
    pairs = list(zip(engine.results, reference.results))
    same = len(engine.results) == len(reference.results) and all(
        (a.source, a.status, a.label) == (b.source, b.status, b.label) for a, b in pairs
    )
    differences = [
        abs(a.probabilities[label] - b.probabilities[label])
        for a, b in pairs
        if a.ok and b.ok
        for label in a.probabilities
    ]
    return {"same_statuses_and_labels": same, "max_probability_difference": max(differences, default=0.0)}


def run(
    photos: list[Path], rounds: int, workers: int, ray_actors: list[int], model: str | None = None
) -> dict[str, Any]:
    machine = describe_machine()
    classifier = Classifier(model)
    list(classifier.classify_many(photos[:4], workers=0))  # warm-up: first-call costs are not the engines'
    engines = local_engines(classifier, workers) + (ray_engines(ray_actors, model) if ray_actors else [])
    for round_index in range(rounds):
        shift = round_index % len(engines)
        for engine in engines[shift:] + engines[:shift]:
            time_engine(engine, photos)
            click.echo(f"round {round_index + 1}: {engine.name}: {engine.rates[-1]:.2f} photos/s", err=True)
    reference = engines[0]
    rows = []
    for engine in engines:
        ratios = [rate / base for rate, base in zip(engine.rates, reference.rates)]
        rows.append({
            "engine": engine.name,
            "photos_per_s": statistics.median(engine.rates),
            "photos_per_s_rounds": engine.rates,
            "ratio_to_workers_0": statistics.median(ratios),
            "ratio_rounds": ratios,
            "first_result_s": statistics.median(engine.first_result_s),
            "failed": sum(not result.ok for result in engine.results),
            **compare(engine, reference),
        })
    machine["load_average_end"] = load_average()
    return {"machine": machine, "photos": len(photos), "rounds": rounds, "session": classifier.session.describe(),
            "plan": {"scan": classifier.scan, "tta": classifier.tta.name}, "rows": rows}


def print_table(report: dict[str, Any]) -> None:
    machine = report["machine"]
    click.echo(f"{report['photos']} photos, {report['rounds']} interleaved rounds, plan {report['plan']['scan']} x "
               f"{report['plan']['tta']}, model {Path(report['session']['path']).name}")
    click.echo(f"machine: {machine['cpu']}, {machine['logical_cores']} logical cores, load average "
               f"{_loads(machine['load_average_start'])} at start, {_loads(machine['load_average_end'])} at end")
    click.echo(f"{'engine':<34} {'photos/s':>9} {'vs workers 0':>13} {'first result':>13}  same results")
    for row in report["rows"]:
        same = "yes" if row["same_statuses_and_labels"] else "NO"
        click.echo(f"{row['engine']:<34} {row['photos_per_s']:>9.2f} {row['ratio_to_workers_0']:>12.2f}x "
                   f"{row['first_result_s']:>12.1f}s  {same} (max |dp| {row['max_probability_difference']:.1e})")


@click.command("benchmark-bulk", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--count", type=click.IntRange(min=4), default=80, show_default=True, help="Photos (first by name).")
@click.option("--rounds", type=click.IntRange(min=1), default=2, show_default=True, help="Interleaved rounds.")
@click.option("--workers", type=click.IntRange(min=1), help="Pipelined threads [default: one per core, at most 8].")
@click.option("--ray-actors", default="1,2", show_default=True,
              help="Ray actor counts, comma list; empty to skip Ray (also skipped when ray[data] is absent).")
@click.option("--model", callback=model_file_or_name, help="Model file or folder [default: bundled].")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the report as JSON.")
def bulk_command(folder: str, count: int, rounds: int, workers: int | None, ray_actors: str, model: str | None,
                 json_path: str | None) -> None:
    """Photos/s of FOLDER for workers 0, pipelined and Ray Data with 1 and 2 actors, measured side by side."""
    photos = find_images([folder])[:count]
    actors = [int(value) for value in ray_actors.split(",") if value.strip()]
    if actors and not _has_ray():
        click.echo('note: ray[data] is not installed, Ray engines skipped (pip install "cassava-edge[ray]")', err=True)
        actors = []
    report = run(photos, rounds, workers or default_workers(), actors, model)
    print_table(report)
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")


def _loads(averages: list[float] | None) -> str:
    return "/".join(f"{value:.1f}" for value in averages) if averages else "unknown"


def _has_ray() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None and importlib.util.find_spec("ray.data") is not None


if __name__ == "__main__":
    bulk_command()
