"""Metadata schema 2 and the status of each result (ok / uncertain / not_cassava / failed) with tiny models.

The trust model (tests/tinymodel.py) answers a uniform photo from its grey level alone, and calls a photo "not
cassava" from how much bluer than green it is, so every status below is computed from numpy references.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from click.testing import CliRunner

from cassava_edge import Classifier
from cassava_edge.calibration import apply_temperature, sigmoid
from cassava_edge.cli import cli
from cassava_edge.errors import ImageError, ModelError, OptionError
from cassava_edge.metadata import Calibration, ModelMetadata, Trust
from cassava_edge.results import Classification
from cassava_edge.session import OnnxSession
from tests import tinymodel

MIN_SHORT_SIDE = 64


def _uniform(rgb: tuple[int, int, int], size: tuple[int, int] = (64, 64)) -> np.ndarray:
    width, height = size
    return np.full((height, width, 3), rgb, np.uint8)


# Grey 255: CMD at 0.88. Grey 16: CMD and Healthy tie at 0.23 (logits 5x and 0.3 + 0.2x at x = 16/255 ~ 1/16).
# Pure blue: not-cassava logit 12 - 2 = 10.
CONFIDENT, TIE, BLUE = _uniform((255, 255, 255)), _uniform((16, 16, 16)), _uniform((0, 0, 255))


def _reference(photo: np.ndarray, temperature: float = 1.0) -> tuple[np.ndarray, float]:
    """Calibrated probabilities and not-cassava score of a uniform photo (every crop and view is the same)."""
    crop = photo[:32, :32][None].astype(np.float64)
    probs = apply_temperature(tinymodel.reference_probs(crop), temperature)[0]
    return probs, float(sigmoid(tinymodel.reference_not_cassava_logits(crop)[0]))


@pytest.fixture(scope="module")
def trust_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tinymodel.write_trust_model(
        tmp_path_factory.mktemp("trust") / "trust.onnx", min_confidence=0.5, min_short_side=MIN_SHORT_SIDE
    )


# -- metadata ------------------------------------------------------------------------------------------------------


def test_version_2_round_trip() -> None:
    trust = Trust(min_confidence=0.6, min_short_side=64, not_cassava_output="not_cassava_logit",
                  not_cassava_threshold=0.4)
    meta = tinymodel.metadata_for(calibration=Calibration(temperature=1.7), trust=trust)
    props = meta.to_onnx_props()
    assert json.loads(props["cassava_edge.schema_version"]) == 2
    assert json.loads(props["cassava_edge.calibration"]) == {"method": "temperature", "temperature": 1.7}
    assert ModelMetadata.from_onnx_props(props) == meta


def test_version_1_is_read_without_calibration_or_trust() -> None:
    meta = ModelMetadata.from_onnx_props(tinymodel.version_1_props())
    assert meta.schema_version == 1 and meta.calibration is None and meta.trust is None
    assert meta.labels == tinymodel.metadata_for().labels


@pytest.mark.parametrize(
    "version, message",
    [
        ("5", "schema version 5 is newer than this cassava-edge reads (1-4); upgrade cassava-edge"),
        ("0", "schema version 0 is not supported (this cassava-edge reads 1-4); re-export the model"),
        ('"2"', "schema version '2' is not supported"),
    ],
)
def test_other_versions_are_refused(version: str, message: str) -> None:
    props = tinymodel.metadata_for().to_onnx_props()
    props["cassava_edge.schema_version"] = version
    with pytest.raises(ModelError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ModelMetadata.from_onnx_props(props, source="m.onnx")


@pytest.mark.parametrize(
    "entries, message",
    [
        ({"cassava_edge.trust": '{"min_confidence": 1.5, "min_short_side": 64}'}, "min_confidence must be within"),
        ({"cassava_edge.trust": '{"min_confidence": "high"}'}, "min_confidence must be within"),
        ({"cassava_edge.trust": '{"min_short_side": 0}'}, "min_short_side must be"),
        ({"cassava_edge.trust": '{"not_cassava_output": "x"}'}, "must be given together"),
        ({"cassava_edge.trust": '{"not_cassava_output": "x", "not_cassava_threshold": 2}'}, "threshold must be"),
        ({"cassava_edge.trust": '{"minimum": 0.5}'}, "malformed metadata"),
        ({"cassava_edge.calibration": '{"temperature": -1}'}, "temperature must be a positive number"),
        ({"cassava_edge.calibration": '{"method": "isotonic", "temperature": 1}'}, "method 'isotonic' is unknown"),
        ({"cassava_edge.calibration": '{"temperature": 2}', "cassava_edge.schema_version": "1"}, "need metadata schema"),
        ({"cassava_edge.calibration": '{"temperature": 1, "class_bias": [0, 0, 0, 0, 1]}'}, "needs metadata schema version 3"),
        ({"cassava_edge.calibration": '{"temperature": 1, "class_bias": [0, 1]}', "cassava_edge.schema_version": "3"},
         "class_bias has 2 numbers for 5 labels"),
    ],
)
def test_malformed_trust_metadata_is_refused(entries: dict[str, str], message: str) -> None:
    props = {**tinymodel.metadata_for().to_onnx_props(), **entries}
    with pytest.raises(ModelError, match=message):
        ModelMetadata.from_onnx_props(props, source="m.onnx")


# -- the session's not-cassava output -------------------------------------------------------------------------------


def test_session_runs_the_not_cassava_output_in_the_same_calls(trust_model: Path, run_calls: list[int]) -> None:
    session = OnnxSession(trust_model, provider="cpu", chunk_size=3)
    batch = np.random.default_rng(1).uniform(0, 255, (7, 32, 32, 3)).astype(np.float32)
    probs, logits = session.run_all(batch)
    assert run_calls == [3, 3, 1]
    np.testing.assert_allclose(probs, tinymodel.reference_probs(batch), atol=1e-5)
    assert logits is not None and logits.shape == (7,)
    np.testing.assert_allclose(logits, tinymodel.reference_not_cassava_logits(batch), atol=1e-4)
    np.testing.assert_allclose(session.run(batch), probs)
    empty_probs, empty_logits = session.run_all(batch[:0])
    assert empty_probs.shape == (0, 5) and empty_logits is not None and empty_logits.shape == (0,)


def test_a_model_without_not_cassava_output_gives_none(tiny_model: Path) -> None:
    session = OnnxSession(tiny_model, provider="cpu")
    assert session.not_cassava_name is None and session.run_all(np.zeros((2, 32, 32, 3), np.float32))[1] is None


@pytest.mark.parametrize(
    "output, message",
    [
        ("not_cassava_logit", "no not-cassava output named 'not_cassava_logit'"),
        ("probabilities", r"not-cassava output shape \[batch, 5\] is not \[batch, 1\]"),
    ],
)
def test_a_missing_or_misshapen_not_cassava_output_is_refused(tmp_path: Path, output: str, message: str) -> None:
    meta = tinymodel.metadata_for(trust=Trust(0.5, 64, output, 0.5))
    path = tinymodel.write_model(tmp_path / "bad.onnx", metadata=meta)  # a model without the output
    with pytest.raises(ModelError, match=message):
        OnnxSession(path, provider="cpu")


# -- statuses ------------------------------------------------------------------------------------------------------


def test_a_confident_cassava_photo_is_ok(trust_model: Path) -> None:
    result = Classifier(trust_model, provider="cpu").classify(CONFIDENT)
    probs, score = _reference(CONFIDENT)
    assert result.status == "ok" and result.label == "CMD" and result.label_index == 3
    assert result.confidence == pytest.approx(probs.max(), abs=1e-5) and result.confidence > 0.5
    assert result.not_cassava_score == pytest.approx(score, abs=1e-5) and score < 0.5


def test_a_near_tie_is_uncertain_but_keeps_its_probabilities(trust_model: Path) -> None:
    result = Classifier(trust_model, provider="cpu").classify(TIE)
    probs, _ = _reference(TIE)
    (first, p1), (second, p2) = result.top_k[:2]
    assert {first, second} == {"CMD", "Healthy"} and abs(p1 - p2) < 0.01  # a toss-up
    assert result.status == "uncertain" and result.label is None and result.label_index is None
    assert result.confidence == pytest.approx(probs.max(), abs=1e-5) and result.confidence < 0.5
    np.testing.assert_allclose(list(result.probabilities.values()), probs, atol=1e-5)
    assert result.ok  # classified, not failed


def test_a_blue_photo_is_not_cassava(trust_model: Path) -> None:
    result = Classifier(trust_model, provider="cpu").classify(BLUE)
    _, score = _reference(BLUE)
    assert result.status == "not_cassava" and result.label is None
    assert result.not_cassava_score == pytest.approx(score, abs=1e-5) and score > 0.99
    assert len(result.top_k) == 3 and sum(result.probabilities.values()) == pytest.approx(1.0)


def test_a_photo_too_small_to_judge_fails_with_its_size(trust_model: Path) -> None:
    classifier = Classifier(trust_model, provider="cpu")
    with pytest.raises(ImageError, match=r"40x30 px is too small to judge \(shorter side under 64 px\)"):
        classifier.classify(_uniform((255, 255, 255), (40, 30)))
    results = list(classifier.classify_many([CONFIDENT, _uniform((200, 200, 200), (64, 63)), BLUE, TIE]))
    assert [r.status for r in results] == ["ok", "failed", "not_cassava", "uncertain"]
    assert results[1].error is not None and "64x63 px is too small" in results[1].error
    assert results[1].to_dict()["status"] == "failed" and not results[1].ok


def test_min_confidence_overrides_the_model(trust_model: Path) -> None:
    strict = Classifier(trust_model, provider="cpu", min_confidence=0.95)
    assert strict.classify(CONFIDENT).status == "uncertain"
    lenient = Classifier(trust_model, provider="cpu", min_confidence=0.0)
    assert lenient.classify(TIE).status == "ok" and lenient.classify(TIE).label in ("CMD", "Healthy")
    assert lenient.classify(BLUE).status == "not_cassava"  # not-cassava goes before the confidence
    assert (strict.info()["min_confidence"], Classifier(trust_model, provider="cpu").info()["min_confidence"]) == (
        0.95, 0.5)
    for bad in (-0.1, 1.5):
        with pytest.raises(OptionError, match="min_confidence must be within 0..1"):
            Classifier(trust_model, provider="cpu", min_confidence=bad)


def test_calibration_is_applied_after_averaging(tmp_path: Path) -> None:
    path = tinymodel.write_trust_model(tmp_path / "warm.onnx", temperature=2.0, min_confidence=0.0)
    photo = tinymodel.quadrant_image(32)  # four levels: each flip view gets other probabilities
    classifier = Classifier(path, provider="cpu", tta="flip", scan="full")
    result = classifier.classify(photo, return_views=True)
    assert result.views is not None
    views = np.array([view.probabilities for view in result.views])
    np.testing.assert_allclose(views.mean(axis=0).sum(), 1.0, atol=1e-5)
    expected = apply_temperature(views.mean(axis=0, keepdims=True), 2.0)[0]
    np.testing.assert_allclose(list(result.probabilities.values()), expected, atol=1e-5)
    assert result.confidence == pytest.approx(expected.max(), abs=1e-5) and expected.max() < views.mean(0).max()


def test_a_version_1_model_answers_ok_unless_asked_for_a_minimum(tiny_model: Path) -> None:
    photo = _uniform((16, 16, 16), (2, 2))  # no minimum size for a v1 model
    result = Classifier(tiny_model, provider="cpu").classify(photo)
    assert result.status == "ok" and result.label is not None and result.not_cassava_score is None
    assert Classifier(tiny_model, provider="cpu", min_confidence=0.5).classify(photo).status == "uncertain"


def test_status_is_in_to_dict_and_checked() -> None:
    failed = Classification.failed("x.jpg", "unreadable")
    assert failed.status == "failed" and failed.to_dict()["status"] == "failed"
    assert failed.to_dict()["not_cassava_score"] is None
    with pytest.raises(ValueError, match="status must be one of"):
        Classification("x", None, None, None, {}, [], status="maybe")


def test_classify_command_takes_min_confidence(trust_model: Path, tmp_path: Path) -> None:
    photo = tmp_path / "grey.png"
    cv2.imwrite(str(photo), CONFIDENT)
    statuses = []
    for minimum in ("0.5", "0.95"):
        run = CliRunner().invoke(cli, ["classify", str(photo), "--model", str(trust_model), "--format", "jsonl",
                                       "--min-confidence", minimum])
        assert run.exit_code == 0, run.output
        statuses.append(json.loads(run.stdout.splitlines()[0])["status"])
    assert statuses == ["ok", "uncertain"]


def test_a_class_bias_round_trips_in_schema_3_and_moves_the_answers(tmp_path: Path) -> None:
    """The deployment-prior bias: written as schema 3, read back, applied after the temperature."""
    bias = (0.0, 0.0, 0.0, 0.0, 3.0)
    calibration = Calibration(temperature=1.5, class_bias=bias, prior="test prior")
    meta = dataclasses.replace(tinymodel.metadata_for(calibration=calibration), schema_version=3)
    assert ModelMetadata.from_onnx_props(meta.to_onnx_props()) == meta
    plain = tinymodel.write_model(tmp_path / "plain.onnx",
                                  metadata=tinymodel.metadata_for(calibration=Calibration(temperature=1.5)))
    biased = tinymodel.write_model(tmp_path / "biased.onnx", metadata=meta)
    photo = tinymodel.quadrant_image(64)
    before = Classifier(model=plain, tta="none", scan="center").classify(photo)
    after = Classifier(model=biased, tta="none", scan="center").classify(photo)
    expected = apply_temperature(np.asarray([list(before.probabilities.values())]), 1.0, bias)[0]
    assert np.allclose(list(after.probabilities.values()), expected, atol=1e-6)
    assert after.probabilities["Healthy"] > before.probabilities["Healthy"]
