"""One export: checkpoint -> NAME.onnx (fp32) [+ NAME.fp16.onnx, NAME.int8.onnx] + NAME.variants.json (or, with
--member, one member of a joined ONNX file in place of the checkpoint).

Every file is built and checked in a temporary folder inside the output folder and moved into place only when its
checks pass, so a failed export never leaves a file that looks good. The pieces: plan.py (the request checked
before TensorFlow loads), source.py (the checkpoint), photos.py (crops as the runtime cuts them), onnxfile.py
(conversion, metadata), parity.py, variants.py (fp16, int8), measure.py (figures, on the runtime's session),
selection.py (which variants are kept), report.py (provenance, NAME.variants.json), publish.py (into place).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx

from cassava_edge.contract import INPUT_NAME
from cassava_edge.metadata import cassava_metadata
from .errors import InputError, VariantRefused
from .measure import LATENCY_BATCH, Figures, MeasureSet, interleaved_latency_ms, measure, onnx_probabilities
from .onnxfile import io_names, jsonable, keras_to_onnx, read_metadata, save_with_metadata
from .parity import TOLERANCE, check_against, check_parity
from .photos import CropSet, crop_photos
from .plan import Echo, ExportPlan, ExportRequest, file_name, plan_export
from .publish import move_into_place
from .report import VariantsReport, figures_line, provenance_of
from .selection import LOW_AGREEMENT, MAX_ACCURACY_LOSS_POINTS, choose_int8, refusal, too_lossy
from .member import check_member_parity, join_graphs, member_graph, probabilities_graph
from .source import join_models, load_keras_model
from .variants import nonstandard_ops, prepare_for_quantization, quantize_int8, to_fp16

__all__ = ["ExportRequest", "ExportResult", "export_model"]

PARITY_PHOTOS = 8  # real photos (centre crops) in the parity check, plus PARITY_RANDOM random inputs
PARITY_RANDOM = 4


@dataclass
class ExportResult:
    files: dict[str, Path]  # precision -> written file
    report_path: Path
    report: VariantsReport
    refused: dict[str, str] = field(default_factory=dict)  # precision -> why it was not written


def export_model(request: ExportRequest, echo: Echo = print) -> ExportResult:
    """Run one export. Raises InputError (bad arguments), ParityError (nothing written) or VariantRefused
    (after writing the files that passed)."""
    plan = plan_export(request, echo)
    member = plan.source.member
    source = _keras_source(plan, echo) if member is None else _member_source(plan, member, echo)
    proto, crop_size, parity_check, parity_with = source
    configured = plan.source.training_config.get("crop_size")
    if configured is not None and int(configured) != crop_size:
        raise InputError(f"{plan.source.checkpoint}: model input is {crop_size}x{crop_size} but config.json "
                         f"says crop_size {configured}")
    if plan.short_side < crop_size:
        raise InputError(f"photo short side {plan.short_side} is smaller than the crop size {crop_size}")

    if plan.look is not None:
        echo(f"look: every photo first {plan.look.describe()}, before its crops are cut, here and in the runtime")
    validation = crop_photos([p.path for p in plan.validation], request.default_scan, plan.short_side, crop_size,
                             look=plan.look)
    calibration = crop_photos(plan.calibration, "grid", plan.short_side, crop_size,
                              on_unreadable=lambda why: echo(f"calibration: skipped {why}"), look=plan.look)
    if plan.calibration and not len(calibration):
        raise InputError("none of the calibration photos could be read")
    parity_inputs, parity_desc = _parity_inputs(plan, crop_size, calibration, request.seed)
    measure_set = _measure_set(plan, validation, parity_inputs)

    plan.out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{plan.name}.", suffix=".export", dir=plan.out_dir))
    try:
        return _export(request, plan, proto, parity_check, parity_with, crop_size, work, parity_inputs,
                       parity_desc, measure_set, calibration, echo)
    finally:
        shutil.rmtree(work, ignore_errors=True)


ParityCheck = Callable[[Path, np.ndarray], float]  # (fp32 file, float32 crops) -> largest softmax difference


def _keras_source(plan: ExportPlan, echo: Echo) -> tuple[onnx.ModelProto, int, ParityCheck, str]:
    """The checkpoint (joined with --join's) converted to ONNX, its crop size, and its parity check against Keras."""
    model = load_keras_model(plan.source.checkpoint)
    if any(member.is_onnx for member in plan.members):
        return _onnx_join_source(plan, model, echo)
    if plan.members:
        echo(f"joining {plan.source.checkpoint} with {', '.join(str(m.checkpoint) for m in plan.members)}: "
             "one graph, the mean of their probabilities")
        model = join_models([model, *(load_keras_model(member.checkpoint) for member in plan.members)])
    crop_size = int(model.inputs[0].shape[1])
    echo(f"converting {plan.source.checkpoint} ({crop_size}x{crop_size}) to ONNX opset 17")

    def parity_check(path: Path, inputs: np.ndarray) -> float:
        return check_parity(model, path, inputs, TOLERANCE)

    return keras_to_onnx(model, INPUT_NAME), crop_size, parity_check, "Keras"


def _onnx_join_source(plan: ExportPlan, model: Any, echo: Echo) -> tuple[onnx.ModelProto, int, ParityCheck, str]:
    """--join with exported ONNX files (members whose Keras checkpoint is gone): each checkpoint converted alone,
    each file's classifier taken as it is, all joined at the ONNX level; parity against the mean of what each
    member answers on its own (Keras for a checkpoint, onnxruntime for a file)."""
    sources = (plan.source, *plan.members)
    echo(f"joining {', '.join(str(s.checkpoint) for s in sources)} at the ONNX level: one graph, the mean of their "
         "probabilities")
    keras_models = {0: model, **{i: load_keras_model(s.checkpoint)
                                 for i, s in enumerate(sources) if i and not s.is_onnx}}
    graphs = []
    for index, source in enumerate(sources):
        if source.is_onnx:
            graphs.append(probabilities_graph(onnx.load(str(source.checkpoint)),
                                              read_metadata(source.checkpoint).output_name))
        else:
            graphs.append(keras_to_onnx(keras_models[index], INPUT_NAME))
    proto = join_graphs(graphs)
    crop_size = int(proto.graph.input[0].type.tensor_type.shape.dim[1].dim_value)

    def parity_check(path: Path, inputs: np.ndarray) -> float:
        inputs = np.ascontiguousarray(inputs, dtype=np.float32)
        answers = [onnx_probabilities(s.checkpoint, inputs) if s.is_onnx
                   else keras_models[i].predict(inputs, batch_size=16, verbose=0) for i, s in enumerate(sources)]
        return check_against(np.mean(answers, axis=0).astype(np.float32), "the members' mean", path, inputs,
                             TOLERANCE)

    return proto, crop_size, parity_check, "the members' mean (Keras and the joined ONNX files)"


def _member_source(plan: ExportPlan, index: int, echo: Echo) -> tuple[onnx.ModelProto, int, ParityCheck, str]:
    """--member: member `index`'s graph cut out of the joined file, its crop size, and its parity check against
    the same member inside the joined graph."""
    joined = onnx.load(str(plan.source.checkpoint))
    echo(f"taking member {index} out of {plan.source.checkpoint} (recorded from "
         f"{(plan.source.member_checkpoint or {}).get('path', '?')}), weights unchanged")
    proto = member_graph(joined, index)

    def parity_check(path: Path, inputs: np.ndarray) -> float:
        return check_member_parity(joined, index, path, inputs, TOLERANCE)

    crop_size = int(proto.graph.input[0].type.tensor_type.shape.dim[1].dim_value)
    return proto, crop_size, parity_check, "the member inside the joined graph"


def _export(request: ExportRequest, plan: ExportPlan, proto: onnx.ModelProto,
            parity_check: ParityCheck, parity_with: str, crop_size: int, work: Path,
            parity_inputs: np.ndarray, parity_desc: dict[str, Any], data: MeasureSet, calibration: CropSet,
            echo: Echo) -> ExportResult:
    input_name, output_name = io_names(proto)
    # Every file carries its metadata from the start (fp16 and int8 conversion keep it), so that each one is
    # measured through the runtime's own session, which checks the graph against it; provenance comes last.
    metadata = cassava_metadata(crop_size, plan.short_side, input_name=input_name, output_name=output_name,
                                default_scan=request.default_scan, default_tta=request.default_tta, look=plan.look)
    raw = {"fp32": work / "fp32.raw.onnx"}
    save_with_metadata(proto, raw["fp32"], metadata)
    difference = parity_check(raw["fp32"], parity_inputs)
    sums = onnx_probabilities(raw["fp32"], parity_inputs).sum(axis=1)
    if not np.allclose(sums, 1.0, atol=1e-3):
        raise InputError(f"{plan.source.checkpoint}: the output is not a softmax (rows sum to {sums.min():.3g}.."
                         f"{sums.max():.3g}); the contract's output is probabilities")
    parity = {"max_softmax_diff": difference, "tolerance": TOLERANCE, "against": parity_with, **parity_desc}
    echo(f"parity with {parity_with}: largest softmax difference {difference:.2e} on {len(parity_inputs)} inputs "
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
            candidates[config.name].nonstandard_ops = nonstandard_ops(onnx.load(str(raw[config.name])))
    batch = data.crops[:LATENCY_BATCH]
    echo(f"timing {len(raw)} files on batches of {len(batch)} crops, taking turns")
    latencies = interleaved_latency_ms(raw, batch)
    for key, result in [*figures.items(), *candidates.items()]:
        result.latency_ms_per_batch, result.latency_batch_size = latencies[result.config or key], len(batch)
        echo(("  " if result.config else "") + figures_line(result))

    refused: dict[str, str] = {}
    if "fp16" in figures and too_lossy(figures["fp16"]) and not request.force:
        refused["fp16"] = refusal("fp16", figures["fp16"])
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

    common = provenance_of(plan, parity, figures["fp32"]).to_dict()
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
        labelled = dataclasses.replace(metadata, precision=precision, provenance=jsonable(provenance))
        target = work / file_name(plan.name, precision)
        figures[precision].file_size_bytes = save_with_metadata(onnx.load(str(raw[precision])), target, labelled)
        read_metadata(target)  # parses as the runtime parses it, or raises
        final[precision] = target

    report = VariantsReport(
        name=plan.name,
        exported_at=common["exported_at"],
        checkpoint=common["checkpoint"],
        parity=parity,
        validation=plan.validation_desc,
        calibration=int8_provenance.get("calibration"),
        max_accuracy_loss_points=MAX_ACCURACY_LOSS_POINTS,
        files={p: {"file": file_name(plan.name, p), **figures[p].as_dict()} for p in final},
        int8_candidates=[c.as_dict() for c in candidates.values()],
        refused=refused,
        forced=request.force,
    )
    report_path = work / f"{plan.name}.variants.json"
    report_path.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    files = move_into_place(plan, final, report_path, echo)
    result = ExportResult(files, plan.out_dir / report_path.name, report, refused)
    if refused:
        raise VariantRefused("; ".join(refused.values()) + f" (the other files are in {plan.out_dir})")
    return result


def _parity_inputs(plan: ExportPlan, crop_size: int, calibration: CropSet, seed: int) -> tuple[np.ndarray, dict]:
    """Centre crops of real photos (validation first, else calibration) and uniform random crops."""
    photos = [p.path for p in plan.validation[:PARITY_PHOTOS]] or list(calibration.photos[:PARITY_PHOTOS])
    if not photos:
        raise InputError("the parity check needs real photos: pass --validation DIR or --calibration DIR")
    real = crop_photos(photos, "center", plan.short_side, crop_size, look=plan.look).as_float()
    noise = np.random.default_rng(seed).uniform(0, 255, (PARITY_RANDOM, crop_size, crop_size, 3)).astype(np.float32)
    return np.concatenate([real, noise]), {"photos": len(real), "random": PARITY_RANDOM, "crop": "center"}


def _measure_set(plan: ExportPlan, validation: CropSet, parity_inputs: np.ndarray) -> MeasureSet:
    if len(validation):
        return MeasureSet(validation.crops, validation.owner, np.array([p.label for p in plan.validation]))
    crops = parity_inputs.astype(np.uint8)  # no validation set: size, latency and fp32 only
    return MeasureSet(crops, np.arange(len(crops)), None)
