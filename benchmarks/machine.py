"""What machine a benchmark ran on, how much memory a run used, and the fp32 matmul roofline.

psutil is optional: without it the RAM and the memory figures are None (pip install "cassava-edge[bench]").
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOFLINE_SIZE = 2048


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
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": physical_cores(),
        "ram_gb": ram_gb,
        "os": platform.platform(),
        "python": platform.python_version(),
        "onnxruntime_providers": ort.get_available_providers(),
        "versions": versions,
        "load_average_start": load_average(),
    }


def physical_cores() -> int:
    try:
        import psutil

        return psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except ImportError:
        return os.cpu_count() or 1


def load_average() -> list[float] | None:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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


def current_rss() -> int | None:
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.Process().memory_info().rss)


def peak_rss() -> int | None:
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


def memory_use(baseline: int | None) -> dict[str, Any]:
    peak = peak_rss()
    mib = 1024 * 1024
    return {
        "peak_rss_mb": peak / mib if peak else None,
        "baseline_rss_mb": baseline / mib if baseline else None,
        "peak_increase_mb": (peak - baseline) / mib if peak and baseline else None,
    }
