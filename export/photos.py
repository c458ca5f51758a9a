"""Real photos for the checks, cut into crops exactly as the runtime cuts them.

Decoding and cropping are the runtime's own functions (`cassava_edge.imaging.load_image`,
`cassava_edge.scan.make_crops`), so parity, calibration and accuracy are measured on the inputs the model will get.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from cassava_edge.contract import IMAGE_EXTENSIONS
from cassava_edge.errors import ImageError
from cassava_edge.imaging import load_image
from cassava_edge.looks import Look
from cassava_edge.labelled import LabelledPhoto, read_ids
from cassava_edge.scan import make_crops
from .errors import InputError


@dataclass(frozen=True)
class CropSet:
    """Crops of several photos: crops[i] comes from photos[owner[i]]."""

    crops: np.ndarray  # (n, size, size, 3) uint8 RGB
    owner: np.ndarray  # (n,) int
    photos: tuple[Path, ...]

    def __len__(self) -> int:
        return len(self.crops)

    def as_float(self) -> np.ndarray:
        """The model input: float32 0..255."""
        return self.crops.astype(np.float32)


def read_validation_photos(folders: Path | Sequence[Path], ids_file: Path | None) -> list[LabelledPhoto]:
    """The labelled photos of Kaggle-layout folders (train.csv + train_images/), only the ids of `ids_file`.

    Over several folders (a fold run validates on `cassava/` and `cassava-more/`) each id must name a photo of
    exactly one of them: the list holds file names, not folders."""
    from cassava_edge_training.data import DataError, read_kaggle_folder  # no TensorFlow at import

    folders = [folders] if isinstance(folders, Path) else list(folders)
    samples = []
    for folder in folders:
        if not folder.is_dir():
            raise InputError(f"{folder}: no such validation folder")
        try:
            # skip_bad: a broken photo elsewhere in the folder must not stop the export; missing ids are checked below.
            samples += read_kaggle_folder(folder, skip_bad=True)
        except DataError as exc:
            raise InputError(str(exc).splitlines()[0]) from None
    if ids_file is None:
        return [LabelledPhoto(Path(s.path), s.label) for s in samples]
    if not ids_file.is_file():
        raise InputError(f"{ids_file}: no such validation list")
    ids = set(read_ids(ids_file))
    chosen = [s for s in samples if s.image_id in ids]
    where = " or ".join(str(f) for f in folders)
    missing = ids - {s.image_id for s in chosen}
    if missing:
        raise InputError(f"{ids_file}: {len(missing)} of its ids are not usable photos in {where}, "
                         f"e.g. {', '.join(sorted(missing)[:3])}")
    twice = sorted(image_id for image_id, n in Counter(s.image_id for s in chosen).items() if n > 1)
    if twice:
        raise InputError(f"{ids_file}: {len(twice)} of its ids name a photo in more than one of {where}, "
                         f"e.g. {', '.join(twice[:3])}; pass the one folder with --validation")
    return [LabelledPhoto(Path(s.path), s.label) for s in chosen]


def image_folder(folder: Path) -> Path:
    """A folder of photos, or the train_images/ of a Kaggle-layout folder."""
    if not folder.is_dir():
        raise InputError(f"{folder}: no such calibration folder")
    return folder / "train_images" if (folder / "train_images").is_dir() else folder


def pick_calibration_photos(folders: Sequence[Path], exclude_ids: set[str], count: int, seed: int = 0) -> list[Path]:
    """`count` photos drawn (seeded) from the folders, leaving out the validation ids (file names)."""
    pool: list[Path] = []
    for folder in folders:
        images = image_folder(folder)
        found = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not found:
            raise InputError(f"{folder}: no photos ({', '.join(sorted(IMAGE_EXTENSIONS))}) in {images}")
        pool += [p for p in found if p.name not in exclude_ids]
    if not pool:
        raise InputError("no calibration photos left once the validation ids are left out")
    order = np.random.default_rng(seed).permutation(len(pool))
    return [pool[i] for i in order[:count]]


def crop_photos(
    paths: Sequence[Path],
    plan: str,
    short_side: int,
    crop_size: int,
    on_unreadable: Callable[[str], None] | None = None,
    look: Look | None = None,
) -> CropSet:
    """The `plan` crops ("center", "grid", ...) of each photo at training scale, as the runtime cuts them: given
    the model's `look` first, when it has one.

    An unreadable photo raises InputError, or is reported to `on_unreadable` and left out when that is given.
    """
    crops, owner, kept = [], [], []
    for path in paths:
        try:
            rgb = load_image(path)
        except ImageError as exc:
            if on_unreadable is None:
                raise InputError(str(exc)) from None
            on_unreadable(str(exc))
            continue
        if look is not None:
            rgb = look.apply(rgb)
        photo_crops = make_crops(rgb, plan, short_side, (crop_size, crop_size)).images
        crops.append(photo_crops)
        owner += [len(kept)] * len(photo_crops)
        kept.append(path)
    if not crops:
        return CropSet(np.zeros((0, crop_size, crop_size, 3), np.uint8), np.zeros(0, int), ())
    return CropSet(np.concatenate(crops), np.asarray(owner), tuple(kept))
