"""What `cassava-edge classify` and `evaluate` print besides the results (issue 19, conventions): the speed line,
--quiet and --verbose, full disease names in the table, and output folders."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner, Result

from cassava_edge import Classifier
from cassava_edge.cli import cli
from cassava_edge.commands import common

# "Speed: 3.1 ms decode, 18.0 ms preprocess, 75.2 ms inference, 0.4 ms postprocess per photo"
SPEED = re.compile(
    r"^Speed: (\d+\.\d) ms decode, (\d+\.\d) ms preprocess, (\d+\.\d) ms inference, (\d+\.\d) ms postprocess "
    r"per photo$"
)
SUMMARY = re.compile(r"^\d+ photos?: .+ in \d+\.\d s")


def _run(*args: object) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """Three random 48x40 photos (the tiny model calls each one ok) and a broken one."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for seed in range(3):
        bgr = np.random.default_rng(seed).integers(0, 256, (40, 48, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"p{seed}.png"), bgr)
    return folder


@pytest.fixture
def broken(photos: Path) -> Path:
    (photos / "broken.jpg").write_text("not a photo")
    return photos


# -- speed -----------------------------------------------------------------------------------------------------


def test_results_carry_their_stage_times(tiny_model: Path, broken: Path) -> None:
    from cassava_edge.results import SPEED_STAGES

    classifier = Classifier(tiny_model, provider="cpu")
    one = classifier.classify(broken / "p0.png")
    assert one.speed is not None and tuple(one.speed) == SPEED_STAGES and min(one.speed.values()) >= 0
    many = list(classifier.classify_many(sorted(broken.iterdir()), workers=0))
    assert [r.speed is None for r in many] == [True, False, False, False]  # broken.jpg sorts first
    assert all(r.speed is not None and r.speed["inference"] > 0 for r in many[1:])


def test_classify_prints_a_speed_line_before_the_summary_on_stderr(tiny_model: Path, photos: Path) -> None:
    result = _run("classify", photos, "--model", tiny_model, "--format", "jsonl")
    assert result.exit_code == 0, result.stderr
    *_, speed, summary = result.stderr.strip().splitlines()
    assert SPEED.match(speed), result.stderr
    assert SUMMARY.match(summary), result.stderr
    assert "Speed" not in result.stdout and len(result.stdout.splitlines()) == 3


# -- --quiet and --verbose -------------------------------------------------------------------------------------


def test_quiet_prints_the_results_only(tiny_model: Path, photos: Path) -> None:
    loud = _run("classify", photos, "--model", tiny_model, "--format", "csv")
    quiet = _run("classify", photos, "--model", tiny_model, "--format", "csv", "--quiet")
    assert loud.exit_code == quiet.exit_code == 0
    assert "classifying" in loud.stderr  # progress count lines, as stderr is no terminal here
    assert quiet.stderr == ""
    assert quiet.stdout == loud.stdout


def test_quiet_still_shows_failures_and_errors(tiny_model: Path, broken: Path) -> None:
    failed = _run("classify", broken, "--model", tiny_model, "-q")
    assert failed.exit_code == 1
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"failed: {broken / 'broken.jpg'}: "), failed.stderr
    usage = _run("classify", broken / "absent.jpg", "--model", tiny_model, "-q")
    assert usage.exit_code == 2 and usage.stderr.startswith("Error:")


def test_verbose_shows_the_session_and_each_photos_times(tiny_model: Path, photos: Path) -> None:
    result = _run("classify", photos, "--model", tiny_model, "--provider", "cpu", "--verbose", "--format", "jsonl")
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"model {tiny_model} (fp32), provider CPUExecutionProvider, tta flip")
    timed = [line for line in lines if line.startswith(str(photos))]
    assert len(timed) == 3
    assert all(re.search(r": ok \w+, \d+\.\d ms decode, .* ms postprocess$", line) for line in timed), timed


def test_quiet_and_verbose_together_are_refused(tiny_model: Path, photos: Path) -> None:
    result = _run("classify", photos, "--model", tiny_model, "-q", "-v")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == ["Error: --quiet and --verbose cannot be used together"]


# -- full disease names ----------------------------------------------------------------------------------------


def test_table_names_each_diagnosis_as_the_model_metadata_does(tmp_path: Path, photos: Path) -> None:
    from tests import tinymodel

    # Names no code could hard-code: the table must read them from the model.
    names = ("Blight of test A", "Streak of test B", "Mottle of test C", "Mosaic of test D", "Healthy test leaf")
    metadata = dataclasses.replace(tinymodel.metadata_for(32), label_names=names)
    model = tinymodel.write_model(tmp_path / "named.onnx", metadata=metadata)
    result = _run("classify", photos, "--model", model, "--provider", "cpu")
    assert result.exit_code == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert "disease" in header.split()
    disease, source = header.index("disease"), header.index("source")
    expected = {r.source: r.label for r in Classifier(model, provider="cpu").classify_many(sorted(photos.iterdir()))}
    assert len(rows) == 3
    for row in rows:
        label = expected[row[source:]]
        assert label is not None
        assert row[disease:source].strip() == names[metadata.labels.index(label)]


# -- output folders --------------------------------------------------------------------------------------------


def test_output_into_a_missing_folder_creates_it(tiny_model: Path, photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "results" / "today" / "run.jsonl"
    result = _run("classify", photos, "--model", tiny_model, "--format", "jsonl", "-o", out)
    assert result.exit_code == 0, result.stderr
    assert len(out.read_text().splitlines()) == 3
    help_text = " ".join(_run("classify", "--help").stdout.split())
    assert "creating its missing folders" in help_text


def test_output_under_a_file_is_refused(tiny_model: Path, photos: Path, tmp_path: Path) -> None:
    (tmp_path / "notes").write_text("a file, not a folder")
    result = _run("classify", photos, "--model", tiny_model, "-o", tmp_path / "notes" / "run.csv")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"Error: --output {tmp_path / 'notes' / 'run.csv'}: cannot write there: {tmp_path / 'notes'} is not a folder"
    ]


@pytest.mark.parametrize("path", ["/proc/x.csv", "/proc/no/such/x.csv"])
def test_output_where_no_file_can_be_made_is_refused_before_the_model_loads(
    photos: Path, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    loaded: list[object] = []
    monkeypatch.setattr(common, "Classifier", lambda **kwargs: loaded.append(kwargs))
    result = _run("classify", photos, "-o", path)
    assert result.exit_code == 2 and loaded == []
    assert result.stderr.strip().splitlines() == [
        f"Error: --output {path}: cannot write there: /proc takes no new files"
    ]


# -- evaluate: the same conventions ------------------------------------------------------------------------------


@pytest.fixture
def labelled(photos: Path) -> Path:
    """A labels.csv + images/ folder of the three photos."""
    images = photos.parent / "labelled" / "images"
    images.mkdir(parents=True)
    for photo in sorted(photos.iterdir()):
        (images / photo.name).write_bytes(photo.read_bytes())
    (images.parent / "labels.csv").write_text("image_id,label\np0.png,0\np1.png,3\np2.png,4\n")
    return images.parent


def test_evaluate_prints_the_speed_line_and_quiet_leaves_the_report_only(tiny_model: Path, labelled: Path) -> None:
    loud = _run("evaluate", labelled, "--model", tiny_model, "--tta", "none")
    quiet = _run("evaluate", labelled, "--model", tiny_model, "--tta", "none", "--quiet")
    assert loud.exit_code == quiet.exit_code == 0, loud.stderr
    *_, speed, summary = loud.stderr.strip().splitlines()
    assert SPEED.match(speed) and SUMMARY.match(summary), loud.stderr
    assert quiet.stderr == ""
    assert quiet.stdout == loud.stdout and "accuracy" in quiet.stdout


def test_evaluate_verbose_shows_the_session_and_each_photos_times(tiny_model: Path, labelled: Path) -> None:
    result = _run("evaluate", labelled, "--model", tiny_model, "--provider", "cpu", "--tta", "none", "-v")
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"model {tiny_model} (fp32), provider CPUExecutionProvider, tta none")
    timed = [line for line in lines if line.startswith(str(labelled / "images"))]
    assert len(timed) == 3 and all(re.search(r": ok, \d+\.\d ms decode, ", line) for line in timed), timed
    refused = _run("evaluate", labelled, "--model", tiny_model, "-q", "-v")
    assert refused.exit_code == 2
    assert refused.stderr.strip().splitlines() == ["Error: --quiet and --verbose cannot be used together"]


def test_evaluate_writes_its_report_into_missing_folders(tiny_model: Path, labelled: Path, tmp_path: Path) -> None:
    import json

    report = tmp_path / "reports" / "today" / "eval.json"
    heatmap = tmp_path / "charts" / "confusion.png"
    result = _run("evaluate", labelled, "--model", tiny_model, "--tta", "none", "--json", report,
                  "--heatmap", heatmap, "-q")
    assert result.exit_code == 0, result.stderr
    assert json.loads(report.read_text())["count"] == 3
    assert cv2.imread(str(heatmap)) is not None
