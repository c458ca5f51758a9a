"""Kaggle-layout data (train.csv + train_images/), checked up front, split, decoded once and fed through tf.data.

Photos are decoded and brought to training scale with the runtime's own OpenCV code (`cassava_edge.imaging`,
`cassava_edge.scan`), once, into memory: an epoch then costs only the network, and training sees pixels made
exactly as the users' photos will be.
"""

from __future__ import annotations

import csv
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from cassava_edge.errors import CassavaEdgeError, ImageError
from cassava_edge.imaging import load_image, read_header
from cassava_edge.metadata import CASSAVA_LABELS
from cassava_edge.scan import resize, scale_photo
from .config import SOURCE_BALANCE_MIXES

NUM_CLASSES = len(CASSAVA_LABELS)


class DataError(ValueError):
    """The data folders are not usable as given; the message lists every problem found."""


@dataclass(frozen=True)
class Sample:
    path: str
    label: int
    image_id: str
    folder: str
    # Width/height the photo really had before someone resized it to another shape (the Roboflow copies are
    # 800x600 originals squeezed to 640x640: 4/3). None: the file has its true shape.
    true_aspect: float | None = None


def parse_aspect(text: str) -> float:
    """'4:3' -> 1.333..; also accepts a plain number."""
    try:
        if ":" in text:
            width, height = (float(part) for part in text.split(":"))
            value = width / height
        else:
            value = float(text)
    except (ValueError, ZeroDivisionError):
        value = -1.0
    if not 0.1 <= value <= 10:
        raise DataError(f"aspect {text!r} is not a ratio such as 4:3")
    return value


def _read_labels_csv(csv_path: Path) -> list[tuple[str, str]]:
    with csv_path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"image_id", "label"} <= set(reader.fieldnames):
            raise DataError(f"{csv_path}: needs the columns image_id,label (got {reader.fieldnames})")
        return [(row["image_id"], row["label"]) for row in reader]


def read_kaggle_folder(folder: str | Path, *, skip_bad: bool = False, max_images: int | None = None,
                       true_aspect: float | None = None) -> list[Sample]:
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
            samples.append(Sample(str(path), label, image_id, folder.name, true_aspect))
    if problems and not skip_bad:
        more = f"; … and {len(problems) - 3} more" if len(problems) > 3 else ""
        raise DataError(f"{folder}: {len(problems)} bad row(s): {'; '.join(problems[:3])}{more} "
                        "(pass --skip-bad to leave them out)")
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


def without_copies_of(train: list[Sample], held_out: list[Sample]) -> list[Sample]:
    """`train` without the photos that share a held-out photo's image id. A Kaggle image id names one photo, and
    copies keep it: two of the Roboflow copies are copies of `cassava/` originals, so training on such a copy would
    be training on the photo it is validated on. Prints how many were left out."""
    held_ids = {s.image_id for s in held_out}
    kept = [s for s in train if s.image_id not in held_ids]
    dropped = [s for s in train if s.image_id in held_ids]
    if dropped:
        print(f"left out {len(dropped)} training photo(s) with a held-out photo's image id (a copy of it): "
              + ", ".join(f"{s.folder}/{s.image_id}" for s in dropped[:3]))
    return kept


def class_weights(samples: list[Sample], mode: str, folder: str | None = None) -> dict[int, float] | None:
    """Per-class loss weights from the class counts of `samples` (of data folder `folder` only, when given)."""
    if mode == "none":
        return None
    if folder is not None:
        samples = [s for s in samples if s.folder == folder]
    counts = np.bincount([s.label for s in samples], minlength=NUM_CLASSES).astype(float)
    if folder is not None and not counts.all():
        missing = [CASSAVA_LABELS[i] for i in np.flatnonzero(counts == 0)]
        raise DataError(f"class_weight_folder {folder} has no training photos of {', '.join(missing)}")
    balanced = counts.sum() / (NUM_CLASSES * np.maximum(counts, 1))
    if mode == "balanced":
        weights = balanced
    elif mode == "sqrt":
        weights = np.sqrt(balanced)
    else:
        raise ValueError(f"class_weights must be none, balanced or sqrt, not {mode!r}")
    return {i: float(w) for i, w in enumerate(weights)}


def source_balance_weights(samples: list[Sample], folder: str, mix: str = "all") -> np.ndarray:
    """Per-photo loss weights under which a photo's class no longer tells whether it comes from `folder`.

    The photos fall in two groups, `folder` and every other folder. A photo of class c in group g weighs
    t(c) / P(c | g), counted on `samples`, so that each class has the same weighted share in both groups and the
    look of a group is no cue for its classes. The target mix t is the class mix of all the photos (`all`: each
    class keeps its total weight, so the prior is unchanged, but the other folders' photos are reweighted too) or
    that of the photos outside `folder` (`rest`: those keep weight 1, and only `folder` is brought to their mix,
    its over-held classes down-weighted). A class that only one group holds (the Roboflow copies have no CBB) keeps
    weight 1: no weight makes it independent of the group, and shrinking it would only cost the class."""
    if mix not in SOURCE_BALANCE_MIXES:
        raise ValueError(f"source balance mix must be one of {', '.join(SOURCE_BALANCE_MIXES)}, not {mix!r}")
    labels = np.asarray([s.label for s in samples])
    in_folder = np.asarray([s.folder == folder for s in samples])
    if not in_folder.any() or in_folder.all():
        raise DataError(f"source_balance folder {folder} must hold some of the training photos, not "
                        + ("none" if not in_folder.any() else "all"))

    def class_mix(group: np.ndarray) -> np.ndarray:
        return np.bincount(labels[group], minlength=NUM_CLASSES) / group.sum()

    shared = (class_mix(in_folder) > 0) & (class_mix(~in_folder) > 0)
    target = class_mix(np.ones(len(samples), bool)) if mix == "all" else class_mix(~in_folder)
    weights = np.ones(len(samples))
    for group in (in_folder, ~in_folder):
        within = class_mix(group)
        for label in np.flatnonzero(shared):
            weights[group & (labels == label)] = target[label] / within[label]
    return weights


SAMPLING_MODES = ("uniform", "balanced", "sqrt")


def epoch_order(labels: list[int], mode: str, rng: np.random.Generator) -> np.ndarray:
    """The photo indices of one training epoch (as many draws as photos).

    `uniform`: every photo once, shuffled. `balanced`: drawn with replacement so that each class is drawn equally
    often on average; `sqrt`: class shares proportional to the square root of their sizes (gentler). The sampling
    counterpart of `class_weights`: rare classes are seen more often instead of weighing more per photo.
    """
    if mode not in SAMPLING_MODES:
        raise ValueError(f"sampling must be one of {', '.join(SAMPLING_MODES)}, not {mode!r}")
    if mode == "uniform":
        return rng.permutation(len(labels))
    label_array = np.asarray(labels)
    counts = np.bincount(label_array, minlength=NUM_CLASSES).astype(float)
    per_photo = 1.0 / counts[label_array] if mode == "balanced" else 1.0 / np.sqrt(counts[label_array])
    return rng.choice(len(labels), size=len(labels), replace=True, p=per_photo / per_photo.sum())


def load_training_photo(sample: Sample, short_side: int, crop_size: int) -> np.ndarray:
    """A photo as the runtime decodes it (RGB uint8, EXIF-upright), given back its true aspect ratio, and
    brought to training scale with the runtime's resize (shorter side `short_side`, never under the crop)."""
    rgb = load_image(sample.path)
    if sample.true_aspect is not None:
        height, width = rgb.shape[:2]
        # Keep the height and restore the width: the squeezed copies kept every row of the original.
        rgb = cv2.resize(rgb, (max(1, round(height * sample.true_aspect)), height), interpolation=cv2.INTER_AREA
                         if height * sample.true_aspect < width else cv2.INTER_LINEAR)
    return scale_photo(rgb, short_side, (crop_size, crop_size))


def load_photos(samples: list[Sample], short_side: int, crop_size: int, workers: int = 2) -> list[np.ndarray]:
    """Every photo decoded and scaled, in sample order; a photo that does not decode stops training here, before
    the first epoch, with one line naming it."""

    def load(sample: Sample) -> np.ndarray:
        try:
            return load_training_photo(sample, short_side, crop_size)
        except CassavaEdgeError as exc:
            raise DataError(f"{sample.path}: cannot be decoded ({exc})") from None

    with ThreadPoolExecutor(max_workers=workers) as pool:  # OpenCV releases the GIL while decoding
        return list(pool.map(load, samples))


# The share of the photo's area a "resized" training crop covers (drawn uniformly) and the factor its aspect may
# differ from the photo's by (drawn log-uniformly): the whole photo, as the `full` plan sees it, is the largest
# draw, and the smallest still holds most of the leaf.
RESIZED_PART_AREA = (0.4, 1.0)
RESIZED_PART_ASPECT = (3 / 4, 4 / 3)


def part_box(height: int, width: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(top, left, part height, part width) of a random part of a height x width photo: RESIZED_PART_AREA of its
    area, its aspect within RESIZED_PART_ASPECT of the photo's."""
    area = rng.uniform(*RESIZED_PART_AREA) * height * width
    aspect = (width / height) * float(np.exp(rng.uniform(*np.log(RESIZED_PART_ASPECT))))
    part_w = min(width, max(1, round(float(np.sqrt(area * aspect)))))
    part_h = min(height, max(1, round(float(np.sqrt(area / aspect)))))
    top = int(rng.integers(0, height - part_h + 1))
    left = int(rng.integers(0, width - part_w + 1))
    return top, left, part_h, part_w


def squeeze_part(photo: np.ndarray, box: tuple[int, int, int, int], crop_size: int) -> np.ndarray:
    """The part `box` of `photo` squeezed into a crop_size square, as the runtime's `full` plan squeezes the whole
    photo."""
    top, left, part_h, part_w = box
    return resize(photo[top : top + part_h, left : left + part_w], (crop_size, crop_size))


def resized_part(photo: np.ndarray, crop_size: int, rng: np.random.Generator) -> np.ndarray:
    """A random part of `photo` (`part_box`) squeezed into a crop_size square."""
    return squeeze_part(photo, part_box(*photo.shape[:2], rng), crop_size)


def make_dataset(photos: list[np.ndarray], labels: list[int], *, crop_size: int, batch_size: int, training: bool,
                 seed: int, augment=None, weights: dict[int, float] | None = None, sampling: str = "uniform",
                 targets: np.ndarray | None = None, looks=None, corner_odds: np.ndarray | None = None,
                 canonical: Callable[[np.ndarray], np.ndarray] | None = None, train_crop: str = "random",
                 twin_look: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
                 photo_weights: np.ndarray | None = None):
    """tf.data over decoded photos: (random) crop, batch, augment, prefetch.

    Training takes a random crop of each photo; otherwise the centre crop. Batches are (images, labels) or, with
    `targets` (photos, classes) such as distillation's soft targets, (images, target rows); class weights, when
    given, are looked up by each photo's label either way, times the photo's own `photo_weights` entry when given
    (`source_balance_weights`). With `looks` (a `looks.LookJitter`), every training
    photo is given a look drawn afresh each epoch, black corners with its `corner_odds`. With `canonical` (rgb ->
    rgb, the runtime's canonical look), every photo goes through it last.

    With `twin_look` (rgb, rng -> rgb), each training photo comes with a twin: the same photo given that look
    after its own, then cut, squeezed and augmented exactly as the photo is. A batch of n photos is then 2n images,
    the n photos first and their n twins after them in the same order (`consistency.LookConsistencyLoss` compares
    the two halves), with the targets and weights repeated."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    label_array = np.asarray(labels, np.int32)

    paired = training and twin_look is not None
    channels = 6 if paired else 3  # a photo and its twin travel stacked, so every random draw after is shared

    def generate():
        order = epoch_order(labels, sampling, rng) if training else range(len(photos))
        for index in order:
            photo = photos[index]
            if training and looks is not None:
                photo = looks.apply(photo, rng, 0.0 if corner_odds is None else float(corner_odds[index]))
            if canonical is not None:
                photo = canonical(photo)
            views = [photo, twin_look(photo, rng)] if paired else [photo]
            if training and train_crop == "resized":
                box = part_box(*photo.shape[:2], rng)  # then the random crop below takes all of it
                views = [squeeze_part(view, box, crop_size) for view in views]
            # OpenCV resizes at most 4 channels, so the twin is stacked only after the last resize.
            yield (np.concatenate(views, axis=2) if paired else views[0]), index

    ds = tf.data.Dataset.from_generator(generate, output_signature=(
        tf.TensorSpec((None, None, channels), tf.uint8), tf.TensorSpec((), tf.int32)))
    ds = ds.apply(tf.data.experimental.assert_cardinality(len(photos)))  # so Keras knows the epoch's length
    def crop(image, index):
        if training:
            image = tf.image.random_crop(image, (crop_size, crop_size, channels))
        else:
            image = tf.image.resize_with_crop_or_pad(image, crop_size, crop_size)
        return tf.cast(image, tf.float32), index

    ds = ds.map(crop, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size)
    if augment is not None:
        ds = ds.map(lambda x, i: (augment(x, training=True), i), num_parallel_calls=tf.data.AUTOTUNE)
    if paired:  # photos first, their twins after them
        ds = ds.map(lambda x, i: (tf.concat([x[..., :3], x[..., 3:]], 0), tf.concat([i, i], 0)))
    label_table = tf.constant(label_array)
    target_table = label_table if targets is None else tf.constant(np.asarray(targets, np.float32))
    if weights is None and photo_weights is None:
        ds = ds.map(lambda x, i: (x, tf.gather(target_table, i)))
    else:
        per_class = np.ones(NUM_CLASSES) if weights is None else np.asarray([weights[c] for c in range(NUM_CLASSES)])
        per_photo = per_class[label_array] * (1.0 if photo_weights is None else np.asarray(photo_weights))
        weight_table = tf.constant(per_photo, dtype=tf.float32)
        ds = ds.map(lambda x, i: (x, tf.gather(target_table, i), tf.gather(weight_table, i)))
    return ds.prefetch(tf.data.AUTOTUNE)


def centre_crops(photos: list[np.ndarray], crop_size: int, limit: int = 200, seed: int = 0) -> np.ndarray:
    """Centre crops of (a sample of) the photos, scaled to 0..1, for `Normalization.adapt`."""
    rng = np.random.default_rng(seed)
    crops = []
    for index in rng.permutation(len(photos))[:limit]:
        photo = photos[index]
        top, left = (photo.shape[0] - crop_size) // 2, (photo.shape[1] - crop_size) // 2
        crops.append(photo[top : top + crop_size, left : left + crop_size])
    return np.stack(crops).astype(np.float32) / 255.0


MIX_KINDS = ("none", "cutmix", "mixup", "both")


def mix_batch(images, targets, weights=None, *, kind: str, alpha: float, probability: float):
    """CutMix / MixUp on one batch of one-hot targets: each batch is mixed with a shuffled copy of itself.

    With `probability` a batch is mixed at all; `both` picks CutMix or MixUp per batch with even odds. The mixing
    ratio is drawn from Beta(alpha, alpha); CutMix pastes a box of that share of the area, and the targets (and
    sample weights) are mixed by the area actually pasted. Runs inside tf.data, so it costs no training step time.
    """
    import tensorflow as tf

    if kind not in MIX_KINDS:
        raise ValueError(f"mix must be one of {', '.join(MIX_KINDS)}, not {kind!r}")
    if kind == "none":
        return (images, targets) if weights is None else (images, targets, weights)
    batch = tf.shape(images)[0]
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    order = tf.random.shuffle(tf.range(batch))
    gamma_a = tf.random.gamma((), alpha)
    gamma_b = tf.random.gamma((), alpha)
    lam = gamma_a / (gamma_a + gamma_b)  # Beta(alpha, alpha)
    use_cutmix = tf.constant(kind == "cutmix") | ((kind == "both") & (tf.random.uniform(()) < 0.5))

    def cutmix():
        cut_h = tf.cast(tf.cast(height, tf.float32) * tf.sqrt(1.0 - lam), tf.int32)
        cut_w = tf.cast(tf.cast(width, tf.float32) * tf.sqrt(1.0 - lam), tf.int32)
        top = tf.random.uniform((), 0, height - cut_h + 1, dtype=tf.int32)
        left = tf.random.uniform((), 0, width - cut_w + 1, dtype=tf.int32)
        rows = tf.range(height)[:, None]
        cols = tf.range(width)[None, :]
        box = (rows >= top) & (rows < top + cut_h) & (cols >= left) & (cols < left + cut_w)
        box = tf.cast(box, images.dtype)[None, :, :, None]
        pasted = tf.cast(cut_h * cut_w, tf.float32) / tf.cast(height * width, tf.float32)
        return images * (1 - box) + tf.gather(images, order) * box, 1.0 - pasted

    def mixup():
        return images * lam + tf.gather(images, order) * (1 - lam), lam

    mix = tf.random.uniform(()) < probability
    mixed, kept = tf.cond(mix, lambda: tf.cond(use_cutmix, cutmix, mixup), lambda: (images, tf.constant(1.0)))
    targets = targets * kept + tf.gather(targets, order) * (1 - kept)
    if weights is None:
        return mixed, targets
    return mixed, targets, weights * kept + tf.gather(weights, order) * (1 - kept)

