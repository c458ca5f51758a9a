"""`cassava-edge benchmark-serve FOLDER`: load on a real `cassava-edge serve`, side by side with bulk `classify`.

Each server is the real command (uvicorn on 127.0.0.1, its own process, so its RSS is its own) fed real photos
over HTTP by an asyncio client holding `concurrency` requests in flight. Bounded: a fixed number of requests per
run and a time limit on each request (REQUEST_TIMEOUT_S); a whole run has no limit of its own, so its length
follows from the counts. Reported per run: p50/p90/p99 latency, photos/s, HTTP statuses, answers that differ
from the Python API (must be none) and the server's RSS before and after.

Modes: batching on, batching off, and on with --chunk-size 32 (a step of up to 32 views is one onnxruntime run;
on CPU the session otherwise runs 4 views per call). All three servers are up at once and the runs interleaved,
each round in another order, with bulk `classify_many` (pipelined, in this process, while every server is idle)
before each round and after the last, so that a change in the machine's load hits everything alike; ratios (vs
batching off, vs bulk) are taken within a round. Then an overload run (a small --max-queue, 4x as many clients),
where every answer must be a correct row or a 503, nothing lost, and memory stays bounded.
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
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import click

from cassava_edge.classifier import Classifier
from cassava_edge.commands.common import model_file_or_name
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


def cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system, every thread) the process has used so far; None without psutil."""
    try:
        import psutil
    except ImportError:
        return None
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return times.user + times.system


def per_photo_ms(before: float | None, after: float | None, photos: int) -> float | None:
    return None if before is None or after is None or not photos else (after - before) / photos * 1000


async def load(url: str, pid: int, photos: list[Photo], requests: int, concurrency: int) -> dict[str, Any]:
    """`requests` POSTs of the photos in turn, `concurrency` in flight; latencies, statuses, wrong answers and the
    CPU time per answered photo of the server and of this client (CPU time hardly depends on what else runs on the
    machine, unlike photos/s)."""
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
        server_cpu, client_cpu = cpu_s(pid), time.process_time()
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        server_ms = per_photo_ms(server_cpu, cpu_s(pid), len(latencies))
        client_ms = per_photo_ms(client_cpu, time.process_time(), len(latencies))
    return {"seconds": elapsed, "photos_per_s": len(latencies) / elapsed, "latencies": latencies,
            "statuses": statuses, "wrong": wrong, "lost": lost, "server_cpu_ms": server_ms, "client_cpu_ms": client_ms}


def summary(mode: str, concurrency: int, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One row of the table from a mode's runs at one concurrency: median photos/s, latencies of every round."""
    latencies = [latency for one in rounds for latency in one["latencies"]]
    statuses: dict[str, int] = {}
    for one in rounds:
        for status, count in one["statuses"].items():
            statuses[status] = statuses.get(status, 0) + count
    wrong = [item for one in rounds for item in one["wrong"]]
    lost = [item for one in rounds for item in one["lost"]]
    return {
        "batching": mode,
        "concurrency": concurrency,
        "requests": sum(statuses.values()) + len(lost),
        "photos_per_s": statistics.median(one["photos_per_s"] for one in rounds),
        "photos_per_s_rounds": [one["photos_per_s"] for one in rounds],
        "server_cpu_ms_per_photo": _median([one["server_cpu_ms"] for one in rounds]),
        "client_cpu_ms_per_photo": _median([one["client_cpu_ms"] for one in rounds]),
        "p50_ms": _percentile(latencies, 50),
        "p90_ms": _percentile(latencies, 90),
        "p99_ms": _percentile(latencies, 99),
        "statuses": statuses,
        "wrong_answers": len(wrong),
        "wrong_examples": wrong[:3],
        "lost": len(lost),
        "lost_examples": lost[:3],
    }


def bulk_rate(classifier: Classifier, photos: list[Photo], repeat: int) -> tuple[float, float]:
    """(photos/s, CPU ms per photo) of the pipelined `classify_many` on the same bytes (the default workers),
    `repeat` passes."""
    inputs = [photo.data for photo in photos] * repeat
    started, cpu = time.perf_counter(), time.process_time()
    results = list(classifier.classify_many(inputs))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    for result, photo in zip(results, photos * repeat):
        if {**result.to_dict(), "source": None} != {**photo.expected, "source": None}:
            raise click.ClickException(f"bulk classify_many disagrees with classify on {photo.name}")
    return len(inputs) / elapsed, cpu / len(inputs) * 1000


# name -> extra `cassava-edge serve` options. On CPU the session runs 4 views per onnxruntime call whatever a
# step holds; with --chunk-size 32 a step of up to 32 views (--max-batch-views) is one call.
MODES = {"on": [], "off": ["--no-batching"], "on, chunk 32": ["--chunk-size", "32"]}


def run(folder: str, count: int, requests: int, concurrencies: list[int], rounds: int, overload_requests: int,
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
    model_options = ["--model", model] if model else []
    top = max(concurrencies)
    cells: dict[tuple[str, int], list[dict[str, Any]]] = {(mode, c): [] for c in concurrencies for mode in MODES}
    bulk: list[float] = []
    bulk_cpu_ms: list[float] = []
    with tempfile.TemporaryDirectory(prefix="cassava-edge-serve-bench-") as logs, ExitStack() as servers:
        # Every server up at once (idle ones cost nothing), so that runs can be interleaved: a change in the
        # machine's load (other jobs, a training run) then hits every mode alike, and ratios are taken per round.
        started = {mode: servers.enter_context(server(model_options + options, Path(logs)))
                   for mode, options in MODES.items()}
        rss_start = {mode: rss_mb(pid) for mode, (_, pid) in started.items()}
        for round_index in range(rounds):
            rate, cpu_ms = bulk_rate(classifier, photos, repeat)
            bulk.append(rate)
            bulk_cpu_ms.append(cpu_ms)
            click.echo(f"round {round_index + 1}: bulk classify_many (pipelined): {bulk[-1]:.2f} photos/s", err=True)
            for level, concurrency in enumerate(concurrencies):
                names = list(MODES)
                shift = (round_index + level) % len(names)
                for mode in names[shift:] + names[:shift]:
                    url, pid = started[mode]
                    one = asyncio.run(load(url, pid, photos, requests, concurrency))
                    cells[(mode, concurrency)].append(one)
                    click.echo(f"round {round_index + 1}: batching {mode}, concurrency {concurrency}: "
                               f"{one['photos_per_s']:.2f} photos/s, statuses {one['statuses']}", err=True)
        rate, cpu_ms = bulk_rate(classifier, photos, repeat)
        bulk.append(rate)
        bulk_cpu_ms.append(cpu_ms)
        rss_end = {mode: rss_mb(pid) for mode, (_, pid) in started.items()}
    runs = []
    for (mode, concurrency), rounds_run in cells.items():
        row = summary(mode, concurrency, rounds_run)
        off = cells[("off", concurrency)]
        row["ratio_to_off"] = statistics.median(a["photos_per_s"] / b["photos_per_s"] for a, b in zip(rounds_run, off))
        row.update(rss_before_mb=rss_start[mode], rss_after_mb=rss_end[mode])
        runs.append(row)
    # The service at the top concurrency against bulk measured around it (the bulk runs before and after a round).
    ratios = [one["photos_per_s"] / ((bulk[index] + bulk[index + 1]) / 2)
              for index, one in enumerate(cells[("on", top)])]
    top_row = next(row for row in runs if row["batching"] == "on" and row["concurrency"] == top)
    server_ms, bulk_ms = top_row["server_cpu_ms_per_photo"], _median(bulk_cpu_ms)
    with tempfile.TemporaryDirectory(prefix="cassava-edge-serve-bench-") as logs:
        with server(model_options + ["--max-queue", str(overload_queue)], Path(logs)) as (url, pid):
            before = rss_mb(pid)
            clients = max(4 * overload_queue, top)
            overload = summary(f"on, queue {overload_queue}", clients,
                               [asyncio.run(load(url, pid, photos, overload_requests, clients))])
            overload.update(max_queue=overload_queue, rss_before_mb=before, rss_after_mb=rss_mb(pid))
            click.echo(f"overload, queue {overload_queue}, {clients} clients: statuses {overload['statuses']}, "
                       f"lost {overload['lost']}", err=True)
    machine["load_average_end"] = load_average()
    return {
        "machine": machine,
        "photos": len(photos),
        "requests_per_run": requests,
        "rounds": rounds,
        "plan": {"scan": classifier.scan, "tta": classifier.tta.name},
        "model": Path(classifier.session.path).name,
        "bulk_photos_per_s": bulk,
        "bulk_cpu_ms_per_photo": _median(bulk_cpu_ms),
        "runs": runs,
        "overload": overload,
        "service_vs_bulk": {"concurrency": top, "ratio": statistics.median(ratios), "ratio_rounds": ratios,
                            "bulk_photos_per_s": statistics.median(bulk),
                            # The same photos' CPU work, bulk over service: the ratio an idle machine would show.
                            "cpu_ratio": None if server_ms is None else bulk_ms / server_ms},
    }


def print_table(report: dict[str, Any]) -> None:
    machine = report["machine"]
    click.echo(f"{report['photos']} photos ({report['model']}, plan {report['plan']['scan']} x "
               f"{report['plan']['tta']}), {report['requests_per_run']} requests per run, {report['rounds']} "
               f"interleaved rounds; machine: {machine['cpu']}, {machine['logical_cores']} logical cores, "
               f"load average {_loads(machine['load_average_start'])} at start, "
               f"{_loads(machine['load_average_end'])} at end")
    click.echo(f"{'batching':<13} {'clients':>7} {'requests':>8} {'photos/s':>9} {'vs off':>7} {'p50 ms':>8} "
               f"{'p90 ms':>8} {'p99 ms':>8}  {'errors':>6} {'wrong':>5} {'CPU ms/photo':>12}  RSS MB before/after")
    for row in [*report["runs"], report["overload"]]:
        errors = sum(count for status, count in row["statuses"].items() if status != "200") + row["lost"]
        versus = f"{row['ratio_to_off']:.2f}x" if "ratio_to_off" in row else "-"
        click.echo(f"{row['batching']:<13} {row['concurrency']:>7} {row['requests']:>8} {row['photos_per_s']:>9.2f} "
                   f"{versus:>7} {row['p50_ms']:>8.0f} {row['p90_ms']:>8.0f} {row['p99_ms']:>8.0f}  {errors:>6} "
                   f"{row['wrong_answers']:>5} {_ms(row['server_cpu_ms_per_photo']):>12}  "
                   f"{_mb(row['rss_before_mb'])}/{_mb(row['rss_after_mb'])}"
                   + (f"  statuses {row['statuses']}, lost {row['lost']}" if "max_queue" in row else ""))
    versus = report["service_vs_bulk"]
    click.echo(f"bulk classify_many (pipelined): {', '.join(f'{rate:.2f}' for rate in report['bulk_photos_per_s'])} "
               f"photos/s (before each round, and after the last); service at concurrency {versus['concurrency']}, "
               f"batching on: {versus['ratio']:.2f}x bulk (per round: "
               f"{', '.join(f'{ratio:.2f}' for ratio in versus['ratio_rounds'])})")
    if versus["cpu_ratio"] is not None:
        click.echo(f"CPU per photo: bulk {report['bulk_cpu_ms_per_photo']:.0f} ms, the server at concurrency "
                   f"{versus['concurrency']} (batching on) {report['bulk_cpu_ms_per_photo'] / versus['cpu_ratio']:.0f} "
                   f"ms (+ this client's); bulk/server {versus['cpu_ratio']:.2f}x: the photos/s ratio where the "
                   "service has the cores to itself (clients elsewhere)")


@click.command("benchmark-serve", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--count", type=click.IntRange(min=1), default=24, show_default=True,
              help="Distinct photos (first by name), sent in turn.")
# The defaults are the full benchmark: 100 requests x 3 rounds, 300 per mode at each concurrency ("several
# hundred", so that p99 is a measured photo and not an extrapolation); the tests pass small counts.
@click.option("--requests", type=click.IntRange(min=1), default=100, show_default=True,
              help="Requests per run (each mode at each concurrency, each round).")
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True, help="Interleaved rounds.")
@click.option("--concurrency", default="1,4,16", show_default=True, help="Requests in flight, comma list.")
@click.option("--overload-requests", type=click.IntRange(min=1), default=300, show_default=True,
              help="Requests of the overload run.")
@click.option("--overload-queue", type=click.IntRange(min=1), default=4, show_default=True,
              help="--max-queue of the overload run's server (its clients: 4x as many).")
@click.option("--model", callback=model_file_or_name, help="Model file or folder [default: bundled].")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the report as JSON.")
def serve_load_command(folder: str, count: int, requests: int, rounds: int, concurrency: str, overload_requests: int,
                       overload_queue: int, model: str | None, json_path: str | None) -> None:
    """Latency and photos/s of `cassava-edge serve` on FOLDER's photos, against bulk classify on the same ones."""
    try:
        levels = sorted({int(value) for value in concurrency.split(",") if value.strip()})
    except ValueError:
        raise click.BadParameter(f"{concurrency!r} is not a comma list of numbers", param_hint="--concurrency")
    if not levels or min(levels) < 1:
        raise click.BadParameter("give at least one concurrency of 1 or more", param_hint="--concurrency")
    report = run(folder, count, requests, levels, rounds, overload_requests, overload_queue, model)
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


def _median(values: list[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return statistics.median(known) if known else None


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _loads(averages: list[float] | None) -> str:
    return "/".join(f"{value:.1f}" for value in averages) if averages else "unknown"


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


if __name__ == "__main__":
    serve_load_command()
