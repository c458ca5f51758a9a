"""What is exported: a training run folder (best.keras + its reports), a bare Keras checkpoint, or one member of a
joined ONNX file (`export/member.py`); and what is joined to it: other checkpoints, or exported ONNX files whose
Keras checkpoint is gone (`find_onnx_source`).

Everything here except `load_keras_model` runs without TensorFlow, so bad paths are reported in a second.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cassava_edge.metadata import CASSAVA_LABELS
from .errors import InputError

BEST_CHECKPOINT = "best.keras"  # the name training/train.py gives the best-by-validation checkpoint
KERAS_SUFFIXES = (".keras", ".h5")
ONNX_SUFFIX = ".onnx"
REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ExportSource:
    checkpoint: Path
    run_folder: Path | None  # the folder whose config.json / metrics.json describe the checkpoint
    training_config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] | None = None  # the validation figures of exactly this checkpoint
    dataset: dict[str, Any] | None = None
    validation_ids_file: Path | None = None
    # A member of a joined ONNX file (`find_member_source`): `checkpoint` is then that file, and this the member's
    # index and the Keras checkpoint the joined file records for it.
    member: int | None = None
    member_checkpoint: dict[str, str] | None = None

    @property
    def is_onnx(self) -> bool:
        """An exported ONNX file (a --member source, or an ONNX file given to --join), not a Keras checkpoint."""
        return self.checkpoint.suffix.lower() == ONNX_SUFFIX

    @property
    def backbone(self) -> str | None:
        return self.training_config.get("backbone")

    def data_folders(self) -> list[Path]:
        """The training data folders named in config.json that exist here (relative paths: to the current
        folder, then to the repository root, where training is normally run)."""
        return [p for p in (_existing(name) for name in self.training_config.get("data", [])) if p is not None]

    def validation_folders(self) -> list[Path]:
        """The folders training took its validation photos from: config `validation_folder`; for a fold run
        (`--fold`) every data folder its fold file names (`cassava/` and `cassava-more/`: the copies in other
        folders can share an original's file name); else the first."""
        name = self.training_config.get("validation_folder")
        folders = self.data_folders()
        if name:
            named = next((p for p in folders if p.name == Path(name).name), _existing(name))
            return [named] if named is not None else []
        if self.training_config.get("fold") is not None:
            in_folds = self._fold_file_folders()
            return [p for p in folders if p.name in in_folds]
        return folders[:1]

    def _fold_file_folders(self) -> set[str]:
        """The folder names the run's fold file lists."""
        from cassava_edge_training.data import DataError  # no TensorFlow at import
        from cassava_edge_training.folds import DEFAULT_FOLDS_FILE, read_folds

        named = self.training_config.get("folds")
        candidates = (Path(named), REPO_ROOT / named) if named else (DEFAULT_FOLDS_FILE,)
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            raise InputError(f"{named or DEFAULT_FOLDS_FILE}: the run's fold file is not here; "
                             "pass --validation DIR and --validation-list FILE")
        try:
            return {folder for folder, _ in read_folds(path)}
        except DataError as exc:
            raise InputError(str(exc)) from None


def find_source(path: str | Path) -> ExportSource:
    """Resolve a run folder or a checkpoint file; raises InputError with a one-line reason."""
    path = Path(path)
    if path.is_dir():
        checkpoint = path / BEST_CHECKPOINT
        if not checkpoint.is_file():
            raise InputError(f"{path}: run folder without {BEST_CHECKPOINT} (did training finish?)")
    elif path.is_file():
        checkpoint = path
    else:
        raise InputError(f"{path}: no such run folder or Keras model file")
    _check_keras_file(checkpoint)
    run_folder = checkpoint.parent if (checkpoint.parent / "config.json").is_file() else None
    if run_folder is None:
        return ExportSource(checkpoint, None)
    ids = run_folder / "validation_ids.txt"
    return ExportSource(
        checkpoint=checkpoint,
        run_folder=run_folder,
        training_config=_read_json(run_folder / "config.json") or {},
        metrics=checkpoint_metrics(checkpoint),
        dataset=_read_json(run_folder / "dataset.json"),
        validation_ids_file=ids if ids.is_file() else None,
    )


def find_member_source(path: str | Path, index: int) -> ExportSource:
    """Member `index` of a joined ONNX file (`export --join`), described by what the file records of it."""
    from .member import joined_members

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such ONNX file")
    members = joined_members(path)
    if not 0 <= index < len(members):
        raise InputError(f"{path}: --member {index} is out of range (the file joins {len(members)} models, "
                         f"0..{len(members) - 1})")
    member = members[index]
    return ExportSource(
        checkpoint=path,
        run_folder=None,
        training_config=dict(member.get("training_config") or {}),
        metrics=member.get("validation_metrics"),
        member=index,
        member_checkpoint=member.get("checkpoint"),
    )


def find_onnx_source(path: str | Path) -> ExportSource:
    """An exported single-model ONNX file to join (`--join FILE.onnx`), described by what its metadata records
    (training config, validation figures): a member whose Keras checkpoint is no longer at hand joins as it is."""
    from cassava_edge.errors import ModelError

    from .onnxfile import read_metadata

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such ONNX file")
    try:
        meta = read_metadata(path)
    except (ModelError, OSError, ValueError) as exc:
        raise InputError(f"{path}: not a cassava ONNX model ({_first_line(exc)})") from None
    if meta.provenance.get("members"):
        raise InputError(f"{path}: is itself a joined model; take its members out first (--member N)")
    return ExportSource(
        checkpoint=path,
        run_folder=None,
        training_config=dict(meta.provenance.get("training_config") or {}),
        metrics=meta.provenance.get("validation_metrics"),
    )


def checkpoint_metrics(checkpoint: Path) -> dict[str, Any] | None:
    """The validation figures training wrote for exactly this checkpoint (best.keras -> best.metrics.json).

    A run folder's plain metrics.json is not used: it described best.keras only, and an export of last.keras
    once carried it (wrong figures in the model's metadata)."""
    metrics = _read_json(checkpoint.with_name(checkpoint.stem + ".metrics.json"))
    if metrics is not None and metrics.get("checkpoint") not in (None, checkpoint.name):
        raise InputError(f"{checkpoint}: its metrics file describes {metrics['checkpoint']}, not this checkpoint")
    return metrics


def load_keras_model(path: Path) -> Any:
    """Load a checkpoint and check it against the cassava contract: one (batch, S, S, 3) input, five outputs."""
    import keras

    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types (ValueError, OSError, zip errors) for a bad file
        raise InputError(f"{path}: not a loadable Keras model ({_first_line(exc)})") from None
    if not isinstance(model, keras.Model):
        raise InputError(f"{path}: holds a {type(model).__name__}, not a Keras model")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise InputError(f"{path}: the model must have one input and one output, it has "
                         f"{len(model.inputs)} and {len(model.outputs)}")
    in_shape, out_shape = tuple(model.inputs[0].shape), tuple(model.outputs[0].shape)
    if len(in_shape) != 4 or in_shape[3] != 3 or None in in_shape[1:] or in_shape[1] != in_shape[2]:
        raise InputError(f"{path}: input shape {in_shape} is not (batch, S, S, 3) with a fixed square crop S")
    if len(out_shape) != 2 or out_shape[1] != len(CASSAVA_LABELS):
        raise InputError(f"{path}: the model outputs shape {out_shape}, the cassava contract needs "
                         f"{len(CASSAVA_LABELS)} classes ({', '.join(CASSAVA_LABELS)})")
    return model


def join_models(models: list[Any]) -> Any:
    """One Keras model answering the mean of `models`' probabilities for the same crop (all checked by
    load_keras_model, with the same input shape): what a pair of fold models scored as one answers."""
    import keras

    shapes = {tuple(model.inputs[0].shape[1:]) for model in models}
    if len(shapes) != 1:
        raise InputError(f"joined models must take the same crop; their inputs are {sorted(shapes)}")
    for index, model in enumerate(models):
        model.name = f"member_{index}"  # nested models need unique names; each keeps its own layers inside
    crop = keras.Input(shape=shapes.pop(), name=models[0].inputs[0].name)
    mean = keras.layers.Average(name="probabilities")([model(crop) for model in models])
    return keras.Model(crop, mean, name="joined")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_keras_file(path: Path) -> None:
    # Cheap checks before TensorFlow is imported: a .keras file is a zip archive, an .h5 file an HDF5 file.
    if path.suffix.lower() not in KERAS_SUFFIXES:
        raise InputError(f"{path}: not a Keras model (expected a run folder, a .keras or an .h5 file)")
    if path.suffix.lower() == ".keras" and not zipfile.is_zipfile(path):
        raise InputError(f"{path}: not a Keras model (a .keras file is a zip archive; this one is not)")
    if path.suffix.lower() == ".h5" and _head(path) != b"\x89HDF\r\n\x1a\n":
        raise InputError(f"{path}: not a Keras model (not an HDF5 file)")


def _head(path: Path, size: int = 8) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(size)


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None


def _existing(name: str) -> Path | None:
    for candidate in (Path(name), REPO_ROOT / name):
        if candidate.is_dir():
            return candidate
    return None


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:200]
