"""Default-model candidates (training/candidates.py): figures, flip test and pairing from per-photo tables, the
speed-up read from a benchmark report, and the committed report recomputed from its committed tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cassava_edge_training.candidates import (FLIP_LOOK, candidate_name, report_from_tables, speedup,
                                              split_candidate, table_path)
from cassava_edge_training.card import candidate_rows, look_rows
from cassava_edge_training.oof import Scored, write_scored

EXPERIMENTS = Path(__file__).resolve().parents[1] / "training" / "experiments"
REPORTS = sorted(path for path in EXPERIMENTS.glob("*/report.json") if "candidates" in json.loads(path.read_text()))


def _write(folder: Path, name: str, predicted: list[int], after: list[int], labels: list[int]) -> None:
    keys = [("cassava", f"{i}.jpg") for i in range(len(labels))]
    for look, answers in ((None, predicted), (FLIP_LOOK, after)):
        write_scored(table_path(folder, name, look), Scored(keys, np.asarray(labels), np.eye(5)[answers] * 0.9 + 0.02))


def _benchmark(mean_ms: float, speedup_mean: float) -> dict:
    return {"configurations": [{
        "latency_s": {"mean": mean_ms / 1000, "p50": mean_ms / 1000}, "model": {"precision": "fp32"},
        "scan": "full", "tta": "seed", "per_photo": [{}] * 3,
        "keras": {"status": "ok", "speedup_mean": speedup_mean, "speedup_p50": speedup_mean - 1},
    }]}


def test_each_candidate_is_scored_flipped_and_paired_with_the_first(tmp_path: Path) -> None:
    labels = [0, 1, 2, 3, 4, 3, 3, 3]
    _write(tmp_path, "old", [0, 1, 2, 3, 3, 3, 3, 0], [0, 1, 4, 3, 3, 3, 3, 0], labels)  # 6 right, 1 flip
    _write(tmp_path, "new", [0, 1, 2, 3, 4, 3, 3, 3], [0, 1, 2, 3, 4, 4, 4, 3], labels)  # 8 right, 2 flips
    report = report_from_tables(tmp_path, ["old", "new"], {"new": _benchmark(175.0, 17.6)})
    assert report["figures"]["old"]["top1"] == pytest.approx(6 / 8)
    assert report["figures"]["new"]["top1"] == 1.0
    assert report["flip_test"]["old"]["flipped"] == 1 and report["flip_test"]["new"]["flipped"] == 2
    versus = report["versus_first"]["new"]
    assert versus["right"]["only_a"] == 2 and versus["right"]["only_b"] == 0
    assert versus["flipped"]["only_a"] == 2 and versus["flipped"]["only_b"] == 1
    assert "old" not in report["versus_first"] and "old" not in report["speed"]
    old_row, new_row = candidate_rows(report)
    assert old_row.startswith("| `old` | 8 | 75.0% ") and old_row.endswith("| — | not measured |")
    assert "+25.0 points" in new_row and new_row.endswith("175 ms (fp32 full x seed), **17.6×** (p50 16.6×) |")
    # Only the flip test's look was scored here: top-1 under it, and the answers it changed.
    assert report["looks"]["new"][FLIP_LOOK]["top1"] == pytest.approx(6 / 8)
    assert look_rows(report) == ["| `old` | 75.0% | 62.5%, 1/8 (12.5%) changed |",
                                 "| `new` | 100.0% | 75.0%, 2/8 (25.0%) changed |"]


def test_a_benchmark_without_the_reference_is_refused() -> None:
    benchmark = _benchmark(80.0, 1.0)
    del benchmark["configurations"][0]["keras"]
    with pytest.raises(ValueError, match="--compare-keras"):
        speedup(benchmark)


def test_a_candidate_may_name_a_tta_preset_and_is_timed_on_that_preset(tmp_path: Path) -> None:
    assert split_candidate("cassava-lite2-v3") == ("cassava-lite2-v3", None)
    assert split_candidate("models/x.onnx@flip") == ("models/x.onnx", "flip")
    assert candidate_name("models/x.onnx@flip") == "x@flip" and candidate_name("models/x.onnx") == "x"
    assert split_candidate("runs/a@b/x.onnx") == ("runs/a@b/x.onnx", None)  # an "@" in a folder's name
    with pytest.raises(ValueError, match="unknown TTA preset 'flips'"):
        split_candidate("x@flips")
    benchmark = _benchmark(50.0, 40.0)
    none = {**benchmark["configurations"][0], "tta": "none"}
    flip = {**none, "tta": "flip", "latency_s": {"mean": 0.1, "p50": 0.1},
            "keras": {"status": "ok", "speedup_mean": 20.0, "speedup_p50": 19.0}}
    benchmark["configurations"] = [none, flip]
    assert speedup(benchmark)["plan"] == "fp32 full x none"  # the model's own plan: the first configuration
    assert speedup(benchmark, "flip")["speedup_mean"] == 20.0
    with pytest.raises(ValueError, match="no configuration with tta seed"):
        speedup(benchmark, "seed")
    labels = [0, 1, 2, 3]
    _write(tmp_path, "x", [0, 1, 2, 3], [0, 1, 2, 3], labels)
    _write(tmp_path, "x@flip", [0, 1, 2, 2], [0, 1, 2, 2], labels)
    report = report_from_tables(tmp_path, ["x", "x@flip"], {"x": benchmark, "x@flip": benchmark})
    assert report["speed"]["x"]["speedup_mean"] == 40.0 and report["speed"]["x@flip"]["speedup_mean"] == 20.0
    assert report["versus_first"]["x@flip"]["right"]["only_b"] == 1


@pytest.mark.parametrize("report_path", REPORTS, ids=lambda p: p.parent.name)
def test_a_committed_candidates_report_follows_from_its_tables(report_path: Path) -> None:
    """The card's candidate figures come from the committed per-photo probabilities (no model needed)."""
    report = json.loads(report_path.read_text())
    again = report_from_tables(report_path.parent, report["candidates"])
    for name in report["candidates"]:
        assert again["figures"][name]["top1"] == pytest.approx(report["figures"][name]["top1"])
        assert again["figures"][name]["macro_recall"] == pytest.approx(report["figures"][name]["macro_recall"])
        assert again["flip_test"][name]["flipped"] == report["flip_test"][name]["flipped"]
    for name, versus in report["versus_first"].items():
        assert again["versus_first"][name]["right"] == versus["right"]


def test_reuse_tables_scores_only_the_candidates_without_tables_for_these_photos(tmp_path: Path, monkeypatch) -> None:
    from cassava_edge_training import candidates

    photos = tmp_path / "photos"
    (photos / "train_images").mkdir(parents=True)
    (photos / "train.csv").write_text("image_id,label\na.jpg,0\nb.jpg,3\n")
    for name in ("a.jpg", "b.jpg"):
        (photos / "train_images" / name).write_bytes(b"")  # never decoded: scoring is replaced below
    scored_names: list[str] = []

    def fake_score(model: str, chosen: list, tta: str | None = None) -> dict:
        scored_names.append(model if tta is None else f"{model}@{tta}")
        keys = [(folder, image_id) for folder, image_id, _, _ in chosen]
        labels = np.asarray([label for _, _, label, _ in chosen])
        table = Scored(keys, labels, np.eye(5)[labels] * 0.9 + 0.02)
        return {look: table for look in (None, *candidates.looks())}

    monkeypatch.setattr(candidates, "score_candidate", fake_score)
    output = tmp_path / "out"
    candidates.run(["old", "new"], [str(photos)], {}, output)
    assert scored_names == ["old", "new"]
    candidates.run(["old", "new", "newer"], [str(photos)], {}, output, reuse_tables=True)
    assert scored_names[2:] == ["newer"]  # the others' tables cover exactly these photos
    (photos / "train.csv").write_text("image_id,label\na.jpg,0\n")  # other photos: every table is stale
    report = candidates.run(["old", "new"], [str(photos)], {}, output, reuse_tables=True)
    assert scored_names[3:] == ["old", "new"]
    assert report["figures"]["old"]["photos"] == 1
    candidates.run(["old", "old@flip"], [str(photos)], {}, output, reuse_tables=True)
    assert scored_names[5:] == ["old@flip"] and table_path(output, "old@flip").is_file()
