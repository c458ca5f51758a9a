"""Is there colour to judge? A photo check run before the model, for models that carry trust gates.

The five classes are told apart by colour (yellow mosaic, brown streaks, pale mottling): from a grayscale copy,
a nearly uniform frame or a washed-out one (a leaf at half opacity over white, a faded scan, heavy glare) the model
still answers, often with high confidence, but the answer is not a diagnosis. Such photos fail with the reason, as
photos too small to judge do, so that an app asks for another photo instead of showing a disease.

The measures are taken on a copy scaled down to SHORT_SIDE pixels (fast, and JPEG noise averages out). The
thresholds sit between the real photos and the copies without colour; the figures below are from the 2,143 photos
of ../shared/data (cassava, cassava-more, cassava-roboflow with its colour-shifted augmentations, field,
icassava2019), none of which is flagged (tests/test_color_check.py checks it).
"""

from __future__ import annotations

import cv2
import numpy as np

SHORT_SIDE = 128
# Luma standard deviation (0..255) under which a frame is nearly uniform: a lens cap, a wall, a blank page.
# Real photos: 20 at the lowest; a leaf at half opacity over white still has 10.
MIN_LUMA_STD = 8.0
# Colour spread (max - min of R, G, B per pixel) that 90% of the pixels stay under: 0 for grayscale, at most a few
# levels after JPEG compression of one. Real photos: 27 at the lowest (42 for the 1st percentile).
MIN_COLOR_SPREAD_P90 = 12.0
# Luma of the darkest 1% of pixels above which a photo is washed out: nothing in it is dark, as in a leaf at half
# opacity over white (128 at the lowest) or a faded print. Real photos: 91 at the highest (70 for the 99th
# percentile): shadows and soil are dark even in bright sun.
MAX_DARKEST_LUMA = 110.0


def color_problem(rgb: np.ndarray) -> str | None:
    """Why an HxWx3 uint8 RGB photo has no usable colour (one line for the user), or None when it has."""
    small = _scaled_down(rgb)
    luma = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)
    luma_std = float(luma.std())
    if luma_std < MIN_LUMA_STD:
        return f"nearly uniform (brightness varies by {luma_std:.1f} of 255): nothing to judge; retake the photo"
    spread = (small.max(axis=2).astype(np.int16) - small.min(axis=2)).ravel()
    spread_p90 = float(np.percentile(spread, 90))
    if spread_p90 < MIN_COLOR_SPREAD_P90:
        return "no colour (grayscale): the diseases are told apart by colour; use a colour photo"
    darkest = float(np.percentile(luma, 1))
    if darkest > MAX_DARKEST_LUMA:
        return f"washed out (its darkest parts are {darkest:.0f} of 255): too pale to judge; retake it without glare"
    return None


def _scaled_down(rgb: np.ndarray) -> np.ndarray:
    height, width = rgb.shape[:2]
    scale = SHORT_SIDE / min(height, width)
    if scale >= 1.0:
        return rgb
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
