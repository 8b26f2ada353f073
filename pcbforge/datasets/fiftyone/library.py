"""The fiftyone library, imported on first use with pcbforge's offline defaults.

Importing fiftyone takes seconds, so nothing in :mod:`pcbforge.datasets.fiftyone` imports
it at module level: every function that needs it calls :func:`import_fiftyone`.
"""

from __future__ import annotations

import importlib
import sys
from contextlib import contextmanager

from pcbforge.env import apply_offline_defaults


def import_fiftyone():
    """fiftyone, imported with the offline defaults set (no analytics unless the user
    turned them on)."""
    apply_offline_defaults()
    with _missing_metadata_as_none():
        import fiftyone
    return fiftyone


@contextmanager
def _missing_metadata_as_none():
    """While FiftyOne is first imported, let the ``importlib_metadata`` backport answer a
    missing metadata field with None, as the standard library does.

    FiftyOne's ``eta`` reads ``metadata("voxel51-eta")["author"]`` at import, a field its
    wheel does not have. Once the backport (>= 8) is imported (Dask's ``distributed`` does
    on Python < 3.12), its finder answers every metadata query and raises ``KeyError`` for
    a missing field, so ``import fiftyone`` would fail in any process that used Dask."""
    message = None
    if "importlib_metadata" in sys.modules and "fiftyone" not in sys.modules:
        try:  # the backport loads its adapters lazily
            message = importlib.import_module("importlib_metadata._adapters").Message
        except (ImportError, AttributeError):
            message = None
    strict = vars(message).get("__getitem__") if message is not None else None
    if strict is None:
        yield
        return

    def lenient(self, item):
        try:
            return strict(self, item)
        except KeyError:
            return None

    message.__getitem__ = lenient
    try:
        yield
    finally:
        message.__getitem__ = strict

