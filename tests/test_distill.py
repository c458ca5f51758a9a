"""Teachers recorded as CSV (training/distill.py): distillation without the teacher checkpoints at hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cassava_edge_training.data import DataError, Sample
from cassava_edge_training.distill import recorded_probabilities, teacher_probabilities
from cassava_edge_training.validation import write_probabilities


def _sample(folder: str, image_id: str, label: int) -> Sample:
    return Sample(path=f"/nowhere/{image_id}", label=label, image_id=image_id, folder=folder)


@pytest.fixture()
def recorded(tmp_path: Path) -> Path:
    path = tmp_path / "teacher.csv"
    keys = [("cassava", "a.jpg"), ("cassava-roboflow", "a.jpg"), ("cassava", "b.jpg")]
    probs = np.asarray([[0.7, 0.1, 0.1, 0.05, 0.05], [0.0, 0.0, 0.2, 0.0, 0.8], [0.1, 0.1, 0.1, 0.6, 0.1]])
    write_probabilities(path, keys, [0, 4, 3], probs)
    return path


def test_rows_follow_the_training_photos_by_folder_and_id(recorded: Path) -> None:
    samples = [_sample("cassava", "b.jpg", 3), _sample("cassava-roboflow", "a.jpg", 4), _sample("cassava", "a.jpg", 0)]
    probs = recorded_probabilities(recorded, samples)
    assert probs.argmax(1).tolist() == [3, 4, 0]
    assert probs[1, 4] == pytest.approx(0.8)


def test_a_csv_teacher_averages_with_others(recorded: Path) -> None:
    samples = [_sample("cassava", "a.jpg", 0)]
    mean = teacher_probabilities([str(recorded), str(recorded)], samples)
    np.testing.assert_allclose(mean, recorded_probabilities(recorded, samples))


def test_a_training_photo_missing_from_the_csv_is_named(recorded: Path) -> None:
    with pytest.raises(DataError, match="cassava/c.jpg"):
        recorded_probabilities(recorded, [_sample("cassava", "a.jpg", 0), _sample("cassava", "c.jpg", 1)])


def test_a_csv_written_from_other_labels_is_refused(recorded: Path) -> None:
    with pytest.raises(DataError, match="another label"):
        recorded_probabilities(recorded, [_sample("cassava", "a.jpg", 2)])
