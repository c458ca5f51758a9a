"""`cassava-edge serve`: the classifier as an HTTP service (FastAPI on uvicorn) with the page at /.

Everything is checked before the model loads: the options, and that a server reachable from the network has an
API key (or --insecure-no-auth). Without the [serve] extra the command is one line naming its install.
"""

from __future__ import annotations

import threading
import time
import urllib.request
import webbrowser

import click

from cassava_edge.commands.benchmark import forwarding_command
from cassava_edge.commands.common import ClassifierOptions, UsageFailure, build_classifier, classifier_options
from cassava_edge.errors import OptionError
from cassava_edge.serve.settings import ServeSettings, check_exposure

SERVE_MODULES = ("fastapi", "uvicorn", "multipart", "prometheus_client", "starlette", "pydantic")
INSTALL_HINT = 'pip install "cassava-edge[serve]"'
API_KEY_VARIABLE = "CASSAVA_EDGE_API_KEY"
DEFAULTS = ServeSettings()  # the option defaults are the library's


@click.command()
@classifier_options
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback needs --api-key (or --insecure-no-auth).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--max-batch-views", type=click.IntRange(min=1), default=DEFAULTS.max_batch_views,
              show_default=True,
              help="Views of concurrent photos run together in one inference step, at most.")
@click.option("--max-wait-ms", type=click.FloatRange(min=0), default=DEFAULTS.max_wait_ms, show_default=True,
              help="How long a photo waits for others to share its step.")
@click.option("--max-queue", type=click.IntRange(min=1), default=DEFAULTS.max_queue, show_default=True,
              help="Photos in the service at once; one more is answered 503 with Retry-After.")
@click.option("--max-upload-mb", type=click.FloatRange(min=0, min_open=True), default=DEFAULTS.max_upload_mb,
              show_default=True,
              help="Largest photo accepted (413 beyond).")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0, min_open=True), default=DEFAULTS.timeout_s,
              show_default=True, help="Seconds a request may take (504 beyond).")
@click.option("--api-key", envvar=API_KEY_VARIABLE, show_envvar=True,
              help="Key every endpoint but /healthz asks for, as Authorization: Bearer <key>.")
@click.option("--insecure-no-auth", is_flag=True,
              help="Serve on a non-loopback --host without an API key (anyone who can reach it may use it).")
@click.option("--cors-origin", "cors_origins", multiple=True,
              help="An origin whose web pages may call the API (repeatable) [default: none].")
@click.option("--no-batching", is_flag=True, help="Run every photo's views on their own (for comparison).")
@click.option("--log-level", type=click.Choice(("critical", "error", "warning", "info", "debug")),
              default="info", show_default=True)
@click.option("--open", "open_page", is_flag=True, help="Open the page in this machine's web browser once it is up.")
def serve(
    options: ClassifierOptions, host: str, port: int, max_batch_views: int, max_wait_ms: float, max_queue: int,
    max_upload_mb: float, timeout_s: float, api_key: str | None, insecure_no_auth: bool,
    cors_origins: tuple[str, ...], no_batching: bool, log_level: str, open_page: bool,
) -> None:
    """Serve the classifier over HTTP: POST /v1/classify, /v1/classify/batch, the page at /, docs at /docs."""
    try:
        check_exposure(host, api_key, insecure_no_auth)
        settings = ServeSettings(
            max_batch_views=max_batch_views, max_wait_ms=max_wait_ms, max_queue=max_queue,
            max_upload_mb=max_upload_mb, timeout_s=timeout_s, api_key=api_key, cors_origins=cors_origins,
            batching=not no_batching,
        )
    except OptionError as exc:
        raise UsageFailure(str(exc)) from None
    try:
        import uvicorn

        from cassava_edge.serve.app import create_app
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in SERVE_MODULES:
            raise
        raise UsageFailure(f"{exc.name} is not installed: {INSTALL_HINT}") from None
    app = create_app(build_classifier(options), settings)
    where = f"http://{host if ':' not in host else f'[{host}]'}:{port}/"
    click.echo(f"cassava-edge serve: the page at {where}, the API docs at {where}docs"
               + (" (API key required)" if api_key else ""), err=True)
    if open_page:
        open_when_up(where)
    # Connections beyond what the queue can hold are turned away by uvicorn (503) before they send a byte.
    uvicorn.run(app, host=host, port=port, log_level=log_level, server_header=False,
                limit_concurrency=max_queue + 64, timeout_graceful_shutdown=timeout_s)


def open_when_up(url: str, wait_s: float = 120.0) -> None:
    """Open `url` in the web browser ($BROWSER, or the desktop's) as soon as its /healthz answers, from a daemon
    thread: the server starts in this one. Gives up silently after `wait_s` (the server's own log says why)."""

    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # this machine: never through a proxy

    def wait_then_open() -> None:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                with direct.open(url + "healthz", timeout=1):
                    webbrowser.open(url)
                    return
            except OSError:
                time.sleep(0.2)

    threading.Thread(target=wait_then_open, name="cassava-edge-open-page", daemon=True).start()


# The load benchmark (benchmarks/serve_load.py), found through the cassava_edge.commands entry points like
# benchmark-bulk, so that the runtime never imports the benchmarks.
benchmark_serve = forwarding_command(
    "benchmark-serve",
    "Load on a real uvicorn: latency and photos/s at concurrency 1/4/16, batching on vs off, an overload run, "
    "against classify's bulk throughput (--help for the options).",
)
