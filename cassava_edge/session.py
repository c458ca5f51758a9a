"""One onnxruntime session per model: providers, threads and options live here and nowhere else.

The session also enforces the model contract: a file is refused unless its metadata parses and its input and
output shapes agree with it, so the rest of the runtime can trust `metadata`.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cassava_edge.calibration import softmax
from cassava_edge.contract import DEFAULT_CHUNK_SIZE_CPU, DEFAULT_CHUNK_SIZE_CUDA
from cassava_edge.errors import ModelError, OptionError, ProviderError
from cassava_edge.extras import onnxruntime as ort  # an extra ([cpu] or [gpu]): imported on first use
from cassava_edge.metadata import ModelMetadata

logger = logging.getLogger("cassava_edge")

PROVIDERS = ("auto", "cpu", "cuda")
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
# Views per onnxruntime call. Small on CPU: larger batches gain nothing there and hold more memory;
# a GPU needs large batches to be busy.
DEFAULT_CHUNK_SIZE = {CPU: DEFAULT_CHUNK_SIZE_CPU, CUDA: DEFAULT_CHUNK_SIZE_CUDA}
# Names of onnxruntime's GraphOptimizationLevel members (looked up when a session is made, onnxruntime being an extra).
GRAPH_OPTIMIZATION = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


def onnxruntime_package() -> str:
    """Which onnxruntime distribution is installed (onnxruntime, onnxruntime-gpu, ...), for messages."""
    for name in ("onnxruntime-gpu", "onnxruntime", "onnxruntime-directml", "onnxruntime-openvino"):
        try:
            importlib.metadata.version(name)
            return name
        except importlib.metadata.PackageNotFoundError:
            continue
    return "onnxruntime"


def cuda_unavailable_reason() -> str:
    """Why CUDA cannot be used, as far as this process can tell without loading CUDA itself."""
    if CUDA not in ort.get_available_providers():
        return (
            f"this onnxruntime ({onnxruntime_package()} {ort.__version__}) has no CUDAExecutionProvider; "
            "install onnxruntime-gpu in place of onnxruntime"
        )
    if os.name == "posix" and not Path("/dev/nvidiactl").exists():
        return "onnxruntime-gpu is installed but no NVIDIA device is visible (no /dev/nvidiactl)"
    return (
        "onnxruntime-gpu is installed and a device is visible, but the CUDA provider failed to load: CUDA or cuDNN "
        "libraries are missing or of the wrong version (onnxruntime logs the missing library at load time)"
    )


class OnnxSession:
    """An onnxruntime InferenceSession of a cassava-edge model, checked against its metadata.

    `run` keeps no state on the object, and InferenceSession.run is thread-safe, so one OnnxSession can serve
    several threads.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        provider: str = "auto",
        threads: int | None = None,
        inter_op_threads: int | None = None,
        graph_optimization: str = "all",
        chunk_size: int | None = None,
        io_binding: bool | None = None,
    ) -> None:
        if provider not in PROVIDERS:
            raise OptionError(f"provider must be one of {', '.join(PROVIDERS)}, got {provider!r}")
        if graph_optimization not in GRAPH_OPTIMIZATION:
            raise OptionError(
                f"graph optimisation must be one of {', '.join(GRAPH_OPTIMIZATION)}, got {graph_optimization!r}"
            )
        for option, value in (("threads", threads), ("inter-op threads", inter_op_threads), ("chunk size", chunk_size)):
            if value is not None and value < 1:
                raise OptionError(f"{option} must be at least 1, got {value}")
        self.path = Path(path)
        if provider == "cuda" and CUDA not in ort.get_available_providers():
            # Refuse before loading the model: the answer cannot change.
            raise ProviderError(f"CUDA was requested but is not available: {cuda_unavailable_reason()}")
        self._session = self._create(provider, threads, inter_op_threads, graph_optimization)
        self.providers: list[str] = self._session.get_providers()
        self._check_provider(provider)
        self.metadata: ModelMetadata = self._read_metadata()
        self.input_name, self.output_name = self._check_contract()
        # The optional "not a cassava leaf" logit (schema 2) comes from the same onnxruntime call as the probabilities.
        self.not_cassava_name: str | None = self._check_not_cassava_output()
        self.output_names: list[str] = [self.output_name, *([self.not_cassava_name] if self.not_cassava_name else [])]
        self.chunk_size: int = chunk_size or DEFAULT_CHUNK_SIZE.get(self.providers[0], DEFAULT_CHUNK_SIZE[CPU])
        # On a GPU each chunk goes to the device as one OrtValue and the outputs come back into host memory that
        # onnxruntime allocates itself (IO binding); on CPU there is nothing to copy, so a plain run is as fast.
        self.io_binding: bool = self.device == "cuda" if io_binding is None else io_binding

    @property
    def device(self) -> str:
        """"cuda" or "cpu": where the model actually runs."""
        return "cuda" if self.providers[0] == CUDA else "cpu"

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities (n, classes) of a float32 NHWC batch, computed chunk_size views per onnxruntime call."""
        return self.run_all(batch)[0]

    def run_all(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities (n, classes) of a float32 NHWC batch and, when the model has a not-cassava output, its
        logits (n,) (else None), both from the same calls, chunk_size views per onnxruntime call."""
        height, width = self.metadata.crop_size
        if batch.ndim != 4 or batch.shape[1:] != (height, width, 3):
            raise ValueError(f"batch must be (n, {height}, {width}, 3), got {batch.shape}")
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if len(batch) == 0:
            outputs = [np.zeros((0, len(self.metadata.labels)), np.float32), np.zeros((0, 1), np.float32)]
        else:
            step = self.chunk_size
            chunks = [self._run_chunk(batch[start : start + step]) for start in range(0, len(batch), step)]
            outputs = [np.concatenate(arrays, axis=0).astype(np.float32, copy=False) for arrays in zip(*chunks)]
        probs = outputs[0] if self.metadata.output_is_probability else softmax(outputs[0])
        return probs, outputs[1].reshape(-1) if self.not_cassava_name else None

    def _run_chunk(self, chunk: np.ndarray) -> list[np.ndarray]:
        """One onnxruntime call, returning each of `output_names`; its own method so tests and benchmarks can count
        or time the calls."""
        if self.io_binding:
            return self._run_bound(chunk)
        return self._session.run(self.output_names, {self.input_name: chunk})

    def _run_bound(self, chunk: np.ndarray) -> list[np.ndarray]:
        """The same call with IO binding: one host-to-device copy of the chunk, outputs written to host memory.
        A binding per call keeps `run` free of shared state, so threads may still share the session."""
        binding = self._session.io_binding()
        binding.bind_ortvalue_input(self.input_name, ort.OrtValue.ortvalue_from_numpy(chunk, self.device, 0))
        for name in self.output_names:
            binding.bind_output(name, "cpu")
        self._session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()

    def describe(self) -> dict[str, Any]:
        options = self._session.get_session_options()
        return {
            "path": str(self.path),
            "providers_loaded": list(self.providers),
            "chunk_size": self.chunk_size,
            "io_binding": self.io_binding,
            "intra_op_threads": options.intra_op_num_threads,
            "inter_op_threads": options.inter_op_num_threads,
            "graph_optimization": next(
                (name for name, level in GRAPH_OPTIMIZATION.items()
                 if getattr(ort.GraphOptimizationLevel, level) == options.graph_optimization_level),
                str(options.graph_optimization_level),
            ),
        }

    def _create(
        self, provider: str, threads: int | None, inter_op_threads: int | None, graph_optimization: str
    ) -> ort.InferenceSession:
        if not self.path.is_file():
            raise ModelError(f"{self.path}: no such model file")
        options = ort.SessionOptions()
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, GRAPH_OPTIMIZATION[graph_optimization])
        options.intra_op_num_threads = threads or 0  # 0 = onnxruntime's default, one per physical core
        options.inter_op_num_threads = inter_op_threads or 0
        options.log_severity_level = 3  # errors only: node-placement warnings are noise for users
        try:
            return ort.InferenceSession(str(self.path), sess_options=options, providers=_requested_providers(provider))
        except Exception as exc:  # onnxruntime raises its own, unexported exception types
            message = " ".join(str(exc).split())
            if provider == "cuda" and ("CUDA" in message or "cuda" in message):
                raise ProviderError(f"CUDA was requested but failed to load: {message[:300]}") from None
            raise ModelError(f"{self.path}: onnxruntime cannot load it ({message[:300]})") from None

    def _check_provider(self, provider: str) -> None:
        if CUDA in self.providers:
            return
        if provider == "cuda":
            raise ProviderError(f"CUDA was requested but is not available: {cuda_unavailable_reason()}")
        if provider == "auto" and CUDA in ort.get_available_providers():
            # A real fallback: CUDA was listed and tried but did not load. On a CPU-only onnxruntime `auto` simply
            # means CPU, and an edge box should not be warned on every run.
            # logging, not warnings: one plain line on stderr, shown every time, and silenced like any log.
            logger.warning("cassava-edge: running on CPU, CUDA did not load: %s", cuda_unavailable_reason())

    def _read_metadata(self) -> ModelMetadata:
        props = self._session.get_modelmeta().custom_metadata_map
        return ModelMetadata.from_onnx_props(props, source=str(self.path))

    def _check_contract(self) -> tuple[str, str]:
        """Refuse a model whose graph disagrees with its metadata; return the input and output names."""
        meta = self.metadata
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1:
            raise ModelError(f"{self.path}: the model must have one input, it has {len(inputs)}")
        model_input = inputs[0]
        if model_input.name != meta.input.name:
            raise ModelError(f"{self.path}: input is named {model_input.name!r}, metadata says {meta.input.name!r}")
        if model_input.type != "tensor(float)":
            raise ModelError(f"{self.path}: input type is {model_input.type}, the contract is float32")
        height, width = meta.crop_size
        expected = f"[batch, {height}, {width}, 3]"
        shape = list(model_input.shape)
        if len(shape) != 4 or shape[1:] != [height, width, 3]:
            raise ModelError(f"{self.path}: input shape {_shape_text(shape)} disagrees with the metadata {expected}")
        if isinstance(shape[0], int):
            raise ModelError(f"{self.path}: input batch dimension is fixed to {shape[0]}; it must be dynamic")
        names = [output.name for output in outputs]
        if meta.output_name not in names:
            raise ModelError(f"{self.path}: no output named {meta.output_name!r} (outputs: {', '.join(names)})")
        output = outputs[names.index(meta.output_name)]
        classes = len(meta.labels)
        out_shape = list(output.shape)
        fixed_batch = isinstance(out_shape[0], int) and out_shape[0] != -1 if out_shape else False
        if len(out_shape) != 2 or out_shape[1] != classes or fixed_batch:
            raise ModelError(
                f"{self.path}: output shape {_shape_text(out_shape)} is not [batch, {classes}] for {classes} labels"
            )
        return model_input.name, output.name

    def _check_not_cassava_output(self) -> str | None:
        """The name of the model's not-cassava output when its metadata names one, checked to be (batch, 1)."""
        trust = self.metadata.trust
        if trust is None or trust.not_cassava_output is None:
            return None
        outputs = {output.name: output for output in self._session.get_outputs()}
        name = trust.not_cassava_output
        if name not in outputs:
            raise ModelError(f"{self.path}: no not-cassava output named {name!r} (outputs: {', '.join(outputs)})")
        shape = list(outputs[name].shape)
        if len(shape) != 2 or shape[1] != 1 or (isinstance(shape[0], int) and shape[0] != -1):
            raise ModelError(f"{self.path}: not-cassava output shape {_shape_text(shape)} is not [batch, 1]")
        return name


def _requested_providers(provider: str) -> list[str]:
    available = ort.get_available_providers()
    if provider in ("auto", "cuda") and CUDA in available:
        return [CUDA, CPU]
    return [CPU]


def _shape_text(shape: Sequence[Any]) -> str:
    return "[" + ", ".join(str(dim) if dim is not None else "?" for dim in shape) + "]"
