"""The `cassava-edge` command: a thin click layer over the Classifier API.

The group lives here (with the error handling every command shares); each command lives in its own module in
`cassava_edge/commands/`, writers in `cassava_edge.writers`, file discovery in `cassava_edge.sources`.
Exit codes: 0 all files classified, 1 some files failed, 2 usage errors (bad path or option, unusable model, a
missing extra), 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import io
import os
import sys
from typing import Any

import click

from cassava_edge import __version__
from cassava_edge.commands.benchmark import benchmark_command
from cassava_edge.commands.benchmark_bulk import benchmark_bulk
from cassava_edge.commands.bulk import EXIT_INTERRUPTED
from cassava_edge.commands.classify import classify
from cassava_edge.commands.common import UsageFailure
from cassava_edge.commands.evaluate import evaluate
from cassava_edge.commands.info import info
from cassava_edge.commands.models import models_command
from cassava_edge.commands.serve import benchmark_serve, serve
from cassava_edge.errors import CassavaEdgeError
from cassava_edge.extras import missing_extra_message


# Set to see the traceback of an unexpected error instead of its one-line summary.
DEBUG_VARIABLE = "CASSAVA_EDGE_DEBUG"


class CliGroup(click.Group):
    """Every error escaping a command becomes one line, never a traceback: a CassavaEdgeError or a missing extra
    is the user's (exit 2, naming what to install), an OSError the system's (exit 1, e.g. a full disk while
    writing), anything else a bug (exit 1)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            # Ctrl-C before any result (a command that writes results says more): click would print "Aborted!"
            # and exit 1, which here means "some photos failed".
            click.echo("interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except CassavaEdgeError as exc:
            raise UsageFailure(str(exc)) from None
        except BrokenPipeError:
            # The reader of the results went away (`| head`): stop quietly, as other command-line tools do.
            _silence_stdout()
            ctx.exit(1)
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            raise click.ClickException(f"{where}{exc.strerror or exc}") from None
        except Exception as exc:
            # An extra's module imported outside cassava_edge.extras (e.g. by the benchmarks): name its install.
            missing = missing_extra_message(exc) if isinstance(exc, ModuleNotFoundError) else None
            if missing is not None:
                raise UsageFailure(missing) from None
            if os.environ.get(DEBUG_VARIABLE):
                raise
            raise click.ClickException(
                f"unexpected {type(exc).__name__}: {exc} (a bug; please report it with the output of "
                f"{DEBUG_VARIABLE}=1 cassava-edge ...)"
            ) from None


@click.group(cls=CliGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="cassava-edge", message="%(prog)s %(version)s")
def cli() -> None:
    """Classify cassava leaf photos into five disease classes with an ONNX model."""


for _command in (classify, info, evaluate, models_command):
    cli.add_command(_command)
_benchmark = benchmark_command()
if _benchmark is not None:
    cli.add_command(_benchmark, "benchmark")
cli.add_command(benchmark_bulk, "benchmark-bulk")
cli.add_command(serve)
cli.add_command(benchmark_serve, "benchmark-serve")


def _silence_stdout() -> None:
    """Point stdout at devnull, so that Python's final flush does not fail a second time on the closed pipe."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        pass


def main() -> None:
    """Console entry point (`cassava-edge`)."""
    cli(prog_name="cassava-edge")


if __name__ == "__main__":
    main()
