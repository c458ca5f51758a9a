"""The canonical look (cassava_edge.looks, metadata schema 4): a model that asks for it gets every photo re-encoded
the same way before its crops are cut; the metadata says so, and a runtime that cannot do it refuses the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cassava_edge.classifier import Classifier
from cassava_edge.errors import ModelError
from cassava_edge.looks import ROBOFLOW_QUALITY, ROBOFLOW_SIDE, Look, jpeg, look_named, roboflow_chain
from cassava_edge.metadata import LOOK_SCHEMA_VERSION, ModelMetadata
from tests import tinymodel


def _photo(seed: int = 0, size: int = 96) -> np.ndarray:
    """Blocks of random colours with sharp edges, which JPEG and the squeeze change visibly."""
    blocks = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return np.ascontiguousarray(np.kron(blocks, np.ones((size // 8, size // 8, 1), np.uint8)))


def test_the_chain_squeezes_encodes_and_restores_the_size() -> None:
    photo = _photo(size=64)[:48]  # 64 wide, 48 high: 4:3 like a Kaggle original
    chained = roboflow_chain(photo)
    assert chained.shape == photo.shape and chained.dtype == np.uint8
    assert 0 < np.abs(chained.astype(int) - photo).mean() < 40  # changed, still the same picture
    assert np.array_equal(Look().apply(photo), chained)  # the metadata's defaults are the chain's
    assert Look(quality=30).apply(photo).tolist() != chained.tolist()
    assert np.abs(jpeg(photo, 95).astype(int) - photo).mean() < np.abs(jpeg(photo, 20).astype(int) - photo).mean()


def test_training_shares_the_runtime_chain() -> None:
    looks = pytest.importorskip("cassava_edge_training.looks", reason="the training package is not installed")
    assert looks.roboflow_chain is roboflow_chain and looks.jpeg is jpeg
    assert (looks.ROBOFLOW_QUALITY, looks.ROBOFLOW_SIDE) == (ROBOFLOW_QUALITY, ROBOFLOW_SIDE)


def test_look_names_and_bad_values() -> None:
    assert look_named("none") is None and look_named("roboflow") == Look()
    with pytest.raises(ValueError, match="unknown look 'instagram'"):
        look_named("instagram")
    assert Look().problems() == []
    assert "kind 'sepia' is unknown" in " ".join(Look(kind="sepia").problems())
    assert "quality" in " ".join(Look(quality=0).problems()) and "side" in " ".join(Look(side=2).problems())


def test_metadata_round_trips_the_look_at_schema_4() -> None:
    meta = tinymodel.metadata_for(32, look=Look(side=320, quality=60))
    assert meta.schema_version == LOOK_SCHEMA_VERSION
    props = meta.to_onnx_props()
    assert json.loads(props["cassava_edge.look"]) == {"kind": "roboflow", "side": 320, "quality": 60}
    assert ModelMetadata.from_onnx_props(props) == meta
    plain = tinymodel.metadata_for(32)
    assert plain.schema_version == 2 and "cassava_edge.look" not in plain.to_onnx_props()  # older runtimes read it
    assert ModelMetadata.from_onnx_props(plain.to_onnx_props()).look is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"cassava_edge.schema_version": "3"}, "look needs metadata schema version 4"),
        ({"cassava_edge.look": json.dumps({"kind": "sepia", "side": 640, "quality": 75})}, "kind 'sepia' is unknown"),
        ({"cassava_edge.look": json.dumps({"kind": "roboflow", "side": 640, "quality": 101})}, "look quality"),
        ({"cassava_edge.look": json.dumps({"kind": "roboflow", "blur": 2})}, "malformed metadata"),
    ],
)
def test_metadata_with_a_look_this_runtime_cannot_apply_is_refused(change: dict[str, str], message: str) -> None:
    props = {**tinymodel.metadata_for(32, look=Look()).to_onnx_props(), **change}
    with pytest.raises(ModelError, match=message):
        ModelMetadata.from_onnx_props(props)


@pytest.fixture(scope="module")
def look_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 32x32 quadrant model, photo short side 32, asking for the canonical look."""
    meta = tinymodel.metadata_for(32, default_scan="full", default_tta="none", look=Look())
    return tinymodel.write_model(tmp_path_factory.mktemp("look") / "look32.onnx", metadata=meta)


def test_the_classifier_gives_every_photo_the_models_look(look_model: Path) -> None:
    with_look = Classifier(look_model, provider="cpu")
    without = Classifier(look_model, provider="cpu", look=False)
    assert with_look.look == Look() and without.look is None
    for seed in range(3):
        photo = _photo(seed)
        got = with_look.classify(photo).probabilities
        assert got == pytest.approx(without.classify(roboflow_chain(photo)).probabilities, abs=1e-6)
        assert got != pytest.approx(without.classify(photo).probabilities, abs=1e-4)
    # Through the batch path too, and the size checks still judge the photo the user took.
    many = list(with_look.classify_many([_photo(0), _photo(1)]))
    assert many[0].probabilities == pytest.approx(with_look.classify(_photo(0)).probabilities, abs=1e-6)


def test_info_names_the_look(look_model: Path, tiny_model: Path) -> None:
    from cassava_edge.commands.info import describe

    lines = dict(describe(Classifier(look_model, provider="cpu").info()))
    assert lines["look"].startswith("every photo first roboflow-encoded: squeezed to 640x640, JPEG q75")
    assert "turned off" in dict(describe(Classifier(look_model, provider="cpu", look=False).info()))["look"]
    assert dict(describe(Classifier(tiny_model, provider="cpu").info()))["look"].startswith("none")
