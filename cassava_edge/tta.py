"""Test-time augmentation presets: each turns a batch of crops into views the model scores separately.

Views are laid out crop-major: ``views[i * views_per_crop + j]`` is view j of crop i, and ``view_names()[j]``
says what view j is. Probabilities are later averaged over all views of all crops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import cv2
import numpy as np

from cassava_edge.contract import DEFAULT_SEED, SEED_CONTRAST, SEED_VIEWS_PER_CROP, SEED_ZOOM_RANGE
from cassava_edge.errors import OptionError

TTA_PRESETS = ("none", "flip", "d4", "seed")


class TtaPreset(Protocol):
    name: str

    @property
    def views_per_crop(self) -> int: ...

    def view_names(self) -> list[str]: ...

    def apply(self, crops: np.ndarray) -> np.ndarray:
        """(n, h, w, 3) crops -> (n * views_per_crop, h, w, 3) views."""
        ...


Transform = Callable[[np.ndarray], np.ndarray]  # acts on (n, h, w, c) batches


def _hflip(batch: np.ndarray) -> np.ndarray:
    return batch[:, :, ::-1]


def _rotation(quarter_turns: int) -> Transform:
    # np.rot90 turns counter-clockwise: rot90 maps the top-right corner to the top-left.
    return lambda batch: np.rot90(batch, k=quarter_turns, axes=(1, 2))


def _identity(batch: np.ndarray) -> np.ndarray:
    return batch


def _then(first: Transform, second: Transform) -> Transform:
    return lambda batch: second(first(batch))


class GeometricPreset:
    """A fixed list of pixel-exact transforms (flips and quarter turns); views stay uint8."""

    def __init__(self, name: str, transforms: list[tuple[str, Transform]]) -> None:
        self.name = name
        self._transforms = transforms

    @property
    def views_per_crop(self) -> int:
        return len(self._transforms)

    def view_names(self) -> list[str]:
        return [view for view, _ in self._transforms]

    def apply(self, crops: np.ndarray) -> np.ndarray:
        _check_crops(crops)
        views = np.stack([transform(crops) for _, transform in self._transforms], axis=1)
        return views.reshape((-1, *crops.shape[1:]))


def none_preset() -> GeometricPreset:
    return GeometricPreset("none", [("identity", _identity)])


def flip_preset() -> GeometricPreset:
    return GeometricPreset("flip", [("identity", _identity), ("hflip", _hflip)])


def d4_preset(crop_hw: tuple[int, int]) -> GeometricPreset:
    """The 8 symmetries of the square: rotations by 0/90/180/270 degrees counter-clockwise, then the same
    rotations applied after a horizontal flip ("hflip+rot90" = rotate the flipped crop).

    Quarter turns change the shape of a non-square crop, which the model cannot take, so d4 refuses
    non-square crops with OptionError rather than silently using fewer views; use ``flip`` for those models.
    """
    if crop_hw[0] != crop_hw[1]:
        raise OptionError(f"tta 'd4' needs square crops, this model's are {crop_hw[1]}x{crop_hw[0]}; use 'flip'")
    rotations = [("identity", _identity), ("rot90", _rotation(1)), ("rot180", _rotation(2)), ("rot270", _rotation(3))]
    flipped = [("hflip", _hflip)] + [(f"hflip+{name}", _then(_hflip, rot)) for name, rot in rotations[1:]]
    return GeometricPreset("d4", rotations + flipped)


@dataclass(frozen=True)
class SeedView:
    """The random draws behind one ``seed`` view."""

    hflip: bool
    vflip: bool
    zoom: float  # Keras RandomZoom height/width factor, in [-0.2, 0): negative zooms in
    contrast: float  # Keras RandomContrast factor, in [0.8, 1.2)


class SeedPreset:
    """The reference notebook's random augmentation, reproducible: four random views per crop.

    Each view applies, in this order (the order of the notebook's Keras layers):

    1. horizontal flip with p = 0.5, then vertical flip with p = 0.5 (Keras ``RandomFlip("horizontal_and_vertical")``);
    2. zoom like Keras ``RandomZoom((-0.2, 0))``: z ~ U(-0.2, 0) for both axes; a negative factor zooms IN, the output
       shows the centred window of (1 + z) times the crop's height and width, resized back to the crop size with
       bilinear interpolation (Keras's affine sampling: input x = (1 + z) * x_out + (w - 1) / 2 * (-z));
    3. contrast like Keras ``RandomContrast(0.2)``: f ~ U(0.8, 1.2), per channel x' = (x - mean) * f + mean with the
       mean over the crop's pixels, clipped to 0..255.

    Draws come from ``numpy.random.default_rng([seed, crop_index])`` in the order hflip, vflip, zoom, contrast per
    view, so a crop's views depend only on the seed and the crop's index within its photo, never on which other
    photos share a batch. Views are float32 in 0..255.
    """

    name = "seed"
    views_per_crop = SEED_VIEWS_PER_CROP
    zoom_range = SEED_ZOOM_RANGE
    contrast_range = (1.0 - SEED_CONTRAST, 1.0 + SEED_CONTRAST)

    def __init__(self, seed: int = DEFAULT_SEED) -> None:
        self.seed = int(seed)

    def view_names(self) -> list[str]:
        return [f"seed#{index}" for index in range(self.views_per_crop)]

    def draws(self, crop_index: int) -> list[SeedView]:
        rng = np.random.default_rng([self.seed, crop_index])
        views = []
        for _ in range(self.views_per_crop):
            hflip = bool(rng.random() < 0.5)
            vflip = bool(rng.random() < 0.5)
            zoom = float(rng.uniform(*self.zoom_range))
            contrast = float(rng.uniform(*self.contrast_range))
            views.append(SeedView(hflip, vflip, zoom, contrast))
        return views

    def apply(self, crops: np.ndarray) -> np.ndarray:
        _check_crops(crops)
        count, height, width, channels = crops.shape
        per_crop = self.views_per_crop
        # Written in place into one preallocated batch: this runs on every photo, 16 views of a 512 crop each.
        views = np.empty((count * per_crop, height, width, channels), dtype=np.float32)
        for crop_index, crop in enumerate(crops):
            for view_index, draw in enumerate(self.draws(crop_index)):
                seed_view(crop, draw, out=views[crop_index * per_crop + view_index])
        return views


# cv2.flip codes: 1 mirrors left-right, 0 upside down, -1 both.
_FLIP_CODES = {(True, False): 1, (False, True): 0, (True, True): -1}


def seed_view(crop: np.ndarray, draw: SeedView, out: np.ndarray | None = None) -> np.ndarray:
    """One ``seed`` view of one (h, w, 3) crop, as float32 (into `out` when given)."""
    flip_code = _FLIP_CODES.get((draw.hflip, draw.vflip))
    view = crop if flip_code is None else cv2.flip(np.ascontiguousarray(crop), flip_code)
    # Zoom in float32, as Keras does, so bilinear weights are not rounded to uint8 in between.
    zoomed = keras_zoom(np.ascontiguousarray(view, dtype=np.float32), draw.zoom)
    return random_contrast(zoomed, draw.contrast, out=out)


def keras_zoom(image: np.ndarray, zoom: float) -> np.ndarray:
    """Keras RandomZoom with factor `zoom` on both axes (negative = zoom in), bilinear, about the centre."""
    height, width = image.shape[:2]
    scale = 1.0 + zoom
    # Inverse map, output pixel -> input pixel, as Keras builds it: in = scale * out + (size - 1) / 2 * (1 - scale).
    matrix = np.array(
        [[scale, 0.0, (width - 1) / 2 * (1 - scale)], [0.0, scale, (height - 1) / 2 * (1 - scale)]],
        dtype=np.float64,
    )
    return cv2.warpAffine(
        image,
        matrix,
        (width, height),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REFLECT,  # Keras's default fill mode; zooming in never reaches the border
    )


def random_contrast(image: np.ndarray, factor: float, out: np.ndarray | None = None) -> np.ndarray:
    """Keras RandomContrast with a drawn factor: stretch each channel about its mean, clip to 0..255.

    (x - mean) * f + mean is computed as x * f + mean * (1 - f): one pass fewer over the pixels."""
    channels = image.shape[2]
    mean = np.asarray(cv2.mean(image)[:channels], dtype=np.float32)  # per-channel means in one pass, in double
    out = np.multiply(image, np.float32(factor), out=out)
    out += mean * np.float32(1.0 - factor)
    return np.clip(out, 0.0, 255.0, out=out)


def make_tta(name: str, *, crop_hw: tuple[int, int], seed: int = DEFAULT_SEED) -> TtaPreset:
    """The preset called `name` for a model with crops of `crop_hw` (height, width)."""
    if name == "none":
        return none_preset()
    if name == "flip":
        return flip_preset()
    if name == "d4":
        return d4_preset(crop_hw)
    if name == "seed":
        return SeedPreset(seed)
    raise OptionError(f"unknown tta preset {name!r}; choose one of {', '.join(TTA_PRESETS)}")


def _check_crops(crops: np.ndarray) -> None:
    if crops.ndim != 4 or crops.shape[3] != 3:
        raise ValueError(f"crops must be (n, h, w, 3), got {crops.shape}")
