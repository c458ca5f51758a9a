"""How the project installs: the wheel carries the bundled model and classifies from anywhere, the repository's
folders install under the project's name, and the runtime imports nothing from training, export or benchmarks."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from cassava_edge.cli import cli

REPO_ROOT = Path(__file__).resolve().parents[1]
# What a wheel is built from (a copy, so that no build/ folder of an earlier build can leak stale files into it).
SOURCES = ("setup.py", "pyproject.toml", "README.md", "LICENSE", "cassava_edge", "training", "export", "benchmarks",
           "models")
TOP_LEVEL = {"cassava_edge", "cassava_edge_training", "cassava_edge_export", "cassava_edge_benchmarks"}
OUTSIDE_RUNTIME = ("training", "export", "benchmarks", "cassava_edge_training", "cassava_edge_export",
                   "cassava_edge_benchmarks", "tensorflow", "keras", "torch")


def _python(code: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_runtime_imports_nothing_from_training_export_or_benchmarks(tmp_path: Path) -> None:
    code = (
        "import importlib, pkgutil, sys, cassava_edge, cassava_edge.cli\n"
        "for info in pkgutil.walk_packages(cassava_edge.__path__, 'cassava_edge.'):\n"
        "    try:\n"
        "        importlib.import_module(info.name)\n"
        "    except ImportError as exc:\n"
        "        if (exc.name or '').split('.')[0] == 'cassava_edge': raise  # only optional third-party packages\n"
        f"outside = sorted(m for m in sys.modules if m.split('.')[0] in {OUTSIDE_RUNTIME!r})\n"
        "print(outside); sys.exit(1 if outside else 0)\n"
    )
    process = _python(code, cwd=tmp_path)
    assert process.returncode == 0, process.stdout + process.stderr


def test_benchmark_command_is_registered_whatever_is_imported_first(tmp_path: Path) -> None:
    """Importing the benchmark before the CLI used to drop the command through a swallowed circular import."""
    code = (
        "import cassava_edge_benchmarks.latency\n"
        "from cassava_edge.cli import cli\n"
        "assert 'benchmark' in cli.commands, sorted(cli.commands)\n"
    )
    process = _python(code, cwd=tmp_path)
    assert process.returncode == 0, process.stdout + process.stderr


def test_benchmark_without_its_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from cassava_edge.commands import benchmark

    missing = importlib.metadata.EntryPoint("benchmark", "cassava_edge_no_such_package.cli:command",
                                            benchmark.ENTRY_POINTS)
    for found in ([], [missing]):
        monkeypatch.setattr(benchmark.importlib.metadata, "entry_points", lambda **_: found)
        result = CliRunner().invoke(cli, ["benchmark", "--count", "1"])
        assert result.exit_code == 2, result.output
        assert 'pip install "cassava-edge[bench]"' in result.output and "Traceback" not in result.output
    assert "benchmark" in CliRunner().invoke(cli, ["--help"]).output  # listed even then


def test_ci_runs_exactly_the_readme_test_command() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    after = readme.split("run the tests", 1)[1]
    command = after.split("```bash\n", 1)[1].split("\n```", 1)[0].strip()
    assert "pytest" in command
    ci = [line.strip() for line in (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    assert command in ci


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the sources with the installed setuptools (no network, no build isolation)."""
    pytest.importorskip("setuptools", reason="building the wheel needs setuptools (dev extra)")
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        path = REPO_ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif path.is_file():
            shutil.copy2(path, source / name)
    out = tmp_path_factory.mktemp("wheel")
    process = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w", str(out),
         str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert process.returncode == 0, process.stdout + process.stderr
    (built,) = out.glob("cassava_edge-*.whl")
    return built


@pytest.mark.slow
def test_wheel_holds_the_default_model_under_the_project_names(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == TOP_LEVEL
    prefix = "cassava_edge/bundled/"
    bundled = {name[len(prefix):] for name in names if name.startswith(prefix)}
    models = REPO_ROOT / "models"
    # The default model's files, and the opt-in models in their sub-folders (ONNX files and reports only).
    model_files = {p.name for p in models.iterdir() if p.suffix in (".onnx", ".json", ".txt", ".md")}
    model_files |= {str(p.relative_to(models)) for p in models.glob("*/*") if p.suffix in (".onnx", ".json")}
    assert bundled == model_files and any(name.endswith(".onnx") for name in bundled)
    assert "cassava-lite0-512/cassava-lite0-512.onnx" in bundled
    assert not any(name.endswith(".png") for name in names)


@pytest.mark.slow
def test_wheel_classifies_with_its_own_bundled_model_from_any_folder(wheel: Path, tmp_path: Path) -> None:
    import cv2
    import numpy as np

    target, work = tmp_path / "site", tmp_path / "work"
    work.mkdir()
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target), str(wheel)],
        capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    photo = np.zeros((600, 800, 3), np.uint8)
    photo[:] = (40, 140, 60)
    cv2.circle(photo, (400, 300), 200, (30, 200, 90), -1)
    assert cv2.imwrite(str(work / "leaf.jpg"), photo)

    # The installed copy first on the path, run from a folder that is neither the repository nor the install.
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("CASSAVA_EDGE_MODELS", None)
    info = subprocess.run([sys.executable, "-m", "cassava_edge", "info", "--format", "json"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=120)
    assert info.returncode == 0, info.stdout + info.stderr
    model = Path(json.loads(info.stdout)["model"])
    assert model.parent == target / "cassava_edge" / "bundled", model
    classify = subprocess.run([sys.executable, "-m", "cassava_edge", "classify", "leaf.jpg", "--format", "jsonl"],
                              cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert classify.returncode == 0, classify.stdout + classify.stderr
    (record,) = [json.loads(line) for line in classify.stdout.splitlines()]
    assert record["source"] == "leaf.jpg" and record["error"] is None
    assert sum(record["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
