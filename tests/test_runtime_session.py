from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np
import onnxruntime as ort
import pytest

from tests import tinymodel
from cassava_edge import Classifier
from cassava_edge.errors import ModelError, OptionError, ProviderError
from cassava_edge.session import OnnxSession


def _batch(count: int, size: int = 32) -> np.ndarray:
    return np.random.default_rng(count).uniform(0, 255, (count, size, size, 3)).astype(np.float32)


# -- providers -----------------------------------------------------------------------------------------------------


def test_cpu_loads_the_cpu_provider(tiny_model: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="cassava_edge"):
        session = OnnxSession(tiny_model, provider="cpu")
    assert session.providers == ["CPUExecutionProvider"]
    assert session.device == "cpu" and session.chunk_size == 4
    assert session.path == tiny_model and session.input_name == tinymodel.INPUT
    assert session.metadata.crop_size == (32, 32)
    assert not caplog.records  # asking for CPU is not a fallback


def test_cuda_without_gpu_package_is_refused(tiny_model: Path, cpu_only: None) -> None:
    with pytest.raises(ProviderError, match="no CUDAExecutionProvider; install onnxruntime-gpu"):
        OnnxSession(tiny_model, provider="cuda")


def test_cuda_provider_that_does_not_load_is_refused(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """onnxruntime-gpu installed but CUDA cannot load: onnxruntime silently runs on CPU, we must not."""
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(OnnxSession, "_create", _fake_cpu_fallback)
    with pytest.raises(ProviderError, match="CUDA was requested but is not available: onnxruntime-gpu is installed"):
        OnnxSession(tiny_model, provider="cuda")


def _fake_cpu_fallback(self: OnnxSession, *args: object) -> ort.InferenceSession:
    # What onnxruntime-gpu does when the CUDA libraries are missing: a session on CPU only.
    return ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])


def test_auto_falls_back_to_cpu_with_one_warning(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # onnxruntime-gpu lists CUDA, but the session comes up on CPU only (no driver or CUDA libraries).
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(OnnxSession, "_create", _fake_cpu_fallback)
    with caplog.at_level(logging.WARNING, logger="cassava_edge"):
        session = OnnxSession(tiny_model, provider="auto")
    assert session.providers == ["CPUExecutionProvider"]
    records = [r for r in caplog.records if r.name == "cassava_edge"]
    assert len(records) == 1
    message = records[0].getMessage()
    assert "\n" not in message and "CPU" in message and "CUDA" in message


def test_auto_on_cpu_only_onnxruntime_is_quiet(
    tiny_model: Path, cpu_only: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="cassava_edge"):
        session = OnnxSession(tiny_model, provider="auto")
    assert session.providers == ["CPUExecutionProvider"]
    assert not [r for r in caplog.records if r.name == "cassava_edge"]


def test_bad_options(tiny_model: Path) -> None:
    with pytest.raises(OptionError, match="provider"):
        OnnxSession(tiny_model, provider="tpu")
    with pytest.raises(OptionError, match="graph optimisation"):
        OnnxSession(tiny_model, provider="cpu", graph_optimization="maximal")
    with pytest.raises(OptionError, match="chunk size"):
        OnnxSession(tiny_model, provider="cpu", chunk_size=0)


@pytest.mark.parametrize("level", ["disable", "basic", "extended", "all"])
def test_options_reach_onnxruntime(tiny_model: Path, level: str) -> None:
    session = OnnxSession(
        tiny_model, provider="cpu", threads=1, inter_op_threads=1, graph_optimization=level, chunk_size=7
    )
    described = session.describe()
    assert described["graph_optimization"] == level
    assert described["intra_op_threads"] == 1 and described["inter_op_threads"] == 1
    assert session.chunk_size == 7
    np.testing.assert_allclose(session.run(_batch(2)), tinymodel.reference_probs(_batch(2)), atol=1e-5)


# -- running -------------------------------------------------------------------------------------------------------


def test_run_in_chunks_equals_one_run(tiny_model: Path, run_calls: list[int]) -> None:
    calls = run_calls
    batch = _batch(11)
    whole = OnnxSession(tiny_model, provider="cpu", chunk_size=64).run(batch)
    assert calls == [11]
    calls.clear()
    chunked = OnnxSession(tiny_model, provider="cpu", chunk_size=4).run(batch)
    assert calls == [4, 4, 3]
    np.testing.assert_allclose(chunked, whole, atol=1e-7)
    np.testing.assert_allclose(whole, tinymodel.reference_probs(batch), atol=1e-5)
    assert OnnxSession(tiny_model, provider="cpu").run(_batch(0)).shape == (0, 5)


def test_logits_model_gets_softmax(tmp_path: Path, tiny_model: Path) -> None:
    logits_model = tinymodel.write_model(tmp_path / "logits.onnx", softmax=False)
    session = OnnxSession(logits_model, provider="cpu")
    assert not session.metadata.output_is_probability
    batch = _batch(3)
    probs = session.run(batch)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(probs, OnnxSession(tiny_model, provider="cpu").run(batch), atol=1e-6)


def test_run_checks_the_batch_shape(tiny_model: Path) -> None:
    with pytest.raises(ValueError, match=r"\(n, 32, 32, 3\)"):
        OnnxSession(tiny_model, provider="cpu").run(np.zeros((1, 32, 31, 3), np.float32))


# -- the model contract --------------------------------------------------------------------------------------------


BROKEN_MODELS: dict[str, tuple[Callable[[Path], object], str]] = {
    "no-metadata": (lambda p: tinymodel.write_model(p, with_metadata=False), "no cassava-edge metadata"),
    "wrong-version": (lambda p: tinymodel.write_model(p, props=tinymodel.wrong_version_props()), "schema version 5 is newer"),
    "wrong-input-size": (
        lambda p: tinymodel.write_model(p, size=32, input_hw=(30, 32)),
        r"input shape \[batch, 30, 32, 3\]",
    ),
    "fixed-batch": (lambda p: tinymodel.write_model(p, batch_dim=1), "batch dimension is fixed"),
    "wrong-classes": (lambda p: tinymodel.write_model(p, classes=4), r"output shape \[batch, 4\] is not \[batch, 5\]"),
    "wrong-crop": (
        lambda p: tinymodel.write_model(p, metadata=tinymodel.metadata_for(64)),
        r"disagrees with the metadata \[batch, 64, 64, 3\]",
    ),
    "input-name": (
        lambda p: tinymodel.write_model(p, metadata=tinymodel.metadata_for(input_name="pixels")),
        "metadata says 'pixels'",
    ),
    "text": (lambda p: p.write_text("not a model"), "onnxruntime cannot load it"),
}


@pytest.mark.parametrize("case", list(BROKEN_MODELS))
def test_models_breaking_the_contract_are_refused(tmp_path: Path, case: str) -> None:
    write, reason = BROKEN_MODELS[case]
    path = tmp_path / "bad.onnx"
    write(path)
    with pytest.raises(ModelError, match=reason) as info:
        OnnxSession(path, provider="cpu")
    assert str(path) in str(info.value)
    with pytest.raises(ModelError, match="not an ONNX model" if reason.startswith("onnxruntime") else reason):
        Classifier(path, provider="cpu")


def test_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no such model file"):
        OnnxSession(tmp_path / "absent.onnx", provider="cpu")
