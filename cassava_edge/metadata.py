"""The model contract: what an ONNX file must say about itself for the runtime to use it.

This module is the single definition of that contract. `export/` imports it to write the metadata and the
runtime reads it back with `ModelMetadata.from_onnx_props`; no label list or input size is written anywhere else.
Each top-level field is stored as its own `metadata_props` entry (key ``cassava_edge.<field>``) holding JSON, so
tools such as Netron show them one per line.

Schema versions: 1 is the original contract; 2 adds the optional `calibration` (temperature scaling of a photo's
averaged probabilities) and `trust` (minimum confidence, minimum photo size, the not-cassava output and its
threshold); 3 adds the calibration's optional `class_bias` (a per-class logit offset, fitted so the answers follow a
deployment prior such as Kaggle's label counts); 4 adds the optional `look` (`cassava_edge.looks.Look`: the
re-encoding every photo is given before the crops are cut). Export writes 2 unless a model carries a class bias (3)
or a look (4), so that an older runtime says "upgrade" instead of skipping either silently. The runtime reads 1-4
and refuses any other version.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping, Optional

from cassava_edge.contract import DEFAULT_SCAN, DEFAULT_TTA, OUTPUT_NAME
from cassava_edge.errors import ModelError
from cassava_edge.looks import Look

SCHEMA_VERSION = 2
READABLE_SCHEMA_VERSIONS: tuple[int, ...] = (1, 2, 3, 4)
CLASS_BIAS_SCHEMA_VERSION = 3  # an older runtime would drop the bias silently, so such a model says it needs 3
LOOK_SCHEMA_VERSION = 4  # likewise for the look: a model that needs it must never run without it
KEY_PREFIX = "cassava_edge."

# The five Kaggle 2020 classes, in the model's output order. Export writes them into each model; the runtime
# reads them back from the model, never from here.
CASSAVA_LABELS: tuple[str, ...] = ("CBB", "CBSD", "CGM", "CMD", "Healthy")
CASSAVA_LABEL_NAMES: tuple[str, ...] = (
    "Cassava Bacterial Blight",
    "Cassava Brown Streak Disease",
    "Cassava Green Mottle",
    "Cassava Mosaic Disease",
    "Healthy",
)


@dataclass(frozen=True)
class InputContract:
    """How a batch of crops must look when fed to the model."""

    name: str
    height: int
    width: int
    layout: str = "NHWC"
    dtype: str = "float32"
    color: str = "RGB"
    value_range: tuple[float, float] = (0.0, 255.0)


@dataclass(frozen=True)
class PhotoScale:
    """The scale the model saw photos at in training: the photo's shorter side, in pixels.

    The reference trained 512 crops from 800x600 originals, so `short_side=600`.
    """

    short_side: int


@dataclass(frozen=True)
class Calibration:
    """How to calibrate a photo's averaged probabilities: p_cal = softmax(log(p_mean) / temperature + class_bias).

    `class_bias` (schema 3, one number per label, or None) shifts the answers to the class mix named by `prior`:
    training with class weights and extra folders teaches a model another mix than the photos it will see."""

    temperature: float
    method: str = "temperature"
    class_bias: Optional[tuple[float, ...]] = None
    prior: Optional[str] = None  # what the bias was fitted for, e.g. "Kaggle 2020 label counts"

    def problems(self) -> list[str]:
        if self.method != "temperature":
            return [f"calibration method {self.method!r} is unknown (only 'temperature')"]
        if not (_is_number(self.temperature) and math.isfinite(self.temperature) and self.temperature > 0):
            return [f"calibration temperature must be a positive number, got {self.temperature!r}"]
        if self.class_bias is not None and not all(_is_number(b) and math.isfinite(b) for b in self.class_bias):
            return [f"calibration class_bias must be finite numbers, got {list(self.class_bias)!r}"]
        return []


@dataclass(frozen=True)
class ColourCheck:
    """When a photo has no usable colour (see `cassava_edge.colour`, which measures it on a 128 px copy): its luma
    standard deviation is under `min_luma_std` (nearly uniform), 90% of its pixels have a colour spread (max - min
    of R, G, B) under `min_colour_spread` (grayscale), or its darkest 1% is brighter than `max_darkest_luma`
    (washed out). All three are on the 0..255 scale."""

    min_luma_std: float
    min_colour_spread: float
    max_darkest_luma: float

    def problems(self) -> list[str]:
        values = (self.min_luma_std, self.min_colour_spread, self.max_darkest_luma)
        if not all(_is_number(v) and 0.0 <= v <= 255.0 for v in values):
            return [f"trust colour thresholds must be within 0..255, got {list(values)!r}"]
        return []


@dataclass(frozen=True)
class Trust:
    """When the runtime withholds a diagnosis.

    `min_confidence` applies to the calibrated top-1 probability (below it: "uncertain"); photos whose shorter side
    is under `min_short_side` pixels fail; `not_cassava_output` names a graph output of shape (n, 1) holding a
    logit per view, and a photo is "not_cassava" when sigmoid(mean logit over its views) >= `not_cassava_threshold`.
    With `colour` set, photos without usable colour (grayscale, nearly uniform, washed out) fail with the reason, as
    photos too small do; None (the default, and every model exported before it existed): no colour check. It is
    written only when set, so files without it read as before; a runtime older than it refuses a file with it as
    malformed metadata naming `colour`, rather than skipping the check silently.
    """

    min_confidence: float = 0.0
    min_short_side: int = 1
    not_cassava_output: Optional[str] = None
    not_cassava_threshold: Optional[float] = None
    colour: Optional[ColourCheck] = None

    def problems(self) -> list[str]:
        found = []
        if not (_is_number(self.min_confidence) and 0.0 <= self.min_confidence <= 1.0):
            found.append(f"trust min_confidence must be within 0..1, got {self.min_confidence!r}")
        if not (_is_number(self.min_short_side) and isinstance(self.min_short_side, int) and self.min_short_side >= 1):
            found.append(f"trust min_short_side must be a whole number of pixels >= 1, got {self.min_short_side!r}")
        if (self.not_cassava_output is None) != (self.not_cassava_threshold is None):
            found.append("trust not_cassava_output and not_cassava_threshold must be given together")
        elif self.not_cassava_output is not None and not isinstance(self.not_cassava_output, str):
            found.append(f"trust not_cassava_output must be an output name, got {self.not_cassava_output!r}")
        elif self.not_cassava_threshold is not None and not (
            _is_number(self.not_cassava_threshold) and 0.0 <= self.not_cassava_threshold <= 1.0
        ):
            found.append(f"trust not_cassava_threshold must be within 0..1, got {self.not_cassava_threshold!r}")
        if isinstance(self.colour, ColourCheck):
            found.extend(self.colour.problems())
        elif self.colour is not None:
            found.append(f"trust colour must hold the three colour thresholds, got {self.colour!r}")
        return found


@dataclass(frozen=True)
class ModelMetadata:
    labels: tuple[str, ...]
    label_names: tuple[str, ...]
    input: InputContract
    photo: PhotoScale
    default_scan: str = DEFAULT_SCAN
    default_tta: str = DEFAULT_TTA
    output_name: str = OUTPUT_NAME
    output_is_probability: bool = True
    precision: str = "fp32"
    provenance: Mapping[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    calibration: Optional[Calibration] = None  # schema 2; None: probabilities are used as the model gives them
    trust: Optional[Trust] = None  # schema 2; None: every classified photo is "ok" unless the user sets a minimum
    look: Optional[Look] = None  # schema 4; None: photos are scaled and cropped as they are

    def lowest_schema_version(self) -> int:
        """The oldest schema that holds everything this metadata says (export writes at least SCHEMA_VERSION)."""
        if self.look is not None:
            return LOOK_SCHEMA_VERSION
        bias = self.calibration.class_bias if self.calibration is not None else None
        return CLASS_BIAS_SCHEMA_VERSION if bias is not None else SCHEMA_VERSION

    @property
    def crop_size(self) -> tuple[int, int]:
        """(height, width) of one model input."""
        return self.input.height, self.input.width

    def to_onnx_props(self) -> dict[str, str]:
        data = asdict(self)
        if data["calibration"] is not None:
            # Written only when set, so a schema-2 file stays readable by the runtimes that read schema 2.
            for key in ("class_bias", "prior"):
                if data["calibration"][key] is None:
                    del data["calibration"][key]
        if data["trust"] is not None and data["trust"]["colour"] is None:
            del data["trust"]["colour"]  # likewise: a model without the colour check reads as it did before it
        if data["look"] is None:
            del data["look"]
        return {KEY_PREFIX + key: json.dumps(value, sort_keys=True) for key, value in data.items()}

    @classmethod
    def from_onnx_props(cls, props: Mapping[str, str], source: str = "model") -> "ModelMetadata":
        """Parse and validate the metadata; raises ModelError naming what is missing or wrong."""
        ours = {k[len(KEY_PREFIX):]: v for k, v in props.items() if k.startswith(KEY_PREFIX)}
        if not ours:
            raise ModelError(f"{source}: no cassava-edge metadata; export it with `python -m export`")
        try:
            data = {key: json.loads(value) for key, value in ours.items()}
        except json.JSONDecodeError as exc:
            raise ModelError(f"{source}: metadata is not valid JSON ({exc})") from None
        version = data.get("schema_version")
        readable = f"{READABLE_SCHEMA_VERSIONS[0]}-{READABLE_SCHEMA_VERSIONS[-1]}"
        if isinstance(version, int) and version > READABLE_SCHEMA_VERSIONS[-1]:
            raise ModelError(
                f"{source}: metadata schema version {version} is newer than this cassava-edge reads ({readable}); "
                "upgrade cassava-edge"
            )
        if version not in READABLE_SCHEMA_VERSIONS or isinstance(version, bool):
            raise ModelError(
                f"{source}: metadata schema version {version!r} is not supported (this cassava-edge reads "
                f"{readable}); re-export the model"
            )
        missing = [name for name in ("labels", "label_names", "input", "photo") if name not in data]
        if missing:
            raise ModelError(f"{source}: metadata lacks {', '.join(missing)}")
        try:
            inp = dict(data.pop("input"))
            inp["value_range"] = tuple(inp.get("value_range", (0.0, 255.0)))
            calibration, trust, look = data.pop("calibration", None), data.pop("trust", None), data.pop("look", None)
            meta = cls(
                labels=tuple(data.pop("labels")),
                label_names=tuple(data.pop("label_names")),
                input=InputContract(**inp),
                photo=PhotoScale(**data.pop("photo")),
                calibration=None if calibration is None else _calibration(calibration),
                trust=None if trust is None else _trust(trust),
                look=None if look is None else Look(**look),
                **data,
            )
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{source}: malformed metadata ({exc})") from None
        meta.validate(source)
        return meta

    def validate(self, source: str = "model") -> None:
        problems = []
        if len(self.labels) < 2 or len(self.labels) != len(self.label_names):
            problems.append("labels and label_names must be equally long, with at least two classes")
        if self.input.layout != "NHWC" or self.input.color != "RGB":
            problems.append(f"input must be NHWC RGB, got {self.input.layout} {self.input.color}")
        if self.input.dtype != "float32":
            problems.append(f"input dtype must be float32, got {self.input.dtype}")
        if self.input.height < 8 or self.input.width < 8:
            problems.append(f"crop size {self.input.height}x{self.input.width} is too small")
        if self.photo.short_side < min(self.input.height, self.input.width):
            problems.append("photo short side is smaller than the crop")
        if self.schema_version < 2 and (self.calibration is not None or self.trust is not None):
            problems.append("calibration and trust need metadata schema version 2")
        if self.calibration is not None:
            problems.extend(self.calibration.problems())
            bias = self.calibration.class_bias
            if bias is not None and len(bias) != len(self.labels):
                problems.append(f"calibration class_bias has {len(bias)} numbers for {len(self.labels)} labels")
            if bias is not None and self.schema_version < CLASS_BIAS_SCHEMA_VERSION:
                problems.append(f"calibration class_bias needs metadata schema version {CLASS_BIAS_SCHEMA_VERSION}")
        if self.trust is not None:
            problems.extend(self.trust.problems())
        if self.look is not None:
            problems.extend(self.look.problems())
            if self.schema_version < LOOK_SCHEMA_VERSION:
                problems.append(f"look needs metadata schema version {LOOK_SCHEMA_VERSION}")
        if problems:
            raise ModelError(f"{source}: " + "; ".join(problems))


def _calibration(data: Mapping[str, Any]) -> Calibration:
    data = dict(data)
    if isinstance(data.get("class_bias"), list):
        data["class_bias"] = tuple(data["class_bias"])
    return Calibration(**data)


def _trust(data: Mapping[str, Any]) -> Trust:
    data = dict(data)
    if isinstance(data.get("colour"), dict):
        data["colour"] = ColourCheck(**data["colour"])
    return Trust(**data)


def cassava_metadata(
    crop_size: int,
    photo_short_side: int,
    *,
    input_name: str,
    output_name: str,
    default_scan: str = DEFAULT_SCAN,
    default_tta: str = DEFAULT_TTA,
    precision: str = "fp32",
    provenance: Mapping[str, Any] | None = None,
    calibration: Calibration | None = None,
    trust: Trust | None = None,
    look: Look | None = None,
) -> ModelMetadata:
    """The metadata of a five-class cassava model taking raw 0..255 RGB crops of `crop_size`, with the optional
    calibration and trust settings fitted at export (schema version 2) and the look it asks photos to be given
    (schema version 4)."""
    meta = ModelMetadata(
        labels=CASSAVA_LABELS,
        label_names=CASSAVA_LABEL_NAMES,
        input=InputContract(name=input_name, height=crop_size, width=crop_size),
        photo=PhotoScale(short_side=photo_short_side),
        default_scan=default_scan,
        default_tta=default_tta,
        output_name=output_name,
        precision=precision,
        provenance=dict(provenance or {}),
        calibration=calibration,
        trust=trust,
        look=look,
    )
    return replace(meta, schema_version=meta.lowest_schema_version())


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
