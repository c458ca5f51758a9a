"""Where the shared photos are, and a pytest mark that skips with a clear reason when they are not there."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA_DIR = Path(os.environ.get("CASSAVA_EDGE_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))

needs_data = pytest.mark.skipif(
    not (DATA_DIR / "cassava" / "train.csv").is_file(),
    reason=f"real photos not found at {DATA_DIR} (set CASSAVA_EDGE_DATA to the shared data folder)",
)
