"""export/: a small real Lite0 model (ImageNet features, head fitted on ten real photos, crop 64) exported once per
module with fp16 and int8 variants, then checked file by file; bad inputs are checked without TensorFlow.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cassava_edge.contract import DEFAULT_SCAN, DEFAULT_TTA, INPUT_NAME, OUTPUT_NAME
from cassava_edge.metadata import CASSAVA_LABELS, ModelMetadata

pytest.importorskip("onnx", reason="export writes ONNX files with onnx (pip install \"cassava-edge[export]\")")
from cassava_edge_export.measure import Figures  # noqa: E402
from cassava_edge_export.selection import choose_int8  # noqa: E402
from tests.datapaths import DATA_DIR, needs_data

REPO_ROOT = Path(__file__).resolve().parents[1]
CROP, SHORT_SIDE = 64, 75  # the reference's 512/600 ratio, small enough for a 2-core CPU
# The portable, VNNI-independent configurations export tries by default, and the QOperator one it used to ship.
INT8_CONFIGS = "qdq-u8u8-per-channel,qdq-u8s8-per-channel-reduce-range,qdq-s8s8-per-channel-reduce-range"


# -- fixtures ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder as training/train.py writes it, around a Lite0 whose head is fitted on ten real photos.

    The head is trained until it is confident on those photos (they are also the validation split), so that
    fp32 and int8 disagreeing on them would be a quantisation fault, not a coin toss between equal classes.
    """
    if not (DATA_DIR / "cassava" / "train.csv").is_file():
        pytest.skip(f"real photos not found at {DATA_DIR} (set CASSAVA_EDGE_DATA to the shared data folder)")
    pytest.importorskip("tensorflow")
    import keras

    from cassava_edge_export.photos import crop_photos
    from cassava_edge_training.config import TrainConfig
    from cassava_edge_training.model import build_model

    keras.utils.set_random_seed(0)
    data = DATA_DIR / "cassava"
    with open(data / "train.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    chosen = [row for label in "01234" for row in [r for r in rows if r["label"] == label][:2]]
    paths = [data / "train_images" / row["image_id"] for row in chosen]
    crops = crop_photos(paths, "grid", SHORT_SIDE, CROP)
    x, y = crops.as_float(), np.array([int(row["label"]) for row in chosen])[crops.owner]

    norm = keras.layers.Normalization(axis=-1, name="cassava_normalization")
    norm.adapt(x / 255.0)
    model = build_model("efficientnet-lite0", CROP, norm, weights="imagenet")
    for layer in model.layers:  # BatchNorm keeps its ImageNet statistics: only the head learns
        layer.trainable = layer.name == "probabilities"
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=20, epochs=8, verbose=0)

    run = tmp_path_factory.mktemp("run")
    model.save(run / "best.keras")
    config = TrainConfig(data=[str(data)], output=str(run), crop_size=CROP, photo_short_side=SHORT_SIDE, epochs=8)
    (run / "config.json").write_text(config.to_json())
    (run / "validation_ids.txt").write_text("".join(row["image_id"] + "\n" for row in chosen))
    (run / "best.metrics.json").write_text(json.dumps({"checkpoint": "best.keras", "count": len(chosen),
                                                       "accuracy": 1.0, "macro_f1": 1.0}))
    # A run-level metrics.json of another checkpoint must not reach the metadata (it once did).
    (run / "metrics.json").write_text(json.dumps({"checkpoint": "other.keras", "accuracy": 0.5}))
    (run / "dataset.json").write_text(json.dumps({"validation": {"count": len(chosen)}}))
    return run


@pytest.fixture(scope="module")
def exported(run_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """`python -m export RUN --variants fp16,int8`, in-process; validation defaults to the run's own split."""
    from click.testing import CliRunner

    from cassava_edge_export.cli import main

    out = tmp_path_factory.mktemp("models")
    args = [str(run_folder), "--output", str(out), "--name", "tiny", "--variants", "fp16,int8",
            "--calibration", str(DATA_DIR / "cassava" / "train_images"), "--calibration-count", "4",
            "--int8-configs", INT8_CONFIGS]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out, result.output


@pytest.fixture(scope="module")
def keras_model(run_folder: Path) -> Any:
    import keras

    return keras.saving.load_model(run_folder / "best.keras")


def _props(path: Path) -> dict[str, str]:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map


def _absolute_paths(value: Any) -> list[str]:
    """Every string in parsed JSON that is an absolute path (a model must carry none of its exporting machine)."""
    if isinstance(value, str):
        return [value] if value.startswith("/") or value[1:3] in (":\\", ":/") else []
    if isinstance(value, dict):
        value = list(value.values())
    return [path for item in value for path in _absolute_paths(item)] if isinstance(value, list) else []


def _validation_photos(run_folder: Path) -> list[Path]:
    ids = (run_folder / "validation_ids.txt").read_text().split()
    return [DATA_DIR / "cassava" / "train_images" / image_id for image_id in ids]


def _parity_inputs(run_folder: Path) -> np.ndarray:
    from cassava_edge_export.photos import crop_photos

    real = crop_photos(_validation_photos(run_folder), "center", SHORT_SIDE, CROP).as_float()
    noise = np.random.default_rng(1).uniform(0, 255, (4, CROP, CROP, 3)).astype(np.float32)
    return np.concatenate([real, noise])


def _perturb_final_dense(source: Path, target: Path) -> None:
    """Add noise of 1% of the largest weight to the (1280, 5) kernel of the final Dense layer."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(source))
    kernels = [t for t in model.graph.initializer if list(t.dims) == [1280, len(CASSAVA_LABELS)]]
    assert len(kernels) == 1, [list(t.dims) for t in model.graph.initializer if len(CASSAVA_LABELS) in t.dims]
    kernel = numpy_helper.to_array(kernels[0])
    noise = np.random.default_rng(0).normal(0, 0.01 * np.abs(kernel).max(), kernel.shape).astype(kernel.dtype)
    kernels[0].CopyFrom(numpy_helper.from_array(kernel + noise, kernels[0].name))
    onnx.save(model, str(target))


# -- the export --------------------------------------------------------------------------------------------------


@needs_data
def test_export_writes_fp32_fp16_int8_and_a_report(exported: tuple[Path, str]) -> None:
    import onnx

    out, log = exported
    assert sorted(p.name for p in out.iterdir()) == [
        "tiny.fp16.onnx", "tiny.int8.onnx", "tiny.onnx", "tiny.variants.json"]  # no temporary folder left
    for path in out.glob("*.onnx"):
        model = onnx.load(str(path), load_external_data=False)
        assert {o.domain: o.version for o in model.opset_import}[""] == 17
        dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
        assert dims == ["batch", CROP, CROP, 3], path.name
    report = json.loads((out / "tiny.variants.json").read_text())
    assert set(report["files"]) == {"fp32", "fp16", "int8"}
    for precision, entry in report["files"].items():
        assert entry["file_size_bytes"] == (out / entry["file"]).stat().st_size
        for key in ("max_softmax_diff_vs_fp32", "top1_agreement_vs_fp32", "accuracy", "latency_ms_per_batch"):
            assert isinstance(entry[key], float), (precision, key)
    assert report["files"]["int8"]["config"] in INT8_CONFIGS.split(",")
    candidates = {c["config"]: c for c in report["int8_candidates"]}
    assert set(candidates) == set(INT8_CONFIGS.split(","))
    # QDQ files hold standard ONNX operators only (other runtimes load them); QOperator ones do not.
    for config in candidates.values():  # QDQ: standard ONNX operators only, so other runtimes load the files
        assert config["nonstandard_ops"] == [], config
    assert report["files"]["int8"]["file_size_bytes"] < report["files"]["fp32"]["file_size_bytes"] / 3
    assert report["parity"]["max_softmax_diff"] <= 1e-4 and report["parity"]["photos"] == 8
    assert report["validation"]["photos"] == 10 and report["refused"] == {}
    assert "parity with Keras" in log and "int8: kept" in log


@needs_data
def test_metadata_round_trips_through_the_runtime_schema(exported: tuple[Path, str], run_folder: Path) -> None:
    out, _ = exported
    sha = hashlib.sha256((run_folder / "best.keras").read_bytes()).hexdigest()
    report = json.loads((out / "tiny.variants.json").read_text())
    for precision, name in (("fp32", "tiny.onnx"), ("fp16", "tiny.fp16.onnx"), ("int8", "tiny.int8.onnx")):
        meta = ModelMetadata.from_onnx_props(_props(out / name), source=name)
        assert meta.precision == precision
        assert meta.labels == CASSAVA_LABELS and len(meta.label_names) == 5
        assert meta.crop_size == (CROP, CROP) and meta.photo.short_side == SHORT_SIDE
        assert (meta.input.name, meta.output_name) == (INPUT_NAME, OUTPUT_NAME)
        assert meta.input.value_range == (0.0, 255.0)
        assert (meta.default_scan, meta.default_tta) == (DEFAULT_SCAN, DEFAULT_TTA)
        prov = meta.provenance
        assert prov["checkpoint"]["sha256"] == sha
        assert prov["training_config"]["crop_size"] == CROP
        # The figures of exactly the exported checkpoint.
        assert prov["validation_metrics"] == json.loads((run_folder / "best.metrics.json").read_text())
        assert prov["validation_metrics"]["checkpoint"] == prov["checkpoint"]["file"]
        assert prov["dataset"]["validation"]["count"] == 10
        assert set(prov["versions"]) >= {"tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime"}
        assert prov["exported_at"].endswith("+00:00")
        assert {"file": name, **prov["measured"]} == report["files"][precision]
        assert prov["measured"]["file_size_bytes"] == (out / name).stat().st_size
        # The export was given absolute paths (tmp folders, DATA_DIR): it writes them relative to its folder.
        assert _absolute_paths(prov) == [], _absolute_paths(prov)
        assert prov["training_config"]["data"] == [os.path.relpath(DATA_DIR / "cassava")]
    assert _absolute_paths(report) == [], _absolute_paths(report)
    int8 = ModelMetadata.from_onnx_props(_props(out / "tiny.int8.onnx")).provenance
    assert int8["calibration"]["photos"] == 4 and int8["calibration"]["excluded_validation_ids"] == 10


@needs_data
def test_parity_check_passes_on_the_export(exported: tuple[Path, str], keras_model: Any, run_folder: Path) -> None:
    from cassava_edge_export.parity import check_parity

    difference = check_parity(keras_model, exported[0] / "tiny.onnx", _parity_inputs(run_folder))
    assert 0.0 <= difference <= 1e-4


@needs_data
def test_parity_check_fails_for_a_perturbed_final_dense(
    exported: tuple[Path, str], keras_model: Any, run_folder: Path, tmp_path: Path
) -> None:
    from cassava_edge_export.errors import ParityError
    from cassava_edge_export.parity import check_parity

    altered = tmp_path / "altered.onnx"
    _perturb_final_dense(exported[0] / "tiny.onnx", altered)
    with pytest.raises(ParityError, match="largest softmax difference"):
        check_parity(keras_model, altered, _parity_inputs(run_folder))


@needs_data
def test_export_that_fails_parity_exits_1_and_writes_nothing(
    run_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnx
    from click.testing import CliRunner

    import cassava_edge_export.pipeline as export_pipeline
    from cassava_edge_export.cli import main

    real_convert = export_pipeline.keras_to_onnx

    def broken_convert(model: Any, input_name: str) -> onnx.ModelProto:
        good, bad = tmp_path / "good.onnx", tmp_path / "bad.onnx"
        onnx.save(real_convert(model, input_name), str(good))
        _perturb_final_dense(good, bad)
        return onnx.load(str(bad))

    monkeypatch.setattr(export_pipeline, "keras_to_onnx", broken_convert)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, [str(run_folder), "--output", str(out)])
    assert result.exit_code == 1, result.output
    assert "ONNX and Keras disagree" in result.output and "Traceback" not in result.output
    assert list(out.iterdir()) == []  # not even the temporary folder


@needs_data
def test_int8_agrees_with_fp32_through_the_classifier(exported: tuple[Path, str], run_folder: Path) -> None:
    from cassava_edge import Classifier

    out, _ = exported
    picked = Classifier(model=out, provider="cpu")  # a folder: the runtime picks int8 for the CPU
    assert picked.metadata.precision == "int8"
    fp32 = Classifier(model=out / "tiny.onnx", provider="cpu")
    photos = _validation_photos(run_folder)
    int8_labels = [r.label for r in picked.classify_many(photos)]
    fp32_labels = [r.label for r in fp32.classify_many(photos)]
    # The default plan's random zoom-in views at 64 px can bring a photo close to a tie; one flip in ten is that,
    # more would be a quantisation fault (the export's own check found every crop's top-1 unchanged).
    assert sum(a != b for a, b in zip(int8_labels, fp32_labels)) <= 1, (int8_labels, fp32_labels)


@needs_data
def test_fp16_keeps_float32_inputs_and_outputs(exported: tuple[Path, str]) -> None:
    import onnx
    import onnxruntime as ort

    path = exported[0] / "tiny.fp16.onnx"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [(i.name, i.type) for i in session.get_inputs()] == [("image", "tensor(float)")]
    assert [(o.name, o.type) for o in session.get_outputs()] == [("probabilities", "tensor(float)")]
    weights = onnx.load(str(path)).graph.initializer
    assert sum(t.data_type == onnx.TensorProto.FLOAT16 for t in weights) > 50  # the weights really are fp16
    probs = session.run(None, {"image": np.full((2, CROP, CROP, 3), 120, np.float32)})[0]
    assert probs.dtype == np.float32 and probs.shape == (2, 5)


# -- choosing the int8 configuration ------------------------------------------------------------------------------


def _candidate(config: str, latency: float, loss: float, agreement: float = 1.0) -> Figures:
    return Figures(precision="int8", file_size_bytes=1000, max_softmax_diff_vs_fp32=0.01,
                   top1_agreement_vs_fp32=agreement, accuracy=0.9 - loss / 100, accuracy_loss_points=loss,
                   latency_ms_per_batch=latency, latency_batch_size=4, config=config)


def test_int8_choice_is_the_fastest_within_one_point() -> None:
    candidates = [_candidate("a", 30.0, 0.0), _candidate("b", 20.0, 1.0), _candidate("c", 10.0, 1.5)]
    chosen, _ = choose_int8(candidates, force=False)
    assert chosen is not None and chosen.config == "b"


def test_int8_choice_treats_near_equal_latencies_as_ties() -> None:
    candidates = [_candidate("closer", 20.5, 0.0, agreement=0.99), _candidate("fast", 20.0, 0.0, agreement=0.98)]
    chosen, _ = choose_int8(candidates, force=False)
    assert chosen is not None and chosen.config == "closer"


def test_int8_choice_skips_configurations_that_disagree_with_fp32() -> None:
    # Same accuracy, but the fast one changes the top-1 class of 29% of the crops: a broken quantisation.
    candidates = [_candidate("per-tensor", 10.0, 0.0, agreement=0.71), _candidate("per-channel", 20.0, 0.0, 0.99)]
    chosen, _ = choose_int8(candidates, force=False)
    assert chosen is not None and chosen.config == "per-channel"


def test_int8_losing_more_than_one_point_is_refused_unless_forced() -> None:
    candidates = [_candidate("a", 10.0, 3.0), _candidate("b", 20.0, 2.0)]
    chosen, why = choose_int8(candidates, force=False)
    assert chosen is None and "2.00 accuracy points" in why and "--force" in why
    forced, _ = choose_int8(candidates, force=True)
    assert forced is not None and forced.config == "b"


# -- joined models: one graph, the mean of several checkpoints' probabilities ------------------------------------


@pytest.fixture(scope="module")
def second_run(run_folder: Path, keras_model: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run folder again with another head (noise of half the largest weight): a second model of the same
    crop and photo scale that answers differently."""
    import shutil

    import keras

    run = tmp_path_factory.mktemp("second") / "run"
    shutil.copytree(run_folder, run)
    model = keras.saving.load_model(run_folder / "best.keras")
    head = model.get_layer("probabilities")
    kernel, bias = head.get_weights()
    noise = np.random.default_rng(2).normal(0, 0.5 * np.abs(kernel).max(), kernel.shape)
    head.set_weights([kernel + noise.astype(kernel.dtype), bias])
    model.save(run / "best.keras")
    return run


@pytest.fixture(scope="module")
def joined(run_folder: Path, second_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`python -m export RUN --join SECOND --variants int8`: the folder it wrote."""
    from click.testing import CliRunner

    from cassava_edge_export.cli import main

    out = tmp_path_factory.mktemp("joined")
    args = [str(run_folder), "--join", str(second_run), "--output", str(out), "--variants", "int8",
            "--calibration", str(DATA_DIR / "cassava" / "train_images"), "--calibration-count", "4",
            "--int8-configs", "qdq-u8s8-per-channel-reduce-range"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out


@needs_data
def test_join_exports_one_graph_answering_the_mean_of_its_members(
    run_folder: Path, second_run: Path, keras_model: Any, joined: Path
) -> None:
    import keras
    import onnx
    import onnxruntime as ort

    from cassava_edge_export.measure import onnx_probabilities
    from cassava_edge_export.source import sha256_of
    from cassava_edge_export.trust import with_feature_output

    fp32, int8 = joined / "cassava-lite0-lite0.onnx", joined / "cassava-lite0-lite0.int8.onnx"  # named after both
    assert fp32.is_file() and int8.is_file()

    crops = _parity_inputs(run_folder)
    first = keras_model.predict(crops, verbose=0)
    second = keras.saving.load_model(second_run / "best.keras").predict(crops, verbose=0)
    assert np.abs(first - second).max() > 0.05  # the members disagree, so the mean is not either of them
    np.testing.assert_allclose(onnx_probabilities(fp32, crops), (first + second) / 2, atol=1e-4)

    meta = ModelMetadata.from_onnx_props(_props(fp32))
    members = meta.provenance["members"]
    assert [m["checkpoint"]["sha256"] for m in members] == [sha256_of(run_folder / "best.keras"),
                                                            sha256_of(second_run / "best.keras")]
    assert meta.provenance["validation_metrics"] is None  # no one member's training figures describe the pair
    from cassava_edge.commands.info import member_lines

    [(heading, text)] = member_lines(meta.provenance)  # what `cassava-edge info` prints
    assert heading == "joins" and text.startswith("the mean of 2 models' probabilities") and "efficientnet-lite0" in text
    assert member_lines({"checkpoint": {}}) == []  # a single model's info has no such line
    assert _absolute_paths(meta.provenance) == []
    # The trust head reads both members' pooled features, in the fp32 and in the quantised graph.
    for path in (fp32, int8):
        probe = with_feature_output(onnx.load(str(path)))
        session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
        pooled = session.run([probe.graph.output[-1].name], {INPUT_NAME: crops[:2]})[0]
        assert pooled.shape == (2, 2 * 1280)


@needs_data
def test_a_member_of_a_joined_file_exports_alone_with_the_canonical_look(
    run_folder: Path, second_run: Path, joined: Path, tmp_path: Path
) -> None:
    """`--member 1 --look roboflow`: the second checkpoint's own answers, its provenance, and the look in the
    metadata, which the export's own figures and the runtime both apply."""
    import keras
    from click.testing import CliRunner

    from cassava_edge.classifier import Classifier
    from cassava_edge.labelled import read_ids, read_labelled
    from cassava_edge.looks import Look, roboflow_chain
    from cassava_edge_export.cli import main
    from cassava_edge_export.measure import onnx_probabilities
    from cassava_edge_export.source import sha256_of

    out = tmp_path / "member"
    args = [str(joined / "cassava-lite0-lite0.onnx"), "--member", "1", "--look", "roboflow", "--output", str(out),
            "--validation", str(DATA_DIR / "cassava"), "--validation-list", str(run_folder / "validation_ids.txt")]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "parity with the member inside the joined graph" in result.output
    fp32 = out / "cassava-lite0.onnx"  # named after the member's own backbone

    crops = _parity_inputs(run_folder)
    second = keras.saving.load_model(second_run / "best.keras").predict(crops, verbose=0)
    np.testing.assert_allclose(onnx_probabilities(fp32, crops), second, atol=1e-4)

    meta = ModelMetadata.from_onnx_props(_props(fp32))
    assert meta.look == Look() and meta.schema_version == 4
    assert meta.provenance["checkpoint"]["sha256"] == sha256_of(second_run / "best.keras")
    assert meta.provenance["extracted_from"]["member"] == 1
    assert meta.provenance["extracted_from"]["sha256"] == sha256_of(joined / "cassava-lite0-lite0.onnx")
    assert meta.provenance["members"] is None  # one model, not a joined one
    assert _absolute_paths(meta.provenance) == []

    # The runtime gives every photo the look: the same answer as the chained photo scored without it.
    photos = _validation_photos(run_folder)
    # No TTA and no minimum confidence: the export measures crops without TTA, and every answer counts.
    with_look = Classifier(fp32, provider="cpu", tta="none", min_confidence=0.0)
    without = Classifier(fp32, provider="cpu", tta="none", min_confidence=0.0, look=False)
    for photo in photos[:3]:
        rgb = with_look.load(photo)
        chained = without.classify(roboflow_chain(rgb)).probabilities
        assert with_look.classify(rgb).probabilities == pytest.approx(chained, abs=1e-6)
        assert without.classify(rgb).probabilities != pytest.approx(chained, abs=1e-6)
    # ... and the accuracy the export measured is the runtime's with the look on the validation photos.
    labelled = read_labelled(DATA_DIR / "cassava", ids=read_ids(run_folder / "validation_ids.txt"))
    runtime_accuracy = float(np.mean([with_look.classify(p.path).label_index == p.label for p in labelled]))
    assert meta.provenance["measured"]["accuracy"] == pytest.approx(runtime_accuracy)


@needs_data
def test_an_exported_onnx_model_joins_a_checkpoint_at_the_onnx_level(
    run_folder: Path, second_run: Path, keras_model: Any, joined: Path, tmp_path: Path
) -> None:
    """`--join MODEL.onnx`: a member whose Keras checkpoint is gone (here the second model, taken out of the joined
    file) joins a checkpoint as it is. The file answers the members' mean, records the ONNX file as that member,
    and gives the member back unchanged with --member."""
    import keras
    from click.testing import CliRunner

    from cassava_edge_export.cli import main
    from cassava_edge_export.measure import onnx_probabilities
    from cassava_edge_export.source import sha256_of

    second_onnx = tmp_path / "second" / "cassava-lite0.onnx"
    runner = CliRunner()
    result = runner.invoke(main, [str(joined / "cassava-lite0-lite0.onnx"), "--member", "1", "-o", str(second_onnx)],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    second_onnx.with_name("cassava-lite0.variants.json").unlink()

    out = tmp_path / "mixed"
    result = runner.invoke(main, [str(run_folder), "--join", str(second_onnx), "-o", str(out), "--name", "mixed"],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "at the ONNX level" in result.output and "parity with the members' mean" in result.output
    crops = _parity_inputs(run_folder)
    first = keras_model.predict(crops, verbose=0)
    second = keras.saving.load_model(second_run / "best.keras").predict(crops, verbose=0)
    np.testing.assert_allclose(onnx_probabilities(out / "mixed.onnx", crops), (first + second) / 2, atol=1e-4)

    members = ModelMetadata.from_onnx_props(_props(out / "mixed.onnx")).provenance["members"]
    assert [m["checkpoint"]["sha256"] for m in members] == [sha256_of(run_folder / "best.keras"), sha256_of(second_onnx)]
    assert members[1]["training_config"]["backbone"] == "efficientnet-lite0"

    again = tmp_path / "again.onnx"
    result = runner.invoke(main, [str(out / "mixed.onnx"), "--member", "1", "-o", str(again)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert np.array_equal(onnx_probabilities(again, crops), onnx_probabilities(second_onnx, crops))

    # A joined file joins only member by member.
    _assert_one_line_error(runner.invoke(main, [str(run_folder), "--join", str(out / "mixed.onnx"), "-o",
                                                str(tmp_path / "no")]), "itself a joined model", "--member")


def test_member_export_refuses_what_is_not_a_member(tmp_path: Path, tiny_model: Path) -> None:
    out = str(tmp_path / "out")
    _assert_one_line_error(_run_export(str(tiny_model), "-o", out), "pass --member N")
    _assert_one_line_error(_run_export(str(tiny_model), "--member", "0", "-o", out), "not a joined model")
    _assert_one_line_error(_run_export(str(tmp_path / "missing.onnx"), "--member", "0", "-o", out), "no such")
    keras_file = tmp_path / "model.keras"
    keras_file.write_bytes(b"PK")
    _assert_one_line_error(_run_export(str(keras_file), "--member", "0", "-o", out), "takes a joined .onnx")
    assert not (tmp_path / "out").exists()


def test_join_refuses_the_same_checkpoint_twice_and_another_photo_scale(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    with zipfile.ZipFile(run / "best.keras", "w") as archive:
        archive.writestr("config.json", "{}")
    (run / "config.json").write_text(json.dumps({"photo_short_side": SHORT_SIDE, "crop_size": CROP}))
    other = tmp_path / "other"
    other.mkdir()
    (other / "best.keras").write_bytes((run / "best.keras").read_bytes())
    (other / "config.json").write_text(json.dumps({"photo_short_side": 2 * SHORT_SIDE, "crop_size": CROP}))
    out = str(tmp_path / "out")
    _assert_one_line_error(_run_export(str(run), "--join", str(run / "best.keras"), "-o", out), "joined twice")
    _assert_one_line_error(_run_export(str(run), "--join", str(other), "-o", out), "photo_short_side 150")
    _assert_one_line_error(_run_export(str(run), "--join", str(tmp_path / "missing"), "-o", out), "no such run")
    assert not (tmp_path / "out").exists()


# -- bad input ----------------------------------------------------------------------------------------------------


def _run_export(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m export` in a fresh process: what a user sees, traceback or not."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, "-m", "export", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120, env=env)


def _assert_one_line_error(result: Any, *fragments: str) -> None:
    output = result.stderr if isinstance(result, subprocess.CompletedProcess) else result.output
    lines = [line for line in output.splitlines() if line.strip() and not line.startswith(("I0000", "WARNING"))]
    assert (result.returncode if isinstance(result, subprocess.CompletedProcess) else result.exit_code) == 2
    assert "Traceback" not in output
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_bad_paths_give_one_line_errors_and_exit_2(tmp_path: Path) -> None:
    text = tmp_path / "notes.keras"
    text.write_text("not a model")
    empty_run = tmp_path / "run"
    empty_run.mkdir()
    bare = tmp_path / "bare" / "model.keras"
    bare.parent.mkdir()
    with zipfile.ZipFile(bare, "w") as archive:
        archive.writestr("config.json", "{}")
    out = str(tmp_path / "out")
    _assert_one_line_error(_run_export(str(text), "-o", out), "not a Keras model")
    _assert_one_line_error(_run_export(str(empty_run), "-o", out), "without best.keras")
    _assert_one_line_error(_run_export(str(bare), "-o", out), "--photo-short-side")
    _assert_one_line_error(_run_export(str(bare), "-o", out, "--photo-short-side", "75", "--variants", "int8",
                                       "--calibration", str(tmp_path / "missing")), "no such calibration folder")
    assert not (tmp_path / "out").exists()


def test_models_that_break_the_contract_are_refused(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    import keras
    from click.testing import CliRunner

    from cassava_edge_export.cli import main

    inputs = keras.Input((CROP, CROP, 3), name="image")
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    three = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(pooled))
    three.save(tmp_path / "three.keras")
    junk = tmp_path / "junk.keras"
    with zipfile.ZipFile(junk, "w") as archive:
        archive.writestr("config.json", "{}")

    runner = CliRunner()
    out = str(tmp_path / "out")
    common = ["-o", out, "--photo-short-side", str(SHORT_SIDE)]
    _assert_one_line_error(runner.invoke(main, [str(tmp_path / "three.keras"), *common]), "5 classes")
    _assert_one_line_error(runner.invoke(main, [str(junk), *common]), "not a loadable Keras model")
    assert not (tmp_path / "out").exists()


# -- trust: the not-cassava head, calibration and minimum confidence ----------------------------------------------


def _small_not_cassava_folder(root: Path, per_kind: int = 8) -> Path:
    """A not-cassava folder (images/ + SOURCES.csv) of a few kinds, linked from the shared photos."""
    source = DATA_DIR / "not-cassava"
    with open(source / "SOURCES.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    chosen = [row for kind in ("cat", "car", "maize") for row in
              [r for r in rows if r["category"].split()[0] == kind][:per_kind]]
    (root / "images").mkdir(parents=True)
    for row in chosen:
        (root / "images" / row["file"]).symlink_to(source / "images" / row["file"])
    with open(root / "SOURCES.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(chosen)
    return root


@needs_data
def test_calibrate_adds_the_not_cassava_head_and_calibration_to_every_variant(
    exported: tuple[Path, str], run_folder: Path, tmp_path: Path
) -> None:
    import shutil

    import onnx

    from cassava_edge import Classifier
    from cassava_edge.contract import NOT_CASSAVA_NAME
    from cassava_edge.labelled import LabelledPhoto
    from cassava_edge_export.calibrate import calibrate

    models = tmp_path / "models"
    shutil.copytree(exported[0], models)
    others = _small_not_cassava_folder(tmp_path / "not-cassava")
    ids = (run_folder / "validation_ids.txt").read_text().split()
    labels = {row["image_id"]: int(row["label"]) for row in csv.DictReader(open(DATA_DIR / "cassava" / "train.csv"))}
    validation = [LabelledPhoto(DATA_DIR / "cassava" / "train_images" / i, labels[i]) for i in ids]
    report = calibrate(models, "tiny", validation, [DATA_DIR / "cassava"], others, cassava_count=24,
                       echo=lambda line: None)

    assert set(report["not_cassava"]["leave_one_kind_out"]) == {"cat", "car", "maize"}
    assert json.loads((models / "tiny.trust.json").read_text())["variants"].keys() == {"fp32", "fp16", "int8"}
    assert _absolute_paths(json.loads((models / "tiny.trust.json").read_text())) == []
    not_cassava = sorted((others / "images").iterdir())
    for name in ("tiny.onnx", "tiny.fp16.onnx", "tiny.int8.onnx"):
        graph = onnx.load(str(models / name)).graph
        assert [o.name for o in graph.output] == [OUTPUT_NAME, NOT_CASSAVA_NAME]
        meta = ModelMetadata.from_onnx_props(_props(models / name))
        assert meta.schema_version == 2 and meta.calibration is not None and meta.calibration.temperature > 0
        assert meta.trust is not None and meta.trust.not_cassava_output == NOT_CASSAVA_NAME
        assert 0.5 <= meta.trust.not_cassava_threshold <= 1.0 and meta.trust.min_short_side == 64
        assert meta.provenance["trust"]["validation"]["photos"] == len(validation)
        assert _absolute_paths(meta.provenance) == [], _absolute_paths(meta.provenance)

        classifier = Classifier(models / name, provider="cpu")
        cassava = list(classifier.classify_many([p.path for p in validation]))
        # The threshold lets through every cassava validation photo (1% of 10 photos rounds down to none) …
        assert all(r.status != "not_cassava" for r in cassava), [(r.source, r.not_cassava_score) for r in cassava]
        # … and the head, fitted on these very photos, flags nearly all of them.
        flagged = [r.status == "not_cassava" for r in classifier.classify_many(not_cassava)]
        assert np.mean(flagged) >= 0.8, name
    assert all("flagged_linear_only" in row for row in report["not_cassava"]["leave_one_kind_out"].values())

    # Calibrating again replaces the head instead of stacking a second one.
    again = calibrate(models, "tiny", validation, [DATA_DIR / "cassava"], others, cassava_count=24,
                      echo=lambda line: None)
    assert again["variants"].keys() == report["variants"].keys()
    graph = onnx.load(str(models / "tiny.onnx")).graph
    assert [o.name for o in graph.output] == [OUTPUT_NAME, NOT_CASSAVA_NAME]
    assert [n.op_type for n in graph.node if n.output[0] == NOT_CASSAVA_NAME] == ["Max"]

    # A deployment-prior bias written before (python -m export.prior) stays, and the figures are measured with it:
    # a bias that makes every answer CMD gives CMD a recall of 1 and the others none.
    from cassava_edge_export.prior import write_class_bias

    write_class_bias(models / "tiny.onnx", {label: 50.0 if label == "CMD" else 0.0 for label in CASSAVA_LABELS}, "CMD")
    calibrate(models, "tiny", validation, [DATA_DIR / "cassava"], others, cassava_count=24, echo=lambda line: None)
    meta = ModelMetadata.from_onnx_props(_props(models / "tiny.onnx"))
    assert meta.calibration.class_bias == (0.0, 0.0, 0.0, 50.0, 0.0) and meta.calibration.prior == "CMD"
    assert meta.provenance["trust"]["validation"]["recall"] == {label: float(label == "CMD") for label in CASSAVA_LABELS}
    answers = Classifier(models / "tiny.onnx", provider="cpu", min_confidence=0.0).classify_many(
        [p.path for p in validation])
    assert {r.label for r in answers} == {"CMD"}


def test_default_int8_configurations_are_portable_and_vnni_independent() -> None:
    from cassava_edge_export.variants import DEFAULT_INT8_CONFIGS, int8_config

    assert DEFAULT_INT8_CONFIGS and all(c.portable and c.vnni_independent for c in DEFAULT_INT8_CONFIGS)
    # u8 activations times s8 weights at full range is what saturates on x86 CPUs without VNNI.
    assert not int8_config("qdq-u8s8-per-channel").vnni_independent
    assert not int8_config("qoperator-u8s8-per-channel").portable
    assert int8_config("qdq-u8u8-per-channel").vnni_independent
