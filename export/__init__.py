"""Keras checkpoint -> self-describing ONNX files (fp32, and fp16/int8 variants), parity-checked.

TensorFlow is imported only inside the functions that need it, so `python -m export --help` and the checks of the
command-line arguments stay fast. Entry points: `export.pipeline.export_model` and `export.parity.check_parity`.
"""

from .errors import ExportError, InputError, ParityError, VariantRefused

__all__ = ["ExportError", "InputError", "ParityError", "VariantRefused"]
