"""`cassava-edge benchmark-bulk`: the bulk-run benchmark (benchmarks/bulk.py), loaded like `benchmark`.

The runtime does not import the benchmarks: the command is found through the `cassava_edge.commands` entry
points when it runs (see `cassava_edge.commands.benchmark`).
"""

from __future__ import annotations

import click

from cassava_edge.commands.benchmark import load_command


@click.command(
    "benchmark-bulk",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
    add_help_option=False,  # --help goes to the benchmark itself, which knows its options
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def benchmark_bulk(ctx: click.Context, args: tuple[str, ...]) -> None:
    """Photos/s of a folder: workers 0, pipelined, and Ray Data with 1 and 2 actors (--help for the options)."""
    load_command("benchmark-bulk").main(list(args), prog_name=ctx.command_path)
