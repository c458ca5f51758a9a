from __future__ import annotations

from pathlib import Path

import pytest

from tests import tinymodel
from cassava_edge import Classifier
from cassava_edge.errors import ModelError, OptionError
from cassava_edge.modelfile import read_metadata_props
from cassava_edge.models import MODELS_ENV, bundled_models_dir, read_model_metadata, resolve_model

REPO_ROOT = Path(__file__).resolve().parents[1]


def _variants(folder: Path, precisions: dict[str, str]) -> Path:
    """Tiny models labelled with a precision each (the graphs are all fp32; only the metadata differs)."""
    for name, precision in precisions.items():
        tinymodel.write_model(folder / name, metadata=tinymodel.metadata_for(precision=precision))
    return folder


@pytest.fixture(scope="module")
def variant_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _variants(
        tmp_path_factory.mktemp("variants"),
        {"lite.onnx": "fp32", "lite.fp16.onnx": "fp16", "lite.int8.onnx": "int8"},
    )


def test_metadata_is_read_without_onnxruntime(tiny_model: Path) -> None:
    props = read_metadata_props(tiny_model)
    assert props == tinymodel.metadata_for().to_onnx_props()
    assert read_model_metadata(tiny_model) == tinymodel.metadata_for()


def test_provider_picks_the_variant(variant_folder: Path) -> None:
    assert resolve_model(variant_folder, "cpu").name == "lite.int8.onnx"
    assert resolve_model(variant_folder, "cuda").name == "lite.fp16.onnx"
    assert resolve_model(variant_folder, "cuda", variant="fp32").name == "lite.onnx"
    assert resolve_model(variant_folder, "cpu", variant="fp16").name == "lite.fp16.onnx"


def test_fp32_is_the_fallback_variant(tmp_path: Path) -> None:
    folder = _variants(tmp_path, {"a.onnx": "fp32", "a.fp16.onnx": "fp16"})
    assert resolve_model(folder, "cpu").name == "a.onnx"
    with pytest.raises(ModelError, match=r"no int8 model for cpu; found a.fp16.onnx \(fp16\), a.onnx \(fp32\)"):
        resolve_model(folder, "cpu", variant="int8")


def test_ambiguous_and_empty_folders(tmp_path: Path) -> None:
    folder = _variants(tmp_path / "two", {"a.onnx": "fp32", "b.onnx": "fp32"})
    with pytest.raises(ModelError, match="several fp32 models"):
        resolve_model(folder, "cpu")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.onnx").write_text("hello")
    with pytest.raises(ModelError, match="no usable cassava-edge model .*x.onnx: not an ONNX model"):
        resolve_model(tmp_path / "junk", "cpu")


def test_files_are_used_as_they_are(tiny_model: Path, tmp_path: Path) -> None:
    assert resolve_model(tiny_model, "cuda") == tiny_model
    with pytest.raises(ModelError, match="no such model file"):
        resolve_model(tmp_path / "absent.onnx", "cpu")
    text = tmp_path / "model.txt"
    text.write_text("x")
    with pytest.raises(ModelError, match="not an ONNX model"):
        resolve_model(text, "cpu")
    with pytest.raises(OptionError, match="variant"):
        resolve_model(tiny_model, "cpu", variant="fp8")


def test_bundled_models_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variant_folder: Path) -> None:
    monkeypatch.delenv(MODELS_ENV, raising=False)
    assert bundled_models_dir() == REPO_ROOT / "models"
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv(MODELS_ENV, str(empty))
    with pytest.raises(ModelError, match=f"no bundled model in {empty}; pass --model"):
        resolve_model(None, "cpu")
    monkeypatch.setenv(MODELS_ENV, str(variant_folder))
    assert resolve_model(None, "cpu").name == "lite.int8.onnx"


def test_classifier_loads_the_cpu_variant(variant_folder: Path) -> None:
    classifier = Classifier(variant_folder, provider="cpu")
    assert classifier.session.path.name == "lite.int8.onnx"
    assert classifier.metadata.precision == "int8"
    assert Classifier(variant_folder, provider="cpu", variant="fp32").metadata.precision == "fp32"


def test_a_model_bundled_beside_the_default_is_found_by_name(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bundled = tmp_path / "bundled"
    _variants(bundled, {"lite.onnx": "fp32", "lite.int8.onnx": "int8"})
    _variants(bundled / "lite-512", {"lite-512.onnx": "fp32", "lite-512.int8.onnx": "int8"})
    (bundled / "not-a-model").mkdir()
    monkeypatch.setenv(MODELS_ENV, str(bundled))
    from cassava_edge.models import bundled_model_names

    assert bundled_model_names() == ["lite-512"]
    assert resolve_model("lite-512", "cpu") == bundled / "lite-512" / "lite-512.int8.onnx"
    assert resolve_model("lite-512", "cpu", "fp32") == bundled / "lite-512" / "lite-512.onnx"
    assert resolve_model(None, "cpu") == bundled / "lite.int8.onnx"  # the default is still the default
    with pytest.raises(ModelError, match=r"no such model file or folder \(bundled models: lite, lite-512\)"):
        resolve_model("lite-1024", "cpu")


def test_every_bundled_model_is_reachable_by_its_name() -> None:
    from cassava_edge.models import bundled_model_names, default_model_name, resolve_model

    default = default_model_name()
    assert default is not None
    assert resolve_model(default) == resolve_model(None)
    for name in bundled_model_names():
        assert resolve_model(name).name.startswith(name)


def test_every_bundled_model_is_listed_with_figures_from_its_metadata(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from cassava_edge.cli import cli
    from cassava_edge.models import bundled_models, export_validation

    measured = {"measured": {"accuracy": 0.61}, "export_validation": {"photos": 7, "scan": "full", "tta": "none"}}
    tinymodel.write_model(tmp_path / "lite.onnx", metadata=tinymodel.metadata_for(provenance=measured))
    tinymodel.write_model(tmp_path / "lite.int8.onnx", metadata=tinymodel.metadata_for(precision="int8"))
    tinymodel.write_model(tmp_path / "big" / "big.onnx", size=48, metadata=tinymodel.metadata_for(size=48))
    monkeypatch.setenv(MODELS_ENV, str(tmp_path))

    models = bundled_models()
    assert [(m.name, m.crop_size, [v.precision for v in m.variants]) for m in models] == [
        ("lite", (32, 32), ["fp32", "int8"]),
        ("big", (48, 48), ["fp32"]),
    ]
    assert models[0].size_bytes == (tmp_path / "lite.onnx").stat().st_size + (tmp_path / "lite.int8.onnx").stat().st_size
    assert export_validation(models[0].variants[0].metadata) == (0.61, "7 photos, scan full, tta none")
    assert export_validation(models[0].variants[1].metadata) is None

    result = CliRunner().invoke(cli, ["models"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("lite (input 32x32, ") and lines[0].endswith(", the default)")
    assert "lite.onnx" in lines[1] and "accuracy 0.6100 (7 photos, scan full, tta none" in lines[1]
    assert "int8" in lines[2] and "no validation figure" in lines[2]
    assert lines[3].startswith("big (input 48x48, ") and "the default" not in lines[3]
    # every listed name is one --model accepts
    assert resolve_model("lite") == tmp_path / "lite.int8.onnx"
    assert resolve_model("big") == tmp_path / "big" / "big.onnx"
