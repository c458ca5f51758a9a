"""Does the ONNX file compute what the Keras model computes? Checked on every export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .errors import ParityError
from .measure import onnx_probabilities

TOLERANCE = 1e-4  # largest allowed |softmax difference|; a correct fp32 conversion stays around 1e-6


def check_parity(keras_model: Any, onnx_path: str | Path, inputs: np.ndarray, tolerance: float = TOLERANCE) -> float:
    """Run Keras and onnxruntime on the same float32 NHWC `inputs`; return the largest softmax difference.

    Raises ParityError when it exceeds `tolerance` (or is not a number).
    """
    inputs = np.ascontiguousarray(inputs, dtype=np.float32)
    expected = np.asarray(keras_model.predict(inputs, batch_size=16, verbose=0), dtype=np.float32)
    return check_against(expected, "Keras", onnx_path, inputs, tolerance)


def check_against(expected: np.ndarray, source: str, onnx_path: str | Path, inputs: np.ndarray,
                  tolerance: float = TOLERANCE) -> float:
    """The largest difference between `expected` (what `source` answers on `inputs`) and the ONNX file's answers on
    the same inputs, through the runtime's session; ParityError when the shapes differ or it exceeds `tolerance`."""
    got = onnx_probabilities(onnx_path, inputs)
    if expected.shape != got.shape:
        raise ParityError(f"{onnx_path}: output shape {got.shape} differs from {source}'s {expected.shape}")
    difference = float(np.max(np.abs(expected - got))) if len(inputs) else 0.0
    if not np.isfinite(difference) or difference > tolerance:
        raise ParityError(
            f"{onnx_path}: ONNX and {source} disagree: largest softmax difference {difference:.3g} exceeds "
            f"{tolerance:g} on {len(inputs)} inputs"
        )
    return difference
