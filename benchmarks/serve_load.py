"""`cassava-edge benchmark-serve FOLDER`: load on a real `cassava-edge serve`, side by side with bulk `classify`.

Each server is the real command (uvicorn on 127.0.0.1, its own process, so its RSS is its own) fed real photos
over HTTP by an asyncio client holding `concurrency` requests in flight. Bounded: a fixed number of requests per
run and a time limit on each. Reported per run: p50/p90/p99 latency, photos/s, HTTP statuses, answers that differ
from the Python API (must be none) and the server's RSS before and after.

Runs: batching on and batching off at each concurrency, batching on with --chunk-size 32 (a step is one
onnxruntime run) at the highest; then an overload run (a small --max-queue, more clients
than it holds), where every answer must be a correct row or a 503, nothing lost, and memory stays bounded.
Bulk `classify_many` (pipelined) on the same photos is timed before and after the servers, in this process while
no server is busy, and the service's photos/s at the highest concurrency is put against it.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import click

from cassava_edge.classifier import Classifier
from cassava_edge.errors import ImageError
from cassava_edge.sources import find_images

from .machine import describe_machine, load_average

START_TIMEOUT_S = 180  # loading the model on a busy 2-core machine
REQUEST_TIMEOUT_S = 120


@dataclass(frozen=True)
class Photo:
    name: str
    data: bytes
    expected: dict[str, Any]  # Classification.to_dict() of the Python API, without its source


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def server(options: list[str], log_dir: Path) -> Iterator[tuple[str, int]]:
    """`cassava-edge serve` on 127.0.0.1 in a subprocess: (base URL, pid) once /readyz answers; stopped after."""
    import httpx

    port = free_port()
    log = open(log_dir / f"serve-{port}.log", "w", encoding="utf-8")
    command = [sys.executable, "-m", "cassava_edge", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--log-level", "warning", *options]
    env = {name: value for name, value in os.environ.items() if name != "CASSAVA_EDGE_API_KEY"}  # loopback, no key
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise click.ClickException(f"the server exited ({process.returncode}): see {log.name}")
            try:
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise click.ClickException(f"the server did not get ready in {START_TIMEOUT_S} s: see {log.name}")
            time.sleep(0.2)
        yield url, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def rss_mb(pid: int) -> float | None:
    try:
        import psutil
    except ImportError:
        return None
    try:
        return psutil.Process(pid).memory_info().rss / 2**20
    except psutil.Error:  # the process is gone
        return None


async def load(url: str, photos: list[Photo], requests: int, concurrency: int) -> dict[str, Any]:
    """`requests` POSTs of the photos in turn, `concurrency` in flight; latencies, statuses and wrong answers."""
    import httpx

    latencies: list[float] = []
    statuses: dict[str, int] = {}
    wrong: list[str] = []
    lost: list[str] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(requests):
        queue.put_nowait(index)

    async def client_loop(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            index = queue.get_nowait()
            photo = photos[index % len(photos)]
            started = time.perf_counter()
            try:
                answer = await client.post("/v1/classify", files={"image": (photo.name, photo.data, "image/jpeg")})
            except httpx.HTTPError as exc:
                lost.append(f"{photo.name}: {type(exc).__name__}")
                continue
            statuses[str(answer.status_code)] = statuses.get(str(answer.status_code), 0) + 1
            if answer.status_code == 200:
                latencies.append(time.perf_counter() - started)
                row = answer.json()
                if row.pop("source") != photo.name or row != photo.expected:
                    wrong.append(photo.name)
            elif answer.status_code != 503:
                wrong.append(f"{photo.name}: HTTP {answer.status_code} {answer.text[:200]}")

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    answered = len(latencies)
    return {
        "requests": requests,
        "concurrency": concurrency,
        "seconds": elapsed,
        "photos_per_s": answered / elapsed,
        "p50_ms": _percentile(latencies, 50),
        "p90_ms": _percentile(latencies, 90),
        "p99_ms": _percentile(latencies, 99),
        "statuses": statuses,
        "wrong_answers": len(wrong),
        "wrong_examples": wrong[:3],
        "lost": len(lost),
        "lost_examples": lost[:3],
    }


def bulk_rate(classifier: Classifier, photos: list[Photo], repeat: int) -> float:
    """Photos/s of the pipelined `classify_many` on the same bytes (the default workers), `repeat` passes."""
    inputs = [photo.data for photo in photos] * repeat
    started = time.perf_counter()
    results = list(classifier.classify_many(inputs))
    elapsed = time.perf_counter() - started
    for result, photo in zip(results, photos * repeat):
        if {**result.to_dict(), "source": None} != {**photo.expected, "source": None}:
            raise click.ClickException(f"bulk classify_many disagrees with classify on {photo.name}")
    return len(inputs) / elapsed


def run(folder: str, count: int, requests: int, concurrencies: list[int], overload_requests: int,
        overload_queue: int, model: str | None) -> dict[str, Any]:
    machine = describe_machine()
    classifier = Classifier(model)
    paths = find_images([folder])[:count]
    if not paths:
        raise click.ClickException(f"no photos in {folder}")
    photos = []
    for path in paths:
        data = path.read_bytes()
        try:
            expected = classifier.classify(data).to_dict()
        except ImageError as exc:  # a load test of answers, not of refusals (tests/test_serve.py has those)
            click.echo(f"note: {path.name} left out: {exc.reason}", err=True)
            continue
        expected.pop("source")
        photos.append(Photo(path.name, data, expected))
    if not photos:
        raise click.ClickException(f"no photo in {folder} can be classified")
    repeat = max(1, requests // len(photos))
    list(classifier.classify_many([photo.data for photo in photos[:4]]))  # warm-up
    bulk_before = bulk_rate(classifier, photos, repeat)
    click.echo(f"bulk classify_many (pipelined): {bulk_before:.2f} photos/s", err=True)
    model_options = ["--model", model] if model else []
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="cassava-edge-serve-bench-") as logs:
        top = max(concurrencies)
        # Batching on and off at every concurrency; then on with steps of up to 32 views as one onnxruntime run
        # each (on CPU the session otherwise runs 4 views per call, whatever the step's size), at the top one.
        modes = [("on", [], concurrencies), ("off", ["--no-batching"], concurrencies),
                 ("on, chunk 32", ["--chunk-size", "32"], [top])]
        for mode, options, levels in modes:
            with server(model_options + options, Path(logs)) as (url, pid):
                rss_start = rss_mb(pid)
                for concurrency in levels:
                    result = asyncio.run(load(url, photos, requests, concurrency))
                    result.update(batching=mode, rss_before_mb=rss_start, rss_after_mb=rss_mb(pid))
                    runs.append(result)
                    click.echo(f"batching {mode}, concurrency {concurrency}: "
                               f"{result['photos_per_s']:.2f} photos/s, p50 {result['p50_ms']:.0f} ms, "
                               f"statuses {result['statuses']}", err=True)
        overload_clients = max(4 * overload_queue, top)
        with server(model_options + ["--max-queue", str(overload_queue)], Path(logs)) as (url, pid):
            rss_start = rss_mb(pid)
            overload = asyncio.run(load(url, photos, overload_requests, overload_clients))
            overload.update(batching=f"on, queue {overload_queue}", max_queue=overload_queue,
                            rss_before_mb=rss_start, rss_after_mb=rss_mb(pid))
            click.echo(f"overload, queue {overload_queue}, {overload_clients} clients: statuses "
                       f"{overload['statuses']}, lost {overload['lost']}", err=True)
    bulk_after = bulk_rate(classifier, photos, repeat)
    click.echo(f"bulk classify_many (pipelined), again: {bulk_after:.2f} photos/s", err=True)
    bulk = (bulk_before + bulk_after) / 2
    served = next(r for r in runs if r["batching"] == "on" and r["concurrency"] == top)["photos_per_s"]
    machine["load_average_end"] = load_average()
    return {
        "machine": machine,
        "photos": len(photos),
        "plan": {"scan": classifier.scan, "tta": classifier.tta.name},
        "model": Path(classifier.session.path).name,
        "bulk_photos_per_s": {"before": bulk_before, "after": bulk_after},
        "runs": runs,
        "overload": overload,
        "service_vs_bulk": {"concurrency": top, "service_photos_per_s": served, "bulk_photos_per_s": bulk,
                            "ratio": served / bulk},
    }


def print_table(report: dict[str, Any]) -> None:
    machine = report["machine"]
    click.echo(f"{report['photos']} photos ({report['model']}, plan {report['plan']['scan']} x "
               f"{report['plan']['tta']}); machine: {machine['cpu']}, {machine['logical_cores']} logical cores, "
               f"load average {_loads(machine['load_average_start'])} at start, "
               f"{_loads(machine['load_average_end'])} at end")
    click.echo(f"{'batching':<13} {'clients':>7} {'requests':>8} {'photos/s':>9} {'p50 ms':>8} {'p90 ms':>8} "
               f"{'p99 ms':>8}  {'errors':>6} {'wrong':>5}  RSS MB before/after")
    for row in [*report["runs"], report["overload"]]:
        label = row["batching"]
        errors = sum(count for status, count in row["statuses"].items() if status != "200") + row["lost"]
        click.echo(f"{label:<13} {row['concurrency']:>7} {row['requests']:>8} {row['photos_per_s']:>9.2f} "
                   f"{row['p50_ms']:>8.0f} {row['p90_ms']:>8.0f} {row['p99_ms']:>8.0f}  {errors:>6} "
                   f"{row['wrong_answers']:>5}  {_mb(row['rss_before_mb'])}/{_mb(row['rss_after_mb'])}"
                   + (f"  statuses {row['statuses']}, lost {row['lost']}" if "max_queue" in row else ""))
    bulk = report["bulk_photos_per_s"]
    versus = report["service_vs_bulk"]
    click.echo(f"bulk classify_many (pipelined): {bulk['before']:.2f} photos/s before, {bulk['after']:.2f} after; "
               f"service at concurrency {versus['concurrency']}: {versus['service_photos_per_s']:.2f} photos/s = "
               f"{versus['ratio']:.2f}x bulk")


@click.command("benchmark-serve", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--count", type=click.IntRange(min=1), default=24, show_default=True,
              help="Distinct photos (first by name), sent in turn.")
@click.option("--requests", type=click.IntRange(min=1), default=48, show_default=True,
              help="Requests per run (each concurrency, batching on and off).")
@click.option("--concurrency", default="1,4,16", show_default=True, help="Requests in flight, comma list.")
@click.option("--overload-requests", type=click.IntRange(min=1), default=64, show_default=True,
              help="Requests of the overload run.")
@click.option("--overload-queue", type=click.IntRange(min=1), default=4, show_default=True,
              help="--max-queue of the overload run's server (its clients: 4x as many).")
@click.option("--model", type=click.Path(exists=True), help="Model file or folder [default: bundled].")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the report as JSON.")
def serve_load_command(folder: str, count: int, requests: int, concurrency: str, overload_requests: int,
                       overload_queue: int, model: str | None, json_path: str | None) -> None:
    """Latency and photos/s of `cassava-edge serve` on FOLDER's photos, against bulk classify on the same ones."""
    try:
        levels = sorted({int(value) for value in concurrency.split(",") if value.strip()})
    except ValueError:
        raise click.BadParameter(f"{concurrency!r} is not a comma list of numbers", param_hint="--concurrency")
    if not levels or min(levels) < 1:
        raise click.BadParameter("give at least one concurrency of 1 or more", param_hint="--concurrency")
    report = run(folder, count, requests, levels, overload_requests, overload_queue, model)
    print_table(report)
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")


def _percentile(values: list[float], percent: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0] * 1000
    return statistics.quantiles(values, n=100, method="inclusive")[int(percent) - 1] * 1000


def _loads(averages: list[float] | None) -> str:
    return "/".join(f"{value:.1f}" for value in averages) if averages else "unknown"


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


if __name__ == "__main__":
    serve_load_command()
