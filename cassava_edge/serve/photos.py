"""The service's work on one photo, as plain functions with no web framework: read the request's options as the
CLI reads them, decode and prepare an upload, turn the model's rows into the JSON-lines row. `create_app` and a
Ray Serve deployment share them, so both answer exactly what `Classifier.classify` answers on the same bytes.

A request's photos are split at the seam `Classifier.classify` already has: `prepare_upload` (decode, crops,
TTA views), then the views of several photos may share onnxruntime runs (`infer_batch`), then `finish_row`.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import click
import numpy as np

from cassava_edge.classifier import Classifier
from cassava_edge.errors import ImageError, OptionError
from cassava_edge.imaging import decode_image
from cassava_edge.results import Classification, PreparedImage
from cassava_edge.scan import check_plan
from cassava_edge.tta import make_tta

# The source of a photo sent as a raw body, or as a multipart part without a file name.
UPLOAD_SOURCE = "upload"


class RequestOptionError(OptionError):
    """A query option the service does not know, or a value the CLI would refuse; names the option."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option = option


@dataclass(frozen=True)
class RequestOptions:
    """Per-request options; None is the Classifier's own (the model's default plan, its minimum confidence)."""

    tta: str | None = None
    scan: str | None = None
    top_k: int | None = None
    min_confidence: float | None = None


def option_types() -> dict[str, click.ParamType]:
    """The click types `cassava-edge classify` checks these options with: one definition for both front ends."""
    from cassava_edge.commands.classify import classify  # the CLI layer, read for its option types only

    names = RequestOptions.__dataclass_fields__
    return {param.name: param.type for param in classify.params if param.name in names}


def parse_options(query: Mapping[str, str]) -> RequestOptions:
    """The options in a request's query, converted and checked by the CLI's own option types; RequestOptionError
    naming the first unknown option or bad value."""
    types = option_types()
    values: dict[str, Any] = {}
    for name, text in query.items():
        if name not in types:
            raise RequestOptionError(name, f"unknown option (known: {', '.join(types)})")
        try:
            values[name] = types[name].convert(text, None, None)
        except click.BadParameter as exc:
            raise RequestOptionError(name, exc.message) from None
    return RequestOptions(**values)


class Plans:
    """Classifiers for each (tta, scan) a request asks for, sharing one onnxruntime session: a request's plan
    changes only how views are cut, not the model. Thread-safe; at most len(TTA) x len(SCAN) entries."""

    def __init__(self, classifier: Classifier) -> None:
        self.classifier = classifier
        self._planned: dict[tuple[str, str], Classifier] = {}
        self._lock = threading.Lock()

    def get(self, options: RequestOptions) -> Classifier:
        base = self.classifier
        tta = options.tta or base.tta.name
        scan = options.scan or base.scan
        if tta == base.tta.name and scan == base.scan:
            return base
        with self._lock:
            planned = self._planned.get((tta, scan))
            if planned is None:
                planned = copy.copy(base)  # the session, metadata and thresholds are shared, not copied
                planned.tta = make_tta(tta, crop_hw=base.metadata.crop_size, seed=base.seed)
                planned.scan = check_plan(scan)
                self._planned[(tta, scan)] = planned
            return planned


def prepare_upload(classifier: Classifier, data: bytes, source: str) -> PreparedImage:
    """An uploaded photo's bytes decoded and prepared as `Classifier.classify` does; ImageError with the reason.
    Only bytes: nothing here reads a path or fetches a URL, whatever the upload says."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"prepare_upload takes the upload's bytes, got {type(data).__name__}")
    rgb = decode_image(bytes(data), name=source, max_megapixels=classifier.max_megapixels)
    return classifier.prepare(rgb, name=source)


def infer_batch(classifier: Classifier, views: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Several photos' views in shared onnxruntime runs: one `Classifier.infer` over them all, split back per
    photo. The rows of a view do not depend on the views it shares a run with, so each photo gets the rows it
    would get alone (tests/test_serve.py checks it bit for bit)."""
    if not views:
        return []
    rows = classifier.infer(np.concatenate(views) if len(views) > 1 else views[0])
    bounds = np.cumsum([len(photo) for photo in views])[:-1]
    return np.split(rows, bounds)


def finish_row(
    classifier: Classifier, source: str, rows: np.ndarray, prepared: PreparedImage, options: RequestOptions
) -> dict[str, Any]:
    """The photo's JSON-lines row (`Classification.to_dict`, what `classify --format jsonl` writes)."""
    top_k = None if options.top_k is None else min(options.top_k, len(classifier.labels))  # as the CLI caps it
    result = classifier.postprocess(source, rows, prepared, top_k, min_confidence=options.min_confidence)
    return result.to_dict()


def failed_row(source: str, reason: str) -> dict[str, Any]:
    """The row of a photo that could not be classified, with the one-line reason."""
    return Classification.failed(source, reason).to_dict()


def classify_upload(classifier: Classifier, data: bytes, source: str, options: RequestOptions) -> dict[str, Any]:
    """One upload's row without batching (decode, infer, postprocess in the calling thread); a photo that cannot
    be classified is a failed row."""
    planned = Plans(classifier).get(options)
    try:
        prepared = prepare_upload(planned, data, source)
    except ImageError as exc:
        return failed_row(source, exc.reason)
    return finish_row(planned, source, planned.infer(prepared.views), prepared, options)


def model_info(classifier: Classifier) -> dict[str, Any]:
    """What `cassava-edge info --format json` shows, with the model's path reduced to its file name (the
    service's file system is nobody's business)."""
    details = classifier.info()
    details["model"] = classifier.session.path.name
    details["session"] = {**details["session"], "path": classifier.session.path.name}
    return details
