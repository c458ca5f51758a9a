"""Latency benchmark of the cassava-edge runtime, optionally side by side with the reference Keras pipeline.

Every configuration (the cross product of --provider, --variant, --tta, --scan and --chunk-size) runs in a fresh
Python subprocess, so session creation and the first call are cold, and the peak resident memory of that
process (ru_maxrss) belongs to that configuration alone. The Keras reference and the --roofline matmul get a
subprocess each as well. Per photo the four stages of `cassava_edge.Classifier` are timed back to back
(read+decode, prepare, inference, postprocess), so the stage times add up to the photo's latency.

Run `python -m benchmarks.latency --help`. Top-level imports stay light (numpy, click, cassava_edge): onnx,
psutil and matplotlib are imported where used, TensorFlow only in the Keras subprocess.
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Protocol, Sequence

import click
import numpy as np

from cassava_edge.cli import find_images
from cassava_edge.errors import CassavaEdgeError
from cassava_edge.models import PRECISIONS, bundled_models_dir
from cassava_edge.scan import SCAN_PLANS
from cassava_edge.session import PROVIDERS
from cassava_edge.tta import TTA_PRESETS

REPO_ROOT = Path(__file__).resolve().parents[1]
SEED_B3 = "seed-b3"  # --compare-keras value: the reference notebook's own model, random weights
SEED_B3_CROP = 512
SEED_B3_SHORT_SIDE = 600
SEED_B3_SCAN = "corners"
ROOFLINE_SIZE = 2048
STAGES = ("load", "prepare", "infer", "postprocess")
STAGE_TITLES = {"load": "read+decode", "prepare": "preprocess", "infer": "inference", "postprocess": "postprocess"}
MEMORY_NOTE = (
    "each configuration runs in a fresh subprocess; peak = that process's ru_maxrss, "
    "baseline = its resident memory after imports, before the session (or Keras model) is created"
)


@dataclass(frozen=True)
class RunConfig:
    """One runtime configuration as requested; None means the model's (or onnxruntime's) default."""

    provider: str
    variant: str | None
    tta: str | None
    scan: str | None
    chunk_size: int | None

    def label(self) -> str:
        return (
            f"{self.provider} {self.variant or 'default'} tta={self.tta or 'default'} "
            f"scan={self.scan or 'default'} chunk={self.chunk_size or 'default'}"
        )


@dataclass(frozen=True)
class PhotoPlan:
    """Which photos each run sees: the same for every configuration and the Keras reference."""

    first: str  # the cold first call
    warmup: list[str]
    timed: list[str]


# -- command ---------------------------------------------------------------------------------------------------


def _split(values: Iterable[str]) -> list[str]:
    """Repeatable options that also take comma lists: ('a,b', 'c') -> ['a', 'b', 'c'], duplicates dropped."""
    items: list[str] = []
    for value in values:
        for item in value.split(","):
            item = item.strip()
            if item and item not in items:
                items.append(item)
    return items


def _choices(values: Iterable[str], allowed: Sequence[str], option: str) -> list[str]:
    items = _split(values)
    unknown = [item for item in items if item not in allowed]
    if unknown:
        raise click.BadParameter(f"{', '.join(unknown)} (choose from {', '.join(allowed)})", param_hint=option)
    return items


def _chunk_sizes(values: Iterable[str]) -> list[int]:
    sizes = []
    for item in _split(values):
        if not item.isdigit() or int(item) < 1:
            raise click.BadParameter(f"{item!r} is not a positive integer", param_hint="--chunk-size")
        sizes.append(int(item))
    return sizes


def default_photos_dir() -> Path | None:
    """$CASSAVA_EDGE_DATA/cassava/train_images, else ../shared/data/cassava/train_images next to the repository."""
    data = os.environ.get("CASSAVA_EDGE_DATA")
    base = Path(data) if data else REPO_ROOT.parent / "shared" / "data"
    folder = base / "cassava" / "train_images"
    return folder if folder.is_dir() else None


@click.command("benchmark", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model", type=click.Path(exists=True), help="Model file or folder of variants [default: bundled].")
@click.option("--photos", multiple=True, type=click.Path(exists=True),
              help="Photo files or folders (repeatable) [default: ../shared/data/cassava/train_images].")
@click.option("--count", type=click.IntRange(min=1), default=20, show_default=True, help="Timed photos.")
@click.option("--warmup", type=click.IntRange(min=0), default=2, show_default=True,
              help="Untimed photos after the first call.")
@click.option("--tta", multiple=True, help=f"TTA presets, repeatable or comma list: {', '.join(TTA_PRESETS)} "
              "[default: the model's].")
@click.option("--scan", multiple=True, help=f"Scan plans: {', '.join(SCAN_PLANS)} [default: the model's].")
@click.option("--provider", multiple=True, help=f"Providers: {', '.join(PROVIDERS)} [default: auto].")
@click.option("--variant", multiple=True, help=f"Model precisions from a folder: {', '.join(PRECISIONS)} "
              "[default: picked for the provider].")
@click.option("--chunk-size", multiple=True, help="Views per onnxruntime call, repeatable or comma list "
              "[default: the session's].")
@click.option("--threads", type=click.IntRange(min=1), help="onnxruntime (and Keras, matmul) threads "
              "[default: onnxruntime's, one per physical core].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the 'seed' TTA preset.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write every figure to FILE.")
@click.option("--chart", "chart_path", type=click.Path(dir_okay=False), help="Write a latency chart (PNG).")
@click.option("--roofline", is_flag=True, help="Measure fp32 matmul GFLOP/s and report each run against it.")
@click.option("--roofline-seconds", type=click.FloatRange(min=0.1), default=3.0, show_default=True,
              help="How long the matmul measurement runs.")
@click.option("--compare-keras", "keras_model", metavar="MODEL.keras|seed-b3",
              help="Also time the reference Keras pipeline: a .keras model, or seed-b3 (EfficientNetB3 512, "
              "random weights, speed only).")
def benchmark_command(
    model: str | None,
    photos: tuple[str, ...],
    count: int,
    warmup: int,
    tta: tuple[str, ...],
    scan: tuple[str, ...],
    provider: tuple[str, ...],
    variant: tuple[str, ...],
    chunk_size: tuple[str, ...],
    threads: int | None,
    seed: int,
    json_path: str | None,
    chart_path: str | None,
    roofline: bool,
    roofline_seconds: float,
    keras_model: str | None,
) -> None:
    """Time the runtime per photo for each configuration; optionally against the reference Keras pipeline."""
    configs = [
        RunConfig(p, v, t, s, c)
        for p, v, t, s, c in itertools.product(
            _choices(provider, PROVIDERS, "--provider") or ["auto"],
            _choices(variant, PRECISIONS, "--variant") or [None],
            _choices(tta, TTA_PRESETS, "--tta") or [None],
            _choices(scan, SCAN_PLANS, "--scan") or [None],
            _chunk_sizes(chunk_size) or [None],
        )
    ]
    if model is None and not any(bundled_models_dir().glob("*.onnx")):
        raise click.UsageError(f"no bundled model in {bundled_models_dir()}; pass --model")
    if keras_model and keras_model != SEED_B3 and not Path(keras_model).is_file():
        raise click.BadParameter(f"{keras_model}: no such file (a .keras model, or {SEED_B3})",
                                 param_hint="--compare-keras")
    plan = _photo_plan(photos, count, warmup)
    report = run_benchmark(configs, plan, model=model, threads=threads, seed=seed, keras_model=keras_model,
                           roofline_seconds=roofline_seconds if roofline else None)
    context = click.get_current_context()
    report["command_line"] = command_line(context)
    report["argv"] = list(sys.argv)
    report["options"] = dict(context.params)
    print_report(report)
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        click.echo(f"wrote {json_path}")
    if chart_path:
        write_chart(report, Path(chart_path))
        click.echo(f"wrote {chart_path}")
    statuses = [run["status"] for run in report["configurations"]]
    failed_references = [ref for ref in report["keras_reference"] if ref["status"] != "ok"]
    if "failed" in statuses or "ok" not in statuses or failed_references:
        sys.exit(1)


def command_line(context: click.Context) -> str:
    """The command as given, rebuilt from the parsed options (sys.argv is not ours under CliRunner or a group)."""
    words = context.command_path.split()
    for param in context.command.params:
        if not isinstance(param, click.Option) or param.name is None:
            continue
        value = context.params.get(param.name)
        if value is None or value == () or value is False or value == param.default:
            continue
        flag = max(param.opts, key=len)
        if param.is_flag:
            words.append(flag)
        else:
            for item in value if param.multiple else (value,):
                words += [flag, str(item)]
    return shlex.join(words)


def _photo_plan(photos: tuple[str, ...], count: int, warmup: int) -> PhotoPlan:
    if not photos:
        folder = default_photos_dir()
        if folder is None:
            raise click.UsageError("no photos: pass --photos (../shared/data/cassava/train_images is absent)")
        photos = (str(folder),)
    files = [str(path) for path in find_images(photos)][:count]
    for path in files:
        # Read once here so that no configuration pays for cold disk reads that the later ones skip.
        Path(path).read_bytes()
    return PhotoPlan(
        first=files[0],
        warmup=[files[i % len(files)] for i in range(warmup)],
        timed=[files[i % len(files)] for i in range(count)],
    )


def main() -> None:
    benchmark_command(prog_name="benchmark")


# -- orchestration (parent process) -----------------------------------------------------------------------------


def run_benchmark(
    configs: list[RunConfig],
    plan: PhotoPlan,
    *,
    model: str | None,
    threads: int | None,
    seed: int,
    keras_model: str | None,
    roofline_seconds: float | None,
) -> dict[str, Any]:
    """Run every configuration (and the Keras reference, the roofline) and return the whole report."""
    report: dict[str, Any] = {
        "machine": describe_machine(),
        "photos": {"first": plan.first, "warmup": plan.warmup, "timed": plan.timed},
        "settings": {"model": model, "threads": threads, "seed": seed, "compare_keras": keras_model},
        "memory_note": MEMORY_NOTE,
    }
    common = {"threads": threads, "seed": seed, "plan": asdict(plan)}
    runs = []
    for config in configs:
        click.echo(f"running {config.label()} ...", err=True)
        result = run_worker_process({"kind": "runtime", "model": model, **asdict(config), **common})
        result["requested"] = asdict(config)
        if result["status"] == "ok":
            result.update(summarize(result["per_photo"]))
        runs.append(result)
    _add_flops(runs)

    references: list[dict[str, Any]] = []
    if keras_model:
        references = _run_keras(keras_model, runs, common)
        report["machine"]["versions"].update(next((r["versions"] for r in references if "versions" in r), {}))
    if roofline_seconds is not None:
        click.echo("measuring fp32 matmul throughput ...", err=True)
        report["roofline"] = run_roofline(threads, roofline_seconds)
        peak = report["roofline"].get("best_gflop_per_s")
        for run in runs:
            achieved = run.get("flops", {}).get("achieved_gflop_per_s")
            if peak and achieved is not None:
                run["flops"]["roofline_fraction"] = achieved / peak
    for run in runs:
        run["name"] = run_name(run)
    for reference in references:
        reference["name"] = run_name(reference)
    report["configurations"] = runs
    report["keras_reference"] = references
    report["machine"]["load_average_end"] = _load_average()
    return report


def _add_flops(runs: list[dict[str, Any]]) -> None:
    """Model FLOPs per view from the ONNX graph, and the GFLOP/s each run achieved during inference."""
    from .flops import count_flops

    counts: dict[str, dict[str, Any]] = {}
    for run in runs:
        if run["status"] != "ok":
            continue
        path = run["model"]["path"]
        if path not in counts:
            try:
                counts[path] = count_flops(path).to_dict()
            except Exception as exc:  # a graph onnx cannot infer shapes for: report it, keep the timings
                counts[path] = {"error": f"FLOPs not counted: {exc}"}
        flops = dict(counts[path])
        if "gflop_per_view" in flops:
            views = sum(row["views"] for row in run["per_photo"])
            infer_s = sum(row["infer_s"] for row in run["per_photo"])
            flops["gflop_per_photo"] = flops["gflop_per_view"] * run["views_per_photo"]
            flops["achieved_gflop_per_s"] = flops["gflop_per_view"] * views / infer_s  # inference stage only
            flops["pipeline_gflop_per_s"] = flops["gflop_per_view"] * run["views_per_s"]  # whole photo latency
        run["flops"] = flops


def _run_keras(keras_model: str, runs: list[dict[str, Any]], common: dict[str, Any]) -> list[dict[str, Any]]:
    """One Keras run per (TTA, scan) plan among the runtime runs; each runtime run is compared with its plan."""
    references: dict[tuple[str, str], dict[str, Any]] = {}
    for run in runs:
        if run["status"] != "ok":
            continue
        scan = SEED_B3_SCAN if keras_model == SEED_B3 else run["scan"]
        key = (run["tta"], scan)
        if key not in references:
            click.echo(f"running keras {keras_model} tta={key[0]} scan={key[1]} ...", err=True)
            spec = {
                "kind": "keras",
                "model": keras_model,
                "tta": key[0],
                "scan": key[1],
                "onnx_crop_size": run["model"]["crop_size"],
                "onnx_short_side": run["model"]["photo_short_side"],
                **common,
            }
            reference = run_worker_process(spec, {"TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")})
            reference["requested"] = {"model": keras_model, "tta": key[0], "scan": key[1]}
            if reference["status"] == "ok":
                reference.update(summarize(reference["per_photo"]))
            references[key] = reference
        run["keras"] = compare_with_keras(run, references[key], random_weights=keras_model == SEED_B3)
    return list(references.values())


def compare_with_keras(run: dict[str, Any], reference: dict[str, Any], *, random_weights: bool) -> dict[str, Any]:
    """Speed-up of a runtime run over the Keras reference of the same plan, and their top-1 agreement."""
    if reference["status"] != "ok":
        return {"reference": reference.get("requested"), "status": reference["status"],
                "reason": reference.get("reason")}
    ours, theirs = run["latency_s"], reference["latency_s"]
    comparison: dict[str, Any] = {
        "reference": reference["requested"],
        "status": "ok",
        "speedup_mean": theirs["mean"] / ours["mean"],
        "speedup_p50": theirs["p50"] / ours["p50"],
    }
    if random_weights:
        comparison["top1_agreement"] = None
        comparison["agreement_note"] = "n/a (random weights)"
    else:
        pairs = list(zip([row["top1"] for row in run["per_photo"]], [row["top1"] for row in reference["per_photo"]]))
        comparison["top1_agreement"] = sum(a == b for a, b in pairs) / len(pairs)
        comparison["agreement_note"] = f"top-1 equal on {sum(a == b for a, b in pairs)} of {len(pairs)} photos"
    return comparison


def run_worker_process(spec: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run `run_worker` on `spec` in a fresh Python process and return its result (or why it failed)."""
    with tempfile.TemporaryDirectory(prefix="cassava-bench-") as folder:
        spec_path, result_path = Path(folder) / "spec.json", Path(folder) / "result.json"
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        child_env = dict(os.environ)
        child_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
        child_env.update(env or {})
        # The worker is this package under whatever name it was imported as: `benchmarks` in the repository,
        # `cassava_edge_benchmarks` when installed.
        code = f"import sys; from {__package__}.latency import run_worker; run_worker(sys.argv[1], sys.argv[2])"
        process = subprocess.run(
            [sys.executable, "-c", code, str(spec_path), str(result_path)],
            env=child_env, capture_output=True, text=True,
        )
        if result_path.is_file():
            return json.loads(result_path.read_text(encoding="utf-8"))
        tail = " | ".join(process.stderr.strip().splitlines()[-5:])
        return {"status": "failed", "kind": spec["kind"], "reason": f"worker exited with {process.returncode}: {tail}"}


def run_roofline(threads: int | None, seconds: float) -> dict[str, Any]:
    """fp32 matmul GFLOP/s of this machine, with the BLAS limited to the benchmark's thread count."""
    count = threads or _physical_cores()
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")
    result = run_worker_process({"kind": "roofline", "seconds": seconds}, {name: str(count) for name in names})
    result["threads"] = count
    return result


# -- statistics -------------------------------------------------------------------------------------------------


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Latency percentiles, throughput and mean stage times of the timed photos of one run."""
    totals = np.array([row["total_s"] for row in rows], dtype=np.float64)
    elapsed = float(totals.sum())
    photos, views, crops = len(rows), sum(row["views"] for row in rows), sum(row["scan_crops"] for row in rows)
    p50, p90, p99 = (float(v) for v in np.percentile(totals, [50, 90, 99]))
    return {
        "photos": photos,
        "latency_s": {"p50": p50, "p90": p90, "p99": p99, "mean": float(totals.mean()),
                      "min": float(totals.min()), "max": float(totals.max())},
        "photos_per_s": photos / elapsed,
        "views_per_s": views / elapsed,  # model inputs per second: scan crops x TTA views
        "scan_crops_per_s": crops / elapsed,
        "views_per_photo": views / photos,
        "scan_crops_per_photo": crops / photos,
        "stages_s_per_photo": {stage: float(np.mean([row[f"{stage}_s"] for row in rows])) for stage in STAGES},
    }


def run_name(run: dict[str, Any]) -> str:
    """A short table label: what actually ran where known, what was asked for otherwise."""
    requested = run.get("requested", {})
    if run.get("kind") == "keras":
        name = Path(str(requested.get("model"))).name
        return f"keras {name} {requested.get('tta')}/{requested.get('scan')}"
    if run["status"] != "ok":
        return RunConfig(**requested).label()
    device = run["device"]
    provider = requested["provider"] if requested["provider"] == device else f"{requested['provider']}->{device}"
    return f"{provider} {run['model']['precision']} {run['tta']}/{run['scan']} c{run['session']['chunk_size']}"


# -- worker (child process) ------------------------------------------------------------------------------------


class Pipeline(Protocol):
    """The four timed stages of one photo."""

    def load(self, path: str) -> Any: ...

    def prepare(self, image: Any, path: str) -> Any: ...

    def counts(self, prepared: Any) -> tuple[int, int]:
        """(scan crops, views) of a prepared photo."""
        ...

    def infer(self, prepared: Any) -> np.ndarray: ...

    def postprocess(self, path: str, probs: np.ndarray, prepared: Any) -> int:
        """The top-1 class index."""
        ...


def run_worker(spec_path: str, result_path: str) -> None:
    """Child-process entry: run the spec's measurement and write its result as JSON."""
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    try:
        if spec["kind"] == "roofline":
            result = measure_matmul(spec["seconds"])
        elif spec["kind"] == "runtime":
            result = time_runtime(spec)
        else:
            result = time_keras(spec)
    except CassavaEdgeError as exc:  # ProviderError (CUDA missing), a missing variant, d4 on non-square crops
        result = {"status": "skipped", "reason": str(exc)}
    except Exception as exc:
        lines = traceback.format_exc().strip().splitlines()
        result = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}", "traceback": lines[-12:]}
    result["kind"] = spec["kind"]
    Path(result_path).write_text(json.dumps(result), encoding="utf-8")


def time_pipeline(pipeline: Pipeline, plan: dict[str, Any]) -> dict[str, Any]:
    first = time_photo(pipeline, plan["first"])
    for path in plan["warmup"]:
        time_photo(pipeline, path)
    return {"first_call_s": first["total_s"], "first_call_infer_s": first["infer_s"],
            "per_photo": [time_photo(pipeline, path) for path in plan["timed"]]}


def time_photo(pipeline: Pipeline, path: str) -> dict[str, Any]:
    clock = time.perf_counter
    start = clock()
    image = pipeline.load(path)
    loaded = clock()
    prepared = pipeline.prepare(image, path)
    ready = clock()
    probs = pipeline.infer(prepared)
    inferred = clock()
    top1 = pipeline.postprocess(path, probs, prepared)
    done = clock()
    crops, views = pipeline.counts(prepared)
    return {
        "source": path, "total_s": done - start, "load_s": loaded - start, "prepare_s": ready - loaded,
        "infer_s": inferred - ready, "postprocess_s": done - inferred, "scan_crops": crops, "views": views,
        "top1": top1,
    }


class RuntimePipeline:
    def __init__(self, classifier: Any) -> None:
        self.classifier = classifier

    def load(self, path: str) -> np.ndarray:
        return self.classifier.load(path)

    def prepare(self, image: np.ndarray, path: str) -> Any:
        return self.classifier.prepare(image, name=path)

    def counts(self, prepared: Any) -> tuple[int, int]:
        return len(prepared.boxes), prepared.num_views

    def infer(self, prepared: Any) -> np.ndarray:
        return self.classifier.infer(prepared.views)

    def postprocess(self, path: str, probs: np.ndarray, prepared: Any) -> int:
        return int(self.classifier.postprocess(path, probs, prepared).label_index)


def time_runtime(spec: dict[str, Any]) -> dict[str, Any]:
    from cassava_edge.classifier import Classifier

    baseline = _current_rss()
    start = time.perf_counter()
    classifier = Classifier(
        model=spec["model"], provider=spec["provider"], variant=spec["variant"], tta=spec["tta"],
        scan=spec["scan"], threads=spec["threads"], chunk_size=spec["chunk_size"], seed=spec["seed"],
    )
    session_s = time.perf_counter() - start
    timings = time_pipeline(RuntimePipeline(classifier), spec["plan"])
    meta = classifier.metadata
    return {
        "status": "ok",
        "session_creation_s": session_s,
        **timings,
        "memory": _memory(baseline),
        "model": {"path": str(classifier.session.path), "precision": meta.precision,
                  "crop_size": list(meta.crop_size), "photo_short_side": meta.photo.short_side},
        "device": classifier.session.device,
        "providers_loaded": list(classifier.session.providers),
        "session": classifier.session.describe(),
        "tta": classifier.tta.name,
        "views_per_crop": classifier.tta.views_per_crop,
        "scan": classifier.scan,
    }


class KerasPipeline:
    """The reference notebook's way: TF decode and antialiased resize to the training scale, the scan plan's
    crops, each crop's TTA copies, and one `model.predict` per crop; probabilities averaged over all views."""

    def __init__(self, model: Any, crop_hw: tuple[int, int], short_side: int, scan: str, tta: str, seed: int) -> None:
        import keras
        import tensorflow as tf

        from cassava_edge.tta import SeedPreset, make_tta

        self.tf, self.model = tf, model
        self.crop_hw, self.short_side, self.scan = crop_hw, short_side, scan
        self.augment = None
        if tta == "seed":
            # The notebook's TTA: random flips, zoom in and contrast, as Keras layers in training mode.
            self.copies = SeedPreset.views_per_crop
            self.augment = keras.Sequential([
                keras.layers.RandomFlip("horizontal_and_vertical", seed=seed),
                keras.layers.RandomZoom((-0.2, 0.0), seed=seed),  # = SeedPreset.zoom_range
                keras.layers.RandomContrast(0.2, seed=seed),  # factor 0.8..1.2 = SeedPreset.contrast_range
            ])
        else:
            self.geometric = make_tta(tta, crop_hw=crop_hw)  # the same exact flips/turns as the runtime

    def load(self, path: str) -> Any:
        tf = self.tf
        return tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)

    def prepare(self, image: Any, path: str) -> list[np.ndarray]:
        from cassava_edge.scan import plan_boxes, scaled_size

        tf = self.tf
        size = scaled_size(tuple(image.shape[:2]), self.short_side, self.crop_hw)
        photo = tf.image.resize(image, size, antialias=True)  # float32 0..255, as training/data.py does
        per_crop = []
        for x, y, width, height in plan_boxes(self.scan, size, self.crop_hw):
            crop = photo[y : y + height, x : x + width]
            if (height, width) != self.crop_hw:  # scan "full"
                crop = tf.image.resize(crop, self.crop_hw, antialias=True)
            if self.augment is not None:
                views = self.augment(tf.repeat(crop[None], self.copies, axis=0), training=True)
            else:
                views = self.geometric.apply(crop.numpy()[None])
            per_crop.append(np.asarray(views, dtype=np.float32))
        return per_crop

    def counts(self, prepared: list[np.ndarray]) -> tuple[int, int]:
        return len(prepared), sum(len(views) for views in prepared)

    def infer(self, prepared: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([self.model.predict(views, verbose=0) for views in prepared])

    def postprocess(self, path: str, probs: np.ndarray, prepared: list[np.ndarray]) -> int:
        return int(np.argmax(probs.astype(np.float64).mean(axis=0)))


def time_keras(spec: dict[str, Any]) -> dict[str, Any]:
    import keras
    import tensorflow as tf

    if spec["threads"]:
        tf.config.threading.set_intra_op_parallelism_threads(spec["threads"])
    baseline = _current_rss()
    start = time.perf_counter()
    if spec["model"] == SEED_B3:
        keras.utils.set_random_seed(spec["seed"])
        model = seed_b3_model()
        crop_hw, short_side = (SEED_B3_CROP, SEED_B3_CROP), SEED_B3_SHORT_SIDE
    else:
        model = keras.models.load_model(spec["model"], compile=False)
        crop_hw = tuple(int(d) for d in model.input_shape[1:3])
        onnx_h = spec["onnx_crop_size"][0]
        # The ONNX model's training scale, carried over to the Keras model's crop size (the same when they match).
        short_side = round(spec["onnx_short_side"] * crop_hw[0] / onnx_h)
    load_s = time.perf_counter() - start
    pipeline = KerasPipeline(model, crop_hw, short_side, spec["scan"], spec["tta"], spec["seed"])
    timings = time_pipeline(pipeline, spec["plan"])
    return {
        "status": "ok",
        "session_creation_s": load_s,
        **timings,
        "memory": _memory(baseline),
        "model": {"path": spec["model"], "crop_size": list(crop_hw), "photo_short_side": short_side,
                  "parameters": int(model.count_params())},
        "tta": spec["tta"],
        "scan": spec["scan"],
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
    }


def seed_b3_model() -> Any:
    """The reference notebook's classifier: EfficientNetB3 at 512, GAP, Dropout, 5-way softmax (random weights)."""
    import keras

    backbone = keras.applications.EfficientNetB3(include_top=False, weights=None,
                                                 input_shape=(SEED_B3_CROP, SEED_B3_CROP, 3))
    x = keras.layers.GlobalAveragePooling2D()(backbone.output)
    x = keras.layers.Dropout(0.3)(x)
    outputs = keras.layers.Dense(5, activation="softmax")(x)
    return keras.Model(backbone.input, outputs, name="seed_b3")


def measure_matmul(seconds: float) -> dict[str, Any]:
    """Repeat a ROOFLINE_SIZE^2 float32 matmul for `seconds` (at least 3 times); GFLOP/s = 2 n^3 / time."""
    rng = np.random.default_rng(0)
    a = rng.random((ROOFLINE_SIZE, ROOFLINE_SIZE), dtype=np.float32)
    b = rng.random((ROOFLINE_SIZE, ROOFLINE_SIZE), dtype=np.float32)
    out = np.empty_like(a)
    np.matmul(a, b, out=out)  # untimed: BLAS thread start-up
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(times) < 3 or time.perf_counter() < deadline:
        start = time.perf_counter()
        np.matmul(a, b, out=out)
        times.append(time.perf_counter() - start)
    flop = 2.0 * ROOFLINE_SIZE**3
    return {
        "status": "ok",
        "matrix": f"{ROOFLINE_SIZE}x{ROOFLINE_SIZE} float32",
        "repetitions": len(times),
        "best_gflop_per_s": flop / min(times) / 1e9,
        "median_gflop_per_s": flop / float(np.median(times)) / 1e9,
        "blas_threads_env": os.environ.get("OPENBLAS_NUM_THREADS"),
    }


def _current_rss() -> int | None:
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.Process().memory_info().rss)


def _peak_rss() -> int | None:
    try:
        import resource
    except ImportError:  # Windows
        try:
            import psutil

            return int(getattr(psutil.Process().memory_info(), "peak_wset", 0)) or None
        except ImportError:
            return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB on Linux


def _memory(baseline: int | None) -> dict[str, Any]:
    peak = _peak_rss()
    mib = 1024 * 1024
    return {
        "peak_rss_mb": peak / mib if peak else None,
        "baseline_rss_mb": baseline / mib if baseline else None,
        "peak_increase_mb": (peak - baseline) / mib if peak and baseline else None,
    }


# -- machine ---------------------------------------------------------------------------------------------------


def _physical_cores() -> int:
    try:
        import psutil

        return psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except ImportError:
        return os.cpu_count() or 1


def _load_average() -> list[float] | None:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine() -> dict[str, Any]:
    """CPU, cores, RAM, OS, Python and library versions; the load average shows competing work."""
    import cv2
    import onnxruntime as ort

    from cassava_edge.session import onnxruntime_package

    try:
        import psutil

        ram_gb: float | None = psutil.virtual_memory().total / 1e9
    except ImportError:
        ram_gb = None
    versions = {onnxruntime_package(): ort.__version__, "numpy": np.__version__, "opencv": cv2.__version__}
    try:
        import onnx

        versions["onnx"] = onnx.__version__
    except ImportError:
        pass
    return {
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": _physical_cores(),
        "ram_gb": ram_gb,
        "os": platform.platform(),
        "python": platform.python_version(),
        "onnxruntime_providers": ort.get_available_providers(),
        "versions": versions,
        "load_average_start": _load_average(),
    }


# -- output ----------------------------------------------------------------------------------------------------


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    ms = seconds * 1000
    return f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}"


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths)))
             for line in [headers, *rows]]
    return "\n".join(lines)


def print_report(report: dict[str, Any]) -> None:
    machine = report["machine"]
    click.echo(f"\n{machine['cpu']}, {machine['logical_cores']} logical cores, "
               f"{_num(machine['ram_gb'])} GB RAM, {machine['os']}, Python {machine['python']}")
    click.echo(f"load average at start {machine['load_average_start']} (other processes compete for the CPU)")
    click.echo(f"{len(report['photos']['timed'])} timed photos per run, latency in ms per photo\n")
    runs = [run for run in report["configurations"] if run["status"] == "ok"]
    references = [ref for ref in report["keras_reference"] if ref["status"] == "ok"]
    latency_rows = []
    for run in [*runs, *references]:
        lat = run["latency_s"]
        latency_rows.append([
            run["name"], _num(run["views_per_photo"]), _ms(run["session_creation_s"]), _ms(run["first_call_s"]),
            _ms(lat["p50"]), _ms(lat["p90"]), _ms(lat["p99"]), _ms(lat["mean"]), _ms(lat["min"]), _ms(lat["max"]),
            _num(run["photos_per_s"], 2), _num(run["views_per_s"], 1),
        ])
    if latency_rows:
        click.echo(_table(["configuration", "views", "session", "first", "p50", "p90", "p99", "mean", "min", "max",
                           "photo/s", "view/s"], latency_rows))
        click.echo()
    detail_rows = []
    for run in [*runs, *references]:
        stages = run["stages_s_per_photo"]
        memory = run["memory"]
        flops = run.get("flops", {})
        keras = run.get("keras", {})
        speedup = (f"{keras['speedup_mean']:.2f}x/{keras['speedup_p50']:.2f}x" if keras.get("status") == "ok"
                   else "-")
        agreement = keras.get("top1_agreement")
        detail_rows.append([
            run["name"], *(_ms(stages[stage]) for stage in STAGES),
            f"{_num(memory['peak_rss_mb'], 0)} (+{_num(memory['peak_increase_mb'], 0)})",
            _num(flops.get("achieved_gflop_per_s")),
            f"{flops['roofline_fraction']:.0%}" if "roofline_fraction" in flops else "-",
            speedup,
            f"{agreement:.0%}" if agreement is not None else keras.get("agreement_note", "-") if keras else "-",
        ])
    if detail_rows:
        click.echo(_table(["configuration", *(STAGE_TITLES[stage] for stage in STAGES), "peak MB (+rise)",
                           "GFLOP/s", "roofline", "vs keras mean/p50", "top-1 agree"], detail_rows))
    for run in [*report["configurations"], *report["keras_reference"]]:
        if run["status"] != "ok":
            click.echo(f"{run['status']}: {run['name']}: {run['reason']}")
    roofline = report.get("roofline")
    if roofline:
        if roofline["status"] == "ok":
            click.echo(f"roofline: {roofline['matrix']} matmul, {roofline['threads']} threads: "
                       f"{roofline['best_gflop_per_s']:.1f} GFLOP/s best, {roofline['median_gflop_per_s']:.1f} median")
        else:
            click.echo(f"roofline failed: {roofline['reason']}")
    click.echo("stage times are means per photo; GFLOP/s = model FLOPs (2 x conv/matmul MACs) x views / "
               "inference time; peak MB is each run's own subprocess (+rise over its baseline after imports)")


def write_chart(report: dict[str, Any], path: Path) -> None:
    """Horizontal bars of p50 latency per run, whiskers to p99 and a tick at p90."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [run for run in [*report["configurations"], *report["keras_reference"]] if run["status"] == "ok"]
    names = [run["name"] for run in runs]
    p50 = np.array([run["latency_s"]["p50"] * 1000 for run in runs])
    p90 = np.array([run["latency_s"]["p90"] * 1000 for run in runs])
    p99 = np.array([run["latency_s"]["p99"] * 1000 for run in runs])
    colors = ["tab:orange" if run.get("kind") == "keras" else "tab:blue" for run in runs]
    figure, axes = plt.subplots(figsize=(10, 1.2 + 0.4 * max(1, len(runs))))
    positions = np.arange(len(runs))
    axes.barh(positions, p50, color=colors, xerr=[np.zeros_like(p50), p99 - p50], capsize=3)
    axes.plot(p90, positions, "k|", markersize=12, label="p90")
    axes.set_yticks(positions, names, fontsize=8)
    axes.invert_yaxis()
    if len(runs) and p99.max() / max(p50.min(), 1e-9) > 30:  # a spread the eye cannot read on a linear axis
        axes.set_xscale("log")
    axes.set_xlabel("latency per photo, ms (bar p50, tick p90, whisker p99; orange = Keras reference)")
    axes.margins(x=0.1)
    axes.legend(loc="best")
    axes.set_title(f"{report['machine']['cpu']}, {len(report['photos']['timed'])} photos per run", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=120)
    plt.close(figure)


if __name__ == "__main__":
    main()
