"""What the App shows for each image: the file itself when a browser can decode it, else
a PNG copy in the dataset's view cache (the source is never touched).

File paths are stored as MongoDB can hold them (:func:`media_path`).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from pcbforge.core.files import atomic_write, read_regular_file
from pcbforge.datasets.dataset import Dataset
from pcbforge.datasets.fiftyone.fields import text_column

logger = logging.getLogger(__name__)

#: Image formats a browser shows, so the App can: anything else (TIFF, PNM, JPEG 2000, ...)
#: is shown through a PNG copy in ``DATASET/cache/view/`` (the source is never touched).
BROWSER_FORMATS = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".gif",
                             ".bmp", ".webp", ".avif", ".ico"})
#: The same, as the ``format`` column names a decoded file's real format.
BROWSER_DECODED = frozenset({"jpeg", "png", "gif", "bmp", "webp", "avif", "ico"})
VIEW_CACHE = Path("cache") / "view"


def display_files(dataset: Dataset, samples: pd.DataFrame) -> pd.Series:
    """:func:`display_file` of every row of ``samples``, with the format curation found."""
    formats = text_column(samples, "format")
    return pd.Series([display_file(dataset, path, fmt) for path, fmt in
                      zip(samples["path"].astype(str), formats, strict=True)],
                     index=samples.index, dtype=object)


def display_file(dataset: Dataset, path: str, decoded_format: str = "") -> str:
    """The file the App shows for samples-table ``path``: the image itself when browsers
    can decode its format (``decoded_format``, the ``format`` column, when curation found
    it; else the file name's extension), else a PNG copy of the pixels curation's decoder
    reads (EXIF orientation applied; 16-bit scaled to 8) written once under
    ``DATASET/cache/view/``, named after the source's path, size and modification time. An
    image that decoder refuses, or a cache that cannot be written, falls back to the image
    itself (the App shows a broken tile)."""
    image = dataset.image_path(path)
    if (decoded_format.lower() in BROWSER_DECODED if decoded_format
            else image.suffix.lower() in BROWSER_FORMATS):
        return media_path(image)
    try:
        stat = image.stat()
    except OSError:
        return media_path(image)
    key = hashlib.sha1(f"{os.fsencode(image)!r}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    proxy = dataset.root / VIEW_CACHE / f"{key.hexdigest()[:20]}.png"
    if proxy.is_file():
        return media_path(proxy)
    if not _write_viewable_copy(image, proxy):
        return media_path(image)
    return media_path(proxy)


def _write_viewable_copy(image: Path, proxy: Path) -> bool:
    """Write the pixels curation's decoder reads from ``image`` as the 8-bit PNG ``proxy``;
    False when that decoder refuses the image or the copy cannot be written."""
    import cv2

    from pcbforge.core.decode import decode_image_bytes

    try:
        pixels = decode_image_bytes(read_regular_file(image)).pixels  # curation's decoder
    except OSError:
        pixels = None
    if pixels is None:
        return False
    if pixels.ndim == 3:  # canonical RGB(A) -> OpenCV's BGR(A)
        pixels = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR if pixels.shape[2] == 3
                              else cv2.COLOR_RGBA2BGRA)
    if pixels.dtype != np.uint8:
        top = float(pixels.max()) if pixels.size else 0.0
        pixels = (pixels.astype(np.float64) * (255.0 / top) if top > 0 else
                  np.zeros(pixels.shape)).round().astype(np.uint8)
    ok, png = cv2.imencode(".png", pixels)
    if not ok:
        return False
    try:
        atomic_write(proxy, lambda tmp: Path(tmp).write_bytes(png.tobytes()))
    except OSError as err:
        logger.warning("cannot write a viewable copy of %s (%s): the App shows it broken",
                       image, err)
        return False
    return True


def media_path(path: Path) -> str:
    """A file path as FiftyOne can store it: MongoDB strings are UTF-8, so a file name
    that is not keeps its bytes as ``\\xNN`` (the App shows a broken tile; ``path`` and
    ``status`` still say which file it is)."""
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(path).decode("utf-8", "backslashreplace")
    return text

