"""Keras -> ONNX conversion and writing ONNX files with their cassava-edge metadata."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnx

from cassava_edge.metadata import ModelMetadata
from cassava_edge.modelfile import read_metadata_props
from .errors import ExportError

OPSET = 17
BATCH_DIM = "batch"


def keras_to_onnx(model: Any, input_name: str) -> onnx.ModelProto:
    """Convert with tf2onnx.from_keras: dynamic batch, the model's fixed crop size, opset 17.

    from_keras (not from_function, not Keras' own ONNX export) because the other two turn the Normalization
    layer's mean and variance into extra graph inputs.
    """
    import tensorflow as tf
    import tf2onnx

    _, height, width, channels = model.inputs[0].shape
    spec = tf.TensorSpec((None, height, width, channels), tf.float32, name=input_name)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=[spec], opset=OPSET)
    if [i.name for i in proto.graph.input] != [input_name] or len(proto.graph.output) != 1:
        raise ExportError(f"tf2onnx produced inputs {[i.name for i in proto.graph.input]} and "
                          f"{len(proto.graph.output)} outputs; expected only {input_name!r} and one output")
    name_batch_dimension(proto)
    return proto


def name_batch_dimension(proto: onnx.ModelProto) -> None:
    """tf2onnx names the dynamic batch dimension unk__NNN; one readable name on input and output."""
    for value in (*proto.graph.input, *proto.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        if not dim.HasField("dim_value"):
            dim.dim_param = BATCH_DIM


def io_names(proto: onnx.ModelProto) -> tuple[str, str]:
    return proto.graph.input[0].name, proto.graph.output[0].name


def save_with_metadata(proto: onnx.ModelProto, path: Path, metadata: ModelMetadata) -> int:
    """Write `proto` with `metadata` to `path`; returns the file size.

    If the provenance has a ``measured.file_size_bytes`` entry it is set to the size of the file as written
    (the size includes the metadata, so it is found by re-serialising until the number stops changing).
    """
    metadata.validate(str(path))
    measured = metadata.provenance.get("measured")
    for _ in range(5):
        del proto.metadata_props[:]
        onnx.helper.set_model_props(proto, metadata.to_onnx_props())
        size = proto.ByteSize()
        if not isinstance(measured, dict) or measured.get("file_size_bytes") == size:
            break
        measured["file_size_bytes"] = size
    onnx.save(proto, str(path))
    return path.stat().st_size


def read_metadata(path: Path) -> ModelMetadata:
    """Read the metadata back with the runtime's own reader and parser, so a file that passes here loads there."""
    return ModelMetadata.from_onnx_props(read_metadata_props(path), source=str(path))


def jsonable(value: Any) -> Any:
    """Round-trip through JSON so numpy scalars and Paths become plain JSON values."""
    return json.loads(json.dumps(value, default=_to_json))


def _to_json(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalar
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
