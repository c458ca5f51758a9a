"""One training run: data -> split -> decoded photos -> adapted Normalization -> model -> fit -> checkpoints -> report.

Checkpoints are chosen on validation macro recall measured through the runtime's own preprocessing
(`validation.py`), and every checkpoint gets its own metrics file (`best.metrics.json`, `last.metrics.json`), so
that export attaches the figures of exactly the checkpoint it exports.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from cassava_edge.labelled import read_ids
from cassava_edge.metadata import CASSAVA_LABELS
from .config import RECIPE_RESTORE_ASPECT, TrainConfig
from .data import (
    NUM_CLASSES, DataError, Sample, centre_crops, class_weights, load_photos, make_dataset, mix_batch, parse_aspect,
    read_kaggle_folder, source_balance_weights, stratified_split, without_copies_of,
)
from .validation import MONITOR, make_callback, plans_for, write_probabilities

BEST_MODEL = "best.keras"
LAST_MODEL = "last.keras"


def metrics_path(checkpoint: str | Path) -> Path:
    """Where the validation figures of `checkpoint` are written: best.keras -> best.metrics.json."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + ".metrics.json")


def probabilities_path(checkpoint: str | Path, plan: str) -> Path:
    """Where a checkpoint's validation probabilities on `plan` go: last.keras -> last.full.probabilities.csv."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(f"{checkpoint.stem}.{plan}.probabilities.csv")


def check_backbone(config: TrainConfig) -> None:
    """Refuse an unknown backbone, or ImageNet weights that are not installed, before any photo is decoded and
    before the run folder is written."""
    from .model import check_backbone_weights

    # A resumed or initialised run takes its weights from the checkpoint, not from --weights.
    check_backbone_weights(config.backbone, "none" if config.resume or config.init_from else config.weights)


def split_samples(config: TrainConfig) -> tuple[list[Sample], list[Sample]]:
    """Training and validation samples. Validation comes from one folder only (the originals), so photos from
    the other folders are always trained on and never leak into validation."""
    folders = [Path(f) for f in config.data]
    names = {f.name for f in folders}
    unknown = set(config.restore_aspect) - names
    if unknown:
        raise DataError(f"restore_aspect names {', '.join(sorted(unknown))}, which is not among the data folders")
    for option, folder in (("class_weight_folder", config.class_weight_folder),
                           ("source_balance folder", config.source_balance)):
        if folder and folder not in names:
            raise DataError(f"{option} {folder} is not among the data folders")
    ratios = {**{k: v for k, v in RECIPE_RESTORE_ASPECT.items() if k in names}, **config.restore_aspect}
    aspects = {name: parse_aspect(ratio) for name, ratio in ratios.items()}
    by_folder = {f.name: read_kaggle_folder(f, skip_bad=config.skip_bad, max_images=config.max_images,
                                            true_aspect=aspects.get(f.name)) for f in folders}
    if config.fold is not None:
        from .folds import DEFAULT_FOLDS_FILE, read_folds, split_by_fold

        fold_file = config.folds or DEFAULT_FOLDS_FILE
        return split_by_fold(by_folder, read_folds(fold_file), config.fold, fold_file, tuple(config.exclude_folds))
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
    train = without_copies_of(train, val)
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
    out = Path(config.output)
    check_backbone(config)  # an unknown backbone or missing weights stop here, before any photo is decoded
    train_samples, val_samples = split_samples(config)  # data problems stop here, before TensorFlow loads
    weights = class_weights(train_samples, config.class_weights, config.class_weight_folder)
    photo_weights = None
    if config.source_balance:
        photo_weights = source_balance_weights(train_samples, config.source_balance, config.source_balance_mix)
        per_group = {(s.folder == config.source_balance, s.label): float(w)
                     for s, w in zip(train_samples, photo_weights)}

        def shown(key: tuple[bool, int]) -> str:
            return f"{per_group[key]:.2f}" if key in per_group else "none"

        print(f"source balance against {config.source_balance} to the class mix of {config.source_balance_mix}: "
              "photo weights (in it / elsewhere) "
              + ", ".join(f"{CASSAVA_LABELS[c]} {shown((True, c))}/{shown((False, c))}" for c in range(NUM_CLASSES)),
              flush=True)
    started = time.time()
    photos = load_photos(train_samples, config.photo_short_side, config.crop_size)
    print(f"decoded {len(photos)} training photos in {time.time() - started:.0f} s", flush=True)

    import keras

    from . import consistency  # registers LookConsistencyLoss, which checkpoints of such runs are compiled with
    from .model import augmentation, build_model, freeze_batchnorm, freeze_early_blocks

    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    (out / "config.json").write_text(config.to_json())
    (out / "validation_ids.txt").write_text("".join(f"{s.image_id}\n" for s in val_samples))
    plans = plans_for(config.checkpoint_plan, config.validation_plans)
    dataset = {"train": _summary(train_samples), "validation": _summary(val_samples),
               "restore_aspect": dict(config.restore_aspect), "validation_plans": list(plans)}
    (out / "dataset.json").write_text(json.dumps(dataset, indent=2))
    print(f"train {dataset['train']['per_class']}  validation {dataset['validation']['per_class']}", flush=True)

    aug = augmentation(config.rotation, tuple(config.zoom), config.contrast, config.seed)
    labels = [s.label for s in train_samples]
    targets = None
    if config.teachers:
        from .distill import soft_targets, teacher_probabilities

        started = time.time()
        teacher = teacher_probabilities(config.teachers, train_samples)
        agreement = float(np.mean(teacher.argmax(1) == np.asarray(labels)))
        print(f"teachers scored {len(train_samples)} training photos in {time.time() - started:.0f} s "
              f"(their top-1 agrees with the labels on {agreement:.1%})", flush=True)
        targets = soft_targets(labels, teacher, config.distill_weight)
    looks, corner_odds = None, None
    if config.one_look:
        from .looks import LookJitter, black_corner_odds, has_black_corners

        looks = LookJitter(share=config.one_look_share)
        black = [has_black_corners(photo) for photo in photos]
        corner_odds = black_corner_odds([s.folder for s in train_samples], black)
        shares = {f: round(float(np.mean([b for b, s in zip(black, train_samples) if s.folder == f])), 3)
                  for f in sorted({s.folder for s in train_samples})}
        print(f"one look for {config.one_look_share:.0%} of the training photos each epoch: black corners already in "
              f"{shares}; others get them until each folder has the same share"
              + ("" if config.one_look_share == 1.0 else f" (of the {config.one_look_share:.0%} given a look)"))
    canonical = None
    if config.canonical_look:
        from .looks import roboflow_chain as canonical

        print("canonical look: every training and validation photo through the Roboflow chain last")
    twin_look = None
    if config.look_consistency > 0:
        from .looks import random_chain as twin_look

        print(f"look consistency: each photo paired with its Roboflow-chained twin, Jensen-Shannon weight "
              f"{config.look_consistency:g}")
    train_ds = make_dataset(photos, labels, crop_size=config.crop_size,
                            batch_size=config.batch_size, training=True, seed=config.seed, augment=aug, weights=weights,
                            sampling=config.sampling, targets=targets, looks=looks, corner_odds=corner_odds,
                            canonical=canonical, train_crop=config.train_crop, twin_look=twin_look,
                            photo_weights=photo_weights)
    steps = math.ceil(len(train_samples) / config.batch_size)
    validation = make_callback(val_samples, config.photo_short_side, config.crop_size, plans, look=canonical)

    if config.resume:
        model = keras.saving.load_model(config.resume)
        print(f"resumed from {config.resume} at epoch {config.initial_epoch}")
    else:
        norm = keras.layers.Normalization(axis=-1, name="cassava_normalization")
        norm.adapt(centre_crops(photos, config.crop_size, seed=config.seed))
        model = build_model(config.backbone, config.crop_size, norm,
                            weights="none" if config.init_from else config.weights,
                            dropout=config.dropout, drop_connect=config.drop_connect)
        if config.init_from:
            model.set_weights(keras.saving.load_model(config.init_from, compile=False).get_weights())
            norm.finalize_state()  # Keras 3 keeps the adapted mean/variance apart from the weights until then
            print(f"weights from {config.init_from}")
        frozen = freeze_early_blocks(model, config.freeze_blocks)
        if frozen:
            print(f"frozen: {len(frozen)} layers of the stem and the first {config.freeze_blocks} blocks")
        if config.freeze_batchnorm:
            print(f"batch normalization frozen: {len(freeze_batchnorm(model))} layers run on their moving statistics")
        schedule = keras.optimizers.schedules.CosineDecay(
            config.learning_rate, decay_steps=max(1, config.epochs * steps), alpha=config.cosine_alpha)
        ema = {"use_ema": True, "ema_momentum": config.ema_momentum} if config.ema_momentum > 0 else {}
        if config.look_consistency > 0:  # one-hot targets, as below
            loss = consistency.LookConsistencyLoss(config.look_consistency, label_smoothing=config.label_smoothing)
        elif config.label_smoothing > 0 or config.mix != "none" or targets is not None:  # targets are not one class
            loss = keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
        else:
            loss = keras.losses.SparseCategoricalCrossentropy()
        model.compile(optimizer=keras.optimizers.Adam(schedule, **ema), loss=loss, metrics=["accuracy"])
    if isinstance(model.loss, keras.losses.CategoricalCrossentropy):
        import tensorflow as tf

        if targets is None:
            train_ds = train_ds.map(lambda x, y, *w: (x, tf.one_hot(y, NUM_CLASSES), *w))
        if config.mix != "none":
            train_ds = train_ds.map(lambda x, y, *w: mix_batch(x, y, *w, kind=config.mix, alpha=config.mix_alpha,
                                                               probability=config.mix_probability))
    elif config.mix != "none" or targets is not None:
        raise ValueError(f"{config.resume}: --mix and --teacher need a model compiled with one-hot targets")

    # Order matters: the EMA weights are swapped in before validation scores them and the checkpoints save them.
    callbacks = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if model.optimizer.use_ema else []
    callbacks += [
        validation,
        keras.callbacks.ModelCheckpoint(str(out / BEST_MODEL), monitor=MONITOR, mode="max", save_best_only=True,
                                        initial_value_threshold=_best_so_far(out) if config.resume else None),
        keras.callbacks.ModelCheckpoint(str(out / LAST_MODEL)),
        keras.callbacks.CSVLogger(str(out / "history.csv"), append=bool(config.resume)),
    ]
    started = time.time()
    model.fit(train_ds, epochs=config.epochs, initial_epoch=config.initial_epoch,
              callbacks=callbacks, verbose=1 if _interactive() else 2)
    seconds = time.time() - started

    timing = {"train_seconds": round(seconds, 1), "epochs_run": config.epochs - config.initial_epoch}
    timing["seconds_per_epoch"] = round(seconds / max(1, timing["epochs_run"]), 1)
    for name in (BEST_MODEL, LAST_MODEL):
        validation.set_model(keras.saving.load_model(out / name))
        probabilities = validation.probabilities()
        reports = validation.evaluate(probabilities)
        for plan, probs in probabilities.items():
            write_probabilities(probabilities_path(out / name, plan), [(s.folder, s.image_id) for s in val_samples],
                                [s.label for s in val_samples], probs)
        figures = {**reports[plans[0]], "plan": plans[0], "tta": "none", "checkpoint": name,
                   "plans": {plan: {k: r[k] for k in ("accuracy", "macro_recall", "macro_f1")}
                             for plan, r in reports.items()}, **timing}
        metrics_path(out / name).write_text(json.dumps(figures, indent=2))
        print(f"{name}: accuracy {figures['accuracy']:.4f}, macro recall {figures['macro_recall']:.4f}")
    plot_history(out / "history.csv", out)
    print(f"{timing['seconds_per_epoch']} s/epoch; run folder {out}")
    return out


def _best_so_far(out: Path) -> float | None:
    """The best monitored figure in the run's history (written every epoch, so also after an interrupted run):
    a resumed run replaces best.keras only when it beats it."""
    import csv

    path = out / "history.csv"
    if not path.is_file():
        return None
    values = [float(row[MONITOR]) for row in csv.DictReader(path.open()) if row.get(MONITOR)]
    return max(values) if values else None


def _interactive() -> bool:
    import sys

    return sys.stdout.isatty()
