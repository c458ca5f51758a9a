"""`cassava-edge classify`: photos in, one result per photo out (table, json, jsonl or csv)."""

from __future__ import annotations

import sys

import click

from cassava_edge.commands.common import ClassifierOptions, build_classifier, classifier_options, progress
from cassava_edge.sources import find_images
from cassava_edge.writers import FORMATS, WRITERS


@click.command()
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
        with progress(len(files)) as bar:
            for result in results:
                writer.write(result)
                if not result.ok:
                    failed += 1
                    click.echo(f"failed: {result.source}: {result.error}", err=True)
                bar.update(1)
        writer.finish()
    finally:
        if output:
            stream.close()
    if failed:
        click.echo(f"{failed} of {len(files)} files failed", err=True)
        sys.exit(1)
