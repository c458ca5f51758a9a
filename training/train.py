"""One training run: data -> split -> adapted Normalization -> model -> fit -> best checkpoint -> report."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from cassava_edge.labelled import read_ids
from cassava_edge.metadata import CASSAVA_LABELS
from cassava_edge.metrics import classification_report
from training.config import TrainConfig
from training.data import (
    NUM_CLASSES, DataError, Sample, adaptation_images, class_weights, make_dataset,
    read_kaggle_folder, stratified_split,
)

BEST_MODEL = "best.keras"


def split_samples(config: TrainConfig) -> tuple[list[Sample], list[Sample]]:
    """Training and validation samples. Validation comes from one folder only (the originals), so photos from
    the other folders are always trained on and never leak into validation."""
    folders = [Path(f) for f in config.data]
    by_folder = {f.name: read_kaggle_folder(f, skip_bad=config.skip_bad, max_images=config.max_images) for f in folders}
    val_folder = Path(config.validation_folder).name if config.validation_folder else folders[0].name
    if val_folder not in by_folder:
        raise DataError(f"validation folder {val_folder} is not among the data folders")
    pool = by_folder[val_folder]
    if config.validation_list:
        ids = set(read_ids(config.validation_list))
        val = [s for s in pool if s.image_id in ids]
        unknown = ids - {s.image_id for s in pool}
        if unknown:
            raise DataError(f"{config.validation_list}: {len(unknown)} ids not found in {val_folder}, "
                            f"e.g. {sorted(unknown)[:3]}")
        train = [s for s in pool if s.image_id not in ids]
    else:
        train, val = stratified_split(pool, config.validation_fraction, config.seed)
    for name, samples in by_folder.items():
        if name != val_folder:
            train += samples
    if not train or not val:
        raise DataError(f"need photos for both training ({len(train)}) and validation ({len(val)})")
    return train, val


def _summary(samples: list[Sample]) -> dict:
    counts = np.bincount([s.label for s in samples], minlength=NUM_CLASSES)
    folders: dict[str, int] = {}
    for s in samples:
        folders[s.folder] = folders.get(s.folder, 0) + 1
    return {"count": len(samples), "per_class": dict(zip(CASSAVA_LABELS, counts.tolist())), "folders": folders}


def plot_history(history_csv: Path, out_dir: Path) -> list[Path]:
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(history_csv.open()))
    epochs = [int(r["epoch"]) + 1 for r in rows]
    written = []
    for metric in ("loss", "accuracy"):
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(epochs, [float(r[metric]) for r in rows], "o-", label="train")
        ax.plot(epochs, [float(r[f"val_{metric}"]) for r in rows], "o-", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_title(f"{metric}: train vs validation")
        ax.legend()
        ax.grid(alpha=0.3)
        path = out_dir / f"{metric}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def train(config: TrainConfig) -> Path:
    """Run the recipe; returns the run folder."""
    import keras
    import tensorflow as tf

    from training.model import augmentation, build_model

    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    train_samples, val_samples = split_samples(config)
    (out / "config.json").write_text(config.to_json())
    (out / "validation_ids.txt").write_text("".join(f"{s.image_id}\n" for s in val_samples))
    dataset = {"train": _summary(train_samples), "validation": _summary(val_samples)}
    (out / "dataset.json").write_text(json.dumps(dataset, indent=2))
    print(f"train {dataset['train']['per_class']}  validation {dataset['validation']['per_class']}")

    weights = class_weights(train_samples, config.class_weights)
    common = dict(short_side=config.photo_short_side, crop_size=config.crop_size, batch_size=config.batch_size,
                  seed=config.seed, cache=config.cache)
    aug = augmentation(config.rotation, tuple(config.zoom), config.contrast, config.seed)
    train_ds = make_dataset(train_samples, training=True, augment=aug, weights=weights, **common)
    val_ds = make_dataset(val_samples, training=False, **common)
    steps = math.ceil(len(train_samples) / config.batch_size)

    if config.resume:
        model = keras.saving.load_model(config.resume)
        print(f"resumed from {config.resume} at epoch {config.initial_epoch}")
    else:
        norm = keras.layers.Normalization(axis=-1, name="cassava_normalization")
        norm.adapt(adaptation_images(train_samples, config.photo_short_side, config.crop_size, seed=config.seed))
        model = build_model(config.backbone, config.crop_size, norm, weights=config.weights,
                            dropout=config.dropout, drop_connect=config.drop_connect)
        schedule = keras.optimizers.schedules.CosineDecay(
            config.learning_rate, decay_steps=max(1, config.epochs * steps), alpha=config.cosine_alpha)
        if config.label_smoothing > 0:
            loss = keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
        else:
            loss = keras.losses.SparseCategoricalCrossentropy()
        model.compile(optimizer=keras.optimizers.Adam(schedule), loss=loss, metrics=["accuracy"])
    if isinstance(model.loss, keras.losses.CategoricalCrossentropy):
        one_hot = lambda x, y, *w: (x, tf.one_hot(y, NUM_CLASSES), *w)
        train_ds, val_ds = train_ds.map(one_hot), val_ds.map(one_hot)

    callbacks = [
        keras.callbacks.ModelCheckpoint(str(out / BEST_MODEL), monitor="val_loss", save_best_only=True),
        keras.callbacks.ModelCheckpoint(str(out / "last.keras")),
        keras.callbacks.CSVLogger(str(out / "history.csv"), append=bool(config.resume)),
    ]
    started = time.time()
    model.fit(train_ds, validation_data=val_ds, epochs=config.epochs, initial_epoch=config.initial_epoch,
              callbacks=callbacks, verbose=1 if _interactive() else 2)
    seconds = time.time() - started

    best = keras.saving.load_model(out / BEST_MODEL)
    probs = best.predict(make_dataset(val_samples, training=False, **common), verbose=0)
    report = classification_report([s.label for s in val_samples], probs.argmax(1).tolist(), CASSAVA_LABELS)
    report["val_loss"] = float(np.mean(-np.log(np.clip(probs[np.arange(len(probs)), [s.label for s in val_samples]], 1e-7, 1))))
    report["train_seconds"] = round(seconds, 1)
    report["epochs_run"] = config.epochs - config.initial_epoch
    report["seconds_per_epoch"] = round(seconds / max(1, report["epochs_run"]), 1)
    (out / "metrics.json").write_text(json.dumps(report, indent=2))
    plot_history(out / "history.csv", out)
    print(f"best checkpoint: accuracy {report['accuracy']:.4f}, macro-F1 {report['macro_f1']:.4f}, "
          f"{report['seconds_per_epoch']} s/epoch; run folder {out}")
    return out


def _interactive() -> bool:
    import sys

    return sys.stdout.isatty()
