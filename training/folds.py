"""K-fold cross-validation over the originals: a fixed, committed fold file, and the split it gives one training.

Decisions made on one 190-photo validation split could not tell recipes apart (one photo is half a point). With a
fold file every original is validated exactly once: an experiment is k trainings, each validated on its held-out
fold, and its figures are out-of-fold over all originals. The file is committed (training/folds.csv) so that every
experiment, in every session, holds out the same photos.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .data import NUM_CLASSES, DataError, Sample, without_copies_of

FOLD_COLUMNS = ("folder", "image_id", "label", "fold")
DEFAULT_FOLDS_FILE = Path(__file__).with_name("folds.csv")


def make_folds(samples: list[Sample], k: int, seed: int) -> dict[tuple[str, str], int]:
    """(folder, image_id) -> fold in 0..k-1, stratified: each class is dealt round-robin over the folds in a
    seeded order, so every fold holds each class's share (to within one photo)."""
    if k < 2:
        raise DataError(f"need at least 2 folds, not {k}")
    rng = np.random.default_rng(seed)
    folds: dict[tuple[str, str], int] = {}
    offset = 0
    for label in range(NUM_CLASSES):
        group = sorted((s for s in samples if s.label == label), key=lambda s: (s.folder, s.image_id))
        for position, index in enumerate(rng.permutation(len(group))):
            # The offset carries on across classes, so small classes do not all start in fold 0.
            folds[(group[index].folder, group[index].image_id)] = (offset + position) % k
        offset += len(group)
    return folds


def write_folds(path: str | Path, samples: list[Sample], folds: dict[tuple[str, str], int]) -> None:
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(FOLD_COLUMNS)
        for sample in sorted(samples, key=lambda s: (s.folder, s.image_id)):
            writer.writerow([sample.folder, sample.image_id, sample.label, folds[(sample.folder, sample.image_id)]])


def read_folds(path: str | Path) -> dict[tuple[str, str], int]:
    """The fold file as (folder, image_id) -> fold. A photo listed twice (in two folds, or the same one) stops
    here, with one line naming it."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not set(FOLD_COLUMNS) <= set(reader.fieldnames):
            raise DataError(f"{path}: needs the columns {','.join(FOLD_COLUMNS)} (got {reader.fieldnames})")
        folds: dict[tuple[str, str], int] = {}
        for line, row in enumerate(reader, start=2):
            key = (row["folder"], row["image_id"])
            try:
                fold = int(row["fold"])
            except ValueError:
                raise DataError(f"{path}:{line}: fold {row['fold']!r} is not a number") from None
            if key in folds:
                raise DataError(f"{path}:{line}: {key[0]}/{key[1]} is listed twice (folds {folds[key]} and {fold}); "
                                "each photo belongs to exactly one fold")
            folds[key] = fold
    if not folds:
        raise DataError(f"{path}: lists no photos")
    return folds


def split_by_fold(by_folder: dict[str, list[Sample]], folds: dict[tuple[str, str], int], fold: int,
                  path: str | Path = "fold file", exclude: tuple[int, ...] = ()) -> tuple[list[Sample], list[Sample]]:
    """Training and validation samples for held-out `fold`: the fold's photos validate, every other photo of every
    data folder trains (fold-file folders that are not among the data folders are ignored, so a run on the
    originals alone still works). Photos of the `exclude` folds are used for neither: a fold held out of a whole
    procedure (fold models, their ensemble, the student distilled from it) stays unseen by all of it. Nor are
    copies of either (the same image id in another folder).
    A listed photo that is missing from its data folder stops here, naming it."""
    numbers = sorted(set(folds.values()))
    for number in (fold, *exclude):
        if number not in numbers:
            raise DataError(f"{path}: has folds {', '.join(map(str, numbers))}, not {number}")
    if fold in exclude:
        raise DataError(f"fold {fold} is both held out for validation and excluded")
    present = {(s.folder, s.image_id) for samples in by_folder.values() for s in samples}
    missing = [key for key in folds if key[0] in by_folder and key not in present]
    if missing:
        folder, image_id = missing[0]
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(f"{path}: names {folder}/{image_id}, which is not in the data folder {folder}{more}")
    train, val, excluded = [], [], []
    for samples in by_folder.values():
        for sample in samples:
            number = folds.get((sample.folder, sample.image_id))
            (excluded if number in exclude else val if number == fold else train).append(sample)
    if not val:
        raise DataError(f"{path}: fold {fold} has no photo in the data folders given")
    return without_copies_of(train, val + excluded), val


def main() -> None:
    """Write training/folds.csv: 5 stratified folds of the originals (cassava/ and cassava-more/)."""
    import argparse

    from .data import read_kaggle_folder

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("folders", nargs="+", help="Kaggle-layout folders of originals")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output", default=str(DEFAULT_FOLDS_FILE))
    args = parser.parse_args()
    samples = [s for folder in args.folders for s in read_kaggle_folder(folder)]
    folds = make_folds(samples, args.k, args.seed)
    write_folds(args.output, samples, folds)
    counts = np.zeros((args.k, NUM_CLASSES), int)
    for s in samples:
        counts[folds[(s.folder, s.image_id)], s.label] += 1
    print(f"{args.output}: {len(samples)} photos in {args.k} folds; per fold and class:\n{counts}")


if __name__ == "__main__":
    main()
