"""One export: checkpoint -> NAME.onnx (fp32) [+ NAME.fp16.onnx, NAME.int8.onnx] + NAME.variants.json.

Every file is built and checked in a temporary folder inside the output folder and moved into place only when its
checks pass, so a failed export never leaves a file that looks good.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx

from cassava_edge.metadata import cassava_metadata
from cassava_edge.scan import SCAN_PLANS
from cassava_edge.tta import TTA_PRESETS
from .errors import InputError, VariantRefused
from .measure import LATENCY_BATCH, Figures, MeasureSet, interleaved_latency_ms, measure, onnx_probabilities
from .onnxfile import io_names, jsonable, keras_to_onnx, read_metadata, save_with_metadata
from .parity import TOLERANCE, check_parity
from .photos import CropSet, LabelledPhoto, crop_photos, pick_calibration_photos, read_validation_photos
from .source import ExportSource, find_source, load_keras_model, sha256_of
from .variants import INT8_CONFIGS, Int8Config, int8_config, prepare_for_quantization, quantize_int8, to_fp16

VARIANTS = ("fp16", "int8")
MAX_ACCURACY_LOSS_POINTS = 1.0
LATENCY_TIE = 0.05  # relative
AGREEMENT_WINDOW = 0.03  # top-1 agreement with fp32, as a share of crops
LOW_AGREEMENT = 0.95  # below this the chosen int8 file gets a warning line
PARITY_PHOTOS = 8  # real photos (centre crops) in the parity check, plus PARITY_RANDOM random inputs
PARITY_RANDOM = 4
INPUT_NAME = "image"  # the name build_model gives the input (training/model.py INPUT_NAME)

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
    validation: Path | None = None
    validation_list: Path | None = None
    default_tta: str = "flip"
    default_scan: str = "grid"
    photo_short_side: int | None = None
    int8_configs: tuple[str, ...] = ()  # empty: try all of INT8_CONFIGS
    force: bool = False
    seed: int = 0


@dataclass
class ExportResult:
    files: dict[str, Path]  # precision -> written file
    report_path: Path
    report: dict[str, Any]
    refused: dict[str, str] = field(default_factory=dict)  # precision -> why it was not written


@dataclass(frozen=True)
class _Plan:
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


def default_name(source: ExportSource) -> str:
    """cassava-lite0 for efficientnet-lite0, cassava-b3 for efficientnetb3."""
    backbone = source.backbone or source.checkpoint.stem
    return "cassava-" + backbone.replace("efficientnet-", "").replace("efficientnet", "")


def file_name(name: str, precision: str) -> str:
    return f"{name}.onnx" if precision == "fp32" else f"{name}.{precision}.onnx"


def export_model(request: ExportRequest, echo: Echo = print) -> ExportResult:
    """Run one export. Raises InputError (bad arguments), ParityError (nothing written) or VariantRefused
    (after writing the files that passed)."""
    plan = _plan(request, echo)
    model = load_keras_model(plan.source.checkpoint)
    crop_size = int(model.inputs[0].shape[1])
    configured = plan.source.training_config.get("crop_size")
    if configured is not None and int(configured) != crop_size:
        raise InputError(f"{plan.source.checkpoint}: model input is {crop_size}x{crop_size} but config.json "
                         f"says crop_size {configured}")
    if plan.short_side < crop_size:
        raise InputError(f"photo short side {plan.short_side} is smaller than the crop size {crop_size}")

    validation = crop_photos([p.path for p in plan.validation], request.default_scan, plan.short_side, crop_size)
    calibration = crop_photos(plan.calibration, "grid", plan.short_side, crop_size,
                              on_unreadable=lambda why: echo(f"calibration: skipped {why}"))
    if plan.calibration and not len(calibration):
        raise InputError("none of the calibration photos could be read")
    parity_inputs, parity_desc = _parity_inputs(plan, crop_size, calibration, request.seed)
    measure_set = _measure_set(plan, validation, parity_inputs)

    plan.out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{plan.name}.", suffix=".export", dir=plan.out_dir))
    try:
        return _export(request, plan, model, crop_size, work, parity_inputs, parity_desc, measure_set,
                       calibration, echo)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _export(request: ExportRequest, plan: _Plan, model: Any, crop_size: int, work: Path, parity_inputs: np.ndarray,
            parity_desc: dict[str, Any], data: MeasureSet, calibration: CropSet, echo: Echo) -> ExportResult:
    echo(f"converting {plan.source.checkpoint} ({crop_size}x{crop_size}) to ONNX opset 17")
    proto = keras_to_onnx(model, INPUT_NAME)
    input_name, output_name = io_names(proto)
    raw = {"fp32": work / "fp32.raw.onnx"}
    onnx.save(proto, str(raw["fp32"]))
    difference = check_parity(model, raw["fp32"], parity_inputs, TOLERANCE)
    sums = onnx_probabilities(raw["fp32"], parity_inputs).sum(axis=1)
    if not np.allclose(sums, 1.0, atol=1e-3):
        raise InputError(f"{plan.source.checkpoint}: the output is not a softmax (rows sum to {sums.min():.3g}.."
                         f"{sums.max():.3g}); the contract's output is probabilities")
    parity = {"max_softmax_diff": difference, "tolerance": TOLERANCE, **parity_desc}
    echo(f"parity with Keras: largest softmax difference {difference:.2e} on {len(parity_inputs)} inputs "
         f"(tolerance {TOLERANCE:g})")

    # Build every file first and time them together at the end (see interleaved_latency_ms).
    figures: dict[str, Figures] = {}
    figures["fp32"], reference = measure(raw["fp32"], "fp32", data)
    fp32_accuracy = figures["fp32"].accuracy
    if "fp16" in plan.variants:
        raw["fp16"] = work / "fp16.raw.onnx"
        to_fp16(raw["fp32"], raw["fp16"])
        figures["fp16"], _ = measure(raw["fp16"], "fp16", data, reference, fp32_accuracy)
    candidates: dict[str, Figures] = {}
    if "int8" in plan.variants:
        echo(f"int8: calibrating on {len(calibration)} grid crops of {len(calibration.photos)} photos, "
             f"trying {len(plan.int8_configs)} configurations")
        prepared = prepare_for_quantization(raw["fp32"], work / "fp32.prepared.onnx")
        for config in plan.int8_configs:
            raw[config.name] = work / f"int8.{config.name}.onnx"
            quantize_int8(prepared, raw[config.name], config, calibration.crops, work / "calibration.json")
            candidates[config.name], _ = measure(raw[config.name], "int8", data, reference, fp32_accuracy,
                                                 config.name)
    batch = data.crops[:LATENCY_BATCH]
    echo(f"timing {len(raw)} files on batches of {len(batch)} crops, taking turns")
    latencies = interleaved_latency_ms(raw, batch)
    for key, result in [*figures.items(), *candidates.items()]:
        result.latency_ms_per_batch, result.latency_batch_size = latencies[result.config or key], len(batch)
        echo(("  " if result.config else "") + _figures_line(result))

    refused: dict[str, str] = {}
    if "fp16" in figures and _too_lossy(figures["fp16"]) and not request.force:
        refused["fp16"] = _refusal("fp16", figures["fp16"])
    if candidates:
        chosen, why = choose_int8(list(candidates.values()), request.force)
        if chosen is None:
            refused["int8"] = why
        else:
            figures["int8"] = chosen
            raw["int8"] = raw[chosen.config]
            echo(f"int8: kept {chosen.config} ({why})")
            if chosen.top1_agreement_vs_fp32 < LOW_AGREEMENT:
                echo(f"warning: int8 agrees with fp32 on only {chosen.top1_agreement_vs_fp32:.1%} of the validation "
                     "crops; check the figures in the report before shipping it")

    common = _provenance(plan, parity, figures["fp32"])
    int8_provenance: dict[str, Any] = {}
    if "int8" in plan.variants:
        int8_provenance = {"calibration": {**plan.calibration_desc, "crops": len(calibration), "plan": "grid"},
                           "int8_candidates": [c.as_dict() for c in candidates.values()]}
    final: dict[str, Path] = {}
    for precision in ("fp16", "int8", "fp32"):  # fp32 last: it is the file the others are measured against
        if precision not in figures or precision in refused:
            continue
        provenance = {**common, **(int8_provenance if precision == "int8" else {}),
                      "measured": figures[precision].as_dict()}
        metadata = cassava_metadata(
            crop_size, plan.short_side, input_name=input_name, output_name=output_name,
            default_scan=request.default_scan, default_tta=request.default_tta, precision=precision,
            provenance=jsonable(provenance),
        )
        target = work / file_name(plan.name, precision)
        figures[precision].file_size_bytes = save_with_metadata(onnx.load(str(raw[precision])), target, metadata)
        read_metadata(target)  # parses as the runtime parses it, or raises
        final[precision] = target

    report = jsonable({
        "name": plan.name,
        "exported_at": common["exported_at"],
        "checkpoint": common["checkpoint"],
        "parity": parity,
        "validation": plan.validation_desc,
        "calibration": int8_provenance.get("calibration"),
        "max_accuracy_loss_points": MAX_ACCURACY_LOSS_POINTS,
        "files": {p: {"file": file_name(plan.name, p), **figures[p].as_dict()} for p in final},
        "int8_candidates": [c.as_dict() for c in candidates.values()],
        "refused": refused,
        "forced": request.force,
    })
    report_path = work / f"{plan.name}.variants.json"
    report_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    files = _move_into_place(plan, final, report_path, echo)
    result = ExportResult(files, plan.out_dir / report_path.name, report, refused)
    if refused:
        raise VariantRefused("; ".join(refused.values()) + f" (the other files are in {plan.out_dir})")
    return result


def _plan(request: ExportRequest, echo: Echo) -> _Plan:
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
        configs = tuple(int8_config(n) for n in request.int8_configs) or INT8_CONFIGS
    except ValueError as exc:
        raise InputError(str(exc)) from None
    for folder in request.calibration:  # reported even when int8 is not requested: still a mistake
        if not folder.is_dir():
            raise InputError(f"{folder}: no such calibration folder")
    source = find_source(request.source)
    short_side = request.photo_short_side or source.training_config.get("photo_short_side")
    if not short_side:
        raise InputError(f"{source.checkpoint}: no config.json beside it to give the photo scale; "
                         "pass --photo-short-side")
    out_dir, name = _output(request, source)

    validation_dir, ids_file = _validation_source(request, source)
    validation: list[LabelledPhoto] = []
    validation_desc: dict[str, Any] = {}
    if validation_dir is not None:
        validation = read_validation_photos(validation_dir, ids_file)
        if not validation:
            raise InputError(f"{validation_dir}: no validation photos")
        validation_desc = {"folder": str(validation_dir.resolve()),
                           "list": str(ids_file.resolve()) if ids_file else None,
                           "photos": len(validation), "scan": request.default_scan, "tta": "none"}
        if ids_file is None:
            echo(f"note: validating on every photo of {validation_dir} (no validation list given)")
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
        calibration_desc = {"folders": [str(f.resolve()) for f in folders], "photos": len(calibration),
                            "excluded_validation_ids": len(exclude), "seed": request.seed}
    return _Plan(source, out_dir, name, int(short_side), tuple(dict.fromkeys(request.variants)), configs,
                 validation, validation_desc, calibration, calibration_desc)


def _output(request: ExportRequest, source: ExportSource) -> tuple[Path, str]:
    if request.output.suffix.lower() == ".onnx":
        name = request.output.name[: -len(".onnx")]
        if request.name and request.name != name:
            raise InputError(f"--name {request.name} disagrees with the output file {request.output.name}")
        out_dir = request.output.parent
    else:
        name, out_dir = request.name or default_name(source), request.output
    if not name or "/" in name or name.endswith((".fp16", ".int8")):
        raise InputError(f"bad model name {name!r} (the variants add .fp16/.int8 themselves)")
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: exists and is not a folder")
    return out_dir, name


def _validation_source(request: ExportRequest, source: ExportSource) -> tuple[Path | None, Path | None]:
    """The validation folder and id list: as given, else the run's own validation split."""
    if request.validation_list is not None and not request.validation_list.is_file():
        raise InputError(f"{request.validation_list}: no such validation list")
    run_folder = source.validation_folder()
    folder = request.validation or run_folder
    if folder is None:
        if request.validation_list is not None:
            raise InputError("--validation-list needs --validation DIR (the folder the ids are in)")
        return None, None
    if not folder.is_dir():
        raise InputError(f"{folder}: no such validation folder")
    ids = request.validation_list
    if ids is None and run_folder is not None and folder.resolve() == run_folder.resolve():
        ids = source.validation_ids_file  # the run's own split: its validation_ids.txt
    return folder, ids


def _parity_inputs(plan: _Plan, crop_size: int, calibration: CropSet, seed: int) -> tuple[np.ndarray, dict]:
    """Centre crops of real photos (validation first, else calibration) and uniform random crops."""
    photos = [p.path for p in plan.validation[:PARITY_PHOTOS]] or list(calibration.photos[:PARITY_PHOTOS])
    if not photos:
        raise InputError("the parity check needs real photos: pass --validation DIR or --calibration DIR")
    real = crop_photos(photos, "center", plan.short_side, crop_size).as_float()
    noise = np.random.default_rng(seed).uniform(0, 255, (PARITY_RANDOM, crop_size, crop_size, 3)).astype(np.float32)
    return np.concatenate([real, noise]), {"photos": len(real), "random": PARITY_RANDOM, "crop": "center"}


def _measure_set(plan: _Plan, validation: CropSet, parity_inputs: np.ndarray) -> MeasureSet:
    if len(validation):
        return MeasureSet(validation.crops, validation.owner, np.array([p.label for p in plan.validation]))
    crops = parity_inputs.astype(np.uint8)  # no validation set: size, latency and fp32 only
    return MeasureSet(crops, np.arange(len(crops)), None)


def _too_lossy(figures: Figures) -> bool:
    # The tiny epsilon keeps exactly one point (e.g. 1 photo in 100) from failing on float rounding.
    return figures.accuracy_loss_points is not None and figures.accuracy_loss_points > MAX_ACCURACY_LOSS_POINTS + 1e-9


def _refusal(precision: str, figures: Figures) -> str:
    return (f"{precision} refused: it loses {figures.accuracy_loss_points:.2f} accuracy points against fp32 "
            f"(at most {MAX_ACCURACY_LOSS_POINTS:g} allowed; --force keeps it)")


def choose_int8(candidates: list[Figures], force: bool) -> tuple[Figures | None, str]:
    """The fastest candidate within the accuracy budget; with `force` and none within it, the most accurate."""
    good = [c for c in candidates if not _too_lossy(c)]
    if good:
        # A few hundred photos, most of them CMD, can hide a broken quantisation behind an unchanged accuracy
        # (per-tensor Lite0 at 384: same accuracy, but only 71% of crops agree with fp32). So configurations
        # agreeing with fp32 clearly less often than the best one are not considered.
        best_agreement = max(c.top1_agreement_vs_fp32 for c in good)
        close = [c for c in good if c.top1_agreement_vs_fp32 >= best_agreement - AGREEMENT_WINDOW]
        # Latency on a shared CPU varies by several percent between identical runs: candidates within
        # LATENCY_TIE of the fastest count as equally fast, and the one closest to fp32 wins among them.
        fastest = min(c.latency_ms_per_batch for c in close)
        tied = [c for c in close if c.latency_ms_per_batch <= fastest * (1 + LATENCY_TIE)]
        chosen = max(tied, key=lambda c: (c.top1_agreement_vs_fp32, -c.max_softmax_diff_vs_fp32))
        return chosen, (f"the fastest within the accuracy budget and within {AGREEMENT_WINDOW:.0%} of the best "
                        f"top-1 agreement; latencies within {LATENCY_TIE:.0%} count as ties")
    best = min(candidates, key=lambda c: (c.accuracy_loss_points, c.latency_ms_per_batch))
    if force:
        return best, f"forced: it loses {best.accuracy_loss_points:.2f} accuracy points"
    return None, _refusal(f"int8 (best configuration {best.config})", best)


def _provenance(plan: _Plan, parity: dict, fp32: Figures) -> dict[str, Any]:
    source = plan.source
    return {
        "exported_at": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "exporter": "python -m export (export/ of cassava-edge)",
        "checkpoint": {"file": source.checkpoint.name, "path": str(source.checkpoint),
                       "sha256": sha256_of(source.checkpoint)},
        "training_config": source.training_config,
        "validation_metrics": source.metrics,  # as training measured them (Keras, centre crops)
        "dataset": source.dataset,
        "versions": _versions(),
        "parity": parity,
        "export_validation": {**plan.validation_desc, "fp32_accuracy": fp32.accuracy},
    }


def _versions() -> dict[str, str]:
    import cv2
    import keras
    import onnx
    import onnxruntime
    import tensorflow as tf
    import tf2onnx

    return {"tensorflow": tf.__version__, "keras": keras.__version__, "tf2onnx": tf2onnx.__version__,
            "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__, "numpy": np.__version__,
            "opencv": cv2.__version__}


def _move_into_place(plan: _Plan, final: dict[str, Path], report: Path, echo: Echo) -> dict[str, Path]:
    moved: dict[str, Path] = {}
    for precision, path in final.items():  # already ordered fp16, int8, fp32
        target = plan.out_dir / path.name
        os.replace(path, target)
        moved[precision] = target
    for precision in VARIANTS:
        stale = plan.out_dir / file_name(plan.name, precision)
        if precision not in moved and stale.exists():
            # An older variant of another checkpoint: the runtime would pick it over the new fp32 on its provider.
            stale.unlink()
            echo(f"removed {stale} (from an earlier export; not made this time)")
    os.replace(report, plan.out_dir / report.name)
    ours = {p.name for p in moved.values()}
    others = sorted(p.name for p in plan.out_dir.glob("*.onnx") if p.name not in ours)
    if others:
        echo(f"warning: {plan.out_dir} also holds {', '.join(others)}; the runtime picks one model per precision "
             "from a folder, so keep one model family per folder")
    for precision, path in moved.items():
        echo(f"wrote {path} ({precision}, {path.stat().st_size / 1e6:.2f} MB)")
    echo(f"wrote {plan.out_dir / report.name}")
    return moved


def _figures_line(f: Figures) -> str:
    accuracy = ("" if f.accuracy is None
                else f", accuracy {f.accuracy:.4f} ({-(f.accuracy_loss_points or 0):+.2f} points vs fp32)")
    label = f.config or f.precision
    return (f"{label}: {f.file_size_bytes / 1e6:.2f} MB, {f.latency_ms_per_batch:.1f} ms per batch of "
            f"{f.latency_batch_size}, max diff to fp32 {f.max_softmax_diff_vs_fp32:.2e}, top-1 agreement "
            f"{f.top1_agreement_vs_fp32:.4f}{accuracy}")
