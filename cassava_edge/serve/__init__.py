"""`cassava-edge serve`: the Classifier behind HTTP (FastAPI on uvicorn, the [serve] extra).

`create_app(classifier, settings)` builds the app (see `cassava_edge.serve.app`); `ServeSettings` holds its limits.
The per-photo work is in `cassava_edge.serve.photos` and the micro-batcher in `cassava_edge.serve.batcher`, both
free of FastAPI so that other front ends (a Ray Serve deployment) share them. Importing this package needs no
FastAPI; `create_app` imports it when first used, so a missing [serve] extra is one clear ModuleNotFoundError.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cassava_edge.serve.settings import MAX_BATCH_PHOTOS, ServeSettings, check_exposure

if TYPE_CHECKING:
    from cassava_edge.serve.app import create_app

__all__ = ["MAX_BATCH_PHOTOS", "ServeSettings", "check_exposure", "create_app"]

SERVE_INSTALL_HINT = 'pip install "cassava-edge[serve]"'


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from cassava_edge.serve.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
