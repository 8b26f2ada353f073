"""Find every file under a source folder, without recursion and without loops."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

#: Side-car files that sit beside images in datasets (labels, lists, metadata).
#: They are listed with status ``skipped`` rather than reported as corrupt images.
SIDECAR_EXTENSIONS = frozenset(
    {".txt", ".json", ".xml", ".csv", ".yaml", ".yml", ".md", ".html", ".htm", ".parquet"}
)


@dataclass(frozen=True)
class FoundFile:
    """One file found by :func:`scan_folder`."""

    path: str  # relative to the root, '/' separators, printable (non-UTF-8 bytes escaped)
    fs_path: str  # what to pass to open(): absolute, exactly as the file system spells it
    skip_reason: str = ""  # `not_an_image_file`, `hidden_file` or "" (inspect it)


@dataclass
class ScanResult:
    files: list[FoundFile]
    skipped_dirs: list[str] = field(default_factory=list)  # hidden dirs not descended
    symlink_loops: list[str] = field(default_factory=list)  # dir links already visited
    warnings: list[str] = field(default_factory=list)


def printable_path(relative: str) -> str:
    """A UTF-8-safe spelling of a path: undecodable bytes become ``\\xNN``."""
    try:
        relative.encode("utf-8")
        return relative
    except UnicodeEncodeError:
        return os.fsencode(relative).decode("utf-8", errors="backslashreplace")


def scan_folder(root: Path, exclude: Path | None = None) -> ScanResult:
    """List all files under ``root`` in a stable (sorted) order.

    Directory symlinks are followed once: a link back to a folder already
    visited (a loop) is recorded and not entered. ``exclude`` (for example
    the output folder) is never entered. Hidden folders (``.git``...) are not
    entered either; hidden files are listed as skipped. Whatever is not a folder is
    listed, FIFOs, sockets and devices included: nothing is dropped.
    """
    root = root.resolve()
    result = ScanResult(files=[])
    excluded = exclude.resolve() if exclude is not None else None
    visited = {os.path.realpath(root)}
    stack = [(str(root), "")]
    while stack:
        folder, prefix = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name, reverse=True)
        except OSError as err:
            result.warnings.append(f"cannot list {printable_path(prefix or '.')}: {err.strerror}")
            continue
        for entry in entries:
            relative = f"{prefix}{entry.name}"
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
            except OSError:
                is_dir = False
            if is_dir:
                real = os.path.realpath(entry.path)
                if excluded is not None and Path(real) == excluded:
                    continue
                if entry.name.startswith("."):
                    result.skipped_dirs.append(printable_path(relative))
                    continue
                if real in visited:
                    result.symlink_loops.append(printable_path(relative))
                    continue
                visited.add(real)
                stack.append((entry.path, relative + "/"))
                continue
            # Files, links, and also FIFOs, sockets and devices: every entry gets a row
            # (inspection never opens what is not a regular file, and says so).
            result.files.append(
                FoundFile(printable_path(relative), entry.path, _skip_reason(entry.name))
            )
    result.files.sort(key=lambda f: f.path)
    return result


def _skip_reason(name: str) -> str:
    if name.startswith("."):
        return "hidden_file"
    if os.path.splitext(name)[1].lower() in SIDECAR_EXTENSIONS:
        return "not_an_image_file"
    return ""
