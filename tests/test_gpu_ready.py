"""The CUDA code paths, exercised on CPU: IO binding, and the GPU throughput script as a dry run."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from click.testing import CliRunner

from cassava_edge_benchmarks import gpu_throughput
from cassava_edge.session import OnnxSession
from tests import tinymodel


def test_io_binding_gives_what_a_plain_run_gives(tmp_path: Path) -> None:
    model = tinymodel.write_trust_model(tmp_path / "trust.onnx")  # two outputs: probabilities and not-cassava logit
    plain = OnnxSession(model, provider="cpu", chunk_size=3)
    bound = OnnxSession(model, provider="cpu", chunk_size=3, io_binding=True)
    assert (plain.io_binding, bound.io_binding) == (False, True)  # on by default only on CUDA
    views = np.random.default_rng(0).uniform(0, 255, (7, 32, 32, 3)).astype(np.float32)
    probs, logits = plain.run_all(views)
    bound_probs, bound_logits = bound.run_all(views)
    assert logits is not None and bound_logits is not None
    np.testing.assert_array_equal(bound_probs, probs)
    np.testing.assert_array_equal(bound_logits, logits)


def test_gpu_throughput_script_dry_run_on_cpu(tmp_path: Path) -> None:
    models = tmp_path / "models"
    for precision in ("fp32", "fp16"):  # the same graph labelled as both variants: the script's loop is the point
        meta = tinymodel.metadata_for(64, short_side=75, precision=precision)
        tinymodel.write_model(models / f"tiny.{precision}.onnx", size=64, metadata=meta)
    photos = tmp_path / "photos"
    photos.mkdir()
    for index in range(3):
        bgr = np.random.default_rng(index).integers(0, 256, (60, 80, 3), dtype=np.uint8)
        cv2.imwrite(str(photos / f"p{index}.png"), bgr)
    report_path = tmp_path / "report.json"
    result = CliRunner().invoke(gpu_throughput.main, [
        "--provider", "cpu", "--photos", "2", "--photos-dir", str(photos), "--batch-sizes", "8,16",
        "--model", str(models), "--json", str(report_path),
    ], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = json.loads(report_path.read_text())["rows"]
    assert [(r["plan"], r["variant"], r["batch_size"]) for r in rows] == [
        (plan, variant, size) for plan in ("default", "16 views") for variant in ("fp16", "fp32") for size in (8, 16)
    ]
    # The tiny model's own plan (grid x flip: 4 crops x 2 views on 100x75), and corners x seed (4 x 4).
    assert {r["plan"]: r["views_per_photo"] for r in rows} == {"default": 8, "16 views": 16}
    assert all(r["photos"] == 2 and r["failed"] == 0 and r["end_to_end_photos_per_s"] > 0 for r in rows)
    assert len(result.output.splitlines()) == 1 + len(rows)
