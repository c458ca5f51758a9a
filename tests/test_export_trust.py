"""export/trust.py: the not-cassava head (fit, graph surgery) and the threshold, on tiny graphs and synthetic data."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnx", reason="export writes ONNX files with onnx (pip install \"cassava-edge[export]\")")
import onnxruntime as ort  # noqa: E402

from cassava_edge.contract import NOT_CASSAVA_NAME, OUTPUT_NAME  # noqa: E402
from cassava_edge_export.calibrate import threshold_for  # noqa: E402
from cassava_edge_export.errors import ExportError  # noqa: E402
from cassava_edge_export.trust import (  # noqa: E402
    append_head, fit_gaussian, fit_logistic, head_feature_tensors, read_not_cassava, sigmoid, strip_head,
    with_feature_output, with_threshold,
)
from tests.tinymodel import INPUT, build_model  # noqa: E402

SIZE = 8


def _run(model, batch: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {INPUT: batch})))


def test_the_head_reads_the_features_that_feed_the_classifier() -> None:
    model = build_model(size=SIZE)
    assert head_feature_tensors(model) == ["flat"]  # the input of the MatMul before Add -> Softmax
    batch = np.random.default_rng(0).uniform(0, 255, (3, SIZE, SIZE, 3)).astype(np.float32)
    features = _run(with_feature_output(model), batch)
    np.testing.assert_allclose(features[list(features)[-1]], batch.reshape(3, -1), rtol=1e-6)

    weights = np.random.default_rng(1).normal(size=SIZE * SIZE * 3)
    outputs = _run(append_head(model, weights, 0.25), batch)
    assert list(outputs) == [OUTPUT_NAME, NOT_CASSAVA_NAME]
    np.testing.assert_allclose(outputs[NOT_CASSAVA_NAME][:, 0], batch.reshape(3, -1) @ weights + 0.25, rtol=1e-4)
    np.testing.assert_allclose(outputs[OUTPUT_NAME], _run(model, batch)[OUTPUT_NAME])  # the diagnosis is untouched


def test_the_distance_from_cassava_flags_what_the_regression_never_saw() -> None:
    rng = np.random.default_rng(2)
    dims = SIZE * SIZE * 3
    # "Cassava" features vary along a few directions; a kind of photo nobody collected lies elsewhere.
    basis = rng.normal(size=(4, dims))
    cassava = 120 + rng.normal(size=(300, 4)) @ basis * 5 + rng.normal(size=(300, dims))
    held_out = 120 + rng.normal(size=(60, 4)) @ basis * 5 + rng.normal(size=(60, dims)) + rng.normal(size=dims) * 3
    fitted = fit_gaussian(cassava[:200], components=8)
    distance = with_threshold(fitted, fitted.distances(cassava[200:]), 0.02)
    assert (distance.logits(cassava[200:]) > 0).sum() == 2  # 2% of 100 photos
    assert (with_threshold(fitted, fitted.distances(cassava[200:]), 0.0).logits(cassava[200:]) < 0).all()
    assert (distance.logits(held_out) > 0).mean() == 1.0
    # A regression that never saw the new kind does not flag it; the shipped rule (the larger logit) does.
    weights, bias = np.zeros(dims), -5.0
    model = build_model(size=SIZE)
    photos = np.clip(np.vstack([cassava[200:203], held_out[:3]]), 0, 255).reshape(6, SIZE, SIZE, 3).astype(np.float32)
    logits = _run(append_head(model, weights, bias, distance), photos)[NOT_CASSAVA_NAME][:, 0]
    features = photos.reshape(6, -1)
    np.testing.assert_allclose(logits, np.maximum(features @ weights + bias, distance.logits(features)), rtol=1e-3,
                               atol=1e-3)
    assert (logits[:3] < 0).all() and (logits[3:] > 0).all()
    # strip_head gives back the graph as it was before the head.
    stripped = strip_head(append_head(model, weights, bias, distance))
    assert [n.name for n in stripped.graph.node] == [n.name for n in model.graph.node]
    assert [o.name for o in stripped.graph.output] == [OUTPUT_NAME]


def _joined_model():
    """The quadrant model joined with a second classifier whose features are the first's doubled: two Softmax
    heads averaged, as `export --join` writes them."""
    from onnx import helper, numpy_helper

    model = build_model(size=SIZE)
    graph = model.graph
    output = next(node for node in graph.node if node.op_type == "Softmax").output[0]
    for node in graph.node:  # the first member's Softmax now feeds the mean, not the output
        node.output[:] = ["first_probabilities" if name == output else name for name in node.output]
    graph.initializer.append(numpy_helper.from_array(np.float32(2.0).reshape(1), "two"))
    graph.initializer.append(numpy_helper.from_array(np.float32(0.5).reshape(1), "half"))
    graph.node.extend([
        helper.make_node("Mul", ["flat", "two"], ["flat_doubled"]),
        helper.make_node("MatMul", ["flat_doubled", "weights"], ["second_logits"]),
        helper.make_node("Softmax", ["second_logits"], ["second_probabilities"], axis=1),
        helper.make_node("Add", ["first_probabilities", "second_probabilities"], ["summed"]),
        helper.make_node("Mul", ["summed", "half"], [output]),
    ])
    return model


def test_a_joined_graph_reads_every_members_features_side_by_side() -> None:
    model = _joined_model()
    batch = np.random.default_rng(3).uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)
    flat = batch.reshape(2, -1)
    assert head_feature_tensors(model) == ["flat", "flat_doubled"]
    features = _run(with_feature_output(model), batch)
    np.testing.assert_allclose(features[list(features)[-1]], np.hstack([flat, 2 * flat]), rtol=1e-6)
    weights = np.random.default_rng(4).normal(size=2 * SIZE * SIZE * 3)
    headed = append_head(model, weights, -1.0)
    outputs = _run(headed, batch)
    np.testing.assert_allclose(outputs[NOT_CASSAVA_NAME][:, 0], np.hstack([flat, 2 * flat]) @ weights - 1.0, rtol=1e-4)
    np.testing.assert_allclose(outputs[OUTPUT_NAME], _run(model, batch)[OUTPUT_NAME])
    # The Concat belongs to the head: stripping it gives the joined graph back, ready to be calibrated again.
    assert [n.name for n in strip_head(headed).graph.node] == [n.name for n in model.graph.node]


def test_a_graph_without_a_softmax_head_is_refused() -> None:
    with pytest.raises(ExportError, match="Softmax"):
        head_feature_tensors(build_model(size=SIZE, softmax=False))
    with pytest.raises(ExportError, match="already has"):
        append_head(append_head(build_model(size=SIZE), np.zeros(SIZE * SIZE * 3), 0.0), np.zeros(SIZE * SIZE * 3), 0.0)


def test_logistic_regression_separates_and_returns_raw_feature_units() -> None:
    rng = np.random.default_rng(0)
    # Features on very different scales, as pooled activations are; 1 in 5 positives, as in our data.
    scale = np.array([1.0, 100.0, 0.01])
    negatives = rng.normal([0, 0, 0], 1, (400, 3)) * scale
    positives = rng.normal([3, 0, 0], 1, (100, 3)) * scale
    head = fit_logistic(np.vstack([negatives, positives]), np.r_[np.zeros(400), np.ones(100)])
    assert (sigmoid(head.logits(positives)) > 0.5).mean() > 0.9
    assert (sigmoid(head.logits(negatives)) < 0.5).mean() > 0.9
    # In units of each feature's spread, the informative feature dominates whatever its raw scale.
    effect = np.abs(head.weights * np.vstack([negatives, positives]).std(0))
    assert effect[0] > 4 * max(effect[1], effect[2])


def test_threshold_flags_at_most_the_allowed_share_of_cassava() -> None:
    scores = np.linspace(0.0, 0.99, 200)
    threshold = threshold_for(scores, 0.01)
    assert (scores >= threshold).sum() == 2
    assert threshold_for(np.full(50, 0.1), 0.01) == 0.5  # never below an even bet


def test_not_cassava_kinds_group_a_crops_diseases(tmp_path) -> None:
    (tmp_path / "images").mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (tmp_path / "images" / name).write_bytes(b"x")
    (tmp_path / "SOURCES.csv").write_text(
        "file,category\na.jpg,maize leaf (common rust)\nb.jpg,maize leaf (healthy)\nc.jpg,cat\n")
    assert [p.category for p in read_not_cassava(tmp_path)] == ["maize", "maize", "cat"]
    (tmp_path / "images" / "c.jpg").unlink()
    with pytest.raises(ExportError, match="missing"):
        read_not_cassava(tmp_path)
