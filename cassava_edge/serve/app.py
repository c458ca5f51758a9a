"""`create_app(classifier, settings)`: the FastAPI app of `cassava-edge serve`, mountable in another ASGI app.

A request's photo goes: upload read on the event loop (bounded by the upload limit, so a slow client only holds
its own connection) -> admitted into the queue (bounded: one more is a 503) -> decoded and prepared in a bounded
thread pool -> its views batched with other requests' into shared onnxruntime steps (`batcher.py`) -> its row.
Each request has a timeout (504). Errors are one-line JSON bodies, never stack traces; logs name no key and hold
no image bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import numpy as np
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import cassava_edge
from cassava_edge.classifier import Classifier
from cassava_edge.errors import ImageError
from cassava_edge.serve.apidocs import api_page
from cassava_edge.serve.batcher import Inference, MicroBatcher, Unbatched
from cassava_edge.serve.photos import (
    UPLOAD_SOURCE,
    Plans,
    RequestOptionError,
    RequestOptions,
    failed_row,
    finish_row,
    infer_batch,
    model_info,
    parse_options,
    prepare_upload,
)
from cassava_edge.serve.schema import BatchRows, ErrorBody, ResultRow
from cassava_edge.serve.settings import MAX_BATCH_PHOTOS, ServeSettings

STATIC_DIR = Path(__file__).with_name("static")
# Room for the multipart boundaries and part headers around the photos themselves.
MULTIPART_OVERHEAD = 64 * 1024
RETRY_AFTER_S = 1
# Latency buckets (seconds) from one photo on a GPU to a busy 2-core box's queue.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
VIEW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

logger = logging.getLogger("cassava_edge.serve")


class ServiceError(Exception):
    """A request refused with `status` and a one-line `message` (turned into {"error": message})."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


class UploadTooLarge(ServiceError):
    def __init__(self, limit_bytes: int) -> None:
        super().__init__(413, f"the upload is over this service's limit of {limit_bytes / 2**20:.3g} MB")


class QueueFull(ServiceError):
    def __init__(self, max_queue: int) -> None:
        super().__init__(
            503, f"the service is busy ({max_queue} photos queued); try again shortly",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )


@dataclass
class Upload:
    """One photo as received: its bytes, or why there are none."""

    source: str
    data: bytes | None = None
    error: str | None = None
    too_large: bool = False


class Metrics:
    """Prometheus metrics on this app's own registry, so that several apps in one process never collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "cassava_edge_requests", "Requests by endpoint and HTTP status.", ["endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "cassava_edge_request_seconds", "Request latency by endpoint.", ["endpoint"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.queue_depth = Gauge(
            "cassava_edge_queue_depth", "Photos admitted and not yet answered.", registry=self.registry
        )
        self.photos = Counter(
            "cassava_edge_photos", "Photos answered, by result status.", ["status"], registry=self.registry
        )
        self.step_views = Histogram(
            "cassava_edge_views_per_step", "Views per inference step (the views of the photos batched together).",
            buckets=VIEW_BUCKETS, registry=self.registry,
        )
        self.run_views = Histogram(
            "cassava_edge_views_per_run", "Views per onnxruntime run (a step runs chunk_size views per run).",
            buckets=VIEW_BUCKETS, registry=self.registry,
        )

    def observe_step(self, views: int, chunk_size: int) -> None:
        self.step_views.observe(views)
        # OnnxSession.run_all cuts a step into runs of chunk_size views, the last one shorter.
        full, rest = divmod(views, chunk_size)
        for run in [chunk_size] * full + ([rest] if rest else []):
            self.run_views.observe(run)


class Service:
    """What the endpoints share: the classifier and its plans, the decode pool, the batcher and the queue."""

    def __init__(self, classifier: Classifier, settings: ServeSettings, inference: Inference | None) -> None:
        self.classifier = classifier
        self.settings = settings
        self.plans = Plans(classifier)
        self.metrics = Metrics()
        self.decode_pool = ThreadPoolExecutor(settings.decode_workers, thread_name_prefix="cassava-edge-decode")
        # What an inference step reports (its views) to the metrics; an `inference` from outside calls it too.
        self.observe_step = functools.partial(self.metrics.observe_step, chunk_size=classifier.session.chunk_size)
        self.inference = inference or default_inference(classifier, settings, self.observe_step)
        self.in_flight = 0
        self.warmed = False

    def admit(self, photos: int) -> None:
        if photos > self.settings.max_queue:  # never admitted however long the client waits: not a 503
            raise ServiceError(422, f"{photos} photos in one request: this service queues at most "
                                    f"{self.settings.max_queue}")
        if self.in_flight + photos > self.settings.max_queue:
            raise QueueFull(self.settings.max_queue)
        self.in_flight += photos
        self.metrics.queue_depth.set(self.in_flight)

    def release(self, photos: int) -> None:
        self.in_flight -= photos
        self.metrics.queue_depth.set(self.in_flight)

    async def classify(self, upload: Upload, options: RequestOptions) -> dict[str, Any]:
        """One admitted photo's row; a photo that cannot be classified is a failed row."""
        if upload.data is None:
            return failed_row(upload.source, upload.error or "no photo")
        planned = self.plans.get(options)
        loop = asyncio.get_running_loop()
        try:
            prepared = await loop.run_in_executor(self.decode_pool, prepare_upload, planned, upload.data, upload.source)
        except ImageError as exc:
            return failed_row(upload.source, exc.reason)
        rows = await self.inference.infer(prepared.views)
        return finish_row(planned, upload.source, rows, prepared, options)

    async def answer(self, request: Request, options: RequestOptions, *, multiple: bool) -> list[dict[str, Any]]:
        """What both classify endpoints do once the options are parsed: refuse when busy before reading a byte,
        read the upload(s), classify them; all within the request's timeout (504)."""

        async def steps() -> list[dict[str, Any]]:
            busy_check(self)
            uploads = await read_uploads(request, self.settings, multiple=multiple)
            return await self.classify_all(uploads, options)

        return await within_timeout(steps(), self.settings.timeout_s)

    async def classify_all(self, uploads: list[Upload], options: RequestOptions) -> list[dict[str, Any]]:
        self.admit(len(uploads))
        try:
            rows = await asyncio.gather(*(self.classify(upload, options) for upload in uploads))
        finally:
            self.release(len(uploads))
        for row in rows:
            self.metrics.photos.labels(row["status"]).inc()
        return list(rows)

    def warm_up(self) -> None:
        """One onnxruntime run on blank views, so that the first photo does not pay for the session's set-up."""
        height, width = self.classifier.metadata.crop_size
        self.classifier.infer(np.zeros((1, height, width, 3), np.float32))
        self.warmed = True

    def close(self) -> None:
        self.inference.close()
        self.decode_pool.shutdown(wait=False, cancel_futures=True)


def default_inference(
    classifier: Classifier, settings: ServeSettings, on_step: Callable[[int], None] | None = None
) -> Inference:
    """The settings' inference: a MicroBatcher, or every photo on its own when batching is off."""
    run_batch = functools.partial(infer_batch, classifier)
    if not settings.batching:
        return Unbatched(run_batch, threads=settings.inference_workers, on_step=on_step)
    return MicroBatcher(
        run_batch, max_batch_views=settings.max_batch_views, max_wait_ms=settings.max_wait_ms,
        threads=settings.inference_workers, on_step=on_step,
    )


def create_app(
    classifier: Classifier, settings: ServeSettings | None = None, *, inference: Inference | None = None
) -> FastAPI:
    """The service for `classifier`: endpoints, page, metrics and limits as `settings` say (default: loopback
    defaults, no key). `inference` replaces the micro-batcher (any object with ``async infer(views) -> rows``)."""
    settings = settings or ServeSettings()
    service = Service(classifier, settings, inference)
    require_key = key_check(settings.api_key)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(service.warm_up)
        yield
        service.close()

    app = FastAPI(
        title="cassava-edge",
        version=cassava_edge.__version__,
        description="Cassava leaf disease classification: one photo or a batch in, one result row per photo out.",
        lifespan=lifespan,
        docs_url=None,  # served below (offline), behind the API key like every endpoint but /healthz
        redoc_url=None,
        openapi_url=None,
    )
    app.state.service = service
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"], expose_headers=["Retry-After"],
        )
    app.add_middleware(UploadLimit, photo_limit=settings.max_upload_bytes, limits={
        "/v1/classify": settings.max_upload_bytes + MULTIPART_OVERHEAD,
        "/v1/classify/batch": settings.max_upload_bytes * MAX_BATCH_PHOTOS + MULTIPART_OVERHEAD,
    })
    app.add_middleware(RequestMetrics, metrics=service.metrics)
    add_error_handlers(app)
    keyed = [Depends(require_key)]
    errors: dict[int | str, dict[str, Any]] = {
        status: {"model": ErrorBody} for status in (401, 413, 415, 503, 504)
    }
    @app.get("/healthz", tags=["service"])
    async def healthz() -> dict[str, str]:
        """Alive: the process answers (no key needed)."""
        return {"status": "alive"}

    @app.get("/readyz", tags=["service"], dependencies=keyed, responses={503: {"model": ErrorBody}})
    async def readyz() -> dict[str, Any]:
        """Ready: the model is loaded and has run once (warmed now if the app's lifespan did not run)."""
        if not service.warmed:
            await asyncio.to_thread(service.warm_up)
        return {"ready": True, "queued": service.in_flight, "max_queue": settings.max_queue}

    @app.get("/v1/model", tags=["model"], dependencies=keyed)
    async def model() -> dict[str, Any]:
        """What `cassava-edge info --format json` shows: metadata, labels and their names, providers, versions."""
        return model_info(classifier)

    @app.post(
        "/v1/classify", tags=["classify"], dependencies=keyed, response_model=ResultRow,
        responses={**errors, 422: {"model": ResultRow, "description": "A failed row (the photo cannot be "
                                   "classified) or, with no row, {error, option} for a refused option."}},
        openapi_extra={"requestBody": upload_body(multiple=False)},
    )
    async def classify_one(request: Request, options: RequestOptions = Depends(request_options)) -> Any:
        """One photo, as multipart field `image` or as a raw image/* body -> its result row."""
        row = (await service.answer(request, options, multiple=False))[0]
        return row if row["ok"] else JSONResponse(row, status_code=422)

    @app.post(
        "/v1/classify/batch", tags=["classify"], dependencies=keyed, response_model=BatchRows,
        responses={**errors, 422: {"model": ErrorBody}},
        openapi_extra={"requestBody": upload_body(multiple=True)},
    )
    async def classify_batch(request: Request, options: RequestOptions = Depends(request_options)) -> Any:
        """Up to 32 photos (MAX_BATCH_PHOTOS) as repeated multipart fields `image` -> their rows in the order sent;
        a photo that cannot be classified is a failed row, never a failed request."""
        return {"results": await service.answer(request, options, multiple=True)}

    @app.get("/metrics", tags=["service"], dependencies=keyed, response_class=Response)
    async def metrics() -> Response:
        """Prometheus text: requests by endpoint and status, latency, queue depth, views per step and per
        onnxruntime run, photos by status."""
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/openapi.json", include_in_schema=False, dependencies=keyed)
    async def openapi() -> dict[str, Any]:
        return app.openapi()

    # Not Swagger UI: it loads from a CDN, so it is blank on a box without internet (apidocs.py).
    @app.get("/docs", include_in_schema=False, dependencies=keyed)
    async def docs() -> HTMLResponse:
        return HTMLResponse(api_page(app.openapi()))

    # The page loads without the key (it holds no data and asks for the key itself); everything it calls needs it.
    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


async def request_options(
    request: Request,
    # Declared for the OpenAPI docs only: parse_options reads the whole query, so that an unknown option is
    # named (422) rather than ignored, and each value is checked by the CLI's own option type.
    tta: str | None = Query(None, description="Test-time augmentation: none, flip, d4 or seed [default: the model's]."),
    scan: str | None = Query(None, description="Crop plan: corners, grid, center or full [default: the model's]."),
    top_k: str | None = Query(None, description="Classes listed in top_k (at least 1) [default: 3]."),
    min_confidence: str | None = Query(
        None, description="Confidence (0..1) under which a photo is uncertain [default: the model's]."
    ),
) -> RequestOptions:
    """The classify endpoints' query options, checked as `cassava-edge classify` checks them (a dependency: it
    runs after the API key check, so a caller without the key learns nothing about the options)."""
    return parse_options(request.query_params)


def key_check(api_key: str | None) -> Callable[[Request], Awaitable[None]]:
    """A dependency refusing (401) a request without `Authorization: Bearer <api_key>`; none when no key."""
    expected = None if api_key is None else api_key.encode()

    async def require_key(request: Request) -> None:
        if expected is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        # compare_digest takes as long whatever the key's first wrong byte, so timing does not reveal it.
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected):
            raise HTTPException(401, "this service needs an API key: send Authorization: Bearer <key>",
                                headers={"WWW-Authenticate": "Bearer"})

    return require_key


def busy_check(service: Service) -> None:
    """Refuse before reading the upload when the queue is already full: no bytes are taken in for nothing."""
    if service.in_flight >= service.settings.max_queue:
        raise QueueFull(service.settings.max_queue)


async def within_timeout(work: Awaitable[Any], timeout_s: float) -> Any:
    try:
        return await asyncio.wait_for(work, timeout_s)
    except asyncio.TimeoutError:
        raise ServiceError(504, f"no answer within this service's timeout of {timeout_s:g} s") from None


async def read_uploads(request: Request, settings: ServeSettings, *, multiple: bool) -> list[Upload]:
    """The request's photos: multipart fields `image` (one, or up to MAX_BATCH_PHOTOS), or a raw image/* body."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    limit = settings.max_upload_bytes
    if content_type == "multipart/form-data":
        form = await request.form(max_files=MAX_BATCH_PHOTOS + 1, max_fields=MAX_BATCH_PHOTOS + 16)
        try:
            parts = form.getlist("image")
            if not parts:
                raise ServiceError(422, "no photo: send it as the multipart field 'image'")
            if not multiple and len(parts) > 1:
                raise ServiceError(422, f"{len(parts)} photos in one request: send one, or use v1/classify/batch")
            if len(parts) > MAX_BATCH_PHOTOS:
                raise ServiceError(422, f"{len(parts)} photos in one request: at most {MAX_BATCH_PHOTOS}")
            uploads = [await read_part(part, limit) for part in parts]
            if not multiple and uploads[0].too_large:
                raise UploadTooLarge(limit)  # a batch keeps its other photos; a lone photo's request is refused
            return uploads
        finally:
            await form.close()
    if multiple:
        raise ServiceError(415, "a batch is multipart/form-data with one field 'image' per photo")
    if content_type.startswith("image/") or content_type == "application/octet-stream":
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > limit:
                raise UploadTooLarge(limit)
        return [Upload(UPLOAD_SOURCE, bytes(data))]
    raise ServiceError(415, "send the photo as multipart field 'image' or as a raw image/* body "
                            f"(got content type {content_type or 'none'})")


async def read_part(part: UploadFile | str, limit: int) -> Upload:
    """One multipart part's photo; a part that is too large or not a file is that photo's failure."""
    if not isinstance(part, UploadFile):
        return Upload(UPLOAD_SOURCE, error="the field 'image' holds text, not a file")
    source = Path(part.filename).name if part.filename else UPLOAD_SOURCE  # the name only, never a client path
    if part.size is not None and part.size > limit:
        return Upload(source, error=f"over this service's upload limit of {limit / 2**20:.3g} MB", too_large=True)
    return Upload(source, await part.read())


def upload_body(*, multiple: bool) -> dict[str, Any]:
    """The OpenAPI request body of the classify endpoints (read by hand, so FastAPI cannot infer it)."""
    photo = {"type": "string", "format": "binary"}
    image = {"type": "array", "items": photo, "maxItems": MAX_BATCH_PHOTOS} if multiple else photo
    content: dict[str, Any] = {
        "multipart/form-data": {"schema": {"type": "object", "properties": {"image": image}, "required": ["image"]}}
    }
    if not multiple:
        content["image/*"] = {"schema": photo}
    return {"required": True, "content": content}


def add_error_handlers(app: FastAPI) -> None:
    """Every refusal as {"error": one line}; an unexpected error is logged here and answered without details."""

    def error(status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
        return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return error(exc.status, exc.message, exc.headers)

    @app.exception_handler(RequestOptionError)
    async def option_error(request: Request, exc: RequestOptionError) -> JSONResponse:
        return error(422, str(exc), option=exc.option)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return error(422, f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error answering %s %s", request.method, request.url.path)
        return error(500, "internal error (the service's log has the details)")


class UploadLimit:
    """ASGI middleware: a request body over its path's limit is a 413, told by Content-Length before a byte is
    read, or while it streams when the length is not announced (or is a lie). The answer names `photo_limit`,
    the limit people set (a body's limit adds room for multipart headers, or for a batch's photos)."""

    def __init__(self, app: ASGIApp, photo_limit: int, limits: dict[str, int]) -> None:
        self.app = app
        self.photo_limit = photo_limit
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.limits.get(scope.get("path", "")) if scope["type"] == "http" else None
        if limit is None:
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return await too_large(self.photo_limit)(scope, receive, send)
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise UploadTooLarge(self.photo_limit)
            return message

        await self.app(scope, counted, send)


def too_large(limit: int) -> JSONResponse:
    error = UploadTooLarge(limit)
    return JSONResponse({"error": error.message}, status_code=error.status, headers={"Connection": "close"})


class RequestMetrics:
    """ASGI middleware counting requests by endpoint (the route's path, so that unknown paths are one label) and
    status, and timing them."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = 500
        start = time.perf_counter()

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(endpoint, str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
