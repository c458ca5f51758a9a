"""`cassava-edge serve --open`: the page opens in the web browser ($BROWSER) once the service answers."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the [serve] extra is not installed (pip install 'cassava-edge[serve]')")
pytest.importorskip("uvicorn", reason="the [serve] extra is not installed (pip install 'cassava-edge[serve]')")

START_SECONDS = 120  # bound on the bundled model's load and warm-up on a shared 2-core machine


def test_open_opens_the_page_once_the_service_is_up(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    opened = tmp_path / "opened.txt"
    # A "browser" that writes down what it was asked to open, and whether the service answered at that moment.
    browser = (
        "import sys, urllib.request; url = sys.argv[1]; "
        "status = urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url).status; "
        f"open({str(opened)!r}, 'w').write(f'{{url}} {{status}}')"
    )
    env = {**os.environ, "BROWSER": f"{shlex.quote(sys.executable)} -c {shlex.quote(browser)} %s"}
    server = subprocess.Popen(
        [sys.executable, "-m", "cassava_edge", "serve", "--port", str(port), "--open", "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + START_SECONDS
        while not (opened.exists() and opened.read_text()) and server.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert server.poll() is None, server.communicate()[1]
        assert opened.read_text() == f"http://127.0.0.1:{port}/ 200"
    finally:
        server.terminate()
        server.wait(timeout=30)
