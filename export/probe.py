"""The folder probe: can a linear model tell a Roboflow copy from an original by the model's pooled features alone?

If it can, far above the base rate, the features carry the photo's source, and a model that has that cue can use it
for the class (issue 17). The probe is balanced per class: the same number of originals and copies of each class
both folders hold, so the class itself cannot predict the folder and the base rate is 50%. Its accuracy is
cross-validated over k folds of those photos.

    python -m export.probe models/cassava-lite0.onnx ../shared/data/cassava ../shared/data/cassava-roboflow
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from .calibrate import photo_features
from .onnxfile import read_metadata
from .trust import fit_logistic


@dataclass(frozen=True)
class ProbeResult:
    accuracy: float  # cross-validated share of photos whose folder the probe gets right
    base_rate: float  # what guessing the commoner folder gets
    photos: int


def balanced_pairs(originals: list[tuple[Path, int]], copies: list[tuple[Path, int]], per_class: int,
                   seed: int) -> tuple[list[Path], np.ndarray]:
    """Up to `per_class` photos of each folder for every class both hold; returns paths and 1 = copy."""
    rng = np.random.default_rng(seed)
    paths, is_copy = [], []
    for label in sorted({l for _, l in originals} & {l for _, l in copies}):
        a = [p for p, l in originals if l == label]
        b = [p for p, l in copies if l == label]
        n = min(per_class, len(a), len(b))
        for group, flag in ((a, 0), (b, 1)):
            paths += [group[i] for i in rng.permutation(len(group))[:n]]
            is_copy += [flag] * n
    return paths, np.asarray(is_copy)


def probe_accuracy(features: np.ndarray, targets: np.ndarray, folds: int = 5, seed: int = 0) -> ProbeResult:
    """k-fold cross-validated accuracy of an L2 logistic regression predicting `targets` from `features`."""
    order = np.random.default_rng(seed).permutation(len(targets))
    right = 0
    for k in range(folds):
        held = order[k::folds]
        kept = np.setdiff1d(order, held)
        head = fit_logistic(features[kept], targets[kept], l2=10.0)
        right += int(((head.logits(features[held]) > 0).astype(int) == targets[held]).sum())
    base = max(targets.mean(), 1 - targets.mean())
    return ProbeResult(right / len(targets), float(base), len(targets))


def _labelled(folder: Path) -> list[tuple[Path, int]]:
    import csv

    with (folder / "train.csv").open(newline="") as handle:
        return [(folder / "train_images" / row["image_id"], int(row["label"])) for row in csv.DictReader(handle)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="an fp32 .onnx file")
    parser.add_argument("originals", type=Path)
    parser.add_argument("copies", type=Path)
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    paths, targets = balanced_pairs(_labelled(args.originals), _labelled(args.copies), args.per_class, args.seed)
    features = photo_features(onnx.load(str(args.model)), paths, read_metadata(args.model), lambda line: print(line))
    result = probe_accuracy(features, targets, seed=args.seed)
    print(f"folder probe: {result.accuracy:.1%} right on {result.photos} photos (base rate {result.base_rate:.0%})")


if __name__ == "__main__":
    main()
