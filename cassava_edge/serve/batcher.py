"""Micro-batching: the views of photos from concurrent requests run in shared onnxruntime steps.

As Triton's dynamic batcher and Ray Serve's `@serve.batch` do, a step starts when its views reach
`max_batch_views` or when its oldest photo has waited `max_wait_ms`, and while every inference thread is busy
photos keep joining the next step. A photo is never split across steps. Inference runs in its own threads, never
on the event loop.

The app only needs an `Inference`: an object with ``async infer(views) -> rows``. `MicroBatcher` and `Unbatched`
are the two here; a Ray Serve deployment can put `@serve.batch` behind the same method.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Protocol, Sequence

import numpy as np

# `infer_batch(views of several photos) -> rows per photo`, e.g. functools.partial(photos.infer_batch, classifier).
BatchFunction = Callable[[Sequence[np.ndarray]], list[np.ndarray]]
# Called with the number of views of each step that ran (the metrics' views-per-run histogram).
StepObserver = Callable[[int], None]


class Inference(Protocol):
    async def infer(self, views: np.ndarray) -> np.ndarray:
        """The model's rows of one photo's views."""
        ...

    def close(self) -> None: ...


class _Waiting:
    __slots__ = ("views", "future", "since")

    def __init__(self, views: np.ndarray, future: asyncio.Future[np.ndarray]) -> None:
        self.views = views
        self.future = future
        self.since = time.monotonic()


class MicroBatcher:
    """Collects photos' views into steps of at most `max_batch_views` (a larger photo runs alone), run by
    `threads` inference threads. Lives on whichever event loop calls it: nothing runs in the background between
    requests, so it needs no start or stop beyond `close`."""

    def __init__(
        self,
        run_batch: BatchFunction,
        *,
        max_batch_views: int,
        max_wait_ms: float,
        threads: int,
        on_step: StepObserver | None = None,
    ) -> None:
        self.run_batch = run_batch
        self.max_batch_views = max_batch_views
        self.max_wait_s = max_wait_ms / 1000
        self.threads = threads
        self.on_step = on_step
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="cassava-edge-infer")
        self._waiting: list[_Waiting] = []
        self._waiting_views = 0
        self._running = 0
        self._timer: asyncio.TimerHandle | None = None

    async def infer(self, views: np.ndarray) -> np.ndarray:
        loop = asyncio.get_running_loop()
        item = _Waiting(views, loop.create_future())
        self._waiting.append(item)
        self._waiting_views += len(views)
        self._schedule(loop)
        return await item.future

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start steps while a thread is free and a step is due; otherwise wake up when the oldest one is."""
        while self._waiting and self._running < self.threads:
            waited = time.monotonic() - self._waiting[0].since
            if self._waiting_views < self.max_batch_views and waited < self.max_wait_s:
                if self._timer is None:
                    self._timer = loop.call_later(self.max_wait_s - waited, self._on_timer, loop)
                return
            self._start_step(loop)

    def _on_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        self._schedule(loop)

    def _start_step(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        step, views = [], 0
        while self._waiting:
            item = self._waiting[0]
            if item.future.done():  # its request timed out or went away while waiting: no work for it
                self._waiting.pop(0)
                self._waiting_views -= len(item.views)
                continue
            if step and views + len(item.views) > self.max_batch_views:
                break
            step.append(self._waiting.pop(0))
            self._waiting_views -= len(item.views)
            views += len(item.views)
        if not step:
            return
        self._running += 1
        work = loop.run_in_executor(self._pool, self.run_batch, [item.views for item in step])
        work.add_done_callback(lambda done: self._finish_step(loop, step, views, done))

    def _finish_step(
        self, loop: asyncio.AbstractEventLoop, step: list[_Waiting], views: int, done: asyncio.Future[list[np.ndarray]]
    ) -> None:
        self._running -= 1
        error = RuntimeError("the service is shutting down") if done.cancelled() else done.exception()
        if error is None and self.on_step is not None:
            self.on_step(views)
        for index, item in enumerate(step):
            if item.future.done():
                continue
            if error is not None:
                item.future.set_exception(error)
            else:
                item.future.set_result(done.result()[index])
        # Photos that arrived while every thread was busy have waited long enough: run them now.
        while self._waiting and self._running < self.threads:
            self._start_step(loop)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class Unbatched:
    """Every photo's views in their own step (batching off): the comparison the benchmark draws."""

    def __init__(self, run_batch: BatchFunction, *, threads: int, on_step: StepObserver | None = None) -> None:
        self.run_batch = run_batch
        self.on_step = on_step
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="cassava-edge-infer")

    async def infer(self, views: np.ndarray) -> np.ndarray:
        rows = await asyncio.get_running_loop().run_in_executor(self._pool, self.run_batch, [views])
        if self.on_step is not None:
            self.on_step(len(views))
        return rows[0]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
