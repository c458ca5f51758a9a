from __future__ import annotations

import csv
import io
import json
import os
import re
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
from cassava_edge.commands import common
from cassava_edge.commands.progress import Progress
from cassava_edge.errors import ImageError
from cassava_edge.metadata import CASSAVA_LABELS, Calibration, Trust
from cassava_edge.sources import find_images, find_sources
from tests import tinymodel

REPO_ROOT = Path(__file__).resolve().parents[1]
# "4 photos: 3 ok, 1 failed in 0.2 s (17.03 photos/s)"
SUMMARY = re.compile(r"^(\d+) photos?: (.+?) in \d+\.\d s(?: \((\d+\.\d\d) photos/s\))?$", re.MULTILINE)


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


@pytest.fixture
def labelled(tmp_path: Path) -> Path:
    """A Kaggle-layout folder: three photos and a broken one, all labelled."""
    root = tmp_path / "labelled"
    for i in range(3):
        _write_photo(root / "train_images" / f"p{i}.png", 10 + i, size=(32, 32))
    (root / "train_images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    rows = ["image_id,label", "p0.png,0", "p1.png,3", "p2.png,4", "broken.png,1"]
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    return root


def _run(*args: str, input: bytes | None = None) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)


def _expected(model: Path, paths: list[Path]) -> dict[str, dict[str, float]]:
    classifier = Classifier(model, provider="cpu")
    return {str(p): classifier.classify(p).probabilities for p in paths}


def _summary(stderr: str) -> tuple[int, str]:
    """(photos, "3 ok, 1 failed") from the closing summary line, which must be the last line of stderr."""
    match = SUMMARY.match(stderr.strip().splitlines()[-1])
    assert match, f"no summary line at the end of stderr:\n{stderr}"
    return int(match.group(1)), match.group(2)


# -- output formats ------------------------------------------------------------------------------------------------


def test_table(tiny_model: Path, photos: Path) -> None:
    result = _run("classify", photos, "--model", tiny_model, "--provider", "cpu")
    assert result.exit_code == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split()[:4] == ["status", "label", "confidence", "top-k"]
    source_column = header.index("source")
    sources = [row[source_column:] for row in rows]
    expected_paths = [photos / "a.jpg", photos / "b.PNG", photos / "nested" / "c.jpeg"]
    assert sources == [str(p) for p in expected_paths]
    expected = _expected(tiny_model, expected_paths)
    for row, source in zip(rows, sources):
        status, label, confidence = row.split()[:3]
        assert status == "ok"
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
        assert record["ok"] and record["status"] == "ok" and list(record["probabilities"]) == list(CASSAVA_LABELS)
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
        assert row["ok"] == "true" and row["status"] == "ok" and row["error"] == ""
        probabilities = {label: float(row[label]) for label in CASSAVA_LABELS}
        assert probabilities == pytest.approx(expected[row["source"]], abs=1e-6)


def test_bad_file_exits_1_and_keeps_the_others(tiny_model: Path, with_bad: Path) -> None:
    result = _run("classify", with_bad, "--model", tiny_model, "--provider", "cpu", "--format", "jsonl")
    assert result.exit_code == 1
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(r["source"]).name for r in records if r["ok"]] == ["a.jpg", "b.PNG", "c.jpeg"]
    assert [(r["status"], r["error"]) for r in records if not r["ok"]] == [
        ("failed", "not an image or an unsupported format")
    ]
    assert f"failed: {with_bad / 'broken.jpg'}: not an image" in result.stderr
    assert _summary(result.stderr) == (4, "3 ok, 1 failed") and "Traceback" not in result.stderr
    csv_rows = list(csv.DictReader(io.StringIO(
        _run("classify", with_bad, "--model", tiny_model, "--provider", "cpu", "--format", "csv").stdout
    )))
    assert [(Path(r["source"]).name, r["ok"], r["status"]) for r in csv_rows if r["ok"] == "false"] == [
        ("broken.jpg", "false", "failed")
    ]


def test_table_has_a_row_for_every_photo_failed_ones_with_the_reason(tiny_model: Path, with_bad: Path) -> None:
    table = _run("classify", with_bad, "--model", tiny_model, "--provider", "cpu")
    assert table.exit_code == 1
    header, *rows = table.stdout.splitlines()
    assert len(rows) == 4
    broken = [row for row in rows if row.endswith("broken.jpg")]
    assert len(broken) == 1 and broken[0].split()[:3] == ["failed", "-", "-"]
    assert "error: not an image or an unsupported format" in broken[0]
    # A run whose only photo fails still shows that photo, not a bare header.
    alone = _run("classify", with_bad / "broken.jpg", "--model", tiny_model, "--provider", "cpu")
    assert alone.exit_code == 1 and len(alone.stdout.splitlines()) == 2 and "broken.jpg" in alone.stdout


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


# -- summary and progress ------------------------------------------------------------------------------------------


def test_classify_and_evaluate_end_with_a_summary(tiny_model: Path, photos: Path, labelled: Path) -> None:
    classify = _run("classify", photos, "--model", tiny_model, "--provider", "cpu", "--format", "jsonl")
    assert classify.exit_code == 0 and _summary(classify.stderr) == (3, "3 ok, 0 failed")
    evaluate = _run("evaluate", labelled, "--model", tiny_model, "--provider", "cpu", "--tta", "none")
    assert evaluate.exit_code == 1 and _summary(evaluate.stderr) == (4, "3 ok, 1 failed")
    assert "failed: " in evaluate.stderr and "broken.png" in evaluate.stderr


def test_summary_counts_photos_by_status(tmp_path: Path, photos: Path) -> None:
    """A model whose minimum confidence no photo reaches: every classified photo is uncertain, without a label."""
    model = tmp_path / "strict.onnx"
    trust = Trust(min_confidence=0.999, min_short_side=1)
    tinymodel.write_model(model, metadata=tinymodel.metadata_for(32, trust=trust))
    result = _run("classify", photos, "--model", model, "--provider", "cpu", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    statuses = [row["status"] for row in rows]
    if statuses == ["ok"] * 3:
        pytest.skip("this runtime does not apply the model's trust settings yet (issue 10)")
    assert statuses == ["uncertain"] * 3 and all(row["label"] == "" for row in rows)
    assert result.exit_code == 0 and _summary(result.stderr) == (3, "0 ok, 3 uncertain, 0 failed")


def test_progress_lines_when_stderr_is_not_a_terminal(tiny_model: Path, photos: Path) -> None:
    result = _run("classify", photos, "--model", tiny_model, "--provider", "cpu", "--format", "jsonl")
    progress = [line for line in result.stderr.splitlines() if line.startswith("classifying")]
    assert [line.split(",")[0] for line in progress] == [
        "classifying: 1/3 (33%)", "classifying: 2/3 (67%)", "classifying: 3/3 (100%)"
    ]
    # No time left yet: an estimate needs RATE_WINDOW seconds of results (tests/test_small_things.py checks it).
    assert "elapsed" in progress[0] and "\r" not in result.stderr and "\x1b" not in result.stderr


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _screen(text: str) -> list[str]:
    """The lines a terminal shows for `text`: \\r returns to the line start, ESC[K erases to its end."""
    lines, line, column = [], "", 0
    for token in re.findall(r"\x1b\[K|\r|\n|[^\r\n\x1b]+", text.replace("\r\n", "\n")):
        if token == "\n":
            lines.append(line)
            line, column = "", 0
        elif token == "\r":
            column = 0
        elif token == "\x1b[K":
            line = line[:column]
        else:
            line = line[:column] + token + line[column + len(token):]
            column += len(token)
    return lines + ([line] if line else [])


def test_progress_is_erased_before_each_result_on_a_shared_terminal() -> None:
    terminal = _Terminal()
    with Progress(3, stream=terminal, results=terminal) as progress:
        for name in ("a.jpg", "b.jpg", "c.jpg"):
            progress.before_result()
            terminal.write(f"ok  CMD  {name}\n")
            progress.update(1)
        progress.echo("failed: d.jpg: not an image")
    screen = _screen(terminal.getvalue())
    assert screen == ["ok  CMD  a.jpg", "ok  CMD  b.jpg", "ok  CMD  c.jpg", "failed: d.jpg: not an image"]
    assert "classifying 2/3 (67%)" in terminal.getvalue()  # it was drawn in between


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal (POSIX)")
def test_progress_never_shares_a_line_with_results_in_a_real_terminal(tiny_model: Path, with_bad: Path) -> None:
    """The README's main command in a terminal: stdout and stderr on the same pseudo-terminal."""
    master, slave = os.openpty()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    process = subprocess.Popen(
        [sys.executable, "-m", "cassava_edge.cli", "classify", str(with_bad), "--model", str(tiny_model)],
        stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env, cwd=REPO_ROOT,
    )
    os.close(slave)
    output = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(master)
    assert process.wait(timeout=120) == 1
    text = output.decode()
    assert "classifying 1/4" in text  # the bar was drawn
    screen = [line for line in _screen(text) if line.strip()]
    rows = [line for line in screen if re.search(r"(a\.jpg|b\.PNG|c\.jpeg|broken\.jpg)$", line)]
    assert len(rows) == 4 and len([line for line in screen if line.startswith("failed: ")]) == 1
    assert not [line for line in screen if "classifying" in line], screen
    assert SUMMARY.match(screen[-1]) and "Traceback" not in text


# -- bad input -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["classify", "{tmp}/absent.jpg"], "no such file or directory"),
        (["classify", "{tmp}/empty"], "no photos found"),
        (["classify", "{tmp}/nothing*.jpg"], "no files match"),
        (["classify", "https://example.org/leaf.jpg"], "URLs are not fetched"),
        (["classify", "-", "-"], "standard input (-) can be read only once"),
        (["classify", "{photos}", "--tta", "mixup"], "Invalid value for '--tta'"),
        (["classify", "{photos}", "--model", "{tmp}/model.txt"], "not an ONNX model"),
        (["classify", "{photos}", "--model", "{tmp}/junk.onnx"], "junk.onnx: not an ONNX model"),
        (["classify", "{photos}", "--provider", "cuda"], "install onnxruntime-gpu"),
        (["classify", "{photos}", "--views"], "--views needs --format json or jsonl"),
        (["classify", "{photos}", "--views", "--format", "csv"], "--views needs --format json or jsonl"),
        (["classify", "{photos}", "--top-k", "0"], "Invalid value for '--top-k'"),
        (["classify", "{photos}", "--threads", "0"], "Invalid value for '--threads'"),
        # classify creates a missing output folder (tests/test_cli_output.py); a place that takes no files is refused.
        (["classify", "{photos}", "-o", "/proc/no/dir/out.csv"], "--output /proc/no/dir/out.csv: cannot write there"),
        (["classify", "{photos}", "-o", "/proc/x.csv"], "--output /proc/x.csv: cannot write there"),
        (["classify", "{photos}", "-o", "{tmp}"], "cannot write there: it is a folder"),
        (["classify"], "Missing argument"),
        (["info", "--model", "{tmp}/absent.onnx"], "absent.onnx"),
        (["info", "--format", "xml"], "Invalid value for '--format'"),
        (["evaluate", "{tmp}/absent"], "does not exist"),
        (["evaluate", "{tmp}/empty"], "no labels found"),
        # evaluate, too, creates missing output folders (tests/test_cli_output.py); a place that takes no files is refused.
        (["evaluate", "{labelled}", "--json", "/proc/no/such/dir/report.json"],
         "--json /proc/no/such/dir/report.json: cannot write there"),
        (["evaluate", "{labelled}", "--heatmap", "/proc/heatmap.png"], "--heatmap /proc/heatmap.png: cannot write there"),
        (["evaluate", "{labelled}", "--labels", "{tmp}/absent.csv"], "does not exist"),
        (["evaluate", "{labelled}", "--ids", "{tmp}/absent.txt"], "does not exist"),
        (["benchmark", "--photos", "{tmp}/absent"], "does not exist"),
        (["benchmark", "--photos", "{photos}", "--count", "0"], "Invalid value for '--count'"),
        # The benchmark creates a missing folder for its outputs (BENCHMARKS.md writes into out/); one it cannot
        # create is refused.
        (["benchmark", "--photos", "{photos}", "--json", "/proc/no/dir/b.json"], "/proc/no/dir/b.json"),
        (["benchmark", "--photos", "{photos}", "--chart", "/proc/no/dir/b.png"], "/proc/no/dir/b.png"),
        (["nonsense"], "No such command"),
    ],
)
def test_usage_errors_exit_2_with_one_line_and_no_traceback(
    tiny_model: Path, photos: Path, labelled: Path, tmp_path: Path, cpu_only: None, args: list[str], message: str
) -> None:
    if args[0] == "benchmark" and "benchmark" not in cli.commands:
        pytest.skip("the benchmark command is not installed")
    (tmp_path / "empty").mkdir()
    (tmp_path / "model.txt").write_text("x")
    (tmp_path / "junk.onnx").write_text("x")
    filled = [a.format(tmp=tmp_path, photos=photos, labelled=labelled) for a in args]
    if "--model" not in filled and args[0] in ("classify", "info", "evaluate"):
        filled += ["--model", str(tiny_model)]
    result = CliRunner().invoke(cli, filled, input=b"")  # catches any exception, so a traceback can be seen
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and message.format(tmp=tmp_path) in errors[0], result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["evaluate", "{labelled}", "--json", "{tmp}/taken/report.json"],
        ["evaluate", "{labelled}", "--heatmap", "{tmp}/taken/confusion.png"],
    ],
)
def test_output_paths_are_checked_before_the_model_loads(
    photos: Path, labelled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    loaded: list[object] = []
    monkeypatch.setattr(common, "Classifier", lambda **kwargs: loaded.append(kwargs))
    (tmp_path / "taken").write_text("a file where the folder would be")
    result = _run(*[a.format(tmp=tmp_path, photos=photos, labelled=labelled) for a in args])
    assert result.exit_code == 2 and loaded == []
    assert result.stderr.strip().splitlines() == [
        f"Error: {args[-2]} {args[-1].format(tmp=tmp_path)}: cannot write there: {tmp_path / 'taken'} is not a folder"
    ]


def test_an_unexpected_error_is_one_line_not_a_traceback(
    tiny_model: Path, photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> Iterator:
        raise RuntimeError("something inside broke")

    monkeypatch.setattr(Classifier, "classify_many", broken)
    monkeypatch.delenv("CASSAVA_EDGE_DEBUG", raising=False)
    result = CliRunner().invoke(cli, ["classify", str(photos), "--model", str(tiny_model), "--provider", "cpu"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.stderr.strip().splitlines()[-1].startswith("Error: unexpected RuntimeError: something inside broke")


def test_options_that_do_not_apply_are_noted(tiny_model: Path, photos: Path) -> None:
    capped = _run("classify", photos / "a.jpg", "--model", tiny_model, "--provider", "cpu", "--format", "jsonl",
                  "--top-k", "9")
    assert capped.exit_code == 0
    assert "note: --top-k 9 is more than the model's 5 classes; listing 5" in capped.stderr
    assert len(json.loads(capped.stdout)["top_k"]) == 5
    in_csv = _run("classify", photos / "a.jpg", "--model", tiny_model, "--provider", "cpu", "--format", "csv",
                  "--top-k", "2")
    assert in_csv.exit_code == 0 and "note: --top-k has no effect with --format csv" in in_csv.stderr
    seed = _run("classify", photos / "a.jpg", "--model", tiny_model, "--provider", "cpu", "--tta", "flip",
                "--seed", "3")
    assert seed.exit_code == 0 and "note: --seed has no effect with tta flip" in seed.stderr
    quiet = _run("classify", photos / "a.jpg", "--model", tiny_model, "--provider", "cpu")
    assert "note:" not in quiet.stderr  # defaults never draw a note


def test_threads_help_is_the_same_everywhere() -> None:
    wording = "[default: onnxruntime's, one per physical core]"
    for name, command in cli.commands.items():
        threads = [p for p in command.params if p.name == "threads"]
        if threads:
            assert wording in " ".join((threads[0].help or "").split()), name


# -- sources: folders, globs, standard input -----------------------------------------------------------------------


def test_globs_are_expanded_here(tiny_model: Path, photos: Path) -> None:
    assert [p.name for p in find_images([str(photos / "*.jpg")])] == ["a.jpg"]
    assert [p.name for p in find_images([str(photos / "**" / "*.jp*g")])] == ["a.jpg", "c.jpeg"]
    # Folders: recursive, case-insensitive extensions, other files skipped and reported; duplicates dropped.
    sources = find_sources([str(photos), str(photos / "a.jpg")])
    assert [p.name for p in sources.photos] == ["a.jpg", "b.PNG", "c.jpeg"]
    assert [p.name for p in sources.skipped] == ["notes.txt"]
    result = _run("classify", photos / "*.PNG", "--model", tiny_model, "--provider", "cpu", "--format", "jsonl")
    assert result.exit_code == 0 and len(result.stdout.splitlines()) == 1


def test_folders_report_undecodable_photos_and_skipped_files(tiny_model: Path, photos: Path) -> None:
    (photos / "IMG_0001.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64))
    rgb = np.random.default_rng(5).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    try:
        ok, gif = cv2.imencode(".gif", rgb)
    except cv2.error:
        ok = False
    if ok:
        (photos / "leaf.gif").write_bytes(gif.tobytes())
    (photos / "readme.md").write_text("notes")
    result = _run("classify", photos, "--model", tiny_model, "--provider", "cpu", "--format", "jsonl")
    records = {Path(r["source"]).name: r for r in map(json.loads, result.stdout.splitlines())}
    assert result.exit_code == 1
    heic = records["IMG_0001.HEIC"]
    assert heic["status"] == "failed" and "HEIC/HEIF cannot be decoded by this OpenCV build" in heic["error"]
    if ok:  # decoded (first frame), or failed by name: never dropped
        gif_record = records["leaf.gif"]
        assert gif_record["ok"] or "GIF cannot be decoded" in gif_record["error"]
    assert f"skipped 2 files without a photo extension: {photos / 'notes.txt'}, {photos / 'readme.md'}" in (
        result.stderr.splitlines()
    )


def test_standard_input_is_one_photo(tiny_model: Path, photos: Path) -> None:
    data = (photos / "a.jpg").read_bytes()
    expected = Classifier(tiny_model, provider="cpu").classify(data).probabilities
    result = _run("classify", "-", "--model", tiny_model, "--provider", "cpu", "--format", "jsonl", input=data)
    assert result.exit_code == 0, result.stderr
    (record,) = map(json.loads, result.stdout.splitlines())
    assert record["source"] == "<stdin>" and record["probabilities"] == pytest.approx(expected, abs=1e-9)
    empty = _run("classify", "-", "--model", tiny_model, "--provider", "cpu", "--format", "jsonl", input=b"")
    assert empty.exit_code == 1 and json.loads(empty.stdout)["error"] == "empty file"


# -- info ----------------------------------------------------------------------------------------------------------


def test_info_text_and_json(tiny_model: Path) -> None:
    text = _run("info", "--model", tiny_model, "--provider", "cpu")
    assert text.exit_code == 0, text.stderr
    assert "CMD (Cassava Mosaic Disease)" in text.stdout and "[batch, 32, 32, 3]" in text.stdout
    assert "loaded CPUExecutionProvider" in text.stdout and "shorter side 32 px" in text.stdout
    assert "probabilities [batch, 5]: class probabilities" in text.stdout
    assert "calibration  none" in text.stdout and "trust        none" in text.stdout
    data = json.loads(_run("info", "--model", tiny_model, "--provider", "cpu", "--format", "json").stdout)
    assert data["metadata"]["input"]["height"] == 32 and data["versions"]["cassava_edge"] == __version__


def test_info_shows_validation_figures_and_trust_settings(tmp_path: Path) -> None:
    provenance = {
        "validation_metrics": {"accuracy": 0.7474, "macro_f1": 0.5617, "count": 190},
        "export_validation": {"photos": 190, "scan": "full", "tta": "none", "fp32_accuracy": 0.7737},
        "measured": {"accuracy": 0.7842, "precision": "int8"},
    }
    metadata = tinymodel.metadata_for(
        32, precision="int8", provenance=provenance, calibration=Calibration(temperature=1.5),
        trust=Trust(min_confidence=0.6, min_short_side=64),
    )
    model = tinymodel.write_model(tmp_path / "m.int8.onnx", metadata=metadata)
    lines = _info_lines(model)
    assert lines["in training"] == ("accuracy 0.7474, macro-F1 0.5617 (the checkpoint) on 190 photos, "
                                    "as measured in training")
    assert lines["this file"] == ("accuracy 0.7842 (int8), fp32 0.7737 on 190 validation photos, scan full, tta none, "
                                  "as measured at export")
    assert lines["calibration"] == "temperature scaling, temperature 1.5"
    biased = tinymodel.write_model(tmp_path / "biased.onnx", metadata=tinymodel.metadata_for(
        32, calibration=Calibration(temperature=0.6, class_bias=(-0.8, 0.1, 0.2, 1.3, -0.8), prior="Kaggle 2020")))
    assert _info_lines(biased)["calibration"] == ("temperature scaling, temperature 0.6; class bias -0.80, +0.10, "
                                                  "+0.20, +1.30, -0.80 (answers for Kaggle 2020)")
    assert lines["trust"] == "uncertain below confidence 0.6; photos under 64 px fail"
    overridden = _run("info", "--model", model, "--provider", "cpu", "--min-confidence", "0.8").stdout
    assert "trust        uncertain below confidence 0.8 (--min-confidence; the model says 0.6); photos under" in (
        overridden
    )


def _info_lines(model: Path) -> dict[str, str]:
    """`info`'s text lines by heading (headings are padded to 13 characters and may hold a space)."""
    output = _run("info", "--model", model, "--provider", "cpu").stdout
    return {line[:13].strip(): line[13:] for line in output.splitlines()}


def test_info_shows_the_default_plans_figures_first_and_names_every_plan(tmp_path: Path) -> None:
    """Issue 19, item 5: the figures the model card states (the default plan's) come first, and no figure is shown
    without the plan it was measured with."""
    provenance = {
        "validation_metrics": {"accuracy": 0.7789, "macro_recall": 0.5965, "count": 190, "plan": "grid",
                               "tta": "none", "plans": {"grid": {"accuracy": 0.7789}, "full": {"accuracy": 0.7579}}},
        "export_validation": {"photos": 190, "scan": "full", "tta": "none", "fp32_accuracy": 0.7579},
        "measured": {"accuracy": 0.7684, "precision": "int8"},
        "trust": {"validation": {"photos": 190, "scan": "full", "tta": "seed", "accuracy": 0.8,
                                 "macro_recall": 0.6859, "macro_f1": 0.6335}},
    }
    metadata = tinymodel.metadata_for(32, precision="int8", provenance=provenance, default_scan="full",
                                      default_tta="seed")
    model = tinymodel.write_model(tmp_path / "m.int8.onnx", metadata=metadata)
    output = _run("info", "--model", model, "--provider", "cpu").stdout
    figures = [line for line in output.splitlines() if "accuracy" in line]
    assert figures[0] == ("validation   accuracy 0.8000, macro recall 0.6859, macro-F1 0.6335 (int8) on 190 photos, "
                          "the default plan (scan full, tta seed), as measured at export")
    assert "scan grid, tta none (scan full 0.7579), as measured in training" in figures[1]
    assert "scan full, tta none, as measured at export" in figures[2]
    assert len(figures) == 3


def test_the_bundled_models_first_figure_is_the_model_cards() -> None:
    """The default model's first validation line is its default plan's 81.6% / 76.3% (models/README.md), measured
    with its canonical look, and the v2 model, now opt-in, keeps its own 80.0% / 68.6%."""
    lines = _info_lines(REPO_ROOT / "models" / "cassava-lite2-v3.onnx")
    assert lines["validation"].startswith("accuracy 0.8158, macro recall 0.7630, ")
    assert "the default plan (scan full, tta none)" in lines["validation"]
    assert lines["look"].startswith("every photo first roboflow-encoded")
    listed = _run("models").stdout.splitlines()
    default = next(line for line in listed if "cassava-lite2-v3.onnx" in line)
    assert "accuracy 0.8158, macro recall 0.7630 on 190 photos, the default plan (scan full, tta none); " in default
    int8 = next(line for line in listed if "cassava-lite0.int8.onnx" in line)
    assert "accuracy 0.8000, macro recall 0.6859 on 190 photos, the default plan (scan full, tta seed); " in int8


def test_version() -> None:
    result = _run("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"cassava-edge {__version__}"


# -- API -----------------------------------------------------------------------------------------------------------


def test_api_reads_bgr_arrays_in_any_case_and_names_unsupported_objects(tiny_model: Path, photos: Path) -> None:
    classifier = Classifier(tiny_model, provider="cpu")
    bgr = cv2.imread(str(photos / "a.jpg"))
    expected = classifier.classify(photos / "a.jpg").probabilities
    for color in ("BGR", "bgr"):
        assert classifier.classify(bgr, color=color).probabilities == pytest.approx(expected, abs=1e-9)
        np.testing.assert_array_equal(classifier.load(bgr, color=color), classifier.load(photos / "a.jpg"))
    assert not np.array_equal(classifier.load(bgr), classifier.load(photos / "a.jpg"))  # the default is RGB
    with pytest.raises(ImageError, match="cannot read an image from an int; pass a path, bytes"):
        classifier.classify(42)  # type: ignore[arg-type]
    (failed,) = classifier.classify_many([42])  # type: ignore[list-item]
    assert failed.status == "failed" and failed.source == "<int>" and failed.error.startswith("cannot read an image")


# -- real processes ------------------------------------------------------------------------------------------------


def _python(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("CASSAVA_EDGE_DEBUG", None)
    run = subprocess.run([sys.executable, *args], capture_output=True, env=env, cwd=REPO_ROOT, timeout=120,
                         input=stdin if stdin is not None else b"")
    return subprocess.CompletedProcess(run.args, run.returncode, run.stdout.decode(), run.stderr.decode())


def test_module_entry_point_in_a_subprocess(tiny_model: Path, with_bad: Path) -> None:
    run = _python("-m", "cassava_edge", "classify", str(with_bad), "--model", str(tiny_model), "--format", "csv")
    assert run.returncode == 1, run.stderr
    rows = list(csv.DictReader(io.StringIO(run.stdout)))
    assert sorted(Path(r["source"]).name for r in rows if r["ok"] == "true") == ["a.jpg", "b.PNG", "c.jpeg"]
    assert [Path(r["source"]).name for r in rows if r["ok"] == "false"] == ["broken.jpg"]
    assert "broken.jpg" in run.stderr and "Traceback" not in run.stderr
    assert f"skipped 1 file without a photo extension: {with_bad / 'notes.txt'}" in run.stderr
    assert _summary(run.stderr)[0] == 4
    missing = _python("-m", "cassava_edge.cli", "classify", str(with_bad / "absent.jpg"), "--model", str(tiny_model))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().splitlines() == [f"Error: no such file or directory: {with_bad / 'absent.jpg'}"]


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["classify", "{photos}", "-o", "/proc/x.csv"],
         "Error: --output /proc/x.csv: cannot write there: /proc takes no new files"),
        (["evaluate", "{labelled}", "--heatmap", "/proc/no/dir/confusion.png"],
         "Error: --heatmap /proc/no/dir/confusion.png: cannot write there: /proc takes no new files"),
        (["classify", "http://example.org/leaf.jpg"],
         "Error: cannot read http://example.org/leaf.jpg: URLs are not fetched (cassava-edge never uses the network); "
         "download the photo and pass its path"),
    ],
)
def test_bad_paths_in_a_subprocess_are_one_line(
    tiny_model: Path, photos: Path, labelled: Path, args: list[str], line: str
) -> None:
    filled = [a.format(photos=photos, labelled=labelled) for a in args]
    run = _python("-m", "cassava_edge.cli", *filled, "--model", str(tiny_model))
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.strip().splitlines() == [line]


def test_standard_input_in_a_subprocess(tiny_model: Path, photos: Path) -> None:
    run = _python("-m", "cassava_edge.cli", "classify", "-", "--model", str(tiny_model), "--format", "csv",
                  stdin=(photos / "b.PNG").read_bytes())
    assert run.returncode == 0, run.stderr
    (row,) = csv.DictReader(io.StringIO(run.stdout))
    assert row["source"] == "<stdin>" and row["ok"] == "true"
    assert _summary(run.stderr) == (1, "1 ok, 0 failed")


def test_runtime_never_imports_tensorflow() -> None:
    run = _python("-c", "import cassava_edge.cli, sys; assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    assert run.returncode == 0, run.stderr


def test_metadata_module_needs_no_onnxruntime() -> None:
    """export/ and training/ import cassava_edge.metadata; onnxruntime is an optional extra for them."""
    run = _python("-c", "import cassava_edge.metadata, sys; assert 'onnxruntime' not in sys.modules")
    assert run.returncode == 0, run.stderr
