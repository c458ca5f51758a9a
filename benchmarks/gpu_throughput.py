"""Photos per second on a GPU: the default plan and a 16-view plan, fp16 against fp32, batch sizes 8 to 64.

A prepared script for a GPU machine with onnxruntime-gpu (none was available when it was written: BENCHMARKS.md
says which figures are still unmeasured). It loads one session per variant and plan and varies the views per
onnxruntime call, so the whole grid (2 plans x 2 variants x 4 batch sizes, 256 photos each) fits in a few
minutes. Each row reports

* end to end: `classify_many` with its worker threads on all cores, as `cassava-edge classify` runs;
* model only: the same views, prepared beforehand, through `infer` alone: the rate the GPU could reach if
  decoding kept up. End to end well under model only means the CPU cores, not the GPU, set the pace.

With ``--provider cpu`` it is a dry run of the same code (tiny numbers, a handful of photos), which the tests use:

    python -m benchmarks.gpu_throughput                        # on the GPU machine, < 5 minutes
    python -m benchmarks.gpu_throughput --provider cpu --photos 2 --batch-sizes 8
"""

from __future__ import annotations

import json
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import click
import numpy as np

from cassava_edge.classifier import Classifier
from cassava_edge.commands.common import model_file_or_name
from cassava_edge.results import PreparedImage
from cassava_edge.pipeline import default_workers
from cassava_edge.sources import find_images

from .machine import describe_machine

REPO_ROOT = Path(__file__).resolve().parents[1]
# (name, scan, tta): None means the model's default. corners x seed is 4 crops x 4 views on a 4:3 photo.
PLANS = (("default", None, None), ("16 views", "corners", "seed"))
VARIANTS = ("fp16", "fp32")
BATCH_SIZES = (8, 16, 32, 64)
# Photos whose views go through the model-only measurement: 64 x 16 views of 384x384 float32 is 1.8 GB.
MODEL_ONLY_PHOTOS = 64


def default_photos_dir() -> Path:
    data = os.environ.get("CASSAVA_EDGE_DATA")
    return (Path(data) if data else REPO_ROOT.parent / "shared" / "data") / "cassava" / "train_images"


def prepare_all(classifier: Classifier, photos: Sequence[Path], workers: int) -> list[PreparedImage]:
    """The photos' views for the model-only rate, prepared once per plan on all worker threads."""
    def prepare(photo: Path) -> PreparedImage:
        return classifier.prepare(classifier.load(photo), name=str(photo))

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(prepare, photos))


def measure(
    classifier: Classifier, photos: Sequence[Path], prepared: Sequence[PreparedImage], batch_size: int, workers: int
) -> dict[str, Any]:
    """One row: end-to-end and model-only photos/s at `batch_size` views per onnxruntime call."""
    classifier.session.chunk_size = batch_size
    views_per_photo = prepared[0].num_views
    # Enough photos per group that each group fills at least one onnxruntime call.
    batch_images = max(1, math.ceil(batch_size / views_per_photo))
    views = np.concatenate([item.views for item in prepared])
    classifier.infer(views[:batch_size])  # warm-up: CUDA kernels are chosen on the first call of a shape
    started = time.perf_counter()
    results = list(classifier.classify_many(photos, batch_images=batch_images, workers=workers))
    end_to_end = time.perf_counter() - started
    started = time.perf_counter()
    classifier.infer(views)
    model_only = time.perf_counter() - started
    return {
        "batch_size": batch_size,
        "views_per_photo": views_per_photo,
        "photos": len(photos),
        "failed": sum(not result.ok for result in results),
        "end_to_end_photos_per_s": len(photos) / end_to_end,
        "model_only_photos_per_s": len(prepared) / model_only,
    }


def run(
    photos: Sequence[Path], provider: str, variants: Sequence[str], batch_sizes: Sequence[int], workers: int,
    model: str | None = None,
) -> dict[str, Any]:
    machine = describe_machine()
    rows = []
    for plan, scan, tta in PLANS:
        prepared: list[PreparedImage] = []
        for variant in variants:
            classifier = Classifier(model, provider=provider, variant=variant, scan=scan, tta=tta)
            # The views depend on the plan only: prepared once, for a bounded number of photos (memory).
            prepared = prepared or prepare_all(classifier, photos[:MODEL_ONLY_PHOTOS], workers)
            for batch_size in batch_sizes:
                row = measure(classifier, photos, prepared, batch_size, workers)
                row.update(plan=plan, variant=variant, providers=classifier.session.providers[:1],
                           io_binding=classifier.session.io_binding)
                rows.append(row)
                print(format_row(row), flush=True)
    return {"machine": machine, "provider": provider, "workers": workers, "rows": rows}


def format_row(row: dict[str, Any]) -> str:
    return (f"{row['plan']:<9} {row['variant']:<5} batch {row['batch_size']:>3}  "
            f"{row['views_per_photo']:>2} views/photo  end to end {row['end_to_end_photos_per_s']:8.1f} photos/s  "
            f"model only {row['model_only_photos_per_s']:8.1f} photos/s  ({row['providers'][0]}, "
            f"io binding {'on' if row['io_binding'] else 'off'}, {row['failed']} failed)")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--provider", type=click.Choice(("cuda", "cpu")), default="cuda", show_default=True,
              help="cuda on the GPU machine; cpu for a dry run of the same code.")
@click.option("--photos", "count", type=click.IntRange(min=1), default=256, show_default=True,
              help="Photos per row (the first of the folder, by name).")
@click.option("--photos-dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder of photos [default: $CASSAVA_EDGE_DATA or ../shared/data, cassava/train_images].")
@click.option("--batch-sizes", default=",".join(map(str, BATCH_SIZES)), show_default=True,
              help="Views per onnxruntime call, comma list.")
@click.option("--variants", default=",".join(VARIANTS), show_default=True, help="Model precisions, comma list.")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="classify_many threads [default: one per core, at most 8].")
@click.option("--model", callback=model_file_or_name, help="Model folder of variants [default: bundled].")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the rows as JSON.")
def main(provider: str, count: int, photos_dir: str | None, batch_sizes: str, variants: str, workers: int | None,
         model: str | None, json_path: str | None) -> None:
    """Photos per second for the default plan and 16 views per photo, fp16 vs fp32, batch sizes 8-64."""
    folder = Path(photos_dir) if photos_dir else default_photos_dir()
    if not folder.is_dir():
        raise click.UsageError(f"no photos folder at {folder}; pass --photos-dir")
    photos = find_images([str(folder)])[:count]
    sizes = [int(size) for size in batch_sizes.split(",")]
    chosen = [variant.strip() for variant in variants.split(",")]
    threads = default_workers() if workers is None else workers
    print(f"{len(photos)} photos from {folder}, provider {provider}, {threads} worker threads", flush=True)
    report = run(photos, provider, chosen, sizes, threads, model)
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
