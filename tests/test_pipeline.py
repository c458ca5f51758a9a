"""Pipelined classify_many: decoding threads ahead of inference, same results as the sequential path."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from cassava_edge import Classifier, OptionError
from cassava_edge.pipeline import check_workers, default_workers, ordered_map


def test_ordered_map_keeps_order_and_bounds_the_items_in_flight() -> None:
    lock = threading.Lock()
    read: list[int] = []
    running = peak = 0

    def items():  # type: ignore[no-untyped-def]
        for index in range(40):
            read.append(index)
            yield index

    def slow_square(value: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.001 * ((value * 7) % 5))  # later items often finish first
        with lock:
            running -= 1
        return value * value

    stream = ordered_map(slow_square, items(), workers=3, window=5)
    first = next(stream)
    assert first == 0 and len(read) == 5  # read ahead by the window, not the whole input
    assert [first, *stream] == [value * value for value in range(40)]
    assert peak <= 3


def test_ordered_map_closed_early_stops_reading() -> None:
    done: list[int] = []
    stream = ordered_map(done.append, iter(range(1000)), workers=2, window=4)
    next(stream)
    stream.close()
    assert len(done) <= 4


def test_workers_option() -> None:
    assert check_workers(None) == default_workers() >= 1
    assert check_workers(0) == 0
    with pytest.raises(OptionError, match="workers"):
        check_workers(-1)


def test_pipelined_classify_many_reads_a_bounded_window_ahead(tiny_model: Path) -> None:
    classifier = Classifier(tiny_model, provider="cpu")
    consumed: list[int] = []

    def photos():  # type: ignore[no-untyped-def]
        for index in range(40):
            consumed.append(index)
            yield np.full((32, 32, 3), index, dtype=np.uint8)

    stream = classifier.classify_many(photos(), batch_images=2, workers=2)
    next(stream)
    assert len(consumed) <= (2 + 1) * 2  # (workers + 1) groups of batch_images photos, not the whole input
    assert len([None, *stream]) == 40


def test_pipelined_run_equals_the_sequential_one(tiny_model: Path, tmp_path: Path, run_calls: list[int]) -> None:
    classifier = Classifier(tiny_model, provider="cpu", tta="d4", chunk_size=5)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a photo")
    rng = np.random.default_rng(0)
    photos = [rng.integers(0, 256, (32 + 8 * (i % 3), 32, 3), dtype=np.uint8) for i in range(9)]
    sources = [*photos[:4], bad, tmp_path / "absent.png", *photos[4:]]
    sequential = [r.to_dict() for r in classifier.classify_many(sources, batch_images=3, workers=0)]
    sequential_calls = list(run_calls)
    run_calls.clear()
    pipelined = [r.to_dict() for r in classifier.classify_many(sources, batch_images=3, workers=3)]
    assert pipelined == sequential
    # The same onnxruntime batches, so the same numbers (threads may make the calls in another order).
    assert sorted(run_calls) == sorted(sequential_calls)
    assert [r["ok"] for r in pipelined] == [True] * 4 + [False, False] + [True] * 5


def test_pipelined_real_photos_match_sequential(data_dir: Path, tmp_path: Path) -> None:
    photos = sorted((data_dir / "cassava" / "train_images").glob("*.jpg"))[:6]
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(photos[0].read_bytes()[:5000])
    (tmp_path / "empty.jpg").write_bytes(b"")
    sources = [photos[0], truncated, *photos[1:4], tmp_path / "empty.jpg", *photos[4:]]
    classifier = Classifier(provider="cpu")  # the bundled model with its default plan
    sequential = [r.to_dict() for r in classifier.classify_many(sources, workers=0)]
    pipelined = [r.to_dict() for r in classifier.classify_many(sources, workers=2)]
    assert pipelined == sequential
    assert [r["ok"] for r in pipelined] == [True, False, True, True, True, False, True, True]
