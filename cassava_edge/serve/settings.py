"""What a service is allowed to do: limits, batching and the API key. No FastAPI here, so the CLI can check the
settings (and refuse an exposed server without a key) before the [serve] extra is imported."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from cassava_edge.errors import OptionError
from cassava_edge.pipeline import default_workers

# The batch endpoint's limit: enough for a phone's gallery selection, small enough to answer within a timeout.
MAX_BATCH_PHOTOS = 32
LOOPBACK_NAMES = ("localhost",)


@dataclass(frozen=True)
class ServeSettings:
    """The settings of one service (`create_app`); the defaults are `cassava-edge serve`'s.

    `max_batch_views`/`max_wait_ms`: a shared onnxruntime step runs when its views reach the first or its oldest
    photo has waited the second. `max_queue`: photos admitted and not yet answered; one more is a 503.
    `batching` False runs every photo's views on their own (the benchmark's "batching off").
    `inference_threads`/`decode_threads`: None is one per core, at most 8, as `classify_many`'s workers.
    `api_key` None: no key asked (loopback only, unless the CLI's --insecure-no-auth)."""

    max_batch_views: int = 32
    max_wait_ms: float = 5.0
    max_queue: int = 64
    max_upload_mb: float = 20.0
    timeout_s: float = 30.0
    api_key: str | None = None
    cors_origins: tuple[str, ...] = field(default_factory=tuple)
    batching: bool = True
    inference_threads: int | None = None
    decode_threads: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_batch_views", "max_queue"):
            if getattr(self, name) < 1:
                raise OptionError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("inference_threads", "decode_threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise OptionError(f"{name} must be at least 1, got {value}")
        if self.max_wait_ms < 0:
            raise OptionError(f"max_wait_ms must be 0 or more, got {self.max_wait_ms}")
        for name in ("max_upload_mb", "timeout_s"):
            if not getattr(self, name) > 0:
                raise OptionError(f"{name} must be more than 0, got {getattr(self, name)}")
        if self.api_key is not None and not self.api_key.strip():
            raise OptionError("api_key must not be empty (leave it unset to serve without a key)")
        object.__setattr__(self, "cors_origins", tuple(self.cors_origins))

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def inference_workers(self) -> int:
        # As many onnxruntime steps at once as classify_many runs groups: two calls keep a CPU fuller than one.
        return self.inference_threads or default_workers()

    @property
    def decode_workers(self) -> int:
        return self.decode_threads or default_workers()


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def check_exposure(host: str, api_key: str | None, insecure_no_auth: bool) -> None:
    """Refuse to serve on a non-loopback `host` without an API key, unless the caller says so explicitly."""
    if is_loopback(host) or api_key or insecure_no_auth:
        return
    raise OptionError(
        f"--host {host} lets anyone who can reach this machine use the service; give an API key (--api-key or "
        "CASSAVA_EDGE_API_KEY), or --insecure-no-auth to serve without one"
    )
