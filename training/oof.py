"""Cross-validation figures of Model v3: out-of-fold (OOF) accuracy with 95% intervals, the flip test per fold model,
the fold-ensemble on a fold held out of the whole procedure, and the deployment-prior logit bias.

A fold run (``python -m training --fold K [--exclude-fold H]``) writes its validation photos' probabilities on the
`full` plan (the runtime's default) to ``last.full.probabilities.csv``; nothing here trains. One command reads the
run folders, scores what the runs did not (the held-out fold, the same photos after the Roboflow chain) with their
``last.keras`` (the last epoch, so no checkpoint was chosen on the photos it is scored on), and writes a JSON report::

    python -m training.oof runs/v3/onelook-fold{0,1,2,3,4} --holdout-fold 4 --student runs/v3/student-fold4 \\
        --output runs/v3/oof.json
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from cassava_edge.calibration import apply_temperature
from cassava_edge.metadata import CASSAVA_LABELS
from cassava_edge.metrics import classification_report

from .data import Sample, read_kaggle_folder
from .looks import chained_twice, roboflow_chain
from .validation import photo_probabilities, plan_views, write_probabilities
from .validation import read_probabilities as read_table  # oof's own read_probabilities returns a Scored

# Kaggle 2020's full label counts (21,397 photos, ../shared/data/kaggle2020-all-labels.csv): the class mix of field
# photos of this kind, which the bundled model should answer for.
KAGGLE_COUNTS = {"CBB": 1087, "CBSD": 2189, "CGM": 2386, "CMD": 13158, "Healthy": 2577}
PLAN = "full"
PROBABILITY_FLOOR = 1e-7


@dataclass
class Scored:
    """Photos with their labels and a model's (or an ensemble's) probabilities, rows aligned."""

    keys: list[tuple[str, str]]  # (folder, image_id)
    labels: np.ndarray  # (photos,) class index
    probs: np.ndarray  # (photos, classes)

    def subset(self, keys: list[tuple[str, str]]) -> "Scored":
        index = {key: i for i, key in enumerate(self.keys)}
        rows = [index[key] for key in keys]
        return Scored(list(keys), self.labels[rows], self.probs[rows])


def read_probabilities(path: str | Path) -> Scored:
    return Scored(*read_table(path))


def write_scored(path: str | Path, scored: Scored) -> None:
    write_probabilities(path, scored.keys, scored.labels, scored.probs)


def flip_look(config: dict) -> Callable[[np.ndarray], np.ndarray]:
    """The flip test's change of look for a run: the Roboflow chain, or for a run trained and validated with the
    canonical look (`--canonical-look`, or a `training.canonical` twin) the chain and then the run's own chain."""
    return chained_twice if config.get("canonical_look") else roboflow_chain


def score_checkpoint(checkpoint: str | Path, samples: list[Sample], short_side: int, look=None) -> Scored:
    """A Keras checkpoint's probabilities on each photo's `full` view (as training validates), optionally after
    `look` (rgb -> rgb)."""
    import keras

    model = keras.saving.load_model(checkpoint, compile=False)
    crop = int(model.input_shape[1])
    views = plan_views(samples, PLAN, short_side, crop, look=look)
    probs = photo_probabilities(model, views, len(samples))
    return Scored([(s.folder, s.image_id) for s in samples], np.asarray([s.label for s in samples]), probs)


def wilson(successes: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion."""
    if total == 0:
        return (0.0, 0.0)
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return (centre - half, centre + half)


def macro_recall(labels: np.ndarray, predicted: np.ndarray) -> float:
    recalls = [np.mean(predicted[labels == c] == c) for c in range(len(CASSAVA_LABELS)) if np.any(labels == c)]
    return float(np.mean(recalls))


def figures(scored: Scored, bootstrap: int = 2000, seed: int = 0) -> dict:
    """Top-1 (Wilson interval), macro recall (percentile bootstrap interval over photos) and per-class recall."""
    predicted = scored.probs.argmax(1)
    right = int((predicted == scored.labels).sum())
    rng = np.random.default_rng(seed)
    n = len(scored.labels)
    draws = [macro_recall(scored.labels[rows], predicted[rows])
             for rows in (rng.integers(0, n, n) for _ in range(bootstrap))]
    report = classification_report(scored.labels.tolist(), predicted.tolist(), CASSAVA_LABELS)
    return {
        "photos": n,
        "top1": right / n,
        "top1_ci95": list(wilson(right, n)),
        "macro_recall": macro_recall(scored.labels, predicted),
        "macro_recall_ci95": [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))],
        "recall": {label: report["per_class"][label]["recall"] for label in CASSAVA_LABELS},
    }


def flip_share(before: Scored, after: Scored) -> dict:
    """Share of photos whose top-1 answer changes when only their look changes, and where the flips went."""
    changed = before.probs.argmax(1) != after.probs.argmax(1)
    towards: dict[str, int] = {}
    for c in after.probs.argmax(1)[changed]:
        towards[CASSAVA_LABELS[c]] = towards.get(CASSAVA_LABELS[c], 0) + 1
    return {"photos": len(changed), "flipped": int(changed.sum()), "share": float(changed.mean()), "towards": towards}


def apply_prior(probs: np.ndarray, temperature: float, bias: np.ndarray) -> np.ndarray:
    """softmax(log(p) / T + b): what the runtime does with a calibration that carries a class bias."""
    return apply_temperature(probs, temperature, bias)


def fit_prior(scored: Scored, prior: dict[str, float], steps: int = 3000) -> tuple[float, np.ndarray]:
    """Temperature and per-class logit bias that maximise the likelihood of the labels with each photo weighted
    by prior[class] / share of the class in `scored`: the answers a model would give for photos drawn with the
    deployment prior. logits = a * log(p) + b is linear in (a, b), so the weighted NLL is convex: plain gradient
    descent with a fixed step converges. Fit only on probabilities of photos the model never trained on."""
    classes = len(CASSAVA_LABELS)
    target = np.asarray([prior[label] for label in CASSAVA_LABELS], float)
    target /= target.sum()
    counts = np.bincount(scored.labels, minlength=classes).astype(float)
    weights = (target / np.maximum(counts / counts.sum(), 1e-12))[scored.labels]
    weights /= weights.sum()
    log_p = np.log(np.maximum(scored.probs, PROBABILITY_FLOOR))
    one_hot = np.eye(classes)[scored.labels]
    a, b = 1.0, np.zeros(classes)
    for _ in range(steps):
        logits = a * log_p + b
        logits -= logits.max(1, keepdims=True)
        q = np.exp(logits)
        q /= q.sum(1, keepdims=True)
        residual = (q - one_hot) * weights[:, None]
        a -= 0.5 * float((residual * log_p).sum())
        b -= 2.0 * residual.sum(0)
        b -= b.mean()  # softmax ignores a common offset: keep b centred
        a = max(a, 1e-3)
    return 1.0 / a, b


def cross_fitted_prior(oof: Scored, fold_of: dict[tuple[str, str], int], prior: dict[str, float]) -> Scored:
    """OOF probabilities with the prior correction applied to each fold as fitted on the other folds, so the
    figure with the bias is measured on photos the bias was not fitted on either."""
    out = oof.probs.copy()
    folds = np.asarray([fold_of[key] for key in oof.keys])
    for fold in sorted(set(folds)):
        out[folds == fold] = cross_fitted_prior_of_fold(oof, fold_of, int(fold), prior).probs
    return Scored(oof.keys, oof.labels, out)


def cross_fitted_prior_of_fold(oof: Scored, fold_of: dict[tuple[str, str], int], fold: int,
                               prior: dict[str, float]) -> Scored:
    """One fold's photos of `cross_fitted_prior`: corrected by the prior fitted on the other folds' photos."""
    temperature, bias = fit_prior(oof.subset([key for key in oof.keys if fold_of[key] != fold]), prior)
    own = oof.subset([key for key in oof.keys if fold_of[key] == fold])
    return Scored(own.keys, own.labels, apply_prior(own.probs, temperature, bias))


PRIOR_STRENGTHS = tuple(step / 8 for step in range(9))  # the strengths nested_prior chooses among


def kaggle_prior(strength: float = 1.0) -> dict[str, float]:
    """Kaggle's class shares raised to `strength`, renormalised: 1 is the field's class mix (the most answers
    right), 0 every class alike (the answers that favour macro recall); between them a prior that trades some of
    one for the other. Every Model v3 recipe sits on that trade: the prior moves along it, not past it."""
    shares = np.asarray([KAGGLE_COUNTS[label] for label in CASSAVA_LABELS], float) ** strength
    return dict(zip(CASSAVA_LABELS, map(float, shares / shares.sum())))


def prior_score(scored: Scored) -> float:
    """What nested_prior maximises: top-1 plus macro recall, the two targets of issue 17 weighed alike."""
    predicted = scored.probs.argmax(1)
    return float(np.mean(predicted == scored.labels)) + macro_recall(scored.labels, predicted)


def nested_prior(oof: Scored, fold_of: dict[tuple[str, str], int],
                 strengths: tuple[float, ...] = PRIOR_STRENGTHS) -> tuple[Scored, dict[int, float]]:
    """OOF probabilities with each fold's photos corrected by a prior whose strength, like its bias, was chosen
    without them: for each fold, the strength whose cross-fitted figures on the other folds score best
    (`prior_score`), then the bias at that strength fitted on the other folds. Needs photos of three folds or more
    (the choice itself is cross-fitted). Returns the corrected probabilities and each fold's strength."""
    folds = np.asarray([fold_of[key] for key in oof.keys])
    if len(set(folds)) < 3:
        raise ValueError("choosing the prior's strength out of fold needs photos of three folds or more")
    out, chosen = oof.probs.copy(), {}
    for fold in sorted(set(folds)):
        corrected, chosen[int(fold)] = nested_prior_of_fold(oof, fold_of, int(fold), strengths)
        out[folds == fold] = corrected.probs
    return Scored(oof.keys, oof.labels, out), chosen


def nested_prior_of_fold(oof: Scored, fold_of: dict[tuple[str, str], int], fold: int,
                         strengths: tuple[float, ...] = PRIOR_STRENGTHS) -> tuple[Scored, float]:
    """One fold's photos of `nested_prior`, corrected by the strength and bias chosen on the other folds (two or
    more), and that strength."""
    others = oof.subset([key for key in oof.keys if fold_of[key] != fold])
    best = max(strengths, key=lambda strength: prior_score(
        cross_fitted_prior(others, fold_of, kaggle_prior(strength))))
    return cross_fitted_prior_of_fold(oof, fold_of, fold, kaggle_prior(best)), float(best)


def samples_by_key(folders: list[str]) -> dict[tuple[str, str], Sample]:
    """Every photo of the folders by (folder, image_id), the key the probability tables use."""
    return {(s.folder, s.image_id): s for folder in folders for s in read_kaggle_folder(folder)}


def _config(run: Path) -> dict:
    return json.loads((run / "config.json").read_text(encoding="utf-8"))


def _cached(path: Path, make) -> Scored:
    if path.is_file():
        return read_probabilities(path)
    scored = make()
    write_scored(path, scored)
    return scored


def folds_of_runs(runs: list[Path]) -> tuple[str | Path, dict[tuple[str, str], int]]:
    """The fold file the runs were split by (the first run's, else the committed one) and its photo -> fold map."""
    from .folds import DEFAULT_FOLDS_FILE, read_folds

    fold_file = _config(runs[0]).get("folds") or DEFAULT_FOLDS_FILE
    return fold_file, read_folds(fold_file)


def evaluate_runs(runs: list[Path], holdout_fold: int | None, student: Path | None) -> dict:
    """The report of one cross-validated experiment (see the module docstring)."""
    configs = {run: _config(run) for run in runs}
    fold_file, fold_of = folds_of_runs(runs)
    originals = sorted({folder for c in configs.values() for folder in c["data"]
                        if Path(folder).name in {key[0] for key in fold_of}})
    samples = samples_by_key(originals)
    # The report names files relative to where it runs (the project root), never by this machine's absolute paths.
    fold_name = os.path.relpath(fold_file) if Path(fold_file).is_absolute() else str(fold_file)
    report: dict = {"fold_file": fold_name, "runs": {}, "kaggle_prior": KAGGLE_COUNTS}
    oof_parts, flips_after = [], []
    holdout_members = []
    holdout_keys = sorted(k for k, f in fold_of.items() if f == holdout_fold and k in samples)
    for run in runs:
        config = configs[run]
        own = read_probabilities(run / f"last.{PLAN}.probabilities.csv")
        own_samples = [samples[key] for key in own.keys]
        chained = _cached(run / f"last.{PLAN}.roboflow-look.probabilities.csv",
                          lambda: score_checkpoint(run / "last.keras", own_samples, config["photo_short_side"],
                                                   look=flip_look(config)))
        entry = {"fold": config["fold"], "excluded": config.get("exclude_folds", []),
                 "figures": figures(own), "flip_test": flip_share(own, chained)}
        oof_parts.append(own)
        flips_after.append(chained)
        if holdout_fold is not None:
            if config["fold"] == holdout_fold:
                holdout_members.append(own.subset(holdout_keys))
            elif holdout_fold in config.get("exclude_folds", []):
                holdout_members.append(_cached(
                    run / f"last.{PLAN}.fold{holdout_fold}.probabilities.csv",
                    lambda: score_checkpoint(run / "last.keras", [samples[k] for k in holdout_keys],
                                             config["photo_short_side"])))
            else:
                entry["holdout"] = f"trained on fold {holdout_fold}: not part of the held-out ensemble"
        report["runs"][str(run)] = entry
    oof = Scored([k for p in oof_parts for k in p.keys], np.concatenate([p.labels for p in oof_parts]),
                 np.concatenate([p.probs for p in oof_parts]))
    if len(set(oof.keys)) != len(oof.keys):
        raise ValueError("two runs validated on the same photo: give each fold once")
    after = Scored(oof.keys, oof.labels, np.concatenate([p.probs for p in flips_after]))
    report["oof"] = {**figures(oof), "flip_test": flip_share(oof, after)}
    folds_seen = {fold_of[key] for key in oof.keys}
    if len(folds_seen) > 1:  # the prior of each fold is fitted on the others
        report["oof"]["with_prior"] = figures(cross_fitted_prior(oof, fold_of, KAGGLE_COUNTS))
    if holdout_fold is not None and holdout_members and folds_seen - {holdout_fold}:
        # The prior is fitted on the OOF photos outside the held-out fold, never on the photos it is scored on.
        outside = oof.subset([k for k in oof.keys if fold_of[k] != holdout_fold])
        temperature, bias = fit_prior(outside, KAGGLE_COUNTS)
        report["prior_fit"] = {"photos": len(outside.keys), "temperature": temperature,
                               "bias": dict(zip(CASSAVA_LABELS, map(float, bias)))}
        ensemble = Scored(holdout_keys, holdout_members[0].labels, np.mean([m.probs for m in holdout_members], 0))
        report["holdout"] = {"fold": holdout_fold, "members": len(holdout_members),
                             "ensemble": figures(ensemble),
                             "ensemble_with_prior": figures(Scored(holdout_keys, ensemble.labels,
                                                                   apply_prior(ensemble.probs, temperature, bias))),
                             "members_top1": [float(np.mean(m.probs.argmax(1) == m.labels))
                                              for m in holdout_members]}
        if student is not None:
            config = _config(student)
            scored = read_probabilities(student / f"last.{PLAN}.probabilities.csv").subset(holdout_keys)
            chained = _cached(student / f"last.{PLAN}.roboflow-look.probabilities.csv",
                              lambda: score_checkpoint(student / "last.keras", [samples[k] for k in holdout_keys],
                                                       config["photo_short_side"], look=flip_look(config)))
            report["holdout"]["student"] = {
                "run": str(student), **figures(scored), "flip_test": flip_share(scored, chained),
                "with_prior": figures(Scored(holdout_keys, scored.labels,
                                             apply_prior(scored.probs, temperature, bias)))}
    return report


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Out-of-fold figures of a cross-validated experiment.")
    parser.add_argument("runs", nargs="+", type=Path, help="fold run folders (one per fold)")
    parser.add_argument("--holdout-fold", type=int, default=None,
                        help="the fold held out of the whole procedure (--exclude-fold of the other runs)")
    parser.add_argument("--student", type=Path, default=None, help="run folder of the student validated on it")
    parser.add_argument("--output", type=Path, default=None, help="write the report as JSON here")
    args = parser.parse_args()
    report = evaluate_runs(args.runs, args.holdout_fold, args.student)
    text = json.dumps(report, indent=2)
    if args.output:
        args.output.write_text(text)
    oof = report["oof"]
    print(f"OOF over {oof['photos']} photos: top-1 {oof['top1']:.1%} "
          f"[{oof['top1_ci95'][0]:.1%}, {oof['top1_ci95'][1]:.1%}], macro recall {oof['macro_recall']:.1%}, "
          f"flip {oof['flip_test']['share']:.1%}")
    if "with_prior" in oof:
        print(f"with the prior: top-1 {oof['with_prior']['top1']:.1%}, "
              f"macro recall {oof['with_prior']['macro_recall']:.1%}")
    if "holdout" in report:
        print(json.dumps(report["holdout"], indent=2))


if __name__ == "__main__":
    main()
