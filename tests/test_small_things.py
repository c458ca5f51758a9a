"""Small things a new user notices (issue 19): the time-left estimate, the rate of an instant failure, hidden
files and symlinked folders."""

from __future__ import annotations

import io
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from cassava_edge.commands import progress as progress_module
from cassava_edge.commands.progress import RATE_WINDOW, Progress
from cassava_edge.results import Classification
from cassava_edge.writers import RunSummary


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _seconds_left(line: str) -> float | None:
    found = re.search(r"about (\d+):(\d\d) left", line)
    return None if found is None else int(found.group(1)) * 60 + int(found.group(2))


def test_time_left_leaves_out_the_start_up_and_does_not_jump(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(progress_module.time, "perf_counter", clock)
    stream = io.StringIO()
    progress = Progress(640, stream=stream, interval=0.0)
    clock.now += 20.0  # start-up: Ray and its actors
    estimates: list[tuple[float, float | None]] = []
    for batch in range(20):  # Ray-like: 32 results at once, one batch every 8 s (4 photos/s)
        for _ in range(32):
            progress.update(1)
            estimates.append((clock.now, _seconds_left(stream.getvalue().splitlines()[-1])))
        clock.now += 8.0
    first_result = estimates[0][0]
    assert all(left is None for when, left in estimates if when - first_result < RATE_WINDOW)
    shown = [(when, left) for when, left in estimates if left is not None]
    assert shown, "no estimate was ever shown"
    for (when, left), (later, later_left) in zip(shown, shown[1:]):
        # Never up by more than a second of rounding; never down by much more than the time that passed.
        assert later_left <= left + 1, (left, later_left)
        assert later_left >= left - (later - when) - 8.0, (left, later_left)
    # With the start-up counted in, the estimate would say 20 s more at the first estimate; it tracks the true
    # time left (photos left / 4 photos/s) within a batch's time by the middle of the run.
    when, left = shown[len(shown) // 2]
    done = estimates.index((when, left)) + 1
    assert abs(left - (640 - done) / 4.0) <= 8.0 + 1


def test_no_rate_for_a_run_where_nothing_was_classified() -> None:
    summary = RunSummary()
    for index in range(3):
        summary.add(Classification.failed(f"{index}.jpg", "not an image"))
    summary.finish()
    assert "photos/s" not in summary.line()
    assert summary.line().startswith("3 photos: 0 ok, 3 failed in ")


def _photo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((8, 8, 3), 90, np.uint8))
    return path


def test_hidden_files_and_folders_are_left_out_and_named(tmp_path: Path) -> None:
    from cassava_edge.sources import describe_hidden, find_sources

    visible = _photo(tmp_path / "field" / "leaf.jpg")
    _photo(tmp_path / "field" / "._leaf.jpg")  # a macOS resource fork: a photo extension, not a photo
    _photo(tmp_path / ".thumbnails" / "leaf.jpg")
    found = find_sources([str(tmp_path)])
    assert found.photos == [visible]
    assert sorted(found.hidden) == [tmp_path / ".thumbnails", tmp_path / "field" / "._leaf.jpg"]
    assert "--hidden" in describe_hidden(found.hidden)
    everything = find_sources([str(tmp_path)], hidden=True)
    assert len(everything.photos) == 3 and not everything.hidden
    # A hidden file named on the command line is used: the user asked for it.
    assert find_sources([str(tmp_path / "field" / "._leaf.jpg")]).photos == [tmp_path / "field" / "._leaf.jpg"]


def test_symlinked_folders_are_followed_once_without_looping(tmp_path: Path) -> None:
    from cassava_edge.sources import find_sources

    photos = tmp_path / "photos"
    inside = _photo(photos / "a" / "leaf.jpg")
    elsewhere = _photo(tmp_path / "elsewhere" / "other.jpg")
    (photos / "a" / "up").symlink_to(photos, target_is_directory=True)  # a loop back up the tree
    (photos / "linked").symlink_to(elsewhere.parent, target_is_directory=True)
    (photos / "linked-again").symlink_to(elsewhere.parent, target_is_directory=True)
    found = find_sources([str(photos)])
    assert sorted(p.resolve() for p in found.photos) == sorted([inside.resolve(), elsewhere.resolve()])
    assert len(found.photos) == 2


def test_bundled_models_carry_no_absolute_path_of_the_machine_they_were_exported_on() -> None:
    import json

    from cassava_edge.modelfile import read_metadata_props
    from cassava_edge.models import bundled_models_dir

    def absolute(value: object) -> list[str]:
        if isinstance(value, str):
            return [value] if value.startswith("/") or value[1:3] in (":\\", ":/") else []
        items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
        return [path for item in items for path in absolute(item)]

    files = sorted(bundled_models_dir().rglob("*.onnx")) + sorted(bundled_models_dir().rglob("*.json"))
    assert any(path.suffix == ".onnx" for path in files)
    for path in files:
        if path.suffix == ".onnx":
            values = [json.loads(value) for value in read_metadata_props(path).values()]
        else:
            values = [json.loads(path.read_text())]
        assert absolute(values) == [], (path, absolute(values))
