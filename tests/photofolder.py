"""A folder of made-up photos for the small runs of the bulk and serve benchmarks (tests/test_benchmark_bulk.py,
tests/test_serve.py): colour noise, so that no shared data is needed, and one file that is not a photo."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def write_photo_folder(folder: Path, count: int, height: int, width: int, suffix: str) -> Path:
    """`folder` made with `count` noise photos p0..p{count-1} of height x width as `suffix` (".png", ".jpg"), and
    broken{suffix}, which is not a photo: the runs must leave it out or report it failed."""
    folder.mkdir(parents=True)
    for index in range(count):
        pixels = np.random.default_rng(index).integers(0, 256, (height, width, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"p{index}{suffix}"), pixels)
    (folder / f"broken{suffix}").write_bytes(b"not a photo")
    return folder
