"""One look for every photo: the photo's source must not be learnable.

In the training data `cassava-roboflow/` holds most CGM and Healthy photos, and its copies look re-encoded: squeezed
800x600 -> 640x640, JPEG-encoded again, and about half of them rotated with black corners. A model learns that look
as a cue for those classes, and on a farmer's photo the cue is noise. So every training photo, whatever its folder,
gets the same chance of each look: the Roboflow chain, JPEG quality, resolution and blur jitter, and black corners
(given to photos without them until every folder has the same share). The same chain is what the flip test
(`training.cue`) puts validation originals through to measure how much the model still reads the look.

Pure numpy/OpenCV, so the runtime-side measurement and the tf.data generator share it; the chain itself lives in
`cassava_edge.looks`, where the runtime applies it to every photo of a model that asks for the canonical look.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from cassava_edge.looks import ROBOFLOW_QUALITY, ROBOFLOW_SIDE, jpeg, roboflow_chain  # shared with the runtime

QUALITY_RANGE = (55, 95)  # drawn around ROBOFLOW_QUALITY so that no single quality is a cue
# Share of cassava-roboflow/ photos with black rotation corners: 56 of 108 sampled (52%).
BLACK_CORNER_SHARE = 0.5
_CORNER_PATCH = 8
_CORNER_DARK = 12  # mean 0..255 under which a corner patch counts as black fill

__all__ = ["ROBOFLOW_QUALITY", "ROBOFLOW_SIDE", "jpeg", "roboflow_chain", "QUALITY_RANGE", "BLACK_CORNER_SHARE",
           "chained_twice", "random_quality", "random_chain", "rotate_with_black_corners", "has_black_corners",
           "black_corner_odds", "LookJitter"]


def chained_twice(rgb: np.ndarray) -> np.ndarray:
    """The flip test's look as a canonical-look model sees it: the Roboflow chain, then the runtime's own chain."""
    return roboflow_chain(roboflow_chain(rgb))


def random_quality(rng: np.random.Generator) -> int:
    """A JPEG quality drawn uniformly from QUALITY_RANGE, both ends included."""
    return int(rng.integers(QUALITY_RANGE[0], QUALITY_RANGE[1] + 1))


def random_chain(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The Roboflow chain at a quality drawn from QUALITY_RANGE: the look-consistency twin of a training photo."""
    return roboflow_chain(rgb, random_quality(rng))


def rotate_with_black_corners(rgb: np.ndarray, degrees: float) -> np.ndarray:
    """Roboflow's rotation augmentation: the photo turned about its centre, the uncovered corners left black."""
    height, width = rgb.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1.0)
    return cv2.warpAffine(rgb, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=(0, 0, 0))


def has_black_corners(rgb: np.ndarray) -> bool:
    """At least two corner patches are black fill."""
    p = _CORNER_PATCH
    patches = (rgb[:p, :p], rgb[:p, -p:], rgb[-p:, :p], rgb[-p:, -p:])
    return sum(float(patch.mean()) < _CORNER_DARK for patch in patches) >= 2


def black_corner_odds(folders: list[str], black: list[bool], target: float = BLACK_CORNER_SHARE) -> np.ndarray:
    """Per photo, the chance of being given black corners so that every folder ends with the `target` share:
    a folder whose share b is already at or above the target gives none; otherwise its photos without corners
    get (target - b) / (1 - b). Photos that have corners already get 0."""
    folder_array, black_array = np.asarray(folders), np.asarray(black, bool)
    odds = np.zeros(len(folders))
    for folder in set(folders):
        members = folder_array == folder
        share = float(black_array[members].mean())
        if share < target:
            odds[members & ~black_array] = (target - share) / (1 - share)
    return odds


@dataclass(frozen=True)
class LookJitter:
    """The chances of each look, the same for every photo."""

    chain: float = 0.4  # the Roboflow chain at a random quality
    recompress: float = 0.4  # one more JPEG pass at a random quality
    downscale: float = 0.3  # down to 50-90% and back up: a lower-resolution camera
    blur: float = 0.2  # a slight Gaussian blur: focus
    rotation_degrees: float = 45.0  # black-corner rotations are drawn within +-this
    # Share of photos given a drawn look at all; the others stay as they are. Below 1 the model sees more clean
    # photos, at the price of a weaker guard against the look as a cue: black corners are skipped too, so the
    # folders no longer end with the same share of them.
    share: float = 1.0

    def apply(self, rgb: np.ndarray, rng: np.random.Generator, black_corner_odds: float = 0.0) -> np.ndarray:
        # Drawn only below 1, so that runs with every photo given a look keep their random stream.
        if self.share < 1.0 and rng.random() >= self.share:
            return rgb
        if rng.random() < black_corner_odds:
            rgb = rotate_with_black_corners(rgb, rng.uniform(-self.rotation_degrees, self.rotation_degrees))
        if rng.random() < self.chain:
            rgb = roboflow_chain(rgb, random_quality(rng))
        if rng.random() < self.downscale:
            height, width = rgb.shape[:2]
            scale = rng.uniform(0.5, 0.9)
            small = cv2.resize(rgb, (max(1, round(width * scale)), max(1, round(height * scale))),
                               interpolation=cv2.INTER_AREA)
            rgb = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
        if rng.random() < self.blur:
            rgb = cv2.GaussianBlur(rgb, (0, 0), rng.uniform(0.5, 1.2))
        if rng.random() < self.recompress:
            rgb = jpeg(rgb, random_quality(rng))
        return rgb
