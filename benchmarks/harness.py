"""The parent-process side of the latency benchmark: every configuration (the cross product of --provider,
--variant, --tta, --scan and --chunk-size) runs in a fresh Python subprocess (worker.py), so session creation and
the first call are cold, and the peak resident memory of that process belongs to that configuration alone. The
Keras reference and the --roofline matmul get a subprocess each as well. Here: the runs, their statistics, FLOPs
and the comparison with Keras, gathered into a BenchmarkReport.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np

from .machine import describe_machine, load_average, physical_cores
from .reference import SEED_B3, SEED_B3_SCAN, SEED_B3_TTA
from .report import BenchmarkReport
from .worker import STAGES

REPO_ROOT = Path(__file__).resolve().parents[1]

INSTALL_HINT = 'pip install "cassava-edge[bench]"'  # psutil, matplotlib, onnx
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


def run_benchmark(
    configs: list[RunConfig],
    plan: PhotoPlan,
    *,
    model: str | None,
    threads: int | None,
    seed: int,
    keras_model: str | None,
    roofline_seconds: float | None,
) -> BenchmarkReport:
    """Run every configuration (and the Keras reference, the roofline) and return the whole report."""
    report = BenchmarkReport(
        machine=describe_machine(),
        photos={"first": plan.first, "warmup": plan.warmup, "timed": plan.timed},
        settings={"model": model, "threads": threads, "seed": seed, "compare_keras": keras_model},
        memory_note=MEMORY_NOTE,
    )
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
        report.machine["versions"].update(next((r["versions"] for r in references if "versions" in r), {}))
    if roofline_seconds is not None:
        click.echo("measuring fp32 matmul throughput ...", err=True)
        report.roofline = run_roofline(threads, roofline_seconds)
        peak = report.roofline.get("best_gflop_per_s")
        for run in runs:
            achieved = run.get("flops", {}).get("achieved_gflop_per_s")
            if peak and achieved is not None:
                run["flops"]["roofline_fraction"] = achieved / peak
    for run in runs:
        run["name"] = run_name(run)
    for reference in references:
        reference["name"] = run_name(reference)
    report.configurations = runs
    report.keras_reference = references
    report.machine["load_average_end"] = load_average()
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
            except ImportError:
                counts[path] = {"error": f"FLOPs not counted: onnx is not installed ({INSTALL_HINT})"}
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
    """One Keras run per (TTA, scan) plan among the runtime runs; each runtime run is compared with its plan. The
    seed-b3 reference has one plan of its own (the notebook's), whatever plan each runtime run has."""
    references: dict[tuple[str, str], dict[str, Any]] = {}
    for run in runs:
        if run["status"] != "ok":
            continue
        key = (SEED_B3_TTA, SEED_B3_SCAN) if keras_model == SEED_B3 else (run["tta"], run["scan"])
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
        code = f"import sys; from {__package__}.worker import run_worker; run_worker(sys.argv[1], sys.argv[2])"
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
    count = threads or physical_cores()
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")
    result = run_worker_process({"kind": "roofline", "seconds": seconds}, {name: str(count) for name in names})
    result["threads"] = count
    return result


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
