"""benchmarks/compare_models.py: two models' default plans timed side by side, on a tiny model."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
from click.testing import CliRunner

from cassava_edge_benchmarks.compare_models import main
from tests import tinymodel


def test_two_models_are_timed_on_the_same_photos(tiny_model: Path, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for index in range(3):
        cv2.imwrite(str(photos / f"{index}.png"), tinymodel.quadrant_image(32))
    result = CliRunner().invoke(main, [str(tiny_model), str(tiny_model), "--photos", str(photos), "--count", "2",
                                       "--warmup", "1"])
    assert result.exit_code == 0, result.output
    assert len(re.findall(r"median [\d.]+ ms per photo", result.output)) == 2
    assert re.search(r"NEW / OLD median latency: [\d.]+x over 2 photos", result.output)
