"""Crop plans: which model-sized crops of a photo the classifier looks at.

A photo is first brought to the scale the model was trained at (`scale_photo`), then a plan cuts crops from it:

- ``corners``: the reference plan, the four corners of the scaled photo (800x600 and 512 crops: x in {0, 288},
  y in {0, 88}). Coinciding corners are kept once, so a photo as wide as the crop gives two crops, not four.
  It covers the whole photo only while a side is at most twice the crop; beyond that the middle is skipped.
- ``grid``: the generalisation of ``corners`` to any size: evenly spaced crops that cover every pixel with at
  least crop // 8 pixels of overlap. It equals ``corners`` when two crops per axis suffice (800x600 with 512).
- ``center``: one crop from the centre.
- ``full``: the whole scaled photo resized to the crop size, aspect ratio not kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from cassava_edge.errors import OptionError

SCAN_PLANS = ("corners", "grid", "center", "full")

Box = tuple[int, int, int, int]  # x, y, width, height in scaled-photo pixels


@dataclass(frozen=True)
class Crops:
    """The crops of one photo, as the model sees them before TTA."""

    images: np.ndarray  # (n, crop_h, crop_w, 3) uint8 RGB
    boxes: tuple[Box, ...]  # where each crop comes from in the scaled photo
    photo_size: tuple[int, int]  # (width, height) of the scaled photo
    scale: float  # scaled photo size / original photo size

    def __len__(self) -> int:
        return len(self.boxes)


def check_plan(plan: str) -> str:
    if plan not in SCAN_PLANS:
        raise OptionError(f"unknown scan plan {plan!r}; choose one of {', '.join(SCAN_PLANS)}")
    return plan


def scaled_size(photo_hw: tuple[int, int], short_side: int, crop_hw: tuple[int, int]) -> tuple[int, int]:
    """(height, width) of the photo at training scale: shorter side = short_side, and never smaller than the crop."""
    height, width = photo_hw
    crop_h, crop_w = crop_hw
    factor = max(short_side / min(height, width), crop_h / height, crop_w / width)
    # max() with the crop guards against rounding a side to one pixel under the crop.
    return max(round(height * factor), crop_h), max(round(width * factor), crop_w)


def resize(rgb: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Resize `rgb` to `size_hw`: INTER_AREA to shrink, INTER_LINEAR to enlarge (training shares it, so its
    squeezed crops are made exactly as the runtime's)."""
    height, width = size_hw
    shrinking = height * width < rgb.shape[0] * rgb.shape[1]
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def scale_photo(rgb: np.ndarray, short_side: int, crop_hw: tuple[int, int]) -> np.ndarray:
    """Resize `rgb` to training scale (see `scaled_size`)."""
    new_hw = scaled_size(rgb.shape[:2], short_side, crop_hw)
    return rgb if new_hw == rgb.shape[:2] else resize(rgb, new_hw)


def grid_positions(length: int, crop: int) -> list[int]:
    """Start offsets of evenly spaced crops covering [0, length) with at least crop // 8 overlap."""
    if length <= crop:
        return [0]
    min_overlap = crop // 8
    count = math.ceil((length - crop) / (crop - min_overlap)) + 1
    return [round(i * (length - crop) / (count - 1)) for i in range(count)]


def plan_boxes(plan: str, photo_hw: tuple[int, int], crop_hw: tuple[int, int]) -> list[Box]:
    """The crop boxes of `plan` on a scaled photo of `photo_hw`, row by row, left to right."""
    check_plan(plan)
    height, width = photo_hw
    crop_h, crop_w = crop_hw
    if height < crop_h or width < crop_w:
        raise ValueError(f"photo {width}x{height} is smaller than the crop {crop_w}x{crop_h}; scale it first")
    if plan == "full":
        return [(0, 0, width, height)]
    if plan == "center":
        return [((width - crop_w) // 2, (height - crop_h) // 2, crop_w, crop_h)]
    if plan == "corners":
        xs = sorted({0, width - crop_w})
        ys = sorted({0, height - crop_h})
    else:
        xs = grid_positions(width, crop_w)
        ys = grid_positions(height, crop_h)
    return [(x, y, crop_w, crop_h) for y in ys for x in xs]


def make_crops(rgb: np.ndarray, plan: str, short_side: int, crop_hw: tuple[int, int]) -> Crops:
    """Scale a photo to training scale and cut the crops of `plan` from it."""
    check_plan(plan)
    photo = scale_photo(rgb, short_side, crop_hw)
    crop_h, crop_w = crop_hw
    boxes = plan_boxes(plan, photo.shape[:2], crop_hw)
    images = np.empty((len(boxes), crop_h, crop_w, 3), dtype=np.uint8)
    for index, (x, y, w, h) in enumerate(boxes):
        region = photo[y : y + h, x : x + w]
        if (h, w) != (crop_h, crop_w):  # only `full`: the whole photo squeezed into one crop
            region = resize(region, crop_hw)
        images[index] = region
    scale = photo.shape[0] / rgb.shape[0]
    return Crops(images, tuple(boxes), (photo.shape[1], photo.shape[0]), scale)
