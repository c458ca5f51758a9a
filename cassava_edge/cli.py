"""The `cassava-edge` command: a thin click layer over the Classifier API.

The group lives here (with the error handling every command shares); each command lives in its own module in
`cassava_edge/commands/`, writers in `cassava_edge.writers`, file discovery in `cassava_edge.sources`.
Exit codes: 0 all files classified, 1 some files failed, 2 usage errors (bad path or option, unusable model).
"""

from __future__ import annotations

from typing import Any

import click

from cassava_edge import __version__
from cassava_edge.commands.benchmark import benchmark_command
from cassava_edge.commands.classify import classify
from cassava_edge.commands.common import UsageFailure
from cassava_edge.commands.evaluate import evaluate
from cassava_edge.commands.info import info
from cassava_edge.errors import CassavaEdgeError
from cassava_edge.sources import find_images  # noqa: F401  (benchmarks.latency imports it from here)


class CliGroup(click.Group):
    """Turns any CassavaEdgeError escaping a command into a one-line error instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CassavaEdgeError as exc:
            raise UsageFailure(str(exc)) from None


@click.group(cls=CliGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="cassava-edge", message="%(prog)s %(version)s")
def cli() -> None:
    """Classify cassava leaf photos into five disease classes with an ONNX model."""


for _command in (classify, info, evaluate):
    cli.add_command(_command)
_benchmark = benchmark_command()
if _benchmark is not None:
    cli.add_command(_benchmark, "benchmark")


def main() -> None:
    """Console entry point (`cassava-edge`)."""
    cli(prog_name="cassava-edge")


if __name__ == "__main__":
    main()
