"""Optional dependencies, imported on first use, so that a missing extra is one line naming its install command.

The base install (numpy, OpenCV, click) has no onnxruntime: it comes in one of two flavours (the `cpu` and `gpu`
extras) that overwrite each other, so the user picks one. Modules that need it hold an `OptionalModule` instead
of importing it, which keeps `import cassava_edge.classifier` and every `--help` working without it; the first
attribute read raises `MissingExtraError`, which the CLI shows as one line.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from cassava_edge.errors import CassavaEdgeError

ONNXRUNTIME_HINT = 'pip install "cassava-edge[cpu]" (or "cassava-edge[gpu]" on an NVIDIA GPU)'
# What to install when a module of an extra is missing (top-level module name -> install command); the CLI turns
# a ModuleNotFoundError for one of these into one line, wherever it is raised (in benchmarks/ too).
INSTALL_HINTS = {
    "onnxruntime": ONNXRUNTIME_HINT,
    "ray": 'pip install "cassava-edge[ray]"',
    "pyarrow": 'pip install "cassava-edge[parquet]"',
    "psutil": 'pip install "cassava-edge[bench]"',
    "matplotlib": 'pip install "cassava-edge[bench]"',
}


class MissingExtraError(CassavaEdgeError):
    """An optional dependency that is not installed; the message names the command that installs it."""


class OptionalModule:
    """Stands for the module `name`, imported when one of its attributes is first read."""

    def __init__(self, name: str, install_hint: str) -> None:
        self._name = name
        self._install_hint = install_hint
        self._module: ModuleType | None = None

    def load(self) -> ModuleType:
        if self._module is None:
            try:
                self._module = importlib.import_module(self._name)
            except ModuleNotFoundError as exc:
                if exc.name is None or exc.name.split(".")[0] != self._name:
                    raise  # the module is there but one of its own dependencies is not: show the real error
                raise MissingExtraError(f"{self._name} is not installed: {self._install_hint}") from None
        return self._module

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.load(), attribute)


onnxruntime = OptionalModule("onnxruntime", ONNXRUNTIME_HINT)


def missing_extra_message(exc: ModuleNotFoundError) -> str | None:
    """The one line for a missing module of an extra ("X is not installed: pip install ..."), or None."""
    module = (exc.name or "").split(".")[0]
    hint = INSTALL_HINTS.get(module)
    return None if hint is None else f"{module} is not installed: {hint}"
