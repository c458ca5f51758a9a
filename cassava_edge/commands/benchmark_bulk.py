"""`cassava-edge benchmark-bulk`: the bulk-run benchmark (benchmarks/bulk.py), loaded like `benchmark`.

The runtime does not import the benchmarks: the command is found through the `cassava_edge.commands` entry
points when it runs (see `cassava_edge.commands.benchmark`).
"""

from __future__ import annotations

from cassava_edge.commands.benchmark import forwarding_command

benchmark_bulk = forwarding_command(
    "benchmark-bulk",
    "Photos/s of a folder: workers 0, pipelined, and Ray Data with 1 and 2 actors (--help for the options).",
)
