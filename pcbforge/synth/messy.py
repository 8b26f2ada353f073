"""A deliberately messy image folder with a ground-truth manifest, for testing curation.

``make_messy_corpus`` writes boards and photo-like images together with everything a real
inspection image dump accumulates: byte copies, re-encodes, resized/brightened/rotated
copies, broken and hostile files, unusual-but-valid encodings and useless frames. The
returned manifest says, per file, what a perfect curation tool should conclude. The manifest
is not written inside the folder (a curation tool scans it); use ``write_manifest``.

Same seed => byte-identical tree (no timestamps are written by cv2 or Pillow encoders).
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image

from pcbforge.synth.boards import DEFECT_KINDS, add_local_defect, draw_board, render_photo_like

MANIFEST_COLUMNS: tuple[str, ...] = (
    "path",
    "kind",
    "expected_status",
    "expected_reason",
    "scene",
    "cluster",
)
STATUSES: tuple[str, ...] = ("ok", "corrupt", "duplicate", "low_quality")
REASONS: dict[str, tuple[str, ...]] = {
    "ok": ("",),
    "corrupt": (
        "zero_bytes",
        "not_an_image",
        "truncated",
        "damaged",
        "decompression_bomb",
        "unreadable",
    ),
    "duplicate": ("exact_duplicate", "near_duplicate", "transformed_duplicate"),
    "low_quality": ("blank", "too_dark", "too_bright", "too_small"),
}

_HTML_ERROR = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
    b"<body><h1>502 Bad Gateway</h1><p>The image server did not respond.</p>"
    b"<hr><address>nginx</address></body></html>\n"
)


def _rng(seed: int, tag: str) -> np.random.Generator:
    """Independent stream per item, so adding files elsewhere never changes this one."""
    return np.random.default_rng([seed, zlib.crc32(tag.encode())])


def _encode(img: np.ndarray, ext: str, quality: int = 95) -> bytes:
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext == ".jpg" else []
    ok, buf = cv2.imencode(ext, img, params)
    if not ok:
        raise RuntimeError(f"cv2 could not encode {ext}")
    return buf.tobytes()


def _decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def _pil(img: np.ndarray) -> Image.Image:
    """cv2 BGR/gray array -> Pillow image."""
    return Image.fromarray(img if img.ndim == 2 else img[..., ::-1].copy())


def _pil_bytes(im: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _png_chunks(data: bytes) -> list[tuple[int, bytes]]:
    """(offset, type) of each PNG chunk."""
    out, pos = [], 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        out.append((pos, data[pos + 4 : pos + 8]))
        pos += 12 + length
    return out


def _jpeg_segments(data: bytes) -> list[tuple[int, int]]:
    """(offset, marker) of each JPEG header segment, up to and including SOS."""
    out, pos = [], 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        out.append((pos, marker))
        if marker == 0xDA:
            break
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        pos += 2 + length
    return out


def _damage_png(data: bytes) -> bytes:
    """Invert 32 bytes in the middle of the IDAT data; lengths stay, CRC no longer matches."""
    idats = [off for off, typ in _png_chunks(data) if typ == b"IDAT"]
    off = idats[len(idats) // 2]
    (length,) = struct.unpack(">I", data[off : off + 4])
    mid = off + 8 + length // 2
    buf = bytearray(data)
    for i in range(mid - 16, mid + 16):
        buf[i] ^= 0xFF
    return bytes(buf)


def _damage_jpeg(data: bytes, rng: np.random.Generator) -> bytes:
    """Overwrite 64 bytes in the middle of the entropy-coded scan; headers and EOI survive."""
    sos = _jpeg_segments(data)[-1][0]
    (hdr,) = struct.unpack(">H", data[sos + 2 : sos + 4])
    start, end = sos + 2 + hdr, len(data) - 2
    mid = (start + end) // 2
    buf = bytearray(data)
    buf[mid - 32 : mid + 32] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
    return bytes(buf)


def _png_bomb(small_png: bytes, width: int = 100_000, height: int = 100_000) -> bytes:
    """A small valid PNG whose IHDR claims a huge size (CRC fixed, so only the size is a lie)."""
    buf = bytearray(small_png)
    assert buf[12:16] == b"IHDR"
    buf[16:24] = struct.pack(">II", width, height)
    buf[29:33] = struct.pack(">I", zlib.crc32(bytes(buf[12:29])) & 0xFFFFFFFF)
    return bytes(buf)


def _jpeg_bomb(small_jpeg: bytes, width: int = 60_000, height: int = 60_000) -> bytes:
    """A small JPEG whose SOF0 claims a huge size."""
    buf = bytearray(small_jpeg)
    sof = next(off for off, marker in _jpeg_segments(small_jpeg) if marker == 0xC0)
    buf[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(buf)


class _Writer:
    """Writes files under the corpus root and collects their manifest rows."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.rows: list[dict[str, str]] = []

    def add(
        self, rel: str, data: bytes, kind: str, status: str, reason: str, scene: str, cluster: str
    ) -> None:
        assert reason in REASONS[status], (status, reason)
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.rows.append(
            {
                "path": rel,
                "kind": kind,
                "expected_status": status,
                "expected_reason": reason,
                "scene": scene,
                "cluster": cluster,
            }
        )

    def corrupt(self, rel: str, data: bytes, kind: str, reason: str) -> None:
        tag = "corrupt:" + rel
        self.add(rel, data, kind, "corrupt", reason, tag, "")

    def unique(self, rel: str, data: bytes, kind: str, status: str, reason: str) -> None:
        """A file that is its own scene and its own cluster."""
        self.add(rel, data, kind, status, reason, rel, rel)


def _gain(img: np.ndarray, gain: float, offset: float) -> np.ndarray:
    return np.clip(np.round(img.astype(np.float32) * gain + offset), 0, 255).astype(np.uint8)


def _near_ops(rng: np.random.Generator) -> list[tuple[str, Callable[[np.ndarray], np.ndarray]]]:
    sigma = float(rng.uniform(4, 6))
    noise_rng = np.random.default_rng(rng.integers(2**32))

    def noise(img: np.ndarray) -> np.ndarray:
        grain = noise_rng.normal(0, sigma, img.shape)
        return np.clip(np.round(img + grain), 0, 255).astype(np.uint8)

    def resize(f: float) -> Callable[[np.ndarray], np.ndarray]:
        interp = cv2.INTER_AREA if f < 1 else cv2.INTER_CUBIC
        return lambda img: cv2.resize(img, None, fx=f, fy=f, interpolation=interp)

    ident = lambda img: img  # noqa: E731 - the JPEG re-encode does the work
    return [
        ("reencode_q60", ident),
        ("resize_half", resize(0.5)),
        ("brighter", lambda img: _gain(img, 1.0, 15)),
        ("noise", noise),
        ("reencode_q70", ident),
        ("resize_up", resize(1.5)),
        ("darker", lambda img: _gain(img, 1.0, -15)),
        ("blur", lambda img: cv2.GaussianBlur(img, (0, 0), 1.0)),
        ("reencode_q80", ident),
        ("gain_1.1", lambda img: _gain(img, 1.1, 0)),
        ("gain_0.9", lambda img: _gain(img, 0.9, 0)),
    ]


_TRANSFORMS: list[tuple[str, Callable[[np.ndarray], np.ndarray], int | None]] = [
    # (kind, transform, JPEG quality when re-encoded on purpose)
    ("rot90", lambda img: np.ascontiguousarray(np.rot90(img, -1)), None),
    ("rot180", lambda img: np.ascontiguousarray(np.rot90(img, 2)), None),
    ("rot270", lambda img: np.ascontiguousarray(np.rot90(img, 1)), None),
    ("hflip", lambda img: np.ascontiguousarray(img[:, ::-1]), None),
    ("vflip", lambda img: np.ascontiguousarray(img[::-1]), None),
    ("rot90_q75", lambda img: np.ascontiguousarray(np.rot90(img, -1)), 75),
    ("hflip_q70", lambda img: np.ascontiguousarray(img[:, ::-1]), 70),
]


def make_messy_corpus(
    out: Path,
    *,
    seed: int = 0,
    n_boards: int = 6,
    n_photos: int = 3,
    hostile: bool = False,
) -> pd.DataFrame:
    """Write a messy image folder under ``out`` and return its ground-truth manifest.

    ``out`` is created; an existing non-empty ``out`` is refused. The manifest has the
    columns in ``MANIFEST_COLUMNS`` (object dtype: hostile names are surrogate-escaped, see
    ``os.fsdecode``), one row per regular file, ``path`` relative to ``out`` with '/'.
    ``hostile`` adds a non-UTF-8 file name, a mode-000 file and a ``loop -> .`` symlink
    (the symlink is not a file and is not in the manifest).
    """
    out = Path(out)
    if n_boards < 1 or n_photos < 1:
        raise ValueError("n_boards and n_photos must be >= 1")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"refusing to write into non-empty {out}")
    out.mkdir(parents=True, exist_ok=True)
    wr = _Writer(out)
    boards = _write_boards(wr, seed, n_boards)
    photos = _write_photos(wr, seed, n_photos)
    # Interleave so every kind of copy hits both boards and photos.
    sources: list[_Original] = []
    for k in range(max(len(boards), len(photos))):
        sources += boards[k : k + 1] + photos[k : k + 1]
    _write_exact_copies(wr, boards, photos, sources)
    _write_near_copies(wr, seed, sources)
    _write_transformed_copies(wr, sources)
    _write_broken(wr, seed, boards[0][1], photos[0][1])
    _write_odd(wr, seed)
    _write_low_quality(wr, seed)
    if hostile:
        _write_hostile(wr, seed)

    df = pd.DataFrame(wr.rows, columns=list(MANIFEST_COLUMNS), dtype=object)
    return df.sort_values("path", ignore_index=True)


#: An original image: (rel path, encoded bytes, decoded pixels, cluster id == scene id).
_Original = tuple[str, bytes, np.ndarray, str]


def _stem(rel: str) -> str:
    return rel.rsplit("/", 1)[-1].rsplit(".", 1)[0]


def _write_boards(wr: _Writer, seed: int, n_boards: int) -> list[_Original]:
    """Procedural boards (some cropped, PNG and JPEG), each with one defect variant."""
    boards = []
    for i in range(n_boards):
        rng = _rng(seed, f"board{i}")
        arr = draw_board(rng, 640)
        if i % 3 == 2:  # some non-square crops, as tiles cut from a larger scan
            y0, x0 = int(rng.integers(0, 640 - 384 + 1)), int(rng.integers(0, 640 - 512 + 1))
            arr = np.ascontiguousarray(arr[y0 : y0 + 384, x0 : x0 + 512])
        ext = ".jpg" if i % 2 else ".png"
        data = _encode(arr, ext, 95)
        name = f"board_{i:02d}"
        rel = f"boards/{name}{ext}"
        wr.add(rel, data, "original", "ok", "", name, name)
        boards.append((rel, data, _decode(data), name))
        # A defect variant is the same scene but a different picture: never a duplicate.
        for j in range(len(DEFECT_KINDS)):
            kind = DEFECT_KINDS[(i + j) % len(DEFECT_KINDS)]
            try:
                bad, _ = add_local_defect(arr, rng, kind)
            except ValueError:
                continue
            wr.add(
                f"boards/{name}_{kind}.png", _encode(bad, ".png"), f"defect_{kind}", "ok", "",
                name, f"{name}_{kind}",
            )
            break
    return boards


def _write_photos(wr: _Writer, seed: int, n_photos: int) -> list[_Original]:
    photos = []
    for i in range(n_photos):
        img = render_photo_like(_rng(seed, f"photo{i}"), 360, 480)
        data = _encode(img, ".jpg", 90)
        name = f"photo_{i:02d}"
        rel = f"photos/{name}.jpg"
        wr.add(rel, data, "original", "ok", "", name, name)
        photos.append((rel, data, _decode(data), name))
    return photos


def _write_exact_copies(wr: _Writer, boards: list[_Original], photos: list[_Original],
                        sources: list[_Original]) -> None:
    """Exact duplicates: byte copies, and the same pixels in another lossless container."""
    copy_targets = [(boards[0], "copies/{stem}.png"), (photos[0], "copies/{stem} (1).jpg")]
    if len(boards) > 1:
        copy_targets.append((boards[1], "copies/backup/2023/{stem}.jpg"))
    for (rel, data, _, cluster), pattern in copy_targets:
        dup = pattern.format(stem=_stem(rel))
        wr.add(dup, data, "copy", "duplicate", "exact_duplicate", cluster, cluster)
    jpeg_src = next(s for s in sources if s[0].endswith(".jpg"))
    wr.add(
        f"copies/{_stem(jpeg_src[0])}_decoded.png", _encode(jpeg_src[2], ".png"), "png_of_jpeg",
        "duplicate", "exact_duplicate", jpeg_src[3], jpeg_src[3],
    )
    png_src = boards[0]
    wr.add(
        f"copies/{_stem(png_src[0])}.bmp", _encode(png_src[2], ".bmp"), "bmp_of_png",
        "duplicate", "exact_duplicate", png_src[3], png_src[3],
    )


def _write_near_copies(wr: _Writer, seed: int, sources: list[_Original]) -> None:
    """Near duplicates: lossy re-encodes, resampling, photometric changes, noise, blur."""
    for j, (kind, op) in enumerate(_near_ops(_rng(seed, "near"))):
        rel, _, pixels, cluster = sources[j % len(sources)]
        if kind.startswith("reencode_q"):
            ext, quality = ".jpg", int(kind.removeprefix("reencode_q"))
        else:
            ext, quality = ("." + rel.rsplit(".", 1)[-1]), 92
        data = _encode(op(pixels), ext, quality)
        wr.add(
            f"copies/near/{_stem(rel)}_{kind}{ext}", data, kind, "duplicate", "near_duplicate",
            cluster, cluster,
        )


def _write_transformed_copies(wr: _Writer, sources: list[_Original]) -> None:
    """Transformed duplicates: rotations and mirrors, some of them re-encoded as JPEG."""
    for j, (kind, op, quality) in enumerate(_TRANSFORMS):
        rel, _, pixels, cluster = sources[(j + 1) % len(sources)]
        ext = ".jpg" if quality or rel.endswith(".jpg") else ".png"
        data = _encode(op(pixels), ext, quality or 92)
        wr.add(
            f"copies/aug/{_stem(rel)}_{kind}{ext}", data, kind, "duplicate",
            "transformed_duplicate", cluster, cluster,
        )


def _write_broken(wr: _Writer, seed: int, board_png: bytes, photo_jpg: bytes) -> None:
    rng = _rng(seed, "broken")
    fresh = render_photo_like(rng, 240, 320)
    wr.corrupt("broken/empty.jpg", b"", "zero_bytes", "zero_bytes")
    wr.corrupt(
        "broken/random.png", rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "random_bytes", "not_an_image",
    )
    wr.corrupt("broken/download.jpg", _HTML_ERROR, "html_page", "not_an_image")
    # Interrupted copies of real originals: a tolerant decoder may still show part of them.
    wr.corrupt(
        "broken/photo_00_partial.jpg", photo_jpg[: len(photo_jpg) * 6 // 10], "truncated_jpeg",
        "truncated",
    )
    wr.corrupt(
        "broken/board_00_partial.png", board_png[: len(board_png) // 2], "truncated_png",
        "truncated",
    )
    wr.corrupt("broken/bitrot.png", _damage_png(_encode(fresh, ".png")), "damaged_png", "damaged")
    wr.corrupt(
        "broken/bitrot.jpg", _damage_jpeg(_encode(fresh[::-1].copy(), ".jpg", 90), rng),
        "damaged_jpeg", "damaged",
    )
    tiny = render_photo_like(rng, 16, 16)
    wr.corrupt(
        "broken/huge.png", _png_bomb(_encode(tiny, ".png")), "bomb_png", "decompression_bomb"
    )
    wr.corrupt(
        "broken/huge.jpg", _jpeg_bomb(_encode(tiny, ".jpg", 90)), "bomb_jpeg",
        "decompression_bomb",
    )


def _write_odd(wr: _Writer, seed: int) -> None:
    """Valid files in unusual encodings; each from its own image so none duplicates another."""

    def img(tag: str) -> np.ndarray:
        rng = _rng(seed, "odd:" + tag)
        return render_photo_like(rng, int(rng.integers(200, 301)), int(rng.integers(260, 401)))

    def gray(tag: str) -> np.ndarray:
        return cv2.cvtColor(img(tag), cv2.COLOR_BGR2GRAY)

    g16 = gray("gray16").astype(np.uint16) * 257
    g16 += _rng(seed, "odd:gray16:lsb").integers(0, 256, g16.shape, dtype=np.uint16)
    rgba = _pil(img("rgba")).convert("RGBA")
    alpha = np.linspace(64, 255, rgba.width, dtype=np.float32)[None].repeat(rgba.height, 0)
    rgba.putalpha(Image.fromarray(alpha.astype(np.uint8)))
    palette = _pil(img("palette")).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    gif = _pil(img("gif")).convert("P", palette=Image.Palette.ADAPTIVE, colors=128)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    upright = img("exif")
    stored = _pil(np.ascontiguousarray(np.rot90(upright, 1)))  # pixels kept rotated CCW
    files = [
        ("odd/gray16.png", "gray16_png", _pil_bytes(Image.fromarray(g16), "PNG")),
        ("odd/gray8.png", "gray8_png", _pil_bytes(_pil(gray("gray8")), "PNG")),
        ("odd/rgba.png", "rgba_png", _pil_bytes(rgba, "PNG")),
        ("odd/palette.png", "palette_png", _pil_bytes(palette, "PNG")),
        ("odd/logo.gif", "gif", _pil_bytes(gif, "GIF")),
        ("odd/scan.bmp", "bmp", _pil_bytes(_pil(img("bmp")), "BMP")),
        (
            "odd/scan.tif", "tiff_lzw",
            _pil_bytes(_pil(img("tiff")), "TIFF", compression="tiff_lzw"),
        ),
        (
            "odd/lossless.webp", "webp_lossless",
            _pil_bytes(_pil(img("webp")), "WEBP", lossless=True),
        ),
        ("odd/cmyk.jpg", "cmyk_jpeg", _pil_bytes(_pil(img("cmyk")).convert("CMYK"), "JPEG")),
        (
            "odd/progressive.jpg", "progressive_jpeg",
            _pil_bytes(_pil(img("progressive")), "JPEG", quality=90, progressive=True),
        ),
        ("odd/exif_rotated.jpg", "exif_rotated_jpeg", _pil_bytes(stored, "JPEG", exif=exif)),
        ("odd/actually_png.jpg", "png_named_jpg", _pil_bytes(_pil(img("png_as_jpg")), "PNG")),
    ]
    for rel, kind, data in files:
        wr.unique(rel, data, kind, "ok", "")


def _write_low_quality(wr: _Writer, seed: int) -> None:
    rng = _rng(seed, "lowq")
    white = np.full((640, 640), 255, np.uint8)
    wr.unique("lowq/white.png", _encode(white, ".png"), "blank_white", "low_quality", "blank")
    wr.unique("lowq/black.png", _encode(white * 0, ".png"), "blank_black", "low_quality", "blank")
    # Lossless PNG keeps the promised value ranges exact (JPEG ringing would not).
    dim = render_photo_like(rng, 360, 480).astype(np.uint16) * 20 // 256  # 0..19, not uniform
    wr.unique(
        "lowq/dark.png", _encode(dim.astype(np.uint8), ".png"), "dark", "low_quality", "too_dark"
    )
    glare = 236 + render_photo_like(rng, 360, 480).astype(np.uint16) * 20 // 256  # 236..255
    wr.unique(
        "lowq/glare.png", _encode(glare.astype(np.uint8), ".png"), "bright", "low_quality",
        "too_bright",
    )
    tiny = render_photo_like(rng, 20, 20)
    wr.unique("lowq/thumb.png", _encode(tiny, ".png"), "tiny", "low_quality", "too_small")


def _write_hostile(wr: _Writer, seed: int) -> None:
    rng = _rng(seed, "hostile")
    root = os.fsencode(wr.root)
    data = _encode(render_photo_like(rng, 240, 320), ".png")
    fd = os.open(os.path.join(root, b"bad_\xff.png"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    rel = os.fsdecode(b"bad_\xff.png")
    wr.rows.append(
        {
            "path": rel,
            "kind": "non_utf8_name",
            "expected_status": "ok",
            "expected_reason": "",
            "scene": "bad_name",
            "cluster": "bad_name",
        }
    )
    # Root can still read a mode-000 file; the expectation is for unprivileged curation.
    wr.corrupt(
        "broken/locked.png", _encode(render_photo_like(rng, 240, 320), ".png"), "mode_000",
        "unreadable",
    )
    os.chmod(wr.root / "broken/locked.png", 0)
    os.symlink(".", wr.root / "loop", target_is_directory=True)


def write_manifest(df: pd.DataFrame, path: Path) -> None:
    """Write a manifest as UTF-8 CSV; undecodable file names round-trip via surrogateescape."""
    df.to_csv(path, index=False, encoding="utf-8", errors="surrogateescape")


def read_manifest(path: Path) -> pd.DataFrame:
    """Read a manifest written by ``write_manifest`` (all columns as str, "" kept as "")."""
    return pd.read_csv(
        path, dtype=object, keep_default_na=False, encoding="utf-8",
        encoding_errors="surrogateescape",
    )
