"""Which photos an export validates on: a fold run's validation ids span `cassava/` and `cassava-more/`, so the
export reads them from every folder of the run (or every `--validation` given), one folder per id."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from export.errors import InputError
from export.photos import read_validation_photos
from export.plan import ExportRequest, _validation_source
from export.source import ExportSource


def kaggle_folder(root: Path, name: str, ids_and_labels: dict[str, int]) -> Path:
    """A Kaggle-layout folder (train.csv + train_images/) of small noise JPEGs."""
    folder = root / name
    (folder / "train_images").mkdir(parents=True)
    with open(folder / "train.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_id", "label"])
        for index, (image_id, label) in enumerate(ids_and_labels.items()):
            pixels = np.random.default_rng(index).integers(0, 256, (30, 40, 3), dtype=np.uint8)
            cv2.imwrite(str(folder / "train_images" / image_id), pixels)
            writer.writerow([image_id, label])
    return folder


def ids_file(path: Path, ids: list[str]) -> Path:
    path.write_text("".join(i + "\n" for i in ids))
    return path


@pytest.fixture()
def two_folders(tmp_path: Path) -> tuple[Path, Path]:
    return (kaggle_folder(tmp_path, "cassava", {"a.jpg": 0, "b.jpg": 3, "c.jpg": 4}),
            kaggle_folder(tmp_path, "cassava-more", {"d.jpg": 1, "e.jpg": 2}))


def test_ids_are_read_from_whichever_folder_holds_them(tmp_path: Path, two_folders: tuple[Path, Path]) -> None:
    ids = ids_file(tmp_path / "ids.txt", ["a.jpg", "c.jpg", "e.jpg"])
    photos = read_validation_photos(list(two_folders), ids)
    assert sorted((p.path.parent.parent.name, p.path.name, p.label) for p in photos) == [
        ("cassava", "a.jpg", 0), ("cassava", "c.jpg", 4), ("cassava-more", "e.jpg", 2)]
    # One folder alone lacks e.jpg: named in one line, with the folder searched.
    with pytest.raises(InputError, match=r"1 of its ids are not usable photos in .*cassava, e.g. e.jpg"):
        read_validation_photos(two_folders[0], ids)


def test_an_id_in_two_folders_is_refused(tmp_path: Path, two_folders: tuple[Path, Path]) -> None:
    third = kaggle_folder(tmp_path, "copies", {"a.jpg": 0})
    with pytest.raises(InputError, match=r"1 of its ids name a photo in more than one .* e.g. a.jpg"):
        read_validation_photos([*two_folders, third], ids_file(tmp_path / "ids.txt", ["a.jpg", "d.jpg"]))


def fold_file(path: Path, folders: tuple[Path, Path]) -> str:
    """Every photo of the two folders in one of two folds, as training/folds.csv lists the originals."""
    rows = ["folder,image_id,label,fold"]
    for folder in folders:
        for index, (image_id, label) in enumerate(csv.reader((folder / "train.csv").open().readlines()[1:])):
            rows.append(f"{folder.name},{image_id},{label},{index % 2}")
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def source(config: dict, ids: Path) -> ExportSource:
    return ExportSource(checkpoint=ids.parent / "best.keras", run_folder=ids.parent, training_config=config,
                        validation_ids_file=ids)


def test_a_fold_run_validates_on_every_data_folder_with_its_own_ids(
        tmp_path: Path, two_folders: tuple[Path, Path]) -> None:
    ids = ids_file(tmp_path / "validation_ids.txt", ["b.jpg", "d.jpg"])
    # The copies folder is in the run's data too, and holds a photo of the same name as an original (as
    # cassava-roboflow/ does): it is not a folder of the fold file, so it is not searched.
    copies = kaggle_folder(tmp_path, "copies", {"b.jpg": 3})
    data = [str(f) for f in two_folders] + [str(copies)]
    folds = fold_file(tmp_path / "folds.csv", two_folders)
    request = ExportRequest(source=tmp_path, output=tmp_path / "out")
    folders, chosen = _validation_source(request, source({"data": data, "fold": 0, "folds": folds}, ids))
    assert (folders, chosen) == (list(two_folders), ids)
    assert len(read_validation_photos(folders, chosen)) == 2
    with pytest.raises(InputError, match="fold file is not here"):
        _validation_source(request, source({"data": data, "fold": 0, "folds": str(tmp_path / "gone.csv")}, ids))
    # A run on a fixed split validates on its first (or named) folder, as before.
    assert _validation_source(request, source({"data": data}, ids)) == ([two_folders[0]], ids)
    named = {"data": data, "validation_folder": "cassava-more"}
    assert _validation_source(request, source(named, ids)) == ([two_folders[1]], ids)
    # The same folders given on the command line keep the run's ids; others need their own list.
    fold_run = source({"data": data, "fold": 0, "folds": folds}, ids)
    given = ExportRequest(source=tmp_path, output=tmp_path / "out", validation=tuple(reversed(two_folders)))
    assert _validation_source(given, fold_run) == (list(reversed(two_folders)), ids)
    one = ExportRequest(source=tmp_path, output=tmp_path / "out", validation=(two_folders[0],))
    assert _validation_source(one, fold_run) == ([two_folders[0]], None)
