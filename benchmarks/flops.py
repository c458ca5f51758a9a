"""FLOPs of an ONNX graph for one input (batch 1), counted from the graph itself with `onnx` shape inference.

What is counted, and how:

- multiply-accumulates (MACs) of Conv (grouped and depthwise included), ConvTranspose, MatMul and Gemm, and of
  their quantised forms (QLinearConv, ConvInteger, QLinearMatMul, MatMulInteger, onnxruntime's QGemm; a
  QDQ-wrapped Conv is a plain Conv) — a quantised model has the same MACs as its fp32 original. FLOPs = 2 x MACs.
- elementwise, activation, normalisation, pooling and softmax ops are counted apart, at one FLOP per output
  element (per input element for reductions and pools). That is rough, so it is kept out of the headline figure.
- anything else (Reshape, Transpose, Cast, Quantize/DequantizeLinear, ...) counts as zero.

Nodes whose shapes inference cannot tell (unknown dims, ops from other domains) are listed as uncounted rather
than guessed. Subgraphs (If, Loop) are not walked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# op type -> index of the weight input whose shape [out, in/group, k...] gives the MACs per output element
_CONV_WEIGHT_INPUT = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3, "FusedConv": 1}
# op type -> index of input B; input 0 is A, whose last dim is K (MatMul) or K per transA (Gemm)
_MATMUL_B_INPUT = {"MatMul": 1, "MatMulInteger": 1, "QLinearMatMul": 3}
_GEMM_B_INPUT = {"Gemm": 1, "QGemm": 3}  # QGemm: onnxruntime's com.microsoft quantised Gemm
_ELEMENTWISE_OPS = {
    "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Exp", "Log", "Neg", "Reciprocal", "Abs", "Max", "Min", "Sum",
    "Relu", "LeakyRelu", "PRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Erf", "Elu", "Selu",
    "Gelu", "Swish", "Softmax", "LogSoftmax", "BatchNormalization", "InstanceNormalization",
    "LayerNormalization", "QLinearAdd", "QLinearMul", "QLinearSigmoid", "QLinearLeakyRelu",
}
_REDUCING_OPS = {
    "GlobalAveragePool", "GlobalMaxPool", "AveragePool", "MaxPool", "ReduceMean", "ReduceSum", "ReduceMax",
    "QLinearGlobalAveragePool", "QLinearAveragePool",
}

Shape = tuple[int, ...]


@dataclass
class FlopCount:
    macs: int = 0  # Conv/MatMul/Gemm multiply-accumulates for one input
    elementwise_flops: int = 0  # the rough count of everything else, see the module docstring
    macs_by_op: dict[str, int] = field(default_factory=dict)
    uncounted: list[str] = field(default_factory=list)  # "OpType node_name" whose shapes were unknown

    @property
    def flops(self) -> int:
        """2 x MACs: the headline figure, used for GFLOP/s."""
        return 2 * self.macs

    def to_dict(self) -> dict[str, Any]:
        return {
            "gflop_per_view": self.flops / 1e9,
            "macs_per_view": self.macs,
            "macs_by_op": dict(self.macs_by_op),
            "elementwise_gflop_per_view": self.elementwise_flops / 1e9,
            "uncounted_nodes": list(self.uncounted),
            "counted": "2 x MACs of Conv/ConvTranspose/MatMul/Gemm (quantised forms included); "
            "elementwise ops reported apart, at 1 FLOP per element",
        }


def count_flops(model_path: str | Path) -> FlopCount:
    """The FLOPs of the ONNX model at `model_path` for one input (the batch dimension is fixed to 1)."""
    import onnx

    return count_model_flops(onnx.load(str(model_path)))


def count_model_flops(model: Any) -> FlopCount:
    """As `count_flops`, for an `onnx.ModelProto` (it is copied, not changed)."""
    import onnx

    model = onnx.ModelProto.FromString(model.SerializeToString())
    initializers = {tensor.name: tuple(tensor.dims) for tensor in model.graph.initializer}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        if len(dims) and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1  # the symbolic batch dimension; setting dim_value clears dim_param
    _sort_topologically(model.graph)
    graph, shapes = _infer_shapes(model)
    shapes.update(initializers)

    count = FlopCount()
    for node in graph.node:
        inputs = [shapes.get(name) if name else None for name in node.input]
        output = shapes.get(node.output[0]) if node.output else None
        macs = _node_macs(node, inputs, output)
        if macs is None:
            count.uncounted.append(f"{node.op_type} {node.name}".strip())
            continue
        if macs:
            count.macs += macs
            count.macs_by_op[node.op_type] = count.macs_by_op.get(node.op_type, 0) + macs
        count.elementwise_flops += _elementwise_flops(node.op_type, inputs, output)
    return count


def _sort_topologically(graph: Any) -> None:
    """Put nodes in dependency order. onnx shape inference walks nodes as listed, and onnxruntime's fp16 converter
    appends its input Cast at the end, which would leave every shape after it unknown."""
    available = {value.name for value in graph.input} | {tensor.name for tensor in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [node for node in pending if all(name in available for name in node.input)]
        if not ready:  # a cycle or a dangling input: keep the rest as listed
            ordered += pending
            break
        for node in ready:
            available.update(node.output)
        ordered += ready
        pending = [node for node in pending if node not in ready]
    copies = [type(node).FromString(node.SerializeToString()) for node in ordered]
    del graph.node[:]
    graph.node.extend(copies)


def _infer_shapes(model: Any) -> tuple[Any, dict[str, Shape]]:
    """onnx shape inference, helped past onnxruntime's contrib ops (QLinearAdd, QLinearGlobalAveragePool, ...).

    onnx does not know com.microsoft ops, so everything after the first one would stay unknown in a QOperator
    model. Each round infers what onnx can, adds the output shapes of the contrib ops whose inputs are now known,
    and infers again, until nothing new is learnt.
    """
    from onnx import helper, shape_inference

    for _ in range(len(model.graph.node) + 1):
        inferred = shape_inference.infer_shapes(model, data_prop=True)
        shapes = _known_shapes(inferred.graph)
        shapes.update({tensor.name: tuple(tensor.dims) for tensor in inferred.graph.initializer})
        types = _known_types(inferred.graph)
        added = []
        for node in inferred.graph.node:
            if node.domain != "com.microsoft" or not node.output or node.output[0] in shapes:
                continue
            shape = _contrib_output_shape(node, [shapes.get(name) if name else None for name in node.input])
            if shape is not None:
                # QLinear ops keep their input's quantised type; later contrib ops in this round may need both.
                elem_type = types.setdefault(node.output[0], types.get(node.input[0], 2))  # 2 = uint8
                shapes[node.output[0]] = shape
                added.append(helper.make_tensor_value_info(node.output[0], elem_type, list(shape)))
        if not added:
            return inferred.graph, shapes
        model.graph.value_info.extend(added)
    return inferred.graph, shapes


def _contrib_output_shape(node: Any, inputs: list[Shape | None]) -> Shape | None:
    """Output shape of the com.microsoft ops a quantised CNN uses; None for the others."""
    import numpy as np

    op = node.op_type
    if op in ("QLinearAdd", "QLinearMul"):  # inputs: A, A scale, A zero point, B, ...
        a, b = inputs[0], _input(inputs, 3)
        return None if a is None or b is None else tuple(np.broadcast_shapes(a, b))
    if op in ("QLinearSigmoid", "QLinearLeakyRelu", "QLinearSoftmax"):
        return inputs[0]
    if op == "QLinearGlobalAveragePool" and inputs[0] is not None:
        shape = inputs[0]
        if _attribute(node, "channels_last", 0):
            return (shape[0], *([1] * (len(shape) - 2)), shape[-1])
        return (shape[0], shape[1], *([1] * (len(shape) - 2)))
    if op == "QGemm":
        dims = _gemm_dims(node, inputs)
        return None if dims is None else (dims[0], dims[2])
    return None


def _known_shapes(graph: Any) -> dict[str, Shape]:
    shapes: dict[str, Shape] = {}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        tensor_type = value.type.tensor_type
        if not tensor_type.HasField("shape"):
            continue
        dims = tensor_type.shape.dim
        if all(dim.HasField("dim_value") for dim in dims):
            shapes[value.name] = tuple(int(dim.dim_value) for dim in dims)
    return shapes


def _known_types(graph: Any) -> dict[str, int]:
    return {value.name: value.type.tensor_type.elem_type for value in [*graph.input, *graph.value_info, *graph.output]}


def _attribute(node: Any, name: str, default: int) -> int:
    for attribute in node.attribute:
        if attribute.name == name:
            return int(attribute.i)
    return default


def _node_macs(node: Any, inputs: list[Shape | None], output: Shape | None) -> int | None:
    """MACs of one node; 0 for ops that have none; None when they should be counted but shapes are unknown."""
    op = node.op_type
    if op in _CONV_WEIGHT_INPUT:
        index = _CONV_WEIGHT_INPUT[op]
        weight = _input(inputs, index)
        if weight is None or output is None:
            return None
        # weight is [out_channels, in_channels / group, k...]: each output element sums over weight[1:].
        return math.prod(output) * math.prod(weight[1:])
    if op == "ConvTranspose":
        weight = _input(inputs, 1)
        if weight is None or inputs[0] is None:
            return None
        # weight is [in_channels, out_channels / group, k...]: each input element is scattered over weight[1:].
        return math.prod(inputs[0]) * math.prod(weight[1:])
    if op in _MATMUL_B_INPUT:
        a, b = inputs[0], _input(inputs, _MATMUL_B_INPUT[op])
        if a is None:
            return None
        if output is not None:
            return math.prod(output) * a[-1]
        if b is not None and len(b) == 2:  # output shape unknown (after a contrib op): A [..., K] x B [K, N]
            return math.prod(a) * b[1]
        return None
    if op in _GEMM_B_INPUT:
        dims = _gemm_dims(node, inputs)
        return None if dims is None else math.prod(dims)
    return 0


def _gemm_dims(node: Any, inputs: list[Shape | None]) -> tuple[int, int, int] | None:
    """(rows, inner, columns) of a Gemm or QGemm from its A and B shapes and transA/transB."""
    a, b = inputs[0], _input(inputs, _GEMM_B_INPUT[node.op_type])
    if a is None or b is None:
        return None
    rows, inner = (a[1], a[0]) if _attribute(node, "transA", 0) else (a[0], a[1])
    columns = b[0] if _attribute(node, "transB", 0) else b[1]
    return rows, inner, columns


def _input(inputs: list[Shape | None], index: int) -> Shape | None:
    return inputs[index] if index < len(inputs) else None


def _elementwise_flops(op: str, inputs: list[Shape | None], output: Shape | None) -> int:
    if op in _ELEMENTWISE_OPS and output is not None:
        return math.prod(output)
    if op in _REDUCING_OPS and inputs and inputs[0] is not None:
        return math.prod(inputs[0])
    return 0
