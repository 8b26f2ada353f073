"""One class vocabulary: the defect classes pcbforge knows, the names other datasets give
them, and what a user maps or adds.

Every import (DeepPCB, COCO, YOLO, VOC) and every source of a build passes its label names
through :func:`resolve_classes`, so ``open_circuit`` (PKU-Market-PCB), ``Open`` and
``opens`` all become ``open`` and two sources give one class list, not the union of their
spellings::

    from pcbforge.datasets.classes import ClassVocabulary, canonical

    canonical("Mouse_Bite")                                            # 'mousebite'
    canonical("missing_hole", ClassVocabulary(map={"missing_hole": "pin-hole"}))  # 'pin-hole'
    canonical("mousbite")      # UnknownClassError: ... (did you mean 'mousebite'?) ...

Names are compared by :func:`class_key`: case, ``-``, ``_`` and spaces do not count, nor
does a plural ``s``/``es``. A name is **known** when it is a built-in class or one of its
aliases (:data:`BUILTIN_ALIASES`), a key of the user's ``map`` or a class the user
``add``-ed. An unknown name that is close to a known one (:data:`TYPO_CUTOFF`) is taken for
a typo and refused, naming the class it is close to; any other unknown name is kept as a
class of its own (reported as new), unless the vocabulary is ``strict``, where it is
refused too. Only names of the same defect are aliases: PKU-Market-PCB's ``missing_hole``
(a drilled hole that is absent) is not DeepPCB's ``pin-hole`` (a void in the copper), so
it is a class of its own unless the user maps it.

Pure functions over names and tables; no file I/O.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: DeepPCB's six classes (its type ids 1-6, in that order): the classes pcbforge draws
#: and the order every class list starts with.
PCB_CLASSES = ("open", "short", "mousebite", "spur", "copper", "pin-hole")

#: Built-in class -> the other names that mean the same defect. Spellings that differ
#: only in case, ``-``/``_``/spaces or a plural ``s``/``es`` need no entry (see
#: :func:`class_key`). ``missing_hole`` (PKU-Market-PCB) is a class of its own.
BUILTIN_ALIASES: dict[str, tuple[str, ...]] = {
    "open": ("open_circuit",),
    "short": ("short_circuit",),
    "mousebite": ("mouse_bite",),
    "spur": (),
    "copper": ("spurious_copper",),
    "pin-hole": ("pinhole",),
    "missing_hole": (),
}

#: How close (difflib's ratio, on :func:`class_key`) an unknown name must be to a known
#: one to be taken for its typo: ``mousbite`` (0.94) and ``coper`` (0.91) are; ``shirt``
#: next to ``short`` (0.80) and ``opening`` next to ``open`` (0.73) are not.
TYPO_CUTOFF = 0.85

_SEPARATORS = re.compile(r"[\s_\-]+")


class UnknownClassError(ValueError):
    """A label name the vocabulary does not know and will not keep; names it and the
    closest known class."""

    def __init__(self, name: str, suggestion: str | None, known: Iterable[str]) -> None:
        self.name, self.suggestion = name, suggestion
        hint = (f"did you mean {suggestion!r}?" if suggestion else
                f"known classes: {', '.join(known)}")
        #: The name and the closest class, without the ways out.
        self.brief = f"unknown class {name!r} ({hint})"
        super().__init__(
            f"{self.brief}; map it to a class (--class-map {name}={suggestion or 'CLASS'}, "
            f"or the recipe's classes.map) or keep it as a class of its own (--add-class "
            f"{name}, or classes.add)")


def class_key(name: str) -> str:
    """What two spellings of one class share: lower case, without ``-``, ``_`` or spaces
    (``Mouse_Bite`` and ``mouse-bite`` -> ``mousebite``)."""
    return _SEPARATORS.sub("", str(name).strip().lower())


def _forms(key: str) -> list[str]:
    """``key`` and, for a plural, its singulars (``shorts`` -> ``short``; ``scratches`` ->
    ``scratche``, ``scratch``)."""
    forms = [key]
    if len(key) > 3 and key.endswith("s"):
        forms.append(key[:-1])
        if key.endswith("es") and len(key) > 4:
            forms.append(key[:-2])
    return forms


def _lookup(key: str, table: dict[str, str]) -> str | None:
    """``table[key]``, else the entry of its singular (see :func:`_forms`)."""
    return next((table[form] for form in _forms(key) if form in table), None)


def _builtin_keys() -> dict[str, str]:
    keys = {}
    for name, aliases in BUILTIN_ALIASES.items():
        for spelling in (name, *aliases):
            keys[class_key(spelling)] = name
    return keys


def builtin_class(name: str) -> str | None:
    """The built-in class ``name`` is a spelling of, else ``None``."""
    return _lookup(class_key(name), _builtin_keys())


class ClassVocabulary(BaseModel):
    """What the user says about class names, on top of the built-in aliases (the
    ``classes:`` section of a build recipe; ``--class-map``/``--add-class``/
    ``--strict-classes`` of ``pcbforge import``).

    ``map``: a source's name -> the class it is (``{missing_hole: pin-hole}``); the key is
    matched like an alias (any case, separators, plural), the class may be a built-in
    class or alias, an added class, or (unless ``strict``) a new name. ``add``: classes of
    the user's own, kept as spelled here. ``strict``: a name that is none of these is an
    error instead of a new class."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    map: dict[str, str] = Field(default_factory=dict)
    add: list[str] = Field(default_factory=list)
    strict: bool = False

    @field_validator("add")
    @classmethod
    def _add(cls, value: list[str]) -> list[str]:
        seen: dict[str, str] = {}
        for name in value:
            key = class_key(name)
            if not key:
                raise ValueError(f"a class name needs a letter or digit, got {name!r}")
            builtin = builtin_class(name)
            if builtin is not None:
                raise ValueError(f"{name!r} is the built-in class {builtin!r} already; "
                                 f"leave it out (or map a name to it)")
            if key in seen:
                raise ValueError(f"{name!r} and {seen[key]!r} are one class; give it once")
            seen[key] = name
        return value

    @model_validator(mode="after")
    def _map(self) -> ClassVocabulary:
        seen: dict[str, str] = {}
        for source, target in self.map.items():
            key = class_key(source)
            if not key or not class_key(target):
                raise ValueError(f"map: a class name needs a letter or digit, got "
                                 f"{source!r}: {target!r}")
            if key in seen:
                raise ValueError(f"map: {source!r} and {seen[key]!r} are one name; map it "
                                 f"once")
            seen[key] = source
            try:  # a new class here is checked against the built-in and added ones
                if self._base(class_key(target)) is None:
                    self._refuse_unknown(target, {**_builtin_keys(), **self._added()})
            except UnknownClassError as err:
                raise ValueError(f"map: {source!r} -> {err.brief}; map to a known class, or "
                                 f"add this one (--add-class, or classes.add)") from None
        return self

    def _added(self) -> dict[str, str]:
        return {class_key(name): name for name in self.add}

    def _base(self, key: str) -> str | None:
        """The built-in or added class of ``key``."""
        return _lookup(key, _builtin_keys()) or _lookup(key, self._added())

    def _mapped(self) -> dict[str, str]:
        """Mapped name's key -> its class (the targets of :meth:`_map_classes`)."""
        classes = self._map_classes()
        return {class_key(source): classes[class_key(target)]
                for source, target in self.map.items()}

    def _map_classes(self) -> dict[str, str]:
        """Key -> class of every class ``map`` names (a built-in or added class it
        spells, else the name as written)."""
        return {class_key(target): self._base(class_key(target)) or target
                for target in self.map.values()}

    def _known_keys(self) -> dict[str, str]:
        """Every known spelling's key -> its class."""
        return {**self._map_classes(), **_builtin_keys(), **self._added(), **self._mapped()}

    def target(self, name: str) -> str:
        """The class ``name`` is, leaving ``map``'s keys aside: a built-in or added class,
        or a class ``map`` names; else see :meth:`canonical`."""
        key = class_key(name)
        found = self._base(key) or _lookup(key, self._map_classes())
        if found is None:
            self._refuse_unknown(name, self._known_keys())
            found = name
        return found

    def _refuse_unknown(self, name: str, keys: dict[str, str]) -> None:
        """Raise :class:`UnknownClassError` for the unknown ``name`` when it is close to
        one of ``keys`` (a typo), or at all when ``strict``."""
        close = _closest(name, keys, TYPO_CUTOFF)
        if close is not None or self.strict:
            raise UnknownClassError(name, close or _closest(name, keys, 0.6),
                                    self.known_classes())

    def known_classes(self) -> list[str]:
        """The built-in classes, then the added ones, then the others ``map`` names."""
        return list(dict.fromkeys([*BUILTIN_ALIASES, *self.add, *self._map_classes().values()]))

    def suggest(self, name: str, cutoff: float = 0.6) -> str | None:
        """The known class whose name or alias is closest to ``name`` (difflib's ratio, at
        least ``cutoff``; the singular of a plural counts too), else ``None``."""
        return _closest(name, self._known_keys(), cutoff)

    def canonical(self, name: str) -> str:
        """The class ``name`` stands for: through ``map``, the built-in aliases and the
        added classes; an unknown name close to a known one, or any unknown name when
        ``strict``, raises :class:`UnknownClassError`; otherwise it is its own class."""
        key = class_key(name)
        if not key:
            raise UnknownClassError(name, None, self.known_classes())
        mapped = _lookup(key, self._mapped())
        return mapped if mapped is not None else self.target(name)

    def is_known(self, name: str) -> bool:
        """Whether ``name`` spells a built-in class or alias, an added class, a mapped
        name or a class ``map`` names."""
        return _lookup(class_key(name), self._known_keys()) is not None


def _closest(name: str, keys: dict[str, str], cutoff: float) -> str | None:
    """The class (a value of ``keys``) whose key is closest to ``name``'s, at least
    ``cutoff`` (difflib's ratio); the singular of a plural is tried too."""
    key = class_key(name)
    best: tuple[float, str] | None = None
    for candidate in _forms(key):
        for match in difflib.get_close_matches(candidate, list(keys), n=1, cutoff=cutoff):
            ratio = difflib.SequenceMatcher(None, candidate, match).ratio()
            if best is None or ratio > best[0]:
                best = (ratio, keys[match])
    return best[1] if best else None


#: The built-in aliases alone (lenient): what a plain import uses.
DEFAULT_VOCABULARY = ClassVocabulary()


def canonical(name: str, vocabulary: ClassVocabulary | None = None) -> str:
    """The class ``name`` stands for in ``vocabulary`` (default: the built-in aliases);
    see :meth:`ClassVocabulary.canonical`."""
    return (vocabulary or DEFAULT_VOCABULARY).canonical(name)


def suggest(name: str, vocabulary: ClassVocabulary | None = None,
            cutoff: float = 0.6) -> str | None:
    """The known class closest to ``name``, else ``None``; see
    :meth:`ClassVocabulary.suggest`."""
    return (vocabulary or DEFAULT_VOCABULARY).suggest(name, cutoff)


@dataclass
class ClassResolution:
    """How one source's label names became classes."""

    #: Every name of the source -> its class.
    mapping: dict[str, str] = field(default_factory=dict)
    #: The source's classes after the mapping, in the order first declared, once each.
    classes: list[str] = field(default_factory=list)
    #: The names that changed: source name -> class.
    renamed: dict[str, str] = field(default_factory=dict)
    #: Classes kept as they were although no built-in, mapped or added class is called so.
    new: list[str] = field(default_factory=list)

    def report(self) -> dict:
        """The record an import report and ``dataset.json``'s provenance keep."""
        return {"classes": list(self.classes), "renamed": dict(self.renamed),
                "new": list(self.new)}


def resolve_classes(names: Iterable[str], vocabulary: ClassVocabulary | None = None
                    ) -> ClassResolution:
    """The class of each of a source's label ``names`` (see :meth:`ClassVocabulary.
    canonical`); raises :class:`UnknownClassError` for the first it refuses. New names that
    differ only in spelling (``Scratch``, ``scratch``) become one class, the first
    spelling."""
    vocabulary = vocabulary or DEFAULT_VOCABULARY
    result = ClassResolution()
    new_by_key: dict[str, str] = {}
    for name in names:
        name = str(name)
        if name in result.mapping:
            continue
        found = vocabulary.canonical(name)
        if not vocabulary.is_known(name):  # kept as it is: spellings of it become one
            found = new_by_key.setdefault(class_key(name), name)
            if found not in result.new:
                result.new.append(found)
        result.mapping[name] = found
        if found != name:
            result.renamed[name] = found
        if found not in result.classes:
            result.classes.append(found)
    return result


def relabel(labels: pd.DataFrame, mapping: dict[str, str]) -> pd.DataFrame:
    """``labels`` with each ``label`` replaced by its class in ``mapping``; a box whose
    name changed keeps it in ``params`` (``{"source_label": "open_circuit"}``, merged into
    a JSON object already there, such as a synthetic defect's parameters)."""
    labels = labels.copy()
    names = labels["label"].astype(str)
    changed = names.map(lambda n: mapping.get(n, n) != n)
    if not changed.any():
        return labels
    params = labels["params"] if "params" in labels.columns else pd.Series("", labels.index)
    labels["params"] = [_with_source_label(p, n) if c else p
                        for p, n, c in zip(params, names, changed, strict=True)]
    labels["label"] = names.map(lambda n: mapping.get(n, n))
    return labels


def _with_source_label(params: object, name: str) -> object:
    text = "" if params is None or (isinstance(params, float) and params != params) else str(
        params)
    record: object = {}
    if text:
        try:
            record = json.loads(text)
        except ValueError:
            return params  # not pcbforge's JSON: left as it is
    if not isinstance(record, dict):
        return params
    record.setdefault("source_label", name)
    return json.dumps(record, separators=(",", ":"), sort_keys=True)


def source_label(params: object) -> str:
    """The source's label name a box was imported under (``""`` when unchanged)."""
    if not isinstance(params, str) or not params.startswith("{"):
        return ""
    try:
        record = json.loads(params)
    except ValueError:
        return ""
    return str(record.get("source_label", "")) if isinstance(record, dict) else ""


def ordered_classes(classes: Iterable[str]) -> list[str]:
    """``classes`` once each, the built-in ones first in the vocabulary's order (DeepPCB's
    six, then ``missing_hole``), then the others in the order given: a build's class list
    does not depend on the order of its sources."""
    given = list(dict.fromkeys(classes))
    builtin = [c for c in BUILTIN_ALIASES if c in given]
    return builtin + [c for c in given if c not in builtin]


#: The columns of :func:`class_summary`'s per-split counts.
SUMMARY_SPLITS = ("train", "val", "test", "")


def class_summary(samples: pd.DataFrame, labels: pd.DataFrame, classes: list[str]) -> dict:
    """Per class of a dataset: whether it is built in, the source names its boxes were
    imported under, boxes on ``ok`` images per split (``""``: not split yet), boxes on
    images that are not ``ok`` (held back, duplicates...), and ``ok`` images holding it."""
    status = samples.set_index("sample_id")["status"].astype(str)
    split = samples.set_index("sample_id")["split"].fillna("").astype(str)
    table = labels.assign(status=labels["sample_id"].map(status).fillna(""),
                          split=labels["sample_id"].map(split).fillna(""),
                          source_label=[source_label(p) for p in labels["params"]])
    rows = []
    for name in [*classes, *sorted(set(table["label"]) - set(classes))]:
        mine = table[table["label"] == name]
        ok = mine[mine["status"] == "ok"]
        seen = sorted(set(mine["source_label"]) - {""})
        rows.append({
            "class": name,
            "builtin": name in BUILTIN_ALIASES,
            "declared": name in classes,
            "aliases_seen": seen,
            "boxes": {s or "none": int((ok["split"] == s).sum()) for s in SUMMARY_SPLITS},
            "boxes_not_ok": int(len(mine) - len(ok)),
            "images": int(ok["sample_id"].nunique()),
        })
    return {
        "classes": rows,
        "count": len(classes),
        "builtin": [r["class"] for r in rows if r["builtin"] and r["declared"]],
        "other": [r["class"] for r in rows if not r["builtin"] and r["declared"]],
        "renamed": sum(len(r["aliases_seen"]) > 0 for r in rows),
        "boxes": int(len(table)),
        "boxes_ok": int((table["status"] == "ok").sum()),
        "images": int(table.loc[table["status"] == "ok", "sample_id"].nunique()),
        "empty_classes": [r["class"] for r in rows if r["declared"] and not r["images"]
                          and not r["boxes_not_ok"]],
    }


__all__ = [
    "BUILTIN_ALIASES", "DEFAULT_VOCABULARY", "PCB_CLASSES", "SUMMARY_SPLITS", "TYPO_CUTOFF",
    "ClassResolution", "ClassVocabulary", "UnknownClassError", "builtin_class", "canonical",
    "class_key", "class_summary", "ordered_classes", "relabel", "resolve_classes",
    "source_label", "suggest",
]
