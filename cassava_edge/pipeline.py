"""Overlapping photo decoding with inference on one machine.

`Classifier.classify_many` hands groups of photos to `ordered_map`: a small pool of threads each reads, decodes,
prepares and classifies a group, so that one thread decodes while another runs onnxruntime. Threads, not
processes: OpenCV, numpy and onnxruntime release the GIL, and a thread shares the model and the prepared arrays
without pickling them. At most `window` groups are in flight, so memory stays flat however long the input is,
and the results come back in input order.
"""

from __future__ import annotations

import itertools
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

from cassava_edge.errors import OptionError

Item = TypeVar("Item")
Result = TypeVar("Result")

# More threads than this only add memory: on CPU the cores are busy long before, and on a GPU box a handful of
# threads decoding per GPU keep it fed.
MAX_DEFAULT_WORKERS = 8


def default_workers() -> int:
    """Worker threads when the caller does not choose: one per core this process may use, at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_DEFAULT_WORKERS, cores))


def check_workers(workers: int | None) -> int:
    """`workers` as given, or the default for None; 0 means no threads (all work in the caller's thread)."""
    if workers is None:
        return default_workers()
    if workers < 0:
        raise OptionError(f"workers must be 0 (no worker threads) or more, got {workers}")
    return workers


def batched(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    """Lists of `size` consecutive items (the last may be shorter), read lazily (itertools.batched from 3.12)."""
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def ordered_map(
    function: Callable[[Item], Result], items: Iterable[Item], *, workers: int, window: int
) -> Iterator[Result]:
    """`function(item)` for each item, in input order, computed ahead by `workers` threads.

    At most `window` items are submitted and not yet yielded, so `items` is read lazily, at most `window` items
    ahead of the consumer. With `workers` 0 the items are mapped one at a time in the caller's thread. `function`
    should turn expected failures into values: an exception it raises ends the iteration, as with `map`.
    Closing the iterator early cancels the items not started and waits for the ones running.
    """
    if workers == 0:
        yield from map(function, items)
        return
    if window < 1:
        raise OptionError(f"window must be at least 1, got {window}")
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cassava-edge-worker") as pool:
        pending: deque[Future[Result]] = deque()
        try:
            for item in items:
                pending.append(pool.submit(function, item))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
