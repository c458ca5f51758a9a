"""`cassava-edge benchmark`: the latency benchmark, registered here without the runtime importing it.

The benchmark lives in benchmarks/ (installed as `cassava_edge_benchmarks`) and imports the runtime, never the
other way round: it announces its command in the `cassava_edge.commands` entry-point group (setup.py), and this
command loads it when it runs. So `cassava-edge --help` always lists `benchmark`, and when the benchmark or one
of its dependencies is missing, running it says what to install instead of the command vanishing.
"""

from __future__ import annotations

import importlib.metadata

import click

from cassava_edge.commands.common import UsageFailure

ENTRY_POINTS = "cassava_edge.commands"
INSTALL_HINT = 'pip install "cassava-edge[bench]"'


def load_command(name: str) -> click.Command:
    """The command an installed package registers as `name` in the cassava_edge.commands entry points."""
    found = importlib.metadata.entry_points(group=ENTRY_POINTS, name=name)
    if not found:
        raise UsageFailure(f"the {name} command is not installed: {INSTALL_HINT}")
    try:
        return next(iter(found)).load()
    except ImportError as exc:
        missing = getattr(exc, "name", None) or str(exc)
        raise UsageFailure(f"the {name} command needs {missing}, which is not installed: {INSTALL_HINT}") from None


def forwarding_command(name: str, summary: str) -> click.Command:
    """A command that passes its arguments, --help included, to the installed command registered as `name`."""

    @click.command(
        name,
        help=summary,
        context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
        add_help_option=False,  # --help goes to the command itself, which knows its options
    )
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    @click.pass_context
    def forward(ctx: click.Context, args: tuple[str, ...]) -> None:
        load_command(name).main(list(args), prog_name=ctx.command_path)

    return forward


benchmark = forwarding_command(
    "benchmark", "Time the runtime per photo, optionally against the Keras pipeline (--help for the options)."
)


def benchmark_command() -> click.Command:
    """The `benchmark` command, for cassava_edge.cli to register."""
    return benchmark
