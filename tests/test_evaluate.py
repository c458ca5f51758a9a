"""`cassava-edge evaluate` on the tiny quadrant model, whose answers are known from a numpy reference."""

from __future__ import annotations

import csv
import itertools
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from cassava_edge.cli import cli
from cassava_edge.metrics import classification_report, confusion_matrix
from tests import tinymodel
from tests.datapaths import needs_data


@pytest.fixture(scope="module")
def labelled_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int], list[int]]:
    """A Kaggle-layout folder of quadrant images (PNG: lossless, so the model sees exactly these pixels), labelled
    with the model's own answer except every third photo, whose label is shifted by one; plus one corrupt file."""
    root = tmp_path_factory.mktemp("labelled")
    (root / "train_images").mkdir()
    truth, predicted, rows = [], [], []
    levels = list(itertools.permutations((20, 90, 160, 230)))[:12]
    for i, level in enumerate(levels):
        image = tinymodel.quadrant_image(32, level)
        expected = int(tinymodel.reference_probs(image[None].astype(np.float32)).argmax())
        label = expected if i % 3 else (expected + 1) % 5
        name = f"q{i:02d}.png"
        ok, data = cv2.imencode(".png", image[:, :, ::-1])
        assert ok
        (root / "train_images" / name).write_bytes(data.tobytes())
        truth.append(label)
        predicted.append(expected)
        rows.append((name, label))
    (root / "train_images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    rows.append(("broken.png", 0))
    with (root / "train.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([("image_id", "label"), *rows])
    return root, truth, predicted


def test_metrics_on_a_hand_computed_case() -> None:
    truth, pred = [0, 0, 1, 1, 1, 2], [0, 1, 1, 1, 0, 2]
    report = classification_report(truth, pred, ["a", "b", "c"])
    assert confusion_matrix(truth, pred, 3).tolist() == [[1, 1, 0], [1, 2, 0], [0, 0, 1]]
    assert report["accuracy"] == pytest.approx(4 / 6)
    assert report["per_class"]["b"]["recall"] == pytest.approx(2 / 3)
    assert report["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert report["per_class"]["a"]["f1"] == pytest.approx(0.5)
    assert report["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 1) / 3)
    assert report["confusion_normalised"][1] == pytest.approx([1 / 3, 2 / 3, 0], abs=1e-4)  # rounded to 4 places


def test_evaluate_reports_known_answers(labelled_folder, tiny_model: Path, tmp_path: Path) -> None:
    root, truth, predicted = labelled_folder
    report_path, heatmap = tmp_path / "report.json", tmp_path / "confusion.png"
    result = CliRunner().invoke(
        cli,
        ["evaluate", str(root), "--model", str(tiny_model), "--tta", "none", "--scan", "full", "--provider", "cpu",
         "--json", str(report_path), "--heatmap", str(heatmap)],
    )
    assert result.exit_code == 1, result.output  # the broken photo is counted and named, not fatal
    assert "broken.png" in result.output
    report = json.loads(report_path.read_text())
    assert report["count"] == len(truth)
    assert report["confusion"] == confusion_matrix(truth, predicted, 5).tolist()
    assert report["accuracy"] == pytest.approx(np.mean(np.array(truth) == np.array(predicted)))
    assert [f["source"].endswith("broken.png") for f in report["failed"]] == [True]
    assert f"accuracy {report['accuracy']:.4f}" in result.output
    image = cv2.imdecode(np.fromfile(heatmap, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[0] > 300


def test_evaluate_ids_restrict_the_photos(labelled_folder, tiny_model: Path, tmp_path: Path) -> None:
    root, truth, predicted = labelled_folder
    ids = tmp_path / "ids.txt"
    ids.write_text("q01.png\nq02.png\n")  # both labelled with the model's own answer
    result = CliRunner().invoke(cli, ["evaluate", str(root), "--model", str(tiny_model), "--tta", "none",
                                      "--scan", "full", "--ids", str(ids)])
    assert result.exit_code == 0, result.output
    assert "photos 2  accuracy 1.0000" in result.output


def test_evaluate_without_labels_is_a_usage_error(tmp_path: Path, tiny_model: Path) -> None:
    result = CliRunner().invoke(cli, ["evaluate", str(tmp_path), "--model", str(tiny_model)])
    assert result.exit_code == 2
    assert "no labels found" in result.output and "Traceback" not in result.output


@needs_data
def test_evaluate_reads_the_field_layout(tiny_model: Path) -> None:
    from tests.datapaths import DATA_DIR

    result = CliRunner().invoke(cli, ["evaluate", str(DATA_DIR / "field"), "--model", str(tiny_model),
                                      "--tta", "none", "--scan", "center"])
    assert result.exit_code == 0, result.output
    assert "photos 51 " in result.output


# -- statuses, calibration and coverage (issue 10) ------------------------------------------------------------------

TRUST_PHOTOS = {  # name: (grey level or colour, true label index)
    "right.png": ((255, 255, 255), 3),  # CMD at 0.88, right
    "wrong.png": ((255, 255, 255), 0),  # CMD at 0.88, wrong
    "tie.png": ((16, 16, 16), 4),  # CMD and Healthy at 0.23: uncertain
    "blue.png": ((0, 0, 255), 3),  # not cassava
}


@pytest.fixture(scope="module")
def trust_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A trust model (min confidence 0.5, min short side 64) and a Kaggle-layout folder of uniform PNG photos, with
    one photo too small to judge."""
    root = tmp_path_factory.mktemp("trust")
    model = tinymodel.write_trust_model(root / "trust.onnx", min_confidence=0.5, min_short_side=64)
    (root / "train_images").mkdir()
    rows = [("image_id", "label"), ("small.png", 1)]
    for name, (rgb, label) in TRUST_PHOTOS.items():
        cv2.imwrite(str(root / "train_images" / name), np.full((64, 64, 3), rgb[::-1], np.uint8))
        rows.append((name, label))
    cv2.imwrite(str(root / "train_images" / "small.png"), np.zeros((30, 40, 3), np.uint8))
    with (root / "train.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return root, model


def test_evaluate_reports_statuses_calibration_and_coverage(trust_folder: tuple[Path, Path]) -> None:
    from cassava_edge import Classifier
    from cassava_edge.calibration import expected_calibration_error
    from cassava_edge.evaluate import evaluate
    from cassava_edge.labelled import read_labelled

    root, model = trust_folder
    report = evaluate(Classifier(model, provider="cpu"), read_labelled(root))
    assert report.status_counts == {"ok": 2, "uncertain": 1, "not_cassava": 1, "failed": 1}
    assert [Path(f["source"]).name for f in report.failed] == ["small.png"]
    assert report.answered is not None
    assert (report.answered.coverage, report.answered.accuracy, report.answered.answered) == (0.5, 0.5, 2)
    # Every view of a uniform photo is the same crop: the reference probabilities are the photo's.
    names = [name for name in TRUST_PHOTOS]
    probs = np.concatenate([tinymodel.reference_probs(np.full((1, 32, 32, 3), TRUST_PHOTOS[n][0], np.float32))
                            for n in names])
    labels = np.array([TRUST_PHOTOS[n][1] for n in names])
    assert report.calibration_error == pytest.approx(expected_calibration_error(probs, labels), abs=1e-5)
    assert report.metrics["accuracy"] == pytest.approx(0.5)  # top-1 of all classified photos, whatever the status
    assert [p.target_coverage for p in report.coverage] == [0.5, 0.8, 0.9, 1.0]
    assert report.coverage[0].accuracy == pytest.approx(0.5) and report.coverage[-1].answered == 4
    data = json.loads(json.dumps(report.to_dict()))
    assert data["count"] == 4 and data["min_confidence"] == 0.5 and data["temperature"] is None
    assert sum(data["reliability"]["counts"]) == 4


def test_evaluate_command_draws_the_trust_plots(trust_folder: tuple[Path, Path], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the plots are drawn with matplotlib")
    root, model = trust_folder
    calibration, curve = tmp_path / "calibration.png", tmp_path / "risk.png"
    result = CliRunner().invoke(cli, ["evaluate", str(root), "--model", str(model), "--provider", "cpu",
                                      "--calibration-plot", str(calibration), "--risk-coverage-plot", str(curve)])
    assert result.exit_code == 1, result.output  # the photo too small to judge
    assert "statuses: 2 ok, 1 uncertain, 1 not_cassava, 1 failed" in result.output
    assert "ok photos at min confidence 0.500: coverage 50.0%, accuracy 50.0%" in result.output
    for path in (calibration, curve):
        image = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape[0] > 300


def test_evaluate_min_confidence_overrides_the_model(trust_folder: tuple[Path, Path]) -> None:
    root, model = trust_folder
    result = CliRunner().invoke(cli, ["evaluate", str(root), "--model", str(model), "--min-confidence", "0"])
    assert "statuses: 3 ok, 0 uncertain, 1 not_cassava, 1 failed" in result.output, result.output


def test_plots_without_matplotlib_are_refused_before_the_run(
    trust_folder: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what `import matplotlib` sees when it is not installed
    root, model = trust_folder
    result = CliRunner().invoke(cli, ["evaluate", str(root), "--model", str(model),
                                      "--calibration-plot", str(tmp_path / "c.png")])
    assert result.exit_code == 2
    assert "drawing --calibration-plot needs matplotlib: pip install matplotlib" in result.output
    assert "statuses" not in result.output and "Traceback" not in result.output
