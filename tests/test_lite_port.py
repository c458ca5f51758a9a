"""The Keras EfficientNet-Lite port reproduces the PyTorch reference's ImageNet logits on real photos."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tests.datapaths import DATA_DIR, needs_data

pytest.importorskip("tensorflow")
torch = pytest.importorskip("torch")
reference = pytest.importorskip("efficientnet_lite_pytorch", reason="pip install efficientnet-lite-pytorch (dev extra)")

from cassava_edge_training.lite import LITE_VARIANTS, efficientnet_lite, load_imagenet_weights, lite_weights_path  # noqa: E402

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def _photos(resolution: int) -> np.ndarray:
    paths = sorted((DATA_DIR / "cassava" / "train_images").glob("*.jpg"))[:4]
    field = sorted((DATA_DIR / "field" / "images").glob("*.jpg"))[:2]
    batch = []
    for path in paths + field:
        bgr = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)
        rgb = cv2.resize(bgr[:, :, ::-1], (resolution, resolution), interpolation=cv2.INTER_AREA)
        batch.append((rgb.astype(np.float32) / 255 - IMAGENET_MEAN) / IMAGENET_STD)
    return np.stack(batch).astype(np.float32)


@needs_data
@pytest.mark.parametrize("name", sorted(LITE_VARIANTS))
def test_keras_lite_matches_pytorch_reference(name: str) -> None:
    # The reference pads its convolutions for its native resolution, so compare there.
    resolution = LITE_VARIANTS[name].resolution
    x = _photos(resolution)

    keras_model = efficientnet_lite(name, include_imagenet_head=True)
    loaded = load_imagenet_weights(keras_model, name)
    keras_logits = keras_model.predict(x, verbose=0)

    torch_model = reference.EfficientNet.from_pretrained(name, weights_path=str(lite_weights_path(name))).eval()
    with torch.no_grad():
        torch_logits = torch_model(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()

    n_torch_tensors = sum(1 for k in torch_model.state_dict() if not k.endswith("num_batches_tracked"))
    assert loaded == n_torch_tensors, "every tensor of the state dict must be ported"
    assert np.abs(keras_logits - torch_logits).max() < 1e-3
    top5 = lambda logits: np.argsort(-logits, axis=1)[:, :5]  # noqa: E731
    np.testing.assert_array_equal(top5(keras_logits), top5(torch_logits))
    # Sanity: these are real predictions, not a constant (a broken port often collapses to one class).
    assert len(set(top5(keras_logits)[:, 0])) > 1


def test_unknown_lite_variant_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown backbone"):
        efficientnet_lite("efficientnet-lite9")
