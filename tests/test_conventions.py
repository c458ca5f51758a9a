"""Conventions users bring from Ultralytics, MediaPipe and Hugging Face: PIL images, reprs, MediaPipe options."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cassava_edge import Classifier

Image = pytest.importorskip("PIL.Image", reason="Pillow is not installed")


def test_a_pil_image_gets_the_answer_of_the_same_pixels_as_an_rgb_array(
    photo_model: Path, cassava_photos: list[Path]
) -> None:
    classifier = Classifier(photo_model, provider="cpu", tta="flip", scan="grid")
    with Image.open(cassava_photos[0]) as opened:
        image = opened.convert("RGB")
    pixels = np.asarray(image)

    from_pil = classifier.classify(image, top_k=5)
    from_array = classifier.classify(pixels, top_k=5)

    assert from_pil.ok and from_pil.error is None
    assert from_pil.probabilities == from_array.probabilities and from_pil.label == from_array.label
    # Pixels, not colour order: color="BGR" applies to arrays only, as for encoded photos.
    assert classifier.classify(image, color="BGR", top_k=5).probabilities == from_array.probabilities


def test_classify_many_takes_pil_images_among_other_sources(photo_model: Path, cassava_photos: list[Path]) -> None:
    classifier = Classifier(photo_model, provider="cpu")
    with Image.open(cassava_photos[1]) as opened:
        opened.load()
        gray = opened.convert("L")
        palette = opened.convert("P")
        results = list(classifier.classify_many([opened, cassava_photos[1], gray, palette], workers=0))

    from_path, from_gray_array = results[1], classifier.classify(np.asarray(gray))
    assert all(r.status != "failed" and r.error is None for r in results), [r.error for r in results]
    assert results[0].source == str(cassava_photos[1])  # Image.open keeps the file name
    # An opened JPEG's pixels are its decoded pixels (this photo has no EXIF turn), so the same answer as its path.
    np.testing.assert_allclose(list(results[0].probabilities.values()), list(from_path.probabilities.values()),
                               atol=1e-6)
    assert results[2].probabilities == from_gray_array.probabilities
    assert results[3].source == "<PIL image>"


def test_pillow_is_not_imported_unless_a_pil_image_is_passed(tiny_model: Path) -> None:
    code = (
        "import sys, numpy as np; from cassava_edge import Classifier; "
        f"c = Classifier({str(tiny_model)!r}, provider='cpu'); c.classify(np.zeros((32, 32, 3), np.uint8)); "
        "list(c.classify_many([b'not an image'], workers=0)); print('PIL' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_reprs_say_what_runs_and_what_came_out(tiny_model: Path) -> None:
    classifier = Classifier(tiny_model, provider="cpu", tta="flip", scan="grid")
    assert repr(classifier) == (
        "Classifier(model='quadrant32', variant='fp32', provider='CPUExecutionProvider', tta='flip', scan='grid')"
    )
    result = classifier.classify(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    assert result.confidence is not None
    assert repr(result) == (
        f"Classification(source='<array>', status={result.status!r}, label={result.label!r}, "
        f"confidence={result.confidence:.3f})"
    )
    failed = next(classifier.classify_many([b"not an image"], workers=0))
    assert repr(failed).startswith("Classification(source='<bytes>', status='failed', label=None, confidence=None, "
                                   "error='")


def test_mediapipe_options_are_top_k_and_min_confidence_on_the_classifier_and_per_call(tiny_model: Path) -> None:
    photo = np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    plain = Classifier(tiny_model, provider="cpu")
    confidence = plain.classify(photo).confidence
    assert confidence is not None and len(plain.classify(photo).top_k) == 3  # the default

    mediapipe = Classifier(tiny_model, provider="cpu", max_results=2, score_threshold=1.0)
    assert (mediapipe.top_k, mediapipe.min_confidence) == (2, 1.0)
    result = mediapipe.classify(photo)
    assert len(result.top_k) == 2 and result.status == "uncertain"  # nothing reaches a threshold of 1.0
    # Per call, either spelling overrides the Classifier's, in classify and in classify_many alike.
    for per_call in ({"max_results": 5, "score_threshold": 0.0}, {"top_k": 5, "min_confidence": 0.0}):
        assert len(mediapipe.classify(photo, **per_call).top_k) == 5
        assert mediapipe.classify(photo, **per_call).status == "ok"
        (many,) = mediapipe.classify_many([photo], workers=0, **per_call)
        assert len(many.top_k) == 5 and many.status == "ok"
    assert Classifier(tiny_model, provider="cpu", top_k=4, max_results=4).top_k == 4  # both, agreeing: fine


@pytest.mark.parametrize(
    "options",
    [{"top_k": 2, "max_results": 3}, {"min_confidence": 0.5, "score_threshold": 0.6}],
)
def test_both_spellings_disagreeing_is_a_value_error(tiny_model: Path, options: dict[str, float]) -> None:
    photo = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="disagree"):
        Classifier(tiny_model, provider="cpu", **options)
    classifier = Classifier(tiny_model, provider="cpu")
    with pytest.raises(ValueError, match="disagree"):
        classifier.classify(photo, **options)
    with pytest.raises(ValueError, match="disagree"):
        next(classifier.classify_many([photo], **options))
    with pytest.raises(ValueError, match="within 0..1"):
        classifier.classify(photo, score_threshold=1.5)
