"""`cassava-edge benchmark-bulk` runs its engines side by side and checks they agree (Ray engines left out here:
tests/test_ray.py covers Ray)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from cassava_edge.cli import cli
from tests.photofolder import write_photo_folder


def test_benchmark_bulk_reports_each_engine_and_their_agreement(tiny_model: Path, tmp_path: Path) -> None:
    photos = write_photo_folder(tmp_path / "photos", 6, 40, 48, ".png")
    report_path = tmp_path / "bulk.json"
    result = CliRunner().invoke(cli, [
        "benchmark-bulk", str(photos), "--model", str(tiny_model), "--count", "7", "--rounds", "2", "--workers", "2",
        "--ray-actors", "", "--json", str(report_path),
    ], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text())
    rows = {row["engine"]: row for row in report["rows"]}
    assert list(rows) == ["local, workers 0", "local, pipelined (2 workers)"]
    for row in rows.values():
        assert len(row["photos_per_s_rounds"]) == 2 and row["failed"] == 1
        assert row["same_statuses_and_labels"] and row["max_probability_difference"] == 0.0
    assert rows["local, workers 0"]["ratio_to_workers_0"] == 1.0
    assert "local, pipelined (2 workers)" in result.stdout and report["machine"]["logical_cores"] >= 1
