"""Ctrl-C, as a terminal sends it (SIGINT to the command's process group), in the middle of `cassava-edge classify`:
exit code 130, the results so far kept, and a closing line saying how many were written and how to --resume.
With --engine ray: no error-level Ray log line in the run and no retry message after the stop."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pytest

from cassava_edge.commands.classify import write_results
from cassava_edge.results import Classification
from cassava_edge.writers import JsonlWriter, RunSummary

REPO_ROOT = Path(__file__).resolve().parents[1]
PHOTOS = 2000  # hard links to one photo: enough that no machine classifies them all before the signal
INTERRUPTED = re.compile(r"^interrupted: (\d+) results? written to (.+?); (.+)$")
# A C++ log line of Ray's ("[2026-01-01 10:00:00,000 E 123 123] core_worker.cc:...") or a retry notice.
RAY_NOISE = re.compile(r"^\[\d{4}-\d\d-\d\d [\d:,]+ [EWF] \d+ \d+\]|retries remaining|will be retried", re.MULTILINE)


@pytest.fixture(scope="module")
def many_photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PHOTOS hard links to one 800x600 JPEG (a smooth colour field), each a photo by its own name."""
    folder = tmp_path_factory.mktemp("many")
    y, x = np.mgrid[0:600, 0:800]
    photo = np.dstack([(x % 256), (y % 256), ((x + y) % 256)]).astype(np.uint8)
    first = folder / "photo0000.jpg"
    assert cv2.imwrite(str(first), photo)
    for index in range(1, PHOTOS):
        os.link(first, folder / f"photo{index:04d}.jpg")
    return folder


@pytest.fixture(autouse=True)
def ctrl_c_as_in_a_terminal() -> Iterator[None]:
    """A command started from a terminal has SIGINT at its default; one started in the background by a shell without
    job control (`cmd &` in a script, as some CI launchers do) inherits it ignored, and an ignored Ctrl-C rightly
    interrupts nothing. So this process takes Python's own handler while a test runs: the commands it starts get
    SIGINT at its default (a handler, unlike an ignore, is not inherited), and these tests test the command, not the
    launcher."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def interrupt_after_first_result(args: list[str], output: Path, *, timeout: float = 240.0) -> tuple[int, str, str]:
    """Run `cassava-edge classify ARGS`, send SIGINT to its process group once `output` holds a result, and
    return (exit code, stdout, stderr)."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("CASSAVA_EDGE_DEBUG", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "cassava_edge", "classify", *args], cwd=REPO_ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    try:
        while not (output.exists() and output.read_text().count("\n") >= 1):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no result written in time"
            time.sleep(0.02)
        os.killpg(process.pid, signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    return process.returncode, stdout, stderr


def written_sources(path: Path) -> list[str]:
    return [json.loads(line)["source"] for line in path.read_text().splitlines()]


@pytest.mark.parametrize("workers", ["0", "2"], ids=["sequential", "pipelined"])
def test_ctrl_c_exits_130_saying_what_was_written_and_how_to_resume(
    many_photos: Path, tiny_model: Path, tmp_path: Path, workers: str
) -> None:
    output = tmp_path / "run.jsonl"
    args = [str(many_photos), "--model", str(tiny_model), "--provider", "cpu", "--workers", workers,
            "--format", "jsonl", "-o", str(output)]
    code, _, stderr = interrupt_after_first_result(args, output)
    assert code == 130, stderr
    assert "Traceback" not in stderr and "Aborted" not in stderr
    closing = INTERRUPTED.match(stderr.strip().splitlines()[-1])
    assert closing, stderr
    written = written_sources(output)  # every line whole: the file is valid JSON lines
    assert int(closing.group(1)) == len(written) and 0 < len(written) < PHOTOS
    assert closing.group(2) == str(output)
    assert f"--resume {output}" in closing.group(3)
    if workers == "0":
        # Following the closing line's advice finishes the run without redoing a photo.
        resumed = subprocess.run(
            [sys.executable, "-m", "cassava_edge", "classify", *args, "--resume", str(output)], cwd=REPO_ROOT,
            capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
        assert resumed.returncode == 0, resumed.stderr
        sources = written_sources(output)
        assert len(sources) == len(set(sources)) == PHOTOS


def test_ctrl_c_without_a_resumable_file_says_how_to_get_one(
    many_photos: Path, tiny_model: Path, tmp_path: Path
) -> None:
    output = tmp_path / "run.csv"
    args = [str(many_photos), "--model", str(tiny_model), "--provider", "cpu", "--format", "csv", "-o", str(output)]
    code, _, stderr = interrupt_after_first_result(args, output)
    assert code == 130, stderr
    closing = INTERRUPTED.match(stderr.strip().splitlines()[-1])
    assert closing, stderr
    rows = output.read_text().splitlines()[1:]  # after the header
    assert int(closing.group(1)) == len(rows) > 0
    assert "--resume FILE" in closing.group(3)


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed (the [ray] extra)")
def test_ctrl_c_on_ray_is_quiet_and_exits_130(many_photos: Path, tiny_model: Path, tmp_path: Path) -> None:
    output = tmp_path / "ray.jsonl"
    args = [str(many_photos), "--model", str(tiny_model), "--engine", "ray", "--actors", "1",
            "--format", "jsonl", "-o", str(output)]
    code, stdout, stderr = interrupt_after_first_result(args, output)
    assert code == 130, stderr
    assert not RAY_NOISE.search(stderr), stderr
    assert not RAY_NOISE.search(stdout) and stdout == "", stdout
    closing = INTERRUPTED.match(stderr.strip().splitlines()[-1])
    assert closing, stderr
    assert int(closing.group(1)) == len(written_sources(output)) < PHOTOS


class InterruptingWriter(JsonlWriter):
    """Sends this process a SIGINT right after writing its `at`-th result: the Ctrl-C that lands between the
    write and the count."""

    def __init__(self, stream: io.StringIO, at: int) -> None:
        super().__init__(stream, ("a", "b"), 1)
        self.at = at
        self.writes = 0

    def _write(self, result: Classification) -> None:
        super()._write(result)
        self.writes += 1
        if self.writes == self.at:
            os.kill(os.getpid(), signal.SIGINT)


def test_a_ctrl_c_right_after_a_write_still_counts_that_result() -> None:
    stream = io.StringIO()
    summary = RunSummary()
    results = (Classification.failed(f"<photo{index}>", "unreadable") for index in range(10))
    write_results(results, InterruptingWriter(stream, at=3), summary, 10, shares_terminal=False, quiet=True)
    assert summary.interrupted
    assert summary.total == len(stream.getvalue().splitlines()) == 3
