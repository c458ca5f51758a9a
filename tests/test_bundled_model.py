"""The model shipped in models/: loads by default, says everything about itself, and classifies real photos."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from cassava_edge import Classifier
from cassava_edge.metadata import CASSAVA_LABELS, ModelMetadata
from cassava_edge.modelfile import read_metadata_props
from tests.datapaths import DATA_DIR, needs_data

MODELS = Path(__file__).resolve().parents[1] / "models"
FILES = sorted(MODELS.glob("*.onnx"))

pytestmark = pytest.mark.skipif(not FILES, reason=f"no bundled model in {MODELS}")


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_every_bundled_file_has_complete_metadata(path: Path) -> None:
    meta = ModelMetadata.from_onnx_props(read_metadata_props(path), source=str(path))
    assert meta.labels == CASSAVA_LABELS
    assert meta.crop_size[0] == meta.crop_size[1] >= 128
    assert meta.photo.short_side >= meta.crop_size[0]
    expected_precision = {".int8.onnx": "int8", ".fp16.onnx": "fp16"}.get("".join(path.suffixes[-2:]), "fp32")
    assert meta.precision == expected_precision
    provenance = meta.provenance
    for key in ("training_config", "validation_metrics", "dataset", "checkpoint", "versions", "exported_at", "parity"):
        assert key in provenance, f"{path.name}: provenance lacks {key}"


def test_bundled_files_fit_the_size_budget() -> None:
    """The default model (Model v3: one fp32 Lite2 file with the canonical look) and everything bundled, which
    setup.py packs into one wheel: PyPI refuses files over 100 MB."""
    assert {p.name for p in FILES} == {"cassava-lite2-v3.onnx"}
    assert sum(p.stat().st_size for p in FILES) <= 25 * 1024 * 1024
    everything = sorted(MODELS.rglob("*.onnx"))
    assert {p.parent.name for p in everything} == {"models", "cassava-lite0", "cassava-lite0-512"}
    assert sum(p.stat().st_size for p in everything) <= 90 * 1024 * 1024


@needs_data
def test_default_classifier_classifies_field_photos() -> None:
    classifier = Classifier(provider="cpu")  # no model: the bundled one, int8 on CPU where it ships one
    assert classifier.metadata.precision == ("int8" if any(p.name.endswith(".int8.onnx") for p in FILES) else "fp32")
    assert classifier.tta.name == classifier.metadata.default_tta and classifier.scan == classifier.metadata.default_scan
    with open(DATA_DIR / "field" / "labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    photos = [DATA_DIR / "field" / "images" / row["image_id"] for row in rows[::10]]  # mixed sizes and orientations
    results = list(classifier.classify_many(photos))
    assert [r.source for r in results] == [str(p) for p in photos]
    for result in results:
        assert result.ok, result.error
        assert result.status in ("ok", "uncertain", "not_cassava")
        assert (result.label in CASSAVA_LABELS) if result.status == "ok" else result.label is None
        assert result.top_k[0][0] in CASSAVA_LABELS
        assert math.isclose(sum(result.probabilities.values()), 1.0, abs_tol=1e-5)
        assert result.confidence == max(result.probabilities.values())
    # A real model, not a constant: the photos do not all get the same probabilities.
    assert len({round(r.confidence, 4) for r in results}) > 1
