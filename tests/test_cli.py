from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pytest
from click.testing import CliRunner, Result

from cassava_edge import Classifier, __version__
from cassava_edge.cli import cli
from cassava_edge.metadata import CASSAVA_LABELS
from cassava_edge.sources import find_images

REPO_ROOT = Path(__file__).resolve().parents[1]


def _write_photo(path: Path, seed: int, size: tuple[int, int] = (48, 40)) -> Path:
    bgr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(path.suffix, bgr)
    assert ok
    path.write_bytes(data.tobytes())
    return path


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """good: a.jpg, b.PNG, nested/c.jpeg; plus notes.txt, which folder scans must skip."""
    folder = tmp_path / "photos"
    _write_photo(folder / "a.jpg", 1)
    _write_photo(folder / "b.PNG", 2)
    _write_photo(folder / "nested" / "c.jpeg", 3)
    (folder / "notes.txt").write_text("not a photo")
    return folder


@pytest.fixture
def with_bad(photos: Path) -> Path:
    (photos / "broken.jpg").write_text("this is text, not a JPEG")
    return photos


def _run(*args: str) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def _expected(model: Path, paths: list[Path]) -> dict[str, dict[str, float]]:
    classifier = Classifier(model, provider="cpu")
    return {str(p): classifier.classify(p).probabilities for p in paths}


def test_table(tiny_model: Path, photos: Path) -> None:
    result = _run("classify", photos, "--model", tiny_model, "--provider", "cpu")
    assert result.exit_code == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split()[:3] == ["label", "confidence", "top-k"]
    source_column = header.index("source")
    sources = [row[source_column:] for row in rows]
    expected_paths = [photos / "a.jpg", photos / "b.PNG", photos / "nested" / "c.jpeg"]
    assert sources == [str(p) for p in expected_paths]
    expected = _expected(tiny_model, expected_paths)
    for row, source in zip(rows, sources):
        label, confidence = row.split()[:2]
        assert label == max(expected[source], key=expected[source].get)
        assert float(confidence) == pytest.approx(max(expected[source].values()), abs=5e-4)
        assert row.count(", ") == 2  # top 3


def test_json_with_views(tiny_model: Path, photos: Path) -> None:
    result = _run(
        "classify", photos, "--model", tiny_model, "--provider", "cpu", "--format", "json", "--views", "--tta", "d4"
    )
    assert result.exit_code == 0, result.stderr
    records = json.loads(result.stdout)
    assert [Path(r["source"]).name for r in records] == ["a.jpg", "b.PNG", "c.jpeg"]
    for record in records:
        assert record["ok"] and list(record["probabilities"]) == list(CASSAVA_LABELS)
        assert len(record["views"]) % 8 == 0 and record["views"][1]["view"] == "rot90"


def test_jsonl_and_csv_match_the_api(tiny_model: Path, photos: Path) -> None:
    paths = [photos / "a.jpg", photos / "b.PNG", photos / "nested" / "c.jpeg"]
    expected = _expected(tiny_model, paths)
    jsonl = _run("classify", *paths, "--model", tiny_model, "--provider", "cpu", "--format", "jsonl", "--top-k", "2")
    assert jsonl.exit_code == 0, jsonl.stderr
    records = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert [r["source"] for r in records] == [str(p) for p in paths]
    for record in records:
        assert record["probabilities"] == pytest.approx(expected[record["source"]], abs=1e-9)
        assert len(record["top_k"]) == 2 and "views" not in record
    table = _run("classify", *paths, "--model", tiny_model, "--provider", "cpu", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(table.stdout)))
    assert [row["source"] for row in rows] == [str(p) for p in paths]
    for row in rows:
        assert row["ok"] == "True" and row["error"] == ""
        probabilities = {label: float(row[label]) for label in CASSAVA_LABELS}
        assert probabilities == pytest.approx(expected[row["source"]], abs=1e-6)


def test_bad_file_exits_1_and_keeps_the_others(tiny_model: Path, with_bad: Path) -> None:
    result = _run("classify", with_bad, "--model", tiny_model, "--provider", "cpu", "--format", "jsonl")
    assert result.exit_code == 1
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(r["source"]).name for r in records if r["ok"]] == ["a.jpg", "b.PNG", "c.jpeg"]
    assert f"failed: {with_bad / 'broken.jpg'}: not an image" in result.stderr
    assert "1 of 4 files failed" in result.stderr and "Traceback" not in result.stderr
    table = _run("classify", with_bad, "--model", tiny_model, "--provider", "cpu")
    assert table.exit_code == 1 and "broken.jpg" not in table.stdout and len(table.stdout.splitlines()) == 4


def test_output_file_is_written_as_results_arrive(
    tiny_model: Path, photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "results.jsonl"
    lines_seen: list[int] = []
    original = Classifier.classify_many

    def watching(self: Classifier, *args, **kwargs) -> Iterator:  # type: ignore[no-untyped-def]
        for result in original(self, *args, **kwargs):
            lines_seen.append(len(out.read_text().splitlines()))  # before this result is written
            yield result

    monkeypatch.setattr(Classifier, "classify_many", watching)
    result = _run("classify", photos, "--model", tiny_model, "--provider", "cpu", "--format", "jsonl", "--output", out)
    assert result.exit_code == 0 and result.stdout == ""
    assert lines_seen == [0, 1, 2]
    assert len(out.read_text().splitlines()) == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["classify", "{tmp}/absent.jpg"], "no such file or directory"),
        (["classify", "{tmp}/empty"], "no images found"),
        (["classify", "{tmp}/nothing*.jpg"], "no files match"),
        (["classify", "{photos}", "--tta", "mixup"], "Invalid value for '--tta'"),
        (["classify", "{photos}", "--model", "{tmp}/model.txt"], "not an ONNX model"),
        (["classify", "{photos}", "--model", "{tmp}/junk.onnx"], "junk.onnx: not an ONNX model"),
        (["classify", "{photos}", "--provider", "cuda"], "install onnxruntime-gpu"),
        (["classify"], "Missing argument"),
    ],
)
def test_usage_errors_exit_2(
    tiny_model: Path, photos: Path, tmp_path: Path, cpu_only: None, args: list[str], message: str
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "model.txt").write_text("x")
    (tmp_path / "junk.onnx").write_text("x")
    filled = [a.format(tmp=tmp_path, photos=photos) for a in args]
    if "--model" not in filled:
        filled += ["--model", str(tiny_model)]
    result = _run(*filled)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.stderr


def test_globs_are_expanded_here(tiny_model: Path, photos: Path) -> None:
    assert [p.name for p in find_images([str(photos / "*.jpg")])] == ["a.jpg"]
    assert [p.name for p in find_images([str(photos / "**" / "*.jp*g")])] == ["a.jpg", "c.jpeg"]
    # Folders: recursive, case-insensitive extensions, non-images skipped; duplicates dropped.
    assert [p.name for p in find_images([str(photos), str(photos / "a.jpg")])] == ["a.jpg", "b.PNG", "c.jpeg"]
    result = _run("classify", photos / "*.PNG", "--model", tiny_model, "--provider", "cpu", "--format", "jsonl")
    assert result.exit_code == 0 and len(result.stdout.splitlines()) == 1


def test_info_text_and_json(tiny_model: Path) -> None:
    text = _run("info", "--model", tiny_model, "--provider", "cpu")
    assert text.exit_code == 0, text.stderr
    assert "CMD (Cassava Mosaic Disease)" in text.stdout and "[batch, 32, 32, 3]" in text.stdout
    assert "loaded CPUExecutionProvider" in text.stdout and "shorter side 32 px" in text.stdout
    data = json.loads(_run("info", "--model", tiny_model, "--provider", "cpu", "--format", "json").stdout)
    assert data["metadata"]["input"]["height"] == 32 and data["versions"]["cassava_edge"] == __version__


def test_version() -> None:
    result = _run("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"cassava-edge {__version__}"


def _python(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=120)


def test_module_entry_point_in_a_subprocess(tiny_model: Path, with_bad: Path) -> None:
    run = _python("-m", "cassava_edge", "classify", str(with_bad), "--model", str(tiny_model), "--format", "csv")
    assert run.returncode == 1, run.stderr
    rows = list(csv.DictReader(io.StringIO(run.stdout)))
    assert sorted(Path(r["source"]).name for r in rows if r["ok"] == "True") == ["a.jpg", "b.PNG", "c.jpeg"]
    assert "broken.jpg" in run.stderr and "Traceback" not in run.stderr
    missing = _python("-m", "cassava_edge.cli", "classify", str(with_bad / "absent.jpg"), "--model", str(tiny_model))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().splitlines()[-1] == f"Error: no such file or directory: {with_bad / 'absent.jpg'}"


def test_runtime_never_imports_tensorflow() -> None:
    run = _python("-c", "import cassava_edge.cli, sys; assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    assert run.returncode == 0, run.stderr


def test_metadata_module_needs_no_onnxruntime() -> None:
    """export/ and training/ import cassava_edge.metadata; onnxruntime is an optional extra for them."""
    run = _python("-c", "import cassava_edge.metadata, sys; assert 'onnxruntime' not in sys.modules")
    assert run.returncode == 0, run.stderr
