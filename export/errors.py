"""Export errors. The CLI turns InputError into exit code 2 and the other ExportErrors into exit code 1."""

from __future__ import annotations


class ExportError(Exception):
    """An export that cannot go on; the message is one line meant for the person running it."""


class InputError(ExportError):
    """Something the user passed is unusable: a missing file or folder, a model that breaks the contract."""


class ParityError(ExportError):
    """The ONNX model does not compute what the Keras model computes."""


class VariantRefused(ExportError):
    """A requested variant loses too much accuracy; the other files were still written."""
