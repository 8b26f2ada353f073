"""Decode one image file strictly, or say exactly why it cannot be used.

Nothing here raises on bad data: :func:`decode_image_bytes` returns a
:class:`Decoded` whose ``error`` holds a short reason code (``truncated``,
``damaged``, ``decompression_bomb``...) and a human-readable detail.

Why not just ``cv2.imdecode``: OpenCV hides libjpeg's warnings, so a JPEG with
corrupt entropy-coded data decodes to a partly grey image without complaint.
JPEGs go through simplejpeg (libjpeg-turbo) with ``strict=True``, which turns
those warnings into errors; PNGs through libpng via OpenCV (CRC checked);
everything else through Pillow with truncated images refused.
"""

from __future__ import annotations

import io
import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import cv2
import numpy as np
import simplejpeg
from PIL import Image, UnidentifiedImageError

#: Default refusal limit: anything declaring more pixels is refused from its
#: header, before a byte is decoded. 16k x 16k line-scan images (268 MP) pass.
DEFAULT_MAX_PIXELS = 400_000_000

#: Formats whose pixels are stored without loss (a keeper prefers these).
LOSSLESS_FORMATS = frozenset({"png", "bmp", "tiff", "gif", "ppm", "pgm", "pbm", "webp-lossless"})

_EXTENSION_FORMATS = {
    ".jpg": "jpeg", ".jpeg": "jpeg", ".jpe": "jpeg", ".jfif": "jpeg",
    ".png": "png", ".bmp": "bmp", ".dib": "bmp", ".gif": "gif",
    ".tif": "tiff", ".tiff": "tiff", ".webp": "webp",
    ".ppm": "ppm", ".pgm": "pgm", ".pbm": "pbm", ".pnm": "ppm",
}

#: File extensions scanned as images (anything else is skipped by the scanner).
IMAGE_EXTENSIONS = frozenset(_EXTENSION_FORMATS)

_EXIF_ORIENTATION_TAG = 0x0112
#: The 12-byte chunk that closes every PNG: length 0, "IEND", its CRC.
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
#: No valid image stores more pixels per byte of file: deflate peaks near
#: 1,032:1 on raw bytes, so even a 1-bit PNG of one colour stays under ~8,300;
#: a JPEG needs at least a few bits per 8x8 block. More means a forged header.
_MAX_PIXELS_PER_BYTE = 10_000
_RATIO_CHECK_PIXELS = 64_000_000


@dataclass
class Decoded:
    """Result of decoding: canonical pixels plus what the header said."""

    pixels: np.ndarray | None = None  # HxW, HxWx3 (RGB) or HxWx4 (RGBA); uint8/uint16
    format: str = ""  # detected from the bytes, not the name
    width: int = 0  # after EXIF orientation
    height: int = 0
    mode: str = ""  # Pillow-style mode of the stored data (L, RGB, CMYK, P, I;16...)
    bit_depth: int = 8
    exif_orientation: int = 1
    frames: int = 1
    error: str = ""  # reason code when unusable
    detail: str = ""  # one-line explanation for humans

    @property
    def ok(self) -> bool:
        return not self.error


def sniff_format(data: bytes) -> str:
    """Return the image format from magic bytes, ``"text"`` for text, or ``""``."""
    head = data[:16]
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head.startswith(b"BM"):
        return "bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:2] in (b"P1", b"P2", b"P3", b"P4", b"P5", b"P6"):
        return "ppm"
    sample = data[:512]
    if sample and _looks_like_text(sample):
        return "text"
    return ""


def _looks_like_text(sample: bytes) -> bool:
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError:
        return False
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
    return printable >= 0.95 * len(text)


def format_from_extension(name: str) -> str:
    """Format implied by a file name's extension (``""`` when unknown)."""
    dot = name.rfind(".")
    return _EXTENSION_FORMATS.get(name[dot:].lower(), "") if dot >= 0 else ""


@contextmanager
def _pillow_pixel_limit_off():
    # Pillow raises DecompressionBombError from open() above ~179 MP, which would
    # refuse legitimate line-scan images; we apply our own limit from the header.
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def decode_image_bytes(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Decoded:
    """Decode ``data`` into canonical pixels, refusing anything broken.

    Canonical pixels: EXIF orientation applied; RGB channel order; grey images
    as 2-D arrays (also RGB images whose three channels are equal, so a PNG of
    a grey JPEG's pixels compares equal); opaque alpha dropped; 8 or 16 bits.
    """
    result = Decoded()
    if not data:
        return _fail(result, "zero_bytes", "file is empty")
    fmt = sniff_format(data)
    result.format = fmt
    if fmt == "text":
        return _fail(result, "not_an_image", "file holds text (an HTML page or log?)")
    try:
        with _pillow_pixel_limit_off():
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            result.mode = image.mode
            result.format = fmt or (image.format or "").lower()
            result.frames = int(getattr(image, "n_frames", 1) or 1)
            result.exif_orientation = _exif_orientation(image)
    except UnidentifiedImageError:
        if fmt:
            return _fail(result, "damaged", f"{fmt} header cannot be parsed")
        return _fail(result, "not_an_image", "no known image signature")
    except Exception as err:  # noqa: BLE001 - any parser failure is a property of the file
        return _fail(result, "damaged" if fmt else "not_an_image", _one_line(err))

    if width <= 0 or height <= 0:
        return _fail(result, "damaged", f"header declares {width}x{height} pixels")
    if width * height > max_pixels:
        return _fail(
            result,
            "decompression_bomb",
            f"header declares {width}x{height} = {width * height:,} pixels "
            f"(limit {max_pixels:,}); refused before decoding",
        )
    if width * height > _RATIO_CHECK_PIXELS and width * height > _MAX_PIXELS_PER_BYTE * len(data):
        return _fail(
            result,
            "decompression_bomb",
            f"header declares {width}x{height} pixels in a {len(data):,}-byte file, more than "
            "any valid encoding can hold; refused before decoding",
        )

    try:
        if result.format == "jpeg" and image.mode in ("L", "RGB"):
            pixels = _decode_jpeg(data, image.mode)
        elif result.format == "png":
            pixels = _decode_png(data)
        else:
            pixels = _decode_pillow(image)
    except _DecodeError as err:
        return _fail(result, err.reason, err.detail)
    except Exception as err:  # noqa: BLE001
        return _fail(result, *_classify_decoder_error(err))
    finally:
        image.close()

    result.bit_depth = 16 if pixels.dtype == np.uint16 else 8
    pixels = _apply_orientation(pixels, result.exif_orientation)
    pixels = canonical_pixels(pixels)
    result.pixels = pixels
    result.height, result.width = pixels.shape[:2]
    return result


class _DecodeError(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _fail(result: Decoded, reason: str, detail: str) -> Decoded:
    result.error = reason
    result.detail = detail
    result.pixels = None
    return result


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


def _classify_decoder_error(err: BaseException) -> tuple[str, str]:
    message = _one_line(err)
    lowered = message.lower()
    # libjpeg says "premature end of JPEG file" when the file stops early, and
    # "premature end of data segment" for corrupt data inside the file.
    if "truncated" in lowered or "end of jpeg file" in lowered or "incomplete" in lowered:
        return "truncated", message
    return "damaged", message


def _decode_jpeg(data: bytes, mode: str) -> np.ndarray:
    try:
        if mode == "L":
            return simplejpeg.decode_jpeg(data, colorspace="GRAY", strict=True)[:, :, 0]
        return simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True)
    except ValueError as err:
        reason, detail = _classify_decoder_error(err)
        raise _DecodeError(reason, detail) from err


@contextmanager
def _native_stderr_silenced():
    """Silence C-level stderr: libpng and OpenCV print their own complaints
    about a broken file, which the file's status and reason already record."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _decode_png(data: bytes) -> np.ndarray:
    with _native_stderr_silenced():
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None:
        # libpng refused it; say whether the end of the file is missing.
        if _PNG_END not in data[-64:]:
            raise _DecodeError("truncated", "PNG ends before its complete IEND chunk")
        raise _DecodeError("damaged", "PNG data fails its CRC or zlib checks")
    if decoded.ndim == 3:
        code = cv2.COLOR_BGRA2RGBA if decoded.shape[2] == 4 else cv2.COLOR_BGR2RGB
        decoded = cv2.cvtColor(decoded, code)
    return decoded


def _decode_pillow(image: Image.Image) -> np.ndarray:
    image.load()  # strict: Pillow refuses truncated data unless LOAD_TRUNCATED_IMAGES
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(image, dtype=np.uint16)
    if mode in ("I", "F"):
        values = np.asarray(image)
        if values.min() >= 0 and values.max() <= 65535:
            return values.astype(np.uint16)
        return _normalise_to_uint16(values)
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("1", "L"):
        image = image.convert("L")
    elif mode in ("LA", "PA", "La"):
        image = image.convert("RGBA")
    elif mode not in ("RGB", "RGBA"):
        image = image.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX...
    return np.asarray(image)


def _normalise_to_uint16(values: np.ndarray) -> np.ndarray:
    lo, hi = float(values.min()), float(values.max())
    scale = 65535.0 / (hi - lo) if hi > lo else 0.0
    return ((values - lo) * scale).astype(np.uint16)


def _exif_orientation(image: Image.Image) -> int:
    try:
        value = int(image.getexif().get(_EXIF_ORIENTATION_TAG, 1))
    except Exception:  # noqa: BLE001 - a broken EXIF block must not sink a good image
        return 1
    return value if 1 <= value <= 8 else 1


def _apply_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) so the array is shown upright.

    Same mapping as Pillow's ``ImageOps.exif_transpose`` (5 transpose,
    6 rotate 270, 7 transverse, 8 rotate 90), as views, without copying.
    """
    if orientation == 2:
        return pixels[:, ::-1]
    if orientation == 3:
        return pixels[::-1, ::-1]
    if orientation == 4:
        return pixels[::-1, :]
    if orientation == 5:
        return np.swapaxes(pixels, 0, 1)
    if orientation == 6:
        return np.rot90(pixels, -1)
    if orientation == 7:
        return np.swapaxes(pixels, 0, 1)[::-1, ::-1]
    if orientation == 8:
        return np.rot90(pixels, 1)
    return pixels


def canonical_pixels(pixels: np.ndarray) -> np.ndarray:
    """Collapse equal RGB channels to grey and drop an all-opaque alpha channel."""
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if pixels.ndim == 3 and pixels.shape[2] == 4:
        opaque = np.iinfo(pixels.dtype).max
        if bool((pixels[:, :, 3] == opaque).all()):
            pixels = pixels[:, :, :3]
    if pixels.ndim == 3 and pixels.shape[2] == 3 and _channels_may_be_equal(pixels):
        red, green, blue = pixels[:, :, 0], pixels[:, :, 1], pixels[:, :, 2]
        if np.array_equal(red, green) and np.array_equal(green, blue):
            pixels = red
    return np.ascontiguousarray(pixels)


#: Pixels per side of the grid :func:`_channels_may_be_equal` looks at first.
_PROBE_GRID = 64


def _channels_may_be_equal(pixels: np.ndarray) -> bool:
    """False when a sparse grid of pixels already shows two colour channels differ.

    Comparing every pixel of a 3000 x 2250 colour photo costs more than a third of
    its decoding; a colour image almost always shows colour on a 64 x 64 grid, and
    only an image that passes the grid gets the full comparison (same answer)."""
    step_y = max(pixels.shape[0] // _PROBE_GRID, 1)
    step_x = max(pixels.shape[1] // _PROBE_GRID, 1)
    probe = pixels[::step_y, ::step_x]
    return bool((probe[:, :, 0] == probe[:, :, 1]).all()
                and (probe[:, :, 1] == probe[:, :, 2]).all())


def to_gray_uint8(pixels: np.ndarray) -> np.ndarray:
    """Luminance as uint8, for analysis; 16-bit data is scaled by its real bit depth.

    Sensor data often sits in a 16-bit container with 10-14 significant bits;
    scaling by the smallest power of two above the maximum keeps it visible.
    """
    if pixels.dtype == np.uint16:
        peak = int(pixels.max())
        bits = next(b for b in (8, 10, 12, 14, 16) if peak < (1 << b))
        pixels = (pixels >> (bits - 8)).astype(np.uint8) if bits > 8 else pixels.astype(np.uint8)
    elif pixels.dtype != np.uint8:
        pixels = np.clip(pixels, 0, 255).astype(np.uint8)
    if pixels.ndim == 2:
        return pixels
    code = cv2.COLOR_RGBA2GRAY if pixels.shape[2] == 4 else cv2.COLOR_RGB2GRAY
    return cv2.cvtColor(np.ascontiguousarray(pixels), code)
