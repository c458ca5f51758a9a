"""Knowledge distillation: soft targets for each training photo from one or more teacher checkpoints.

Each teacher scores every training photo the way users classify (the runtime's decoding and its `full` scan, the
plan the shipped model defaults to) at its own input size, so a teacher trained at 512 can teach a 384 student. The
teachers' probabilities are averaged (an ensemble) and blended into the one-hot targets:
``target = (1 - distill_weight) * one_hot + distill_weight * teachers``. Computed once, before the first epoch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .data import NUM_CLASSES, DataError, Sample
from .validation import photo_probabilities, plan_views

TEACHER_PLAN = "full"


def teacher_probabilities(teachers: list[str], samples: list[Sample]) -> np.ndarray:
    """(photos, classes): the teachers' mean probabilities on each photo's `full` view."""
    import keras

    per_teacher = []
    for path in teachers:
        if not Path(path).is_file():
            raise DataError(f"teacher {path}: no such checkpoint")
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
