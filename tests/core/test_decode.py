import io
import struct
import time
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from pcbforge.core.decode import decode_image_bytes, sniff_format, to_gray_uint8
from pcbforge.curate.hashing import pixel_hash


def _photo(rng, h=96, w=128) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (h + w)], axis=-1)
    return np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)


def _pil_bytes(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _valid_encodings(rng):
    rgb = Image.fromarray(_photo(rng))
    gray = rgb.convert("L")
    exif = Image.Exif()
    exif[0x0112] = 6
    g16 = Image.fromarray(np.asarray(gray).astype(np.uint16) * 257)
    return {
        "png_gray16": _pil_bytes(g16, "PNG"),
        "png_gray": _pil_bytes(gray, "PNG"),
        "png_rgba": _pil_bytes(rgb.convert("RGBA"), "PNG"),
        "png_palette": _pil_bytes(rgb.convert("P"), "PNG"),
        "gif": _pil_bytes(rgb.convert("P"), "GIF"),
        "bmp": _pil_bytes(rgb, "BMP"),
        "tiff_lzw": _pil_bytes(rgb, "TIFF", compression="tiff_lzw"),
        "webp_lossless": _pil_bytes(rgb, "WEBP", lossless=True),
        "jpeg_cmyk": _pil_bytes(rgb.convert("CMYK"), "JPEG", quality=90),
        "jpeg_progressive": _pil_bytes(rgb, "JPEG", quality=90, progressive=True),
        "jpeg_exif_rotated": _pil_bytes(rgb, "JPEG", quality=90, exif=exif),
        "jpeg_gray": _pil_bytes(gray, "JPEG", quality=90),
    }


VALID_KINDS = list(_valid_encodings(np.random.default_rng(0)))


@pytest.mark.parametrize("kind", VALID_KINDS, ids=VALID_KINDS)
def test_valid_but_unusual_encodings_decode(kind):
    data = _valid_encodings(np.random.default_rng(0))[kind]
    decoded = decode_image_bytes(data)
    assert decoded.ok, (kind, decoded.error, decoded.detail)
    assert decoded.pixels is not None and decoded.pixels.size > 0
    if kind == "jpeg_exif_rotated":
        assert decoded.exif_orientation == 6
        assert (decoded.width, decoded.height) == (96, 128)  # rotated upright
    else:
        assert (decoded.width, decoded.height) == (128, 96)
    if kind == "png_gray16":
        assert decoded.bit_depth == 16 and decoded.pixels.dtype == np.uint16
    assert to_gray_uint8(decoded.pixels).dtype == np.uint8


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(orientation):
    rgb = Image.fromarray(_photo(np.random.default_rng(1), 40, 64))
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _pil_bytes(rgb, "PNG", exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    decoded = decode_image_bytes(data)
    assert decoded.exif_orientation == orientation
    np.testing.assert_array_equal(decoded.pixels, expected)


def test_png_of_jpeg_pixels_has_the_same_pixel_hash(board):
    ok, jpeg = cv2.imencode(".jpg", board, [cv2.IMWRITE_JPEG_QUALITY, 80])
    from_jpeg = decode_image_bytes(jpeg.tobytes())
    ok, png = cv2.imencode(".png", cv2.cvtColor(from_jpeg.pixels, cv2.COLOR_GRAY2BGR))
    from_png = decode_image_bytes(png.tobytes())
    assert pixel_hash(from_jpeg.pixels) == pixel_hash(from_png.pixels)
    assert pixel_hash(from_jpeg.pixels) != pixel_hash(board)


def _jpeg(board) -> bytes:
    return cv2.imencode(".jpg", board, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def _png(board) -> bytes:
    return cv2.imencode(".png", board)[1].tobytes()


def _patch_png_size(png: bytes, width: int, height: int) -> bytes:
    # IHDR is the first chunk: 8-byte signature, length, type, 13 data bytes, CRC.
    data = bytearray(png)
    ihdr = bytearray(data[16:29])
    ihdr[0:8] = struct.pack(">II", width, height)
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(ihdr)) & 0xFFFFFFFF)
    return bytes(data)


def _patch_jpeg_size(jpeg: bytes, width: int, height: int) -> bytes:
    data = bytearray(jpeg)
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _damage_jpeg(jpeg: bytes) -> bytes:
    data = bytearray(jpeg)
    middle = len(data) // 2
    junk = bytearray(np.random.default_rng(3).integers(0, 256, 64, dtype=np.uint8).tobytes())
    junk[10:12] = b"\xff\xd3"  # a restart marker where none belongs
    data[middle : middle + 64] = junk
    return bytes(data)


def _damage_png(png: bytes) -> bytes:
    data = bytearray(png)
    start = data.find(b"IDAT") + 200
    data[start : start + 64] = bytes(64)
    return bytes(data)


CORRUPT = {
    "zero_bytes": (lambda b: b"", "zero_bytes"),
    "html_page": (lambda b: b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>",
                  "not_an_image"),
    "random_bytes": (lambda b: np.random.default_rng(5).bytes(4096), "not_an_image"),
    "truncated_jpeg": (lambda b: _jpeg(b)[: len(_jpeg(b)) * 6 // 10], "truncated"),
    "jpeg_without_end": (lambda b: _jpeg(b)[:-2], "truncated"),
    "truncated_png": (lambda b: _png(b)[: len(_png(b)) // 2], "truncated"),
    "png_without_end": (lambda b: _png(b)[:-2], "truncated"),
    "damaged_png": (lambda b: _damage_png(_png(b)), "damaged"),
    "damaged_jpeg": (lambda b: _damage_jpeg(_jpeg(b)), "damaged"),
    "png_bomb": (lambda b: _patch_png_size(_png(b[:8, :8]), 100_000, 100_000),
                 "decompression_bomb"),
    "jpeg_bomb": (lambda b: _patch_jpeg_size(_jpeg(b[:16, :16]), 60_000, 60_000),
                  "decompression_bomb"),
}


@pytest.mark.parametrize("kind", list(CORRUPT), ids=list(CORRUPT))
def test_corrupt_files_get_a_reason(kind, board):
    make, reason = CORRUPT[kind]
    started = time.perf_counter()
    decoded = decode_image_bytes(make(board))
    assert not decoded.ok
    assert decoded.error == reason, decoded.detail
    assert decoded.detail
    assert decoded.pixels is None
    assert time.perf_counter() - started < 5  # a bomb is refused from its header


def test_a_header_claiming_more_pixels_than_the_file_can_hold_is_a_bomb(board):
    # 20000 x 20000 = 400 MP is within the default limit, but not in 300 bytes.
    decoded = decode_image_bytes(_patch_png_size(_png(board[:8, :8]), 20_000, 19_999))
    assert decoded.error == "decompression_bomb"
    assert "byte file" in decoded.detail


def test_pixel_limit_is_an_option(board):
    data = _png(board)
    assert decode_image_bytes(data, max_pixels=640 * 640).ok
    assert decode_image_bytes(data, max_pixels=640 * 640 - 1).error == "decompression_bomb"


@pytest.mark.parametrize(
    ("head", "fmt"),
    [(b"\xff\xd8\xff\xe0", "jpeg"), (b"\x89PNG\r\n\x1a\n", "png"), (b"GIF89a", "gif"),
     (b"BM", "bmp"), (b"II*\x00", "tiff"), (b"<html>", "text"), (b"\x00\x01\x02\xff", "")],
    ids=["jpeg", "png", "gif", "bmp", "tiff", "text", "unknown"],
)
def test_sniff_format(head, fmt):
    assert sniff_format(head + b"\x00" * 8 if fmt not in ("text",) else head) == fmt


def test_sixteen_bit_data_with_twelve_significant_bits_stays_visible():
    values = (np.arange(4096, dtype=np.uint16).reshape(64, 64))
    gray = to_gray_uint8(values)
    assert gray.max() == 255 and gray.min() == 0


@pytest.mark.parametrize("colour_at", ["nowhere", "on_the_grid", "between_grid_points"])
def test_grey_is_told_from_colour_whatever_pixels_hold_the_colour(colour_at):
    from pcbforge.core.decode import canonical_pixels

    grey = np.random.default_rng(0).integers(0, 256, (300, 400), dtype=np.uint8)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    if colour_at == "on_the_grid":
        rgb[0, 0, 1] ^= 1
    elif colour_at == "between_grid_points":
        rgb[150, 201, 2] ^= 1  # the 64 x 64 probe grid steps by 4 rows and 6 columns here
    out = canonical_pixels(rgb)
    assert out.shape == ((300, 400) if colour_at == "nowhere" else (300, 400, 3))
    assert np.array_equal(out, grey if colour_at == "nowhere" else rgb)
