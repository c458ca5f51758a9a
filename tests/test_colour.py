"""Photos without usable colour (grayscale, nearly uniform, washed out) fail with the reason under a model whose
trust settings carry the colour check (the bundled ones do), instead of getting a confident diagnosis; colour
photos are not flagged; models without the setting check nothing. The doctored photos are made here, from a
synthetic leaf and, where ../shared/data is present, from real photos."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from cassava_edge import Classifier, ImageError
from cassava_edge.colour import DEFAULT_CHECK, colour_problem
from cassava_edge.errors import ModelError, OptionError
from cassava_edge.imaging import load_image
from cassava_edge.metadata import ColourCheck, ModelMetadata, Trust
from cassava_edge.modelfile import read_metadata_props
from tests import tinymodel
from tests.datapaths import DATA_DIR, needs_data

REPO = Path(__file__).resolve().parents[1]
BUNDLED = sorted((REPO / "models").rglob("*.onnx"))
PHOTO_FOLDERS = ("cassava", "cassava-more", "cassava-roboflow", "icassava2019", "field")
EVERY_NTH = 5  # a fifth of each folder keeps the test short; cassava_edge/colour.py gives the figures for all


def synthetic_leaf(seed: int = 0) -> np.ndarray:
    """A 600x800 RGB photo with what a leaf photo has: a green leaf with yellow patches on dark soil, with noise."""
    rng = np.random.default_rng(seed)
    rgb = np.zeros((600, 800, 3), np.uint8)
    rgb[:] = (70, 50, 35)  # soil
    cv2.ellipse(rgb, (400, 300), (330, 220), 20, 0, 360, (60, 140, 45), -1)  # the leaf
    for _ in range(12):  # mosaic-like yellow patches
        centre = (int(rng.integers(200, 600)), int(rng.integers(150, 450)))
        cv2.circle(rgb, centre, int(rng.integers(15, 45)), (190, 180, 60), -1)
    noise = rng.normal(0, 12, rgb.shape)
    return np.clip(rgb + noise, 0, 255).astype(np.uint8)


def grayscale(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)


def jpeg(rgb: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return data.tobytes()


def half_opacity_over_white_png(rgb: np.ndarray) -> bytes:
    """The photo as a PNG whose alpha is 50% everywhere: decoding composites it over white, as a viewer does."""
    bgra = np.dstack([cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), np.full(rgb.shape[:2], 128, np.uint8)])
    ok, png = cv2.imencode(".png", bgra)
    assert ok
    return png.tobytes()


def uniform(rgb: np.ndarray) -> np.ndarray:
    """The photo's mean colour everywhere: a colour, but nothing to see."""
    return np.broadcast_to(rgb.mean(axis=(0, 1)).astype(np.uint8), rgb.shape).copy()


# -- the measurement -----------------------------------------------------------------------------------------------


def test_copies_without_colour_of_a_synthetic_leaf_are_flagged_with_the_reason() -> None:
    leaf = synthetic_leaf()
    assert colour_problem(load_image(jpeg(leaf))) is None
    assert "grayscale" in (colour_problem(load_image(jpeg(grayscale(leaf)))) or "")
    assert "washed out" in (colour_problem(load_image(half_opacity_over_white_png(leaf))) or "")
    assert "nearly uniform" in (colour_problem(uniform(leaf)) or "")


@needs_data
def test_real_photos_are_not_flagged_and_their_copies_without_colour_are() -> None:
    photos = []
    for folder in PHOTO_FOLDERS:
        found = sorted(p for p in (DATA_DIR / folder).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        photos += found[::EVERY_NTH]
    assert len(photos) > 400
    flagged = {str(p): colour_problem(load_image(p)) for p in photos}
    assert {p: why for p, why in flagged.items() if why is not None} == {}
    for photo in photos[:: len(photos) // 20]:  # twenty copies of each kind, from all over the folders
        rgb = load_image(photo)
        assert "grayscale" in (colour_problem(load_image(jpeg(grayscale(rgb)))) or ""), photo
        assert "washed out" in (colour_problem(load_image(half_opacity_over_white_png(rgb))) or ""), photo
        assert "nearly uniform" in (colour_problem(uniform(rgb)) or ""), photo


# -- the metadata --------------------------------------------------------------------------------------------------


def test_colour_check_round_trips_through_the_metadata() -> None:
    trust = Trust(min_confidence=0.5, min_short_side=32, colour=ColourCheck(8.0, 12.0, 110.0))
    meta = tinymodel.metadata_for(trust=trust)
    props = meta.to_onnx_props()
    assert json.loads(props["cassava_edge.trust"])["colour"] == {
        "min_luma_std": 8.0, "min_colour_spread": 12.0, "max_darkest_luma": 110.0
    }
    assert ModelMetadata.from_onnx_props(props) == meta


def test_a_trust_without_colour_check_is_written_as_before() -> None:
    meta = tinymodel.metadata_for(trust=Trust(min_confidence=0.5, min_short_side=32))
    props = meta.to_onnx_props()
    assert "colour" not in json.loads(props["cassava_edge.trust"])  # readable by runtimes older than the check
    assert ModelMetadata.from_onnx_props(props).trust == Trust(min_confidence=0.5, min_short_side=32)


@pytest.mark.parametrize("colour", ['{"min_luma_std": -1, "min_colour_spread": 12, "max_darkest_luma": 110}', "5"])
def test_malformed_colour_checks_are_refused(colour: str) -> None:
    props = tinymodel.metadata_for(trust=Trust(min_short_side=32)).to_onnx_props()
    trust = json.loads(props["cassava_edge.trust"])
    props["cassava_edge.trust"] = json.dumps({**trust, "colour": json.loads(colour)})
    with pytest.raises(ModelError, match="trust colour"):
        ModelMetadata.from_onnx_props(props)


def test_every_bundled_model_carries_the_colour_check() -> None:
    assert BUNDLED
    for path in BUNDLED:
        meta = ModelMetadata.from_onnx_props(read_metadata_props(path), source=str(path))
        assert meta.trust is not None and meta.trust.colour == DEFAULT_CHECK, path
        assert meta.provenance["measured"]["file_size_bytes"] == path.stat().st_size, path


# -- the runtime ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundled() -> Classifier:
    return Classifier(provider="cpu")


def test_the_bundled_model_fails_photos_without_colour_and_keeps_the_colour_one(bundled: Classifier) -> None:
    leaf = synthetic_leaf()
    colour, gray, washed, flat = bundled.classify_many(
        [jpeg(leaf), jpeg(grayscale(leaf)), half_opacity_over_white_png(leaf), jpeg(uniform(leaf))]
    )
    assert colour.status != "failed", colour.error
    for result, reason in ((gray, "grayscale"), (washed, "washed out"), (flat, "nearly uniform")):
        assert (result.status, result.label) == ("failed", None)
        assert reason in (result.error or ""), result.error
    with pytest.raises(ImageError, match="grayscale"):  # classify raises, as for any photo it cannot judge
        bundled.classify(jpeg(grayscale(leaf)))


@needs_data
def test_the_bundled_model_fails_copies_without_colour_of_a_real_photo(
    bundled: Classifier, cassava_photos: list[Path]
) -> None:
    rgb = load_image(cassava_photos[0])
    colour, gray, washed = bundled.classify_many(
        [cassava_photos[0], jpeg(grayscale(rgb)), half_opacity_over_white_png(rgb)]
    )
    assert colour.status != "failed", colour.error
    assert gray.status == "failed" and "grayscale" in (gray.error or "")
    assert washed.status == "failed" and "washed out" in (washed.error or "")


def test_colour_check_false_turns_it_off(bundled: Classifier) -> None:
    unchecked = Classifier(provider="cpu", colour_check=False)
    assert bundled.colour_check == DEFAULT_CHECK and unchecked.colour_check is None
    assert unchecked.classify(jpeg(grayscale(synthetic_leaf()))).status != "failed"


def test_models_without_the_setting_do_not_check(tiny_model: Path, tmp_path: Path) -> None:
    gray = np.full((32, 32, 3), 90, np.uint8)  # grayscale and uniform: flagged twice over under a check
    with_trust = tinymodel.write_trust_model(tmp_path / "trust.onnx")  # trust gates, but no colour check
    for path in (tiny_model, with_trust):
        classifier = Classifier(path, provider="cpu")
        assert classifier.colour_check is None
        assert classifier.classify(gray).status != "failed"


def test_colour_check_can_be_turned_on_or_set_per_classifier(tiny_model: Path) -> None:
    gray = np.full((32, 32, 3), 90, np.uint8)
    on = Classifier(tiny_model, provider="cpu", colour_check=True)
    assert on.colour_check == DEFAULT_CHECK and on.info()["colour_check"]["min_luma_std"] == 8.0
    with pytest.raises(ImageError, match="nearly uniform"):
        on.classify(gray)
    lenient = Classifier(tiny_model, provider="cpu", colour_check=ColourCheck(0.0, 0.0, 255.0))
    assert lenient.classify(gray).status != "failed"
    with pytest.raises(OptionError, match="0..255"):
        Classifier(tiny_model, provider="cpu", colour_check=ColourCheck(-1.0, 0.0, 255.0))
    with pytest.raises(OptionError, match="colour_check"):
        Classifier(tiny_model, provider="cpu", colour_check="yes")  # type: ignore[arg-type]
