"""What an export tells about itself: the provenance written into every ONNX file, the NAME.variants.json report
and the one-line figures printed per file."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .measure import Figures
from .onnxfile import jsonable
from .plan import ExportPlan
from .portable import portable_values
from .source import sha256_of

EXPORTER = "python -m export (export/ of cassava-edge)"


@dataclass(frozen=True)
class Provenance:
    """Where a file comes from; each file's metadata carries this plus its own `measured` figures."""

    exported_at: str
    exporter: str
    checkpoint: dict[str, str]  # file, path, sha256
    training_config: dict[str, Any]
    validation_metrics: dict[str, Any] | None  # as training measured them
    dataset: dict[str, Any] | None
    versions: dict[str, str]
    parity: dict[str, Any]
    export_validation: dict[str, Any]
    # A joined export (--join): every checkpoint averaged, the first being `checkpoint`, each with its training
    # config and figures; the top-level validation_metrics is then None (no one checkpoint's figures describe it).
    members: list[dict[str, Any]] | None = None
    # A member taken out of a joined file (--member): that file and the member's index; `checkpoint` is then the
    # member's own Keras checkpoint as the joined file records it.
    extracted_from: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return portable_values(jsonable(asdict(self)))  # no absolute path of this machine (export/portable.py)


@dataclass(frozen=True)
class VariantsReport:
    """NAME.variants.json: every file written, every int8 candidate tried, every variant refused and why."""

    name: str
    exported_at: str
    checkpoint: dict[str, str]
    parity: dict[str, Any]
    validation: dict[str, Any]
    calibration: dict[str, Any] | None
    max_accuracy_loss_points: float
    files: dict[str, dict[str, Any]]  # precision -> {"file": name, **figures}
    int8_candidates: list[dict[str, Any]]
    refused: dict[str, str]  # precision -> why it was not written
    forced: bool

    def to_dict(self) -> dict[str, Any]:
        return portable_values(jsonable(asdict(self)))


def provenance_of(plan: ExportPlan, parity: dict[str, Any], fp32: Figures) -> Provenance:
    source = plan.source
    members = None
    if plan.members:
        members = [{"checkpoint": _checkpoint(member.checkpoint), "training_config": member.training_config,
                    "validation_metrics": member.metrics} for member in (source, *plan.members)]
    return Provenance(
        exported_at=dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        exporter=EXPORTER,
        checkpoint=(source.member_checkpoint or {}) if source.member is not None else _checkpoint(source.checkpoint),
        training_config=source.training_config,
        validation_metrics=None if members else source.metrics,
        dataset=source.dataset,
        versions=versions(),
        parity=parity,
        export_validation={**plan.validation_desc, "fp32_accuracy": fp32.accuracy},
        members=members,
        extracted_from=None if source.member is None else {**_checkpoint(source.checkpoint), "member": source.member},
    )


def _checkpoint(path: Path) -> dict[str, str]:
    return {"file": path.name, "path": str(path), "sha256": sha256_of(path)}


def versions() -> dict[str, str]:
    import cv2
    import keras
    import onnx
    import onnxruntime
    import tensorflow as tf
    import tf2onnx

    return {"tensorflow": tf.__version__, "keras": keras.__version__, "tf2onnx": tf2onnx.__version__,
            "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__, "numpy": np.__version__,
            "opencv": cv2.__version__}


def figures_line(f: Figures) -> str:
    accuracy = ("" if f.accuracy is None
                else f", accuracy {f.accuracy:.4f} ({-(f.accuracy_loss_points or 0):+.2f} points vs fp32)")
    label = f.config or f.precision
    return (f"{label}: {f.file_size_bytes / 1e6:.2f} MB, {f.latency_ms_per_batch:.1f} ms per batch of "
            f"{f.latency_batch_size}, max diff to fp32 {f.max_softmax_diff_vs_fp32:.2e}, top-1 agreement "
            f"{f.top1_agreement_vs_fp32:.4f}{accuracy}")
