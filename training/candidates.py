"""Candidates for the default model (issue 17, item 5): each model's *default plan* through the runtime, on labelled
originals that none of the candidates trained on, side by side with its speed against the reference pipeline.

For every candidate it writes the photos' probabilities as they are and with only their look changed (the Roboflow
chain of the flip test, JPEG at quality 80, a 640 px resize) to CSV files, then a report: top-1 and macro recall
with 95% intervals, per-class recall, the flip test, top-1 and flips under each look, each candidate paired with
the first (exact McNemar on the photos where they disagree), and, given the JSON of
``cassava-edge benchmark --compare-keras seed-b3`` for a candidate, its speed-up over the reference::

    python -m training.candidates --candidate cassava-lite0 --candidate cassava-lite0-512 \\
        --photos ../shared/data/cassava=models/validation_ids.txt --photos ../shared/data/cassava-more \\
        --benchmark cassava-lite0=out/bench-lite0.json --benchmark cassava-lite0-512=out/bench-512.json \\
        --output training/experiments/default-candidates

A candidate may name a TTA preset other than its model's default, ``MODEL@PRESET`` (``cassava-lite2-v3@flip``): the
same file on another plan, scored, named and timed (the benchmark configuration of that preset) as a candidate of
its own.

The report is recomputed from the committed CSVs by ``tests/test_candidates.py``; ``python -m training.card`` prints
its rows for the model card. Runs on the runtime only: no TensorFlow.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from cassava_edge.errors import CassavaEdgeError
from cassava_edge.tta import TTA_PRESETS

from .oof import Scored, figures, flip_share, read_probabilities, write_scored
from .paired import discordant, paired

FLIP_LOOK = "roboflow-look"  # the flip test


def _downscaled(rgb: np.ndarray, longer_side: int = 640) -> np.ndarray:
    """A phone app's resize: the longer side to 640 px (800x600 -> 640x480)."""
    import cv2

    height, width = rgb.shape[:2]
    scale = longer_side / max(height, width)
    size = (round(width * scale), round(height * scale))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA) if scale < 1 else rgb


def looks() -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """The same photo with only its look changed: the Roboflow chain, and two ordinary things phones and apps do
    (issue 17 measured the bundled model's answers changing under each)."""
    from .looks import jpeg, roboflow_chain

    return {FLIP_LOOK: roboflow_chain, "jpeg-q80": lambda rgb: jpeg(rgb, 80), "downscaled-640": _downscaled}


def table_path(folder: Path, name: str, look: str | None = None) -> Path:
    return folder / (f"{name}.{look}.probabilities.csv" if look else f"{name}.probabilities.csv")


def split_candidate(candidate: str) -> tuple[str, str | None]:
    """`MODEL` or `MODEL@PRESET` -> (MODEL, the TTA preset or None for the model's own)."""
    model, sep, tta = candidate.rpartition("@")
    if not sep or "/" in tta or "\\" in tta:  # an "@" inside a folder's name names no preset
        return candidate, None
    if tta not in TTA_PRESETS:
        raise ValueError(f"candidate {candidate}: unknown TTA preset {tta!r} (presets: {', '.join(TTA_PRESETS)})")
    return model, tta


def candidate_name(candidate: str) -> str:
    """The name a candidate's tables, benchmark and rows go by: the model's file name, and its preset if one is
    named."""
    model, tta = split_candidate(candidate)
    name = Path(model).name.removesuffix(".onnx")
    return name if tta is None else f"{name}@{tta}"


def score_candidate(model: str, photos: list[tuple[str, str, int, Path]], tta: str | None = None
                    ) -> dict[str | None, Scored]:
    """The model's probabilities on each photo with its default variant (CPU) and plan (or the TTA preset `tta`): as
    it is (key None) and under each of `looks()`."""
    from cassava_edge import Classifier
    from cassava_edge.imaging import load_image

    classifier = Classifier(model, provider="cpu", tta=tta)
    variants = {None: lambda rgb: rgb, **looks()}
    rows: dict[str | None, list[list[float]]] = {look: [] for look in variants}
    for _, _, _, path in photos:
        rgb = load_image(path)
        for look, change in variants.items():
            result = classifier.classify(change(rgb))
            rows[look].append([result.probabilities[label] for label in classifier.labels])
    keys = [(folder, image_id) for folder, image_id, _, _ in photos]
    labels = np.asarray([label for _, _, label, _ in photos])
    return {look: Scored(keys, labels, np.asarray(probs)) for look, probs in rows.items()}


def speedup(benchmark: dict, tta: str | None = None) -> dict:
    """The first configuration of a `cassava-edge benchmark --compare-keras` report (the first of TTA preset `tta`
    when given): ms per photo, and how many times faster than the reference pipeline measured in the same run."""
    runs = [run for run in benchmark["configurations"] if tta is None or run["tta"] == tta]
    if not runs:
        raise ValueError(f"the benchmark has no configuration with tta {tta}: run it with --tta {tta}")
    run = runs[0]
    keras = run.get("keras") or {}
    if keras.get("status") != "ok":
        raise ValueError("the benchmark has no reference comparison: run it with --compare-keras seed-b3")
    return {"ms_per_photo_mean": run["latency_s"]["mean"] * 1000, "ms_per_photo_p50": run["latency_s"]["p50"] * 1000,
            "speedup_mean": keras["speedup_mean"], "speedup_p50": keras["speedup_p50"],
            "plan": f"{run['model']['precision']} {run['scan']} x {run['tta']}", "photos": len(run["per_photo"])}


def report_from_tables(folder: Path, names: Sequence[str], benchmarks: dict[str, dict] | None = None) -> dict:
    """The candidates report from the CSVs in `folder` (the first name is the one the others are paired with)."""
    report: dict = {"candidates": list(names), "figures": {}, "flip_test": {}, "looks": {}, "versus_first": {},
                    "speed": {}}
    first = read_probabilities(table_path(folder, names[0]))
    first_flipped = first.probs.argmax(1) != read_probabilities(
        table_path(folder, names[0], FLIP_LOOK)).subset(first.keys).probs.argmax(1)
    for name in names:
        own = read_probabilities(table_path(folder, name)).subset(first.keys)
        changed = {look: read_probabilities(table_path(folder, name, look)).subset(first.keys)
                   for look in looks() if table_path(folder, name, look).is_file()}
        report["figures"][name] = figures(own)
        report["flip_test"][name] = flip_share(own, changed[FLIP_LOOK])
        report["looks"][name] = {look: {"top1": float(np.mean(scored.probs.argmax(1) == scored.labels)),
                                        "flip_test": flip_share(own, scored)} for look, scored in changed.items()}
        if name != names[0]:
            difference = paired(own, first)
            difference["flipped"] = discordant(own.probs.argmax(1) != changed[FLIP_LOOK].probs.argmax(1),
                                               first_flipped)
            report["versus_first"][name] = difference
        if benchmarks and name in benchmarks:
            report["speed"][name] = speedup(benchmarks[name], split_candidate(name)[1])
    return report


def has_tables(folder: Path, name: str, keys: list[tuple[str, str]]) -> bool:
    """Whether `folder` already holds the candidate's tables, as it is and under every look, for exactly these photos."""
    paths = [table_path(folder, name, look) for look in (None, *looks())]
    return all(path.is_file() and sorted(read_probabilities(path).keys) == sorted(keys) for path in paths)


def run(candidates: Sequence[str], photo_specs: Sequence[str], benchmark_files: dict[str, str], output: Path,
        reuse_tables: bool = False) -> dict:
    """Score every candidate on the photos (FOLDER or FOLDER=IDS_FILE each), write its tables and the report.

    With `reuse_tables`, a candidate whose tables in `output` cover exactly these photos is not scored again, so
    that adding a candidate to a committed comparison costs only the new one's scoring."""
    from cassava_edge.labelled import read_ids, read_labelled

    photos = []
    for spec in photo_specs:
        folder, _, ids = spec.partition("=")
        chosen = read_labelled(folder, ids=read_ids(ids) if ids else None)
        photos += [(Path(folder).name, photo.path.name, photo.label, photo.path) for photo in chosen]
    benchmarks = {name: json.loads(Path(path).read_text()) for name, path in benchmark_files.items()}
    output.mkdir(parents=True, exist_ok=True)
    names = [candidate_name(candidate) for candidate in candidates]
    unknown = sorted(set(benchmarks) - set(names))
    if unknown:
        raise ValueError(f"--benchmark {unknown[0]}: no such candidate (candidates: {', '.join(names)})")
    keys = [(folder, image_id) for folder, image_id, _, _ in photos]
    for name, candidate in zip(names, candidates):
        if reuse_tables and has_tables(output, name, keys):
            print(f"{name}: tables kept", flush=True)
            continue
        model, tta = split_candidate(candidate)
        for look, scored in score_candidate(model, photos, tta).items():
            write_scored(table_path(output, name, look), scored)
        print(f"{name}: scored {len(photos)} photos", flush=True)
    report = report_from_tables(output, names, benchmarks)
    report["photos"] = list(photo_specs)
    (output / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _pairs(values: Sequence[str], option: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep:
            raise SystemExit(f"error: {option} {value}: expected NAME=FILE")
        pairs[name] = path
    return pairs


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Default-model candidates on photos none of them trained on.")
    parser.add_argument("--candidate", action="append", required=True,
                        help="model name, file or folder, or MODEL@PRESET for the model on another TTA preset "
                        "(repeatable; the first is the one the others are paired with)")
    parser.add_argument("--photos", action="append", required=True,
                        help="Kaggle-layout folder of labelled originals, or FOLDER=IDS_FILE for only the ids listed "
                        "(repeatable)")
    parser.add_argument("--benchmark", action="append", default=[],
                        help="NAME=JSON of `cassava-edge benchmark --compare-keras seed-b3` for that candidate")
    parser.add_argument("--output", required=True, type=Path, help="folder for the CSVs and report.json")
    parser.add_argument("--reuse-tables", action="store_true",
                        help="keep a candidate's tables already in --output when they cover exactly these photos")
    args = parser.parse_args()
    try:
        report = run(args.candidate, args.photos, _pairs(args.benchmark, "--benchmark"), args.output,
                     args.reuse_tables)
    except (CassavaEdgeError, OSError, ValueError, KeyError) as error:
        raise SystemExit(f"error: {error}") from None
    from .card import rows

    print("\n".join(rows(report)))


if __name__ == "__main__":
    main()
