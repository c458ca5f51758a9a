"""`--resume` from another working folder, and with another spelling of the same photos, finds every photo done
(issue 19, item 2): the JSON lines carry each photo's resolved real path, written where the run was."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner, Result

from cassava_edge.cli import cli
from cassava_edge.rows import done_sources


def _run(*args: object) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def _photos(folder: Path, count: int, seed: int) -> list[Path]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        path = folder / f"p{index}.png"
        path.write_bytes(cv2.imencode(".png", rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))[1].tobytes())
        paths.append(path)
    return paths


def _sources(results: Path) -> list[str]:
    return [json.loads(line)["real_path"] for line in results.read_text().splitlines()]


def test_resume_from_another_folder_and_spelling_adds_no_duplicates(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos = _photos(tmp_path / "photos", 3, seed=0)
    (tmp_path / "a").mkdir()
    (tmp_path / "b" / "c").mkdir(parents=True)
    results = tmp_path / "run.jsonl"

    monkeypatch.chdir(tmp_path / "a")
    first = _run("classify", "../photos/p0.png", "../photos/p1.png", "--model", tiny_model, "--resume", results)
    assert first.exit_code == 0, first.stderr
    assert [json.loads(line)["source"] for line in results.read_text().splitlines()] == [
        "../photos/p0.png", "../photos/p1.png"  # the source stays as given; real_path is added beside it
    ]

    monkeypatch.chdir(tmp_path / "b" / "c")  # "../photos" names no photo from here
    again = _run("classify", "../../photos", "--model", tiny_model, "--resume", results)
    assert again.exit_code == 0, again.stderr
    assert "2 of 3 photos already done" in again.stderr

    monkeypatch.chdir(tmp_path)
    absolute = _run("classify", *(p.absolute() for p in photos), "--model", tiny_model, "--resume", results)
    assert absolute.exit_code == 0, absolute.stderr
    assert "3 of 3 photos already done" in absolute.stderr

    written = _sources(results)
    assert sorted(written) == sorted(os.path.realpath(p) for p in photos)  # 0 duplicates


def test_the_same_relative_spelling_elsewhere_is_another_photo(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _photos(tmp_path / "photos", 2, seed=0)
    _photos(tmp_path / "b" / "photos", 2, seed=1)  # same names, other photos
    (tmp_path / "a").mkdir()
    (tmp_path / "b" / "c").mkdir()
    results = tmp_path / "run.jsonl"
    monkeypatch.chdir(tmp_path / "a")
    assert _run("classify", "../photos", "--model", tiny_model, "--resume", results).exit_code == 0
    monkeypatch.chdir(tmp_path / "b" / "c")
    other = _run("classify", "../photos", "--model", tiny_model, "--resume", results)
    assert other.exit_code == 0, other.stderr
    assert "0 of 2 photos already done" in other.stderr
    assert len(set(_sources(results))) == 4


def test_lines_without_real_path_still_resume_from_the_folder_they_were_written_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    older = tmp_path / "older.jsonl"
    older.write_text(json.dumps({"source": "photos/p0.png"}) + "\n")
    monkeypatch.chdir(tmp_path)
    assert done_sources(older) == {"photos/p0.png", os.path.realpath("photos/p0.png")}
