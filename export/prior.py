"""The deployment prior: write a per-class logit bias into a model's calibration (metadata schema 3).

Class weights, sampling and extra folders (the Roboflow copies hold most CGM and Healthy photos) teach a model
another class mix than the field photos it will see. `python -m training.oof` fits a temperature and a bias on
out-of-fold probabilities, weighted to Kaggle 2020's label counts, and never on photos the model trained on; this
writes that bias into each ONNX file given, keeping the file's own temperature (each variant was calibrated on its
own probabilities) and its graph byte for byte. `python -m export.calibrate` run afterwards keeps the bias on top
of the temperature it fits, and measures the minimum confidence and the validation figures with it::

    python -m export.prior models/cassava-lite0.onnx models/cassava-lite0.int8.onnx --report runs/v3/oof.json

A `python -m training.paired` report over two or more folds carries the same `prior_fit` for the two arms'
ensemble: the bias for a model joined from those recipes with `python -m export --join`.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import onnx

from cassava_edge.metadata import CLASS_BIAS_SCHEMA_VERSION, Calibration, ModelMetadata

from .onnxfile import read_metadata, save_with_metadata


def with_class_bias(meta: ModelMetadata, bias: dict[str, float], prior: str) -> ModelMetadata:
    """`meta` whose calibration also carries `bias` (label -> logit offset, in the model's label order)."""
    missing = [label for label in meta.labels if label not in bias]
    if missing or len(bias) != len(meta.labels):
        raise ValueError(f"the bias names {sorted(bias)}, the model's labels are {list(meta.labels)}")
    calibration = meta.calibration or Calibration(temperature=1.0)
    calibration = replace(calibration, class_bias=tuple(float(bias[label]) for label in meta.labels), prior=prior)
    return replace(meta, calibration=calibration, schema_version=max(meta.schema_version, CLASS_BIAS_SCHEMA_VERSION))


def write_class_bias(path: Path, bias: dict[str, float], prior: str) -> ModelMetadata:
    meta = with_class_bias(read_metadata(path), bias, prior)
    save_with_metadata(onnx.load(str(path)), path, meta)
    return meta


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the deployment-prior class bias into ONNX models.")
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--report", type=Path, required=True, help="python -m training.oof --output JSON")
    args = parser.parse_args(argv)
    try:
        report = json.loads(args.report.read_text(encoding="utf-8"))
        fit = report["prior_fit"]
        prior = f"Kaggle 2020 label counts ({', '.join(f'{k} {v}' for k, v in report['kaggle_prior'].items())})"
        if fit.get("strength", 1.0) != 1.0:  # training.paired --prior-strength
            prior += f" to the power {fit['strength']:g}"
        for path in args.models:
            meta = write_class_bias(path, fit["bias"], prior)
            print(f"{path}: class bias {dict(zip(meta.labels, meta.calibration.class_bias))}")
    except (OSError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
