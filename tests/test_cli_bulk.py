"""`cassava-edge classify` for bulk runs: --workers, --format parquet, --resume and the one-line usage errors."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner, Result

from cassava_edge.cli import cli


def _run(*args: object) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Five photos and a broken one."""
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(5):
        ok, data = cv2.imencode(".png", rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))
        (folder / f"p{index}.png").write_bytes(data.tobytes())
    (folder / "broken.jpg").write_text("not a photo")
    return folder


def _jsonl(path: Path) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_workers_do_not_change_the_results(tiny_model: Path, folder: Path, tmp_path: Path) -> None:
    outputs = []
    for workers in ("0", "3"):
        out = tmp_path / f"w{workers}.jsonl"
        result = _run("classify", folder, "--model", tiny_model, "--format", "jsonl", "-o", out, "--workers", workers)
        assert result.exit_code == 1, result.stderr  # the broken photo
        assert "6 photos: 5 ok, 1 failed" in result.stderr.splitlines()[-1]
        outputs.append(_jsonl(out))
    assert outputs[0] == outputs[1] and len(outputs[0]) == 6


def test_parquet_has_a_row_per_photo(tiny_model: Path, folder: Path, tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow is not installed")
    out = tmp_path / "results.parquet"
    result = _run("classify", folder, "--model", tiny_model, "--format", "parquet", "-o", out)
    assert result.exit_code == 1, result.stderr
    rows = pq.read_table(out).to_pylist()
    assert [Path(row["source"]).name for row in rows] == ["broken.jpg", *(f"p{i}.png" for i in range(5))]
    assert [row["status"] for row in rows] == ["failed"] + ["ok"] * 5
    assert abs(sum(rows[1]["probabilities"].values()) - 1) < 1e-6 and rows[0]["error"]


def test_resume_skips_what_is_done_and_appends(tiny_model: Path, folder: Path, tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    first = _run("classify", folder / "p0.png", folder / "p1.png", "--model", tiny_model, "--resume", results)
    assert first.exit_code == 0, first.stderr
    assert len(_jsonl(results)) == 2
    with open(results, "a") as handle:
        handle.write('{"source": "' + str(folder / "p2.png"))  # the line being written when the run was stopped
    second = _run("classify", folder, "--model", tiny_model, "--resume", results)
    assert second.exit_code == 1, second.stderr
    assert "2 of 6 photos already done" in second.stderr
    assert "4 photos: 3 ok, 1 failed" in second.stderr.splitlines()[-1]
    rows = _jsonl(results)  # the cut-off line is gone, every line is a result
    assert sorted(Path(row["source"]).name for row in rows) == sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize(
    "args, message",
    [
        (["--ray-address", "127.0.0.1:9"], "--ray-address needs --engine ray"),
        (["--actors", "2"], "--actors needs --engine ray"),
        (["--resume", "r.jsonl", "--format", "csv"], "cannot be used with --format csv"),
        (["--format", "parquet"], "--format parquet needs --output FILE"),
    ],
)
def test_bulk_usage_errors_are_one_line(tiny_model: Path, folder: Path, args: list[str], message: str) -> None:
    result = _run("classify", folder, "--model", tiny_model, *args)
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("Error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_folder_is_one_line(tiny_model: Path, tmp_path: Path) -> None:
    result = _run("classify", tmp_path / "absent", "--model", tiny_model, "--workers", "2")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"Error: no such file or directory: {tmp_path / 'absent'}"


def test_unreachable_ray_cluster_is_one_line(tiny_model: Path, folder: Path) -> None:
    pytest.importorskip("ray.data", reason="ray[data] is not installed")
    result = _run("classify", folder, "--model", tiny_model, "--engine", "ray", "--ray-address", "127.0.0.1:9")
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("Error: cannot reach the Ray cluster at 127.0.0.1:9")
    assert len(result.stderr.strip().splitlines()) == 1
