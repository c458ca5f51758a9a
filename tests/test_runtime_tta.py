from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests import tinymodel
from cassava_edge import Classifier
from cassava_edge.errors import OptionError
from cassava_edge.tta import SeedPreset, keras_zoom, make_tta, random_contrast, seed_view

CROP = (32, 32)


def _crops(count: int = 3, size: int = 32) -> np.ndarray:
    return np.random.default_rng(count).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


# Each D4 view name and its transform written out with plain numpy on one (h, w, 3) image.
D4_EXPECTED = {
    "identity": lambda im: im,
    "rot90": lambda im: np.rot90(im, 1),
    "rot180": lambda im: im[::-1, ::-1],
    "rot270": lambda im: np.rot90(im, -1),
    "hflip": lambda im: im[:, ::-1],
    "hflip+rot90": lambda im: im.transpose(1, 0, 2),  # a mirrored quarter turn is a transpose
    "hflip+rot180": lambda im: im[::-1],  # a horizontal flip turned half way is a vertical flip
    "hflip+rot270": lambda im: im[::-1, ::-1].transpose(1, 0, 2),  # the anti-diagonal transpose
}


def test_none_and_flip() -> None:
    crops = _crops()
    none = make_tta("none", crop_hw=CROP)
    assert none.views_per_crop == 1 and none.view_names() == ["identity"]
    np.testing.assert_array_equal(none.apply(crops), crops)
    flip = make_tta("flip", crop_hw=CROP)
    assert flip.views_per_crop == 2 and flip.view_names() == ["identity", "hflip"]
    views = flip.apply(crops)
    assert views.shape == (6, 32, 32, 3)
    for index, crop in enumerate(crops):  # crop-major layout
        np.testing.assert_array_equal(views[2 * index], crop)
        np.testing.assert_array_equal(views[2 * index + 1], crop[:, ::-1])


def test_d4_views_are_the_named_transforms() -> None:
    crops = _crops()
    d4 = make_tta("d4", crop_hw=CROP)
    assert d4.views_per_crop == 8 and d4.view_names() == list(D4_EXPECTED)
    views = d4.apply(crops)
    assert views.shape == (24, 32, 32, 3)
    for index, crop in enumerate(crops):
        for offset, name in enumerate(d4.view_names()):
            np.testing.assert_array_equal(views[8 * index + offset], D4_EXPECTED[name](crop), err_msg=name)
        distinct = {views[8 * index + offset].tobytes() for offset in range(8)}
        assert len(distinct) == 8


def test_d4_refuses_non_square_crops() -> None:
    with pytest.raises(OptionError, match="square"):
        make_tta("d4", crop_hw=(32, 48))
    assert make_tta("flip", crop_hw=(32, 48)).apply(_crops()[:, :, :16]).shape == (6, 32, 16, 3)


def test_unknown_preset() -> None:
    with pytest.raises(OptionError, match="unknown tta preset"):
        make_tta("mixup", crop_hw=CROP)


@pytest.mark.parametrize("preset", ["flip", "d4"])
def test_model_sees_each_view_as_named(tiny_model: Path, preset: str) -> None:
    """The quadrant model's output depends on orientation: each view's probabilities must equal the model's
    (numpy reference) probabilities of the explicitly transformed crop, and differ from the other views'."""
    classifier = Classifier(tiny_model, provider="cpu", tta=preset)
    crop = tinymodel.quadrant_image(32)
    result = classifier.classify(crop, return_views=True, top_k=5)
    assert result.views is not None
    names = [view.view for view in result.views]
    assert names == make_tta(preset, crop_hw=CROP).view_names()
    for view in result.views:
        expected = tinymodel.reference_probs(D4_EXPECTED[view.view](crop)[None])[0]
        np.testing.assert_allclose(view.probabilities, expected, atol=1e-5, err_msg=view.view)
    all_probs = [tuple(np.round(view.probabilities, 4)) for view in result.views]
    assert len(set(all_probs)) == len(all_probs)


def test_seed_draws_are_reproducible_and_in_range() -> None:
    preset = SeedPreset(7)
    assert preset.views_per_crop == 4 and preset.view_names() == ["seed#0", "seed#1", "seed#2", "seed#3"]
    assert preset.draws(3) == SeedPreset(7).draws(3)
    assert preset.draws(3) != preset.draws(4) and preset.draws(3) != SeedPreset(8).draws(3)
    draws = [draw for index in range(100) for draw in preset.draws(index)]
    assert all(-0.2 <= d.zoom < 0.0 and 0.8 <= d.contrast < 1.2 for d in draws)
    assert 0.4 < np.mean([d.hflip for d in draws]) < 0.6
    assert 0.4 < np.mean([d.vflip for d in draws]) < 0.6


def test_seed_views_compose_flip_zoom_contrast() -> None:
    crops = _crops(2)
    preset = SeedPreset(3)
    views = preset.apply(crops)
    assert views.shape == (8, 32, 32, 3) and views.dtype == np.float32
    for index, crop in enumerate(crops):
        for offset, draw in enumerate(preset.draws(index)):
            image = crop.astype(np.float32)
            if draw.hflip:
                image = image[:, ::-1]
            if draw.vflip:
                image = image[::-1]
            zoomed = keras_zoom(np.ascontiguousarray(image), draw.zoom)
            mean = zoomed.mean(axis=(0, 1), keepdims=True)
            expected = np.clip((zoomed - mean) * draw.contrast + mean, 0, 255)
            np.testing.assert_allclose(views[4 * index + offset], expected, atol=1e-3)
            np.testing.assert_allclose(views[4 * index + offset], seed_view(crop, draw), atol=1e-6)
    np.testing.assert_array_equal(views, SeedPreset(3).apply(crops))
    assert not np.array_equal(views, SeedPreset(4).apply(crops))


def test_keras_zoom_in_semantics() -> None:
    """On a linear ramp, zooming in by (1 + z) about the centre multiplies the slope by (1 + z) and keeps the
    centre value: out(x) = ramp((1 + z) * x + (w - 1) / 2 * (-z))."""
    width = 33
    ramp = np.tile(np.arange(width, dtype=np.float32) * 4.0, (width, 1))
    image = np.dstack([ramp, ramp.T, np.full_like(ramp, 100.0)])
    zoom = -0.2
    out = keras_zoom(image, zoom)
    x = np.arange(width)
    expected = 4.0 * ((1 + zoom) * x + (width - 1) / 2 * -zoom)
    np.testing.assert_allclose(out[5, :, 0], expected, atol=0.05)
    np.testing.assert_allclose(out[:, 5, 1], expected, atol=0.05)
    np.testing.assert_allclose(out[:, :, 2], 100.0, atol=1e-4)
    np.testing.assert_allclose(keras_zoom(image, 0.0), image, atol=1e-4)


def test_contrast_semantics() -> None:
    image = np.random.default_rng(0).uniform(80, 170, (16, 16, 3)).astype(np.float32)
    out = random_contrast(image, 1.15)
    np.testing.assert_allclose(out.mean(axis=(0, 1)), image.mean(axis=(0, 1)), atol=1e-3)
    np.testing.assert_allclose(out.std(axis=(0, 1)), image.std(axis=(0, 1)) * 1.15, rtol=1e-4)
    assert random_contrast(np.array([[[0, 255, 128]] * 2] * 2, np.float32) * 1, 3.0).max() <= 255.0
    clipped = random_contrast(np.dstack([np.eye(4, dtype=np.float32) * 255] * 3), 1.2)
    assert clipped.min() >= 0.0 and clipped.max() <= 255.0


def test_seed_results_do_not_depend_on_batching(tiny_model: Path) -> None:
    classifier = Classifier(tiny_model, provider="cpu", tta="seed", seed=11, chunk_size=3)
    photos = [np.random.default_rng(i).integers(0, 256, (32, 32, 3), dtype=np.uint8) for i in range(3)]
    alone = classifier.classify(photos[1], return_views=True)
    for batch_images in (1, 2, 3):
        results = list(classifier.classify_many(photos, batch_images=batch_images, return_views=True))
        assert results[1].probabilities == pytest.approx(alone.probabilities, abs=1e-6)
        batched_views = [v.probabilities for v in results[1].views or ()]
        alone_views = [v.probabilities for v in alone.views or ()]
        assert len(batched_views) == len(alone_views) > 0
        np.testing.assert_allclose(batched_views, alone_views, atol=1e-6)
    other_seed = Classifier(tiny_model, provider="cpu", tta="seed", seed=12).classify(photos[1])
    assert other_seed.probabilities != pytest.approx(alone.probabilities, abs=1e-6)
