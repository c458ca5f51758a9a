"""Joined exports at the ONNX level: one member of a joined file taken out as a model of its own, and members
that exist only as ONNX files joined into one graph (`join_graphs`).

A joined file holds each member's whole graph (`export.source.join_models` names them member_0, member_1, … and
averages their Softmax outputs), and its metadata records each member's checkpoint, training config and figures. So
a member can be exported again from the joined file alone, weights unchanged, when its Keras checkpoint is not at
hand: `python -m export JOINED.onnx --member N ...`; and such a file (or any exported model) can be joined again
with a new checkpoint: `python -m export RUN --join MODEL.onnx ...`. Nothing here needs TensorFlow.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx.compose
from onnx import helper
from onnx.utils import Extractor

from cassava_edge.contract import OUTPUT_NAME
from cassava_edge.metadata import CASSAVA_LABELS
from cassava_edge.errors import ModelError
from .errors import InputError
from .onnxfile import BATCH_DIM, name_batch_dimension, read_metadata
from .parity import TOLERANCE, check_against


MEMBER_PREFIX = "member_"


def joined_members(path: Path) -> list[dict[str, Any]]:
    """The members a joined file's metadata records (checkpoint, training_config, validation_metrics), in order."""
    try:
        meta = read_metadata(path)
    except ModelError as exc:
        raise InputError(str(exc)) from None
    members = meta.provenance.get("members")
    if not isinstance(members, list) or len(members) < 2:
        raise InputError(f"{path}: not a joined model (its metadata records no members; export one with --join)")
    return members


def member_softmax(proto: onnx.ModelProto, index: int) -> str:
    """The output tensor of member `index`'s Softmax."""
    softmaxes = [node for node in proto.graph.node if node.op_type == "Softmax"]
    # join_graphs puts each member's whole graph under member_N/, and a member's own names may name other members
    # (one taken out of an earlier Keras join keeps joined_1/member_1_1/...): the leading prefix decides first.
    found = [node.output[0] for node in softmaxes if node.name.startswith(f"{MEMBER_PREFIX}{index}/")]
    if not found:  # a Keras join (join_models) names them joined_N/member_N_M/...
        pattern = re.compile(rf"(^|/){MEMBER_PREFIX}{index}(_\d+)?/")
        found = [node.output[0] for node in softmaxes if pattern.search(node.name)]
    if len(found) != 1:
        raise InputError(f"member {index}: expected one Softmax under member_{index}/ in the graph, found {len(found)}")
    return found[0]


def member_graph(proto: onnx.ModelProto, index: int) -> onnx.ModelProto:
    """Member `index` alone: from the joined graph's input to that member's probabilities (renamed to the
    contract's output), without the other members, the mean or the not-cassava head (calibrate fits a new one)."""
    softmax = member_softmax(proto, index)
    input_name = proto.graph.input[0].name
    # The Extractor finds tensors by their inferred types, which a saved graph keeps only for its inputs and outputs.
    extracted = Extractor(onnx.shape_inference.infer_shapes(proto)).extract_model([input_name], [softmax])
    for node in extracted.graph.node:
        node.output[:] = [OUTPUT_NAME if name == softmax else name for name in node.output]
    extracted.graph.output[0].name = OUTPUT_NAME
    del extracted.metadata_props[:]
    extracted.graph.name = f"member_{index}"
    name_batch_dimension(extracted)
    onnx.checker.check_model(extracted)
    return extracted


def probabilities_graph(proto: onnx.ModelProto, output: str) -> onnx.ModelProto:
    """An exported model's classifier alone: from its input to its probabilities (`output`), without the
    not-cassava head or any other output (calibrate fits a new head for the model it joins)."""
    input_name = proto.graph.input[0].name
    extracted = Extractor(onnx.shape_inference.infer_shapes(proto)).extract_model([input_name], [output])
    del extracted.metadata_props[:]
    name_batch_dimension(extracted)
    return extracted


def join_graphs(graphs: list[onnx.ModelProto]) -> onnx.ModelProto:
    """One graph answering the mean of `graphs`' probabilities (one input, one output each, the same crop): member
    N's nodes, tensors and weights renamed under member_N/ (where `--member N` finds them), all reading the first
    graph's input. The ONNX-level twin of source.join_models, for members that exist only as ONNX files."""
    shapes = {tuple(d.dim_value for d in g.graph.input[0].type.tensor_type.shape.dim[1:]) for g in graphs}
    if len(shapes) != 1:
        raise InputError(f"joined models must take the same crop; their inputs are {sorted(shapes)}")
    shared = graphs[0].graph.input[0]
    nodes: list[onnx.NodeProto] = []
    initialisers: list[onnx.TensorProto] = []
    outputs: list[str] = []
    opsets: dict[str, int] = {}
    for index, graph in enumerate(graphs):
        prefixed = onnx.compose.add_prefix(graph, f"{MEMBER_PREFIX}{index}/")
        own_input = prefixed.graph.input[0].name
        for node in prefixed.graph.node:
            node.input[:] = [shared.name if name == own_input else name for name in node.input]
        nodes += prefixed.graph.node
        initialisers += prefixed.graph.initializer
        outputs.append(prefixed.graph.output[0].name)
        for opset in graph.opset_import:
            opsets[opset.domain] = max(opsets.get(opset.domain, 0), opset.version)
    nodes.append(helper.make_node("Mean", outputs, [OUTPUT_NAME], name="joined/mean"))
    output = helper.make_tensor_value_info(OUTPUT_NAME, onnx.TensorProto.FLOAT, [BATCH_DIM, len(CASSAVA_LABELS)])
    graph = helper.make_graph(nodes, "joined", [shared], [output], initialisers)
    joined = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in sorted(opsets.items())],
                               ir_version=graphs[0].ir_version)
    onnx.checker.check_model(joined)
    return joined


def check_member_parity(joined: onnx.ModelProto, index: int, member_path: Path, inputs: np.ndarray,
                        tolerance: float = TOLERANCE) -> float:
    """The largest difference between the member file's probabilities and the same member's inside the joined
    graph, on the same float32 NHWC `inputs`; ParityError above `tolerance` (the weights are the same, so a
    correct extraction differs by nothing but float summation order)."""
    import onnxruntime as ort

    softmax = member_softmax(joined, index)
    probe = onnx.ModelProto()
    probe.CopyFrom(joined)
    probe.graph.output.append(helper.make_tensor_value_info(softmax, onnx.TensorProto.FLOAT, None))
    inputs = np.ascontiguousarray(inputs, dtype=np.float32)
    expected = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        [softmax], {joined.graph.input[0].name: inputs})[0]
    return check_against(expected, f"member {index} inside the joined graph", member_path, inputs, tolerance)
