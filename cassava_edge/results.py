"""Small result objects: what `prepare` hands to `infer`, and what `classify` hands back."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Optional

import numpy as np

from cassava_edge.calibration import apply_temperature
from cassava_edge.scan import Box


@dataclass(frozen=True)
class PreparedImage:
    """One photo ready for the model: its TTA views of its crops, crop-major."""

    views: np.ndarray  # (crops * views_per_crop, h, w, 3) float32, 0..255 RGB
    boxes: tuple[Box, ...]  # one per crop, in scaled-photo pixels
    view_names: tuple[str, ...]  # one per view of a crop, e.g. ("identity", "hflip")
    photo_size: tuple[int, int]  # (width, height) of the scaled photo the boxes refer to
    original_size: tuple[int, int]  # (width, height) of the decoded photo

    @property
    def num_views(self) -> int:
        return len(self.views)


@dataclass(frozen=True)
class ViewProbabilities:
    """The model's output for one view of one crop."""

    crop_index: int
    box: Box
    view: str
    probabilities: tuple[float, ...]  # in label order

    def to_dict(self, labels: tuple[str, ...]) -> dict[str, Any]:
        return {
            "crop": self.crop_index,
            "box": list(self.box),
            "view": self.view,
            "probabilities": dict(zip(labels, self.probabilities)),
        }


# What a result means for an app. Only OK comes with a diagnosis (`label`); UNCERTAIN and NOT_CASSAVA keep their
# probabilities and top_k so that an app can still say "probably CMD, retake the photo".
OK = "ok"
UNCERTAIN = "uncertain"  # the calibrated confidence is under the minimum confidence
NOT_CASSAVA = "not_cassava"  # the model's not-cassava score reaches its threshold
FAILED = "failed"  # the photo could not be classified; `error` says why
STATUSES: tuple[str, ...] = (OK, UNCERTAIN, NOT_CASSAVA, FAILED)
# The stages `Classification.speed` times, in pipeline order (see Classifier: load, prepare, infer, postprocess).
SPEED_STAGES: tuple[str, ...] = ("decode", "preprocess", "inference", "postprocess")


@dataclass(frozen=True)
class Classification:
    """The verdict on one photo: probabilities are the mean over all crops x views (calibrated when the model
    says how). `status` is one of STATUSES; `label`/`label_index` are set only when it is "ok". `error` is set (and
    the prediction fields are None or empty) when the photo could not be classified. `not_cassava_score` is the
    probability that the photo is not a cassava leaf, for models that have a not-cassava output."""

    source: str
    label: Optional[str]
    label_index: Optional[int]
    confidence: Optional[float]
    probabilities: dict[str, float]
    top_k: list[tuple[str, float]]
    views: Optional[tuple[ViewProbabilities, ...]] = None
    error: Optional[str] = None
    status: str = OK
    not_cassava_score: Optional[float] = None
    # Milliseconds this photo spent in each of SPEED_STAGES, as Ultralytics' `Results.speed`; None when it was not
    # timed (failed photos, results rebuilt from Ray rows). Not compared and not in to_dict(): it differs per run.
    speed: Optional[dict[str, float]] = field(default=None, compare=False)

    def __repr__(self) -> str:
        # Short on purpose: probabilities, top_k and views make the dataclass repr many lines long; see to_dict().
        confidence = "None" if self.confidence is None else f"{self.confidence:.3f}"
        error = f", error={self.error!r}" if self.error is not None else ""
        return (
            f"Classification(source={self.source!r}, status={self.status!r}, label={self.label!r}, "
            f"confidence={confidence}{error})"
        )

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {self.status!r}")

    @property
    def ok(self) -> bool:
        """True when the photo was classified (any status but "failed"); see `status` for whether to trust it."""
        return self.error is None

    @classmethod
    def failed(cls, source: str, error: str) -> "Classification":
        return cls(source, None, None, None, {}, [], None, error, status=FAILED)

    def judged(self, status: str, not_cassava_score: Optional[float] = None) -> "Classification":
        """This result with its status decided: any status but "ok" withholds the diagnosis (label, label_index)
        and keeps the probabilities, confidence and top_k."""
        if status == FAILED:
            raise ValueError("a classified photo cannot be judged failed; use Classification.failed")
        if status == OK:
            return replace(self, status=status, not_cassava_score=not_cassava_score)
        return replace(self, status=status, not_cassava_score=not_cassava_score, label=None, label_index=None)

    @classmethod
    def from_probabilities(
        cls,
        source: str,
        view_probs: np.ndarray,
        labels: tuple[str, ...],
        prepared: PreparedImage,
        *,
        top_k: int = 3,
        return_views: bool = False,
        temperature: Optional[float] = None,
        class_bias: Optional[tuple[float, ...]] = None,
    ) -> "Classification":
        """Average the (views, classes) probabilities of one photo into its Classification, calibrated with
        `temperature` (and `class_bias`, see metadata.Calibration) after averaging when given; `views` keep the
        model's own per-view probabilities."""
        if len(view_probs) != prepared.num_views or view_probs.shape[1:] != (len(labels),):
            raise ValueError(f"expected ({prepared.num_views}, {len(labels)}) probabilities, got {view_probs.shape}")
        mean = view_probs.astype(np.float64).mean(axis=0)
        if temperature is not None:
            mean = apply_temperature(mean[None], temperature, class_bias)[0]
        mean /= mean.sum()  # exact sum of 1 after float32 rounding
        # A stable sort keeps label order among ties, so equal probabilities rank the same on every run.
        order = np.argsort(-mean, kind="stable")
        best = int(order[0])
        views = None
        if return_views:
            per_crop = len(prepared.view_names)
            views = tuple(
                ViewProbabilities(
                    crop_index=row // per_crop,
                    box=prepared.boxes[row // per_crop],
                    view=prepared.view_names[row % per_crop],
                    probabilities=tuple(float(p) for p in view_probs[row]),
                )
                for row in range(len(view_probs))
            )
        return cls(
            source=source,
            label=labels[best],
            label_index=best,
            confidence=float(mean[best]),
            probabilities={label: float(p) for label, p in zip(labels, mean)},
            top_k=[(labels[i], float(mean[i])) for i in order[: max(1, top_k)]],
            views=views,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; `views` only when they were asked for."""
        data: dict[str, Any] = {
            "source": self.source,
            "status": self.status,
            "ok": self.ok,
            "label": self.label,
            "label_index": self.label_index,
            "confidence": self.confidence,
            "probabilities": dict(self.probabilities),
            "top_k": [{"label": label, "probability": p} for label, p in self.top_k],
            "not_cassava_score": self.not_cassava_score,
            "error": self.error,
        }
        if self.views is not None:
            labels = tuple(self.probabilities)
            data["views"] = [view.to_dict(labels) for view in self.views]
        return data
