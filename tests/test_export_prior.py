"""`python -m export.prior`: the deployment prior's class bias written into a model's calibration."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cassava_edge.metadata import CASSAVA_LABELS, CLASS_BIAS_SCHEMA_VERSION
from cassava_edge_training.oof import KAGGLE_COUNTS

pytest.importorskip("onnx")

from cassava_edge_export.onnxfile import read_metadata  # noqa: E402
from cassava_edge_export.prior import main  # noqa: E402


def _report(path: Path, bias: dict[str, float], **fit: float) -> Path:
    path.write_text(json.dumps({"kaggle_prior": KAGGLE_COUNTS, "prior_fit": {"temperature": 0.7, "bias": bias, **fit}}))
    return path


def test_the_bias_and_its_prior_go_into_the_calibration(tiny_model: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    model = shutil.copy(tiny_model, tmp_path / "model.onnx")
    bias = {"CBB": -0.6, "CBSD": 0.1, "CGM": 0.05, "CMD": 1.2, "Healthy": -0.75}
    assert main([str(model), "--report", str(_report(tmp_path / "full.json", bias))]) == 0
    meta = read_metadata(Path(model))
    assert meta.calibration.class_bias == pytest.approx(tuple(bias[label] for label in CASSAVA_LABELS))
    assert meta.calibration.prior.startswith("Kaggle 2020 label counts (CBB 1087") and "power" not in meta.calibration.prior
    assert meta.schema_version >= CLASS_BIAS_SCHEMA_VERSION
    assert "class bias" in capsys.readouterr().out

    # A prior at a strength below 1 (training.paired --prior-strength) is named with it.
    assert main([str(model), "--report", str(_report(tmp_path / "part.json", bias, strength=0.75))]) == 0
    assert read_metadata(Path(model)).calibration.prior.endswith("to the power 0.75")


def test_a_report_without_a_fit_is_one_line_and_changes_nothing(tiny_model: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    model = shutil.copy(tiny_model, tmp_path / "model.onnx")
    before = Path(model).read_bytes()
    empty = tmp_path / "empty.json"
    empty.write_text("{}")
    assert main([str(model), "--report", str(empty)]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert Path(model).read_bytes() == before
