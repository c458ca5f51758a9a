"""Result rows (Parquet, Ray) and resuming from an earlier run's JSON lines."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest

from cassava_edge import Classifier
from cassava_edge.errors import SourceError
from cassava_edge.rows import (
    ParquetWriter,
    classification_from_row,
    done_sources,
    not_done,
    result_row,
    resume_from,
)


def _results(tiny_model: Path, tmp_path: Path) -> list:  # type: ignore[type-arg]
    classifier = Classifier(tiny_model, provider="cpu", tta="flip")
    rng = np.random.default_rng(0)
    photos = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(3)]
    return list(classifier.classify_many([photos[0], tmp_path / "absent.jpg", *photos[1:]]))


def test_a_row_round_trips_to_the_same_classification(tiny_model: Path, tmp_path: Path) -> None:
    for result in _results(tiny_model, tmp_path):
        back = classification_from_row(result_row(result), top_k=len(result.top_k) or 3)
        assert back.to_dict() == result.to_dict()
        assert back.speed == (result.speed if result.ok else None)


def test_parquet_rows_have_one_schema_for_ok_and_failed(tiny_model: Path, tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow is not installed")
    results = _results(tiny_model, tmp_path)
    buffer = io.BytesIO()
    writer = ParquetWriter(buffer, tuple(results[0].probabilities), top_k=3)  # type: ignore[arg-type]
    writer.start()
    for result in results:
        writer.write(result)
    writer.finish()
    rows = pq.read_table(io.BytesIO(buffer.getvalue())).to_pylist()
    assert rows == [result_row(result) for result in results]
    assert rows[1]["status"] == "failed" and rows[1]["probabilities"] is None and rows[1]["error"] == "no such file"
    assert rows[1]["speed"] is None and rows[0]["speed"] == results[0].speed and rows[0]["speed"]["inference"] > 0


def test_done_sources_skips_what_an_earlier_run_wrote(tmp_path: Path) -> None:
    earlier = tmp_path / "results.jsonl"
    earlier.write_text('{"source": "a.jpg", "status": "ok"}\n\n{"source": "b.jpg", "status": "failed"}\n{"sour')
    done = done_sources(earlier)
    photos = [Path("a.jpg"), Path("b.jpg"), Path("c.jpg"), Path("a.jpg").absolute()]
    assert not_done(photos, done) == [Path("c.jpg")]
    earlier.write_text('{"source": "a.jpg"}\nnot json\n{"source": "b.jpg"}\n')
    with pytest.raises(SourceError, match="line 2"):
        done_sources(earlier)
    with pytest.raises(SourceError, match="no such file"):
        done_sources(tmp_path / "absent.jsonl")


def test_resume_from_makes_the_file_ready_to_append(tmp_path: Path) -> None:
    cut = tmp_path / "cut.jsonl"
    cut.write_text('{"source": "a.jpg"}\n{"source": "b.j')
    assert resume_from(cut) == {"a.jpg", str(Path("a.jpg").absolute())}
    assert cut.read_text() == '{"source": "a.jpg"}\n'
    unterminated = tmp_path / "unterminated.jsonl"
    unterminated.write_text('{"source": "a.jpg"}')
    resume_from(unterminated)
    assert unterminated.read_text() == '{"source": "a.jpg"}\n'


def test_the_ray_batch_callable_classifies_paths_or_bytes_without_ray(tiny_model: Path, tmp_path: Path) -> None:
    pytest.importorskip("pyarrow", reason="pyarrow is not installed")
    from cassava_edge.ray import ClassifyBatch

    good = tmp_path / "good.png"
    good.write_bytes(cv2.imencode(".png", np.full((32, 32, 3), 90, np.uint8))[1].tobytes())
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a photo")
    paths = np.array([str(good), str(bad)], dtype=object)
    classify = ClassifyBatch({"model": tiny_model, "provider": "cpu"}, workers=0)
    from_paths = classify({"path": paths}).to_pylist()
    from_bytes = classify({"path": paths, "bytes": np.array([good.read_bytes(), bad.read_bytes()], dtype=object)})
    def untimed(rows: list[dict]) -> list[dict]:  # type: ignore[type-arg]
        return [{k: v for k, v in row.items() if k != "speed"} for row in rows]  # times differ per call

    assert untimed(from_bytes.to_pylist()) == untimed(from_paths)
    # named by their paths, not "<bytes>"; the photo that loaded carries its stage times, the broken one none
    assert from_paths[0]["speed"]["inference"] > 0 and from_paths[1]["speed"] is None
    assert [row["status"] for row in from_paths] == ["ok", "failed"] and from_paths[0]["source"] == str(good)


def test_resume_matches_the_real_path_whatever_the_spelling(tmp_path: Path, monkeypatch) -> None:
    import json as json_module
    import os

    from cassava_edge.rows import done_sources, not_done

    photos = tmp_path / "photos"
    photos.mkdir()
    leaf = photos / "leaf.jpg"
    leaf.write_bytes(b"x")
    link = tmp_path / "linked"
    link.symlink_to(photos)
    results = tmp_path / "run.jsonl"
    monkeypatch.chdir(tmp_path)
    results.write_text(json_module.dumps({"source": "photos/leaf.jpg"}) + "\n")
    done = done_sources(results)
    spellings = [Path("photos/leaf.jpg"), leaf.absolute(), link / "leaf.jpg", Path("./photos/../photos/leaf.jpg")]
    assert not_done(spellings, done) == []
    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.chdir(other)
    assert not_done([Path("../photos/leaf.jpg"), Path(os.path.realpath(leaf))], done) == []
