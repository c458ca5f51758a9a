"""Measurements of an ONNX file on this machine's CPU: probabilities, accuracy, agreement, latency."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cassava_edge.contract import DEFAULT_CHUNK_SIZE_CPU
from cassava_edge.errors import ModelError
from cassava_edge.metrics import mean_per_photo
from cassava_edge.session import OnnxSession
from .errors import ExportError

LATENCY_BATCH = DEFAULT_CHUNK_SIZE_CPU  # files are timed on the batches the runtime sends on a CPU


def cpu_session(path: str | Path, chunk_size: int = 16) -> OnnxSession:
    """The runtime's own session on the CPU: every file is loaded, and its graph checked against its metadata,
    exactly as users will load it."""
    try:
        return OnnxSession(path, provider="cpu", chunk_size=chunk_size)
    except ModelError as exc:
        raise ExportError(str(exc)) from None


def onnx_probabilities(model: str | Path | OnnxSession, inputs: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """(n, classes) outputs for NHWC `inputs` (uint8 or float 0..255), `batch_size` crops per call."""
    session = model if isinstance(model, OnnxSession) else cpu_session(model, batch_size)
    return session.run(np.asarray(inputs, dtype=np.float32))


def interleaved_latency_ms(models: dict[str, Path], batch: np.ndarray, rounds: int = 5,
                           calls_per_round: int = 4) -> dict[str, float]:
    """Median wall time of one onnxruntime call on `batch`, per model.

    The models take turns, round after round, so that a change in the machine's load (another job starting or
    pausing) affects every model alike instead of favouring whichever was timed during a quiet spell.
    """
    sessions = {key: cpu_session(path, chunk_size=len(batch)) for key, path in models.items()}
    feed = np.ascontiguousarray(batch, dtype=np.float32)
    for session in sessions.values():  # warm-up: the first calls allocate and tune
        for _ in range(2):
            session.run(feed)
    times: dict[str, list[float]] = {key: [] for key in sessions}
    for _ in range(rounds):
        for key, session in sessions.items():
            for _ in range(calls_per_round):
                tick = time.perf_counter()
                session.run(feed)
                times[key].append(time.perf_counter() - tick)
    return {key: float(np.median(values) * 1000.0) for key, values in times.items()}




def accuracy(photo_probs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(photo_probs.argmax(1) == labels)) if len(labels) else float("nan")


@dataclass
class Figures:
    """What is reported for each file (and each int8 candidate)."""

    precision: str
    file_size_bytes: int
    max_softmax_diff_vs_fp32: float  # over the measured crops
    top1_agreement_vs_fp32: float  # share of the measured crops with the same top-1 class as fp32
    accuracy: float | None = None  # on the validation photos: crops averaged per photo, no TTA
    accuracy_loss_points: float | None = None  # fp32 accuracy minus this one, in percentage points
    latency_ms_per_batch: float | None = None  # median onnxruntime call on this machine's CPU
    latency_batch_size: int | None = None
    config: str | None = None  # the int8 quantisation configuration
    nonstandard_ops: list[str] | None = None  # operators outside the ONNX standard (other runtimes cannot load them)

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class MeasureSet:
    """The crops every file is measured on; `labels` (one per photo) is None when there is no validation set."""

    crops: np.ndarray  # (n, size, size, 3) uint8
    owner: np.ndarray  # (n,) photo index of each crop
    labels: np.ndarray | None


def measure(path: Path, precision: str, data: MeasureSet, reference: np.ndarray | None = None,
            reference_accuracy: float | None = None, config: str | None = None) -> tuple[Figures, np.ndarray]:
    """Figures of one file (all but latency), compared with the fp32 crop probabilities `reference` (None: this
    is the fp32 file). Returns the figures and this file's crop probabilities."""
    probs = onnx_probabilities(path, data.crops)
    photo_acc = None
    if data.labels is not None:
        photo_acc = accuracy(mean_per_photo(probs, data.owner, len(data.labels)), data.labels)
    if reference is None:
        reference, reference_accuracy = probs, photo_acc
    figures = Figures(
        precision=precision,
        file_size_bytes=path.stat().st_size,
        max_softmax_diff_vs_fp32=float(np.max(np.abs(probs - reference))),
        top1_agreement_vs_fp32=float(np.mean(probs.argmax(1) == reference.argmax(1))),
        accuracy=photo_acc,
        accuracy_loss_points=None if photo_acc is None else 100.0 * (float(reference_accuracy) - photo_acc),
        config=config,
    )
    return figures, probs
