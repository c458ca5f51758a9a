"""Labelled photo folders and id lists: shared by `cassava-edge evaluate`, training and export.

Imports nothing beyond the standard library, so training and export can use it without onnxruntime.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from cassava_edge.errors import CassavaEdgeError


class DatasetError(CassavaEdgeError):
    """A labelled folder that cannot be evaluated: says what is missing."""


@dataclass(frozen=True)
class LabelledPhoto:
    path: Path
    label: int


def find_labels(folder: Path, labels_csv: Path | None = None) -> tuple[Path, Path]:
    """(labels CSV, image folder): the Kaggle layout (train.csv + train_images/), `labels.csv` + `images/`,
    or an explicit CSV whose image ids are file names inside `folder`."""
    if labels_csv is not None:
        return labels_csv, folder
    for csv_name, image_dir in (("train.csv", "train_images"), ("labels.csv", "images")):
        if (folder / csv_name).is_file() and (folder / image_dir).is_dir():
            return folder / csv_name, folder / image_dir
    raise DatasetError(
        f"{folder}: no labels found; expected train.csv + train_images/ (Kaggle layout), labels.csv + images/, "
        "or pass --labels FILE.csv (columns image_id,label)"
    )


def read_labelled(folder: str | Path, labels_csv: str | Path | None = None, ids: Iterable[str] | None = None,
                  num_classes: int = 5) -> list[LabelledPhoto]:
    csv_path, image_dir = find_labels(Path(folder), Path(labels_csv) if labels_csv else None)
    wanted = set(ids) if ids is not None else None
    with csv_path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"image_id", "label"} <= set(reader.fieldnames):
            raise DatasetError(f"{csv_path}: needs the columns image_id,label (got {reader.fieldnames})")
        rows = [row for row in reader if wanted is None or row["image_id"] in wanted]
    photos = []
    for row in rows:
        try:
            label = int(row["label"])
        except ValueError:
            label = -1
        if not 0 <= label < num_classes:
            raise DatasetError(f"{csv_path}: {row['image_id']} has label {row['label']!r}, outside 0..{num_classes - 1}")
        photos.append(LabelledPhoto(image_dir / row["image_id"], label))
    if wanted is not None and len(photos) != len(wanted):
        missing = sorted(wanted - {p.path.name for p in photos})
        raise DatasetError(f"{len(missing)} listed ids are not in {csv_path}, e.g. {missing[:3]}")
    if not photos:
        raise DatasetError(f"{csv_path}: no labelled photos")
    return photos


def read_ids(path: str | Path) -> list[str]:
    """Image ids, one per line (a header line `image_id` is allowed)."""
    lines = [line.strip().split(",")[0] for line in Path(path).read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line and line != "image_id"]
