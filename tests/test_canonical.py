"""The canonical look at inference (training/canonical.py): its premise and the run folders it writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cassava_edge_training import canonical
from cassava_edge_training.looks import roboflow_chain
from cassava_edge_training.oof import Scored, evaluate_runs, read_probabilities

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
needs_data = pytest.mark.skipif(not (DATA / "cassava").is_dir(), reason="needs ../shared/data/cassava (real photos)")


@needs_data
def test_chaining_a_chained_photo_again_changes_it_far_less_than_the_first_chain() -> None:
    """The premise: the Roboflow chain is nearly idempotent, so a runtime that chains every photo sees almost the
    same pixels for an original and for its Roboflow copy."""
    import cv2

    photo = sorted((DATA / "cassava" / "train_images").glob("*.jpg"))[0]
    rgb = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB).astype(np.float32)
    once = roboflow_chain(rgb.astype(np.uint8)).astype(np.float32)
    twice = canonical.chained_twice(rgb.astype(np.uint8)).astype(np.float32)
    first_change, second_change = np.abs(once - rgb).mean(), np.abs(twice - once).mean()
    assert second_change < 0.5 * first_change, (first_change, second_change)


@needs_data
def test_a_canonical_twin_is_a_run_that_training_oof_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The twin's own answers are the run's Roboflow-look ones, and its flip test counts the answers that the
    second chain changes (here two photos, forced, since no checkpoint is loaded)."""
    monkeypatch.chdir(ROOT)  # the runs name their data folders relative to the project root
    run = Path("training/experiments/v3-onelook-320/onelook-fold4")
    chained = read_probabilities(run / "last.full.roboflow-look.probabilities.csv")

    def fake_score(checkpoint: Path, samples: list, short_side: int, look=None) -> Scored:
        assert look is canonical.chained_twice and short_side == 375
        assert [(s.folder, s.image_id) for s in samples] == chained.keys
        probs = chained.probs.copy()
        for row in (0, 1):  # move two answers to the next class
            probs[row] = np.eye(5)[(probs[row].argmax() + 1) % 5]
        return Scored(chained.keys, chained.labels, probs)

    monkeypatch.setattr(canonical, "score_checkpoint", fake_score)
    twin = tmp_path / "onelook-fold4"
    canonical.canonical_run(run, Path("no/such/last.keras"), twin)
    report = evaluate_runs([twin], None, None)
    assert report["oof"]["photos"] == len(chained.keys) == 201
    assert report["oof"]["top1"] == pytest.approx(float(np.mean(chained.probs.argmax(1) == chained.labels)))
    assert report["oof"]["flip_test"]["flipped"] == 2
    assert (twin / "config.json").read_text().count('"canonical_look"') == 1


def test_a_run_without_its_roboflow_look_scores_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="training.oof"):
        canonical.canonical_run(tmp_path, tmp_path / "last.keras", tmp_path / "twin")
