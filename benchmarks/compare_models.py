"""`python -m benchmarks.compare_models OLD NEW`: per-photo latency of two models' default plans, side by side.

Each model runs its own default variant, scan plan and TTA (as users get them). The models take turns photo by
photo, so both see the same machine load; the ratio of their medians is the figure to read, not the absolute
times (this machine is shared and noisy).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import click

from cassava_edge import Classifier
from cassava_edge.sources import find_images


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("models", nargs=2, type=click.Path(exists=True, path_type=Path))
@click.option("--photos", type=click.Path(exists=True, path_type=Path),
              default=Path("../shared/data/cassava/train_images"),
              show_default=True)
@click.option("--count", type=click.IntRange(min=1), default=40, show_default=True, help="Timed photos per model.")
@click.option("--warmup", type=click.IntRange(min=0), default=3, show_default=True)
def main(models: tuple[Path, Path], photos: Path, count: int, warmup: int) -> None:
    """Time OLD and NEW (model files or folders of variants) on the same photos, taking turns."""
    classifiers = [Classifier(model, provider="cpu") for model in models]
    paths = find_images([str(photos)])[: warmup + count]
    times: list[list[float]] = [[], []]
    for index, path in enumerate(paths):
        for slot, classifier in enumerate(classifiers):
            started = time.perf_counter()
            classifier.classify(path)
            if index >= warmup:
                times[slot].append((time.perf_counter() - started) * 1000)
    for model, classifier, samples in zip(models, classifiers, times):
        views = classifier.prepare(classifier.load(paths[0])).num_views
        click.echo(f"{model}: {classifier.metadata.precision}, scan {classifier.scan} x tta {classifier.tta.name} "
                   f"({views} views of {classifier.metadata.crop_size[0]} px), median "
                   f"{statistics.median(samples):.1f} ms per photo (p90 {sorted(samples)[int(0.9 * len(samples))]:.1f})")
    ratio = statistics.median(times[1]) / statistics.median(times[0])
    click.echo(f"NEW / OLD median latency: {ratio:.2f}x over {len(times[0])} photos")


if __name__ == "__main__":
    main()
