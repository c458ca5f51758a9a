"""The shipped model against its own model card: accuracy on the validation ids, and the status of each kind of
photo (a cassava leaf, photos that are not cassava leaves, photos too small to judge).

These fail when the model files or the preprocessing change what users get.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from cassava_edge import Classifier
from cassava_edge.labelled import read_ids, read_labelled
from tests.datapaths import DATA_DIR, needs_data

MODELS = Path(__file__).resolve().parents[1] / "models"
CARD = MODELS / "README.md"
# One validation photo: the same files on another x86 CPU may round a near-tie the other way, nothing more.
TOLERANCE_PHOTOS = 1

pytestmark = [
    pytest.mark.skipif(not any(MODELS.glob("*.onnx")), reason=f"no bundled model in {MODELS}"),
    needs_data,
]


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier(provider="cpu")  # the bundled model, its default variant and plan


@pytest.fixture(scope="module")
def validation_results(classifier: Classifier) -> tuple[np.ndarray, np.ndarray, list]:
    photos = read_labelled(DATA_DIR / "cassava", ids=read_ids(MODELS / "validation_ids.txt"))
    results = list(classifier.classify_many([p.path for p in photos]))
    probs = np.array([[r.probabilities[label] for label in classifier.labels] for r in results])
    return probs, np.array([p.label for p in photos]), results


def test_default_plan_reproduces_the_model_card(classifier: Classifier, validation_results) -> None:
    probs, labels, results = validation_results
    assert all(r.error is None for r in results)
    expected = classifier.metadata.provenance["trust"]["validation"]
    assert (expected["scan"], expected["tta"]) == (classifier.scan, classifier.tta.name)
    assert expected["photos"] == len(labels)
    right = int((probs.argmax(1) == labels).sum())
    assert abs(right - round(expected["accuracy"] * len(labels))) <= TOLERANCE_PHOTOS
    for index, label in enumerate(classifier.labels):
        members = labels == index
        recall = float((probs[members].argmax(1) == index).mean())
        assert abs(recall - expected["recall"][label]) <= TOLERANCE_PHOTOS / members.sum() + 1e-9, label
    # The model card states the same figure the file carries.
    card = CARD.read_text(encoding="utf-8")
    assert f"{expected['accuracy'] * 100:.1f}%" in card, "models/README.md does not state the file's accuracy"


def test_ok_answers_meet_the_card_coverage(classifier: Classifier, validation_results) -> None:
    probs, labels, results = validation_results
    trust = classifier.metadata.provenance["trust"]
    ok = np.array([r.status == "ok" for r in results])
    assert abs(ok.mean() - trust["ok_coverage"]) <= TOLERANCE_PHOTOS / len(ok) + 1e-9
    statuses = {r.status for r in results}
    assert statuses <= {"ok", "uncertain", "not_cassava"}
    assert np.mean([r.status == "not_cassava" for r in results]) <= 0.02  # issue 10's ceiling for real cassava


def _not_cassava(kinds: tuple[str, ...], per_kind: int) -> list[Path]:
    with open(DATA_DIR / "not-cassava" / "SOURCES.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [DATA_DIR / "not-cassava" / "images" / row["file"] for kind in kinds
            for row in [r for r in rows if r["category"].split()[0] == kind][:per_kind]]


def test_photos_that_are_not_cassava_leaves_get_no_diagnosis(classifier: Classifier) -> None:
    photos = _not_cassava(("cat", "car", "person", "airplane", "flower"), per_kind=3)
    results = list(classifier.classify_many(photos))
    assert all(r.status in ("not_cassava", "uncertain") for r in results), \
        [(r.source, r.status, r.not_cassava_score) for r in results if r.status not in ("not_cassava", "uncertain")]
    assert all(r.label is None for r in results)  # no diagnosis …
    assert all(len(r.top_k) >= 1 and r.probabilities for r in results)  # … but the probabilities stay


def test_a_clear_cassava_photo_is_ok(classifier: Classifier, validation_results) -> None:
    _, labels, results = validation_results
    confident = [r for r, label in zip(results, labels) if r.status == "ok" and r.label_index == label]
    assert confident, "no validation photo is answered ok and right"
    again = classifier.classify(confident[0].source)
    assert (again.status, again.label) == ("ok", confident[0].label)


@pytest.mark.parametrize("size", [1, 8, 40])
def test_photos_too_small_to_judge_fail_naming_their_size(classifier: Classifier, size: int) -> None:
    ok, png = cv2.imencode(".png", np.full((size, size, 3), 90, np.uint8))
    assert ok
    result = next(iter(classifier.classify_many([png.tobytes()])))
    assert result.status == "failed"
    assert re.search(rf"\b{size}x{size}\b", result.error or ""), result.error
