"""Decoding photos into HxWx3 uint8 RGB arrays with OpenCV.

Every encoded source goes through one path: read the bytes, check the header (size limit, truncation) before any
pixel is decoded, decode with ``cv2.IMREAD_UNCHANGED`` (keeps alpha and 16 bits, and never applies EXIF
orientation), then apply the EXIF orientation read by this module. So each photo is turned exactly once, whatever
OpenCV's own orientation handling does in a given version.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Union

import cv2
import numpy as np

from cassava_edge.errors import ImageError, OptionError

if TYPE_CHECKING:  # Pillow is optional: imported only by type checkers, never at run time
    from PIL import Image

ImageSource = Union[str, Path, bytes, bytearray, memoryview, BinaryIO, np.ndarray, "Image.Image"]

DEFAULT_MAX_MEGAPIXELS = 89.0  # Pillow's decompression-bomb limit, so the two libraries refuse the same files
COLOR_ORDERS = ("RGB", "BGR")
URL_SCHEMES = ("http://", "https://", "ftp://")

_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# SOF markers carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but are not frames.
_JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_EXIF_ORIENTATION_TAG = 0x0112


def source_name(source: object) -> str:
    """A short name for messages and results: the path, the file object's name, or the kind of object."""
    if isinstance(source, (str, Path)):
        return str(source)
    if isinstance(source, np.ndarray):
        return "<array>"
    if is_pil_image(source):
        filename = getattr(source, "filename", "")  # set by Image.open
        return str(filename) if filename else "<PIL image>"
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    if callable(getattr(source, "read", None)):
        name = getattr(source, "name", None)
        return str(name) if isinstance(name, (str, Path)) else "<file>"
    return f"<{type(source).__name__}>"


def load_image(
    source: ImageSource, *, color: str = "RGB", max_megapixels: float = DEFAULT_MAX_MEGAPIXELS
) -> np.ndarray:
    """Decode `source` into an HxWx3 uint8 RGB array, upright as the camera meant it.

    `source` is a path (str or Path), encoded bytes, a binary file object, a numpy array or a PIL image. `color`
    gives the channel order of an array (``"RGB"`` or ``"BGR"``, any case); pass ``color="BGR"`` for arrays from
    ``cv2.imread``. Encoded and PIL images know their own order; a PIL image is taken as its pixels, as
    ``np.asarray(image.convert("RGB"))`` (apply ``ImageOps.exif_transpose`` first if it is not upright). Arrays may be HxW gray, HxWx3 or HxWx4, uint8, uint16 or
    float in 0..1. Raises ImageError for anything that is not a usable image, including files whose header
    announces more than `max_megapixels`, and for URLs (nothing is downloaded).
    """
    color = check_color(color)
    name = source_name(source)
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source, name, bgr=(color == "BGR"))
    if is_pil_image(source):
        return _array_to_rgb(_pil_to_array(source), name, bgr=False)
    data = _read_bytes(source, name)
    return decode_image(data, name=name, max_megapixels=max_megapixels)


def is_pil_image(source: object) -> bool:
    """True for a PIL image, told by its class's module so that Pillow is never imported here."""
    return type(source).__module__.startswith("PIL.") and hasattr(source, "getbands")


def _pil_to_array(image: Any) -> np.ndarray:
    """A PIL image as the array `_array_to_rgb` takes: L, RGB and RGBA as they are, other modes converted (palette
    and gray+alpha keep their transparency as RGBA, so it is composited over white like an RGBA array)."""
    if image.mode not in ("L", "RGB", "RGBA"):
        transparent = "A" in image.getbands() or "transparency" in image.info
        image = image.convert("RGBA" if transparent else "RGB")
    return np.asarray(image)


def check_color(color: str) -> str:
    """The channel order in upper case ("RGB" or "BGR"); OptionError for anything else."""
    if not isinstance(color, str) or color.upper() not in COLOR_ORDERS:
        raise OptionError(f"color must be one of {', '.join(COLOR_ORDERS)} (any case), got {color!r}")
    return color.upper()


def decode_image(data: bytes, *, name: str = "<bytes>", max_megapixels: float = DEFAULT_MAX_MEGAPIXELS) -> np.ndarray:
    """Decode encoded image bytes (JPEG, PNG, BMP, TIFF, WebP, ... whatever OpenCV reads) into upright RGB."""
    if not data:
        raise ImageError(name, "empty file")
    header = read_header(data, name)
    if header.size is not None:
        _check_megapixels(name, header.size, max_megapixels)
    try:
        decoded = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise ImageError(name, f"OpenCV cannot decode it ({_first_line(str(exc))})") from None
    if decoded is None or decoded.size == 0:
        kind = container_format(data)
        if kind is not None:
            raise ImageError(name, f"{kind} cannot be decoded by this OpenCV build ({cv2.__version__}); "
                                   "convert it to JPEG or PNG")
        raise ImageError(name, "not an image or an unsupported format")
    if header.size is None:  # formats without a parser here: OpenCV bounds them itself (OPENCV_IO_MAX_IMAGE_PIXELS)
        _check_megapixels(name, (decoded.shape[1], decoded.shape[0]), max_megapixels)
    rgb = _array_to_rgb(decoded, name, bgr=True)
    return apply_orientation(rgb, header.orientation)


class ImageHeader:
    """What the header says before decoding: size (width, height) when known, and the EXIF orientation (1..8)."""

    __slots__ = ("size", "orientation")

    def __init__(self, size: tuple[int, int] | None, orientation: int = 1) -> None:
        self.size = size
        self.orientation = orientation


def read_header(data: bytes, name: str = "<bytes>") -> ImageHeader:
    """Parse a JPEG or PNG header (size, orientation, completeness); other formats get an empty header.

    Raises ImageError for a JPEG or PNG that is cut short: OpenCV may decode such a file half grey with only a
    warning on stderr, so completeness is checked here rather than trusted to the decoder.
    """
    if data.startswith(_JPEG_SOI):
        return _read_jpeg_header(data, name)
    if data.startswith(_PNG_SIGNATURE):
        return _read_png_header(data, name)
    if data.startswith(b"BM") and len(data) >= 26:
        width, height = struct.unpack_from("<ii", data, 18)
        return ImageHeader((abs(width), abs(height)))  # negative height means top-down rows
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ImageHeader(_webp_size(data))
    return ImageHeader(None)


def container_format(data: bytes) -> str | None:
    """The name of a format recognised by its signature, for formats OpenCV may lack (HEIC, AVIF, GIF)."""
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[4:8] == b"ftyp":  # ISO base media file: the brand says which image format
        brand = data[8:12]
        if brand in (b"avif", b"avis"):
            return "AVIF"
        if brand in (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"):
            return "HEIC/HEIF"
    return None


def apply_orientation(rgb: np.ndarray, orientation: int) -> np.ndarray:
    """Turn a decoded image upright according to its EXIF orientation (1 = as stored)."""
    if orientation == 2:
        return rgb[:, ::-1].copy()
    if orientation == 3:
        return cv2.rotate(rgb, cv2.ROTATE_180)
    if orientation == 4:
        return rgb[::-1].copy()
    if orientation == 5:  # transpose
        return np.ascontiguousarray(rgb.transpose(1, 0, 2))
    if orientation == 6:
        return cv2.rotate(rgb, cv2.ROTATE_90_CLOCKWISE)
    if orientation == 7:  # transverse
        return cv2.rotate(np.ascontiguousarray(rgb.transpose(1, 0, 2)), cv2.ROTATE_180)
    if orientation == 8:
        return cv2.rotate(rgb, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return rgb


def _read_bytes(source: ImageSource, name: str) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, str) and source.lower().startswith(URL_SCHEMES):
        raise ImageError(name, "URLs are not fetched (cassava-edge never uses the network); "
                               "download the photo and pass its path or bytes")
    if isinstance(source, (str, Path)):
        # open() + imdecode instead of cv2.imread: imread cannot open non-ASCII paths on Windows.
        try:
            with open(source, "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            raise ImageError(name, "no such file") from None
        except IsADirectoryError:
            raise ImageError(name, "is a directory, not an image file") from None
        except OSError as exc:
            raise ImageError(name, f"cannot read it ({exc.strerror or exc})") from None
    read = getattr(source, "read", None)
    if not callable(read):
        raise ImageError(name, f"cannot read an image from {_a(type(source).__name__)}; pass a path, bytes, "
                               "a binary file object, a PIL image or an HxWx3 uint8 array")
    try:
        data = read()
    except OSError as exc:
        raise ImageError(name, f"cannot read it ({exc})") from None
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageError(name, "file object must be opened in binary mode")
    return bytes(data)


def _array_to_rgb(array: np.ndarray, name: str, *, bgr: bool) -> np.ndarray:
    """Normalise an HxW, HxWx1, HxWx3 or HxWx4 array of uint8, uint16 or float (0..1) to HxWx3 uint8 RGB."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageError(name, f"array shape {array.shape} is not HxW, HxWx3 or HxWx4")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageError(name, f"array shape {array.shape} has no pixels")
    unit = _to_unit_scale(array, name)  # float32 in 0..1, or uint8 passed through
    if unit.ndim == 2:
        rgb = np.repeat(unit[:, :, None], 3, axis=2)
    elif unit.shape[2] == 4:
        rgb = _composite_over_white(unit)
    else:
        rgb = unit
    if rgb.dtype != np.uint8:
        rgb = np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
    if bgr:
        # cvtColor rather than a reversed-stride numpy copy: ~20x faster on an 800x600 photo.
        return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(rgb)


def _to_unit_scale(array: np.ndarray, name: str) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        if array.ndim == 3 and array.shape[2] == 4:
            return array.astype(np.float32) / 65535.0
        # 65535 -> 255 with rounding, in integers so no float copy of a large photo is needed.
        return ((array.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        unit = array.astype(np.float32, copy=False)
        if not np.all(np.isfinite(unit)):
            raise ImageError(name, "float image contains NaN or infinity")
        if unit.min() < -1e-3 or unit.max() > 1.0 + 1e-3:
            raise ImageError(name, f"float image values must be in 0..1, got {unit.min():g}..{unit.max():g}")
        return np.clip(unit, 0.0, 1.0)
    raise ImageError(name, f"unsupported pixel type {array.dtype} (use uint8, uint16 or float in 0..1)")


def _composite_over_white(rgba: np.ndarray) -> np.ndarray:
    """Drop alpha by compositing over white: transparent cut-out backgrounds become white, like a light box,
    rather than black, which the model never saw behind a leaf."""
    if rgba.dtype == np.uint8:
        rgba = rgba.astype(np.float32) / 255.0
    color, alpha = rgba[:, :, :3], rgba[:, :, 3:4]
    return color * alpha + (1.0 - alpha)


def _check_megapixels(name: str, size: tuple[int, int], max_megapixels: float) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageError(name, f"header gives an empty size {width}x{height}")
    megapixels = width * height / 1e6
    if megapixels > max_megapixels:
        raise ImageError(
            name, f"{width}x{height} is {megapixels:.1f} megapixels, above the limit of {max_megapixels:g} megapixels"
        )


def _read_jpeg_header(data: bytes, name: str) -> ImageHeader:
    size: tuple[int, int] | None = None
    orientation = 1
    pos = 2
    while True:
        while pos < len(data) and data[pos] == 0xFF and pos + 1 < len(data) and data[pos + 1] == 0xFF:
            pos += 1  # fill bytes before a marker
        if pos + 4 > len(data):
            raise ImageError(name, "truncated JPEG: the file ends inside its header")
        if data[pos] != 0xFF:
            raise ImageError(name, "corrupt JPEG header")
        marker = data[pos + 1]
        if marker == 0xD9:
            raise ImageError(name, "JPEG has no image data")
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", data, pos + 2)
        segment = data[pos + 4 : pos + 2 + length]
        if marker in _JPEG_SOF_MARKERS and len(segment) >= 5:
            height, width = struct.unpack_from(">HH", segment, 1)
            size = (width, height) if height > 0 else None  # height 0: given later by a DNL marker
        elif marker == 0xE1 and segment.startswith(b"Exif\x00\x00"):
            orientation = _exif_orientation(segment[6:])
        elif marker == 0xDA:
            # Entropy-coded data follows. 0xFFD9 cannot occur inside it (0xFF is stuffed as 0xFF00), so an EOI
            # after the first scan means the file is complete; an EXIF thumbnail's EOI lies before the scan.
            if data.rfind(_JPEG_EOI) < pos + 2 + length:
                raise ImageError(name, "truncated JPEG: no end-of-image marker (FFD9) after the image data")
            return ImageHeader(size, orientation)
        pos += 2 + length


def _read_png_header(data: bytes, name: str) -> ImageHeader:
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise ImageError(name, "truncated or corrupt PNG header")
    width, height = struct.unpack_from(">II", data, 16)
    if data.rfind(b"IEND") < 33:
        raise ImageError(name, "truncated PNG: no IEND chunk")
    orientation = 1
    pos = 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        kind = data[pos + 4 : pos + 8]
        if kind == b"eXIf":
            orientation = _exif_orientation(data[pos + 8 : pos + 8 + length])
        if kind in (b"IDAT", b"IEND"):  # eXIf must come before the image data
            break
        pos += 12 + length
    return ImageHeader((width, height), orientation)


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30:
        width, height = struct.unpack_from("<HH", data, 26)
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25:
        (bits,) = struct.unpack_from("<I", data, 21)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    return None


def _exif_orientation(tiff: bytes) -> int:
    """The orientation tag of the first IFD of a TIFF-structured EXIF block; 1 when absent or unreadable."""
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return 1
    endian = "<" if tiff[:2] == b"II" else ">"
    (ifd,) = struct.unpack_from(endian + "I", tiff, 4)
    if ifd + 2 > len(tiff):
        return 1
    (count,) = struct.unpack_from(endian + "H", tiff, ifd)
    for index in range(count):
        entry = ifd + 2 + 12 * index
        if entry + 12 > len(tiff):
            break
        tag, kind = struct.unpack_from(endian + "HH", tiff, entry)
        if tag == _EXIF_ORIENTATION_TAG and kind == 3:  # SHORT
            (value,) = struct.unpack_from(endian + "H", tiff, entry + 8)
            return value if 1 <= value <= 8 else 1
    return 1


def _a(noun: str) -> str:
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else text
