"""Shared fixtures: tiny ONNX models (built here, never downloaded) and the real photos in ../shared/data."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.datapaths import DATA_DIR


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """../shared/data, or $CASSAVA_EDGE_DATA; tests using it skip with the reason when it is absent."""
    if not (DATA_DIR / "cassava" / "train.csv").is_file():
        pytest.skip(f"real photos not found at {DATA_DIR} (set CASSAVA_EDGE_DATA to the shared data folder)")
    return DATA_DIR


@pytest.fixture(scope="session")
def cassava_photos(data_dir: Path) -> list[Path]:
    """A few Kaggle 800x600 photos, one per class where the class exists."""
    with open(data_dir / "cassava" / "train.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    chosen: dict[str, Path] = {}
    for row in rows:
        chosen.setdefault(row["label"], data_dir / "cassava" / "train_images" / row["image_id"])
    return [chosen[label] for label in sorted(chosen)]


@pytest.fixture(scope="session")
def field_rows(data_dir: Path) -> list[dict[str, str]]:
    with open(data_dir / "field" / "labels.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 32x32 quadrant model, photo short side 32: a 32x32 photo is exactly one crop under every plan."""
    from tests import tinymodel  # imported here: it needs `onnx`, which only these fixtures use

    return tinymodel.write_model(tmp_path_factory.mktemp("models") / "quadrant32.onnx")


@pytest.fixture(scope="session")
def photo_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 64x64 quadrant model at the reference's crop/scale ratio (512/600 ~ 64/75), for real photos."""
    from tests import tinymodel

    return tinymodel.write_model(tmp_path_factory.mktemp("models") / "quadrant64.onnx", size=64, short_side=75)


@pytest.fixture
def cpu_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make onnxruntime report only CPU providers, as a CPU-only onnxruntime package does."""
    import onnxruntime as ort

    providers = [p for p in ort.get_available_providers() if p != "CUDAExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: providers)


@pytest.fixture
def run_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The batch size of every onnxruntime run call, recorded by spying on OnnxSession._run_chunk."""
    from cassava_edge.session import OnnxSession

    calls: list[int] = []
    original = OnnxSession._run_chunk

    def spy(self: OnnxSession, chunk):  # type: ignore[no-untyped-def]
        calls.append(len(chunk))
        return original(self, chunk)

    monkeypatch.setattr(OnnxSession, "_run_chunk", spy)
    return calls
