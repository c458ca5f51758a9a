"""One member of a joined export (`python -m export --join`), taken out as a model of its own.

A joined file holds each member's whole graph (`export.source.join_models` names them member_0, member_1, … and
averages their Softmax outputs), and its metadata records each member's checkpoint, training config and figures. So
a member can be exported again from the joined file alone, weights unchanged, when its Keras checkpoint is not at
hand: `python -m export JOINED.onnx --member N ...`. Nothing here needs TensorFlow.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper
from onnx.utils import Extractor

from cassava_edge.contract import OUTPUT_NAME
from cassava_edge.errors import ModelError
from .errors import InputError
from .onnxfile import name_batch_dimension, read_metadata
from .parity import TOLERANCE, check_against


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
    pattern = re.compile(rf"(^|/)member_{index}(_\d+)?/")
    found = [node.output[0] for node in proto.graph.node if node.op_type == "Softmax" and pattern.search(node.name)]
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
