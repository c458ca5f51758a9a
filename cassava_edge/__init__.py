"""cassava-edge: cassava leaf disease classification with ONNX models on onnxruntime (no TensorFlow at run time).

The API is imported on first use (PEP 562), so `import cassava_edge.metadata` (done by export/ and training/)
does not need onnxruntime, which is an optional extra (cpu or gpu flavour).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Classifier": "cassava_edge.classifier",
    "Classification": "cassava_edge.results",
    "PreparedImage": "cassava_edge.results",
    "ViewProbabilities": "cassava_edge.results",
    "load_image": "cassava_edge.imaging",
    "CassavaEdgeError": "cassava_edge.errors",
    "ImageError": "cassava_edge.errors",
    "ModelError": "cassava_edge.errors",
    "OptionError": "cassava_edge.errors",
    "ProviderError": "cassava_edge.errors",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from cassava_edge.classifier import Classifier
    from cassava_edge.errors import CassavaEdgeError, ImageError, ModelError, OptionError, ProviderError
    from cassava_edge.imaging import load_image
    from cassava_edge.results import Classification, PreparedImage, ViewProbabilities


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cassava_edge' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value
