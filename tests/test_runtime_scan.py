from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from cassava_edge.errors import OptionError
from cassava_edge.scan import grid_positions, make_crops, plan_boxes, scale_photo, scaled_size

CROP = (512, 512)
SHORT_SIDE = 600


def _photo(width: int, height: int) -> np.ndarray:
    return np.random.default_rng(width * 7 + height).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    ("width", "height", "scaled_wh"),
    [
        (800, 600, (800, 600)),
        (640, 640, (600, 600)),
        (4000, 3000, (800, 600)),
        (300, 200, (900, 600)),
        (600, 800, (600, 800)),
        (1024, 600, (1024, 600)),
        (2048, 1200, (1024, 600)),
    ],
)
def test_scaled_size(width: int, height: int, scaled_wh: tuple[int, int]) -> None:
    assert scaled_size((height, width), SHORT_SIDE, CROP) == (scaled_wh[1], scaled_wh[0])


def test_scaling_is_enlarged_further_when_the_crop_does_not_fit() -> None:
    # Short side 40 with a 48 crop: the short side must reach the crop instead.
    assert scaled_size((30, 60), 40, (48, 48)) == (48, 96)
    assert scaled_size((100, 20), 64, (64, 64)) == (320, 64)


def test_shrinking_uses_inter_area_and_enlarging_inter_linear() -> None:
    big = _photo(4000, 3000)
    np.testing.assert_array_equal(
        scale_photo(big, SHORT_SIDE, CROP), cv2.resize(big, (800, 600), interpolation=cv2.INTER_AREA)
    )
    small = _photo(300, 200)
    np.testing.assert_array_equal(
        scale_photo(small, SHORT_SIDE, CROP), cv2.resize(small, (900, 600), interpolation=cv2.INTER_LINEAR)
    )
    same = _photo(800, 600)
    assert scale_photo(same, SHORT_SIDE, CROP) is same


def test_reference_corners_on_800x600() -> None:
    boxes = plan_boxes("corners", (600, 800), CROP)
    assert boxes == [(0, 0, 512, 512), (288, 0, 512, 512), (0, 88, 512, 512), (288, 88, 512, 512)]
    assert plan_boxes("grid", (600, 800), CROP) == boxes


def test_grid_positions_formula() -> None:
    assert grid_positions(800, 512) == [0, 288]
    assert grid_positions(1024, 512) == [0, 256, 512]
    assert grid_positions(512, 512) == [0]
    assert grid_positions(3600, 512) == [round(i * 3088 / 7) for i in range(8)]  # ceil(3088 / 448) + 1 = 8


def _coverage(boxes: list[tuple[int, int, int, int]], height: int, width: int) -> np.ndarray:
    covered = np.zeros((height, width), dtype=np.int32)
    for x, y, w, h in boxes:
        assert 0 <= x and 0 <= y and x + w <= width and y + h <= height, (x, y, w, h)
        covered[y : y + h, x : x + w] += 1
    return covered


@pytest.mark.parametrize(
    ("width", "height", "grid_count"),
    [(800, 600, 4), (640, 640, 4), (4000, 3000, 4), (300, 200, 4), (600, 800, 4), (1024, 600, 6), (3000, 500, 16)],
)
def test_grid_and_corners_cover_every_pixel(width: int, height: int, grid_count: int) -> None:
    photo_h, photo_w = scaled_size((height, width), SHORT_SIDE, CROP)
    for plan in ("grid", "corners"):
        boxes = plan_boxes(plan, (photo_h, photo_w), CROP)
        assert all(b[2:] == (512, 512) for b in boxes)
        covered = _coverage(boxes, photo_h, photo_w).min() >= 1
        # corners covers the photo only while two crops span each side; grid always does.
        assert covered == (plan == "grid" or max(photo_h, photo_w) <= 2 * 512), plan
    grid = plan_boxes("grid", (photo_h, photo_w), CROP)
    assert len(grid) == grid_count
    # Neighbouring crops along each axis overlap by at least crop // 8 (and by at most what covering needs).
    for positions, length in ((sorted({b[0] for b in grid}), photo_w), (sorted({b[1] for b in grid}), photo_h)):
        expected = 1 if length <= 512 else math.ceil((length - 512) / (512 - 64)) + 1
        assert len(positions) == expected
        assert positions[0] == 0 and positions[-1] == length - 512
        for first, second in zip(positions, positions[1:]):
            assert 512 - (second - first) >= 512 // 8


def test_corners_keep_coinciding_corners_once() -> None:
    assert plan_boxes("corners", (512, 800), CROP) == [(0, 0, 512, 512), (288, 0, 512, 512)]
    assert plan_boxes("corners", (512, 512), CROP) == [(0, 0, 512, 512)]


def test_center_and_full() -> None:
    assert plan_boxes("center", (600, 800), CROP) == [(144, 44, 512, 512)]
    assert plan_boxes("full", (600, 800), CROP) == [(0, 0, 800, 600)]


def test_crops_are_the_boxes_of_the_scaled_photo() -> None:
    photo = _photo(1600, 1200)
    scaled = scale_photo(photo, SHORT_SIDE, CROP)
    crops = make_crops(photo, "grid", SHORT_SIDE, CROP)
    assert crops.images.shape == (4, 512, 512, 3) and crops.images.dtype == np.uint8
    assert crops.photo_size == (800, 600) and crops.scale == pytest.approx(0.5)
    for image, (x, y, w, h) in zip(crops.images, crops.boxes):
        np.testing.assert_array_equal(image, scaled[y : y + h, x : x + w])
    full = make_crops(photo, "full", SHORT_SIDE, CROP)
    assert full.boxes == ((0, 0, 800, 600),)
    np.testing.assert_array_equal(full.images[0], cv2.resize(scaled, (512, 512), interpolation=cv2.INTER_AREA))
    center = make_crops(photo, "center", SHORT_SIDE, CROP)
    np.testing.assert_array_equal(center.images[0], scaled[44:556, 144:656])


def test_non_square_crops() -> None:
    crops = make_crops(_photo(800, 600), "grid", 600, (512, 384))
    assert crops.images.shape[1:] == (512, 384, 3)
    assert _coverage(list(crops.boxes), 600, 800).min() >= 1


def test_unknown_plan() -> None:
    with pytest.raises(OptionError, match="unknown scan plan 'spiral'"):
        make_crops(_photo(10, 10), "spiral", 8, (8, 8))
