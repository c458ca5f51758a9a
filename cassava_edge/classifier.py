"""The API: a Classifier turns photos into Classifications.

The work is split into public stages so that a benchmark can time each one:
``load`` (read + decode) -> ``prepare`` (scale, crop, TTA views) -> ``infer`` (onnxruntime) -> ``postprocess``
(average into a Classification). ``classify`` and ``classify_many`` chain them.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import cv2
import numpy as np

import cassava_edge

from cassava_edge.contract import DEFAULT_SEED
from cassava_edge.errors import CassavaEdgeError, ImageError, OptionError
from cassava_edge.extras import onnxruntime as ort  # an extra ([cpu] or [gpu]): imported on first use
from cassava_edge.imaging import DEFAULT_MAX_MEGAPIXELS, ImageSource, check_color, load_image, source_name
from cassava_edge.models import resolve_model
from cassava_edge.pipeline import batched, check_workers, ordered_map
from cassava_edge.calibration import sigmoid
from cassava_edge.colour import DEFAULT_CHECK, colour_problem
from cassava_edge.looks import Look
from cassava_edge.metadata import ColourCheck
from cassava_edge.results import NOT_CASSAVA, OK, SPEED_STAGES, UNCERTAIN, Classification, PreparedImage
from cassava_edge.scan import check_plan, make_crops
from cassava_edge.session import CUDA, PROVIDERS, OnnxSession
from cassava_edge.tta import make_tta

# Beyond this the training-scale photo gets absurdly long (a 1x1000 strip would become 600x600000).
MAX_ASPECT_RATIO = 20.0
# Photos per group on CPU; on a GPU a group holds at least one chunk of views.
DEFAULT_BATCH_IMAGES = 4
DEFAULT_TOP_K = 3


class Classifier:
    """Classifies cassava leaf photos with an ONNX model.

    `tta` and `scan` default to the model's own choice (metadata ``default_tta``/``default_scan``). `seed` feeds
    the ``seed`` TTA preset. One Classifier may be shared by several threads.

    `top_k` and `min_confidence` are the defaults of every call, which may override them. MediaPipe's spellings,
    `max_results` and `score_threshold`, mean the same two things, here and per call.

    `colour_check` overrides the model's colour check (metadata ``trust.colour``: photos without usable colour fail
    with the reason): None keeps the model's, False turns it off, True turns it on with `cassava_edge.colour`'s
    default thresholds (for a model exported without them), a `ColourCheck` uses its own thresholds.

    `look` overrides the model's look (metadata ``look``: the re-encoding every photo is given before its crops are
    cut, see `cassava_edge.looks`): None keeps the model's, False scores photos as they are (only to measure what
    the look does: the model's figures were measured with it).
    """

    def __init__(
        self,
        model: str | Path | None = None,
        provider: str = "auto",
        tta: str | None = None,
        scan: str | None = None,
        threads: int | None = None,
        chunk_size: int | None = None,
        graph_optimization: str = "all",
        seed: int = DEFAULT_SEED,
        max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
        variant: str | None = None,
        min_confidence: float | None = None,
        top_k: int | None = None,
        max_results: int | None = None,
        score_threshold: float | None = None,
        colour_check: bool | ColourCheck | None = None,
        look: bool | None = None,
    ) -> None:
        top_k, min_confidence = _call_options(top_k, max_results, min_confidence, score_threshold)
        self.top_k = DEFAULT_TOP_K if top_k is None else top_k
        if provider not in PROVIDERS:
            raise OptionError(f"provider must be one of {', '.join(PROVIDERS)}, got {provider!r}")
        # Variants are chosen for the provider we expect to get; `auto` expects CUDA when onnxruntime has it.
        cuda_expected = provider == "cuda" or (provider == "auto" and CUDA in ort.get_available_providers())
        path = resolve_model(model, "cuda" if cuda_expected else "cpu", variant)
        self.session = OnnxSession(
            path, provider=provider, threads=threads, graph_optimization=graph_optimization, chunk_size=chunk_size
        )
        self.metadata = self.session.metadata
        self.scan = check_plan(scan or self.metadata.default_scan)
        self.seed = seed
        self.tta = make_tta(tta or self.metadata.default_tta, crop_hw=self.metadata.crop_size, seed=seed)
        self.max_megapixels = max_megapixels
        trust = self.metadata.trust
        # Below this calibrated confidence a photo is "uncertain"; None (a v1 model, no override): never.
        self.min_confidence: float | None = (
            min_confidence if min_confidence is not None else trust.min_confidence if trust else None
        )
        self.colour_check = _colour_check(colour_check, trust.colour if trust else None)
        self.look: Look | None = None if look is False else self.metadata.look

    @property
    def labels(self) -> tuple[str, ...]:
        return self.metadata.labels

    @property
    def min_short_side(self) -> int | None:
        """Photos whose shorter side is under this many pixels fail as too small to judge (None: no minimum)."""
        return self.metadata.trust.min_short_side if self.metadata.trust else None

    # -- stages ------------------------------------------------------------------------------------------------

    def load(self, image: ImageSource, color: str = "RGB") -> np.ndarray:
        """Read and decode `image` into upright HxWx3 uint8 RGB (see `cassava_edge.imaging.load_image`)."""
        return load_image(image, color=color, max_megapixels=self.max_megapixels)

    def prepare(self, rgb: np.ndarray, *, name: str = "<array>") -> PreparedImage:
        """Give the photo the model's look (if it has one), scale it to training scale, cut the scan plan's crops and
        make the TTA views (float32).

        ImageError for a photo the model cannot judge: too small, too elongated, or (under a colour check, see
        `colour_check`) without usable colour."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or 0 in rgb.shape:
            raise ImageError(name, f"prepare needs an HxWx3 uint8 RGB array (use load), got {rgb.shape} {rgb.dtype}")
        height, width = rgb.shape[:2]
        if self.min_short_side is not None and min(height, width) < self.min_short_side:
            raise ImageError(
                name, f"{width}x{height} px is too small to judge (shorter side under {self.min_short_side} px)"
            )
        if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
            raise ImageError(name, f"{width}x{height} is too elongated to classify (over {MAX_ASPECT_RATIO:g}:1)")
        problem = None if self.colour_check is None else colour_problem(rgb, self.colour_check)
        if problem is not None:  # a failure, not "uncertain": no inference, and the reason tells what to retake
            raise ImageError(name, problem)
        if self.look is not None:  # after the checks: they judge the photo the user took
            rgb = self.look.apply(rgb)
        crops = make_crops(rgb, self.scan, self.metadata.photo.short_side, self.metadata.crop_size)
        views = self.tta.apply(crops.images).astype(np.float32, copy=False)
        return PreparedImage(
            views=np.ascontiguousarray(views),
            boxes=crops.boxes,
            view_names=tuple(self.tta.view_names()),
            photo_size=crops.photo_size,
            original_size=(width, height),
        )

    def infer(self, views: np.ndarray) -> np.ndarray:
        """(n, classes) probabilities of float32 views, run chunk_size views per onnxruntime call.

        For a model with a not-cassava output one more column follows, its logit per view: one array per batch
        keeps a photo's rows together however the views are grouped, and `postprocess` splits the column off.
        """
        probs, not_cassava = self.session.run_all(views)
        return probs if not_cassava is None else np.concatenate([probs, not_cassava[:, None]], axis=1)

    def postprocess(
        self,
        source: str,
        probs: np.ndarray,
        prepared: PreparedImage,
        top_k: int | None = None,
        return_views: bool = False,
        min_confidence: float | None = None,
    ) -> Classification:
        """Average one photo's view outputs (from `infer`) into a Classification: the mean probabilities are
        calibrated, then the status is decided (see `status_of`). `top_k`/`min_confidence`: None is the
        Classifier's own."""
        probs, not_cassava_logits = self._split_outputs(probs)
        calibration = self.metadata.calibration
        top_k = _check_top_k(self.top_k if top_k is None else top_k)
        result = Classification.from_probabilities(
            source, probs, self.labels, prepared, top_k=top_k, return_views=return_views,
            temperature=calibration.temperature if calibration else None,
            class_bias=calibration.class_bias if calibration else None,
        )
        # The photo's score is the sigmoid of its views' mean logit, as export fitted the threshold on.
        score = None if not_cassava_logits is None else float(sigmoid(not_cassava_logits.astype(np.float64).mean()))
        assert result.confidence is not None
        return result.judged(self.status_of(result.confidence, score, min_confidence), score)

    def status_of(
        self, confidence: float, not_cassava_score: float | None, min_confidence: float | None = None
    ) -> str:
        """The status of a classified photo: not_cassava when its score reaches the model's threshold, else
        uncertain when its calibrated confidence is under the minimum confidence (`min_confidence`, or the
        Classifier's when None), else ok."""
        if min_confidence is None:
            min_confidence = self.min_confidence
        trust = self.metadata.trust
        threshold = trust.not_cassava_threshold if trust else None
        if not_cassava_score is not None and threshold is not None and not_cassava_score >= threshold:
            return NOT_CASSAVA
        if min_confidence is not None and confidence < min_confidence:
            return UNCERTAIN
        return OK

    def _split_outputs(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """`infer`'s rows -> (probabilities, not-cassava logits or None)."""
        if self.session.not_cassava_name is None:
            return rows, None
        return rows[:, :-1], rows[:, -1]

    # -- whole pipeline ----------------------------------------------------------------------------------------

    def classify(
        self,
        image: ImageSource,
        *,
        color: str = "RGB",
        top_k: int | None = None,
        return_views: bool = False,
        min_confidence: float | None = None,
        max_results: int | None = None,
        score_threshold: float | None = None,
    ) -> Classification:
        """Classify one photo; raises ImageError if it cannot be read."""
        top_k, min_confidence = _call_options(top_k, max_results, min_confidence, score_threshold)
        name = source_name(image)
        prepared, decode, preprocess = self._load_and_prepare(image, name, color)
        started = time.perf_counter()
        probs = self.infer(prepared.views)
        inferred = time.perf_counter()
        result = self.postprocess(name, probs, prepared, top_k, return_views, min_confidence)
        return _with_speed(result, decode, preprocess, inferred - started, time.perf_counter() - inferred)

    def _load_and_prepare(self, image: ImageSource, name: str, color: str) -> tuple[PreparedImage, float, float]:
        """`prepare(load(image))` with the seconds each took (decode, preprocess), for Classification.speed."""
        started = time.perf_counter()
        rgb = self.load(image, color=color)
        decoded = time.perf_counter()
        prepared = self.prepare(rgb, name=name)
        return prepared, decoded - started, time.perf_counter() - decoded

    def classify_many(
        self,
        images: Iterable[ImageSource],
        *,
        batch_images: int | None = None,
        color: str = "RGB",
        top_k: int | None = None,
        return_views: bool = False,
        workers: int | None = None,
        min_confidence: float | None = None,
        max_results: int | None = None,
        score_threshold: float | None = None,
    ) -> Iterator[Classification]:
        """Classify photos lazily, yielding results in input order.

        Every `batch_images` photos share onnxruntime batches (their views are concatenated, so a group needs
        ceil(views / chunk_size) runs); the default, 4, grows on a GPU until a group fills a chunk. A photo that
        cannot be read yields a failed Classification instead of raising; the other photos are unaffected.

        `workers` threads classify groups side by side (default: one per core, at most 8): while one decodes and
        prepares its photos another runs onnxruntime. 0 does every group in the calling thread, one after the
        other. Either way the groups, so the results, are the same. The input is read at most
        ``(workers + 1) * batch_images`` photos ahead of the results, so memory stays bounded however long it is.
        """
        if batch_images is None:
            batch_images = max(DEFAULT_BATCH_IMAGES, self.session.chunk_size // self.tta.views_per_crop)
        if batch_images < 1:
            raise OptionError(f"batch_images must be at least 1, got {batch_images}")
        top_k, min_confidence = _call_options(top_k, max_results, min_confidence, score_threshold)
        color = check_color(color)  # a bad value is the caller's mistake, not every photo's failure
        workers = check_workers(workers)
        classify_group = functools.partial(
            self._classify_group, color=color, top_k=top_k, return_views=return_views, min_confidence=min_confidence
        )
        # Whole groups per thread, not photos: besides overlapping decoding with inference, two onnxruntime calls
        # then run at once, which keeps a busy or many-core CPU fuller than one call's intra-op threads do.
        groups = batched(images, batch_images)
        for results in ordered_map(classify_group, groups, workers=workers, window=workers + 1):
            yield from results

    def _classify_group(
        self,
        images: list[ImageSource],
        color: str,
        top_k: int | None,
        return_views: bool,
        min_confidence: float | None,
    ) -> list[Classification]:
        names = [source_name(image) for image in images]
        prepared: list[PreparedImage | None] = []
        errors: list[str | None] = []
        seconds: list[tuple[float, float]] = []  # (decode, preprocess) per photo, for Classification.speed
        for image, name in zip(images, names):
            try:
                item, decode, preprocess = self._load_and_prepare(image, name, color)
                prepared.append(item)
                seconds.append((decode, preprocess))
                errors.append(None)
            except CassavaEdgeError as exc:
                prepared.append(None)
                seconds.append((0.0, 0.0))
                errors.append(exc.reason if isinstance(exc, ImageError) else str(exc))
        ready = [p for p in prepared if p is not None]
        started = time.perf_counter()
        probs = self.infer(np.concatenate([p.views for p in ready])) if ready else None
        # The group shares its onnxruntime runs: each photo is charged its share of the views.
        inference_per_view = (time.perf_counter() - started) / max(1, sum(p.num_views for p in ready))
        results, offset = [], 0
        for name, item, error, (decode, preprocess) in zip(names, prepared, errors, seconds):
            if item is None:
                results.append(Classification.failed(name, error or "unknown error"))
                continue
            assert probs is not None
            rows = probs[offset : offset + item.num_views]
            offset += item.num_views
            started = time.perf_counter()
            result = self.postprocess(name, rows, item, top_k, return_views, min_confidence)
            postprocess = time.perf_counter() - started
            results.append(_with_speed(result, decode, preprocess, inference_per_view * item.num_views, postprocess))
        return results

    # -- description -------------------------------------------------------------------------------------------

    def __repr__(self) -> str:
        # The model's name is its file stem, which its variants share (cassava-lite0.int8.onnx -> cassava-lite0).
        return (
            f"Classifier(model={self.session.path.name.split('.')[0]!r}, variant={self.metadata.precision!r}, "
            f"provider={self.session.providers[0]!r}, tta={self.tta.name!r}, scan={self.scan!r})"
        )

    def info(self) -> dict[str, Any]:
        """What runs: model file and metadata, providers, settings and library versions."""
        return {
            "model": str(self.session.path),
            "metadata": _jsonable(dataclasses.asdict(self.metadata)),
            "providers_available": ort.get_available_providers(),
            "providers_loaded": list(self.session.providers),
            "session": self.session.describe(),
            "tta": self.tta.name,
            "views_per_crop": self.tta.views_per_crop,
            "scan": self.scan,
            "seed": self.seed,
            "max_megapixels": self.max_megapixels,
            "top_k": self.top_k,
            "min_confidence": self.min_confidence,
            "min_short_side": self.min_short_side,
            "colour_check": None if self.colour_check is None else dataclasses.asdict(self.colour_check),
            "look": None if self.look is None else dataclasses.asdict(self.look),
            "not_cassava_output": self.session.not_cassava_name,
            "versions": {
                "cassava_edge": cassava_edge.__version__,
                "onnxruntime": ort.__version__,
                "opencv": cv2.__version__,
                "numpy": np.__version__,
            },
        }


def _with_speed(
    result: Classification, decode: float, preprocess: float, inference: float, postprocess: float
) -> Classification:
    """`result` with its stage times (seconds) as `speed`, in milliseconds per SPEED_STAGES."""
    stages = (decode, preprocess, inference, postprocess)
    return dataclasses.replace(result, speed={name: s * 1000.0 for name, s in zip(SPEED_STAGES, stages)})


def _call_options(
    top_k: int | None, max_results: int | None, min_confidence: float | None, score_threshold: float | None
) -> tuple[int | None, float | None]:
    """(top_k, min_confidence) from either spelling, checked; None where neither was given."""
    top_k = _either("top_k", top_k, "max_results", max_results)
    min_confidence = _either("min_confidence", min_confidence, "score_threshold", score_threshold)
    if top_k is not None:
        _check_top_k(top_k)
    if min_confidence is not None and not 0.0 <= min_confidence <= 1.0:
        raise OptionError(f"min_confidence must be within 0..1, got {min_confidence!r}")
    return top_k, min_confidence


def _colour_check(option: bool | ColourCheck | None, model: ColourCheck | None) -> ColourCheck | None:
    """The colour thresholds in force: the model's unless the option says otherwise (see Classifier)."""
    if option is None:
        return model
    if isinstance(option, ColourCheck):
        problems = option.problems()
        if problems:
            raise OptionError(problems[0])
        return option
    if isinstance(option, bool):
        return (model or DEFAULT_CHECK) if option else None
    raise OptionError(f"colour_check must be None, True, False or a ColourCheck, got {option!r}")


def _either(name: str, value: Any, alias: str, alias_value: Any) -> Any:
    """`value` or its MediaPipe spelling `alias_value`; both given and different is a mistake, not a choice."""
    if value is not None and alias_value is not None and value != alias_value:
        raise OptionError(f"{name}={value!r} and {alias}={alias_value!r} disagree; {alias} is {name}'s other name")
    return value if value is not None else alias_value


def _check_top_k(top_k: int) -> int:
    if top_k < 1:
        raise OptionError(f"top_k must be at least 1, got {top_k}")
    return top_k


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    return value
