"""The child-process side of the benchmark: one measurement per process, written back as JSON.

Per photo the four stages of `cassava_edge.Classifier` are timed back to back (read+decode, prepare, inference,
postprocess), so the stage times add up to the photo's latency. The reference Keras pipeline (reference.py) is
timed by the same code.
"""

from __future__ import annotations

import json
import time
import traceback
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from cassava_edge.errors import CassavaEdgeError
from .machine import current_rss, measure_matmul, memory_use

STAGES = ("load", "prepare", "infer", "postprocess")


class Pipeline(Protocol):
    """The four timed stages of one photo."""

    def load(self, path: str) -> Any: ...

    def prepare(self, image: Any, path: str) -> Any: ...

    def counts(self, prepared: Any) -> tuple[int, int]:
        """(scan crops, views) of a prepared photo."""
        ...

    def infer(self, prepared: Any) -> np.ndarray: ...

    def postprocess(self, path: str, probs: np.ndarray, prepared: Any) -> int:
        """The top-1 class index."""
        ...


def run_worker(spec_path: str, result_path: str) -> None:
    """Child-process entry: run the spec's measurement and write its result as JSON."""
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    try:
        if spec["kind"] == "roofline":
            result = measure_matmul(spec["seconds"])
        elif spec["kind"] == "runtime":
            result = time_runtime(spec)
        else:
            from .reference import time_keras  # TensorFlow is imported in this child process only

            result = time_keras(spec)
    except CassavaEdgeError as exc:  # ProviderError (CUDA missing), a missing variant, d4 on non-square crops
        result = {"status": "skipped", "reason": str(exc)}
    except Exception as exc:
        lines = traceback.format_exc().strip().splitlines()
        result = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}", "traceback": lines[-12:]}
    result["kind"] = spec["kind"]
    Path(result_path).write_text(json.dumps(result), encoding="utf-8")


def time_pipeline(pipeline: Pipeline, plan: dict[str, Any]) -> dict[str, Any]:
    first = time_photo(pipeline, plan["first"])
    for path in plan["warmup"]:
        time_photo(pipeline, path)
    return {"first_call_s": first["total_s"], "first_call_infer_s": first["infer_s"],
            "per_photo": [time_photo(pipeline, path) for path in plan["timed"]]}


def time_photo(pipeline: Pipeline, path: str) -> dict[str, Any]:
    clock = time.perf_counter
    start = clock()
    image = pipeline.load(path)
    loaded = clock()
    prepared = pipeline.prepare(image, path)
    ready = clock()
    probs = pipeline.infer(prepared)
    inferred = clock()
    top1 = pipeline.postprocess(path, probs, prepared)
    done = clock()
    crops, views = pipeline.counts(prepared)
    return {
        "source": path, "total_s": done - start, "load_s": loaded - start, "prepare_s": ready - loaded,
        "infer_s": inferred - ready, "postprocess_s": done - inferred, "scan_crops": crops, "views": views,
        "top1": top1,
    }


class RuntimePipeline:
    def __init__(self, classifier: Any) -> None:
        self.classifier = classifier

    def load(self, path: str) -> np.ndarray:
        return self.classifier.load(path)

    def prepare(self, image: np.ndarray, path: str) -> Any:
        return self.classifier.prepare(image, name=path)

    def counts(self, prepared: Any) -> tuple[int, int]:
        return len(prepared.boxes), prepared.num_views

    def infer(self, prepared: Any) -> np.ndarray:
        return self.classifier.infer(prepared.views)

    def postprocess(self, path: str, probs: np.ndarray, prepared: Any) -> int:
        # The top class of the probabilities, whatever the status: label_index is None for an uncertain or
        # not_cassava photo, and a benchmark times photos whatever they show.
        result = self.classifier.postprocess(path, probs, prepared)
        best_label = max(result.probabilities, key=result.probabilities.__getitem__)
        return list(result.probabilities).index(best_label)


def time_runtime(spec: dict[str, Any]) -> dict[str, Any]:
    from cassava_edge.classifier import Classifier

    baseline = current_rss()
    start = time.perf_counter()
    classifier = Classifier(
        model=spec["model"], provider=spec["provider"], variant=spec["variant"], tta=spec["tta"],
        scan=spec["scan"], threads=spec["threads"], chunk_size=spec["chunk_size"], seed=spec["seed"],
    )
    session_s = time.perf_counter() - start
    timings = time_pipeline(RuntimePipeline(classifier), spec["plan"])
    meta = classifier.metadata
    return {
        "status": "ok",
        "session_creation_s": session_s,
        **timings,
        "memory": memory_use(baseline),
        "model": {"path": str(classifier.session.path), "precision": meta.precision,
                  "crop_size": list(meta.crop_size), "photo_short_side": meta.photo.short_side},
        "device": classifier.session.device,
        "providers_loaded": list(classifier.session.providers),
        "session": classifier.session.describe(),
        "tta": classifier.tta.name,
        "views_per_crop": classifier.tta.views_per_crop,
        "scan": classifier.scan,
    }
