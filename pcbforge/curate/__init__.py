"""Curation: corrupt, low-quality and duplicate images, and same-scene groups.

Pure functions over images and tables (decode, hashing, quality, verify,
candidates, dedupe) and the :func:`curate` run that composes them.
"""

from pcbforge.curate.runner import CurateError, CurateParams, CurateResult, curate

__all__ = ["CurateError", "CurateParams", "CurateResult", "curate"]
