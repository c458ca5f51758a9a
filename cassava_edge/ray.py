"""Classify photos with Ray Data, on a laptop or a cluster (the `[ray]` extra: pip install "cassava-edge[ray]").

`classify_dataset` turns photo paths (or a Dataset of encoded photos) into a Ray Dataset of result rows
(`cassava_edge.rows.row_schema`): `map_batches` runs `ClassifyBatch`, a callable class, on a pool of actors, each
holding one Classifier for its whole life. Nothing is lost at scale:

* exactly one row per input: a photo that cannot be read or decoded is a row with its error, never a failed task;
* an actor that dies (out of memory, a killed node) is restarted by Ray and its batch retried
  (`max_restarts` / `max_task_retries`);
* a re-run can skip the photos an earlier run already wrote (`cassava_edge.rows.done_sources`).

The paths must be readable where the actors run (a shared file system on a cluster); for object stores, pass
``ray.data.read_binary_files(..., include_paths=True)`` and the actors classify the bytes.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import socket
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping

import numpy as np

from cassava_edge.errors import OptionError, SourceError
from cassava_edge.results import Classification
from cassava_edge.rows import classification_from_row, rows_table
from cassava_edge.sources import find_sources

if TYPE_CHECKING:
    import pyarrow
    import ray.data

# Photos per map_batches call: large enough to amortise a call, small enough that a retried batch redoes little.
DEFAULT_BATCH_SIZE = 32
# Bounded on purpose (Ray Data's default is to restart forever): a photo that crashes its actor every time must
# end the run with an error, not loop.
DEFAULT_MAX_RESTARTS = 3
DEFAULT_MAX_TASK_RETRIES = 3
# Ray's messages that are about Ray, not the run, kept off the terminal (set where the user has not set them; they
# reach the Ray that `connect` starts, and this process's own Ray client):
QUIET_RAY_ENVIRONMENT = {
    # C++ log lines under fatal: every Ray Data actor pool with restarts logs an error-level line about its
    # constructor arguments (ray-project/ray#57733, a Ray Data internal), on every run.
    "RAY_BACKEND_LOG_LEVEL": "fatal",
    # "Task ... failed. There are 3 retries remaining" on stdout, for each batch in flight when Ctrl-C stops a run.
    "RAY_enable_output_error_log_if_still_retry": "0",
}


class ClassifyBatch:
    """The map_batches callable: one Classifier per actor, a batch of paths (or of path + bytes) in, rows out.

    On CPU the Classifier uses as many onnxruntime threads as the actor has CPUs, so that actors do not fight over
    cores; `workers` threads overlap decoding with inference inside the actor (see `Classifier.classify_many`).
    """

    def __init__(self, classifier_options: Mapping[str, Any], workers: int | None = None) -> None:
        from cassava_edge.classifier import Classifier

        self.classifier = Classifier(**classifier_options)
        self.workers = workers

    def __call__(self, batch: dict[str, np.ndarray]) -> "pyarrow.Table":
        paths = [str(path) for path in batch["path"]]
        if "bytes" in batch:
            photos: list[Any] = [_named_bytes(data, path) for data, path in zip(batch["bytes"], paths)]
        else:
            photos = paths
        results = self.classifier.classify_many(photos, workers=self.workers)
        return rows_table(results, self.classifier.labels)


def classify_dataset(
    photos: "str | Path | Iterable[str | Path] | ray.data.Dataset",
    *,
    classifier_options: Mapping[str, Any] | None = None,
    actors: int = 1,
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int | None = None,
    skip: set[str] | None = None,
    max_restarts: int = DEFAULT_MAX_RESTARTS,
    max_task_retries: int = DEFAULT_MAX_TASK_RETRIES,
    batch_class: type[ClassifyBatch] = ClassifyBatch,
) -> "ray.data.Dataset":
    """A lazy Ray Dataset of one result row per photo; write it with ``write_parquet``/``write_json`` or read it
    with ``iter_rows`` (see `iter_classifications`).

    `photos` is a folder (searched recursively, as the CLI does), paths, or a Dataset with a ``path`` column and
    optionally a ``bytes`` column (from ``read_binary_files(include_paths=True)``). `classifier_options` are
    `Classifier` keyword arguments (model, tta, scan, seed, ...). `actors` Classifiers run at once, each with
    `num_cpus` CPUs and `num_gpus` GPUs; with GPUs the provider is CUDA unless the options say otherwise.
    `workers` is `classify_many`'s in each actor (default: one thread per CPU it reserves).
    `skip` holds sources to leave out of paths or a folder (an earlier run's, `cassava_edge.rows.done_sources`).
    Ray is started locally if this process is not connected to a cluster yet (``ray.init`` first to choose one).
    """
    import ray.data

    if actors < 1 or batch_size < 1:
        raise OptionError(f"actors and batch size must be at least 1, got {actors} and {batch_size}")
    if num_cpus <= 0 or num_gpus < 0:
        raise OptionError(f"each actor needs some CPU and no negative GPU count, got {num_cpus} and {num_gpus}")
    options = dict(classifier_options or {})
    if num_gpus > 0:
        options.setdefault("provider", "cuda")
    elif options.get("provider", "auto") != "cuda":
        # CPU actors: use the actor's own cores and no more, and say so to onnxruntime (it ignores OMP_NUM_THREADS).
        options.setdefault("provider", "cpu")
        options.setdefault("threads", max(1, math.floor(num_cpus)))
    if workers is None:
        workers = max(1, math.floor(num_cpus))  # classify_many threads: one per CPU the actor reserved
    dataset = photos if isinstance(photos, ray.data.Dataset) else _paths_dataset(photos, skip or set())
    with warnings.catch_warnings():
        # Ray 2.60 deprecates actor options passed through map_batches' **ray_remote_args (removal planned for
        # 2.64) but offers no other way to bound restarts yet; the warning would only confuse our users.
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        return dataset.map_batches(
            batch_class,
            fn_constructor_kwargs={"classifier_options": options, "workers": workers},
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            max_restarts=max_restarts,
            max_task_retries=max_task_retries,
        )


def iter_classifications(dataset: "ray.data.Dataset", top_k: int = 3) -> Iterator[Classification]:
    """The Dataset's rows back as Classifications, streamed to this process as the actors finish batches."""
    for row in dataset.iter_rows():
        yield classification_from_row(row, top_k)


def photo_paths(photos: str | Path | Iterable[str | Path]) -> list[Path]:
    """A folder's photos (recursively, as the CLI finds them), or the given paths as they are: a missing one
    becomes a failed row, not an error here."""
    if isinstance(photos, (str, Path)):
        if not Path(photos).is_dir():
            raise SourceError(f"no such folder: {photos}")
        return find_sources([str(photos)]).photos
    return [Path(photo) for photo in photos]


def connect(address: str | None = None, *, num_cpus: int | None = None, timeout: float = 5.0) -> None:
    """``ray.init`` on `address` (a cluster's ``host:port``, ``ray://host:port`` or ``auto``), or a new local Ray
    with its workers at normal priority when None (and $RAY_ADDRESS is unset) or ``local``. Quiet: Ray's errors
    only, the actors' output not forwarded, none of Ray's internal notices (QUIET_RAY_ENVIRONMENT). An address that does not answer within `timeout` seconds raises
    SourceError at once, where Ray itself would retry for a minute."""
    import ray

    address = address or os.environ.get("RAY_ADDRESS") or None
    local = address in (None, "local")
    if local:
        # Ray starts its workers at nice 15 so that its own daemons stay responsive; on the laptop or box where we
        # start it the actors are the job, and at nice 15 any other busy process starves them (measured here: 10x
        # slower beside a training run). Ray's job manager sets the same variable for its jobs.
        os.environ.setdefault("RAY_worker_niceness", "0")
    elif address != "auto":
        host, _, port = address.removeprefix("ray://").rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=timeout).close()
        except (OSError, ValueError) as exc:
            raise SourceError(f"cannot reach the Ray cluster at {address}: {exc}") from None
    for name, value in QUIET_RAY_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    try:
        with _stderr_to_devnull():  # Ray's C++ start-up says on fd 2 that it read RAY_BACKEND_LOG_LEVEL
            ray.init(address=address, num_cpus=num_cpus if local else None, include_dashboard=False,
                     log_to_driver=False, ignore_reinit_error=True, logging_level=logging.ERROR)
    except (ConnectionError, TimeoutError, RuntimeError) as exc:  # e.g. the port answers but is not Ray's
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SourceError(f"cannot connect to Ray at {address or 'a new local Ray'}: {reason}") from None


@contextlib.contextmanager
def _stderr_to_devnull() -> Iterator[None]:
    """File descriptor 2 points at /dev/null inside the block: C++ libraries write there, past sys.stderr. Errors
    still arrive as exceptions."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _paths_dataset(photos: str | Path | Iterable[str | Path], skip: set[str]) -> "ray.data.Dataset":
    import ray.data

    from cassava_edge.rows import not_done

    paths = not_done(photo_paths(photos), skip)
    return ray.data.from_items([{"path": str(path)} for path in paths])


def _named_bytes(data: bytes | np.ndarray, name: str) -> io.BytesIO:
    """Encoded bytes that name themselves in results (`source_name` reads a file object's name)."""
    photo = io.BytesIO(bytes(data))
    photo.name = name
    return photo
