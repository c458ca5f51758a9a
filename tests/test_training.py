"""The training recipe: data checks without TensorFlow, and one real end-to-end epoch on a few photos."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from tests.datapaths import DATA_DIR, needs_data
from cassava_edge_training.config import TrainConfig
from cassava_edge_training.data import (
    DataError, Sample, class_weights, load_training_photo, parse_aspect, read_kaggle_folder, source_balance_weights,
    stratified_split,
)


def _kaggle_folder(root: Path, rows: list[tuple[str, str]], photos: dict[str, bytes]) -> Path:
    (root / "train_images").mkdir(parents=True)
    with (root / "train.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_id", "label"])
        writer.writerows(rows)
    for name, data in photos.items():
        (root / "train_images" / name).write_bytes(data)
    return root


def _jpeg() -> bytes:
    import cv2

    ok, data = cv2.imencode(".jpg", np.full((40, 60, 3), 128, np.uint8))
    assert ok
    return data.tobytes()


def test_missing_layout_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="train.csv"):
        read_kaggle_folder(tmp_path)


def test_every_bad_row_is_listed_and_can_be_skipped(tmp_path: Path) -> None:
    good = _jpeg()
    folder = _kaggle_folder(
        tmp_path / "d",
        [("a.jpg", "0"), ("b.jpg", "7"), ("c.jpg", "1"), ("d.jpg", "2"), ("e.jpg", "x")],
        {"a.jpg": good, "b.jpg": good, "d.jpg": good[: len(good) // 2], "e.jpg": good},
    )
    with pytest.raises(DataError) as info:
        read_kaggle_folder(folder)
    message = str(info.value)
    assert "4 bad row(s)" in message and "\n" not in message  # one line, naming the first files
    for expected in ("b.jpg: label '7' is outside 0..4", "c.jpg: no such file", "d.jpg: not a readable"):
        assert expected in message
    assert "and 1 more" in message
    kept = read_kaggle_folder(folder, skip_bad=True)
    assert [s.image_id for s in kept] == ["a.jpg"]


@needs_data
def test_split_is_stratified_seeded_and_disjoint() -> None:
    samples = read_kaggle_folder(DATA_DIR / "cassava")
    train, val = stratified_split(samples, 0.2, seed=3)
    again_train, again_val = stratified_split(samples, 0.2, seed=3)
    assert [s.image_id for s in val] == [s.image_id for s in again_val]
    assert not {s.image_id for s in train} & {s.image_id for s in val}
    assert len(train) + len(val) == len(samples)
    for label in range(5):
        share_all = np.mean([s.label == label for s in samples])
        share_val = np.mean([s.label == label for s in val])
        assert abs(share_all - share_val) < 0.02
    weights = class_weights(train, "balanced")
    assert weights is not None and weights[0] > weights[3]  # CBB is rare, CMD common


@needs_data
def test_squeezed_photos_get_their_true_aspect_back() -> None:
    roboflow = read_kaggle_folder(DATA_DIR / "cassava-roboflow", max_images=1, true_aspect=parse_aspect("4:3"))[0]
    assert roboflow.true_aspect == pytest.approx(4 / 3)
    photo = load_training_photo(roboflow, short_side=75, crop_size=64)
    assert photo.shape == (75, 100, 3)  # 640x640 on disk, 4:3 again, at training scale
    original = read_kaggle_folder(DATA_DIR / "cassava", max_images=1)[0]
    assert original.true_aspect is None
    assert load_training_photo(original, short_side=75, crop_size=64).shape == (75, 100, 3)  # 800x600 as is
    as_stored = Sample(roboflow.path, roboflow.label, roboflow.image_id, roboflow.folder)
    assert load_training_photo(as_stored, short_side=75, crop_size=64).shape == (75, 75, 3)


def test_class_weights_can_be_counted_on_one_folder() -> None:
    def samples(folder: str, counts: list[int]) -> list[Sample]:
        return [Sample("p", label, "i", folder) for label, n in enumerate(counts) for _ in range(n)]

    # The originals' mix, and a second folder with no CBB or CMD and most of the Healthy photos.
    mixed = samples("cassava", [30, 90, 90, 450, 90]) + samples("roboflow", [0, 70, 410, 0, 400])
    overall = class_weights(mixed, "balanced")
    originals = class_weights(mixed, "balanced", folder="cassava")
    assert overall is not None and originals is not None
    # Over all folders Healthy looks common (490) and weighs ~1/16 of CBB; among the originals it is 3x CBB.
    assert overall[0] / overall[4] == pytest.approx(490 / 30)
    assert originals[0] / originals[4] == pytest.approx(90 / 30)
    with pytest.raises(DataError, match="no training photos of CBB, CMD"):
        class_weights(mixed, "sqrt", folder="roboflow")


def test_aspect_must_be_a_ratio() -> None:
    assert parse_aspect("4:3") == pytest.approx(4 / 3)
    for bad in ("4:0", "wide", "0"):
        with pytest.raises(DataError, match="not a ratio"):
            parse_aspect(bad)


def test_checkpoint_plan_must_be_a_scan_plan() -> None:
    assert TrainConfig().checkpoint_plan == "full"
    with pytest.raises(ValueError, match="checkpoint_plan must be one of"):
        TrainConfig(checkpoint_plan="mosaic")


def test_config_file_rejects_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"epochs": 2, "learning_rte": 1}))
    with pytest.raises(ValueError, match="learning_rte"):
        TrainConfig.from_file(path)


def test_keras_applications_imagenet_without_file_says_how(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    import keras

    from cassava_edge_training.model import build_model

    norm = keras.layers.Normalization(mean=[0.5] * 3, variance=[0.1] * 3)
    with pytest.raises(ValueError, match="--weights path/to/efficientnetb3_notop.h5"):
        build_model("efficientnetb3", 64, norm, weights="imagenet")


@needs_data
def test_source_balance_makes_the_class_say_nothing_about_the_folder() -> None:
    def samples(folder: str, counts: list[int]) -> list[Sample]:
        return [Sample("p", label, "i", folder) for label, n in enumerate(counts) for _ in range(n)]

    # The training data's mix: the Roboflow copies have no CBB and most of the CGM and Healthy photos.
    mixed = (samples("cassava", [40, 115, 117, 573, 118]) + samples("cassava-more", [10, 9, 5, 10, 8])
             + samples("cassava-roboflow", [0, 68, 414, 200, 397]))
    weights = source_balance_weights(mixed, "cassava-roboflow")
    labels = np.array([s.label for s in mixed])
    roboflow = np.array([s.folder == "cassava-roboflow" for s in mixed])

    def weighted_counts(group: np.ndarray) -> np.ndarray:
        return np.bincount(labels[group], weights[group], minlength=5)

    # For every class both groups hold, the copies' weighted count over the others' is their photo-count ratio:
    # knowing the folder tells nothing about the class.
    np.testing.assert_allclose(weighted_counts(roboflow)[1:] / weighted_counts(~roboflow)[1:],
                               roboflow.sum() / (~roboflow).sum(), rtol=1e-9)
    # Every class keeps its total weight: the prior the model learns is unchanged.
    np.testing.assert_allclose(np.bincount(labels, weights, minlength=5), np.bincount(labels, minlength=5), rtol=1e-9)
    # CBB, which only the originals hold, keeps weight 1; the originals' CGM weighs about twice, the copies' 2/3.
    assert np.all(weights[labels == 0] == 1.0)
    assert weights[~roboflow & (labels == 2)][0] == pytest.approx((536 / 2084) / (122 / 1005))
    assert weights[roboflow & (labels == 2)][0] == pytest.approx((536 / 2084) / (414 / 1079))
    with pytest.raises(DataError, match="source_balance folder nowhere must hold some of the training photos"):
        source_balance_weights(mixed, "nowhere")

    # To the others' mix: they keep weight 1, and the copies are brought to the originals' class shares.
    to_rest = source_balance_weights(mixed, "cassava-roboflow", mix="rest")
    assert np.all(to_rest[~roboflow] == 1.0)
    rest_counts = np.bincount(labels[~roboflow], minlength=5)
    copies_counts = np.bincount(labels[roboflow], to_rest[roboflow], minlength=5)
    np.testing.assert_allclose(copies_counts[1:] / rest_counts[1:], roboflow.sum() / (~roboflow).sum(), rtol=1e-9)
    assert to_rest[roboflow & (labels == 2)][0] == pytest.approx((122 / 1005) / (414 / 1079))
    with pytest.raises(ValueError, match="mix must be one of all, rest"):
        source_balance_weights(mixed, "cassava-roboflow", mix="originals")
    with pytest.raises(ValueError, match="--source-balance-mix needs --source-balance FOLDER"):
        TrainConfig(data=["d"], source_balance_mix="rest")


def test_one_epoch_end_to_end_writes_a_complete_run_folder(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    import keras

    from cassava_edge_training.train import train

    roboflow = DATA_DIR / "cassava-roboflow"
    config = TrainConfig(
        data=[str(DATA_DIR / "cassava"), str(roboflow)], output=str(tmp_path / "run"), crop_size=64,
        photo_short_side=75, epochs=2, batch_size=8, max_images=15, class_weights="balanced", label_smoothing=0.1,
        restore_aspect={"cassava-roboflow": "4:3"}, freeze_blocks=2, ema_momentum=0.9,
    )
    run = train(config)

    expected = {"best.keras", "last.keras", "config.json", "history.csv", "loss.png", "accuracy.png",
                "best.metrics.json", "last.metrics.json", "dataset.json", "validation_ids.txt"}
    assert expected <= {p.name for p in run.iterdir()}
    assert json.loads((run / "config.json").read_text())["crop_size"] == 64
    history = list(csv.DictReader((run / "history.csv").open()))
    assert len(history) == 2
    assert {"loss", "val_loss", "accuracy", "val_accuracy", "val_macro_recall", "val_full_accuracy"} <= set(history[0])
    for png in ("loss.png", "accuracy.png"):
        assert (run / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    val_ids = (run / "validation_ids.txt").read_text().split()
    for name in ("best.keras", "last.keras"):
        metrics = json.loads((run / name.replace(".keras", ".metrics.json")).read_text())
        assert metrics["checkpoint"] == name
        assert metrics["count"] == len(val_ids) > 0
        assert np.array(metrics["confusion"]).sum() == len(val_ids)
        assert set(metrics["per_class"]) == {"CBB", "CBSD", "CGM", "CMD", "Healthy"}
    # The best checkpoint is the epoch with the highest validation macro recall, and its file says so.
    recalls = [float(row["val_macro_recall"]) for row in history]
    best = json.loads((run / "best.metrics.json").read_text())
    assert best["macro_recall"] == pytest.approx(max(recalls), abs=1e-6)
    # … measured on the runtime's default plan, the one the exported model classifies with.
    assert best["plan"] == "full"
    assert recalls == [float(row["val_full_macro_recall"]) for row in history]
    last = json.loads((run / "last.metrics.json").read_text())
    assert last["macro_recall"] == pytest.approx(recalls[-1], abs=1e-6)
    dataset = json.loads((run / "dataset.json").read_text())
    assert dataset["restore_aspect"] == {"cassava-roboflow": "4:3"}
    assert dataset["train"]["folders"].get("cassava-roboflow", 0) > 0  # the second folder is trained on
    assert "cassava-roboflow" not in dataset["validation"]["folders"]  # and never validated on

    model = keras.saving.load_model(run / "best.keras")
    photos = np.random.default_rng(0).uniform(0, 255, (3, 64, 64, 3)).astype(np.float32)
    probs = model.predict(photos, verbose=0)
    assert probs.shape == (3, 5)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    norm = model.get_layer("cassava_normalization")
    mean = np.asarray(norm.mean).ravel()
    assert np.all((mean > 0.2) & (mean < 0.8)), "Normalization must be adapted on the 0..1 photos"

    # Resume: one more epoch from the last checkpoint, appended to the same history.
    resumed = TrainConfig(**{**config.__dict__, "epochs": 3, "resume": str(run / "last.keras"), "initial_epoch": 2})
    train(resumed)
    history = list(csv.DictReader((run / "history.csv").open()))
    assert [row["epoch"] for row in history] == ["0", "1", "2"]
    # best.keras stays the best epoch of the whole run, the resumed one included.
    recalls = [float(row["val_macro_recall"]) for row in history]
    best = json.loads((run / "best.metrics.json").read_text())
    assert best["macro_recall"] == pytest.approx(max(recalls), abs=1e-6)

    # Distillation: a new run taught by this one's checkpoint, class weights counted on the originals only.
    student = TrainConfig(**{**config.__dict__, "output": str(tmp_path / "student"), "epochs": 1,
                             "teachers": [str(run / "best.keras")], "distill_weight": 0.5, "one_look": True,
                             "class_weights": "sqrt", "class_weight_folder": "cassava", "canonical_look": True,
                             "freeze_batchnorm": True, "look_consistency": 12.0,
                             "source_balance": "cassava-roboflow", "source_balance_mix": "rest"})
    taught = train(student)
    taught_config = json.loads((taught / "config.json").read_text())
    assert taught_config["teachers"] == [str(run / "best.keras")]
    assert (taught_config["source_balance"], taught_config["source_balance_mix"]) == ("cassava-roboflow", "rest")
    # --freeze-batchnorm is kept in the checkpoint, so a --resume goes on with the same frozen layers.
    reloaded = keras.saving.load_model(taught / "last.keras")
    from cassava_edge_training.consistency import LookConsistencyLoss

    assert isinstance(reloaded.loss, LookConsistencyLoss)  # --look-consistency trained it, and a --resume goes on so
    assert all(not layer.trainable for layer in reloaded.layers if isinstance(layer, keras.layers.BatchNormalization))
    assert len(list(csv.DictReader((taught / "history.csv").open()))) == 1
    # --canonical-look validates on chained photos: its figures are the checkpoint's on chain(photo).
    from cassava_edge.looks import roboflow_chain
    from cassava_edge_training.oof import samples_by_key
    from cassava_edge_training.validation import photo_probabilities, plan_views, read_probabilities

    keys, _, written = read_probabilities(taught / "last.full.probabilities.csv")
    by_key = samples_by_key(config.data)
    samples = [by_key[key] for key in keys]
    last = keras.saving.load_model(taught / "last.keras")
    views = plan_views(samples, "full", config.photo_short_side, config.crop_size, look=roboflow_chain)
    np.testing.assert_allclose(photo_probabilities(last, views, len(samples)), written, atol=2e-5)
    plain = plan_views(samples, "full", config.photo_short_side, config.crop_size)
    assert np.abs(photo_probabilities(last, plain, len(samples)) - written).max() > 1e-4


def test_soft_targets_blend_labels_with_the_teachers() -> None:
    from cassava_edge_training.distill import soft_targets

    teacher = np.array([[0.2, 0.2, 0.2, 0.2, 0.2], [0.0, 0.0, 0.0, 0.1, 0.9]], np.float32)
    targets = soft_targets([0, 4], teacher, 0.25)
    np.testing.assert_allclose(targets, [[0.8, 0.05, 0.05, 0.05, 0.05], [0.0, 0.0, 0.0, 0.025, 0.975]], atol=1e-6)
    with pytest.raises(ValueError, match="distill_weight"):
        soft_targets([0], teacher[:1], 0.0)


def test_dataset_pairs_each_photo_with_its_own_target_row_and_label_weight() -> None:
    pytest.importorskip("tensorflow")
    from cassava_edge_training.data import make_dataset

    # Photo i is filled with the value i; its target row is i/10 in every class and its label is i % 2.
    photos = [np.full((10, 12, 3), i, np.uint8) for i in range(6)]
    labels = [i % 2 for i in range(6)]
    targets = np.repeat(np.arange(6, dtype=np.float32)[:, None] / 10, 5, axis=1)
    weights = {0: 1.0, 1: 3.0, 2: 1.0, 3: 1.0, 4: 1.0}
    ds = make_dataset(photos, labels, crop_size=8, batch_size=4, training=True, seed=1, weights=weights,
                      targets=targets)
    seen = []
    for images, rows, sample_weights in ds:
        for image, row, weight in zip(images.numpy(), rows.numpy(), sample_weights.numpy()):
            index = int(image[0, 0, 0])
            np.testing.assert_allclose(row, targets[index])
            assert weight == weights[labels[index]]
            seen.append(index)
    assert sorted(seen) == list(range(6))
    # Per-photo weights multiply the class weight of each photo's label.
    photo_weights = np.arange(1, 7, dtype=float) / 2
    weighted = make_dataset(photos, labels, crop_size=8, batch_size=4, training=True, seed=1, weights=weights,
                            photo_weights=photo_weights)
    for images, _, sample_weights in weighted:
        for image, weight in zip(images.numpy(), sample_weights.numpy()):
            index = int(image[0, 0, 0])
            assert weight == pytest.approx(weights[labels[index]] * photo_weights[index])
    alone = make_dataset(photos, labels, crop_size=8, batch_size=6, training=True, seed=1, photo_weights=photo_weights)
    images, _, sample_weights = next(iter(alone))
    np.testing.assert_allclose(sample_weights.numpy(), photo_weights[images.numpy()[:, 0, 0, 0].astype(int)])
    plain = make_dataset(photos, labels, crop_size=8, batch_size=6, training=False, seed=1)
    images, got_labels = next(iter(plain))
    assert got_labels.numpy().tolist() == [int(image[0, 0, 0]) % 2 for image in images.numpy()]


def test_the_canonical_look_comes_last_for_every_photo() -> None:
    """--canonical-look: the one-look draws first, then the runtime's chain, in training and in plain datasets."""
    pytest.importorskip("tensorflow")
    from cassava_edge_training.data import make_dataset

    class Doubling:  # a stand-in for LookJitter whose effect is easy to read back
        def apply(self, photo: np.ndarray, rng: np.random.Generator, odds: float) -> np.ndarray:
            return photo * 2

    photos = [np.full((10, 12, 3), i, np.uint8) for i in range(1, 5)]
    labels = [0, 1, 0, 1]
    trained = make_dataset(photos, labels, crop_size=8, batch_size=4, training=True, seed=1, looks=Doubling(),
                           canonical=lambda photo: photo + 1)
    images, _ = next(iter(trained))
    assert sorted(int(image[0, 0, 0]) for image in images.numpy()) == [3, 5, 7, 9]  # 2i + 1, not 2(i + 1)
    plain = make_dataset(photos, labels, crop_size=8, batch_size=4, training=False, seed=1, looks=Doubling(),
                         canonical=lambda photo: photo + 1)
    images, _ = next(iter(plain))
    assert sorted(int(image[0, 0, 0]) for image in images.numpy()) == [2, 3, 4, 5]  # no draws outside training


def _column_ramp(height: int = 60, width: int = 80) -> np.ndarray:
    """A photo whose first channel is 3 x its column and second 4 x its row, so a crop tells what it covers."""
    photo = np.zeros((height, width, 3), np.uint8)
    photo[..., 0] = np.arange(width)[None, :] * 3
    photo[..., 1] = np.arange(height)[:, None] * 4
    return photo


def test_a_resized_part_is_most_of_the_photo_squeezed_into_the_crop() -> None:
    """--train-crop resized: the crop covers 40-100% of the photo, about its aspect, squeezed as `full` does."""
    from cassava_edge_training.data import resized_part

    photo, rng = _column_ramp(), np.random.default_rng(0)
    columns, rows = [], []
    for _ in range(300):
        part = resized_part(photo, 48, rng)
        assert part.shape == (48, 48, 3)
        columns.append((int(part[..., 0].max()) - int(part[..., 0].min())) / 3 + 1)
        rows.append((int(part[..., 1].max()) - int(part[..., 1].min())) / 4 + 1)
    areas = np.array(columns) * np.array(rows) / (60 * 80)
    assert areas.min() >= 0.35 and areas.max() > 0.9  # the interpolation blurs a part's edge by a pixel or so
    # A crop at training scale covers 48 of the 80 columns; the resized parts cover more on average, the whole
    # width at times, and keep about the photo's 4:3 (never taller than wide).
    assert np.mean(columns) > 52 and max(columns) > 78
    assert min(c / r for c, r in zip(columns, rows)) > 0.9


def test_the_resized_train_crop_applies_to_training_only() -> None:
    pytest.importorskip("tensorflow")
    from cassava_edge_training.data import make_dataset

    photos = [_column_ramp() for _ in range(4)]
    resized = make_dataset(photos, [0, 1, 0, 1], crop_size=48, batch_size=4, training=True, seed=1,
                           train_crop="resized")
    plain = make_dataset(photos, [0, 1, 0, 1], crop_size=48, batch_size=4, training=True, seed=1)
    spans = [[(image[..., 0].max() - image[..., 0].min()) / 3 + 1 for image in next(iter(ds))[0].numpy()]
             for ds in (resized, plain)]
    assert all(span == 48 for span in spans[1])  # a crop at training scale: exactly 48 columns
    assert max(spans[0]) > 48  # parts of more than the crop's width, squeezed in
    held_out = make_dataset(photos, [0, 1, 0, 1], crop_size=48, batch_size=4, training=False, seed=1,
                            train_crop="resized")
    images, _ = next(iter(held_out))
    assert all((image[..., 0].max() - image[..., 0].min()) / 3 + 1 == 48 for image in images.numpy())


def test_each_photo_and_its_twin_are_cut_and_augmented_alike() -> None:
    """--look-consistency: a batch of n photos is 2n images, the photos then their twins, every random draw after
    the twin's look (part, crop, flips) shared, targets and weights repeated; held-out photos are not paired."""
    pytest.importorskip("tensorflow")
    import keras

    from cassava_edge_training.data import make_dataset

    photos = [_column_ramp() for _ in range(6)]
    labels = [0, 1, 2, 3, 4, 1]
    weights = {0: 1.0, 1: 3.0, 2: 1.0, 3: 1.0, 4: 2.0}
    flips = keras.Sequential([keras.layers.RandomFlip("horizontal_and_vertical", seed=3)])
    for train_crop in ("random", "resized"):
        ds = make_dataset(photos, labels, crop_size=48, batch_size=4, training=True, seed=1, augment=flips,
                          weights=weights, train_crop=train_crop, twin_look=lambda rgb, rng: 255 - rgb)
        batches = list(ds)
        assert [len(images) for images, _, _ in batches] == [8, 4]
        for images, rows, sample_weights in batches:
            n = len(images) // 2
            photo_half, twin_half = images.numpy()[:n], images.numpy()[n:]
            # The twin is the inverted photo: the same part, crop and flips, to a pixel of rounding in a squeeze.
            np.testing.assert_allclose(twin_half, 255 - photo_half, atol=0 if train_crop == "random" else 1)
            assert rows.numpy()[:n].tolist() == rows.numpy()[n:].tolist()
            assert sample_weights.numpy()[:n].tolist() == sample_weights.numpy()[n:].tolist()
            assert sample_weights.numpy().tolist() == [weights[int(label)] for label in rows.numpy()]
    held_out = make_dataset(photos, labels, crop_size=48, batch_size=6, training=False, seed=1,
                            twin_look=lambda rgb, rng: 255 - rgb)
    images, rows = next(iter(held_out))
    assert images.shape == (6, 48, 48, 3) and rows.numpy().tolist() == labels


def test_look_consistency_loss_is_cross_entropy_plus_the_pairs_divergence() -> None:
    pytest.importorskip("tensorflow")
    import keras

    from cassava_edge_training.consistency import LookConsistencyLoss, jensen_shannon

    targets = np.eye(5, dtype=np.float32)[[0, 3, 0, 3]]
    same = np.array([[0.7, 0.1, 0.1, 0.05, 0.05], [0.1, 0.1, 0.1, 0.6, 0.1]] * 2, np.float32)
    loss = LookConsistencyLoss(12.0, label_smoothing=0.1)
    cross_entropy = keras.losses.CategoricalCrossentropy(label_smoothing=0.1)
    # Twins answered alike: nothing beyond the cross-entropy.
    assert float(loss(targets, same)) == pytest.approx(float(cross_entropy(targets, same)), rel=1e-5)
    # Twins answered differently: the mean of the four images' cross-entropy and 12 x each pair's divergence.
    moved = same.copy()
    moved[2] = [0.2, 0.1, 0.6, 0.05, 0.05]
    p, q = moved[0], moved[2]
    m = (p + q) / 2
    divergence = 0.5 * (np.sum(p * np.log(p / m)) + np.sum(q * np.log(q / m)))
    assert float(jensen_shannon(p[None], q[None])[0]) == pytest.approx(divergence, rel=1e-5)
    expected = float(cross_entropy(targets, moved)) + 12.0 * 2 * divergence / 4
    assert float(loss(targets, moved)) == pytest.approx(expected, rel=1e-5)
    # Checkpoints are compiled with it: it must come back from its config.
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(restored, LookConsistencyLoss) and restored.consistency_weight == 12.0
    assert float(restored(targets, moved)) == pytest.approx(expected, rel=1e-5)


def test_look_consistency_is_a_weight_and_pairs_no_mixed_batches() -> None:
    with pytest.raises(ValueError, match="--look-consistency is a weight"):
        TrainConfig(data=["d"], look_consistency=-1.0)
    with pytest.raises(ValueError, match="--mix would mix them"):
        TrainConfig(data=["d"], look_consistency=12.0, mix="cutmix")
    assert TrainConfig(data=["d"], look_consistency=12.0).look_consistency == 12.0


def test_train_crop_must_be_known() -> None:
    with pytest.raises(ValueError, match="--train-crop must be one of random, resized"):
        TrainConfig(data=["d"], train_crop="squeeze")
    assert TrainConfig(data=["d"], train_crop="resized").train_crop == "resized"


def test_cli_reports_bad_data_in_one_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from cassava_edge_training.cli import main

    folder = _kaggle_folder(tmp_path / "d", [("a.jpg", "9")], {"a.jpg": _jpeg()})
    result = CliRunner().invoke(main, ["--data", str(folder), "--output", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "label '9' is outside 0..4" in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()  # stopped before anything was written or TensorFlow loaded


def test_source_balance_folder_must_be_a_data_folder_with_training_photos(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from cassava_edge_training.cli import main

    folder = _kaggle_folder(tmp_path / "cassava", [(f"{i}.jpg", str(i % 5)) for i in range(10)],
                            {f"{i}.jpg": _jpeg() for i in range(10)})
    for named, message in (("roboflow", "source_balance folder roboflow is not among the data folders"),
                           ("cassava", "source_balance folder cassava must hold some of the training photos, not all")):
        result = CliRunner().invoke(main, ["--data", str(folder), "--source-balance", named,
                                           "--output", str(tmp_path / "run")])
        assert result.exit_code == 2, result.output
        assert message in result.output
        assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
        assert not (tmp_path / "run").exists()


def _mix(kind: str, probability: float, seed: int):
    tf = pytest.importorskip("tensorflow")
    from cassava_edge_training.data import mix_batch

    tf.random.set_seed(seed)
    # Image i is filled with the value i, so every pixel says which image it came from.
    images = tf.constant(np.arange(4, dtype=np.float32)[:, None, None, None] * np.ones((4, 8, 12, 3), np.float32))
    targets = tf.one_hot([0, 1, 2, 3], 5)
    weights = tf.constant([1.0, 2.0, 3.0, 4.0])
    mixed, mixed_targets, mixed_weights = mix_batch(images, targets, weights, kind=kind, alpha=1.0,
                                                    probability=probability)
    return images.numpy(), mixed.numpy(), mixed_targets.numpy(), mixed_weights.numpy()


@pytest.mark.parametrize("seed", range(5))
def test_cutmix_mixes_targets_by_the_pasted_area(seed: int) -> None:
    images, mixed, targets, weights = _mix("cutmix", 1.0, seed)
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, atol=1e-6)
    for i in range(4):
        pixels = mixed[i, :, :, 0]
        assert set(np.unique(pixels)) <= {float(i), *map(float, range(4))}
        own = float(np.mean(pixels == i))
        if own < 1.0:  # another photo was pasted: the target says how much of each
            other = int(np.unique(pixels[pixels != i])[0])
            assert targets[i, other] == pytest.approx(1 - own, abs=1e-6)
            assert weights[i] == pytest.approx(own * (i + 1) + (1 - own) * (other + 1), abs=1e-5)
        assert targets[i, i] == pytest.approx(own, abs=1e-6)


def test_mixup_blends_images_and_targets_alike() -> None:
    images, mixed, targets, _ = _mix("mixup", 1.0, 3)
    for i in range(4):
        value = float(mixed[i, 0, 0, 0])  # a blend of two images' values, weighted as the targets are
        np.testing.assert_allclose(mixed[i], value)
        assert float(targets[i] @ np.arange(5)) == pytest.approx(value, abs=1e-5)


def test_no_mixing_at_probability_zero_and_unknown_kind_refused() -> None:
    images, mixed, targets, weights = _mix("both", 0.0, 1)
    np.testing.assert_array_equal(mixed, images)
    np.testing.assert_array_equal(targets, np.eye(5)[:4])
    np.testing.assert_array_equal(weights, [1, 2, 3, 4])
    with pytest.raises(ValueError, match="mix must be"):
        _mix("cutout", 1.0, 0)


def test_epoch_order_draws_the_asked_class_shares() -> None:
    from cassava_edge_training.data import epoch_order

    labels = [0] * 20 + [1] * 80 + [3] * 400  # 500 photos, three classes of very different sizes
    rng = np.random.default_rng(0)
    uniform = epoch_order(labels, "uniform", rng)
    assert sorted(uniform) == list(range(500))  # each photo once
    for mode, expected in (("balanced", [1 / 3, 1 / 3, 1 / 3]), ("sqrt", np.sqrt([20, 80, 400]))):
        drawn = np.concatenate([epoch_order(labels, mode, rng) for _ in range(20)])
        shares = np.bincount(np.asarray(labels)[drawn], minlength=5)[[0, 1, 3]] / len(drawn)
        np.testing.assert_allclose(shares, np.asarray(expected) / np.sum(expected), atol=0.02)
    with pytest.raises(ValueError, match="sampling must be"):
        epoch_order(labels, "oversample", rng)


# --- cross-validation folds (issue 17) and the training CLI's refusals (issue 19) ---

def _samples(count_per_class: int, folder: str = "cassava") -> list[Sample]:
    """Photos of one folder; image ids are unique across folders, as Kaggle's are (a shared id is a copy)."""
    prefix = "" if folder == "cassava" else f"{folder}-"
    return [Sample(f"/x/{folder}/{prefix}{label}-{i}.jpg", label, f"{prefix}{label}-{i}.jpg", folder)
            for label in range(5) for i in range(count_per_class)]


def test_folds_are_stratified_and_cover_every_photo_once() -> None:
    from cassava_edge_training.folds import make_folds

    samples = _samples(12) + _samples(3, "cassava-more")
    folds = make_folds(samples, 5, seed=1)
    assert set(folds) == {(s.folder, s.image_id) for s in samples}
    counts = np.zeros((5, 5), int)
    for s in samples:
        counts[folds[(s.folder, s.image_id)], s.label] += 1
    assert (counts.max(0) - counts.min(0) <= 1).all()  # each class spread evenly over the folds
    assert make_folds(samples, 5, seed=1) == folds  # fixed by the seed


def test_committed_fold_file_covers_the_originals() -> None:
    from cassava_edge_training.folds import DEFAULT_FOLDS_FILE, read_folds

    folds = read_folds(DEFAULT_FOLDS_FILE)
    assert sorted(set(folds.values())) == [0, 1, 2, 3, 4]
    assert {folder for folder, _ in folds} == {"cassava", "cassava-more"}
    if DATA_DIR.is_dir():
        listed = {(f, i) for f, i in folds}
        for folder in ("cassava", "cassava-more"):
            with (DATA_DIR / folder / "train.csv").open() as handle:
                ids = {row["image_id"] for row in csv.DictReader(handle)}
            assert {i for f, i in listed if f == folder} == ids


def _fold_file(path: Path, rows: list[tuple[str, str, int, int]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["folder", "image_id", "label", "fold"])
        writer.writerows(rows)
    return path


def test_fold_split_holds_out_one_fold_and_trains_on_the_rest(tmp_path: Path) -> None:
    from cassava_edge_training.folds import read_folds, split_by_fold

    originals, copies = _samples(2), _samples(2, "cassava-roboflow")
    path = _fold_file(tmp_path / "f.csv", [(s.folder, s.image_id, s.label, i % 2) for i, s in enumerate(originals)])
    train, val = split_by_fold({"cassava": originals, "cassava-roboflow": copies}, read_folds(path), 1, path)
    assert {s.image_id for s in val} == {s.image_id for i, s in enumerate(originals) if i % 2 == 1}
    assert len(train) == len(originals) - len(val) + len(copies)
    assert not {(s.folder, s.image_id) for s in train} & {(s.folder, s.image_id) for s in val}


def test_an_excluded_fold_is_neither_trained_nor_validated_on(tmp_path: Path) -> None:
    from cassava_edge_training.folds import read_folds, split_by_fold

    originals, copies = _samples(3), _samples(1, "cassava-roboflow")
    path = _fold_file(tmp_path / "f.csv", [(s.folder, s.image_id, s.label, i % 3) for i, s in enumerate(originals)])
    by_folder = {"cassava": originals, "cassava-roboflow": copies}
    train, val = split_by_fold(by_folder, read_folds(path), 0, path, exclude=(2,))
    excluded = {s.image_id for i, s in enumerate(originals) if i % 3 == 2}
    assert excluded and not excluded & {s.image_id for s in train + val}
    assert {s.image_id for s in val} == {s.image_id for i, s in enumerate(originals) if i % 3 == 0}
    assert len(train) == len(originals) - len(val) - len(excluded) + len(copies)
    with pytest.raises(DataError, match="both held out for validation and excluded"):
        split_by_fold(by_folder, read_folds(path), 2, path, exclude=(2,))
    with pytest.raises(ValueError, match="--exclude-fold needs --fold"):
        TrainConfig(data=["d"], exclude_folds=[1])


def test_copies_of_held_out_photos_are_not_trained_on(tmp_path: Path) -> None:
    """A copy keeps its original's image id (two Roboflow copies are copies of cassava/ originals): when the
    original validates or is excluded, its copy must not train."""
    import cv2

    from cassava_edge_training.folds import read_folds, split_by_fold
    from cassava_edge_training.train import split_samples

    originals = _samples(3)
    path = _fold_file(tmp_path / "f.csv", [(s.folder, s.image_id, s.label, i % 3) for i, s in enumerate(originals)])
    validated, excluded, trained = originals[0], originals[2], originals[1]  # folds 0, 2 and 1
    copies = [Sample(f"/x/cassava-roboflow/{s.image_id}", s.label, s.image_id, "cassava-roboflow")
              for s in (validated, excluded, trained)] + _samples(1, "cassava-roboflow")
    train, val = split_by_fold({"cassava": originals, "cassava-roboflow": copies}, read_folds(path), 0, path,
                               exclude=(2,))
    trained_copies = {s.image_id for s in train if s.folder == "cassava-roboflow"}
    assert validated.image_id not in trained_copies and excluded.image_id not in trained_copies
    assert trained.image_id in trained_copies and len(trained_copies) == 1 + 5
    assert validated in val

    # The same on a fixed validation list (v2's split).
    folder = tmp_path / "data"
    for name, samples in (("cassava", originals), ("cassava-roboflow", copies)):
        (folder / name / "train_images").mkdir(parents=True)
        with (folder / name / "train.csv").open("w") as handle:
            handle.write("image_id,label\n" + "".join(f"{s.image_id},{s.label}\n" for s in samples))
        for s in samples:
            cv2.imwrite(str(folder / name / "train_images" / s.image_id), np.zeros((8, 8, 3), np.uint8))
    ids = tmp_path / "ids.txt"
    ids.write_text(validated.image_id + "\n")
    config = TrainConfig(data=[str(folder / "cassava"), str(folder / "cassava-roboflow")], validation_list=str(ids))
    train, val = split_samples(config)
    assert [s.image_id for s in val] == [validated.image_id]
    assert validated.image_id not in {s.image_id for s in train}
    assert excluded.image_id in {s.image_id for s in train if s.folder == "cassava-roboflow"}


def test_fold_file_naming_a_missing_photo_or_one_photo_twice_stops_with_one_line(tmp_path: Path) -> None:
    from cassava_edge_training.folds import read_folds, split_by_fold

    originals = _samples(1)
    rows = [(s.folder, s.image_id, s.label, 0) for s in originals]
    twice = _fold_file(tmp_path / "twice.csv", rows + [("cassava", originals[0].image_id, 0, 3)])
    with pytest.raises(DataError, match=r"cassava/0-0.jpg is listed twice \(folds 0 and 3\)") as info:
        read_folds(twice)
    assert "\n" not in str(info.value)
    missing = _fold_file(tmp_path / "missing.csv", rows + [("cassava", "ghost.jpg", 2, 1)])
    with pytest.raises(DataError, match="names cassava/ghost.jpg, which is not in the data folder cassava"):
        split_by_fold({"cassava": originals}, read_folds(missing), 0, missing)
    with pytest.raises(DataError, match="not 7"):
        split_by_fold({"cassava": originals}, read_folds(_fold_file(tmp_path / "ok.csv", rows)), 7)


def test_fold_and_validation_list_are_exclusive() -> None:
    with pytest.raises(ValueError, match="give one"):
        TrainConfig(data=["d"], fold=0, validation_list="ids.txt")
    with pytest.raises(ValueError, match="--folds needs --fold"):
        TrainConfig(data=["d"], folds="f.csv")


def test_one_look_share_is_a_share_and_needs_one_look() -> None:
    with pytest.raises(ValueError, match=r"must be in \(0, 1\]"):
        TrainConfig(data=["d"], one_look=True, one_look_share=0.0)
    with pytest.raises(ValueError, match="needs --one-look"):
        TrainConfig(data=["d"], one_look_share=0.5)
    assert TrainConfig(data=["d"], one_look=True, one_look_share=0.5).one_look_share == 0.5


def test_training_cli_without_data_prints_help_and_exits_2() -> None:
    from click.testing import CliRunner

    from cassava_edge_training.cli import main

    result = CliRunner().invoke(main, [])
    assert result.exit_code == 2
    assert "--data" in result.output and "Usage" in result.output


def test_defaults_are_the_shipped_recipe() -> None:
    config = TrainConfig()
    recipe = {"backbone": "efficientnet-lite0", "crop_size": 384, "photo_short_side": 450, "epochs": 8,
              "batch_size": 16, "learning_rate": 2e-4, "label_smoothing": 0.1, "class_weights": "sqrt",
              "freeze_blocks": 3, "freeze_batchnorm": False, "ema_momentum": 0.99, "seed": 42}
    assert {key: getattr(config, key) for key in recipe} == recipe


def test_frozen_batchnorm_keeps_its_statistics_while_the_rest_trains() -> None:
    pytest.importorskip("tensorflow")
    import keras

    from cassava_edge.contract import OUTPUT_NAME
    from cassava_edge_training.model import build_model, freeze_batchnorm

    rng = np.random.default_rng(0)
    norm = keras.layers.Normalization(axis=-1)
    norm.adapt(rng.uniform(0, 1, (4, 32, 32, 3)).astype(np.float32))
    model = build_model("efficientnet-lite0", 32, norm, weights="none")
    frozen = freeze_batchnorm(model)
    batchnorm = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(frozen) == len(batchnorm) > 0
    watched = [*batchnorm, model.get_layer(OUTPUT_NAME)]
    before = {layer.name: [w.numpy().copy() for w in layer.weights] for layer in watched}
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    # Photos far from the ImageNet statistics: batch statistics would move the moving averages at once.
    model.fit(rng.uniform(200, 255, (8, 32, 32, 3)).astype(np.float32), np.arange(8) % 5, epochs=1, verbose=0)
    for layer in batchnorm:
        for old, new in zip(before[layer.name], layer.weights):
            np.testing.assert_array_equal(old, new.numpy(), err_msg=layer.name)
    assert not np.array_equal(before[OUTPUT_NAME][0], model.get_layer(OUTPUT_NAME).weights[0].numpy())

    head_only = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5)])
    with pytest.raises(ValueError, match="no BatchNormalization layer"):
        freeze_batchnorm(head_only)


@pytest.mark.parametrize("options, message", [
    (["--backbone", "resnet50"], "unknown backbone 'resnet50'"),
    (["--backbone", "efficientnetb3"], "ImageNet weights cannot be downloaded here"),
    (["--backbone", "efficientnetb3", "--weights", "/nope/b3.h5"], "weights file /nope/b3.h5 does not exist"),
])
def test_bad_backbone_is_refused_before_any_photo_or_run_folder(tmp_path: Path, options, message) -> None:
    from click.testing import CliRunner

    from cassava_edge_training.cli import main

    # A folder whose photo cannot be decoded: had training got as far as decoding, it would say so instead.
    folder = _kaggle_folder(tmp_path / "d", [("a.jpg", "0")], {"a.jpg": b"not a jpeg"})
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["--data", str(folder), "--output", str(run), *options])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert not run.exists()


def test_keras_applications_backbone_builds_with_the_asked_drop_connect() -> None:
    # Keras 3's EfficientNetB0..B7 builders take no drop_connect_rate (passing it was a TypeError), so the rate is
    # carried by rescaling their block*_drop layers: at 0.5 each must be 2.5 times the builder's own (0.2) ramp.
    import keras

    from cassava_edge_training.model import build_model, freeze_early_blocks

    def block_drop_rates(model: keras.Model) -> dict[str, float]:
        return {layer.name: layer.get_config()["rate"] for layer in model.layers
                if isinstance(layer, keras.layers.Dropout) and layer.name.endswith("_drop")}

    builders_own = block_drop_rates(keras.applications.EfficientNetB0(include_top=False, weights=None,
                                                                      input_shape=(64, 64, 3)))
    assert builders_own and max(builders_own.values()) > 0
    normalization = keras.layers.Normalization(mean=[0.5] * 3, variance=[0.1] * 3)
    model = build_model("efficientnetb0", 64, normalization, weights="none", drop_connect=0.5)
    assert block_drop_rates(model) == pytest.approx({name: rate * 2.5 for name, rate in builders_own.items()})
    assert model.predict(np.zeros((1, 64, 64, 3), np.float32), verbose=0).shape == (1, 5)
    # --freeze-blocks counts its stage-named blocks in graph order: block1a, block2a, block2b, then block3a trains.
    frozen = set(freeze_early_blocks(model, 3))
    assert {"stem_conv", "block1a_dwconv", "block2a_expand_conv", "block2b_expand_conv"} <= frozen
    assert not any(name.startswith(("block3a_", "top_")) for name in frozen)
    assert model.get_layer("block3a_expand_conv").trainable and not model.get_layer("block2b_expand_conv").trainable
