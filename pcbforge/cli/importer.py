"""``pcbforge import FORMAT SRC --out DATASET``: ``deeppcb``, and one command per label
format of the registry (:data:`pcbforge.datasets.formats.FORMATS`) that can be imported."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from pcbforge.cli._util import (
    EngineOption,
    SchedulerOption,
    WorkersOption,
    counted,
    engine_options,
    fail,
    validation_message,
    workers_of,
)
from pcbforge.cli.curate import print_summary
from pcbforge.core.files import DEFAULT_MAX_FILE_BYTES
from pcbforge.curate import CurateError, CurateParams
from pcbforge.curate.inspect import InspectParams
from pcbforge.curate.runner import WORKER_MODULES
from pcbforge.datasets.classes import ClassVocabulary
from pcbforge.datasets.formats import FORMATS, LabelFormat
from pcbforge.engine import EngineKind

import_app = typer.Typer(no_args_is_help=True, help="Import labelled datasets (runs curation).")

_MB = 1 << 20
#: ``--allow-outside-root``: shared by every import command.
AllowOutsideOption = Annotated[bool, typer.Option(
    "--allow-outside-root",
    help="Accept image paths in the label files that lead outside the dataset folder ('..', "
         "absolute paths, links leading out); default: refuse them, naming file and line.")]
#: ``--max-file-mb``: shared by every import command.
MaxFileOption = Annotated[int, typer.Option(
    "--max-file-mb", min=1,
    help="Files above this many MB are recorded as too_large without being read.")]

#: ``--class-map``, ``--add-class``, ``--strict-classes``: the class vocabulary of every
#: import (pcbforge.datasets.classes).
ClassMapOption = Annotated[list[str] | None, typer.Option(
    "--class-map", metavar="FROM=TO",
    help="Import the label name FROM as the class TO (e.g. missing_hole=pin-hole); repeat "
         "for several. Built-in aliases (open_circuit=open, mouse_bite=mousebite...) need "
         "none.")]
AddClassOption = Annotated[list[str] | None, typer.Option(
    "--add-class", metavar="NAME",
    help="A class of your own, kept as spelled (also when it is close to a built-in one); "
         "repeat for several.")]
StrictClassesOption = Annotated[bool, typer.Option(
    "--strict-classes",
    help="Refuse a label name that is no built-in class or alias, no --class-map FROM and "
         "no --add-class (default: keep it as a new class and say so).")]


def class_vocabulary(class_map: list[str] | None, add_class: list[str] | None,
                     strict: bool) -> ClassVocabulary:
    """The vocabulary ``--class-map``/``--add-class``/``--strict-classes`` ask for; a bad
    value exits with one line."""
    mapping: dict[str, str] = {}
    for entry in class_map or []:
        source, sep, target = entry.partition("=")
        if not sep or not source.strip() or not target.strip():
            fail(f"--class-map: expected FROM=TO (e.g. missing_hole=pin-hole), got {entry!r}")
        if source.strip() in mapping:
            fail(f"--class-map: {source.strip()!r} is mapped twice")
        mapping[source.strip()] = target.strip()
    try:
        return ClassVocabulary(map=mapping, add=list(add_class or []), strict=strict)
    except ValidationError as err:
        first = err.errors()[0]
        option = "--add-class" if first["loc"][:1] == ("add",) else "--class-map"
        fail(f"{option}: {first['msg'].removeprefix('Value error, ').removeprefix('map: ')}")


def print_classes(report: dict, console: Console) -> None:
    """The names an import renamed, and those it kept as new classes (a warning)."""
    classes = report.get("classes") or {}
    renamed = classes.get("renamed") or {}
    if renamed:
        console.print("classes renamed: " + ", ".join(f"{k} -> {v}" for k, v in
                                                      renamed.items()), soft_wrap=True)
    new = classes.get("new") or []
    if new:
        console.print(f"[yellow]note:[/] {len(new)} label names are no built-in class and "
                      f"were kept as classes of their own: {', '.join(new)} (--class-map "
                      f"NAME=CLASS maps one; --strict-classes refuses them)", soft_wrap=True)


def _curate_params(workers: int, max_file_mb: int) -> CurateParams:
    try:
        return CurateParams(workers=workers_of(workers),
                            inspect=InspectParams(max_file_bytes=max_file_mb * _MB))
    except ValidationError as err:
        fail(validation_message(err))


@import_app.command("deeppcb", no_args_is_help=True)
def import_deeppcb_command(
    src: Annotated[Path, typer.Argument(help=FORMATS["deeppcb"].source_help)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset folder to write.")],
    workers: WorkersOption = 0,
    engine: EngineOption = EngineKind.local,
    scheduler: SchedulerOption = None,
    allow_outside_root: AllowOutsideOption = False,
    max_file_mb: MaxFileOption = DEFAULT_MAX_FILE_BYTES // _MB,
    class_map: ClassMapOption = None,
    add_class: AddClassOption = None,
    strict_classes: StrictClassesOption = False,
) -> None:
    """Import DeepPCB: tested images with templates, boards, lists and defect boxes."""
    from pcbforge.pipeline import import_deeppcb

    errors = Console(stderr=True)
    params = _curate_params(workers, max_file_mb)
    vocabulary = class_vocabulary(class_map, add_class, strict_classes)
    with engine_options(engine, params.workers, scheduler, WORKER_MODULES) as run:
        try:
            result = import_deeppcb(src, out, params, progress=True, engine=run,
                                    allow_outside_root=allow_outside_root,
                                    classes=vocabulary)
        except (CurateError, FileNotFoundError, ValueError) as err:
            fail(err)
    console = Console()
    for problem in result.problems:
        errors.print(f"[yellow]problem:[/] {problem}", soft_wrap=True)
    print_summary(result.report, console)
    report = result.report
    console.print(
        f"DeepPCB: {counted(report['tested_images'], 'tested image')}, "
        f"{counted(report['templates'], 'template')}, {counted(report['boards'], 'board')}, "
        f"{counted(report['labels'], 'box', 'boxes')} ({_per_class(report)}); "
        f"{counted(len(result.problems), 'layout problem')} (their images are skipped)"
    )
    print_classes(report, console)


def _per_class(report: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(report["labels_per_class"].items()))


_MISSING_LABELS = typer.Option(
    "--allow-missing-labels",
    help="Read an image without a label file as an image with no defects (default: error).",
)


def _import_labelled(fmt: str, src: Path, out: Path, *, workers: int = 0,
                     allow_missing_labels: bool = False, images: Path | None = None,
                     engine: EngineKind = EngineKind.local, scheduler: str | None = None,
                     allow_outside_root: bool = False,
                     max_file_mb: int = DEFAULT_MAX_FILE_BYTES // _MB,
                     class_map: list[str] | None = None, add_class: list[str] | None = None,
                     strict_classes: bool = False) -> None:
    from pcbforge.datasets.dataset import DatasetError
    from pcbforge.pipeline import import_labelled

    params = _curate_params(workers, max_file_mb)
    vocabulary = class_vocabulary(class_map, add_class, strict_classes)
    with engine_options(engine, params.workers, scheduler, WORKER_MODULES) as run:
        try:
            result = import_labelled(
                fmt, src, out, params, images=images,
                missing_labels="empty" if allow_missing_labels else "error", progress=True,
                engine=run, allow_outside_root=allow_outside_root, classes=vocabulary,
            )
        except (CurateError, DatasetError, FileNotFoundError, ValueError) as err:
            fail(err)
    console = Console()
    print_summary(result.report, console)
    report = result.report
    splits = ", ".join(f"{k} {v}" for k, v in report["splits"].items())
    pairs = (f", {report['paired_images']} with their template ({report['templates']} "
             f"templates)" if "templates" in report else "")
    console.print(
        f"{fmt}: {report['annotated_images']} annotated images ({splits}){pairs}, "
        f"{report['labels']} boxes ({_per_class(report)}); "
        f"{report['images_not_in_annotations']} images under "
        f"{result.dataset.info.image_root} not in the annotations (skipped)"
    )
    print_classes(report, console)


_IMAGES = typer.Option(
    help="Folder the annotations' image names are relative to (default: images/ or data/ "
         "beside the annotations file, else its folder).")
#: The options a format may read (its ``options``), in the order the help lists them.
_FORMAT_OPTIONS = {"images": (Path | None, _IMAGES, None),
                   "missing_labels": (bool, _MISSING_LABELS, False)}


def _labelled_command(label_format: LabelFormat) -> Callable[..., None]:
    """``pcbforge import <format>`` for a label format of the registry: the options every
    import shares plus those the format reads (``--images``, ``--allow-missing-labels``)."""
    def parameter(name: str, annotation, default=inspect.Parameter.empty):
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                                 default=default)

    own = []
    for option, (kind, typer_option, default) in _FORMAT_OPTIONS.items():
        if option in label_format.options:
            name = "allow_missing_labels" if option == "missing_labels" else option
            own.append(parameter(name, Annotated[kind, typer_option], default))
    parameters = [
        parameter("src", Annotated[Path, typer.Argument(help=label_format.source_help)]),
        parameter("out", Annotated[Path, typer.Option("--out", "-o",
                                                      help="Dataset folder to write.")]),
        *own,
        parameter("workers", WorkersOption, 0),
        parameter("engine", EngineOption, EngineKind.local),
        parameter("scheduler", SchedulerOption, None),
        parameter("allow_outside_root", AllowOutsideOption, False),
        parameter("max_file_mb", MaxFileOption, DEFAULT_MAX_FILE_BYTES // _MB),
        parameter("class_map", ClassMapOption, None),
        parameter("add_class", AddClassOption, None),
        parameter("strict_classes", StrictClassesOption, False),
    ]

    def command(**options) -> None:
        _import_labelled(label_format.name, **options)

    # typer reads the parameters from the signature and the hints: both name the real types.
    command.__signature__ = inspect.Signature(parameters, return_annotation=None)
    command.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": None}
    command.__doc__ = f"Import {label_format.help}, with curation of every image."
    command.__name__ = f"import_{label_format.name}_command"
    return command


for _format in FORMATS.values():
    if _format.can_import:
        import_app.command(_format.name, no_args_is_help=True)(_labelled_command(_format))
