"""`cassava-edge benchmark`: the command itself lives in benchmarks/ (its module imports only numpy, click and
cassava_edge; the Keras comparison imports TensorFlow only when asked for). Absent from a wheel built without it."""

from __future__ import annotations

import click


def benchmark_command() -> click.Command | None:
    """The benchmark command, or None when benchmarks/ is not installed."""
    try:
        from benchmarks.latency import benchmark_command as command
    except ImportError:
        return None
    return command
