"""Reading an ONNX file's `metadata_props` without the `onnx` package and without loading the graph.

Choosing between model variants in a folder needs each file's metadata; an onnxruntime session per candidate
would load every file's weights. An ONNX file is a protobuf `ModelProto`, so walking its top-level fields and
skipping the graph by its length prefix reads the few bytes that matter.
"""

from __future__ import annotations

import mmap
from pathlib import Path

from cassava_edge.errors import ModelError

_GRAPH_FIELD = 7  # ModelProto.graph
_METADATA_PROPS_FIELD = 14  # ModelProto.metadata_props (StringStringEntryProto: key = 1, value = 2)


class _NotProtobuf(Exception):
    pass


def read_metadata_props(path: Path) -> dict[str, str]:
    """The `metadata_props` of the ONNX model at `path`; ModelError if it is missing or not an ONNX model."""
    try:
        with open(path, "rb") as handle:
            if handle.seek(0, 2) == 0:
                raise ModelError(f"{path}: empty file, not an ONNX model")
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
                return _metadata_props(data, path)
    except FileNotFoundError:
        raise ModelError(f"{path}: no such model file") from None
    except IsADirectoryError:
        raise ModelError(f"{path}: is a directory, not a model file") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read it ({exc.strerror or exc})") from None


def _metadata_props(data: mmap.mmap | bytes, path: Path) -> dict[str, str]:
    props: dict[str, str] = {}
    seen_graph = False
    try:
        for field, value in _fields(data, 0, len(data)):
            if field == _GRAPH_FIELD:
                seen_graph = True
            elif field == _METADATA_PROPS_FIELD and isinstance(value, tuple):
                entry = {number: bytes(data[start:end]) for number, (start, end) in _length_fields(data, *value)}
                props[entry.get(1, b"").decode("utf-8")] = entry.get(2, b"").decode("utf-8")
    except (_NotProtobuf, UnicodeDecodeError):
        raise ModelError(f"{path}: not an ONNX model (cannot parse it as an ONNX protobuf)") from None
    if not seen_graph:
        raise ModelError(f"{path}: not an ONNX model (no graph)")
    return props


def _length_fields(data: mmap.mmap | bytes, start: int, end: int) -> list[tuple[int, tuple[int, int]]]:
    return [(field, value) for field, value in _fields(data, start, end) if isinstance(value, tuple)]


def _fields(data: mmap.mmap | bytes, pos: int, end: int):
    """Yield (field number, value) of a protobuf message in data[pos:end]; length-delimited values are (start, end)."""
    while pos < end:
        key, pos = _varint(data, pos, end)
        field, wire_type = key >> 3, key & 7
        if field == 0:
            raise _NotProtobuf
        if wire_type == 0:
            value, pos = _varint(data, pos, end)
            yield field, value
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        elif wire_type == 2:
            length, pos = _varint(data, pos, end)
            if pos + length > end:
                raise _NotProtobuf
            yield field, (pos, pos + length)
            pos += length
        else:
            raise _NotProtobuf
    if pos != end:
        raise _NotProtobuf


def _varint(data: mmap.mmap | bytes, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _NotProtobuf
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
