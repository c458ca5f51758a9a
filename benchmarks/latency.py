"""Latency benchmark of the cassava-edge runtime, optionally side by side with the reference Keras pipeline.

Run `python -m benchmarks.latency --help` (from the repository root) or `cassava-edge benchmark --help`.
How it measures: benchmarks/README.md. The pieces: cli.py (the command), harness.py (one subprocess per
configuration, statistics, FLOPs, the comparison), worker.py (the timed stages, in the subprocess), reference.py
(the Keras pipeline), machine.py (machine, memory, roofline), report.py (BenchmarkReport, tables, chart).
Top-level imports stay light (numpy, click, cassava_edge): onnx, psutil and matplotlib are imported where used,
TensorFlow only in the Keras subprocess.
"""

from __future__ import annotations

from .cli import benchmark_command, main

__all__ = ["benchmark_command", "main"]

if __name__ == "__main__":
    main()
