"""The latency benchmark (benchmarks/latency.py) and its FLOP counter (benchmarks/flops.py).

The benchmark runs end to end through its click command on a tiny ONNX model and two real photos, and the JSON it
writes is checked for completeness and internal consistency. The Keras comparison is marked slow (about 30 s):
deselect it with -m "not slow".
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cassava_edge_benchmarks.cli import benchmark_command
from tests.datapaths import DATA_DIR, needs_data

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# -- FLOP counter -------------------------------------------------------------------------------------------------


def conv_gemm_model() -> onnx.ModelProto:
    """x [N,3,8,8] -> Conv 3->4 3x3 -> Relu -> depthwise Conv 3x3 (group 4) -> Flatten -> Gemm 256->10 -> MatMul 10->5.

    MACs per input: Conv 4*8*8 outputs x 3*3*3 = 6912; depthwise 4*8*8 x 1*3*3 = 2304; Gemm 256*10 = 2560;
    MatMul 10*5 = 50. Relu: 256 elementwise FLOPs.
    """
    rng = np.random.default_rng(0)

    def weight(name: str, shape: tuple[int, ...]) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1], group=4),
        helper.make_node("Flatten", ["c2"], ["flat"]),
        helper.make_node("Gemm", ["flat", "b", "c"], ["g"]),
        helper.make_node("MatMul", ["g", "m"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "conv_gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])],
        initializer=[weight("w1", (4, 3, 3, 3)), weight("w2", (4, 1, 3, 3)), weight("b", (256, 10)),
                     weight("c", (10,)), weight("m", (10, 5))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def test_flop_counter_counts_conv_depthwise_gemm_matmul() -> None:
    from cassava_edge_benchmarks.flops import count_model_flops

    count = count_model_flops(conv_gemm_model())
    assert count.macs_by_op == {"Conv": 6912 + 2304, "Gemm": 2560, "MatMul": 50}
    assert count.macs == 11826 and count.flops == 2 * 11826
    assert count.elementwise_flops == 256  # the Relu, kept out of the headline figure
    assert count.uncounted == []


@pytest.mark.parametrize("form", ["dynamic", "qdq", "qoperator"])
def test_flop_counter_gives_quantised_models_the_same_macs(tmp_path: Path, form: str) -> None:
    quantization = pytest.importorskip("onnxruntime.quantization")
    from cassava_edge_benchmarks.flops import count_flops

    source, quantised = tmp_path / "fp32.onnx", tmp_path / f"{form}.onnx"
    onnx.save(conv_gemm_model(), str(source))
    if form == "dynamic":  # ConvInteger, MatMulInteger
        quantization.quantize_dynamic(str(source), str(quantised), op_types_to_quantize=["Conv", "Gemm", "MatMul"])
    else:  # qdq: Conv/Gemm/MatMul between Q/DQ pairs; qoperator: QLinearConv, QGemm, QLinearMatMul

        class Reader(quantization.CalibrationDataReader):
            def __init__(self) -> None:
                rng = np.random.default_rng(1)
                self.batches = iter([{"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)} for _ in range(4)])

            def get_next(self) -> dict[str, np.ndarray] | None:
                return next(self.batches, None)

        quant_format = quantization.QuantFormat.QDQ if form == "qdq" else quantization.QuantFormat.QOperator
        quantization.quantize_static(str(source), str(quantised), Reader(), quant_format=quant_format)
    op_types = {node.op_type for node in onnx.load(str(quantised)).graph.node}
    expected_ops = {"dynamic": "ConvInteger", "qdq": "DequantizeLinear", "qoperator": "QLinearConv"}[form]
    assert expected_ops in op_types  # the quantiser really produced that form
    count = count_flops(quantised)
    assert count.macs == 11826
    assert count.uncounted == []


# -- the command ----------------------------------------------------------------------------------------------


def test_flop_counter_follows_nodes_listed_out_of_order() -> None:
    # onnxruntime's fp16 converter appends its input Cast after the nodes that read it; shapes must still be found.
    from cassava_edge_benchmarks.flops import count_model_flops

    model = conv_gemm_model()
    nodes = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(reversed(nodes))
    count = count_model_flops(model)
    assert count.macs == 11826 and not count.uncounted


def test_module_imports_stay_light() -> None:
    """`cassava-edge benchmark` must not pull TensorFlow, matplotlib or onnx into the CLI's start-up."""
    code = (
        "import sys, cassava_edge_benchmarks.latency; "
        "heavy = [m for m in ('tensorflow', 'keras', 'matplotlib', 'onnx', 'psutil') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    root = Path(__file__).resolve().parents[1]
    process = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert process.returncode == 0, process.stdout + process.stderr


def test_unknown_option_value_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(benchmark_command, ["--photos", str(tmp_path), "--tta", "flip,bogus"])
    assert result.exit_code == 2
    assert "bogus" in result.output


@pytest.fixture(scope="module")
def two_photos() -> list[Path]:
    folder = DATA_DIR / "cassava" / "train_images"
    photos = sorted(folder.glob("*.jpg"))[:2]
    if len(photos) < 2:
        pytest.skip(f"fewer than two photos in {folder}")
    return photos


def _run(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(benchmark_command, args, catch_exceptions=False)
    return result.exit_code, result.output


def _check_run(run: dict, views_per_photo: int, crops_per_photo: int, photos: list[Path]) -> None:
    """Everything a completed run must satisfy."""
    assert run["status"] == "ok", run.get("reason")
    lat = run["latency_s"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert lat["min"] <= lat["mean"] <= lat["max"]
    assert run["session_creation_s"] > 0 and run["first_call_s"] > 0
    assert run["photos"] == len(photos)
    assert [row["source"] for row in run["per_photo"]] == [str(p) for p in photos]
    for row in run["per_photo"]:
        stages = sum(row[f"{stage}_s"] for stage in ("load", "prepare", "infer", "postprocess"))
        assert all(row[f"{stage}_s"] > 0 for stage in ("load", "prepare", "infer"))
        assert stages <= row["total_s"] * (1 + 1e-9)
        assert row["views"] == views_per_photo and row["scan_crops"] == crops_per_photo
    mean_stages = sum(run["stages_s_per_photo"].values())
    assert mean_stages <= lat["mean"] * (1 + 1e-9)
    assert run["views_per_photo"] == views_per_photo and run["scan_crops_per_photo"] == crops_per_photo
    assert run["photos_per_s"] > 0
    assert run["views_per_s"] == pytest.approx(run["photos_per_s"] * run["views_per_photo"], rel=1e-9)
    assert run["photos_per_s"] == pytest.approx(len(photos) / sum(r["total_s"] for r in run["per_photo"]), rel=1e-9)
    memory = run["memory"]
    assert memory["peak_rss_mb"] >= memory["baseline_rss_mb"] > 0


@needs_data
def test_benchmark_end_to_end(tmp_path: Path, two_photos: list[Path]) -> None:
    from tests import tinymodel

    # 64x64 crops of photos scaled to short side 75: an 800x600 photo becomes 100x75, a 2x2 grid of crops.
    model = tinymodel.write_model(tmp_path / "quadrant64.onnx", size=64, short_side=75)
    report_path, chart_path = tmp_path / "bench.json", tmp_path / "bench.png"
    args = ["--model", str(model), *[arg for p in two_photos for arg in ("--photos", str(p))],
            "--count", "2", "--warmup", "0", "--provider", "cpu", "--provider", "cuda", "--tta", "flip,d4",
            "--chunk-size", "3", "--roofline", "--roofline-seconds", "0.2",
            "--json", str(report_path), "--chart", str(chart_path)]
    exit_code, output = _run(args)
    assert exit_code == 0, output
    report = json.loads(report_path.read_text())

    runs = {(run["requested"]["provider"], run["requested"]["tta"]): run for run in report["configurations"]}
    assert set(runs) == {("cpu", "flip"), ("cpu", "d4"), ("cuda", "flip"), ("cuda", "d4")}
    for tta, views_per_crop in (("flip", 2), ("d4", 8)):
        run = runs[("cpu", tta)]
        _check_run(run, views_per_photo=4 * views_per_crop, crops_per_photo=4, photos=two_photos)
        assert run["tta"] == tta and run["scan"] == "grid" and run["device"] == "cpu"
        assert run["session"]["chunk_size"] == 3
        flops = run["flops"]
        assert flops["macs_per_view"] == 64 * 64 * 3 * 5  # the quadrant model is one MatMul
        assert flops["gflop_per_photo"] == pytest.approx(flops["gflop_per_view"] * 4 * views_per_crop)
        assert flops["achieved_gflop_per_s"] > 0
        assert flops["roofline_fraction"] == pytest.approx(
            flops["achieved_gflop_per_s"] / report["roofline"]["best_gflop_per_s"])
    for tta in ("flip", "d4"):  # never silently run on the CPU
        run = runs[("cuda", tta)]
        assert run["status"] == "skipped"
        assert "CUDA" in run["reason"]
        assert "latency_s" not in run
    assert "skipped" in output and "p50" in output

    roofline = report["roofline"]
    assert roofline["status"] == "ok" and roofline["best_gflop_per_s"] >= roofline["median_gflop_per_s"] > 0
    machine = report["machine"]
    assert machine["cpu"] and machine["logical_cores"] >= 1 and machine["ram_gb"] > 0
    assert {"onnxruntime", "numpy", "opencv"} <= set(machine["versions"])
    assert machine["os"] and machine["python"]
    for words in ("--roofline", "--tta flip,d4", "--count 2", "--provider cpu --provider cuda"):
        assert words in report["command_line"]
    assert report["photos"]["timed"] == [str(p) for p in two_photos]
    assert chart_path.read_bytes()[:8] == PNG_MAGIC


@pytest.mark.slow
@needs_data
def test_benchmark_compares_with_keras(tmp_path: Path, two_photos: list[Path]) -> None:
    keras = pytest.importorskip("keras")
    from tests import tinymodel
    from cassava_edge_training.model import build_model

    normalization = keras.layers.Normalization(mean=[0.45, 0.5, 0.35], variance=[0.05, 0.05, 0.05])
    keras_path = tmp_path / "lite0-64.keras"
    build_model("efficientnet-lite0", 64, normalization, weights="none").save(keras_path)
    model = tinymodel.write_model(tmp_path / "quadrant64.onnx", size=64, short_side=75)
    report_path = tmp_path / "bench.json"
    args = ["--model", str(model), *[arg for p in two_photos for arg in ("--photos", str(p))],
            "--count", "2", "--warmup", "0", "--provider", "cpu", "--tta", "flip",
            "--compare-keras", str(keras_path), "--json", str(report_path)]
    exit_code, output = _run(args)
    assert exit_code == 0, output
    report = json.loads(report_path.read_text())
    (run,) = report["configurations"]
    (reference,) = report["keras_reference"]
    # The same plan on both sides: 2x2 grid of 64 crops x 2 flip views.
    _check_run(run, views_per_photo=8, crops_per_photo=4, photos=two_photos)
    _check_run(reference, views_per_photo=8, crops_per_photo=4, photos=two_photos)
    assert reference["model"]["crop_size"] == [64, 64] and reference["model"]["photo_short_side"] == 75
    comparison = run["keras"]
    assert comparison["status"] == "ok"
    assert comparison["speedup_mean"] == pytest.approx(reference["latency_s"]["mean"] / run["latency_s"]["mean"])
    assert comparison["speedup_p50"] == pytest.approx(reference["latency_s"]["p50"] / run["latency_s"]["p50"])
    agreed = sum(a["top1"] == b["top1"] for a, b in zip(run["per_photo"], reference["per_photo"]))
    assert comparison["top1_agreement"] == agreed / 2
    assert "tensorflow" in report["machine"]["versions"]
    assert "keras" in output


def test_the_seed_b3_reference_runs_its_own_plan_whatever_the_runtime_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A model whose plan has no TTA is still compared with the notebook's 4 crops x 4 views, not with a 4-view
    reference nobody ran; a .keras model is timed on each run's own plan."""
    from cassava_edge_benchmarks import harness

    specs: list[dict] = []

    def fake_worker(spec: dict, env: dict | None = None) -> dict:
        specs.append(spec)
        return {"status": "ok", "per_photo": [{"top1": 0}], "latency_s": {"mean": 8.0, "p50": 8.0}}

    monkeypatch.setattr(harness, "run_worker_process", fake_worker)
    monkeypatch.setattr(harness, "summarize", lambda per_photo: {})
    model = {"crop_size": [512, 512], "photo_short_side": 600}
    runs = [{"status": "ok", "tta": tta, "scan": "full", "model": model, "per_photo": [{"top1": 0}],
             "latency_s": {"mean": 0.5, "p50": 0.5}} for tta in ("none", "flip")]
    (reference,) = harness._run_keras("seed-b3", runs, {})
    assert [(spec["tta"], spec["scan"]) for spec in specs] == [("seed", "corners")]
    assert reference["requested"] == {"model": "seed-b3", "tta": "seed", "scan": "corners"}
    assert [run["keras"]["speedup_mean"] for run in runs] == [16.0, 16.0]
    specs.clear()
    harness._run_keras("own.keras", runs, {})
    assert [(spec["tta"], spec["scan"]) for spec in specs] == [("none", "full"), ("flip", "full")]


@needs_data
def test_benchmark_times_uncertain_and_not_cassava_photos(tmp_path: Path) -> None:
    """A benchmark times photos whatever their status (label_index is None for these two)."""
    from cassava_edge import Classifier

    not_cassava = sorted((DATA_DIR / "not-cassava" / "images").rglob("*.jpg"))[:1]
    leaves = sorted((DATA_DIR / "cassava" / "train_images").glob("*.jpg"))[:8]
    classifier = Classifier()
    statuses = {str(p): classifier.classify(str(p)).status for p in [*not_cassava, *leaves]}
    picked = [next((p for p, s in statuses.items() if s == wanted), None) for wanted in ("uncertain", "not_cassava")]
    if None in picked:
        pytest.skip(f"no uncertain and not_cassava photo among {sorted(set(statuses.values()))}")
    report_path = tmp_path / "bench.json"
    exit_code, output = _run([*[arg for p in picked for arg in ("--photos", p)], "--count", "2", "--warmup", "0",
                              "--provider", "cpu", "--tta", "none", "--json", str(report_path)])
    assert exit_code == 0, output
    (run,) = json.loads(report_path.read_text())["configurations"]
    assert run["status"] == "ok", run.get("reason")
    assert [row["source"] for row in run["per_photo"]] == picked


def test_benchmark_that_measured_nothing_writes_nothing(tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    photo = tmp_path / "leaf.jpg"
    from PIL import Image

    Image.new("RGB", (64, 64), (40, 120, 40)).save(photo)
    report_path, chart_path = tmp_path / "bench.json", tmp_path / "bench.png"
    result = CliRunner().invoke(benchmark_command, ["--model", str(broken), "--photos", str(photo), "--count", "1",
                                                    "--warmup", "0", "--provider", "cpu", "--json", str(report_path)])
    assert result.exit_code != 0
    assert "nothing written" in result.output
    assert not report_path.exists() and not chart_path.exists()


def test_benchmark_creates_the_folders_of_its_output_files(tmp_path: Path) -> None:
    """BENCHMARKS.md writes into `out/`, which a fresh clone lacks: the command runs as written."""
    from PIL import Image

    from tests import tinymodel

    model = tinymodel.write_model(tmp_path / "tiny.onnx")
    photo = tmp_path / "leaf.jpg"
    Image.new("RGB", (64, 48), (40, 120, 40)).save(photo)
    report_path, chart_path = tmp_path / "out" / "bench.json", tmp_path / "out" / "charts" / "bench.png"
    exit_code, output = _run(["--model", str(model), "--photos", str(photo), "--count", "1", "--warmup", "0",
                              "--provider", "cpu", "--tta", "none", "--json", str(report_path),
                              "--chart", str(chart_path)])
    assert exit_code == 0, output
    assert json.loads(report_path.read_text())["configurations"][0]["status"] == "ok"
    assert chart_path.read_bytes()[:8] == PNG_MAGIC

    blocked = tmp_path / "a-file"
    blocked.write_text("x")
    result = CliRunner().invoke(benchmark_command, ["--model", str(model), "--photos", str(photo),
                                                    "--json", str(blocked / "sub" / "bench.json")])
    assert result.exit_code == 2
    assert "--json" in result.output and "cannot write there" in result.output
    assert "Traceback" not in result.output


def test_benchmark_takes_a_bundled_model_by_name_as_every_command_does(tmp_path: Path) -> None:
    """The card's `--model cassava-lite0-512` works here too; an unknown name is one line naming the bundled ones."""
    from PIL import Image

    from cassava_edge.models import bundled_model_names

    photo = tmp_path / "leaf.jpg"
    # Big and colourful enough for a real model's trust checks to judge it (size, colour).
    pixels = np.random.default_rng(0).integers(0, 256, (150, 200, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(photo)
    result = CliRunner().invoke(benchmark_command, ["--model", "no-such-model", "--photos", str(photo)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "no-such-model: no such model file or folder (bundled models: " in result.output
    names = bundled_model_names()
    if not names:
        pytest.skip("no opt-in model bundled beside the default")
    report_path = tmp_path / "bench.json"
    exit_code, output = _run(["--model", names[0], "--photos", str(photo), "--count", "1", "--warmup", "0",
                              "--provider", "cpu", "--tta", "none", "--json", str(report_path)])
    assert exit_code == 0, output
    (run,) = json.loads(report_path.read_text())["configurations"]
    assert run["status"] == "ok", run.get("reason")
    assert Path(run["model"]["path"]).parent.name == names[0]
