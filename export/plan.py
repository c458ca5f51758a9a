"""The export request (the command line as data) and its plan: every argument checked and every input found
before TensorFlow is loaded, so that a mistake costs a second, not a model load."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from cassava_edge.contract import DEFAULT_SCAN, DEFAULT_TTA
from cassava_edge.looks import Look, look_named
from cassava_edge.scan import SCAN_PLANS
from cassava_edge.tta import TTA_PRESETS
from .errors import InputError
from .photos import LabelledPhoto, pick_calibration_photos, read_validation_photos
from .portable import portable_path
from .source import ONNX_SUFFIX, ExportSource, find_member_source, find_onnx_source, find_source
from .variants import DEFAULT_INT8_CONFIGS, Int8Config, int8_config

VARIANTS = ("fp16", "int8")

Echo = Callable[[str], None]


@dataclass
class ExportRequest:
    """The command line, as data. See export/cli.py for what each option means."""

    source: Path
    output: Path
    name: str | None = None
    variants: tuple[str, ...] = ()
    calibration: tuple[Path, ...] = ()
    calibration_count: int = 64
    validation: tuple[Path, ...] = ()  # empty: the run's own validation folders
    validation_list: Path | None = None
    default_tta: str = DEFAULT_TTA
    default_scan: str = DEFAULT_SCAN
    photo_short_side: int | None = None
    int8_configs: tuple[str, ...] = ()  # empty: try DEFAULT_INT8_CONFIGS (portable, VNNI-independent)
    force: bool = False
    seed: int = 0
    join: tuple[Path, ...] = ()  # more checkpoints (or exported .onnx files): one graph answering their mean
    member: int | None = None  # SOURCE is a joined ONNX file: export this member of it alone
    look: str = "none"  # the look every photo is given before the model (cassava_edge.looks; metadata schema 4)


@dataclass(frozen=True)
class ExportPlan:
    """The request checked and resolved before TensorFlow is loaded."""

    source: ExportSource
    out_dir: Path
    name: str
    short_side: int
    variants: tuple[str, ...]
    int8_configs: tuple[Int8Config, ...]
    validation: list[LabelledPhoto]
    validation_desc: dict[str, Any]
    calibration: list[Path]
    calibration_desc: dict[str, Any]
    members: tuple[ExportSource, ...] = ()  # the checkpoints joined to `source` (--join), in order
    look: Look | None = None


def default_name(source: ExportSource, members: tuple[ExportSource, ...] = ()) -> str:
    """cassava-lite0 for efficientnet-lite0, cassava-b3 for efficientnetb3; cassava-lite0-lite2 for a Lite0
    joined with a Lite2."""
    backbones = [s.backbone or s.checkpoint.stem for s in (source, *members)]
    return "cassava-" + "-".join(b.replace("efficientnet-", "").replace("efficientnet", "") for b in backbones)


def file_name(name: str, precision: str) -> str:
    return f"{name}.onnx" if precision == "fp32" else f"{name}.{precision}.onnx"


def plan_export(request: ExportRequest, echo: Echo) -> ExportPlan:
    """Check the request and find its inputs; raises InputError naming the first problem."""
    unknown = [v for v in request.variants if v not in VARIANTS]
    if unknown:
        raise InputError(f"unknown variant {', '.join(unknown)}; choose from {', '.join(VARIANTS)} "
                         "(fp32 is always written)")
    if request.default_tta not in TTA_PRESETS:
        raise InputError(f"unknown TTA preset {request.default_tta!r}; choose from {', '.join(TTA_PRESETS)}")
    if request.default_scan not in SCAN_PLANS:
        raise InputError(f"unknown scan plan {request.default_scan!r}; choose from {', '.join(SCAN_PLANS)}")
    if request.calibration_count < 1:
        raise InputError(f"--calibration-count must be at least 1, got {request.calibration_count}")
    try:
        configs = tuple(int8_config(n) for n in request.int8_configs) or DEFAULT_INT8_CONFIGS
    except ValueError as exc:
        raise InputError(str(exc)) from None
    for folder in request.calibration:  # reported even when int8 is not requested: still a mistake
        if not folder.is_dir():
            raise InputError(f"{folder}: no such calibration folder")
    try:
        look = look_named(request.look)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    source = _source(request)
    short_side = request.photo_short_side or source.training_config.get("photo_short_side")
    if not short_side:
        raise InputError(f"{source.checkpoint}: no config.json beside it to give the photo scale; "
                         "pass --photo-short-side")
    members = _members(request, source, int(short_side), echo)
    out_dir, name = _output(request, source, members)

    validation_dirs, ids_file = _validation_source(request, source)
    validation: list[LabelledPhoto] = []
    validation_desc: dict[str, Any] = {}
    if validation_dirs:
        validation = read_validation_photos(validation_dirs, ids_file)
        where = ", ".join(str(d) for d in validation_dirs)
        if not validation:
            raise InputError(f"{where}: no validation photos")
        folders = [portable_path(d) for d in validation_dirs]
        validation_desc = {**({"folder": folders[0]} if len(folders) == 1 else {"folders": folders}),
                           "list": portable_path(ids_file) if ids_file else None,
                           "photos": len(validation), "scan": request.default_scan, "tta": "none"}
        if ids_file is None:
            echo(f"note: validating on every photo of {where} (no validation list given)")
    elif request.variants:
        raise InputError("variants are measured against a labelled validation set: pass --validation DIR "
                         "(Kaggle layout) and --validation-list FILE")

    calibration: list[Path] = []
    calibration_desc: dict[str, Any] = {}
    if "int8" in request.variants:
        folders = list(request.calibration) or source.data_folders()
        if not folders:
            raise InputError("int8 needs calibration photos: pass --calibration DIR (e.g. a train_images folder)")
        exclude = {p.path.name for p in validation}
        calibration = pick_calibration_photos(folders, exclude, request.calibration_count, request.seed)
        calibration_desc = {"folders": [portable_path(f) for f in folders], "photos": len(calibration),
                            "excluded_validation_ids": len(exclude), "seed": request.seed}
    return ExportPlan(source, out_dir, name, int(short_side), tuple(dict.fromkeys(request.variants)), configs,
                      validation, validation_desc, calibration, calibration_desc, members, look)


def _source(request: ExportRequest) -> ExportSource:
    """A Keras run or checkpoint, or with --member one member of a joined ONNX file."""
    is_onnx = request.source.suffix.lower() == ".onnx"
    if request.member is None:
        if is_onnx:
            raise InputError(f"{request.source}: an ONNX file is exported again only as one member of a joined "
                             "model: pass --member N")
        return find_source(request.source)
    if not is_onnx:
        raise InputError(f"{request.source}: --member takes a joined .onnx file (export --join wrote it)")
    if request.join:
        raise InputError("--member exports one model out of a joined file; it cannot be joined again (--join)")
    return find_member_source(request.source, request.member)


def _members(request: ExportRequest, source: ExportSource, short_side: int, echo: Echo) -> tuple[ExportSource, ...]:
    """The --join checkpoints (or exported ONNX files), checked against SOURCE: another model each, cut from photos
    of the same scale at the same crop size (the runtime feeds one crop to all of them)."""
    members: list[ExportSource] = []
    seen = {source.checkpoint.resolve()}
    for path in request.join:
        member = find_onnx_source(path) if path.suffix.lower() == ONNX_SUFFIX else find_source(path)
        if member.checkpoint.resolve() in seen:
            raise InputError(f"{member.checkpoint}: joined twice (each --join names another checkpoint)")
        seen.add(member.checkpoint.resolve())
        for key, value in (("photo_short_side", short_side), ("crop_size", source.training_config.get("crop_size"))):
            theirs = member.training_config.get(key)
            if value is not None and theirs is not None and int(theirs) != int(value):
                raise InputError(f"{member.checkpoint}: trained with {key} {theirs}, {source.checkpoint} with {value}; "
                                 "joined models must share the photo scale and the crop")
        if _ids(member) != _ids(source):
            echo(f"note: {member.checkpoint} was validated on other photos than {source.checkpoint}; the joined "
                 "model's validation figures may count photos one of them trained on")
        members.append(member)
    return tuple(members)


def _ids(source: ExportSource) -> str | None:
    """The ids the model was validated on: its run's validation_ids.txt, else the list its training config names."""
    named = source.training_config.get("validation_list")
    path = source.validation_ids_file or (Path(named) if named and Path(named).is_file() else None)
    return path.read_text(encoding="utf-8") if path else None


def _output(request: ExportRequest, source: ExportSource, members: tuple[ExportSource, ...]) -> tuple[Path, str]:
    if request.output.suffix.lower() == ".onnx":
        name = request.output.name[: -len(".onnx")]
        if request.name and request.name != name:
            raise InputError(f"--name {request.name} disagrees with the output file {request.output.name}")
        out_dir = request.output.parent
    else:
        name, out_dir = request.name or default_name(source, members), request.output
    if not name or "/" in name or name.endswith((".fp16", ".int8")):
        raise InputError(f"bad model name {name!r} (the variants add .fp16/.int8 themselves)")
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: exists and is not a folder")
    return out_dir, name


def _validation_source(request: ExportRequest, source: ExportSource) -> tuple[list[Path], Path | None]:
    """The validation folders and id list: as given, else the run's own validation split."""
    if request.validation_list is not None and not request.validation_list.is_file():
        raise InputError(f"{request.validation_list}: no such validation list")
    run_folders = source.validation_folders()
    folders = list(request.validation) or run_folders
    if not folders:
        if request.validation_list is not None:
            raise InputError("--validation-list needs --validation DIR (the folder the ids are in)")
        return [], None
    for folder in folders:
        if not folder.is_dir():
            raise InputError(f"{folder}: no such validation folder")
    ids = request.validation_list
    if ids is None and run_folders and {f.resolve() for f in folders} == {f.resolve() for f in run_folders}:
        ids = source.validation_ids_file  # the run's own split: its validation_ids.txt
    return folders, ids
