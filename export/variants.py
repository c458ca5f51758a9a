"""fp16 and int8 variants of an fp32 ONNX file. Measuring and choosing between them is in pipeline.py."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from .onnxfile import name_batch_dimension

CALIBRATION_BATCH = 4


def to_fp16(fp32_path: Path, out_path: Path) -> onnx.ModelProto:
    """Weights and activations in float16, inputs and outputs kept float32 (so callers do not change)."""
    try:  # the standalone package is newer when installed; onnxruntime ships a copy
        from onnxconverter_common.float16 import convert_float_to_float16
    except ImportError:
        from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True)
    name_batch_dimension(model)
    onnx.save(model, str(out_path))
    return model


@dataclass(frozen=True)
class Int8Config:
    """One way of quantising: operator format, per-channel weights or not, activation and weight types."""

    quant_format: str  # "qdq" (QuantizeLinear/DequantizeLinear pairs) or "qoperator" (QLinearConv, ...)
    per_channel: bool
    activations: str  # "s8" or "u8"
    # 7-bit weights. x86 CPUs without AVX-512 VNNI multiply u8 activations by s8 weights with VPMADDUBSW, which
    # adds two products into a saturating int16: 2 * 255 * 127 overflows it, 2 * 255 * 63 cannot. With reduce_range
    # the result is the same on every x86 CPU, by construction, not only on the one it was measured on.
    reduce_range: bool = False
    # u8 weights with u8 activations (U8U8): onnxruntime's x86 kernels widen both to 16 bits before multiplying,
    # so nothing saturates either, and the weights keep all 8 bits.
    weights: str = "s8"
    # Depthwise convolutions stay float: a 3x3 filter per channel has too few weights to average out rounding,
    # and Lite0's depthwise layers gain little from int8 kernels while costing most of its int8 error.
    float_depthwise: bool = False

    @property
    def name(self) -> str:
        granularity = "per-channel" if self.per_channel else "per-tensor"
        name = f"{self.quant_format}-{self.activations}{self.weights}-{granularity}"
        return name + ("-reduce-range" if self.reduce_range else "") + ("-float-depthwise" if self.float_depthwise else "")

    @property
    def portable(self) -> bool:
        """Standard ONNX operators only (QuantizeLinear/DequantizeLinear around float ops), so OpenVINO,
        TensorRT and OpenCV DNN load the file too; QOperator files use com.microsoft operators."""
        return self.quant_format == "qdq"

    @property
    def vnni_independent(self) -> bool:
        """Gives the same integers on every x86 CPU: no u8 x s8 product pairs that can saturate without VNNI."""
        return self.reduce_range or self.weights == "u8"


# QDQ with int8 activations is onnxruntime's recommended default; uint8 activations (U8S8) are what older x86
# kernels are fastest with, and the QOperator format is only offered with them because onnxruntime's x86 kernels
# for QOperator S8S8 are its slow path.
INT8_CONFIGS: tuple[Int8Config, ...] = (
    *(Int8Config(fmt, per_channel, act)
      for fmt, act in (("qdq", "s8"), ("qdq", "u8"), ("qoperator", "u8"))
      for per_channel in (True, False)),
    Int8Config("qdq", True, "u8", weights="u8"),
    Int8Config("qdq", True, "u8", reduce_range=True),
    Int8Config("qdq", True, "s8", reduce_range=True),
    Int8Config("qdq", True, "s8", reduce_range=True, float_depthwise=True),
    Int8Config("qdq", True, "u8", reduce_range=True, float_depthwise=True),
)
# What an export tries unless told otherwise: portable files whose results do not depend on VNNI.
DEFAULT_INT8_CONFIGS: tuple[Int8Config, ...] = tuple(c for c in INT8_CONFIGS if c.portable and c.vnni_independent)


def nonstandard_ops(model: onnx.ModelProto) -> list[str]:
    """Operator types outside the standard ONNX domain (e.g. com.microsoft.QLinearAdd), sorted."""
    return sorted({f"{n.domain}.{n.op_type}" for n in model.graph.node if n.domain not in ("", "ai.onnx")})


def int8_config(name: str) -> Int8Config:
    for config in INT8_CONFIGS:
        if config.name == name:
            return config
    raise ValueError(f"unknown int8 configuration {name!r}; choose from {', '.join(c.name for c in INT8_CONFIGS)}")


def depthwise_convs(model: onnx.ModelProto) -> list[str]:
    """Names of the Conv nodes with one group per input channel (depthwise)."""
    shapes = {init.name: list(init.dims) for init in model.graph.initializer}
    found = []
    for node in model.graph.node:
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        weight = shapes.get(node.input[1]) if node.op_type == "Conv" and len(node.input) > 1 else None
        if weight and group > 1 and group == weight[0] and weight[1] == 1:
            found.append(node.name)
    return found


def prepare_for_quantization(fp32_path: Path, out_path: Path) -> Path:
    """onnxruntime's recommended pre-processing: shape inference and graph optimisation, which fuses patterns
    the quantiser would otherwise quantise piece by piece."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(fp32_path), str(out_path), skip_symbolic_shape=True)
    return out_path


def quantize_int8(prepared_path: Path, out_path: Path, config: Int8Config, calibration: np.ndarray,
                  cache_path: Path) -> None:
    """Static quantisation calibrated on `calibration` crops (uint8 or float 0..255, NHWC).

    The activation ranges are computed once per export and kept in `cache_path`: every configuration uses the
    same ranges, so only the first call runs the calibration model.
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    model = onnx.load(str(prepared_path), load_external_data=False)
    input_name = model.graph.input[0].name
    # The final Softmax stays in float: quantised, probabilities would come in steps of 1/256.
    keep_float = [node.name for node in model.graph.node if node.op_type == "Softmax"]
    if config.float_depthwise:
        keep_float += depthwise_convs(model)

    class Crops(CalibrationDataReader):
        def __init__(self) -> None:
            self._start = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self._start >= len(calibration):
                return None
            batch = calibration[self._start : self._start + CALIBRATION_BATCH]
            self._start += CALIBRATION_BATCH
            return {input_name: np.ascontiguousarray(batch, dtype=np.float32)}

    activation = QuantType.QInt8 if config.activations == "s8" else QuantType.QUInt8
    quantize_static(
        str(prepared_path),
        str(out_path),
        Crops(),
        quant_format=QuantFormat.QDQ if config.quant_format == "qdq" else QuantFormat.QOperator,
        per_channel=config.per_channel,
        activation_type=activation,
        weight_type=QuantType.QInt8 if config.weights == "s8" else QuantType.QUInt8,
        nodes_to_exclude=keep_float,
        reduce_range=config.reduce_range,
        # No CalibMaxIntermediateOutputs: the calibrator only keeps per-batch minima and maxima, and that option
        # drops the collected batches instead of merging them (onnxruntime 1.32).
        calibration_cache_path=str(cache_path),
    )
    quantized = onnx.load(str(out_path))
    name_batch_dimension(quantized)
    onnx.save(quantized, str(out_path))
