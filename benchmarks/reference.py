"""The reference Keras pipeline, timed side by side with the runtime: a .keras model, or `seed-b3`, the reference
notebook's own EfficientNetB3 at 512 with random weights (speed only). TensorFlow is imported inside the functions,
which run in the benchmark's child process.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from cassava_edge.contract import SEED_CONTRAST, SEED_VIEWS_PER_CROP, SEED_ZOOM_RANGE
from .machine import current_rss, memory_use
from .worker import time_pipeline

SEED_B3 = "seed-b3"  # --compare-keras value: the reference notebook's own model, random weights
SEED_B3_CROP = 512
SEED_B3_SHORT_SIDE = 600
SEED_B3_SCAN = "corners"
# The reference pipeline is the notebook's whatever plan the runtime runs: 4 crops x 4 random TTA views. Timing
# it with a runtime run's own TTA (e.g. `none`, 4 views) would divide by a pipeline nobody ever ran.
SEED_B3_TTA = "seed"


class KerasPipeline:
    """The reference notebook's way: TF decode and antialiased resize to the training scale, the scan plan's
    crops, each crop's TTA copies, and one `model.predict` per crop; probabilities averaged over all views."""

    def __init__(self, model: Any, crop_hw: tuple[int, int], short_side: int, scan: str, tta: str, seed: int) -> None:
        import keras
        import tensorflow as tf

        from cassava_edge.tta import make_tta

        self.tf, self.model = tf, model
        self.crop_hw, self.short_side, self.scan = crop_hw, short_side, scan
        self.augment = None
        if tta == "seed":
            # The notebook's TTA: random flips, zoom in and contrast, as Keras layers in training mode.
            self.copies = SEED_VIEWS_PER_CROP
            self.augment = keras.Sequential([
                keras.layers.RandomFlip("horizontal_and_vertical", seed=seed),
                keras.layers.RandomZoom(SEED_ZOOM_RANGE, seed=seed),
                keras.layers.RandomContrast(SEED_CONTRAST, seed=seed),
            ])
        else:
            self.geometric = make_tta(tta, crop_hw=crop_hw)  # the same exact flips/turns as the runtime

    def load(self, path: str) -> Any:
        tf = self.tf
        return tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)

    def prepare(self, image: Any, path: str) -> list[np.ndarray]:
        from cassava_edge.scan import plan_boxes, scaled_size

        tf = self.tf
        size = scaled_size(tuple(image.shape[:2]), self.short_side, self.crop_hw)
        photo = tf.image.resize(image, size, antialias=True)  # float32 0..255, as training/data.py does
        per_crop = []
        for x, y, width, height in plan_boxes(self.scan, size, self.crop_hw):
            crop = photo[y : y + height, x : x + width]
            if (height, width) != self.crop_hw:  # scan "full"
                crop = tf.image.resize(crop, self.crop_hw, antialias=True)
            if self.augment is not None:
                views = self.augment(tf.repeat(crop[None], self.copies, axis=0), training=True)
            else:
                views = self.geometric.apply(crop.numpy()[None])
            per_crop.append(np.asarray(views, dtype=np.float32))
        return per_crop

    def counts(self, prepared: list[np.ndarray]) -> tuple[int, int]:
        return len(prepared), sum(len(views) for views in prepared)

    def infer(self, prepared: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([self.model.predict(views, verbose=0) for views in prepared])

    def postprocess(self, path: str, probs: np.ndarray, prepared: list[np.ndarray]) -> int:
        return int(np.argmax(probs.astype(np.float64).mean(axis=0)))


def time_keras(spec: dict[str, Any]) -> dict[str, Any]:
    import keras
    import tensorflow as tf

    if spec["threads"]:
        tf.config.threading.set_intra_op_parallelism_threads(spec["threads"])
    baseline = current_rss()
    start = time.perf_counter()
    if spec["model"] == SEED_B3:
        keras.utils.set_random_seed(spec["seed"])
        model = seed_b3_model()
        crop_hw, short_side = (SEED_B3_CROP, SEED_B3_CROP), SEED_B3_SHORT_SIDE
    else:
        model = keras.models.load_model(spec["model"], compile=False)
        crop_hw = tuple(int(d) for d in model.input_shape[1:3])
        onnx_h = spec["onnx_crop_size"][0]
        # The ONNX model's training scale, carried over to the Keras model's crop size (the same when they match).
        short_side = round(spec["onnx_short_side"] * crop_hw[0] / onnx_h)
    load_s = time.perf_counter() - start
    pipeline = KerasPipeline(model, crop_hw, short_side, spec["scan"], spec["tta"], spec["seed"])
    timings = time_pipeline(pipeline, spec["plan"])
    return {
        "status": "ok",
        "session_creation_s": load_s,
        **timings,
        "memory": memory_use(baseline),
        "model": {"path": spec["model"], "crop_size": list(crop_hw), "photo_short_side": short_side,
                  "parameters": int(model.count_params())},
        "tta": spec["tta"],
        "scan": spec["scan"],
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
    }


def seed_b3_model() -> Any:
    """The reference notebook's classifier: EfficientNetB3 at 512, GAP, Dropout, 5-way softmax (random weights)."""
    import keras

    backbone = keras.applications.EfficientNetB3(include_top=False, weights=None,
                                                 input_shape=(SEED_B3_CROP, SEED_B3_CROP, 3))
    x = keras.layers.GlobalAveragePooling2D()(backbone.output)
    x = keras.layers.Dropout(0.3)(x)
    outputs = keras.layers.Dense(5, activation="softmax")(x)
    return keras.Model(backbone.input, outputs, name="seed_b3")
