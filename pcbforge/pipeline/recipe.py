"""The build recipe: one YAML file that says what ``pcbforge build`` makes.

Every section is a pydantic model with ``extra='forbid'``: a key that is not known is an
error that names the key, where it is and the keys that are valid there. Relative paths
are read relative to the recipe file's folder (the current folder for a recipe given as
text). Without a recipe, the embedded default (``default.yaml`` beside this module) is
used: procedural good boards, labelled synthetic defects on them, curate, split, audit,
the QA of the labels against their templates, COCO and YOLO exports and the report.
"""

from __future__ import annotations

import difflib
import math
import re
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from pcbforge.curate.dedupe import DedupeParams
from pcbforge.curate.inspect import InspectParams
from pcbforge.datasets.classes import ClassVocabulary
from pcbforge.datasets.formats import FORMATS, TemplateMode, format_names
from pcbforge.datasets.samples import STATUSES
from pcbforge.qa.params import QAParams
from pcbforge.split import SplitParams
from pcbforge.synth.compose import density_replaces_count
from pcbforge.synth.registry import class_names, defect_spec

DEFAULT_RECIPE = "default.yaml"
#: Source names that the build uses itself (the synthetic images' folder).
RESERVED_NAMES = ("synth",)
_NAME = r"^[a-z0-9][a-z0-9_-]{0,39}$"


class RecipeError(ValueError):
    """A recipe that cannot be used; the message names the file, the key and the fix."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Named(_Section):
    """A source: its ``name`` names its folder in the build (``stages/source-NAME``,
    ``images/NAME/...``)."""

    @field_validator("name", check_fields=False)
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.fullmatch(_NAME, value):
            raise ValueError(f"source names are 1-40 lowercase letters, digits, '-' and '_' "
                             f"(starting with a letter or digit), got {value!r}")
        return value


def _resolve(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base")
    value = Path(value).expanduser()
    return (Path(base) / value if base is not None and not value.is_absolute() else value
            ).absolute()


class ProceduralSource(_Named):
    """Defect-free procedural boards (binarized DeepPCB-like tiles), drawn by the build."""

    kind: Literal["procedural"]
    name: str
    count: int = Field(12, ge=1, le=100_000)
    size: int = Field(640, ge=64, le=8192)
    #: Board ``i`` depends on ``(seed, i)`` only; ``null``: the recipe's seed.
    seed: int | None = None


class FolderSource(_Named):
    """A folder of images without labels (curated: corrupt, low quality, duplicates)."""

    kind: Literal["folder"]
    name: str
    path: Path

    _path = field_validator("path")(_resolve)


class DeepPCBSource(_Named):
    """A folder in DeepPCB's layout (``groupN/N/X_temp.jpg``, ``X_test.jpg``, ``N_not/X.txt``)."""

    kind: Literal["deeppcb"]
    name: str
    path: Path
    #: Only these ``groupN`` folders (one scanned board each); empty: every group.
    groups: list[str] = Field(default_factory=list)

    _path = field_validator("path")(_resolve)

    @field_validator("groups")
    @classmethod
    def _groups(cls, value: list[str]) -> list[str]:
        bad = [g for g in value if not g or "/" in g or g.startswith(".")]
        if bad:
            raise ValueError(f"groups are folder names like group00041, got {bad[0]!r}")
        if len(set(value)) != len(value):
            raise ValueError("a group is listed twice")
        return value


def _format_that_can(can: str, what: str):
    """A validator: the name of a registered format that can ``can`` (import/export)."""
    def check(name: str) -> str:
        valid = format_names(can=can)
        if name not in valid:
            raise ValueError(f"not {what} that can be {can}ed; choose one of "
                             f"{', '.join(valid)}")
        return name

    return check


_importable = _format_that_can("import", "a label format")
_exportable = _format_that_can("export", "a format")


class LabelledSource(_Named):
    """A dataset in a label format of the registry: COCO, YOLO, VOC... (every split in it;
    a split it states is kept as ``source_split``, the build makes its own)."""

    #: A format of :data:`pcbforge.datasets.formats.FORMATS` that can be imported.
    kind: Annotated[str, AfterValidator(_importable)]
    name: str
    path: Path
    #: COCO only: the images' folder when it is not ``images/`` or ``data/`` beside the JSON.
    images: Path | None = None
    #: YOLO/VOC: an image without a label file is an ``error``, or has no boxes (``empty``).
    missing_labels: Literal["error", "empty"] = "error"

    _path = field_validator("path", "images")(_resolve)

    @model_validator(mode="after")
    def _images_only_where_read(self) -> LabelledSource:
        if self.images is not None and "images" not in FORMATS[self.kind].options:
            takers = [n for n in format_names(can="import") if "images" in FORMATS[n].options]
            raise ValueError(f"images is a {'/'.join(takers).upper()} option; a {self.kind} "
                             f"source finds its images itself")
        return self


#: Source kinds with a model of their own; every importable label format is a
#: :class:`LabelledSource` (union tag ``labelled``).
_SOURCE_MODELS: dict[str, type[_Named]] = {
    "procedural": ProceduralSource, "folder": FolderSource, "deeppcb": DeepPCBSource,
    "labelled": LabelledSource}


def source_kinds() -> tuple[str, ...]:
    """Every valid source ``kind``: the built-in kinds, then the importable formats."""
    return ("procedural", "folder", "deeppcb", *format_names(can="import"))


def _source_tag(value: Any) -> str | None:
    """The union tag of a source: its ``kind``, or ``labelled`` for a label format (read
    from the registry when the recipe is validated, so a registered format is a kind)."""
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    if not isinstance(kind, str):
        return None
    return "labelled" if kind in format_names(can="import") else kind


Source = Annotated[Union[tuple(Annotated[model, Tag(tag)]  # noqa: UP007
                               for tag, model in _SOURCE_MODELS.items())],
                   Discriminator(_source_tag)]


class ClassesSection(ClassVocabulary):
    """The class names of the labelled sources (see :mod:`pcbforge.datasets.classes`):
    every source's names go through the built-in aliases and this ``map`` (``{missing_hole:
    pin-hole}``); ``add`` lists classes of your own; ``strict: true`` refuses any other
    name instead of keeping it as a new class."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class CurateSection(_Section):
    """Curation thresholds (``pcbforge curate``'s parameters; workers come from the CLI)."""

    inspect: InspectParams = Field(default_factory=InspectParams)
    dedupe: DedupeParams = Field(default_factory=DedupeParams)


class SynthSection(_Section):
    """Labelled synthetic defects drawn on the good boards of some sources."""

    enabled: bool = True
    #: Sources whose good boards are drawn on (templates of DeepPCB pairs, ok images
    #: without labels otherwise); ``null``: every procedural and DeepPCB source.
    boards: list[str] | None = None
    #: Synthetic images per class: ``images_per_class * len(classes)`` images in all
    #: (each image holds ``defects_per_image`` defects whose classes follow ``balance``).
    images_per_class: int = Field(10, ge=1, le=1_000_000)
    #: Total synthetic images instead (give this or ``images_per_class``, not both).
    images: int | None = Field(None, ge=1, le=10_000_000)
    classes: list[str] = Field(default_factory=class_names)
    #: Class of each drawn defect: ``uniform`` (all alike), ``fill`` (classes the real
    #: labels lack are drawn more, towards equal totals of real + synthetic boxes),
    #: ``from-evaluation`` (each class in proportion to what a model misses in
    #: ``evaluation``: 1 - recall relative to the class missed most, at least 0.1), or
    #: ``{class: weight}`` (target shares of the synthetic defects).
    balance: Literal["uniform", "fill", "from-evaluation"] | dict[str, float] = "uniform"
    #: With ``balance: from-evaluation``: an evaluation folder (``DATASET/evaluations/NAME``
    #: as ``pcbforge evaluate`` writes it), relative to the recipe's folder.
    evaluation: Path | None = None
    #: Defects on one image, min and max (``null`` when ``defects_per_mp`` is given).
    defects_per_image: tuple[int, int] | None = (3, 12)
    #: Defects per megapixel instead, min and max: ``round(density x the image's MP)``,
    #: within 1-255 (``[7.3, 29.3]`` asks 3-12 of a 640 x 640 tile); not with
    #: ``defects_per_image``.
    defects_per_mp: tuple[float, float] | None = None
    box: Literal["padded", "tight"] = "padded"
    copper: Literal["dark", "light"] = "dark"
    nuisance: bool = True
    #: Background nuisance (thick non-defect changes: features displaced locally, specks,
    #: broken edges), recorded per image in ``nuisance_regions``.
    background: bool = True
    #: Share of synthetic images with no defect (template plus nuisance, no labels).
    defect_free_share: float = Field(0.1, ge=0, le=1)
    #: A share of each class drawn as stamped cross-brush hatching or a stamped outline.
    brush: bool = True
    #: Binary boards: defects painted pixel-exact on the scanned image (``False``: drawn
    #: before the scan, so they get its blur).
    painted_defects: bool = True
    #: Etch variation: each image grows its board's copper by whole px drawn from this
    #: range (negative: shrinks it) before defects are drawn; ``[0, 0]``: boards as they are.
    etch_px: tuple[int, int] = (0, 0)
    #: albumentations preset for the pair: ``light``, ``geometric`` or a YAML file.
    augment: str | None = None
    format: Literal["png", "jpg"] = "png"
    #: Board resolution; ``null``: what the board sources record, else 48 (DeepPCB).
    px_per_mm: float | None = Field(None, gt=0)
    #: ``null``: the recipe's seed.
    seed: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _density_replaces_count(cls, data: Any) -> Any:
        return density_replaces_count(data)

    @field_validator("classes")
    @classmethod
    def _classes(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one defect class is needed")
        return [defect_spec(v).name for v in value]

    @field_validator("defects_per_image")
    @classmethod
    def _count(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and not 1 <= value[0] <= value[1] <= 255:
            raise ValueError(f"must be 1 <= min <= max <= 255, got {list(value)}")
        return value

    @field_validator("defects_per_mp")
    @classmethod
    def _density(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not (math.isfinite(value[0]) and math.isfinite(value[1])
                                      and 0 < value[0] <= value[1]):
            raise ValueError(f"must be 0 < min <= max defects per megapixel, got "
                             f"{list(value)}")
        return value

    @field_validator("evaluation")
    @classmethod
    def _evaluation(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else _resolve(value, info)

    @field_validator("balance")
    @classmethod
    def _balance(cls, value):
        if isinstance(value, dict):
            for name, weight in value.items():
                defect_spec(name)
                if not weight >= 0:
                    raise ValueError(f"weight of {name!r} must be >= 0, got {weight}")
            if not sum(value.values()) > 0:
                raise ValueError("the weights must have a positive sum")
        return value

    @model_validator(mode="after")
    def _one_count(self) -> SynthSection:
        if self.images is not None and "images_per_class" in self.model_fields_set:
            raise ValueError("give images or images_per_class, not both")
        if self.defects_per_image is not None and self.defects_per_mp is not None:
            raise ValueError("give defects_per_image or defects_per_mp, not both")
        if self.defects_per_image is None and self.defects_per_mp is None:
            raise ValueError("give defects_per_image or defects_per_mp")
        if (self.balance == "from-evaluation") != (self.evaluation is not None):
            raise ValueError("balance: from-evaluation and evaluation: go together")
        if isinstance(self.balance, dict):
            extra = sorted(set(self.balance) - set(self.classes))
            if extra:
                raise ValueError(f"balance names {extra[0]!r}, which is not in classes "
                                 f"{self.classes}")
        return self

    @property
    def total_images(self) -> int:
        return self.images if self.images is not None else (
            self.images_per_class * len(self.classes))


class SplitSection(_Section):
    """Leakage-free train/val/test (``pcbforge split``) and where synthetic images go."""

    ratios: tuple[float, float, float] = (0.7, 0.15, 0.15)
    #: More columns whose equal values share a split (e.g. ``board``: a DeepPCB group, a
    #: procedural board). Duplicate clusters, template pairs and each source's own groups
    #: always do.
    group_by: list[str] = Field(default_factory=list)
    #: ``auto``: synthetic images go to train only when real defects exist (val and test
    #: stay real), else everything is split by group; ``train``: always train only;
    #: ``all``: synthetic and real are split alike.
    synthetic: Literal["auto", "train", "all"] = "auto"
    #: ``null``: the recipe's seed.
    seed: int | None = None

    @field_validator("ratios")
    @classmethod
    def _ratios(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        try:
            return SplitParams(ratios=value).ratios
        except ValidationError as err:  # the split's own rule, in its own words
            raise ValueError(err.errors()[0]["msg"].removeprefix("Value error, ")) from None


class AuditSection(_Section):
    """The leak audit of the split (``pcbforge audit``)."""

    #: ``pcbforge build`` exits with code 3 when the audit finds a leak (the dataset,
    #: exports and report are still written).
    require_clean: bool = True


class QASection(QAParams):
    """``pcbforge qa`` of the split dataset (registration of each tested image to its
    template, labels checked against the difference): ``enabled`` and every
    :class:`~pcbforge.qa.params.QAParams` field, with the same defaults and bounds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: ``false``: no QA (no ``qa.json``, ``qa.parquet``... in the build folder).
    enabled: bool = True

    def params(self) -> QAParams:
        """The section's thresholds as the parameters of :func:`pcbforge.qa.run_qa`."""
        return QAParams.model_validate(self.model_dump(exclude={"enabled"}))


class ExportSection(_Section):
    """Formats written under ``DATASET/export/<format>`` (``pcbforge export``)."""

    #: Formats of :data:`pcbforge.datasets.formats.FORMATS` that can be exported.
    formats: list[Annotated[str, AfterValidator(_exportable)]] = Field(
        default_factory=lambda: ["coco", "yolo"])
    include_status: list[Literal[STATUSES]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["ok"])
    #: The templates (defect-free references of tested images) in every format:
    #: ``negatives`` (images without boxes), ``pair`` (beside each tested image: COCO's
    #: ``template_file_name``, YOLO's ``templates/`` tree) or ``omit``.
    templates: TemplateMode = TemplateMode.negatives

    @field_validator("formats")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("a format is listed twice")
        return value

    @model_validator(mode="after")
    def _templates_written(self) -> ExportSection:
        mode = self.templates.value
        cannot = [name for name in self.formats if mode not in FORMATS[name].templates]
        if cannot:
            can = [name for name in format_names(can="export")
                   if mode in FORMATS[name].templates]
            raise ValueError(f"templates: {mode}: a {cannot[0]} export cannot write templates "
                             f"that way (formats that can: {', '.join(can)})")
        return self


class ReportSection(_Section):
    """``report.html`` / ``report.json``."""

    examples_per_class: int = Field(6, ge=0, le=50)
    rejected_examples: int = Field(12, ge=0, le=200)
    histogram_bins: int = Field(20, ge=2, le=200)


class Recipe(_Section):
    """A whole build."""

    version: Literal[1] = 1
    name: str = "pcbforge build"
    seed: int = 0
    sources: list[Source] = Field(min_length=1)
    classes: ClassesSection = Field(default_factory=ClassesSection)
    curate: CurateSection = Field(default_factory=CurateSection)
    synth: SynthSection = Field(default_factory=SynthSection)
    split: SplitSection = Field(default_factory=SplitSection)
    audit: AuditSection = Field(default_factory=AuditSection)
    qa: QASection = Field(default_factory=QASection)
    export: ExportSection = Field(default_factory=ExportSection)
    report: ReportSection = Field(default_factory=ReportSection)

    @model_validator(mode="after")
    def _names(self) -> Recipe:
        names = [s.name for s in self.sources]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"source name {twice[0]!r} is used twice; names must be unique")
        reserved = [n for n in names if n in RESERVED_NAMES]
        if reserved:
            raise ValueError(f"source name {reserved[0]!r} is reserved for the synthetic "
                             f"images; choose another")
        paths = [str(s.path) for s in self.sources if hasattr(s, "path")]
        same = sorted({p for p in paths if paths.count(p) > 1})
        if same:
            raise ValueError(f"{same[0]} is given as two sources; give each folder once")
        if self.synth.enabled:
            boards = self.board_sources()
            unknown = [b for b in (self.synth.boards or []) if b not in names]
            if unknown:
                raise ValueError(f"synth.boards names {unknown[0]!r}, which is not a source "
                                 f"(sources: {', '.join(names)})")
            if not boards:
                raise ValueError("synth needs good boards: add a procedural or deeppcb source, "
                                 "name sources in synth.boards, or set synth.enabled: false")
        return self

    def board_sources(self) -> list[str]:
        """Names of the sources whose good boards synthesis draws on."""
        if not self.synth.enabled:
            return []
        if self.synth.boards is not None:
            return list(self.synth.boards)
        return [s.name for s in self.sources if s.kind in ("procedural", "deeppcb")]

    def seed_of(self, section_seed: int | None) -> int:
        return self.seed if section_seed is None else section_seed


# --- loading and errors ------------------------------------------------------------------


def default_recipe_text() -> str:
    return resources.files("pcbforge.pipeline").joinpath(DEFAULT_RECIPE).read_text("utf-8")


def load_recipe(path: Path | str | None = None, *, text: str | None = None) -> Recipe:
    """The recipe in ``path`` (or ``text``; neither: the embedded default), validated.

    Raises :class:`RecipeError` with one line per problem, each naming the key.
    """
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise RecipeError(f"recipe {path} not found")
        where, base = str(path), path.parent.absolute()
        text = path.read_text(encoding="utf-8")
    elif text is not None:
        where, base = "recipe", Path.cwd()
    else:
        where, base, text = "embedded default recipe", Path.cwd(), default_recipe_text()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise RecipeError(f"{where}: not valid YAML{at}: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(f"{where}: a recipe is a mapping of sections "
                          f"({', '.join(Recipe.model_fields)}), got {type(data).__name__}")
    try:
        return Recipe.model_validate(data, context={"base": base})
    except ValidationError as err:
        raise RecipeError("\n".join(f"{where}: {line}" for line in error_lines(err))) from None


def recipe_yaml(recipe: Recipe) -> str:
    """The recipe with every default filled in (what the build used), as YAML."""
    data = recipe.model_dump(mode="json")
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _where(loc: tuple) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def error_lines(err: ValidationError) -> list[str]:
    """One line per problem: where (``sources[1].groups``), what, and for an unknown key
    the keys that are valid there (and the closest one)."""
    lines = []
    for problem in err.errors():
        loc = tuple(problem["loc"])
        if problem["type"] == "extra_forbidden":
            model_loc = _model_path(loc[:-1])
            key = loc[-1]
            model = _model_at(Recipe, loc[:-1])
            place = f"in {_where(model_loc)}" if model_loc else "at the top level"
            if model is None:
                lines.append(f"unknown key {key!r} {place}")
                continue
            valid = list(model.model_fields)
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            lines.append(f"unknown key {key!r} {place}{hint}; valid keys: {', '.join(valid)}")
            continue
        if problem["type"] == "union_tag_invalid":
            kinds = ", ".join(source_kinds())
            lines.append(f"{_where(_model_path(loc))}.kind: unknown source kind "
                         f"{problem.get('ctx', {}).get('tag')!r}; valid kinds: {kinds}")
            continue
        if problem["type"] == "union_tag_not_found":
            *first, last = source_kinds()
            lines.append(f"{_where(_model_path(loc))}: a source needs a kind "
                         f"({', '.join(first)} or {last})")
            continue
        message = problem["msg"].removeprefix("Value error, ")
        where = _where(_model_path(loc))
        got = problem.get("input")
        shown = "" if (isinstance(got, dict | list | tuple) or problem["type"] == "missing"
                       or "got" in message) else f" (got {got!r})"
        lines.append(f"{where}: {message}{shown}" if where else f"{message}{shown}")
    return lines


def _model_path(loc: tuple) -> tuple:
    """``loc`` without the union tags pydantic inserts (``sources[1].deeppcb.x`` ->
    ``sources[1].x``)."""
    out = []
    for index, part in enumerate(loc):
        if (index > 0 and isinstance(loc[index - 1], int) and isinstance(part, str)
                and part in _SOURCE_MODELS):
            continue
        if isinstance(part, str) and part.startswith(("function-", "literal[", "dict[")):
            continue
        out.append(part)
    return tuple(out)


def _members(annotation: Any) -> list[Any]:
    """The types an annotation allows (Optional, Union, Annotated unwrapped)."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _members(typing.get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        found = []
        for arg in typing.get_args(annotation):
            found += _members(arg)
        return found
    return [annotation]


def _model_at(root: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The model class at ``loc`` (a pydantic error location) inside ``root``."""
    current: list[Any] = [root]
    for part in loc:
        following: list[Any] = []
        for candidate in current:
            origin = typing.get_origin(candidate)
            if isinstance(part, int) and origin in (list, tuple):
                following += _members(typing.get_args(candidate)[0])
            elif isinstance(candidate, type) and issubclass(candidate, BaseModel):
                field = candidate.model_fields.get(str(part))
                if field is not None:
                    following += _members(field.annotation)
        if not following and isinstance(part, str) and part in _SOURCE_MODELS:
            following = [_SOURCE_MODELS[part]]  # a union tag: the source model it names
        current = following
        if not current:
            return None
    models = [c for c in current if isinstance(c, type) and issubclass(c, BaseModel)]
    return models[0] if len(models) == 1 else None


__all__ = [
    "AuditSection", "ClassesSection", "CurateSection", "DeepPCBSource", "ExportSection",
    "FolderSource", "LabelledSource", "ProceduralSource", "Recipe", "RecipeError",
    "ReportSection", "SplitSection", "SynthSection", "default_recipe_text", "error_lines",
    "load_recipe", "recipe_yaml", "source_kinds",
]
