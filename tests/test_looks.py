"""One look for every photo (issue 17): the look transforms, the black-corner odds, and the flip test."""

from __future__ import annotations

import numpy as np
import pytest

from cassava_edge_training.looks import (
    LookJitter, black_corner_odds, has_black_corners, jpeg, roboflow_chain, rotate_with_black_corners,
)
from tests.datapaths import DATA_DIR, needs_data


def _leafy(height: int = 450, width: int = 600) -> np.ndarray:
    rng = np.random.default_rng(0)
    base = np.zeros((height, width, 3), np.uint8)
    base[..., 1] = 120 + rng.integers(0, 80, (height, width))
    base[..., 0] = 40
    return base


def test_roboflow_chain_keeps_the_shape_and_changes_the_pixels() -> None:
    photo = _leafy()
    changed = roboflow_chain(photo, 75)
    assert changed.shape == photo.shape and changed.dtype == np.uint8
    assert np.abs(changed.astype(int) - photo).mean() > 1  # squeezed and re-encoded: not the same pixels
    assert np.abs(jpeg(photo, 95).astype(int) - photo).mean() < np.abs(jpeg(photo, 40).astype(int) - photo).mean()


def test_black_corners_are_made_and_detected() -> None:
    photo = _leafy()
    assert not has_black_corners(photo)
    assert has_black_corners(rotate_with_black_corners(photo, 30))


def test_black_corner_odds_give_every_folder_the_same_share() -> None:
    folders = ["cassava"] * 100 + ["cassava-roboflow"] * 100
    black = [False] * 100 + [True] * 40 + [False] * 60
    odds = black_corner_odds(folders, black, target=0.5)
    expected = {"cassava": 0.5, "cassava-roboflow": 0.5}
    for folder, share in expected.items():
        members = np.asarray(folders) == folder
        made = np.asarray(black)[members].mean() + odds[members].sum() / members.sum()
        assert made == pytest.approx(share)
    assert (odds[100:140] == 0).all()  # photos that have corners get no second set


def test_look_jitter_draws_every_look_for_every_photo() -> None:
    rng = np.random.default_rng(3)
    photo = _leafy(120, 160)
    jitter = LookJitter(chain=1.0, recompress=1.0, downscale=1.0, blur=1.0)
    out = jitter.apply(photo, rng, black_corner_odds=1.0)
    assert out.shape == photo.shape and has_black_corners(out)
    untouched = LookJitter(chain=0, recompress=0, downscale=0, blur=0).apply(photo, rng, 0.0)
    assert np.array_equal(untouched, photo)


def test_look_share_leaves_the_other_photos_as_they_are() -> None:
    photo = _leafy(60, 80)
    every_look = dict(chain=1.0, recompress=1.0, downscale=1.0, blur=1.0)

    def clean_share(jitter: LookJitter) -> float:
        rng = np.random.default_rng(5)
        return float(np.mean([np.array_equal(jitter.apply(photo, rng, 1.0), photo) for _ in range(400)]))

    assert clean_share(LookJitter(**every_look)) == 0.0
    assert clean_share(LookJitter(**every_look, share=0.25)) == pytest.approx(0.75, abs=0.06)


@needs_data
def test_flip_test_counts_changed_answers_on_real_photos() -> None:
    from cassava_edge import Classifier
    from cassava_edge_training.cue import flip_test, top_class

    classifier = Classifier(tta="none")
    photos = sorted((DATA_DIR / "cassava" / "train_images").glob("*.jpg"))[:6]
    result = flip_test(classifier, photos)
    assert top_class(classifier.classify(photos[0])) in classifier.labels
    assert result.count == 6 and 0 <= result.flipped <= 6
    assert sum(result.towards.values()) == result.flipped
    manual = 0
    from cassava_edge.imaging import load_image

    for path in photos:
        rgb = load_image(path)
        manual += top_class(classifier.classify(rgb)) != top_class(classifier.classify(roboflow_chain(rgb)))
    assert result.flipped == manual
