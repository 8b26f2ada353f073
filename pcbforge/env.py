"""Process environment defaults that keep third-party libraries offline."""

from __future__ import annotations

import os

#: Variables set to these values unless the user already set them. FiftyOne
#: otherwise sends usage analytics and albumentations checks PyPI for updates.
OFFLINE_DEFAULTS: dict[str, str] = {
    "FIFTYONE_DO_NOT_TRACK": "true",
    "NO_ALBUMENTATIONS_UPDATE": "1",
}


def apply_offline_defaults(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Set :data:`OFFLINE_DEFAULTS` where unset; return the ones that were set.

    Called by the CLI on entry and before fiftyone/albumentations are imported,
    never at import time of :mod:`pcbforge`.
    """
    env = os.environ if environ is None else environ
    applied = {}
    for key, value in OFFLINE_DEFAULTS.items():
        if key not in env:
            env[key] = value
            applied[key] = value
    return applied
