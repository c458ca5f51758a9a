"""`cassava-edge evaluate` on the tiny quadrant model, whose answers are known from a numpy reference."""

from __future__ import annotations

import csv
import itertools
import json
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
