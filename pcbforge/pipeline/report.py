"""``report.json`` and ``report.html`` of a dataset folder (a build's, or any pcbforge
dataset): what is in it, where it went, what was rejected and whether the split leaks.

Static: the HTML page references PNG files in ``report/`` beside it (plots drawn with
matplotlib, thumbnails cut with OpenCV), no server and no script. Everything is computed
from the dataset's files (samples, labels, ``split_report.json``, ``audit.json``,
``qa.json`` and ``qa.parquet``, ``export/*/export_report.json``, ``recipe.yaml``), so
``pcbforge report DATASET`` regenerates the same bytes, and nothing in it depends on when
or how fast it was made.

A dataset that ``pcbforge qa`` checked (``qa.json``) gets a QA section: its findings by
kind and detail, the registration of its pairs, and the crops ``qa`` drew
(``qa/crops/``, referenced where they are, beside the page; the report copies none)
with each finding's reason. Without ``qa.json`` the section is left out.

A dataset with model evaluations (``evaluations/NAME/``, kept by ``pcbforge evaluate``,
read through :mod:`pcbforge.datasets.evaluation_tables`) gets a section "Model
evaluations": a table of every evaluation's numbers and, per evaluation, its
precision-recall curves (one per class) and its confusion matrix, drawn from its files.
Without evaluations the report has neither the section nor its keys; an evaluation that
cannot be read is a one-line warning (``warnings``), never a failed report.
"""

from __future__ import annotations

import html
import json
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import yaml

from pcbforge import __version__
from pcbforge.core.files import PathOutsideRootError, atomic_write, resolve_inside, write_json
from pcbforge.core.output import OutputLock, staged_output, swapped_in
from pcbforge.core.progress import progress_bar
from pcbforge.datasets.dataset import Dataset, load, require_folder
from pcbforge.datasets.evaluation_tables import (
    CONFUSION_CSV,
    EVALUATIONS_DIR,
    EvaluationError,
    evaluation_names,
    read_evaluation,
    read_outcomes,
)
from pcbforge.datasets.qa_tables import KINDS, QA_JSON, QA_PARQUET
from pcbforge.datasets.samples import STATUSES
from pcbforge.split import SPLIT_NAMES

REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
REPORT_DIR = "report"
TEMPLATE = "report.html.j2"
THUMB = 160
#: Rejected files whose pixels are shown (corrupt files are never decoded again).
_DECODABLE = ("low_quality", "duplicate", "skipped")
#: Skip reasons of files that are not images at all (no thumbnail is tried).
_NOT_IMAGES = ("not_an_image_file", "hidden_file")
_REAL, _SYNTH = "#1f77b4", "#ff7f0e"


class ReportSettings:
    """The report section's values (a recipe's ``report``, or the defaults)."""

    def __init__(self, examples_per_class: int = 6, rejected_examples: int = 12,
                 histogram_bins: int = 20):
        self.examples_per_class = examples_per_class
        self.rejected_examples = rejected_examples
        self.histogram_bins = histogram_bins


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _usable_labels(dataset: Dataset) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``ok`` samples (what the exports hold) and their labels, with split and origin."""
    samples = dataset.samples
    ok = samples[samples["status"] == "ok"].copy()
    ok["synthetic"] = ok["synthetic"].fillna(False).astype(bool)
    labels = dataset.labels[dataset.labels["sample_id"].isin(ok["sample_id"])].copy()
    by_id = ok.set_index("sample_id")
    labels["split"] = labels["sample_id"].map(by_id["split"]).fillna("")
    labels["image_synthetic"] = labels["sample_id"].map(by_id["synthetic"]).astype(bool)
    labels["width"] = labels["x2"] - labels["x1"]
    labels["height"] = labels["y2"] - labels["y1"]
    labels["side"] = np.sqrt(labels["width"] * labels["height"])
    return ok, labels


def _origin(flags: pd.Series) -> pd.Series:
    return np.where(flags.astype(bool), "synthetic", "real")


def _status_section(samples: pd.DataFrame) -> tuple[dict, dict]:
    counts = samples["status"].value_counts()
    status = {s: int(counts.get(s, 0)) for s in STATUSES}
    reasons = (samples.loc[samples["reason"].fillna("") != ""]
               .groupby(["status", "reason"]).size())
    return status, {f"{s}/{r}": int(n) for (s, r), n in sorted(reasons.items())}


def _split_section(ok: pd.DataFrame, labels: pd.DataFrame, classes: list[str]) -> dict:
    splits = {}
    labelled = set(labels["sample_id"])
    for name in (*SPLIT_NAMES, ""):
        rows = ok[ok["split"] == name]
        if name == "" and rows.empty:
            continue
        part = labels[labels["split"] == name]
        entry = {"images": {}, "defect_free_images": {}, "boxes": {}}
        for origin, flag in (("real", False), ("synthetic", True)):
            mine = rows[rows["synthetic"] == flag]
            entry["images"][origin] = len(mine)
            entry["defect_free_images"][origin] = int((~mine["sample_id"].isin(labelled)).sum())
        for cls in classes:
            mine = part[part["label"] == cls]
            entry["boxes"][cls] = {"real": int((~mine["image_synthetic"]).sum()),
                                   "synthetic": int(mine["image_synthetic"].sum())}
        splits[name or "unassigned"] = entry
    return splits


def _class_section(labels: pd.DataFrame, classes: list[str], bins: int) -> dict:
    section = {}
    for cls in classes:
        mine = labels[labels["label"] == cls]
        entry = {"boxes": {"real": int((~mine["image_synthetic"]).sum()),
                           "synthetic": int(mine["image_synthetic"].sum())},
                 "images": {"real": int(mine.loc[~mine["image_synthetic"], "sample_id"]
                                        .nunique()),
                            "synthetic": int(mine.loc[mine["image_synthetic"], "sample_id"]
                                             .nunique())},
                 # None without boxes: the page tests it (an absent key fails to render).
                 "size_px": None}
        if len(mine):
            top = float(np.ceil(mine["side"].max()))
            edges = np.linspace(0.0, max(top, 1.0), bins + 1)
            entry["size_px"] = {
                "measure": "sqrt(box width * box height)",
                "median": round(float(mine["side"].median()), 2),
                "median_width": round(float(mine["width"].median()), 2),
                "median_height": round(float(mine["height"].median()), 2),
                "histogram": {
                    "edges": [round(float(e), 3) for e in edges],
                    "real": np.histogram(mine.loc[~mine["image_synthetic"], "side"],
                                         edges)[0].tolist(),
                    "synthetic": np.histogram(mine.loc[mine["image_synthetic"], "side"],
                                              edges)[0].tolist(),
                },
            }
        section[cls] = entry
    return section


def _source_section(samples: pd.DataFrame) -> dict:
    if "source" not in samples:
        return {}
    section = {}
    for name, rows in samples.groupby(samples["source"].fillna("").astype(str), sort=True):
        counts = rows["status"].value_counts()
        section[name or "(none)"] = {
            "files": len(rows),
            "synthetic": int(rows["synthetic"].fillna(False).astype(bool).sum()),
            **{s: int(counts.get(s, 0)) for s in STATUSES if counts.get(s, 0)}}
    return section


# --- qa ----------------------------------------------------------------------------------

#: Registration numbers of ``qa.json`` shown, in this order.
_REGISTRATION_KEYS = ("pairs", "misregistered", "shift_px_p95", "rotation_deg_p95",
                      "residual_px_p95")


def _number(value) -> int | float | None:
    """A count or measure for the report: ``None`` for what is missing or not finite (JSON
    has no NaN), floats rounded."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer,
                                                         np.floating)):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    return round(float(value), 4) if np.isfinite(value) else None


def _text(value) -> str:
    """A cell of ``qa.parquet`` as text ("" for what is missing)."""
    return "" if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)) \
        else str(value)


def _kind_order(kinds) -> list[str]:
    """The registry's order of the finding kinds, then any other kind by name."""
    kinds = set(kinds)
    return [k for k in KINDS if k in kinds] + sorted(kinds - set(KINDS))


def _qa_findings(path: Path) -> pd.DataFrame | None:
    """The rows of ``qa.parquet`` by ``finding_id``; ``None`` when it cannot be read."""
    try:
        table = pd.read_parquet(path)
    except (OSError, ValueError):
        return None
    if "finding_id" not in table:
        return None
    return table.drop_duplicates("finding_id").set_index("finding_id")


def _qa_section(root: Path, dataset: Dataset) -> dict | None:
    """The QA section (``None`` without ``qa.json``): findings by kind and detail, the
    registration summary and, per kind, the crops ``qa.json`` lists, surest first, each
    with its finding's reason (from ``qa.parquet``). A crop outside the folder or missing
    is listed without an image."""
    summary = _read_json(root / QA_JSON)
    if summary is None:
        return None
    by_kind = {str(k): _number(v) or 0 for k, v in (summary.get("by_kind") or {}).items()}
    by_detail = {str(k): _number(v) or 0 for k, v in (summary.get("by_detail") or {}).items()}
    details: dict[str, list[tuple[str, int]]] = {}
    for key, count in by_detail.items():
        kind, _, detail = key.partition("/")
        details.setdefault(kind, []).append((detail, count))
    table = [{"kind": kind,
              "findings": by_kind.get(kind, sum(n for _, n in details.get(kind, []))),
              "details": [{"detail": d, "findings": n} for d, n in sorted(details.get(kind, []))]}
             for kind in _kind_order([*by_kind, *details])]
    registration = summary.get("registration") or {}
    findings = _qa_findings(root / QA_PARQUET)
    path_of = dataset.samples.drop_duplicates("sample_id").set_index("sample_id")["path"]
    gallery: dict[str, list[dict]] = {}
    for finding, crop in (summary.get("crops") or {}).items():
        crop = str(crop)
        try:
            shown = resolve_inside(root, crop).is_file()
        except (PathOutsideRootError, OSError):
            shown = False
        known = findings is not None and finding in findings.index
        row = {k: _text(v) for k, v in findings.loc[finding].items()} if known else {}
        kind = row.get("kind") or "unknown"
        sample = row.get("sample_id", "")
        gallery.setdefault(kind, []).append({
            "finding_id": str(finding), "crop": crop if shown else None, "kind": kind,
            "detail": row.get("detail", ""),
            "reason": row.get("reason", "") if known else "not in qa.parquet",
            "score": _number(findings.loc[finding].get("score")) if known else None,
            **{key: row.get(key, "") for key in ("label", "action", "proposed_label")},
            "sample_id": sample, "path": _text(path_of.get(sample)) if sample else ""})
    for entries in gallery.values():
        entries.sort(key=lambda e: (-(e["score"] if e["score"] is not None else -1.0),
                                    e["finding_id"]))
    return {
        **{key: _number(summary.get(key)) for key in ("samples", "pairs", "without_template",
                                                       "findings")},
        "by_kind": by_kind,
        "by_detail": by_detail,
        "table": table,
        "registration": {key: _number(registration.get(key)) for key in _REGISTRATION_KEYS},
        "findings_file": QA_PARQUET if findings is not None else None,
        "gallery": {kind: gallery[kind] for kind in _kind_order(gallery)},
    }


# --- model evaluations -------------------------------------------------------------------

#: The confusion matrix's row and column for "no box" (``pcbforge evaluate``'s name).
_BACKGROUND = "background"
#: What reading an evaluation's files can raise: the report turns it into a warning.
_UNREADABLE = (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError)


def _measure(value) -> int | float | None:
    """A number of ``metrics.json`` as it is there (not rounded: the report's numbers equal
    the evaluation's); ``None`` for what is missing, not a number or not finite."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer,
                                                         np.floating)):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    return float(value) if np.isfinite(value) else None


def _part(mapping, key: str) -> dict:
    """``mapping[key]`` when it is a dict, else an empty one."""
    value = mapping.get(key) if isinstance(mapping, dict) else None
    return value if isinstance(value, dict) else {}


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def precision_recall(predictions: pd.DataFrame, truths: pd.DataFrame, classes: list[str]
                     ) -> dict[str, tuple[np.ndarray, np.ndarray] | None]:
    """Per class, the recall and precision after each of its predictions, taken by
    decreasing score (equal scores in table order, as the AP is computed):
    ``cumsum(tp) / n_truths`` and ``cumsum(tp) / (cumsum(tp) + cumsum(fp))``. ``None`` for
    a class without labelled boxes (no recall to speak of). ``predictions``: ``label,
    score, outcome`` (``tp``/``fp``); ``truths``: ``label``."""
    truth_labels = truths["label"].astype(str).to_numpy()
    labels = predictions["label"].astype(str).to_numpy()
    scores = predictions["score"].to_numpy(dtype=float)
    correct = (predictions["outcome"].astype(str) == "tp").to_numpy()
    curves: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}
    for cls in classes:
        n_truths = int(np.sum(truth_labels == cls))
        if not n_truths:
            curves[cls] = None
            continue
        mine = np.flatnonzero(labels == cls)
        ranked = correct[mine[np.argsort(-scores[mine], kind="stable")]]
        tp = np.cumsum(ranked)
        curves[cls] = (tp / n_truths, tp / np.arange(1, len(ranked) + 1))
    return curves


def _confusion_table(folder: Path, metrics: dict, classes: list[str]) -> pd.DataFrame:
    """The confusion counts, true class by row and predicted by column, each in the order
    of ``classes`` then ``background`` (any other name before it): ``confusion.csv``, else
    ``metrics.json``'s ``confusion`` ({true: {predicted: count}})."""
    path = folder / CONFUSION_CSV
    if path.is_file():
        table = pd.read_csv(path, index_col=0)
    elif _part(metrics, "confusion"):
        table = pd.DataFrame(_part(metrics, "confusion")).T
    else:
        raise ValueError(f"neither {CONFUSION_CSV} nor a confusion in metrics.json")
    table.index = table.index.astype(str)
    table.columns = table.columns.astype(str)

    def order(names) -> list[str]:
        names = list(dict.fromkeys(names))
        known = [c for c in classes if c in names]
        others = sorted(n for n in names if n not in classes and n != _BACKGROUND)
        return known + others + ([_BACKGROUND] if _BACKGROUND in names else [])

    table = table.loc[order(table.index), order(table.columns)]
    return table.fillna(0).astype(np.int64)


def _file_stem(name: str, used: set[str]) -> str:
    """``eval_<name>`` made a plain file name (any character but a letter, digit, ``.``,
    ``-`` or ``_`` replaced: an evaluate name stays as it is), unique among ``used``
    (which it joins)."""
    stem = "eval_" + "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_"
                             for c in name)
    candidate, number = stem, 1
    while candidate in used:
        number += 1
        candidate = f"{stem}_{number}"
    used.add(candidate)
    return candidate


def _evaluation_entry(root: Path, name: str, folder: Path, stem: str,
                      warnings: list[str]) -> dict | None:
    """One evaluation's numbers and plots (drawn into ``folder``); ``None``, with a
    warning, when its ``metrics.json`` cannot be read. A plot that cannot be drawn from
    its files is left out, with a warning."""
    try:
        metrics = read_evaluation(root, name)
        if not isinstance(metrics, dict):
            raise ValueError(f"expected an object, found {type(metrics).__name__}")
    except (EvaluationError, *_UNREADABLE) as err:
        warnings.append(f"evaluation {name}: metrics.json cannot be read ({_one_line(err)})")
        return None
    deeppcb, coco = _part(metrics, "deeppcb"), _part(metrics, "coco")
    ap = {str(k): _measure(v) for k, v in _part(deeppcb, "ap").items()}
    listed = metrics.get("classes")
    classes = [str(c) for c in (listed if isinstance(listed, list) else [])
               if isinstance(c, (str, int))] or list(ap)
    entry = {
        "name": name,
        "split": _text(metrics.get("split")),
        "iou_threshold": _measure(metrics.get("iou_threshold")),
        **{key: _measure(metrics.get(key)) for key in ("images", "truths", "predictions")},
        "mAP": _measure(deeppcb.get("mAP")),
        "coco_mAP": _measure(coco.get("mAP")),
        "f_score": _measure(deeppcb.get("f_score")),
        "threshold": _measure(deeppcb.get("threshold")),
        **{key: _measure(metrics.get(key)) for key in ("tp", "fp", "fn")},
        "ap": ap,
        "coco_ap": {str(k): _measure(v) for k, v in _part(coco, "ap").items()},
        "confusion": None,  # {true: {predicted: count}}, as drawn
        "plots": {"pr": None, "confusion": None},
    }
    title = f"{name} ({entry['split'] or 'no split'})"
    try:
        predictions, truths = read_outcomes(root, name)
        curves = precision_recall(predictions, truths, classes)
    except (EvaluationError, *_UNREADABLE) as err:
        warnings.append(f"evaluation {name}: no precision-recall curve, its outcome tables "
                        f"cannot be read ({_one_line(err)})")
    else:
        _plot_precision_recall(curves, ap, title, entry["iou_threshold"],
                               folder / f"{stem}_pr.png")
        entry["plots"]["pr"] = f"{REPORT_DIR}/{stem}_pr.png"
    try:
        confusion = _confusion_table(root / EVALUATIONS_DIR / name, metrics, classes)
    except _UNREADABLE as err:
        warnings.append(f"evaluation {name}: no confusion matrix, {CONFUSION_CSV} cannot be "
                        f"read ({_one_line(err)})")
    else:
        entry["confusion"] = {true: {pred: int(n) for pred, n in row.items()}
                              for true, row in confusion.iterrows()}
        _plot_confusion(confusion, title, folder / f"{stem}_confusion.png")
        entry["plots"]["confusion"] = f"{REPORT_DIR}/{stem}_confusion.png"
    return entry


def _evaluations_section(root: Path, folder: Path, warnings: list[str]) -> list[dict] | None:
    """The evaluations kept in ``root`` (``None`` when it has none), by name, each with
    its plots drawn into ``folder``; what cannot be read goes to ``warnings``."""
    try:
        names = evaluation_names(root)
    except OSError as err:
        warnings.append(f"{EVALUATIONS_DIR}/ cannot be listed ({_one_line(err)})")
        return []
    if not names:
        return None
    used: set[str] = set()
    entries = (_evaluation_entry(root, name, folder, _file_stem(name, used), warnings)
               for name in names)
    return [entry for entry in entries if entry is not None]


# --- images ------------------------------------------------------------------------------


def _tile(image: np.ndarray) -> np.ndarray:
    image = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    h, w = image.shape[:2]
    scale = THUMB / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1
                       else cv2.INTER_NEAREST)
    tile = np.full((THUMB, THUMB, 3), 255, np.uint8)
    y, x = (THUMB - small.shape[0]) // 2, (THUMB - small.shape[1]) // 2
    tile[y:y + small.shape[0], x:x + small.shape[1]] = small
    return tile


def _placeholder(lines: list[str]) -> np.ndarray:
    tile = np.full((THUMB, THUMB, 3), 235, np.uint8)
    cv2.rectangle(tile, (0, 0), (THUMB - 1, THUMB - 1), (150, 150, 150), 1)
    for number, line in enumerate(lines[:6]):
        cv2.putText(tile, line[:24], (6, 24 + 20 * number), cv2.FONT_HERSHEY_SIMPLEX, 0.38,
                    (40, 40, 40), 1, cv2.LINE_AA)
    return tile


def _read(path: Path) -> np.ndarray | None:
    data = np.fromfile(str(path), np.uint8) if path.is_file() else np.zeros(0, np.uint8)
    if not data.size:
        return None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    return image


def _write_png(path: Path, image: np.ndarray) -> None:
    ok, data = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:
        raise ValueError(f"cannot encode {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.tobytes())


def _crop_with_box(image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    h, w = image.shape[:2]
    x1, y1, x2, y2 = box
    side = int(max(96, 3 * max(x2 - x1, y2 - y1)))
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left = int(np.clip(round(cx - side / 2), 0, max(w - side, 0)))
    top = int(np.clip(round(cy - side / 2), 0, max(h - side, 0)))
    crop = image[top:top + side, left:left + side].copy()
    thickness = max(1, round(crop.shape[0] / THUMB))
    cv2.rectangle(crop, (round(x1) - left, round(y1) - top),
                  (round(x2) - left - 1, round(y2) - top - 1), (0, 0, 230), thickness)
    return _tile(crop)


def _examples(dataset: Dataset, ok: pd.DataFrame, labels: pd.DataFrame, classes: list[str],
              per_class: int, folder: Path, advance) -> dict:
    """Up to ``per_class`` boxes of each class (real first, then synthetic; one per image),
    cut out with some context and the box drawn in red."""
    examples = {}
    for cls, chosen in _example_boxes(ok, labels, classes, per_class).items():
        entries = []
        for number, row in enumerate(chosen.itertuples()):
            image = _read(dataset.image_path(row.path))
            tile = (_crop_with_box(image, (row.x1, row.y1, row.x2, row.y2)) if image is not None
                    else _placeholder(["cannot read", row.path[-24:]]))
            name = f"{REPORT_DIR}/examples/{_safe(cls)}_{number}.png"
            _write_png(folder / Path(name).relative_to(REPORT_DIR), tile)
            entries.append({"thumb": name, "path": row.path, "split": row.split or "",
                            "origin": "synthetic" if row.image_synthetic else "real",
                            "box": [float(row.x1), float(row.y1), float(row.x2), float(row.y2)]})
            advance()
        examples[cls] = entries
    return examples


def _example_boxes(ok: pd.DataFrame, labels: pd.DataFrame, classes: list[str],
                   per_class: int) -> dict[str, pd.DataFrame]:
    """The boxes shown for each class: real ones first (half, or more when there are too
    few synthetic ones), one per image, in path order."""
    path_of = ok.set_index("sample_id")["path"]
    chosen = {}
    for cls in classes:
        mine = labels[labels["label"] == cls].assign(path=lambda t: t["sample_id"].map(path_of))
        mine = mine.sort_values(["image_synthetic", "path", "y1", "x1"], kind="stable")
        mine = mine.drop_duplicates("sample_id")
        real, synthetic = mine[~mine["image_synthetic"]], mine[mine["image_synthetic"]]
        take_real = min(len(real), max(per_class - len(synthetic), (per_class + 1) // 2))
        chosen[cls] = pd.concat([real.head(take_real), synthetic.head(per_class - take_real)])
    return chosen


def _rejected_rows(samples: pd.DataFrame, limit: int) -> pd.DataFrame:
    """Files that are not ``ok`` (not the side-car files), one of each status/reason
    first, then a second of each..., at most ``limit``."""
    rows = samples[samples["status"] != "ok"].copy()
    rows["reason"] = rows["reason"].fillna("").astype(str)
    rows = rows[~((rows["status"] == "skipped") & rows["reason"].isin(_NOT_IMAGES))]
    rows = rows.sort_values(["status", "reason", "path"], kind="stable")
    rows["rank"] = rows.groupby(["status", "reason"]).cumcount()
    return rows.sort_values(["rank", "status", "reason", "path"], kind="stable").head(limit)


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


def _rejected(dataset: Dataset, limit: int, folder: Path, advance) -> list[dict]:
    """Up to ``limit`` files that are not ``ok``: one of each status/reason first."""
    rows = _rejected_rows(dataset.samples, limit)
    entries = []
    for number, row in enumerate(rows.itertuples()):
        image = None
        if row.status in _DECODABLE:
            width = float(getattr(row, "width", 0) or 0)
            height = float(getattr(row, "height", 0) or 0)
            if 0 < width * height <= 64e6:
                image = _read(dataset.image_path(row.path))
        detail = str(getattr(row, "detail", "") or "")
        tile = _tile(image) if image is not None else _placeholder(
            [row.status, row.reason, "(not shown)", row.path[-24:]])
        name = f"{REPORT_DIR}/rejected/{number:03d}.png"
        _write_png(folder / Path(name).relative_to(REPORT_DIR), tile)
        entries.append({"thumb": name, "path": row.path, "status": row.status,
                        "reason": row.reason, "detail": detail,
                        "duplicate_of": str(getattr(row, "duplicate_of", "") or "")})
        advance()
    return entries


# --- plots -------------------------------------------------------------------------------


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save(figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", metadata={"Software": None})


def _plot_status(status: dict, reasons: dict, path: Path) -> None:
    labels = [k for k, v in status.items() if v] or ["(empty)"]
    figure = _figure(9, 3.2)
    left, right = figure.subplots(1, 2, width_ratios=[1, 2])
    colors = {"ok": "#2ca02c", "duplicate": "#9467bd", "low_quality": "#bcbd22",
              "corrupt": "#d62728", "skipped": "#7f7f7f"}
    left.barh(labels, [status.get(k, 0) for k in labels],
              color=[colors.get(k, "#999999") for k in labels])
    left.set_title("files per status")
    left.invert_yaxis()
    right.set_title("files per status/reason")
    if reasons:
        names = list(reasons)
        right.barh(names, [reasons[k] for k in names],
                   color=[colors.get(k.split("/")[0], "#999999") for k in names])
        right.invert_yaxis()
        right.tick_params(axis="y", labelsize=7)
    else:
        right.text(0.5, 0.5, "no file was rejected", ha="center", va="center",
                   transform=right.transAxes)
        right.set_axis_off()
    _save(figure, path)


def _plot_splits(splits: dict, classes: list[str], path: Path) -> None:
    names = list(splits)
    figure = _figure(11, 3.6)
    left, right = figure.subplots(1, 2, width_ratios=[1, 2.5])
    real = [splits[n]["images"]["real"] for n in names]
    synthetic = [splits[n]["images"]["synthetic"] for n in names]
    left.bar(names, real, color=_REAL, label="real")
    left.bar(names, synthetic, bottom=real, color=_SYNTH, label="synthetic")
    left.set_title("ok images per split")
    left.legend(fontsize=8)
    width = 0.8 / max(len(names), 1)
    x = np.arange(len(classes))
    hatches = ["", "//", "..", "xx"]
    for k, name in enumerate(names):
        boxes = splits[name]["boxes"]
        r = [boxes[c]["real"] for c in classes]
        s = [boxes[c]["synthetic"] for c in classes]
        offset = x - 0.4 + width * (k + 0.5)
        right.bar(offset, r, width, color=_REAL, hatch=hatches[k % 4], edgecolor="white",
                  label=f"{name} real")
        right.bar(offset, s, width, bottom=r, color=_SYNTH, hatch=hatches[k % 4],
                  edgecolor="white", label=f"{name} synthetic")
    right.set_xticks(x, classes)
    right.set_title("defect boxes per class and split (bars: " + ", ".join(names) + ")")
    right.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _save(figure, path)


def _plot_sizes(section: dict, classes: list[str], path: Path) -> None:
    shown = [c for c in classes if section[c].get("size_px")] or classes[:1] or ["(none)"]
    cols = min(3, len(shown))
    rows = int(np.ceil(len(shown) / cols))
    figure = _figure(4 * cols, 2.6 * rows)
    axes = np.atleast_1d(figure.subplots(rows, cols)).ravel()
    for ax, cls in zip(axes, shown, strict=False):
        size = section.get(cls, {}).get("size_px")
        ax.set_title(cls)
        if not size:
            ax.text(0.5, 0.5, "no boxes", ha="center", va="center", transform=ax.transAxes)
            continue
        edges = np.array(size["histogram"]["edges"])
        for origin, color in (("real", _REAL), ("synthetic", _SYNTH)):
            counts = size["histogram"][origin]
            if sum(counts):
                ax.stairs(counts, edges, color=color, fill=False, linewidth=1.6, label=origin)
        ax.set_xlabel("defect size: sqrt(box area), px", fontsize=8)
        ax.legend(fontsize=7)
    for ax in axes[len(shown):]:
        ax.set_visible(False)
    _save(figure, path)


def _plot_precision_recall(curves: dict, ap: dict, title: str, iou: float | None,
                           path: Path) -> None:
    figure = _figure(5.6, 4.2)
    ax = figure.subplots()
    for cls, curve in curves.items():
        if curve is None:
            ax.plot([], [], label=f"{cls} (no labelled box)")
            continue
        recall, precision = curve
        value = ap.get(cls)
        label = f"{cls} (AP {value:.3f})" if value is not None else f"{cls} (AP -)"
        if not len(recall):
            ax.plot([], [], label=f"{label}, no prediction")
            continue
        # From recall 0 at the first prediction's precision, step by step.
        [line] = ax.plot(np.r_[0.0, recall], np.r_[precision[:1], precision], label=label,
                         drawstyle="steps-post", linewidth=1.5)
        # Where the class's predictions end (its recall with every prediction kept).
        ax.plot(recall[-1:], precision[-1:], "o", color=line.get_color(), markersize=4)
    ax.set_xlim(0.0, 1.02)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(f"{title}: precision-recall"
                 + (f" (IoU > {iou:g})" if iou is not None else ""), fontsize=10)
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize=7, loc="lower left")
    _save(figure, path)


def _plot_confusion(table: pd.DataFrame, title: str, path: Path) -> None:
    counts = table.to_numpy()
    side = 1.6 + 0.55 * max(counts.shape)
    figure = _figure(side + 1.2, side)
    ax = figure.subplots()
    image = ax.imshow(counts, cmap="Blues", vmin=0, vmax=max(int(counts.max(initial=0)), 1))
    figure.colorbar(image, ax=ax, shrink=0.8)
    top = max(int(counts.max(initial=0)), 1)
    for (row, col), n in np.ndenumerate(counts):
        ax.text(col, row, str(n), ha="center", va="center", fontsize=8,
                color="white" if n > top / 2 else "#222222")
    ax.set_xticks(np.arange(counts.shape[1]), list(table.columns), rotation=45, ha="right",
                  fontsize=8)
    ax.set_yticks(np.arange(counts.shape[0]), list(table.index), fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"{title}: confusion", fontsize=10)
    _save(figure, path)


# --- the report --------------------------------------------------------------------------


def build_report(root: Path | str, settings: ReportSettings | None = None, *,
                 folder: Path | None = None, progress: bool = False,
                 dataset: Dataset | None = None) -> dict:
    """The report of the dataset folder ``root``; images and plots go into ``folder``
    (``root/report`` by default) and are named in the report relative to ``root``.
    ``dataset``: its tables, when the caller has them (a build: its stage's copy, since
    the folder it is publishing is refused by :func:`load` until the build is done)."""
    root = Path(root)
    settings = settings or ReportSettings()
    folder = Path(folder) if folder is not None else root / REPORT_DIR
    dataset = dataset if dataset is not None else load(root)
    samples = dataset.samples
    classes = list(dataset.info.classes) or sorted(dataset.labels["label"].unique())
    ok, labels = _usable_labels(dataset)
    status, reasons = _status_section(samples)
    splits = _split_section(ok, labels, classes)
    per_class = _class_section(labels, classes, settings.histogram_bins)
    split_report = _read_json(root / "split_report.json") or {}
    audit = _read_json(root / "audit.json")
    recipe = None
    if (root / "recipe.yaml").is_file():
        recipe = yaml.safe_load((root / "recipe.yaml").read_text(encoding="utf-8"))
    exports = {}
    for report_file in sorted((root / "export").glob("*/export_report.json")):
        exported = _read_json(report_file) or {}
        exports[report_file.parent.name] = {"folder": f"export/{report_file.parent.name}",
                                            "splits": exported.get("splits", {})}
    thumbs = (sum(len(c) for c in _example_boxes(ok, labels, classes,
                                                  settings.examples_per_class).values())
              + len(_rejected_rows(samples, settings.rejected_examples)))
    with progress_bar(progress, "report", thumbs) as advance:
        examples = _examples(dataset, ok, labels, classes, settings.examples_per_class,
                             folder, advance)
        rejected = _rejected(dataset, settings.rejected_examples, folder, advance)
        plots = {"status": f"{REPORT_DIR}/status.png", "splits": f"{REPORT_DIR}/splits.png",
                 "defect_sizes": f"{REPORT_DIR}/defect_sizes.png"}
        _plot_status(status, reasons, folder / "status.png")
        _plot_splits(splits, classes, folder / "splits.png")
        _plot_sizes(per_class, classes, folder / "defect_sizes.png")
    warnings: list[str] = []
    evaluations = _evaluations_section(root, folder, warnings)
    for entry in evaluations or []:
        for plot in entry["plots"].values():
            if plot is not None:
                plots[Path(plot).stem] = plot
    report = {
        "title": (recipe or {}).get("name") or root.name,
        "pcbforge_version": __version__,
        "dataset": root.name,
        "files": len(samples),
        "classes": classes,
        "status": status,
        "reasons": reasons,
        "sources": _source_section(samples),
        "splits": splits,
        "per_class": per_class,
        "split": {k: split_report[k] for k in ("method", "parameters", "max_class_deviation",
                                               "worst_class", "classes_missing")
                  if k in split_report},
        "synthetic_policy": split_report.get("synthetic_policy"),
        "audit": None if audit is None else {
            "clean": audit.get("clean"), "leaks": audit.get("leaks"),
            "images_checked": audit.get("images_checked"),
            "leaks_by_reason": audit.get("leaks_by_reason", {}),
            "pairs": (audit.get("pairs") or [])[:20]},
        "qa": _qa_section(root, dataset),
        "exports": exports,
        "recipe": recipe,
        "plots": plots,
        "examples": examples,
        "rejected": rejected,
    }
    # Only with evaluations: a dataset without them keeps the same report.json.
    if evaluations is not None:
        report["evaluations"] = evaluations
    if warnings:
        report["warnings"] = warnings
    return report


def _format(value) -> str:
    """A number of the page: ``-`` for none, floats to 3 decimals."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def render_html(report: dict) -> str:
    import jinja2

    template = resources.files("pcbforge.pipeline").joinpath(TEMPLATE).read_text("utf-8")
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined,
                                     trim_blocks=True, lstrip_blocks=True)
    environment.filters["yaml"] = lambda value: yaml.safe_dump(value, sort_keys=False)
    environment.filters["num"] = _format
    return environment.from_string(template).render(r=report, escape=html.escape)


def write_report(root: Path | str, settings=None, *, progress: bool = False,
                 dataset: Dataset | None = None, staged: bool = True) -> dict:
    """Write ``report/`` (plots, thumbnails), ``report.json`` and ``report.html`` into the
    dataset folder ``root`` and return the report. ``settings``: a recipe's ``report``
    section or :class:`ReportSettings`; ``dataset``: see :func:`build_report`.

    Takes the writer lock of ``root``: raises :class:`~pcbforge.core.OutputBusyError`
    while another process writes it. ``staged`` (the default): like every command's
    output, the folder is staged as a hard-link copy with the report added and swapped in
    whole, so a kill leaves the previous folder or the new one. ``staged=False`` writes
    into ``root`` (``report/`` swapped in, then each file replaced atomically): for a
    build, which holds the lock already and whose running marker covers a kill midway.
    """
    root = Path(root)
    if settings is not None and not isinstance(settings, ReportSettings):
        settings = ReportSettings(settings.examples_per_class, settings.rejected_examples,
                                  settings.histogram_bins)
    if not staged:
        with OutputLock(root, command="report"):
            return _write_report_into(root, root, settings, progress, dataset)
    require_folder(root, writer=True)  # refused before anything is created
    with staged_output(root, command="report", clone=True) as stage:
        # Read under the lock: the tables cannot change before the swap.
        dataset = dataset if dataset is not None else load(root)
        return _write_report_into(root, stage, settings, progress, dataset)


def _write_report_into(root: Path, into: Path, settings, progress: bool,
                       dataset: Dataset | None) -> dict:
    """The report of ``root`` written into the folder ``into`` (``root`` or its stage,
    a hard-link copy of it: files there are replaced, never written into)."""
    with swapped_in(into / REPORT_DIR) as staging:
        report = build_report(root, settings, folder=staging, progress=progress,
                              dataset=dataset)
        page = render_html(report)  # before the swap: a template error changes nothing
    write_json(into / REPORT_JSON, report)
    atomic_write(into / REPORT_HTML, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
    return report


__all__ = ["REPORT_HTML", "REPORT_JSON", "ReportSettings", "build_report", "precision_recall",
           "render_html", "write_report"]
