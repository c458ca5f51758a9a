"""The "not a cassava leaf" head: a logistic regression on the backbone's pooled features, appended to the graph,
and a distance from the cassava photos beside it.

The classifier's own probabilities cannot tell a cat from a leaf (median top-1 0.67 on non-cassava photos against
0.77 on cassava). Its pooled features can: a linear score on them, fitted on cassava training photos against
photos that are not cassava leaves, is appended to every variant as the output `not_cassava_logit` (one logit per
view; the runtime averages a photo's views and applies the sigmoid). Nothing here needs TensorFlow.

The linear score knows only the kinds of photos it was fitted against. A Mahalanobis distance from the cassava
photos' features (one Gaussian, fitted on cassava alone) knows no kind at all, so it also flags kinds nobody
collected: the per-view logit is max(linear logit, scale * (distance - distance threshold)), so a view is flagged
when either says so, and the runtime's contract (one logit output) stays as it was.
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

HEAD_PREFIX = "not_cassava_"  # every node and initialiser append_head adds
# Walking back from the Softmax to the classification head's matrix product crosses only these.
_PASS_THROUGH = {"Add", "DequantizeLinear", "QuantizeLinear", "Cast", "Identity", "Reshape", "Flatten"}


def head_feature_tensors(proto: onnx.ModelProto) -> list[str]:
    """The pooled-features tensor of every classifier in the graph: the data input of the MatMul/Gemm that feeds
    each Softmax (one for an exported model, one per member for a joined one, `export --join`).

    Works for the fp32, fp16 (Casts) and QDQ int8 (Quantize/DequantizeLinear pairs) graphs export writes."""
    producers = {out: node for node in proto.graph.node for out in node.output}
    initialisers = {init.name for init in proto.graph.initializer}
    softmaxes = [node for node in proto.graph.node if node.op_type == "Softmax"]
    if not softmaxes:
        raise ExportError("expected a Softmax in the graph, found none")
    tensors = []
    for softmax in softmaxes:
        node = producers.get(softmax.input[0])
        while node is not None and node.op_type in _PASS_THROUGH:
            data = [name for name in node.input[:1] if name not in initialisers]
            node = producers.get(data[0]) if data else None
        if node is None or node.op_type not in ("MatMul", "Gemm"):
            raise ExportError("could not find the classification head (MatMul/Gemm before the Softmax)")
        tensors.append(node.input[0])
    return tensors


def _features_of(copy: onnx.ModelProto) -> str:
    """The features the head reads, in `copy` (which this may change): a joined graph's members' pooled features
    side by side, by a Concat added under HEAD_PREFIX, so that strip_head removes it with the head."""
    tensors = head_feature_tensors(copy)
    if len(tensors) == 1:
        return tensors[0]
    joined = f"{HEAD_PREFIX}joined_features"
    if joined not in {out for node in copy.graph.node for out in node.output}:
        copy.graph.node.append(helper.make_node("Concat", tensors, [joined], axis=1, name=f"{HEAD_PREFIX}join"))
    return joined


def with_feature_output(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `proto` that also outputs the pooled features (as float32), for fitting the head."""
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    name = _features_of(copy)
    cast = f"{name}__features_fp32"
    copy.graph.node.append(helper.make_node("Cast", [name], [cast], to=TensorProto.FLOAT, name="features_cast"))
    copy.graph.output.append(helper.make_tensor_value_info(cast, TensorProto.FLOAT, ["batch", None]))
    return copy


@dataclass(frozen=True)
class GaussianDistance:
    """The Mahalanobis distance of features from one Gaussian (mean, shrunk covariance), kept to its leading
    principal components: distance = sum_k (v_k . x)^2 / l_k + (|x|^2 - sum_k (v_k . x)^2) / l_tail, x = f - mean.
    The rest of the spectrum is folded into one tail variance, so the graph carries (features x components) weights.
    `threshold` and `scale` turn it into a logit: scale * (distance - threshold), 0 at the threshold."""

    mean: np.ndarray  # (features,)
    components: np.ndarray  # (features, k), orthonormal columns
    inverse_variances: np.ndarray  # (k,)
    inverse_tail_variance: float
    threshold: float = 0.0
    scale: float = 1.0

    def distances(self, features: np.ndarray) -> np.ndarray:
        x = features.astype(np.float64) - self.mean
        z = x @ self.components
        return (z * z) @ self.inverse_variances + ((x * x).sum(1) - (z * z).sum(1)) * self.inverse_tail_variance

    def logits(self, features: np.ndarray) -> np.ndarray:
        return self.scale * (self.distances(features) - self.threshold)


def fit_gaussian(features: np.ndarray, components: int = 256, shrinkage: float = 0.1) -> GaussianDistance:
    """One Gaussian on `features` (cassava photos only), covariance shrunk towards its mean variance (there are
    fewer photos than features), kept to `components` principal directions plus the tail."""
    x = features.astype(np.float64)
    mean = x.mean(0)
    variances, vectors = np.linalg.eigh(np.cov((x - mean).T))
    variances, vectors = variances[::-1], vectors[:, ::-1]
    shrunk = (1 - shrinkage) * np.maximum(variances, 0.0) + shrinkage * variances.mean()
    k = min(components, len(shrunk) - 1)
    return GaussianDistance(mean, vectors[:, :k].copy(), 1.0 / shrunk[:k], float(1.0 / shrunk[k:].mean()))


def with_threshold(distance: GaussianDistance, cassava_distances: np.ndarray, max_flagged: float) -> GaussianDistance:
    """The distance threshold that flags at most `max_flagged` of these cassava photos (photos it was not fitted on),
    midway between the last photo flagged and the first one let through (above the farthest photo by a quarter of
    its excess over the median when none may be flagged), so that a variant's slightly different features do not
    tip a photo over; scaled so that the median cassava photo's logit is -4 (a probability of 0.018)."""
    ranked = np.sort(np.asarray(cassava_distances, np.float64))[::-1]
    median = float(np.median(ranked))
    allowed = int(np.floor(max_flagged * len(ranked)))
    if allowed == 0:
        threshold = float(ranked[0] + (ranked[0] - median) / 4)
    else:
        threshold = float((ranked[allowed - 1] + ranked[allowed]) / 2) if allowed < len(ranked) else float(ranked[-1])
    spread = max(threshold - median, 1e-6)
    return GaussianDistance(distance.mean, distance.components, distance.inverse_variances,
                            distance.inverse_tail_variance, threshold, 4.0 / spread)


def strip_head(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `proto` without what append_head added, so that a calibrated file can be calibrated again."""
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    keep_nodes = [n for n in copy.graph.node if not n.name.startswith(HEAD_PREFIX)]
    keep_inits = [i for i in copy.graph.initializer if not i.name.startswith(HEAD_PREFIX)]
    keep_outputs = [o for o in copy.graph.output if o.name != NOT_CASSAVA_NAME]
    for field, kept in ((copy.graph.node, keep_nodes), (copy.graph.initializer, keep_inits),
                        (copy.graph.output, keep_outputs)):
        del field[:]
        field.extend(kept)
    return copy


def append_head(proto: onnx.ModelProto, weights: np.ndarray, bias: float,
                distance: GaussianDistance | None = None) -> onnx.ModelProto:
    """`proto` plus the output NOT_CASSAVA_NAME, shape (batch, 1), float32: features @ weights + bias, or with
    `distance` the larger of that and distance.logits(features)."""
    if any(output.name == NOT_CASSAVA_NAME for output in proto.graph.output):
        raise ExportError(f"the graph already has an output {NOT_CASSAVA_NAME}")
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    features = _features_of(copy)
    p = HEAD_PREFIX
    w_name, b_name, cast = f"{p}weights", f"{p}bias", f"{p}features"
    linear = NOT_CASSAVA_NAME if distance is None else f"{p}linear_logit"
    copy.graph.initializer.extend([
        numpy_helper.from_array(weights.astype(np.float32).reshape(-1, 1), w_name),
        numpy_helper.from_array(np.array([bias], np.float32), b_name),
    ])
    copy.graph.node.extend([
        helper.make_node("Cast", [features], [cast], to=TensorProto.FLOAT, name=f"{p}cast"),
        helper.make_node("Gemm", [cast, w_name, b_name], [linear], name=f"{p}head"),
    ])
    if distance is not None:
        _append_distance(copy, cast, linear, distance)
    copy.graph.output.append(helper.make_tensor_value_info(NOT_CASSAVA_NAME, TensorProto.FLOAT, ["batch", 1]))
    # No onnx.checker here: the fp16 converter lists its input Cast last, which the checker calls unsorted although
    # onnxruntime runs it; export.calibrate loads every file it writes with the runtime instead.
    return copy


def _append_distance(model: onnx.ModelProto, features: str, linear: str, distance: GaussianDistance) -> None:
    """NOT_CASSAVA_NAME = Max(linear, scale * (distance(features) - threshold)), in standard ONNX operators."""
    p = HEAD_PREFIX
    constants = {
        "mean": distance.mean.reshape(1, -1), "components": distance.components,
        "inverse_variances": distance.inverse_variances.reshape(1, -1),
        "inverse_tail": np.array([distance.inverse_tail_variance]), "threshold": np.array([distance.threshold]),
        "scale": np.array([distance.scale]),
    }
    model.graph.initializer.extend(numpy_helper.from_array(value.astype(np.float32), f"{p}{name}")
                                   for name, value in constants.items())
    axes = f"{p}axes"
    model.graph.initializer.append(numpy_helper.from_array(np.array([1], np.int64), axes))
    mean, components, inverse_variances, inverse_tail, threshold, scale = (f"{p}{name}" for name in constants)

    def node(op: str, inputs: list[str], output: str) -> str:
        """One node named after its output (HEAD_PREFIX + output); returns the output's name."""
        model.graph.node.append(helper.make_node(op, inputs, [f"{p}{output}"], name=f"{p}{output}_node"))
        return f"{p}{output}"

    x = node("Sub", [features, mean], "centred")
    z2 = node("Mul", [node("MatMul", [x, components], "projected")] * 2, "projected_sq")
    leading = node("ReduceSum", [node("Mul", [z2, inverse_variances], "scaled_sq"), axes], "leading")
    total = node("ReduceSum", [node("Mul", [x, x], "centred_sq"), axes], "total_sq")
    rest = node("Sub", [total, node("ReduceSum", [z2, axes], "projected_total")], "tail_sq")
    dist = node("Add", [leading, node("Mul", [rest, inverse_tail], "tail")], "distance")
    logit = node("Mul", [node("Sub", [dist, threshold], "over"), scale], "distance_logit")
    model.graph.node.append(helper.make_node("Max", [linear, logit], [NOT_CASSAVA_NAME], name=f"{p}max"))


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
