"""The constants that training, export, benchmarks and the runtime must agree on, defined once.

The ONNX metadata (`cassava_edge.metadata`) is what a model says about itself; this module holds the values
the project's own tools use to *write* that metadata and to talk about models in general. It imports nothing
heavy, so training and export (which run without onnxruntime) can import it.
"""

from __future__ import annotations

# The graph's tensor names. Training names the Keras input/output with these, export keeps them in the ONNX file.
INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
# The pooled backbone features (the input of the classification head); export adds them as a second output so that
# a "not a cassava leaf" score can be fitted on them.
FEATURES_NAME = "features"
# The logit of the "not a cassava leaf" head that export appends to the graph (schema version 2).
NOT_CASSAVA_NAME = "not_cassava_logit"

# What a model uses when its metadata names no plan of its own, and what export writes by default.
DEFAULT_SCAN = "full"
DEFAULT_TTA = "seed"

# Files the folder scan treats as photos. Some may not decode with this OpenCV build (HEIC, AVIF): those are
# reported as failed, never skipped silently.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".heic", ".heif", ".avif"}
)

# Views per onnxruntime call: on a 2-core CPU batching 16 crops is no faster than 4 and needs 4x the memory.
DEFAULT_CHUNK_SIZE_CPU = 4
DEFAULT_CHUNK_SIZE_CUDA = 32

# The `seed` TTA preset draws its random views with this default seed.
DEFAULT_SEED = 0

# The `seed` TTA preset is the reference notebook's random augmentation, in Keras terms: RandomFlip both ways,
# RandomZoom(SEED_ZOOM_RANGE) (a negative factor zooms in), RandomContrast(SEED_CONTRAST) (factor 1 +- 0.2).
# The runtime re-implements it (cassava_edge/tta.py); the benchmark's Keras reference uses the layers themselves.
SEED_VIEWS_PER_CROP = 4
SEED_ZOOM_RANGE: tuple[float, float] = (-0.2, 0.0)
SEED_CONTRAST = 0.2
