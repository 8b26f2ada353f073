"""The label formats pcbforge reads and writes, by name: one registry that the importers,
the exporter, the recipe and the CLI all read.

Each format module owns its discovery, load and save and describes them in one
:class:`~pcbforge.datasets.formats_common.LabelFormat` (its ``FORMAT``); this module
collects them. A format added here, or by :func:`register_format` at run time, can be
imported (``pcbforge.pipeline.import_labelled``) and exported
(``pcbforge.pipeline.export_dataset``) with no other change::

    from pcbforge.datasets.formats import FORMATS, get_format

    get_format("coco").discover(Path("exports/coco"))   # its parts, with their splits
    sorted(FORMATS)                                      # ['coco', 'deeppcb', 'voc', 'yolo']
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from enum import Enum

from pcbforge.datasets import coco, deeppcb, voc, yolo
from pcbforge.datasets.formats_common import (
    LabelFormat,
    ReadOptions,
    SourceError,
    SourcePart,
    TemplateMode,
)

#: The formats that come with pcbforge, in the order the CLI and messages list them.
BUILTIN_FORMATS: tuple[LabelFormat, ...] = (coco.FORMAT, yolo.FORMAT, voc.FORMAT,
                                            deeppcb.FORMAT)
#: Format name -> format: the built-ins and any registered since.
FORMATS: dict[str, LabelFormat] = {fmt.name: fmt for fmt in BUILTIN_FORMATS}
#: The built-in formats' names (the CLI's choices).
FormatName = Enum("FormatName", {fmt.name: fmt.name for fmt in BUILTIN_FORMATS}, type=str)
FormatName.__doc__ = "The names of the built-in label formats."


class UnknownFormatError(ValueError):
    """A format name that is not registered, or a format asked for what it cannot do."""


def register_format(fmt: LabelFormat, *, replace: bool = False) -> LabelFormat:
    """Add ``fmt`` to :data:`FORMATS` (a name already taken raises unless ``replace``)."""
    if not fmt.name or not fmt.name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"a format name is letters, digits, '-' and '_', got {fmt.name!r}")
    if fmt.name in FORMATS and not replace:
        raise ValueError(f"format {fmt.name!r} is already registered")
    if not (fmt.can_import or fmt.can_export):
        raise ValueError(f"format {fmt.name!r} can neither be imported (discover and load) "
                         f"nor exported (save)")
    FORMATS[fmt.name] = fmt
    return fmt


def unregister_format(name: str) -> None:
    """Remove a format added by :func:`register_format` (the built-ins stay)."""
    if any(fmt.name == name for fmt in BUILTIN_FORMATS):
        raise ValueError(f"format {name!r} is built in; it cannot be removed")
    FORMATS.pop(name, None)


def format_names(*, can: str | None = None) -> tuple[str, ...]:
    """The registered names, built-ins first; ``can="import"`` / ``"export"``: only those
    formats that can."""
    if can not in (None, "import", "export"):
        raise ValueError(f"can must be 'import', 'export' or None, got {can!r}")
    return tuple(name for name, fmt in FORMATS.items()
                 if can is None or (fmt.can_import if can == "import" else fmt.can_export))


def get_format(name: str, *, can: str | None = None) -> LabelFormat:
    """The format called ``name``; an unknown name, or one that cannot do ``can``
    (``import``/``export``), raises :class:`UnknownFormatError` listing those that can."""
    name = getattr(name, "value", name)  # a FormatName
    valid = format_names(can=can)
    fmt = FORMATS.get(name)
    if fmt is None:
        raise UnknownFormatError(f"unknown format {name!r}; choose one of {', '.join(valid)}")
    if name not in valid:
        raise UnknownFormatError(f"format {name!r} cannot be {can}ed this way; formats that "
                                 f"can: {', '.join(valid)}")
    return fmt


class FormatNames(Sequence[str]):
    """The registered names that can ``import``/``export``, read afresh on every use (a
    format registered later is in it)."""

    def __init__(self, can: str | None = None) -> None:
        self.can = can

    def _names(self) -> tuple[str, ...]:
        return format_names(can=self.can)

    def __getitem__(self, index):  # type: ignore[override]
        return self._names()[index]

    def __len__(self) -> int:
        return len(self._names())

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __eq__(self, other: object) -> bool:
        return tuple(self) == tuple(other) if isinstance(other, Sequence) else NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(self._names())


__all__ = ["BUILTIN_FORMATS", "FORMATS", "FormatName", "FormatNames", "LabelFormat",
           "ReadOptions", "SourceError", "SourcePart", "TemplateMode", "UnknownFormatError",
           "format_names", "get_format", "register_format", "unregister_format"]
