"""Knowledge distillation: soft targets for each training photo from one or more teacher checkpoints.

Each teacher scores every training photo the way users classify (the runtime's decoding and its `full` scan, the
plan the shipped model defaults to) at its own input size, so a teacher trained at 512 can teach a 384 student. The
teachers' probabilities are averaged (an ensemble) and blended into the one-hot targets:
``target = (1 - distill_weight) * one_hot + distill_weight * teachers``. Computed once, before the first epoch.

A teacher can also be a CSV of recorded probabilities (``folder,image_id,label,CBB,...``, as validation writes
them): the fold models of a cross-validated experiment take hours to train and are not kept, so their mean on
every photo is written once and committed, and any later session distils from it::

    python -m training.distill runs/v3/fold0/last.keras runs/v3/fold1/last.keras \
        --data ../shared/data/cassava --data ../shared/data/cassava-roboflow --output teacher.csv
    python -m training ... --teacher teacher.csv
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .data import NUM_CLASSES, DataError, Sample
from .validation import photo_probabilities, plan_views, read_probabilities, write_probabilities

TEACHER_PLAN = "full"


def recorded_probabilities(path: str | Path, samples: list[Sample]) -> np.ndarray:
    """(photos, classes): a CSV teacher's rows for these photos, in their order; every photo must be in it, with
    the same label (a label that differs means the CSV was written from other data)."""
    keys, labels, probs = read_probabilities(path)
    row_of = {key: i for i, key in enumerate(keys)}
    missing = [s for s in samples if (s.folder, s.image_id) not in row_of]
    if missing:
        raise DataError(f"teacher {path}: no probabilities for {len(missing)} training photo(s), e.g. "
                        f"{missing[0].folder}/{missing[0].image_id}")
    rows = [row_of[(s.folder, s.image_id)] for s in samples]
    differ = [s for s, row in zip(samples, rows) if labels[row] != s.label]
    if differ:
        raise DataError(f"teacher {path}: {differ[0].folder}/{differ[0].image_id} has another label there")
    return probs[rows]


def teacher_probabilities(teachers: list[str], samples: list[Sample]) -> np.ndarray:
    """(photos, classes): the teachers' mean probabilities on each photo's `full` view."""
    per_teacher = []
    for path in teachers:
        if not Path(path).is_file():
            raise DataError(f"teacher {path}: no such checkpoint")
        if str(path).endswith(".csv"):
            per_teacher.append(recorded_probabilities(path, samples))
            continue
        import keras

        model = keras.saving.load_model(path, compile=False)
        if model.output_shape[-1] != NUM_CLASSES:
            raise DataError(f"teacher {path}: {model.output_shape[-1]} outputs, the student has {NUM_CLASSES} classes")
        crop = int(model.input_shape[1])
        # `full` squeezes the whole photo to the crop, so the short side it is scaled to first does not matter.
        views = plan_views(samples, TEACHER_PLAN, crop, crop)
        per_teacher.append(photo_probabilities(model, views, len(samples)))
        del views, model
    return np.mean(per_teacher, axis=0)


def soft_targets(labels: list[int], teacher: np.ndarray, distill_weight: float) -> np.ndarray:
    """One-hot labels blended with the teachers' probabilities (rows sum to 1)."""
    if not 0.0 < distill_weight <= 1.0:
        raise ValueError(f"distill_weight must be in (0, 1], not {distill_weight}")
    one_hot = np.eye(teacher.shape[1], dtype=np.float32)[np.asarray(labels)]
    return ((1.0 - distill_weight) * one_hot + distill_weight * teacher).astype(np.float32)


def main() -> None:
    import argparse

    from .data import read_kaggle_folder

    parser = argparse.ArgumentParser(description="Record teachers' mean probabilities on every photo of some "
                                                 "data folders, for --teacher FILE.csv.")
    parser.add_argument("teachers", nargs="+", help="teacher checkpoints (.keras)")
    parser.add_argument("--data", action="append", required=True, help="Kaggle-layout folder (repeatable)")
    parser.add_argument("--output", required=True, help="CSV to write")
    args = parser.parse_args()
    try:
        samples = [s for folder in args.data for s in read_kaggle_folder(folder)]
        probs = teacher_probabilities(args.teachers, samples)
    except (DataError, OSError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    write_probabilities(args.output, [(s.folder, s.image_id) for s in samples], [s.label for s in samples], probs)
    agreement = float(np.mean(probs.argmax(1) == np.asarray([s.label for s in samples])))
    print(f"{len(samples)} photos, {len(args.teachers)} teacher(s), top-1 agrees with the labels on {agreement:.1%}: "
          f"{args.output}")


if __name__ == "__main__":
    main()
