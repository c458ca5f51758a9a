"""The "not a cassava leaf" head: a logistic regression on the backbone's pooled features, appended to the graph.

The classifier's own probabilities cannot tell a cat from a leaf (median top-1 0.67 on non-cassava photos against
0.77 on cassava). Its pooled features can: a linear score on them, fitted on cassava training photos against
photos that are not cassava leaves, is appended to every variant as the output `not_cassava_logit` (one logit per
view; the runtime averages a photo's views and applies the sigmoid). Nothing here needs TensorFlow.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from cassava_edge.contract import NOT_CASSAVA_NAME

from .errors import ExportError

# Walking back from the Softmax to the classification head's matrix product crosses only these.
_PASS_THROUGH = {"Add", "DequantizeLinear", "QuantizeLinear", "Cast", "Identity", "Reshape", "Flatten"}


def feature_tensor(proto: onnx.ModelProto) -> str:
    """The name of the pooled-features tensor: the data input of the head's MatMul/Gemm that feeds the Softmax.

    Works for the fp32, fp16 (Casts) and QDQ int8 (Quantize/DequantizeLinear pairs) graphs export writes."""
    producers = {out: node for node in proto.graph.node for out in node.output}
    initialisers = {init.name for init in proto.graph.initializer}
    softmax = [node for node in proto.graph.node if node.op_type == "Softmax"]
    if len(softmax) != 1:
        raise ExportError(f"expected one Softmax in the graph, found {len(softmax)}")
    node = producers.get(softmax[0].input[0])
    while node is not None and node.op_type in _PASS_THROUGH:
        data = [name for name in node.input[:1] if name not in initialisers]
        node = producers.get(data[0]) if data else None
    if node is None or node.op_type not in ("MatMul", "Gemm"):
        raise ExportError("could not find the classification head (MatMul/Gemm before the Softmax)")
    return node.input[0]


def with_feature_output(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `proto` that also outputs the pooled features (as float32), for fitting the head."""
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    name = feature_tensor(copy)
    cast = f"{name}__features_fp32"
    copy.graph.node.append(helper.make_node("Cast", [name], [cast], to=TensorProto.FLOAT, name="features_cast"))
    copy.graph.output.append(helper.make_tensor_value_info(cast, TensorProto.FLOAT, ["batch", None]))
    return copy


def append_head(proto: onnx.ModelProto, weights: np.ndarray, bias: float) -> onnx.ModelProto:
    """`proto` plus the output NOT_CASSAVA_NAME = features @ weights + bias, shape (batch, 1), float32."""
    if any(output.name == NOT_CASSAVA_NAME for output in proto.graph.output):
        raise ExportError(f"the graph already has an output {NOT_CASSAVA_NAME}")
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    features = feature_tensor(copy)
    w_name, b_name, cast = "not_cassava_weights", "not_cassava_bias", "not_cassava_features"
    copy.graph.initializer.extend([
        numpy_helper.from_array(weights.astype(np.float32).reshape(-1, 1), w_name),
        numpy_helper.from_array(np.array([bias], np.float32), b_name),
    ])
    copy.graph.node.extend([
        helper.make_node("Cast", [features], [cast], to=TensorProto.FLOAT, name="not_cassava_cast"),
        helper.make_node("Gemm", [cast, w_name, b_name], [NOT_CASSAVA_NAME], name="not_cassava_head"),
    ])
    copy.graph.output.append(helper.make_tensor_value_info(NOT_CASSAVA_NAME, TensorProto.FLOAT, ["batch", 1]))
    # No onnx.checker here: the fp16 converter lists its input Cast last, which the checker calls unsorted although
    # onnxruntime runs it; export.calibrate loads every file it writes with the runtime instead.
    return copy


@dataclass(frozen=True)
class LinearHead:
    """A logistic regression on raw features: logit = features @ weights + bias."""

    weights: np.ndarray
    bias: float

    def logits(self, features: np.ndarray) -> np.ndarray:
        return features.astype(np.float64) @ self.weights + self.bias


def fit_logistic(features: np.ndarray, targets: np.ndarray, l2: float = 1.0, iterations: int = 25) -> LinearHead:
    """L2-regularised logistic regression by Newton's method (IRLS) on standardised features, with the two
    classes weighted equally; returned in raw-feature units so the graph needs no extra normalisation."""
    x = features.astype(np.float64)
    y = targets.astype(np.float64)
    mean, std = x.mean(0), x.std(0) + 1e-6
    z = np.hstack([(x - mean) / std, np.ones((len(x), 1))])
    balance = np.where(y == 1, 0.5 / max(y.mean(), 1e-9), 0.5 / max(1 - y.mean(), 1e-9))
    penalty = np.full(z.shape[1], l2)
    penalty[-1] = 0.0  # the bias is not shrunk
    theta = np.zeros(z.shape[1])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ theta, -30, 30)))
        gradient = z.T @ (balance * (p - y)) + penalty * theta
        hessian = (z * (balance * p * (1 - p))[:, None]).T @ z + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hessian, gradient)
        theta -= step
        if np.abs(step).max() < 1e-6:
            break
    weights = theta[:-1] / std
    return LinearHead(weights, float(theta[-1] - mean @ weights))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


@dataclass(frozen=True)
class NotCassavaPhoto:
    path: Path
    category: str  # the kind of photo, e.g. "cat" or "maize" (a crop's leaves, whatever the disease)


def read_not_cassava(folder: Path) -> list[NotCassavaPhoto]:
    """The photos of a not-cassava folder (images/ + SOURCES.csv with file,category); the category is the
    first word (`maize leaf (common rust)` -> `maize`), so a crop's diseases stay one kind."""
    sources = folder / "SOURCES.csv"
    if not sources.is_file():
        raise ExportError(f"{folder}: no SOURCES.csv (file,category,...) beside images/")
    with sources.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    photos = [NotCassavaPhoto(folder / "images" / row["file"], row["category"].split()[0].lower()) for row in rows]
    missing = [p.path.name for p in photos if not p.path.is_file()]
    if missing:
        raise ExportError(f"{folder}: {len(missing)} files of SOURCES.csv are missing, e.g. {missing[0]}")
    return photos


LEAF_KINDS = ("maize", "mango", "rice")  # other crops' leaves: the hard kind of not-cassava photo
