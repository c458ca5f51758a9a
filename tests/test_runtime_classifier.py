from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests import tinymodel
from cassava_edge import Classification, Classifier, ImageError, OptionError, __version__
from cassava_edge.metadata import CASSAVA_LABELS


def _photo(width: int, height: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_probabilities_are_the_mean_over_crops_and_views(tiny_model: Path) -> None:
    classifier = Classifier(tiny_model, provider="cpu", tta="flip", scan="grid")
    photo = _photo(48, 32, seed=1)  # at scale 1: grid gives crops at x = 0 and x = 16
    result = classifier.classify(photo, top_k=5, return_views=True)
    crops = [photo[:, :32], photo[:, 16:48]]
    views = np.stack([v for crop in crops for v in (crop, crop[:, ::-1])])
    expected = tinymodel.reference_probs(views).mean(axis=0)

    assert result.ok and result.error is None and result.source == "<array>"
    assert list(result.probabilities) == list(CASSAVA_LABELS)
    np.testing.assert_allclose(list(result.probabilities.values()), expected, atol=1e-5)
    assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-9)
    assert result.label_index == int(np.argmax(expected)) and result.label == CASSAVA_LABELS[result.label_index]
    assert result.confidence == max(result.probabilities.values())
    assert [label for label, _ in result.top_k] == [CASSAVA_LABELS[i] for i in np.argsort(-expected)]
    assert [p for _, p in result.top_k] == sorted((p for _, p in result.top_k), reverse=True)
    assert result.views is not None and len(result.views) == 4
    assert [(v.crop_index, v.box, v.view) for v in result.views] == [
        (0, (0, 0, 32, 32), "identity"), (0, (0, 0, 32, 32), "hflip"),
        (1, (16, 0, 32, 32), "identity"), (1, (16, 0, 32, 32), "hflip"),
    ]  # fmt: skip


def test_stages_compose_to_classify(tiny_model: Path) -> None:
    classifier = Classifier(tiny_model, provider="cpu")
    photo = _photo(40, 60, seed=2)
    rgb = classifier.load(photo)
    prepared = classifier.prepare(rgb)
    assert prepared.views.dtype == np.float32 and prepared.views.shape[1:] == (32, 32, 3)
    assert prepared.num_views == len(prepared.boxes) * len(prepared.view_names)
    probs = classifier.infer(prepared.views)
    staged = classifier.postprocess("photo", probs, prepared, top_k=2)
    assert staged.probabilities == classifier.classify(photo).probabilities
    assert len(staged.top_k) == 2 and staged.source == "photo"


def test_top_k_and_result_dict(tiny_model: Path) -> None:
    classifier = Classifier(tiny_model, provider="cpu")
    result = classifier.classify(_photo(32, 32, seed=3), top_k=1)
    assert len(result.top_k) == 1 and result.top_k[0] == (result.label, result.confidence)
    assert len(classifier.classify(_photo(32, 32, seed=3), top_k=9).top_k) == 5
    with pytest.raises(OptionError, match="top_k"):
        classifier.classify(_photo(32, 32, seed=3), top_k=0)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["ok"] is True and data["label"] == result.label and "views" not in data
    assert data["top_k"] == [{"label": result.label, "probability": result.confidence}]
    with_views = classifier.classify(_photo(32, 32, seed=3), return_views=True).to_dict()
    assert len(with_views["views"]) == 2 and set(with_views["views"][0]["probabilities"]) == set(CASSAVA_LABELS)


def test_classify_raises_on_bad_input_but_classify_many_does_not(tiny_model: Path, tmp_path: Path) -> None:
    classifier = Classifier(tiny_model, provider="cpu")
    bad = tmp_path / "bad.jpg"
    bad.write_text("not a photo")
    with pytest.raises(ImageError, match="bad.jpg"):
        classifier.classify(bad)
    good = [_photo(32 + 8 * i, 32, seed=i) for i in range(4)]
    sources = [good[0], good[1], bad, tmp_path / "absent.png", good[2], good[3]]
    results = list(classifier.classify_many(sources, batch_images=4))
    assert [r.ok for r in results] == [True, True, False, False, True, True]
    assert results[2].source == str(bad) and "not an image" in (results[2].error or "")
    assert results[3].error == "no such file" and results[3].label is None
    assert results[2].to_dict()["ok"] is False
    for result, photo in zip([results[0], results[1], results[4], results[5]], good):
        assert result.probabilities == pytest.approx(classifier.classify(photo).probabilities, abs=1e-6)


def test_a_group_shares_onnxruntime_runs(tiny_model: Path, run_calls: list[int]) -> None:
    calls = run_calls
    classifier = Classifier(tiny_model, provider="cpu", tta="d4", chunk_size=5)
    photos = [_photo(32, 32, seed=i) for i in range(3)]  # one crop x 8 views each
    grouped = list(classifier.classify_many(photos, batch_images=3))
    assert calls == [5, 5, 5, 5, 4]  # 24 views in ceil(24 / 5) runs, not 2 runs per photo
    calls.clear()
    single = list(classifier.classify_many(photos, batch_images=1, workers=0))
    assert calls == [5, 3] * 3
    # With decoding threads the groups run side by side, so their calls interleave, but each keeps its own batches.
    calls.clear()
    assert [r.probabilities for r in classifier.classify_many(photos, batch_images=1, workers=2)] == \
        [r.probabilities for r in single]
    assert sorted(calls) == sorted([5, 3] * 3)
    for a, b in zip(grouped, single):
        assert a.probabilities == pytest.approx(b.probabilities, abs=1e-6)


def test_classify_many_is_lazy_and_ordered(tiny_model: Path) -> None:
    classifier = Classifier(tiny_model, provider="cpu")
    consumed: list[int] = []

    def photos():  # type: ignore[no-untyped-def]
        for index in range(5):
            consumed.append(index)
            yield _photo(32, 32, seed=index)

    stream = classifier.classify_many(photos(), batch_images=2, workers=0)  # pipelined: tests/test_pipeline.py
    first = next(stream)
    assert consumed == [0, 1]
    rest = list(stream)
    expected = [classifier.classify(_photo(32, 32, seed=i)).probabilities for i in range(5)]
    for result, probs in zip([first, *rest], expected):
        assert result.probabilities == pytest.approx(probs, abs=1e-6)


def test_one_classifier_shared_by_threads(tiny_model: Path) -> None:
    classifier = Classifier(tiny_model, provider="cpu", tta="d4", chunk_size=3)
    photos = [_photo(32 + 4 * (i % 5), 32 + 4 * (i % 3), seed=i) for i in range(16)]
    sequential = [classifier.classify(photo).probabilities for photo in photos]
    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(pool.map(lambda photo: classifier.classify(photo).probabilities, photos))
    assert threaded == sequential


def test_defaults_come_from_the_metadata(tmp_path: Path) -> None:
    meta = tinymodel.metadata_for(default_scan="center", default_tta="d4")
    model = tinymodel.write_model(tmp_path / "m.onnx", metadata=meta)
    classifier = Classifier(model, provider="cpu")
    assert classifier.scan == "center" and classifier.tta.name == "d4"
    assert Classifier(model, provider="cpu", scan="full", tta="none").tta.views_per_crop == 1
    with pytest.raises(OptionError, match="scan plan"):
        Classifier(model, provider="cpu", scan="diagonal")


def test_elongated_photo_is_refused(tiny_model: Path) -> None:
    with pytest.raises(ImageError, match="too elongated"):
        Classifier(tiny_model, provider="cpu").classify(_photo(2000, 40, seed=0))


def test_info(tiny_model: Path) -> None:
    info = Classifier(tiny_model, provider="cpu", seed=5).info()
    assert info["model"] == str(tiny_model)
    assert info["metadata"]["labels"] == list(CASSAVA_LABELS)
    assert info["providers_loaded"] == ["CPUExecutionProvider"]
    assert "CPUExecutionProvider" in info["providers_available"]
    assert info["versions"]["cassava_edge"] == __version__ == "0.1.0"
    assert info["versions"]["opencv"] == cv2.__version__
    assert info["seed"] == 5 and info["tta"] == "flip" and info["scan"] == "grid"
    json.dumps(info)


def test_real_photos_end_to_end(photo_model: Path, cassava_photos: list[Path], data_dir: Path) -> None:
    classifier = Classifier(photo_model, provider="cpu")
    portrait = data_dir / "field" / "images" / "D_0_IMG_1427.jpg"
    results = list(classifier.classify_many([*cassava_photos, portrait], return_views=True))
    assert all(isinstance(r, Classification) and r.ok for r in results)
    for result in results:
        assert sum(result.probabilities.values()) == pytest.approx(1.0)
    # 800x600 at training scale 100x75 (64/75 like 512/600): the four reference corners.
    boxes = sorted({view.box for view in results[0].views or ()})
    assert boxes == [(0, 0, 64, 64), (0, 11, 64, 64), (36, 0, 64, 64), (36, 11, 64, 64)]
    # The 1200x1600 portrait photo scales to 75x100: crops at y in {0, 36}, x in {0, 11}.
    assert sorted({view.box for view in results[-1].views or ()}) == [
        (0, 0, 64, 64), (0, 36, 64, 64), (11, 0, 64, 64), (11, 36, 64, 64),
    ]  # fmt: skip


def test_classify_many_refuses_a_bad_color_once_instead_of_failing_every_photo(tiny_model: Path) -> None:
    classifier = Classifier(tiny_model, provider="cpu")
    photo = tinymodel.quadrant_image(32)
    with pytest.raises(OptionError, match="color must be one of"):
        list(classifier.classify_many([photo, photo], color="CMYK"))
    assert next(iter(classifier.classify_many([photo], color="bgr"))).ok
