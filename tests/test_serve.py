"""`cassava-edge serve` through FastAPI's test client and httpx's ASGI transport: every endpoint, every bad input,
the API key rules, overload and timeouts, and answers identical to `Classifier.classify` on the same bytes, alone
and under concurrency. The bundled model runs for real; only the overload tests hold inference back (a gate in
front of the real batcher), so that "the queue is full" is a state the test creates rather than a race it hopes
to win."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from pathlib import Path
from typing import Any, AsyncIterator

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("fastapi", reason="the [serve] extra is not installed (pip install 'cassava-edge[serve]')")
httpx = pytest.importorskip("httpx", reason="httpx is not installed (pip install 'cassava-edge[dev]')")

from fastapi.testclient import TestClient  # noqa: E402

from cassava_edge import Classifier  # noqa: E402
from cassava_edge.cli import cli  # noqa: E402
from cassava_edge.errors import ImageError, OptionError  # noqa: E402
from cassava_edge.results import Classification  # noqa: E402
from cassava_edge.serve import MAX_BATCH_PHOTOS, ServeSettings, check_exposure, create_app  # noqa: E402
from cassava_edge.serve.app import default_inference  # noqa: E402
from cassava_edge.serve.batcher import MicroBatcher  # noqa: E402
from cassava_edge.serve.photos import infer_batch, parse_options  # noqa: E402
from cassava_edge.serve.schema import ResultRow  # noqa: E402
from tests.photofolder import write_photo_folder  # noqa: E402
from tests.test_extras import SITECUSTOMIZE, assert_one_line, run_without  # noqa: E402

KEY = "field-office-key-7f3a"
SERVE_MODULES = ("fastapi", "uvicorn", "multipart", "python_multipart", "prometheus_client")


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier()  # the bundled model, as `cassava-edge serve` runs it


@pytest.fixture(scope="module")
def client(classifier: Classifier) -> Any:
    with TestClient(create_app(classifier, ServeSettings())) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def keyed_client(classifier: Classifier) -> Any:
    with TestClient(create_app(classifier, ServeSettings(api_key=KEY))) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def noise_jpeg() -> bytes:
    """An 800x600 JPEG of colour noise: decodes and classifies (as not_cassava) without the shared photos."""
    pixels = np.random.default_rng(0).integers(0, 256, (600, 800, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", pixels)[1].tobytes()


def without_source(row: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in row.items() if key != "source"}


def expected_row(classifier: Classifier, data: bytes, **call: Any) -> dict[str, Any]:
    return without_source(classifier.classify(data, **call).to_dict())


def upload(name: str, data: bytes, kind: str = "image/jpeg") -> dict[str, tuple[str, bytes, str]]:
    return {"image": (name, data, kind)}


def image_error(classifier: Classifier, data: bytes) -> str:
    with pytest.raises(ImageError) as raised:
        classifier.classify(data)
    return raised.value.reason


# -- answers ------------------------------------------------------------------------------------------------------


def test_a_photo_gets_the_row_classify_gives(
    client: TestClient, classifier: Classifier, cassava_photos: list[Path]
) -> None:
    for photo in cassava_photos:
        data = photo.read_bytes()
        answer = client.post("/v1/classify", files=upload(photo.name, data))
        assert answer.status_code == 200, answer.text
        row = answer.json()
        assert row["source"] == photo.name
        assert without_source(row) == expected_row(classifier, data)  # floats too: bit for bit through JSON


def test_a_raw_image_body_is_the_same_photo_named_upload(
    client: TestClient, classifier: Classifier, cassava_photos: list[Path]
) -> None:
    data = cassava_photos[0].read_bytes()
    row = client.post("/v1/classify", content=data, headers={"content-type": "image/jpeg"}).json()
    assert row["source"] == "upload"
    assert without_source(row) == expected_row(classifier, data)


def test_query_options_mean_what_the_cli_options_mean(
    client: TestClient, classifier: Classifier, cassava_photos: list[Path]
) -> None:
    data = cassava_photos[1].read_bytes()
    query = "tta=flip&scan=center&top_k=5&min_confidence=0.999"
    row = client.post(f"/v1/classify?{query}", files=upload("leaf.jpg", data)).json()
    other_plan = Classifier(tta="flip", scan="center")
    assert without_source(row) == expected_row(other_plan, data, top_k=5, min_confidence=0.999)
    assert len(row["top_k"]) == 5
    # top_k over the number of classes lists them all, as the CLI caps it.
    capped = client.post("/v1/classify?top_k=9", files=upload("leaf.jpg", data)).json()
    assert len(capped["top_k"]) == len(classifier.labels)


def test_the_row_is_the_json_lines_row_and_its_documented_schema(
    client: TestClient, classifier: Classifier, noise_jpeg: bytes
) -> None:
    row = client.post("/v1/classify", files=upload("noise.jpg", noise_jpeg)).json()
    assert list(row) == list(classifier.classify(noise_jpeg).to_dict())
    assert list(ResultRow.model_fields) == list(Classification.failed("x", "y").to_dict())
    ResultRow.model_validate(row)
    schema = client.get("/openapi.json").json()
    assert set(schema["components"]["schemas"]["ResultRow"]["properties"]) == set(row)
    assert "/v1/classify" in schema["paths"] and "/v1/classify/batch" in schema["paths"]


def test_a_batch_answers_in_order_and_a_bad_photo_is_a_failed_row(
    client: TestClient, classifier: Classifier, cassava_photos: list[Path]
) -> None:
    photos = [(photo.name, photo.read_bytes()) for photo in cassava_photos]
    files = [("image", (name, data, "image/jpeg")) for name, data in photos[:2]]
    files.append(("image", ("notes.txt", b"not a photo", "text/plain")))
    files += [("image", (name, data, "image/jpeg")) for name, data in photos[2:]]
    answer = client.post("/v1/classify/batch", files=files)
    assert answer.status_code == 200
    rows = answer.json()["results"]
    assert [row["source"] for row in rows] == [name for name, _ in photos[:2]] + ["notes.txt"] + [
        name for name, _ in photos[2:]
    ]
    failed = rows.pop(2)
    assert failed["status"] == "failed" and failed["error"] == image_error(classifier, b"not a photo")
    for row, (_, data) in zip(rows, photos):
        assert without_source(row) == expected_row(classifier, data)


def test_the_batch_limit(client: TestClient, noise_jpeg: bytes) -> None:
    files = [("image", (f"{n}.jpg", noise_jpeg[:100], "image/jpeg")) for n in range(MAX_BATCH_PHOTOS + 1)]
    answer = client.post("/v1/classify/batch", files=files)
    assert answer.status_code == 422
    assert str(MAX_BATCH_PHOTOS) in answer.json()["error"]


def test_model_health_and_readiness(client: TestClient, classifier: Classifier) -> None:
    assert client.get("/healthz").json() == {"status": "alive"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    info = client.get("/v1/model").json()
    expected = classifier.info()
    assert info["metadata"] == expected["metadata"]
    assert info["metadata"]["labels"] == list(classifier.labels)
    assert info["model"] == Path(expected["model"]).name  # the file's name, not the server's file system
    assert info["session"]["path"] == Path(expected["model"]).name
    assert info["tta"] == expected["tta"] and info["scan"] == expected["scan"]


def test_the_page_and_its_files_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.text == (Path(__file__).resolve().parents[1] / "cassava_edge/serve/static/index.html").read_text()
    assert client.get("/static/index.html").status_code == 200
    assert client.get("/static/../app.py").status_code == 404


def test_the_docs_page_works_offline(client: TestClient) -> None:
    """/docs names every endpoint and its options from the OpenAPI schema, and loads nothing from elsewhere (FastAPI's
    Swagger UI page fetches its script and style from a CDN: blank on a box without internet)."""
    page = client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", page.text, re.IGNORECASE), "an external URL"
    assert "<script" not in page.text and "<link" not in page.text
    assert 'href="openapi.json"' in page.text  # relative: right under a mount prefix too
    for path, operations in client.get("/openapi.json").json()["paths"].items():
        for method in operations:
            assert f"{method.upper()} {path}" in page.text
    for option in ("tta", "scan", "top_k", "min_confidence"):
        assert f"<code>{option}</code>" in page.text


def test_metrics_count_requests_queue_and_views(classifier: Classifier, noise_jpeg: bytes) -> None:
    with TestClient(create_app(classifier, ServeSettings())) as client:
        client.post("/v1/classify?tta=seed", files=upload("noise.jpg", noise_jpeg))  # whole photo x 4 views
        client.post("/v1/classify?tta=nope", files=upload("noise.jpg", noise_jpeg))
        client.post("/v1/classify?tta=flip&scan=center", files=upload("noise.jpg", noise_jpeg))  # 1 crop x 2 views
        text = client.get("/metrics").text
        assert 'cassava_edge_requests_total{endpoint="/v1/classify",status="200"} 2.0' in text
        assert 'cassava_edge_requests_total{endpoint="/v1/classify",status="422"} 1.0' in text
        assert 'cassava_edge_request_seconds_count{endpoint="/v1/classify"} 3.0' in text
        assert "cassava_edge_queue_depth 0.0" in text
        assert 'cassava_edge_photos_total{status="not_cassava"} 2.0' in text
        # The seed plan's 4 views and the flip plan's 2, each photo in its own step; the CPU session runs 4
        # views per onnxruntime call, so the runs are one of 4 and one of 2.
        assert classifier.session.chunk_size == 4
        assert "cassava_edge_views_per_step_count 2.0" in text and "cassava_edge_views_per_step_sum 6.0" in text
        assert 'cassava_edge_views_per_run_bucket{le="2.0"} 1.0' in text
        assert 'cassava_edge_views_per_run_bucket{le="4.0"} 2.0' in text
    # Each app has its own registry: a new app has counted nothing.
    with TestClient(create_app(classifier, ServeSettings())) as fresh:
        assert "cassava_edge_requests_total{" not in fresh.get("/metrics").text


# -- bad input ----------------------------------------------------------------------------------------------------


def test_bad_images_are_422_failed_rows_with_the_reason(
    client: TestClient, classifier: Classifier, noise_jpeg: bytes
) -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    too_small = cv2.imencode(".png", pixels)[1].tobytes()
    bomb = bytearray(cv2.imencode(".png", pixels[:8, :8])[1].tobytes())
    bomb[16:24] = (20000).to_bytes(4, "big") * 2  # the IHDR says 20000x20000: 400 megapixels
    for data in (b"not an image at all", noise_jpeg[: len(noise_jpeg) // 2], too_small, bytes(bomb), b""):
        answer = client.post("/v1/classify", files=upload("bad.jpg", data))
        assert answer.status_code == 422
        row = answer.json()
        assert row["status"] == "failed" and row["ok"] is False and row["source"] == "bad.jpg"
        assert row["error"] == image_error(classifier, data)
        assert "Traceback" not in answer.text


@pytest.mark.parametrize(
    ("query", "option", "cli_args"),
    [
        ("tta=sideways", "tta", ["--tta", "sideways"]),
        ("scan=spiral", "scan", ["--scan", "spiral"]),
        ("top_k=0", "top_k", ["--top-k", "0"]),
        ("top_k=three", "top_k", ["--top-k", "three"]),
        ("min_confidence=1.5", "min_confidence", ["--min-confidence", "1.5"]),
        ("min_confidence=high", "min_confidence", ["--min-confidence", "high"]),
    ],
)
def test_bad_options_are_refused_as_the_cli_refuses_them(
    client: TestClient, noise_jpeg: bytes, tmp_path: Path, query: str, option: str, cli_args: list[str]
) -> None:
    answer = client.post(f"/v1/classify?{query}", files=upload("noise.jpg", noise_jpeg))
    assert answer.status_code == 422
    body = answer.json()
    assert body["option"] == option and body["error"].startswith(f"{option}: ")
    # The same words the CLI prints for the same value.
    photo = tmp_path / "noise.jpg"
    photo.write_bytes(noise_jpeg)
    run = CliRunner().invoke(cli, ["classify", str(photo), *cli_args])
    assert run.exit_code == 2
    assert body["error"].removeprefix(f"{option}: ") in " ".join(run.output.split())


def test_an_unknown_option_is_named(client: TestClient, noise_jpeg: bytes) -> None:
    answer = client.post("/v1/classify/batch?threshold=0.5", files=upload("noise.jpg", noise_jpeg))
    assert answer.status_code == 422 and answer.json()["option"] == "threshold"
    with pytest.raises(OptionError, match="threshold"):
        parse_options({"threshold": "0.5"})


def test_uploads_over_the_limit_are_413(classifier: Classifier, noise_jpeg: bytes) -> None:
    limit_mb = 0.05
    assert len(noise_jpeg) > limit_mb * 2**20 + 64 * 1024  # over the limit even with room for multipart headers
    with TestClient(create_app(classifier, ServeSettings(max_upload_mb=limit_mb))) as small:
        # Told by Content-Length, before a byte of the body is read...
        assert small.post("/v1/classify", files=upload("big.jpg", noise_jpeg)).status_code == 413
        raw = small.post("/v1/classify", content=noise_jpeg, headers={"content-type": "image/jpeg"})
        assert raw.status_code == 413 and "0.05 MB" in raw.json()["error"]

        # ...and while streaming, when no length is announced.
        def chunks() -> Any:
            for start in range(0, len(noise_jpeg), 8192):
                yield noise_jpeg[start : start + 8192]

        streamed = small.post("/v1/classify", content=chunks(), headers={"content-type": "image/jpeg"})
        assert streamed.status_code == 413
        # A photo over the limit inside a batch is its own failed row; the others are answered.
        # A colour ramp: small as a JPEG, with colour to judge (a uniform grey frame now fails the colour check).
        y, x = np.mgrid[0:300, 0:400]
        ramp = np.dstack([x * 255 // 399, y * 255 // 299, np.full_like(x, 90)]).astype(np.uint8)
        ok_size = cv2.imencode(".jpg", ramp)[1].tobytes()
        files = [("image", ("big.jpg", noise_jpeg, "image/jpeg")), ("image", ("small.jpg", ok_size, "image/jpeg"))]
        rows = small.post("/v1/classify/batch", files=files).json()["results"]
        assert rows[0]["status"] == "failed" and "upload limit" in rows[0]["error"]
        assert rows[1]["source"] == "small.jpg" and without_source(rows[1]) == expected_row(classifier, ok_size)


def test_what_is_not_a_photo_upload(client: TestClient) -> None:
    text = client.post("/v1/classify", content=b"hello", headers={"content-type": "text/plain"})
    assert text.status_code == 415 and "image" in text.json()["error"]
    no_field = client.post("/v1/classify", files={"photo": ("a.jpg", b"x", "image/jpeg")})
    assert no_field.status_code == 422 and "'image'" in no_field.json()["error"]
    two = client.post("/v1/classify", files=[("image", ("a.jpg", b"x", "image/jpeg"))] * 2)
    assert two.status_code == 422 and "batch" in two.json()["error"]
    assert client.post("/v1/classify/batch", content=b"x", headers={"content-type": "image/jpeg"}).status_code == 415


def test_nothing_reads_a_path_or_a_url(client: TestClient, classifier: Classifier) -> None:
    for data in (b"/etc/passwd", str(Path(classifier.session.path)).encode(), b"https://example.com/leaf.jpg"):
        row = client.post("/v1/classify", files=upload("/etc/leaf.jpg", data)).json()
        assert row["status"] == "failed" and row["error"] == "not an image or an unsupported format"
        assert row["source"] == "leaf.jpg"  # the file name only, never a client's path


# -- API key, CORS, logs ------------------------------------------------------------------------------------------


def test_with_a_key_every_endpoint_but_healthz_needs_it(keyed_client: TestClient, noise_jpeg: bytes) -> None:
    assert keyed_client.get("/healthz").status_code == 200
    guarded = [("GET", "/readyz"), ("GET", "/v1/model"), ("GET", "/metrics"), ("GET", "/docs"),
               ("GET", "/openapi.json"), ("POST", "/v1/classify"), ("POST", "/v1/classify/batch")]
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"},
                    {"Authorization": f"Bearer {KEY}x"}, {"Authorization": "Bearer"}):
        for method, path in guarded:
            answer = keyed_client.request(method, path, headers=headers, files=upload("n.jpg", noise_jpeg)
                                          if method == "POST" else None)
            assert answer.status_code == 401, (method, path, headers)
            assert answer.headers["www-authenticate"] == "Bearer"
            assert KEY not in answer.text
    # The key comes before the options: without it, a bad option says nothing about the options.
    assert keyed_client.post("/v1/classify?tta=sideways", files=upload("n.jpg", noise_jpeg)).status_code == 401
    good = {"Authorization": f"Bearer {KEY}"}
    for method, path in guarded:
        answer = keyed_client.request(method, path, headers=good, files=upload("n.jpg", noise_jpeg)
                                      if method == "POST" else None)
        assert answer.status_code == 200, (method, path, answer.text)


def test_the_page_loads_without_the_key_so_a_person_can_enter_it(keyed_client: TestClient) -> None:
    assert keyed_client.get("/").status_code == 200
    assert keyed_client.get("/static/index.html").status_code == 200


def test_exposed_hosts_need_a_key_or_an_explicit_no(tmp_path: Path) -> None:
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        check_exposure(host, None, False)
    for host in ("0.0.0.0", "192.168.1.20", "::", "farm-box.local"):
        with pytest.raises(OptionError, match="--insecure-no-auth"):
            check_exposure(host, None, False)
        check_exposure(host, KEY, False)
        check_exposure(host, None, True)
    run = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0"], env={"CASSAVA_EDGE_API_KEY": None})
    assert run.exit_code == 2
    assert run.output.count("\n") == 1 and "--insecure-no-auth" in run.output and "Traceback" not in run.output


def test_cors_only_for_the_origins_named(classifier: Classifier) -> None:
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization"}
    with TestClient(create_app(classifier, ServeSettings())) as closed:
        assert "access-control-allow-origin" not in closed.options("/v1/classify", headers=preflight).headers
        plain = closed.get("/healthz", headers={"Origin": "https://app.example"})
        assert "access-control-allow-origin" not in plain.headers
    settings = ServeSettings(cors_origins=("https://app.example",), api_key=KEY)
    with TestClient(create_app(classifier, settings)) as open_to_one:
        answer = open_to_one.options("/v1/classify", headers=preflight)
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == "https://app.example"
        other = open_to_one.options("/v1/classify", headers={**preflight, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_logs_hold_neither_the_key_nor_image_bytes(
    classifier: Classifier, noise_jpeg: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        async def infer(self, views: np.ndarray) -> np.ndarray:
            raise RuntimeError("the accelerator fell off")

        def close(self) -> None: ...

    caplog.set_level(logging.DEBUG)
    with TestClient(create_app(classifier, ServeSettings(api_key=KEY), inference=Broken()),
                    raise_server_exceptions=False) as broken:
        answer = broken.post("/v1/classify", files=upload("n.jpg", noise_jpeg),
                             headers={"Authorization": f"Bearer {KEY}"})
        assert answer.status_code == 500
        assert answer.json() == {"error": "internal error (the service's log has the details)"}
        assert "Traceback" not in answer.text and "accelerator" not in answer.text
    assert "the accelerator fell off" in caplog.text  # the details are in the log...
    assert KEY not in caplog.text  # ...but never the key
    assert noise_jpeg[100:140].hex() not in caplog.text and repr(noise_jpeg[100:140])[2:-1] not in caplog.text


# -- concurrency, overload, timeouts, slow clients -----------------------------------------------------------------


GATE_LIMIT_S = 120


class Gate:
    """The real inference, held until `open` is set: photos pile up in the queue exactly as far as the test says."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.open = asyncio.Event()

    async def infer(self, views: np.ndarray) -> np.ndarray:
        # Bounded, so that a service whose own limits fail ends its test with an error instead of hanging it.
        await asyncio.wait_for(self.open.wait(), GATE_LIMIT_S)
        return await self.inner.infer(views)

    def close(self) -> None:
        self.inner.close()


def async_client(app: Any) -> Any:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service", timeout=120)


async def until(condition: Any) -> None:
    """Yield to the event loop until `condition()` holds (bounded: a stuck service fails instead of hanging)."""
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the service never got there")


def test_concurrent_requests_get_the_answers_classify_gives(classifier: Classifier, cassava_photos: list[Path]) -> None:
    photos = [photo.read_bytes() for photo in cassava_photos] * 4  # 20 requests at once, the photos repeated
    settings = ServeSettings(max_wait_ms=20, max_batch_views=16)
    app = create_app(classifier, settings)

    async def run() -> list[Any]:
        async with async_client(app) as service:
            return await asyncio.gather(*(
                service.post("/v1/classify", files=upload(f"{n}.jpg", data)) for n, data in enumerate(photos)
            ))

    answers = asyncio.run(run())
    expected = {data: expected_row(classifier, data) for data in set(photos)}
    for n, (answer, data) in enumerate(zip(answers, photos)):
        assert answer.status_code == 200
        assert answer.json()["source"] == f"{n}.jpg" and without_source(answer.json()) == expected[data]


def test_the_batcher_runs_several_photos_views_in_one_step(classifier: Classifier, cassava_photos: list[Path]) -> None:
    """Five photos submitted at once share one step when their views fit in it (a wait no test will reach, so the
    step is started by being full, not by a clock), and each gets the rows it gets alone."""
    prepared = [classifier.prepare(classifier.load(photo)) for photo in cassava_photos]
    steps: list[int] = []
    total = sum(photo.num_views for photo in prepared)

    async def run() -> list[np.ndarray]:
        batcher = MicroBatcher(lambda views: infer_batch(classifier, views), max_batch_views=total,
                               max_wait_ms=600_000, threads=1, on_step=steps.append)
        try:
            return await asyncio.gather(*(batcher.infer(photo.views) for photo in prepared))
        finally:
            batcher.close()

    rows = asyncio.run(run())
    assert steps == [total]
    for photo, photo_rows in zip(prepared, rows):
        assert np.array_equal(photo_rows, classifier.infer(photo.views))


def test_a_full_queue_is_503_with_retry_after_and_loses_nothing(classifier: Classifier, noise_jpeg: bytes) -> None:
    settings = ServeSettings(max_queue=3)
    gate = Gate(default_inference(classifier, settings))
    app = create_app(classifier, settings, inference=gate)
    service_state = app.state.service

    async def run() -> tuple[list[Any], list[Any], str]:
        async with async_client(app) as service:
            admitted = [asyncio.create_task(service.post("/v1/classify", files=upload(f"{n}.jpg", noise_jpeg)))
                        for n in range(3)]
            await until(lambda: service_state.in_flight == 3)
            refused = [await service.post("/v1/classify", files=upload("late.jpg", noise_jpeg)),
                       await service.post("/v1/classify/batch", files=upload("late.jpg", noise_jpeg))]
            metrics = (await service.get("/metrics")).text
            gate.open.set()
            return list(await asyncio.gather(*admitted)), refused, metrics

    admitted, refused, metrics = asyncio.run(run())
    for answer in refused:
        assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
        assert "busy" in answer.json()["error"]
    assert "cassava_edge_queue_depth 3.0" in metrics
    # A batch larger than the whole queue would never be admitted: refused as such, not "busy, retry".
    with TestClient(app) as client:
        too_many = client.post("/v1/classify/batch", files=[("image", ("n.jpg", noise_jpeg, "image/jpeg"))] * 4)
        assert too_many.status_code == 422 and "at most 3" in too_many.json()["error"]
    expected = expected_row(classifier, noise_jpeg)
    assert [without_source(answer.json()) for answer in admitted] == [expected] * 3
    assert service_state.in_flight == 0


def test_a_request_past_its_timeout_is_504_and_frees_its_place(photo_model: Path) -> None:
    """The held request must take at least the timeout and then be a 504; the next one must be answered within
    the same timeout. That one runs for real, so the tiny model and a small photo (milliseconds of work) keep it
    far inside the timeout on a busy 2-core machine, where the bundled model's photo can take most of a second."""
    small = Classifier(photo_model)
    photo = cv2.imencode(".jpg", np.random.default_rng(2).integers(0, 256, (90, 120, 3), dtype=np.uint8))[1].tobytes()
    settings = ServeSettings(timeout_s=2, max_queue=1)
    gate = Gate(default_inference(small, settings))  # not opened in time: inference does not finish
    app = create_app(small, settings, inference=gate)
    with TestClient(app) as client:
        started = time.monotonic()
        answer = client.post("/v1/classify", files=upload("slow.jpg", photo))
        assert answer.status_code == 504 and "timeout of 2 s" in answer.json()["error"]
        assert time.monotonic() - started >= settings.timeout_s  # not refused early
        assert app.state.service.in_flight == 0
        gate.open.set()  # nothing waits on it any more (the 504 cancelled the wait): safe from this thread
        # Its place in the queue of one is free again.
        following = client.post("/v1/classify", files=upload("next.jpg", photo))
        assert following.status_code == 200, following.text
        assert without_source(following.json()) == expected_row(small, photo)


def test_a_slow_client_does_not_stall_the_others(classifier: Classifier, noise_jpeg: bytes) -> None:
    app = create_app(classifier, ServeSettings())
    half_sent = asyncio.Event()
    let_go = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield noise_jpeg[:1000]
        half_sent.set()
        await let_go.wait()  # the client stops sending mid-photo
        yield noise_jpeg[1000:]

    async def run() -> tuple[Any, Any, bool]:
        async with async_client(app) as service:
            slow = asyncio.create_task(
                service.post("/v1/classify", content=slow_body(), headers={"content-type": "image/jpeg"})
            )
            await half_sent.wait()
            quick = await service.post("/v1/classify", files=upload("quick.jpg", noise_jpeg))
            slow_still_waiting = not slow.done()
            let_go.set()
            return quick, await slow, slow_still_waiting

    quick, slow, slow_still_waiting = asyncio.run(run())
    assert quick.status_code == 200 and slow_still_waiting
    assert slow.status_code == 200 and without_source(slow.json()) == without_source(quick.json())


# -- the load benchmark -------------------------------------------------------------------------------------------


def test_benchmark_serve_runs_real_servers_and_finds_every_answer_right(photo_model: Path, tmp_path: Path) -> None:
    """A small run of `cassava-edge benchmark-serve` (each server a real `cassava-edge serve` on 127.0.0.1):
    every mode answers every request with the Python API's row; the overload run answers rows or 503s only. The
    counts are small on purpose: the command's defaults are the full benchmark's several hundred requests."""
    photos = write_photo_folder(tmp_path / "photos", 3, 90, 120, ".jpg")
    report_path = tmp_path / "out" / "serve.json"
    run = CliRunner().invoke(cli, [
        "benchmark-serve", str(photos), "--model", str(photo_model), "--requests", "6", "--concurrency", "1,3",
        "--rounds", "2", "--overload-requests", "12", "--overload-queue", "1", "--json", str(report_path),
    ], catch_exceptions=False)
    assert run.exit_code == 0, run.output
    report = json.loads(report_path.read_text())
    assert report["photos"] == 3  # the broken one left out, with a note
    modes = ("on", "off", "on, chunk 32")
    assert [(row["batching"], row["concurrency"]) for row in report["runs"]] == [
        (mode, concurrency) for concurrency in (1, 3) for mode in modes
    ]
    for row in report["runs"]:
        assert row["statuses"] == {"200": 12} and row["wrong_answers"] == 0 and row["lost"] == 0
        assert len(row["photos_per_s_rounds"]) == 2 and row["ratio_to_off"] > 0
    assert len(report["bulk_photos_per_s"]) == 3 and len(report["service_vs_bulk"]["ratio_rounds"]) == 2
    overload = report["overload"]
    assert set(overload["statuses"]) <= {"200", "503"} and sum(overload["statuses"].values()) == 12
    assert overload["wrong_answers"] == 0 and overload["lost"] == 0
    assert report["service_vs_bulk"]["ratio"] > 0


# -- without the [serve] extra ------------------------------------------------------------------------------------


def test_the_runtime_and_cli_import_without_the_serve_extra_and_serve_says_what_to_install(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)
    run = run_without(tmp_path, SERVE_MODULES, "-c",
                      "import cassava_edge, cassava_edge.cli, cassava_edge.serve; from cassava_edge import Classifier")
    assert run.returncode == 0, run.stderr
    assert run_without(tmp_path, SERVE_MODULES, "-m", "cassava_edge", "serve", "--help").returncode == 0
    assert_one_line(run_without(tmp_path, SERVE_MODULES, "-m", "cassava_edge", "serve"),
                    'pip install "cassava-edge[serve]"')
    blocked = run_without(tmp_path, SERVE_MODULES, "-c", "import fastapi")
    assert blocked.returncode == 1 and "No module named 'fastapi'" in blocked.stderr
