"""Validation the way users classify: the runtime's decoding, scaling and scan plans, probabilities averaged per photo.

Keras' own validation would score one centre crop made by TensorFlow's resize, which is not what `cassava-edge`
does with a photo; these figures are the users' figures (without TTA, which export measures).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from cassava_edge.errors import CassavaEdgeError
from cassava_edge.imaging import load_image
from cassava_edge.metadata import CASSAVA_LABELS
from cassava_edge.metrics import classification_report, mean_per_photo
from cassava_edge.scan import make_crops

from .data import DataError, Sample

# Plans scored every epoch: `grid` is what training crops look like, `full` the whole photo in one crop.
VALIDATION_PLANS = ("grid", "full")
MONITOR = "val_macro_recall"  # the checkpoint metric; computed on the first plan given to make_callback


def plans_for(checkpoint_plan: str, plans: list[str] | None = None) -> tuple[str, ...]:
    """The plans to score, the checkpoint plan first (it sets val_loss, val_accuracy and MONITOR)."""
    return (checkpoint_plan, *(p for p in (VALIDATION_PLANS if plans is None else plans) if p != checkpoint_plan))


@dataclass(frozen=True)
class PlanViews:
    plan: str
    crops: np.ndarray  # (views, crop, crop, 3) uint8 RGB, photo-major
    photo_of_view: np.ndarray  # (views,) index of the photo each crop belongs to


def plan_views(samples: list[Sample], plan: str, short_side: int, crop_size: int,
               look: Callable[[np.ndarray], np.ndarray] | None = None) -> PlanViews:
    """The plan's crops of every photo, each photo first changed by `look` (rgb -> rgb) when given."""
    crops, owners = [], []
    for index, sample in enumerate(samples):
        try:
            rgb = load_image(sample.path)
        except CassavaEdgeError as exc:
            raise DataError(f"{sample.path}: cannot be decoded ({exc})") from None
        made = make_crops(look(rgb) if look else rgb, plan, short_side, (crop_size, crop_size))
        crops.append(made.images)
        owners += [index] * len(made)
    return PlanViews(plan, np.concatenate(crops), np.asarray(owners))


def photo_probabilities(model, views: PlanViews, count: int, batch_size: int = 16) -> np.ndarray:
    """(photos, classes): the model's probabilities averaged over each photo's crops."""
    rows = [model.predict_on_batch(views.crops[i : i + batch_size].astype(np.float32))
            for i in range(0, len(views.crops), batch_size)]
    return mean_per_photo(np.concatenate([np.asarray(r) for r in rows]), views.photo_of_view, count)


def report(probs: np.ndarray, labels: np.ndarray) -> dict:
    result = classification_report(labels.tolist(), probs.argmax(1).tolist(), CASSAVA_LABELS)
    picked = np.clip(probs[np.arange(len(labels)), labels], 1e-7, 1.0)
    result["nll"] = float(-np.log(picked).mean())
    return result


def make_callback(samples: list[Sample], short_side: int, crop_size: int, plans: tuple[str, ...] = VALIDATION_PLANS,
                  look: Callable[[np.ndarray], np.ndarray] | None = None):
    """A Keras callback that scores each plan at every epoch end and puts the figures into the epoch's logs
    (val_loss, val_accuracy, val_macro_recall for the first plan; val_<plan>_accuracy/... for each), so that
    ModelCheckpoint and CSVLogger placed after it see them. Every photo is first changed by `look` when given."""
    import keras

    labels = np.asarray([s.label for s in samples])
    views = [plan_views(samples, plan, short_side, crop_size, look=look) for plan in plans]

    class RuntimeValidation(keras.callbacks.Callback):
        def probabilities(self) -> dict[str, np.ndarray]:
            """Per plan, (photos, classes) probabilities of the validation photos, in `samples` order."""
            return {v.plan: photo_probabilities(self.model, v, len(samples)) for v in views}

        def evaluate(self, probabilities: dict[str, np.ndarray] | None = None) -> dict[str, dict]:
            probabilities = probabilities or self.probabilities()
            return {plan: report(probs, labels) for plan, probs in probabilities.items()}

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            if logs is None:
                return
            reports = self.evaluate()
            for plan, figures in reports.items():
                logs[f"val_{plan}_accuracy"] = figures["accuracy"]
                logs[f"val_{plan}_macro_recall"] = figures["macro_recall"]
            first = reports[plans[0]]
            logs["val_loss"], logs["val_accuracy"], logs[MONITOR] = first["nll"], first["accuracy"], first["macro_recall"]
            print(f"\nepoch {epoch + 1}: " + ", ".join(
                f"{plan} acc {r['accuracy']:.4f} macro recall {r['macro_recall']:.4f}" for plan, r in reports.items()),
                flush=True)

    return RuntimeValidation()


def write_probabilities(path: str | Path, keys: Iterable[tuple[str, str]], labels: Iterable[int],
                        probs: np.ndarray) -> None:
    """One row per photo (folder, image_id, label, one column per class): the out-of-fold probabilities that
    cross-validation figures, ensembles and the deployment prior are computed from (training/oof.py reads them)."""
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["folder", "image_id", "label", *CASSAVA_LABELS])
        for (folder, image_id), label, row in zip(keys, labels, probs):
            writer.writerow([folder, image_id, CASSAVA_LABELS[label], *(f"{p:.6f}" for p in row)])


def read_probabilities(path: str | Path) -> tuple[list[tuple[str, str]], np.ndarray, np.ndarray]:
    """What write_probabilities wrote: keys (folder, image_id), labels (photos,), probabilities (photos, classes)."""
    import csv

    keys, labels, probs = [], [], []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            keys.append((row["folder"], row["image_id"]))
            labels.append(CASSAVA_LABELS.index(row["label"]))
            probs.append([float(row[label]) for label in CASSAVA_LABELS])
    return keys, np.asarray(labels, dtype=np.int64), np.asarray(probs, dtype=np.float64).reshape(-1, len(CASSAVA_LABELS))
