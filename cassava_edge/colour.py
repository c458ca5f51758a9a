"""Is there colour to judge? A cheap check on the decoded photo, run before the model when its trust settings ask.

The five classes are told apart by colour (yellow mosaic, brown streaks, pale mottling). From a grayscale copy, a
nearly uniform frame or a washed-out one (a leaf at half opacity over white, a faded print, heavy glare) the model
still answers, often confidently (a grayscale leaf: CBB 0.78; the same leaf at half opacity over white: CBB 0.89),
but such an answer is no diagnosis. These photos fail with the reason, as photos too small to judge do, so that an
app asks for another photo instead of showing a disease.

The check is a model setting, `Trust.colour` in the metadata (None: no check, as for test and research models);
export writes `DEFAULT_CHECK` into new models and the bundled models carry it. The measures are taken on a copy
scaled down to SHORT_SIDE pixels (about 1 ms for an 800x600 photo, and JPEG noise averages out).

The thresholds sit between the real photos and copies of them without colour. Measured on every photo of
../shared/data cassava (963), cassava-more (42), cassava-roboflow (1,079, with its colour-shifted augmentations),
icassava2019 (8) and field (51): 0 of 2,143 flagged; on a grayscale JPEG copy of each, 2,143 of 2,143 flagged; on a
half-opacity-over-white copy of each, 2,143 of 2,143 flagged (see models/README.md).
"""

from __future__ import annotations

import cv2
import numpy as np

from cassava_edge.metadata import ColourCheck

SHORT_SIDE = 128
# Real photos, lowest luma standard deviation: 20; a leaf at half opacity over white still has 10. Under 8 the
# frame is a lens cap, a wall or a blank page.
# Colour spread (max - min of R, G, B per pixel) that 90% of pixels stay under: 0 for grayscale, a few levels after
# JPEG compression of one; real photos 27 at the lowest.
# Luma of the darkest 1% of pixels: shadows and soil are dark even in bright sun (real photos: 91 at the highest);
# nothing is dark in a leaf at half opacity over white (128 at the lowest).
DEFAULT_CHECK = ColourCheck(min_luma_std=8.0, min_colour_spread=12.0, max_darkest_luma=110.0)


def colour_problem(rgb: np.ndarray, check: ColourCheck = DEFAULT_CHECK) -> str | None:
    """Why an HxWx3 uint8 RGB photo has no usable colour (one line for the user), or None when it has."""
    luma_std, spread, darkest = colour_measures(rgb)
    if luma_std < check.min_luma_std:
        return f"nearly uniform (brightness varies by {luma_std:.1f} of 255): nothing to judge; retake the photo"
    if spread < check.min_colour_spread:
        return "no colour (grayscale): the diseases are told apart by colour; use a colour photo"
    if darkest > check.max_darkest_luma:
        return f"washed out (its darkest parts are {darkest:.0f} of 255): too pale to judge; retake it without glare"
    return None


def colour_measures(rgb: np.ndarray) -> tuple[float, float, float]:
    """(luma std, 90th percentile colour spread, 1st percentile luma): what `colour_problem` compares."""
    small = _scaled_down(rgb)
    luma = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)
    spread = small.max(axis=2).astype(np.int16) - small.min(axis=2)
    return float(luma.std()), float(np.percentile(spread, 90)), float(np.percentile(luma, 1))


def _scaled_down(rgb: np.ndarray) -> np.ndarray:
    height, width = rgb.shape[:2]
    scale = SHORT_SIDE / min(height, width)
    if scale >= 1.0:
        return rgb
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
