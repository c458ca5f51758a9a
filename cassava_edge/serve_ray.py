"""`cassava-edge serve` on a Ray cluster: Ray Serve replicas, each holding one Classifier (the `[ray]` extra with the
`[serve]` one: pip install "cassava-edge[ray,serve]").

Every replica runs the very app of `cassava-edge serve` (`create_app`, mounted with `@serve.ingress`): the same
endpoints, page, schema, limits and API key. Only the batching changes hands: instead of the app's own
micro-batcher, concurrent photos within a replica share onnxruntime runs through Ray Serve's `@serve.batch`
(`CassavaService.infer_photos`), and Ray's proxies spread requests over the replicas.

    serve run cassava_edge.serve_ray:app_builder replicas=4        # CASSAVA_EDGE_API_KEY holds the key

or from Python: ``serve.run(build_app(replicas=4, api_key=...))``. Needs Ray 2.60 or later (a replica builds its
app after its constructor, `__serve_build_asgi_app__`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
from ray import serve

from cassava_edge.errors import OptionError
from cassava_edge.serve.photos import infer_batch
from cassava_edge.serve.settings import ServeSettings

if TYPE_CHECKING:
    from fastapi import FastAPI
    from ray.serve import Application

# Photos (not views) per @serve.batch call: 8 photos of the bundled model's 4 views are the 32 views that
# `cassava-edge serve` puts in one step.
DEFAULT_MAX_BATCH_PHOTOS = 8
API_KEY_VARIABLE = "CASSAVA_EDGE_API_KEY"


@serve.deployment(ray_actor_options={"num_cpus": 1})
@serve.ingress()
class CassavaService:
    """One replica: a Classifier and `create_app`'s app around it, its inference batched by `@serve.batch`.
    It is the app's `Inference` (``async infer(views) -> rows``)."""

    def __init__(
        self, classifier_options: Mapping[str, Any], settings: ServeSettings, max_batch_photos: int
    ) -> None:
        from cassava_edge.classifier import Classifier

        self.classifier = Classifier(**classifier_options)
        self.settings = settings
        self.infer_photos.set_max_batch_size(max_batch_photos)
        self.infer_photos.set_batch_wait_timeout_s(settings.max_wait_ms / 1000)
        self._observe_step = lambda views: None

    def __serve_build_asgi_app__(self) -> "FastAPI":
        """Called by Ray Serve on the replica after `__init__`: the app of `cassava-edge serve`."""
        from cassava_edge.serve.app import create_app

        app = create_app(self.classifier, self.settings, inference=self)
        # The app's views-per-step and views-per-run histograms, fed by the steps @serve.batch runs (the app's
        # own micro-batcher, which feeds them otherwise, is not used here).
        self._observe_step = app.state.service.observe_step
        return app

    async def infer(self, views: np.ndarray) -> np.ndarray:
        return await self.infer_photos(views)

    @serve.batch(max_batch_size=DEFAULT_MAX_BATCH_PHOTOS, batch_wait_timeout_s=0.005)
    async def infer_photos(self, views: list[np.ndarray]) -> list[np.ndarray]:
        """Concurrent photos' views in one onnxruntime step, off the replica's event loop."""
        rows = await asyncio.to_thread(infer_batch, self.classifier, views)
        self._observe_step(sum(len(photo) for photo in views))
        return rows

    def close(self) -> None:
        """Nothing to stop: @serve.batch's queue lives and dies with the replica."""


def build_app(
    replicas: int = 1,
    *,
    classifier_options: Mapping[str, Any] | None = None,
    settings: ServeSettings | None = None,
    api_key: str | None = None,
    insecure_no_auth: bool = False,
    max_batch_photos: int = DEFAULT_MAX_BATCH_PHOTOS,
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
) -> "Application":
    """The Ray Serve application: `replicas` copies of `CassavaService`, each reserving `num_cpus` CPUs and
    `num_gpus` GPUs (CUDA when it has one, unless `classifier_options` says otherwise). `settings` are the app's
    (limits apply per replica); `api_key` replaces theirs. Ray's proxies are meant to be reached from other machines,
    so a key is required unless `insecure_no_auth`."""
    settings = settings or ServeSettings()
    if api_key is not None:
        settings = dataclasses.replace(settings, api_key=api_key)
    if settings.api_key is None and not insecure_no_auth:
        raise OptionError(
            "a Ray Serve deployment answers whoever reaches the cluster's proxies: give an API key (api_key=... or "
            f"{API_KEY_VARIABLE}), or insecure_no_auth=True to serve without one"
        )
    if replicas < 1 or max_batch_photos < 1:
        raise OptionError(f"replicas and max_batch_photos must be at least 1, got {replicas} and {max_batch_photos}")
    if num_cpus <= 0 or num_gpus < 0:
        raise OptionError(f"each replica needs some CPU and no negative GPU count, got {num_cpus} and {num_gpus}")
    options = dict(classifier_options or {})
    cores = max(1, math.floor(num_cpus))
    options.setdefault("threads", cores)  # onnxruntime's threads: the CPUs this replica reserved, not the node's
    if num_gpus > 0:
        options.setdefault("provider", "cuda")
    if settings.decode_threads is None:
        settings = dataclasses.replace(settings, decode_threads=cores)
    deployment = CassavaService.options(
        num_replicas=replicas,
        ray_actor_options={"num_cpus": num_cpus, "num_gpus": num_gpus},
        # Ray's own per-replica limit (default 5) would cap a batch before the app's queue does.
        max_ongoing_requests=settings.max_queue,
    )
    return deployment.bind(options, settings, max_batch_photos)


def app_builder(args: Mapping[str, str]) -> "Application":
    """`serve run cassava_edge.serve_ray:app_builder key=value ...`: replicas, model, variant, provider, tta, scan,
    min_confidence, max_batch_photos, num_cpus, num_gpus, max_queue, max_upload_mb, max_wait_ms, timeout_s,
    insecure_no_auth=true. The key is read from CASSAVA_EDGE_API_KEY where `serve run` runs, never from an
    argument (arguments show in the process list)."""
    known_classifier = {"model": str, "variant": str, "provider": str, "tta": str, "scan": str,
                        "min_confidence": float}
    known_settings = {"max_queue": int, "max_upload_mb": float, "max_wait_ms": float, "timeout_s": float}
    known_own = {"replicas": int, "max_batch_photos": int, "num_cpus": float, "num_gpus": float}
    values: dict[str, dict[str, Any]] = {"classifier": {}, "settings": {}, "own": {}}
    insecure = False
    for name, text in args.items():
        if name == "insecure_no_auth":
            insecure = str(text).lower() in ("1", "true", "yes")
            continue
        for group, known in (("classifier", known_classifier), ("settings", known_settings), ("own", known_own)):
            if name in known:
                try:
                    values[group][name] = known[name](text)
                except ValueError:
                    raise OptionError(f"{name}: not a {known[name].__name__}: {text!r}") from None
                break
        else:
            everything = [*known_own, *known_classifier, *known_settings, "insecure_no_auth"]
            raise OptionError(f"{name}: unknown argument (known: {', '.join(everything)})")
    return build_app(
        classifier_options=values["classifier"],
        settings=ServeSettings(**values["settings"]),
        api_key=os.environ.get(API_KEY_VARIABLE) or None,
        insecure_no_auth=insecure,
        **values["own"],
    )
