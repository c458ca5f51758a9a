"""`python -m export.calibrate MODELS_DIR`: make exported files know when not to answer (metadata schema 2).

Runs after `python -m export`, on the files it wrote (every variant of one model name):

1. "Not a cassava leaf": pooled features of the default plan's crops, from the fp32 file, for cassava training
   photos (never the validation ids) and for the not-cassava photos; a logistic regression (`trust.fit_logistic`)
   separates them, and a Mahalanobis distance from the cassava photos (`trust.fit_gaussian`, fitted on cassava
   alone, its threshold flagging at most twice `max_flagged` of the validation photos) catches kinds
   the regression never saw. How well they generalise is measured by leaving each kind of photo out in turn (cats,
   maize leaves, …): fitted without that kind, how many of its photos are flagged. The shipped head is then fitted
   on every kind and appended to every variant (`trust.append_head`). A file calibrated before is stripped of its
   head first (`trust.strip_head`), so calibrating again replaces it.
2. Its threshold: the lowest that flags at most `--max-cassava-flagged` of the cassava validation photos, scored
   as the runtime scores them (default plan and TTA), and never under 0.5.
3. Calibration, per variant: temperature scaling fitted on the validation photos' probabilities after TTA
   averaging (default plan), then the minimum confidence picked from the risk-coverage curve.
4. The colour check (`cassava_edge.colour.DEFAULT_CHECK`, thresholds measured on the shared photos): photos
   without usable colour fail with the reason. Written into the final metadata only, so the validation photos
   are scored as they are.
Each figure is written into the file's provenance and into NAME.trust.json.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import click
import numpy as np
import onnx

from cassava_edge import calibration as cal
from cassava_edge.classifier import Classifier
from cassava_edge.colour import DEFAULT_CHECK
from cassava_edge.contract import NOT_CASSAVA_NAME
from cassava_edge.labelled import LabelledPhoto
from cassava_edge.metrics import classification_report, mean_per_photo
from cassava_edge.metadata import Calibration, ModelMetadata, Trust

from .errors import ExportError, InputError
from .onnxfile import jsonable, read_metadata, save_with_metadata
from .photos import crop_photos, image_folder, read_validation_photos
from .portable import portable_values
from .variants import nonstandard_ops
from .trust import (
    LEAF_KINDS, GaussianDistance, append_head, fit_gaussian, fit_logistic, read_not_cassava, sigmoid, strip_head,
    with_feature_output, with_threshold,
)

MIN_SHORT_SIDE = 64  # px: below this a photo holds too little leaf to judge (a 1-pixel PNG was once "Healthy")
TARGET_ACCURACY = 0.92  # of the photos answered "ok", at …
MIN_COVERAGE = 0.75  # … at least this share of the validation photos answered
MAX_CASSAVA_FLAGGED = 0.01
L2 = 1.0
DISTANCE_COMPONENTS = 256  # principal directions the distance keeps (1.3 MB of float32 weights in each file)
DISTANCE_BUDGET = 2.0  # the distance's own threshold flags up to this many times max_flagged of the validation photos
Echo = Callable[[str], None]


def variant_files(folder: Path, name: str) -> dict[str, Path]:
    files = {p: folder / (f"{name}.onnx" if p == "fp32" else f"{name}.{p}.onnx") for p in ("fp32", "fp16", "int8")}
    found = {p: path for p, path in files.items() if path.is_file()}
    if "fp32" not in found:
        raise InputError(f"{files['fp32']}: no such file (run `python -m export` first)")
    return found


def photo_features(model: onnx.ModelProto, paths: Sequence[Path], meta: ModelMetadata, echo: Echo) -> np.ndarray:
    """(photos, features): each photo's pooled features averaged over the default plan's crops. The head is
    linear, so the mean of its logits over views is the logit of these means."""
    import onnxruntime as ort

    probe = with_feature_output(model)
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    features_name = probe.graph.output[-1].name
    crops = crop_photos(list(paths), meta.default_scan, meta.photo.short_side, meta.input.height,
                        on_unreadable=lambda why: echo(f"skipped {why}"), look=meta.look)
    if len(crops.photos) != len(paths):
        raise ExportError(f"{len(paths) - len(crops.photos)} photos could not be read")
    rows = [session.run([features_name], {meta.input.name: crops.crops[i : i + 8].astype(np.float32)})[0]
            for i in range(0, len(crops), 8)]
    return mean_per_photo(np.concatenate(rows), crops.owner, len(paths))


def cassava_training_photos(folders: Sequence[Path], exclude: set[str], count: int, seed: int) -> list[Path]:
    """Up to `count` cassava photos, the same share from each folder, never a validation id."""
    rng = np.random.default_rng(seed)
    chosen: list[Path] = []
    for folder in folders:
        pool = sorted(p for p in image_folder(folder).iterdir() if p.name not in exclude and p.is_file())
        chosen += [pool[i] for i in rng.permutation(len(pool))[: count // len(folders)]]
    return chosen


def threshold_for(cassava_scores: np.ndarray, max_flagged: float) -> float:
    """The lowest probability threshold that flags at most `max_flagged` of the cassava photos (never < 0.5)."""
    allowed = int(np.floor(max_flagged * len(cassava_scores)))
    ranked = np.sort(cassava_scores)[::-1]
    above = ranked[allowed] if allowed < len(ranked) else 0.0
    return float(max(0.5, np.nextafter(above, 1.0)))


def leave_one_kind_out(cassava: np.ndarray, others: np.ndarray, kinds: np.ndarray, val: np.ndarray,
                       max_flagged: float, distance: GaussianDistance | None = None) -> dict[str, dict[str, float]]:
    """For each kind of not-cassava photo: the share of its photos flagged by a head fitted without that kind
    (threshold chosen on the cassava validation photos as for the shipped head). With `distance` (fitted on
    cassava alone, so it never saw any kind), `flagged` is the shipped rule, the larger of the two logits, and
    `flagged_linear_only` the regression's share alone."""
    results = {}
    for kind in sorted(set(kinds)):
        keep = kinds != kind
        head = fit_logistic(np.vstack([cassava, others[keep]]),
                            np.r_[np.zeros(len(cassava)), np.ones(keep.sum())], l2=L2)
        threshold = threshold_for(sigmoid(head.logits(val)), max_flagged)
        linear = sigmoid(head.logits(others[~keep])) >= threshold
        row = {"photos": int((~keep).sum()), "flagged": float(linear.mean()), "threshold": threshold}
        if distance is not None:
            def combined(x: np.ndarray) -> np.ndarray:
                return sigmoid(np.maximum(head.logits(x), distance.logits(x)))

            threshold = threshold_for(combined(val), max_flagged)
            row = {**row, "flagged": float((combined(others[~keep]) >= threshold).mean()),
                   "flagged_linear_only": row["flagged"], "threshold": threshold}
        results[kind] = row
    return results


def calibrate(folder: Path, name: str, validation: list[LabelledPhoto], cassava_folders: Sequence[Path],
              not_cassava_folder: Path, *, cassava_count: int = 600, max_flagged: float = MAX_CASSAVA_FLAGGED,
              seed: int = 0, distance_components: int = DISTANCE_COMPONENTS, echo: Echo = print) -> dict[str, Any]:
    files = variant_files(folder, name)
    fp32_meta = read_metadata(files["fp32"])
    fp32 = strip_head(onnx.load(str(files["fp32"])))
    others = read_not_cassava(not_cassava_folder)
    exclude = {p.path.name for p in validation}
    cassava = cassava_training_photos(cassava_folders, exclude, cassava_count, seed)
    echo(f"features: {len(cassava)} cassava training photos, {len(others)} not-cassava photos, "
         f"{len(validation)} validation photos ({fp32_meta.default_scan} plan)")
    x_cassava = photo_features(fp32, cassava, fp32_meta, echo)
    x_others = photo_features(fp32, [p.path for p in others], fp32_meta, echo)
    x_val = photo_features(fp32, [p.path for p in validation], fp32_meta, echo)
    kinds = np.array([p.category for p in others])
    distance = None
    if distance_components > 0:
        fitted = fit_gaussian(x_cassava, components=distance_components)
        # The distance alone may flag twice the budget; the shared threshold below trims the total back to it. Of
        # 1x, 2x, 3x and 5x, 2x flagged the most held-out maize and flower photos (model card).
        distance = with_threshold(fitted, fitted.distances(x_val), DISTANCE_BUDGET * max_flagged)
    held_out = leave_one_kind_out(x_cassava, x_others, kinds, x_val, max_flagged, distance)
    for kind, row in held_out.items():
        linear = f" (regression alone {row['flagged_linear_only']:.1%})" if "flagged_linear_only" in row else ""
        echo(f"  held out {kind:10s} {row['photos']:4d} photos: {row['flagged']:.1%} flagged not_cassava{linear}")
    head = fit_logistic(np.vstack([x_cassava, x_others]), np.r_[np.zeros(len(x_cassava)), np.ones(len(x_others))],
                        l2=L2)

    method = "logistic regression on the pooled backbone features (mean over the default plan's crops)"
    if distance is not None:
        method += (f", or a Mahalanobis distance from the cassava photos' features ({distance_components} principal "
                   "directions + tail; per view, the larger of the two logits)")
    report: dict[str, Any] = {"name": name, "not_cassava": {
        "method": method,
        "fit": {"cassava_photos": len(cassava), "not_cassava_photos": len(others),
                "kinds": sorted(set(kinds)), "l2": L2, "cassava_folders": [str(f) for f in cassava_folders],
                "distance_components": distance_components,
                **({"distance_threshold": distance.threshold, "distance_scale": distance.scale} if distance else {})},
        "leave_one_kind_out": held_out,
        "held_out_non_leaf_flagged": _pooled(held_out, [k for k in held_out if k not in LEAF_KINDS]),
        "held_out_leaf_flagged": _pooled(held_out, [k for k in held_out if k in LEAF_KINDS]),
    }, "variants": {}}
    labels = np.array([p.label for p in validation])
    threshold = None
    for precision in ("fp32", "int8", "fp16"):  # fp32 first: its scores set the shared threshold
        if precision not in files:
            continue
        path = files[precision]
        meta = read_metadata(path) if precision != "fp32" else fp32_meta
        proto = strip_head(onnx.load(str(path)))
        if nonstandard_ops(proto):
            raise InputError(f"{path}: uses {', '.join(nonstandard_ops(proto))}; the head is appended to QDQ files "
                             "only (export int8 with a qdq configuration)")
        with_head = append_head(proto, head.weights, head.bias, distance)
        trust = Trust(min_confidence=0.0, min_short_side=MIN_SHORT_SIDE, not_cassava_output=NOT_CASSAVA_NAME,
                      not_cassava_threshold=1.0)
        staged = replace(meta, calibration=None, trust=trust)
        staged = replace(staged, schema_version=staged.lowest_schema_version())
        save_with_metadata(with_head, path, staged)
        probs, scores = _classify(path, validation)
        if threshold is None:
            threshold = threshold_for(scores, max_flagged)
        # A deployment-prior bias already in the file (python -m export.prior) stays on top of the temperature. The
        # temperature is fitted without it: fitted with it on these photos (not of the deployment mix), it would
        # partly undo the bias.
        bias = meta.calibration.class_bias if meta.calibration else None
        temperature = cal.fit_temperature(probs, labels)
        calibrated = cal.apply_temperature(probs, temperature, bias)
        min_confidence = cal.pick_min_confidence(calibrated, labels, TARGET_ACCURACY, MIN_COVERAGE)
        at_default = cal.at_threshold(calibrated, labels, min_confidence)
        scored = classification_report(labels.tolist(), calibrated.argmax(1).tolist(), meta.labels)
        figures = {
            # What users get with the default plan and TTA on the validation photos (the bias can change answers,
            # the temperature alone keeps their order); tests/test_bundled_accuracy.py re-measures them.
            "validation": {"photos": len(labels), "scan": meta.default_scan, "tta": meta.default_tta,
                           **{k: scored[k] for k in ("accuracy", "macro_recall", "macro_f1")},
                           "recall": {k: v["recall"] for k, v in scored["per_class"].items()}},
            "temperature": temperature,
            "ece_before": cal.expected_calibration_error(probs, labels),
            "ece_after": cal.expected_calibration_error(calibrated, labels),
            "min_confidence": min_confidence,
            "ok_coverage": at_default.coverage, "ok_accuracy": at_default.accuracy,
            "cassava_validation_flagged_not_cassava": float((scores >= threshold).mean()),
            "not_cassava_threshold": threshold,
        }
        report["variants"][precision] = figures
        calibration = Calibration(method="temperature", temperature=temperature, class_bias=bias,
                                  prior=meta.calibration.prior if bias is not None else None)
        final = replace(staged, calibration=calibration,
                        trust=replace(trust, min_confidence=min_confidence, not_cassava_threshold=threshold,
                                      colour=DEFAULT_CHECK),
                        provenance=portable_values(jsonable({**meta.provenance,
                                                             "trust": {**figures, **_summary(report)}})))
        final = replace(final, schema_version=final.lowest_schema_version())  # 3 where a class bias stays
        save_with_metadata(with_head, path, final)
        read_metadata(path)
        echo(f"{path.name}: T {temperature:.3f}, ECE {figures['ece_before']:.3f} -> {figures['ece_after']:.3f}, "
             f"min confidence {min_confidence:.3f} (ok: {at_default.coverage:.1%} of photos, "
             f"{at_default.accuracy:.1%} right), not-cassava threshold {threshold:.3f} "
             f"({figures['cassava_validation_flagged_not_cassava']:.1%} of cassava validation flagged)")
    out = folder / f"{name}.trust.json"
    out.write_text(json.dumps(portable_values(jsonable(report)), indent=2) + "\n", encoding="utf-8")
    echo(f"wrote {out}")
    return report


def _classify(path: Path, photos: list[LabelledPhoto]) -> tuple[np.ndarray, np.ndarray]:
    """Validation probabilities (uncalibrated: the staged file has none) and not-cassava scores, as users get them."""
    classifier = Classifier(path, provider="cpu", min_confidence=0.0)
    results = list(classifier.classify_many([p.path for p in photos]))
    failed = [r.source for r in results if r.error]
    if failed:
        raise ExportError(f"{len(failed)} validation photos failed, e.g. {failed[0]}")
    probs = np.array([[r.probabilities[label] for label in classifier.labels] for r in results])
    scores = np.array([r.not_cassava_score for r in results], dtype=np.float64)
    return probs, scores


def _pooled(held_out: dict[str, dict[str, float]], kinds: list[str]) -> float | None:
    photos = sum(held_out[k]["photos"] for k in kinds)
    return sum(held_out[k]["flagged"] * held_out[k]["photos"] for k in kinds) / photos if photos else None


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    nc = report["not_cassava"]
    return {"held_out_non_leaf_flagged": nc["held_out_non_leaf_flagged"],
            "held_out_leaf_flagged": nc["held_out_leaf_flagged"], "fit": nc["fit"]}


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--name", required=True, help="Model name, e.g. cassava-lite0 (its variants are calibrated too).")
@click.option("--validation", type=click.Path(path_type=Path), required=True, multiple=True,
              help="Kaggle-layout folder the validation ids are in (repeatable: each id in one of them).")
@click.option("--validation-list", type=click.Path(path_type=Path), required=True, help="Validation ids.")
@click.option("--cassava", "cassava_folders", multiple=True, type=click.Path(path_type=Path), required=True,
              help="Cassava training folders for the not-cassava head (validation ids are left out; repeatable).")
@click.option("--not-cassava", type=click.Path(path_type=Path), required=True,
              help="Folder of photos that are not cassava leaves (images/ + SOURCES.csv with a category column).")
@click.option("--cassava-count", type=int, default=600, show_default=True)
@click.option("--max-cassava-flagged", type=float, default=MAX_CASSAVA_FLAGGED, show_default=True,
              help="Share of cassava validation photos the not-cassava threshold may flag.")
@click.option("--distance-components", type=click.IntRange(min=0), default=DISTANCE_COMPONENTS, show_default=True,
              help="Principal directions of the Mahalanobis distance from cassava (0: the regression alone).")
def main(folder: Path, name: str, validation: tuple[Path, ...], validation_list: Path,
         cassava_folders: tuple[Path, ...], not_cassava: Path, cassava_count: int, max_cassava_flagged: float,
         distance_components: int) -> None:
    """Fit the not-cassava head, the calibration and the minimum confidence into exported files."""
    try:
        for path in (folder, *validation, not_cassava, *cassava_folders):
            if not path.is_dir():
                raise InputError(f"{path}: no such folder")
        photos = read_validation_photos(validation, validation_list)
        calibrate(folder, name, photos, cassava_folders, not_cassava, cassava_count=cassava_count,
                  max_flagged=max_cassava_flagged, distance_components=distance_components,
                  echo=lambda line: click.echo(line, err=True))
    except (ExportError, InputError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
