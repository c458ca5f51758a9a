from __future__ import annotations

import io
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from cassava_edge import imaging
from cassava_edge.errors import ImageError, OptionError
from cassava_edge.imaging import load_image


def _encode(ext: str, image: np.ndarray, *params: int) -> bytes:
    ok, buffer = cv2.imencode(ext, image, list(params))
    assert ok
    return buffer.tobytes()


def _noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth colour noise: survives JPEG well enough for pixel comparisons between decoders."""
    small = np.random.default_rng(seed).integers(0, 256, (max(2, height // 4), max(2, width // 4), 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def _with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """Insert an APP1 EXIF segment holding only the orientation tag right after SOI."""
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8) + struct.pack(">H", 1)
    tiff += struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0)
    payload = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


# -- real photos ---------------------------------------------------------------------------------------------------


def test_real_kaggle_photos_decode_as_rgb(cassava_photos: list[Path]) -> None:
    for path in cassava_photos:
        rgb = load_image(path)
        assert rgb.shape == (600, 800, 3) and rgb.dtype == np.uint8
        bgr = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_COLOR)
        np.testing.assert_array_equal(rgb, bgr[:, :, ::-1])


def test_real_field_photos_have_listed_sizes(data_dir: Path, field_rows: list[dict[str, str]]) -> None:
    portrait = 0
    for row in field_rows:
        rgb = load_image(data_dir / "field" / "images" / row["image_id"])
        assert rgb.shape == (int(row["height"]), int(row["width"]), 3), row["image_id"]
        portrait += rgb.shape[0] > rgb.shape[1]
    assert portrait > 0  # the folder must exercise portrait photos


# -- bad input -----------------------------------------------------------------------------------------------------


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match="empty") as info:
        load_image(path)
    assert info.value.source == str(path)


@pytest.mark.parametrize("keep", [0.5, 0.95])
def test_truncated_jpeg(tmp_path: Path, keep: float) -> None:
    data = _encode(".jpg", _noise(300, 400), cv2.IMWRITE_JPEG_QUALITY, 90)
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ImageError, match="truncated JPEG") as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_truncated_png(tmp_path: Path) -> None:
    data = _encode(".png", _noise(64, 64))
    with pytest.raises(ImageError, match="truncated PNG"):
        load_image(data[: len(data) // 2])


def test_text_named_jpg(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a photo\n")
    with pytest.raises(ImageError, match="not an image") as info:
        load_image(path)
    assert info.value.source == str(path)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "absent.jpg")
    with pytest.raises(ImageError, match="directory"):
        load_image(tmp_path)


def test_unknown_source_type_and_color() -> None:
    with pytest.raises(ImageError) as refused:
        load_image(12345)  # type: ignore[arg-type]
    assert str(refused.value) == (
        "<int>: cannot read an image from an int; pass a path, bytes, a binary file object, a PIL image or an HxWx3 uint8 "
        "array"
    )
    with pytest.raises(ImageError, match="cannot read an image from a dict"):
        load_image({"path": "leaf.jpg"})  # type: ignore[arg-type]
    with pytest.raises(OptionError):
        load_image(np.zeros((4, 4, 3), np.uint8), color="RGBA")
    with pytest.raises(OptionError):
        load_image(np.zeros((4, 4, 3), np.uint8), color=None)  # type: ignore[arg-type]


def test_color_order_is_case_insensitive() -> None:
    rgb = _noise(6, 5)
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])  # what cv2.imread gives
    for spelling in ("BGR", "bgr", "Bgr"):
        np.testing.assert_array_equal(load_image(bgr, color=spelling), rgb)
    np.testing.assert_array_equal(load_image(rgb, color="rgb"), rgb)


@pytest.mark.parametrize("url", ["https://example.org/leaf.jpg", "HTTP://example.org/leaf.jpg"])
def test_urls_are_refused_not_fetched(url: str) -> None:
    with pytest.raises(ImageError, match="URLs are not fetched"):
        load_image(url)


@pytest.mark.parametrize(
    ("header", "kind"),
    [(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "HEIC/HEIF"),
     (b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1heic", "HEIC/HEIF")],
)
def test_undecodable_containers_are_named(header: bytes, kind: str) -> None:
    """HEIC is not decodable by OpenCV's imdecode: the reason says which format and what to do."""
    with pytest.raises(ImageError, match=f"{kind} cannot be decoded by this OpenCV build.*convert it to JPEG"):
        load_image(header + bytes(64))


def test_gif_first_frame_or_a_named_failure() -> None:
    rgb = _noise(20, 30)
    try:
        gif = _encode(".gif", rgb[:, :, ::-1])
    except cv2.error:
        pytest.skip("this OpenCV build writes no GIF")
    try:
        decoded = load_image(gif)
    except ImageError as exc:  # OpenCV builds before 4.11 read no GIF: the reason must say so
        assert "GIF cannot be decoded by this OpenCV build" in str(exc)
    else:
        assert decoded.shape == (20, 30, 3) and decoded.dtype == np.uint8
        assert np.abs(decoded.astype(int) - rgb).mean() < 40  # a palette image: close, not equal


# -- formats and normalisation -------------------------------------------------------------------------------------


def test_png_alpha_is_composited_over_white() -> None:
    bgra = np.zeros((8, 8, 4), dtype=np.uint8)
    bgra[:, :, :3] = (10, 20, 200)  # red in BGR
    bgra[:, :4, 3] = 255  # left half opaque
    bgra[:, 4:6, 3] = 0  # transparent
    bgra[:, 6:, 3] = 128  # half
    rgb = load_image(_encode(".png", bgra))
    assert rgb.shape == (8, 8, 3)
    np.testing.assert_array_equal(rgb[:, :4], np.broadcast_to([200, 20, 10], (8, 4, 3)))
    np.testing.assert_array_equal(rgb[:, 4:6], 255)
    expected = np.rint(np.array([200, 20, 10]) * 128 / 255 + 255 * (1 - 128 / 255))
    np.testing.assert_array_equal(rgb[:, 6:], np.broadcast_to(expected, (8, 2, 3)))


def test_16_bit_png_becomes_8_bit() -> None:
    bgr16 = np.random.default_rng(1).integers(0, 65536, (16, 16, 3), dtype=np.uint16)
    rgb = load_image(_encode(".png", bgr16))
    assert rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb, np.rint(bgr16[:, :, ::-1] / 257.0).astype(np.uint8))


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_grayscale_files_become_rgb(ext: str) -> None:
    gray = _noise(20, 30)[:, :, 0].copy()
    rgb = load_image(_encode(ext, gray))
    assert rgb.shape == (20, 30, 3)
    np.testing.assert_array_equal(rgb[:, :, 0], rgb[:, :, 1])
    np.testing.assert_array_equal(rgb[:, :, 0], rgb[:, :, 2])
    if ext == ".png":
        np.testing.assert_array_equal(rgb[:, :, 0], gray)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_exactly_once(orientation: int) -> None:
    base_bgr = _noise(24, 40, seed=orientation)
    plain = _encode(".jpg", base_bgr, cv2.IMWRITE_JPEG_QUALITY, 95)
    rotated = _with_exif_orientation(plain, orientation)
    rgb = load_image(rotated)
    upright = cv2.imdecode(np.frombuffer(plain, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    assert rgb.shape == ((40, 24, 3) if orientation >= 5 else (24, 40, 3))
    # OpenCV's IMREAD_COLOR applies EXIF orientation itself: our single rotation must agree with it.
    opencv_view = cv2.imdecode(np.frombuffer(rotated, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    np.testing.assert_array_equal(rgb, opencv_view)
    if orientation == 6:
        np.testing.assert_array_equal(rgb, cv2.rotate(upright, cv2.ROTATE_90_CLOCKWISE))
    if orientation == 1:
        np.testing.assert_array_equal(rgb, upright)


# -- source kinds --------------------------------------------------------------------------------------------------


def test_bytes_file_objects_and_paths_agree(tmp_path: Path) -> None:
    data = _encode(".png", _noise(10, 12))
    path = tmp_path / "leaf.png"
    path.write_bytes(data)
    expected = load_image(path)
    for source in (data, bytearray(data), memoryview(data), io.BytesIO(data), str(path)):
        np.testing.assert_array_equal(load_image(source), expected)
    with open(path, "rb") as handle:
        np.testing.assert_array_equal(load_image(handle), expected)
    with open(path, "r", encoding="latin-1") as text_handle, pytest.raises(ImageError, match="binary mode"):
        load_image(text_handle)  # type: ignore[arg-type]


def test_non_ascii_file_name(tmp_path: Path) -> None:
    bgr = _noise(16, 16)
    path = tmp_path / "mandioca_ñ_叶子.png"
    path.write_bytes(_encode(".png", bgr))
    np.testing.assert_array_equal(load_image(path), bgr[:, :, ::-1])


def test_numpy_arrays() -> None:
    rgb = _noise(6, 5)
    np.testing.assert_array_equal(load_image(rgb), rgb)
    np.testing.assert_array_equal(load_image(rgb, color="BGR"), rgb[:, :, ::-1])
    gray = rgb[:, :, 0]
    np.testing.assert_array_equal(load_image(gray), np.repeat(gray[:, :, None], 3, axis=2))
    rgba = np.dstack([rgb, np.full((6, 5), 255, np.uint8)])
    np.testing.assert_array_equal(load_image(rgba), rgb)
    bgra = np.dstack([rgb[:, :, ::-1], np.full((6, 5), 255, np.uint8)])
    np.testing.assert_array_equal(load_image(bgra, color="BGR"), rgb)
    np.testing.assert_array_equal(load_image(rgb.astype(np.uint16) * 257), rgb)
    np.testing.assert_array_equal(load_image(rgb.astype(np.float32) / 255.0), rgb)
    with pytest.raises(ImageError, match="0..1"):
        load_image(rgb.astype(np.float32))
    with pytest.raises(ImageError, match="shape"):
        load_image(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ImageError, match="pixel type"):
        load_image(rgb.astype(np.int32))


# -- size limit ----------------------------------------------------------------------------------------------------


def _refuse_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("the image was decoded before its size was checked")

    monkeypatch.setattr(imaging.cv2, "imdecode", fail)


def test_megapixel_limit_refuses_jpeg_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    data = bytearray(_encode(".jpg", _noise(16, 16)))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, 30000, 20000)  # height, width
    _refuse_decoding(monkeypatch)
    with pytest.raises(ImageError, match="20000x30000 is 600.0 megapixels"):
        load_image(bytes(data))


def test_megapixel_limit_refuses_png_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    data = bytearray(_encode(".png", _noise(16, 16)))
    struct.pack_into(">II", data, 16, 12000, 10000)
    _refuse_decoding(monkeypatch)
    with pytest.raises(ImageError, match="above the limit of 89 megapixels"):
        load_image(bytes(data))


def test_megapixel_limit_is_configurable() -> None:
    data = _encode(".png", np.zeros((1000, 2000, 3), np.uint8))
    with pytest.raises(ImageError, match="2000x1000 is 2.0 megapixels, above the limit of 1 megapixels"):
        load_image(data, max_megapixels=1.0)
    assert load_image(data, max_megapixels=3.0).shape == (1000, 2000, 3)


def test_header_sizes_of_other_formats() -> None:
    image = _noise(30, 50)
    for ext in (".bmp", ".webp"):
        assert imaging.read_header(_encode(ext, image)).size == (50, 30), ext
    assert imaging.read_header(_encode(".webp", image, cv2.IMWRITE_WEBP_QUALITY, 101)).size == (50, 30)  # lossless
