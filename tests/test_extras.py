"""A base install (no onnxruntime) and a runtime-only one (no Keras, TensorFlow, tf2onnx or ONNX), simulated in a
subprocess whose sitecustomize makes importing those modules fail: every --help works, and every command that
needs a missing extra says in one line what to install, with a non-zero exit and no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
RUNTIME = ("onnxruntime",)
EXPORT_EXTRA = ("keras", "tensorflow", "tf2onnx", "onnx")
CPU_HINT = 'pip install "cassava-edge[cpu]"'
EXPORT_HINT = 'pip install "cassava-edge[export]"'

# Loaded at start-up by the subprocess (from PYTHONPATH): a meta-path finder that refuses the named modules, as
# an environment without them does.
SITECUSTOMIZE = '''
import os, sys

BLOCKED = set(os.environ["BLOCKED_MODULES"].split(","))


class Uninstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, Uninstalled())
'''


@pytest.fixture(scope="module")
def hook_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("uninstalled")
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return folder


def run_without(hook_dir: Path, blocked: tuple[str, ...], *args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BLOCKED_MODULES": ",".join(blocked), "PYTHONPATH": os.pathsep.join([str(hook_dir), str(REPO_ROOT)])}
    env.pop("CASSAVA_EDGE_DEBUG", None)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def assert_one_line(run: subprocess.CompletedProcess[str], hint: str) -> None:
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    assert len(lines) == 1, run.stderr
    assert hint in lines[0]


def test_the_hook_really_hides_the_modules(hook_dir: Path) -> None:
    run = run_without(hook_dir, RUNTIME + EXPORT_EXTRA, "-c", "import onnxruntime")
    assert run.returncode == 1 and "No module named 'onnxruntime'" in run.stderr
    run = run_without(hook_dir, RUNTIME + EXPORT_EXTRA, "-c", "import keras")
    assert run.returncode == 1 and "No module named 'keras'" in run.stderr


def test_every_help_works_with_the_base_install(hook_dir: Path) -> None:
    from cassava_edge.cli import cli

    run = run_without(hook_dir, RUNTIME + EXPORT_EXTRA, "-m", "cassava_edge", "--help")
    assert run.returncode == 0, run.stderr
    assert "classify" in run.stdout
    for name in cli.commands:
        run = run_without(hook_dir, RUNTIME + EXPORT_EXTRA, "-m", "cassava_edge", name, "--help")
        assert run.returncode == 0, f"{name} --help: {run.stderr}"
        assert "Usage:" in run.stdout and "Traceback" not in run.stderr, name


def test_commands_that_need_onnxruntime_name_the_install(hook_dir: Path, tmp_path: Path) -> None:
    photo = tmp_path / "leaf.png"
    cv2.imwrite(str(photo), np.full((64, 64, 3), (40, 160, 60), np.uint8))
    commands = [
        ("classify", str(photo)),
        ("classify", str(photo), "--engine", "ray"),
        ("info",),
        ("evaluate", str(tmp_path)),
        ("benchmark", "--count", "1"),
    ]
    for command in commands:
        run = run_without(hook_dir, RUNTIME + EXPORT_EXTRA, "-m", "cassava_edge", *command)
        assert_one_line(run, CPU_HINT)
        assert '"cassava-edge[gpu]"' in run.stderr


def test_the_api_names_the_install_too(hook_dir: Path) -> None:
    code = "import cassava_edge\ntry:\n    cassava_edge.Classifier()\nexcept cassava_edge.CassavaEdgeError as exc:\n    print(exc)"
    run = run_without(hook_dir, RUNTIME, "-c", code)
    assert run.returncode == 0, run.stderr
    assert CPU_HINT in run.stdout


def test_export_in_a_runtime_only_install(hook_dir: Path, tmp_path: Path) -> None:
    run = run_without(hook_dir, EXPORT_EXTRA, "-m", "export", "--help")
    assert run.returncode == 0 and "Usage:" in run.stdout, run.stderr
    # Without ONNX the export stops at its first import, before it looks at its input.
    (tmp_path / "run").mkdir()
    run = run_without(hook_dir, EXPORT_EXTRA, "-m", "export", str(tmp_path / "run"), "-o", str(tmp_path / "out"))
    assert_one_line(run, EXPORT_HINT)
    # With ONNX there but no Keras: a .keras file (a zip archive) gets as far as loading it.
    keras_file = tmp_path / "model.keras"
    with zipfile.ZipFile(keras_file, "w") as archive:
        archive.writestr("config.json", "{}")
        archive.writestr("metadata.json", "{}")
    run = run_without(hook_dir, ("keras", "tensorflow", "tf2onnx"), "-m", "export", str(keras_file),
                      "-o", str(tmp_path / "out"), "--photo-short-side", "600")
    assert_one_line(run, EXPORT_HINT)
    assert "keras" in run.stderr
