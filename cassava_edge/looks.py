"""Photo looks: the re-encoding chain that made `cassava-roboflow/`, and the canonical look a model may ask for.

A model that reads the look of the photo's source as a cue changes its answer when only the look changes (the flip
test of `training.cue`). Putting *every* photo through the same chain before the model gives every photo the same
look, whatever camera or app produced it, so the cue has nothing left to read. A model asks for this in its
metadata (`look`, schema 4); the runtime applies it to the decoded photo before the crops are cut, and export
measures the model on photos given the same look.

Pure numpy/OpenCV: training (`training.looks`, the look augmentation), export and the runtime share it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# The Roboflow copies' JPEG quantization tables scale libjpeg's by quality 75 (measured on every tenth file of
# cassava-roboflow/; the Kaggle originals read 75 too); the copies are 640x640 squeezes of 800x600 originals.
ROBOFLOW_QUALITY = 75
ROBOFLOW_SIDE = 640
LOOK_KINDS: tuple[str, ...] = ("roboflow",)


def jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    """`rgb` encoded as JPEG at `quality` and decoded again."""
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def roboflow_chain(rgb: np.ndarray, quality: int = ROBOFLOW_QUALITY, side: int = ROBOFLOW_SIDE) -> np.ndarray:
    """What made cassava-roboflow/, undone as training undoes it: squeeze to side x side, JPEG at `quality`,
    restore the original width and height."""
    height, width = rgb.shape[:2]
    squeezed = cv2.resize(rgb, (side, side), interpolation=cv2.INTER_AREA)
    return cv2.resize(jpeg(squeezed, quality), (width, height), interpolation=cv2.INTER_LINEAR)


@dataclass(frozen=True)
class Look:
    """The look every photo is given before the model sees it (metadata `look`).

    `kind` "roboflow": `roboflow_chain(photo, quality, side)` on the decoded, upright photo at its own size."""

    kind: str = "roboflow"
    side: int = ROBOFLOW_SIDE
    quality: int = ROBOFLOW_QUALITY

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        return roboflow_chain(rgb, self.quality, self.side)

    def describe(self) -> str:
        return f"{self.kind}-encoded: squeezed to {self.side}x{self.side}, JPEG q{self.quality}, aspect restored"

    def problems(self) -> list[str]:
        found = []
        if self.kind not in LOOK_KINDS:
            found.append(f"look kind {self.kind!r} is unknown (this cassava-edge knows {', '.join(LOOK_KINDS)})")
        if not (isinstance(self.side, int) and not isinstance(self.side, bool) and 8 <= self.side <= 8192):
            found.append(f"look side must be a whole number of pixels within 8..8192, got {self.side!r}")
        if not (isinstance(self.quality, int) and not isinstance(self.quality, bool) and 1 <= self.quality <= 100):
            found.append(f"look quality must be a whole number within 1..100, got {self.quality!r}")
        return found


def look_named(name: str) -> Look | None:
    """The look a command line names: "none" (photos as they are) or a kind of LOOK_KINDS at its defaults."""
    if name == "none":
        return None
    if name not in LOOK_KINDS:
        raise ValueError(f"unknown look {name!r}; choose from none, {', '.join(LOOK_KINDS)}")
    return Look(kind=name)
