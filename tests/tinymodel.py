"""Tiny ONNX models built in the tests with onnx.helper, carrying real cassava-edge metadata.

The quadrant model scores an NHWC crop by the mean brightness of its four quadrants: logits = q @ W + b with q =
(top-left, top-right, bottom-left, bottom-right) means / 255. Flips and rotations permute the quadrants, so every
D4 view of a crop with four different quadrant brightnesses gets different probabilities, and `reference_probs`
recomputes them in plain numpy, independently of onnxruntime and of the runtime's TTA code.

The trust variant (schema 2) adds a "not a cassava leaf" output whose logit grows with how much bluer than green a
crop is: a grey or green photo is cassava to it, a blue one is not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the tiny test models are built with onnx (pip install onnx, dev extra)")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from cassava_edge.contract import NOT_CASSAVA_NAME
from cassava_edge.contract import INPUT_NAME, OUTPUT_NAME
from cassava_edge.metadata import READABLE_SCHEMA_VERSIONS, Calibration, ModelMetadata, Trust, cassava_metadata

INPUT = INPUT_NAME
OUTPUT = OUTPUT_NAME
# Quadrant -> logit weights; generic values so that no two quadrant permutations give the same logits.
QUADRANT_WEIGHTS = np.array(
    [
        [3.0, -1.0, 0.5, 2.0, -2.0],
        [-1.5, 2.5, 1.0, -0.5, 0.7],
        [0.3, -2.2, 2.8, 1.1, -0.4],
        [-0.8, 0.9, -1.7, 2.4, 1.9],
    ],
    dtype=np.float32,
)
QUADRANT_BIAS = np.array([0.1, -0.2, 0.05, 0.0, 0.3], dtype=np.float32)
# not-cassava logit = SCALE * (mean blue - mean green) / 255 + BIAS
NOT_CASSAVA_SCALE, NOT_CASSAVA_BIAS = 12.0, -2.0


def quadrant_matrix(height: int, width: int) -> np.ndarray:
    """(height*width*3, 5) matrix M with flatten(crop) @ M = quadrant means / 255 @ QUADRANT_WEIGHTS (even sizes)."""
    half_h, half_w = height // 2, width // 2
    quadrant = np.zeros((height, width), dtype=np.int64)
    quadrant[:half_h, half_w:] = 1
    quadrant[half_h:, :half_w] = 2
    quadrant[half_h:, half_w:] = 3
    per_pixel = QUADRANT_WEIGHTS[quadrant] / (half_h * half_w * 3 * 255.0)  # (height, width, 5)
    return np.repeat(per_pixel[:, :, None, :], 3, axis=2).reshape(-1, 5).astype(np.float32)


def reference_logits(crops: np.ndarray) -> np.ndarray:
    """What the quadrant model computes, in numpy: crops (n, s, s, 3) -> logits (n, 5)."""
    crops = np.asarray(crops, dtype=np.float64)
    half = crops.shape[1] // 2
    means = np.stack(
        [
            crops[:, :half, :half].mean(axis=(1, 2, 3)),
            crops[:, :half, half:].mean(axis=(1, 2, 3)),
            crops[:, half:, :half].mean(axis=(1, 2, 3)),
            crops[:, half:, half:].mean(axis=(1, 2, 3)),
        ],
        axis=1,
    )
    return means / 255.0 @ QUADRANT_WEIGHTS.astype(np.float64) + QUADRANT_BIAS


def reference_not_cassava_logits(crops: np.ndarray) -> np.ndarray:
    """What the trust variant's not-cassava output computes, in numpy: crops (n, s, s, 3) RGB -> logits (n,)."""
    crops = np.asarray(crops, dtype=np.float64)
    return NOT_CASSAVA_SCALE * (crops[..., 2].mean(axis=(1, 2)) - crops[..., 1].mean(axis=(1, 2))) / 255.0 + (
        NOT_CASSAVA_BIAS
    )


def reference_probs(crops: np.ndarray) -> np.ndarray:
    logits = reference_logits(crops)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def quadrant_image(size: int, levels: tuple[int, int, int, int] = (40, 110, 170, 240)) -> np.ndarray:
    """A (size, size, 3) uint8 crop whose quadrants (TL, TR, BL, BR) have the given grey levels."""
    half = size // 2
    image = np.empty((size, size, 3), dtype=np.uint8)
    image[:half, :half], image[:half, half:] = levels[0], levels[1]
    image[half:, :half], image[half:, half:] = levels[2], levels[3]
    return image


def build_model(
    *,
    size: int = 32,
    short_side: int | None = None,
    softmax: bool = True,
    batch_dim: Any = "batch",
    input_hw: tuple[int, int] | None = None,
    classes: int = 5,
    input_name: str = INPUT,
    not_cassava: bool = False,
) -> onnx.ModelProto:
    """The quadrant model as an onnx.ModelProto without metadata; shapes can be made to disagree on purpose.
    `not_cassava` adds the trust variant's output NOT_CASSAVA_NAME."""
    height, width = input_hw or (size, size)
    matrix = quadrant_matrix(height, width)[:, :classes]
    bias = QUADRANT_BIAS[:classes]
    nodes = [
        helper.make_node("Reshape", [input_name, "flat_shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "weights"], ["scaled"]),
        helper.make_node("Add", ["scaled", "bias"], ["logits" if softmax else OUTPUT]),
    ]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], [OUTPUT], axis=1))
    graph = helper.make_graph(
        nodes,
        "quadrants",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [batch_dim, height, width, 3])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [batch_dim, classes])],
        initializer=[
            numpy_helper.from_array(np.array([-1, height * width * 3], dtype=np.int64), "flat_shape"),
            numpy_helper.from_array(matrix, "weights"),
            numpy_helper.from_array(bias, "bias"),
        ],
    )
    if not_cassava:
        _add_not_cassava_output(graph, input_name, height, width, batch_dim)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="cassava-edge-tests")
    model.ir_version = 8  # readable by any onnxruntime >= 1.17
    return model


def _add_not_cassava_output(graph: onnx.GraphProto, input_name: str, height: int, width: int, batch_dim: Any) -> None:
    per_pixel = np.zeros((height, width, 3), np.float32)
    per_pixel[:, :, 1] = -NOT_CASSAVA_SCALE / (height * width * 255.0)
    per_pixel[:, :, 2] = NOT_CASSAVA_SCALE / (height * width * 255.0)
    graph.node.extend([
        helper.make_node("Reshape", [input_name, "flat_shape"], ["flat_not_cassava"]),
        helper.make_node("MatMul", ["flat_not_cassava", "not_cassava_weights"], ["not_cassava_scaled"]),
        helper.make_node("Add", ["not_cassava_scaled", "not_cassava_bias"], [NOT_CASSAVA_NAME]),
    ])
    graph.initializer.extend([
        numpy_helper.from_array(per_pixel.reshape(-1, 1), "not_cassava_weights"),
        numpy_helper.from_array(np.array([NOT_CASSAVA_BIAS], np.float32), "not_cassava_bias"),
    ])
    graph.output.append(helper.make_tensor_value_info(NOT_CASSAVA_NAME, TensorProto.FLOAT, [batch_dim, 1]))


def metadata_for(size: int = 32, short_side: int | None = None, **overrides: Any) -> ModelMetadata:
    return cassava_metadata(
        size,
        short_side or size,
        input_name=overrides.pop("input_name", INPUT),
        output_name=OUTPUT,
        default_scan=overrides.pop("default_scan", "grid"),
        default_tta=overrides.pop("default_tta", "flip"),
        precision=overrides.pop("precision", "fp32"),
        provenance=overrides.pop("provenance", {"source": "tests/tinymodel.py"}),
        calibration=overrides.pop("calibration", None),
        trust=overrides.pop("trust", None),
        look=overrides.pop("look", None),
    )


def write_trust_model(
    path: Path,
    *,
    size: int = 32,
    temperature: float | None = None,
    min_confidence: float = 0.5,
    min_short_side: int = 32,
    not_cassava_threshold: float | None = 0.5,
    **build: Any,
) -> Path:
    """A schema-2 quadrant model with calibration, trust settings and (unless the threshold is None) the
    not-cassava output."""
    with_output = not_cassava_threshold is not None
    trust = Trust(
        min_confidence=min_confidence,
        min_short_side=min_short_side,
        not_cassava_output=NOT_CASSAVA_NAME if with_output else None,
        not_cassava_threshold=not_cassava_threshold,
    )
    calibration = None if temperature is None else Calibration(temperature=temperature)
    metadata = metadata_for(size, calibration=calibration, trust=trust)
    return write_model(path, size=size, metadata=metadata, not_cassava=with_output, **build)


def version_1_props(size: int = 32) -> dict[str, str]:
    """The metadata as a schema-1 export wrote it: no calibration or trust entries."""
    props = metadata_for(size).to_onnx_props()
    del props["cassava_edge.calibration"], props["cassava_edge.trust"]
    props["cassava_edge.schema_version"] = "1"
    return props


def write_model(
    path: Path,
    *,
    size: int = 32,
    short_side: int | None = None,
    softmax: bool = True,
    metadata: ModelMetadata | None = None,
    props: dict[str, str] | None = None,
    with_metadata: bool = True,
    **build: Any,
) -> Path:
    """Write a quadrant model with metadata (or `props` verbatim, or none) to `path`."""
    model = build_model(size=size, softmax=softmax, **build)
    if with_metadata:
        meta = metadata or metadata_for(size, short_side)
        if not softmax:
            meta = _replace(meta, output_is_probability=False)
        helper.set_model_props(model, props if props is not None else meta.to_onnx_props())
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def wrong_version_props(size: int = 32) -> dict[str, str]:
    props = metadata_for(size).to_onnx_props()
    props["cassava_edge.schema_version"] = str(READABLE_SCHEMA_VERSIONS[-1] + 1)
    return props


def _replace(meta: ModelMetadata, **changes: Any) -> ModelMetadata:
    from dataclasses import replace

    return replace(meta, **changes)
