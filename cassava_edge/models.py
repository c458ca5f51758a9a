"""Where models come from: an explicit file, a folder of variants, or the bundled default folder.

A folder may hold one model exported at several precisions, e.g. ``cassava-lite0.onnx`` (fp32),
``cassava-lite0.fp16.onnx`` and ``cassava-lite0.int8.onnx``. The precision is read from each file's metadata,
not its name, and the variant is picked for the provider: int8 runs fastest on CPUs, fp16 on CUDA GPUs.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from cassava_edge.errors import CassavaEdgeError, ModelError, OptionError
from cassava_edge.metadata import ModelMetadata
from cassava_edge.modelfile import read_metadata_props

MODELS_ENV = "CASSAVA_EDGE_MODELS"
BUNDLED_PACKAGE = "cassava_edge.bundled"  # the repository's models/ folder, as installed (setup.py)
PRECISIONS = ("fp32", "fp16", "int8")
# Best first. fp32 is last everywhere: it runs on every provider, only slower.
PREFERRED_PRECISIONS = {"cpu": ("int8", "fp32"), "cuda": ("fp16", "fp32")}


@dataclass(frozen=True)
class ModelFile:
    path: Path
    metadata: ModelMetadata

    @property
    def precision(self) -> str:
        return self.metadata.precision


def bundled_models_dir() -> Path:
    """`$CASSAVA_EDGE_MODELS`, else the installed `cassava_edge.bundled` folder, else the repository's ``models/``.

    setup.py installs the repository's top-level ``models/`` folder as `cassava_edge.bundled` (the default model's
    files only), so a wheel carries the model; an editable install maps that name back to ``models/``.
    """
    override = os.environ.get(MODELS_ENV)
    if override:
        return Path(override)
    try:
        spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    except ImportError:
        spec = None
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parents[1] / "models"  # running from a checkout that is not installed


def bundled_model_names() -> list[str]:
    """Opt-in models shipped beside the default: the sub-folders of the bundled folder that hold ONNX files."""
    folder = bundled_models_dir()
    if not folder.is_dir():
        return []
    return sorted(sub.name for sub in folder.iterdir() if sub.is_dir() and any(sub.glob("*.onnx")))


def default_model_name() -> str | None:
    """The name of the bundled default model: the file stem its variants share (``cassava-lite0.int8.onnx`` ->
    ``cassava-lite0``), or None when the bundled folder holds no model."""
    folder = bundled_models_dir()
    stems = {path.name.split(".")[0] for path in folder.glob("*.onnx")} if folder.is_dir() else set()
    return stems.pop() if len(stems) == 1 else None


def model_names() -> list[str]:
    """Every name `--model` takes for a bundled model: the default one first, then the opt-in ones."""
    return [name for name in (default_model_name(), *bundled_model_names()) if name]


@dataclass(frozen=True)
class BundledModel:
    """One model shipped with the package, as `cassava-edge models` lists it: its name and its variant files."""

    name: str
    variants: tuple[ModelFile, ...]  # one per precision, in PRECISIONS order

    @property
    def size_bytes(self) -> int:
        return sum(variant.path.stat().st_size for variant in self.variants)

    @property
    def crop_size(self) -> tuple[int, int]:
        return self.variants[0].metadata.crop_size


def bundled_models() -> list[BundledModel]:
    """Every bundled model reachable by name: the default one (the bundled folder's own files) first, then the
    opt-in ones in its sub-folders. Everything shown comes from each file's metadata, never from a table here."""
    folder = bundled_models_dir()
    default = default_model_name()
    named = ([(default, folder)] if default else []) + [(name, folder / name) for name in bundled_model_names()]
    found = []
    for name, where in named:
        variants = [ModelFile(path, read_model_metadata(path)) for path in sorted(where.glob("*.onnx"))]
        variants.sort(key=lambda variant: PRECISIONS.index(variant.precision) if variant.precision in PRECISIONS
                      else len(PRECISIONS))
        found.append(BundledModel(name, tuple(variants)))
    return found


def export_validation(metadata: ModelMetadata) -> tuple[float, str] | None:
    """(accuracy, "N photos, scan S, tta T") of this very file as the export measured it, from its metadata;
    None when the export wrote no such figure."""
    measured = metadata.provenance.get("measured")
    plan = metadata.provenance.get("export_validation")
    if not isinstance(measured, dict) or not isinstance(measured.get("accuracy"), (int, float)):
        return None
    plan = plan if isinstance(plan, dict) else {}
    how = ", ".join(
        f"{key} {plan[key]}" if key != "photos" else f"{plan[key]} photos"
        for key in ("photos", "scan", "tta")
        if key in plan
    )
    return float(measured["accuracy"]), how


def plan_validation(provenance: Mapping[str, Any]) -> dict[str, Any] | None:
    """The validation figures of this very file with the plan it was measured on (scan, tta, photos, accuracy,
    macro_recall, macro_f1), as `python -m export.calibrate` wrote them: it measures each file with its own default
    scan and TTA, the figures a user gets. None when the metadata holds no such figure (an uncalibrated export)."""
    trust = provenance.get("trust")
    figures = trust.get("validation") if isinstance(trust, Mapping) else None
    if not isinstance(figures, Mapping) or not _is_number(figures.get("accuracy")):
        return None
    return dict(figures)


def describe_plan(scan: Any, tta: Any, default_scan: str, default_tta: str) -> str:
    """"the default plan (scan full, tta seed)" or "scan grid, tta none": a figure always says what it measured."""
    plan = f"scan {scan}, tta {tta}"
    return f"the default plan ({plan})" if (scan, tta) == (default_scan, default_tta) else plan


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_model_metadata(path: Path) -> ModelMetadata:
    """The cassava-edge metadata of the ONNX file at `path` (ModelError if missing, not ONNX or not ours)."""
    return ModelMetadata.from_onnx_props(read_metadata_props(path), source=str(path))


def resolve_model(model: str | Path | None, provider: str = "cpu", variant: str | None = None) -> Path:
    """The model file to load.

    `model` is a file (used as is), a folder of variants, the name of a model bundled beside the default one
    (e.g. "cassava-lite0-512", see `bundled_model_names`), or None for the bundled default. In a folder the
    `variant` precision wins when given; otherwise `provider` ("cpu" or "cuda") picks by PREFERRED_PRECISIONS.
    """
    if variant is not None and variant not in PRECISIONS:
        raise OptionError(f"unknown variant {variant!r}; choose one of {', '.join(PRECISIONS)}")
    if provider not in PREFERRED_PRECISIONS:
        raise OptionError(f"provider must be one of {', '.join(PREFERRED_PRECISIONS)} here, got {provider!r}")
    if model is None:
        folder = bundled_models_dir()
        if not folder.is_dir() or not any(folder.glob("*.onnx")):
            raise ModelError(f"no bundled model in {folder}; pass --model (or set {MODELS_ENV})")
        return pick_variant(folder, provider, variant)
    path = Path(model).expanduser()
    if not path.exists() and str(model) == default_model_name():
        return pick_variant(bundled_models_dir(), provider, variant)
    if not path.exists() and str(model) in bundled_model_names():
        path = bundled_models_dir() / str(model)
    if path.is_dir():
        return pick_variant(path, provider, variant)
    if not path.exists():
        names = ", ".join(model_names())
        raise ModelError(f"{path}: no such model file or folder" + (f" (bundled models: {names})" if names else ""))
    if path.suffix.lower() != ".onnx":
        raise ModelError(f"{path}: not an ONNX model (expected a .onnx file)")
    read_metadata_props(path)  # a cheap look at the file, so a non-ONNX file gets a clear message
    return path


def pick_variant(folder: Path, provider: str, variant: str | None = None) -> Path:
    """Choose one model from a folder of variants; see `resolve_model`."""
    candidates, problems = [], []
    for path in sorted(folder.glob("*.onnx")):
        try:
            candidates.append(ModelFile(path, read_model_metadata(path)))
        except CassavaEdgeError as exc:
            problems.append(str(exc))
    if not candidates:
        reasons = f" ({'; '.join(problems)})" if problems else ""
        raise ModelError(f"no usable cassava-edge model in {folder}{reasons}")
    wanted = (variant,) if variant else PREFERRED_PRECISIONS[provider]
    for precision in wanted:
        matches = [candidate for candidate in candidates if candidate.precision == precision]
        if len(matches) > 1:
            names = ", ".join(match.path.name for match in matches)
            raise ModelError(f"{folder}: several {precision} models ({names}); pass the file with --model")
        if matches:
            return matches[0].path
    found = ", ".join(f"{c.path.name} ({c.precision})" for c in candidates)
    raise ModelError(f"{folder}: no {' or '.join(wanted)} model for {provider}; found {found}")
