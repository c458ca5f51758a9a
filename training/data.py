"""Kaggle-layout data (train.csv + train_images/), checked up front, split, and fed through tf.data."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cassava_edge.errors import ImageError
from cassava_edge.imaging import read_header
from cassava_edge.metadata import CASSAVA_LABELS

NUM_CLASSES = len(CASSAVA_LABELS)


class DataError(ValueError):
    """The data folders are not usable as given; the message lists every problem found."""


@dataclass(frozen=True)
class Sample:
    path: str
    label: int
    image_id: str
    folder: str


def _read_labels_csv(csv_path: Path) -> list[tuple[str, str]]:
    with csv_path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"image_id", "label"} <= set(reader.fieldnames):
            raise DataError(f"{csv_path}: needs the columns image_id,label (got {reader.fieldnames})")
        return [(row["image_id"], row["label"]) for row in reader]


def read_kaggle_folder(folder: str | Path, *, skip_bad: bool = False, max_images: int | None = None) -> list[Sample]:
    """The samples of one folder. Problems are collected and raised together, or skipped with `skip_bad`."""
    folder = Path(folder)
    csv_path, image_dir = folder / "train.csv", folder / "train_images"
    missing = [str(p) for p in (csv_path, image_dir) if not p.exists()]
    if missing:
        raise DataError(f"{folder}: not in the Kaggle layout, missing {', '.join(missing)}")
    samples, problems = [], []
    for image_id, raw_label in _read_labels_csv(csv_path):
        path = image_dir / image_id
        try:
            label = int(raw_label)
        except ValueError:
            label = -1
        if not 0 <= label < NUM_CLASSES:
            problems.append(f"{image_id}: label {raw_label!r} is outside 0..{NUM_CLASSES - 1}")
        elif not path.is_file():
            problems.append(f"{image_id}: no such file in {image_dir}")
        elif not _looks_like_image(path):
            problems.append(f"{image_id}: not a readable JPEG/PNG")
        else:
            samples.append(Sample(str(path), label, image_id, folder.name))
    if problems and not skip_bad:
        listed = "\n  ".join(problems[:20]) + (f"\n  … and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise DataError(f"{folder}: {len(problems)} bad rows (pass --skip-bad to leave them out):\n  {listed}")
    if problems:
        print(f"{folder}: skipped {len(problems)} bad rows")
    if max_images is not None:
        samples = _stratified_head(samples, max_images)
    return samples


def _looks_like_image(path: Path) -> bool:
    """A cheap check that also catches truncated files, so tf.data never dies mid-epoch: a JPEG or PNG whose
    header the runtime's parser reads completely (it checks the end-of-image marker)."""
    data = path.read_bytes()
    if not data.startswith((b"\xff\xd8", b"\x89PNG\r\n\x1a\n")):
        return False
    try:
        read_header(data, path.name)
    except ImageError:
        return False
    return True


def _stratified_head(samples: list[Sample], count: int) -> list[Sample]:
    by_class: dict[int, list[Sample]] = {}
    for sample in samples:
        by_class.setdefault(sample.label, []).append(sample)
    picked: list[Sample] = []
    while len(picked) < min(count, len(samples)):
        for group in by_class.values():
            if group and len(picked) < count:
                picked.append(group.pop(0))
    return picked


def stratified_split(samples: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Seeded split keeping each class's share (at least one validation photo per class that has two)."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label in range(NUM_CLASSES):
        group = [s for s in samples if s.label == label]
        order = rng.permutation(len(group))
        n_val = int(round(len(group) * fraction))
        if len(group) >= 2:
            n_val = max(1, n_val)
        val += [group[i] for i in order[:n_val]]
        train += [group[i] for i in order[n_val:]]
    return train, val


def class_weights(samples: list[Sample], mode: str) -> dict[int, float] | None:
    if mode == "none":
        return None
    counts = np.bincount([s.label for s in samples], minlength=NUM_CLASSES).astype(float)
    balanced = counts.sum() / (NUM_CLASSES * np.maximum(counts, 1))
    if mode == "balanced":
        weights = balanced
    elif mode == "sqrt":
        weights = np.sqrt(balanced)
    else:
        raise ValueError(f"class_weights must be none, balanced or sqrt, not {mode!r}")
    return {i: float(w) for i, w in enumerate(weights)}


def make_dataset(samples: list[Sample], *, short_side: int, crop_size: int, batch_size: int, training: bool,
                 seed: int, cache: bool, augment=None, weights: dict[int, float] | None = None):
    """tf.data: parallel decode, rescale to the training photo scale, (random) crop, batch, prefetch.

    Validation takes the centre crop, so its loss is stable across epochs."""
    import tensorflow as tf

    paths = tf.constant([s.path for s in samples])
    labels = tf.constant([s.label for s in samples], dtype=tf.int32)
    ds = tf.data.Dataset.from_tensor_slices((paths, labels))

    def decode(path, label):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        shape = tf.cast(tf.shape(image)[:2], tf.float32)
        scale = tf.maximum(short_side / tf.reduce_min(shape), crop_size / tf.reduce_min(shape))
        size = tf.cast(tf.math.ceil(shape * scale - 1e-3), tf.int32)
        image = tf.image.resize(image, size, antialias=True)  # float32, 0..255
        return image, label

    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    if cache:
        ds = ds.cache()
    if training:
        ds = ds.shuffle(len(samples), seed=seed, reshuffle_each_iteration=True)
        crop = lambda image, label: (tf.image.random_crop(image, (crop_size, crop_size, 3)), label)
    else:
        crop = lambda image, label: (tf.image.resize_with_crop_or_pad(image, crop_size, crop_size), label)
    ds = ds.map(crop, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size)
    if augment is not None:
        ds = ds.map(lambda x, y: (augment(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    if weights is not None:
        table = tf.constant([weights[i] for i in range(NUM_CLASSES)], dtype=tf.float32)
        ds = ds.map(lambda x, y: (x, y, tf.gather(table, y)))
    return ds.prefetch(tf.data.AUTOTUNE)


def adaptation_images(samples: list[Sample], short_side: int, crop_size: int, limit: int = 200, seed: int = 0):
    """Centre crops of (a sample of) the training photos, scaled to 0..1, for `Normalization.adapt`."""
    rng = np.random.default_rng(seed)
    chosen = [samples[i] for i in rng.permutation(len(samples))[:limit]]
    ds = make_dataset(chosen, short_side=short_side, crop_size=crop_size, batch_size=16, training=False,
                      seed=seed, cache=False)
    return ds.map(lambda x, y: x / 255.0)
