"""Curation: corrupt, low-quality and duplicate images, and same-scene groups.

Pure functions over images and tables (hashing, quality and its ``CHECKS`` registry,
verify, candidates, dedupe) and the :func:`curate` run that composes them; decoding and
folder scanning are on the ground floor (:mod:`pcbforge.core.decode`,
:mod:`pcbforge.core.scan`).
"""

from pcbforge.curate.runner import CurateError, CurateParams, CurateResult, curate

__all__ = ["CurateError", "CurateParams", "CurateResult", "curate"]
