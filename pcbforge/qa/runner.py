"""``run_qa``: check a whole dataset and write qa's tables, summary and crops.

Per-pair work (:func:`pcbforge.qa.checks.check_pair`) is mapped by an engine (a local
pool or a Dask cluster); the checks that need no image (box sanity, size outliers) and
the outputs are made here. Outputs are staged and swapped in like every pcbforge output.
"""

from __future__ import annotations

import json
import math
import shutil
from contextlib import nullcontext
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from pcbforge import __version__
from pcbforge.core.boxes import iou
from pcbforge.core.files import atomic_write, write_bytes, write_json
from pcbforge.core.output import staged_output
from pcbforge.core.progress import progress_bar
from pcbforge.datasets.dataset import Dataset, load, require_folder
from pcbforge.datasets.qa_tables import (
    BOX_SANITY,
    CROPS_DIR,
    DELETE,
    KINDS,
    QA_CSV,
    QA_JSON,
    QA_PARQUET,
    REFIT,
    REGISTERED_DIR,
    REGISTRATION_COLUMNS,
    REGISTRATION_PARQUET,
    SIZE_OUTLIER,
    finding_id,
    findings_table,
)
from pcbforge.datasets.samples import USABLE_STATUSES
from pcbforge.engine import Engine, LocalEngine
from pcbforge.qa.checks import Box, PairJob, PairResult, check_pair
from pcbforge.qa.crops import render_crop
from pcbforge.qa.params import QAParams

#: Boxes a class needs before its sizes say what an outlier is.
MIN_CLASS_BOXES = 10
#: The least spread (robust, of log sizes) a class is taken to have: 5%.
MIN_LOG_SPREAD = 0.05
WORKER_MODULES = ("pcbforge.qa.checks",)


def is_template(samples: pd.DataFrame) -> pd.Series:
    """Whether each sample is a template: its role says so, or some sample names its
    image as its template."""
    templates = set(samples["template_path"].fillna("").astype(str)) - {""}
    named = samples["path"].astype(str).isin(templates)
    if "role" in samples.columns:
        return named | (samples["role"].fillna("").astype(str) == "template")
    return named


def read_findings(folder: Path | str) -> pd.DataFrame:
    """The findings ``run_qa`` wrote into ``folder`` (``qa.parquet``)."""
    return pd.read_parquet(Path(folder) / QA_PARQUET)


def _boxes(dataset: Dataset) -> dict[str, list[Box]]:
    labels = dataset.labels.reset_index(drop=True)
    out: dict[str, list[Box]] = {}
    for row, (sample_id, label, x1, y1, x2, y2) in enumerate(zip(
            labels["sample_id"], labels["label"], labels["x1"], labels["y1"], labels["x2"],
            labels["y2"], strict=True)):
        out.setdefault(str(sample_id), []).append(
            Box(row, str(label), float(x1), float(y1), float(x2), float(y2)))
    return out


def _nuisance(value: object) -> tuple[tuple[float, ...], ...]:
    text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
    if not text:
        return ()
    try:
        return tuple(tuple(float(v) for v in region["box"]) for region in json.loads(text))
    except (ValueError, KeyError, TypeError):
        return ()


def pair_jobs(dataset: Dataset, params: QAParams, register_dir: Path | None = None,
              ) -> tuple[list[PairJob], pd.DataFrame]:
    """The jobs of the tested images that name a template, and the other usable
    non-template samples (checked without a reference)."""
    samples = dataset.samples.reset_index(drop=True)
    usable = samples["status"].isin(USABLE_STATUSES) & ~is_template(samples)
    samples = samples[usable]
    boxes = _boxes(dataset)
    templates = samples["template_path"].fillna("").astype(str)
    paired = samples[templates != ""]
    nuisance = (paired["nuisance_regions"] if "nuisance_regions" in paired.columns
                else pd.Series("", index=paired.index))
    jobs = [PairJob(
        sample_id=str(sample_id), tested=str(dataset.image_path(str(path))),
        template=str(dataset.image_path(str(template))),
        boxes=tuple(boxes.get(str(sample_id), ())), nuisance=_nuisance(regions),
        params=params,
        register_to=str(register_dir / f"{sample_id}.png") if register_dir else "")
        for sample_id, path, template, regions in zip(
            paired["sample_id"], paired["path"], paired["template_path"], nuisance,
            strict=True)]
    return jobs, samples[templates == ""]


# --- checks without a reference ------------------------------------------------------------


def _finding(sample_id: str, kind: str, detail: str, score: float, reason: str, box: Box,
             action: str, proposed: tuple | None = None) -> dict:
    where = tuple(round(v, 1) for v in box.xyxy)
    proposed = (math.nan,) * 4 if proposed is None else tuple(round(v, 1) for v in proposed)
    return {"finding_id": finding_id(sample_id, kind, box.row, where), "sample_id": sample_id,
            "kind": kind, "detail": detail, "score": round(score, 3), "reason": reason,
            "label_row": box.row, "label": box.label, "x1": where[0], "y1": where[1],
            "x2": where[2], "y2": where[3], "action": action,
            "proposed_label": box.label if action == REFIT else "",
            "px1": proposed[0], "py1": proposed[1], "px2": proposed[2], "py2": proposed[3]}


def box_sanity(dataset: Dataset, params: QAParams) -> list[dict]:
    """Degenerate boxes, boxes leaving their image, same-class duplicates (every sample)."""
    sizes = dataset.samples.set_index("sample_id").reindex(columns=["width", "height"])
    findings = []
    for sample_id, boxes in _boxes(dataset).items():
        width, height = (sizes.loc[sample_id].fillna(0).to_numpy(dtype=float)
                         if sample_id in sizes.index else (0.0, 0.0))
        for i, box in enumerate(boxes):
            side = min(box.x2 - box.x1, box.y2 - box.y1)
            if side < params.min_box_side_px:
                findings.append(_finding(
                    sample_id, BOX_SANITY, "degenerate", 1.0,
                    f"{box.label} box is {box.x2 - box.x1:g} x {box.y2 - box.y1:g} px",
                    box, DELETE))
            if width > 0 and height > 0 and (box.x1 < 0 or box.y1 < 0 or box.x2 > width
                                             or box.y2 > height):
                clipped = (max(box.x1, 0.0), max(box.y1, 0.0), min(box.x2, width),
                           min(box.y2, height))
                findings.append(_finding(
                    sample_id, BOX_SANITY, "outside", 1.0,
                    f"{box.label} box leaves its {width:g}x{height:g} image", box, REFIT,
                    clipped))
            for other in boxes[:i]:
                overlap = iou(box.xyxy, other.xyxy)
                if other.label == box.label and overlap >= params.duplicate_iou:
                    findings.append(_finding(
                        sample_id, BOX_SANITY, "duplicate", overlap,
                        f"{box.label} box repeats row {other.row} (IoU {overlap:.2f})", box,
                        DELETE))
                    break
    return findings


def size_outliers(dataset: Dataset, sample_ids: set[str], params: QAParams) -> list[dict]:
    """Boxes far from their class's size or aspect, by robust deviations (samples
    ``sample_ids`` only: those without a template, which the change checks do not see)."""
    rows = [(sid, box) for sid, boxes in _boxes(dataset).items() if sid in sample_ids
            for box in boxes]
    findings = []
    by_class: dict[str, list] = {}
    for sid, box in rows:
        by_class.setdefault(box.label, []).append((sid, box))
    for label, members in sorted(by_class.items()):
        if len(members) < MIN_CLASS_BOXES:
            continue
        w = np.array([b.x2 - b.x1 for _, b in members])
        h = np.array([b.y2 - b.y1 for _, b in members])
        for name, values in (("area", np.log(w * h)), ("aspect", np.log(w / h))):
            median = float(np.median(values))
            # A floor: boxes all of one size (a tool's default) still have outliers.
            mad = max(1.4826 * float(np.median(np.abs(values - median))), MIN_LOG_SPREAD)
            z = (values - median) / mad
            for (sid, box), score in zip(members, z, strict=True):
                if abs(score) > params.outlier_mad:
                    what = ("larger" if score > 0 else "smaller") if name == "area" else (
                        "wider" if score > 0 else "taller")
                    findings.append(_finding(
                        sid, SIZE_OUTLIER, name, min(abs(score) / (2 * params.outlier_mad),
                                                     1.0),
                        f"{label} box is far {what} than its class's ({abs(score):.1f} "
                        f"robust deviations of log {name})", box, "none"))
    return findings


# --- the run -------------------------------------------------------------------------------


def _crop_job(item: tuple) -> bytes | None:
    tested, template, finding, params = item
    crop = render_crop(tested, template, finding, params)
    if crop is None:
        return None
    ok, data = cv2.imencode(".png", crop)
    return data.tobytes() if ok else None


def _pick_crops(findings: pd.DataFrame, per_kind: int, seed: int) -> pd.DataFrame:
    """Up to ``per_kind`` findings of each kind and detail (a rare detail, such as a
    defect-like missing label among many displaced edges, gets its own), seeded."""
    if per_kind <= 0 or findings.empty:
        return findings.iloc[:0]
    rng = np.random.default_rng(seed)
    parts = []
    for kind in KINDS:
        of_kind = findings[findings["kind"] == kind]
        for detail in sorted(set(of_kind["detail"])):
            rows = of_kind[of_kind["detail"] == detail].sort_values("finding_id")
            if len(rows) > per_kind:
                rows = rows.iloc[np.sort(rng.choice(len(rows), per_kind, replace=False))]
            parts.append(rows)
    return pd.concat(parts) if parts else findings.iloc[:0]


def _summary(dataset_path, findings: pd.DataFrame, registration: pd.DataFrame, jobs: int,
             without: int, params: QAParams, crops: dict) -> dict:
    found = registration[registration["tiles"] >= 0] if len(registration) else registration

    def p95(column: str) -> float | None:
        if found.empty:
            return None
        return round(float(np.percentile(np.abs(found[column].to_numpy(float)), 95)), 3)

    shift = found.assign(shift=np.hypot(found["dx"], found["dy"])) if len(found) else found
    return {
        "command": "qa", "dataset": str(dataset_path), "samples": jobs + without,
        "pairs": jobs, "without_template": without, "findings": len(findings),
        "by_kind": {k: int(v) for k, v in findings["kind"].value_counts().items()},
        "by_detail": {f"{k}/{d}": int(v) for (k, d), v in
                      findings.groupby(["kind", "detail"]).size().items()},
        "registration": {
            "pairs": len(registration),
            "misregistered": int(registration["misregistered"].sum()) if len(registration)
            else 0,
            "shift_px_p95": (round(float(np.percentile(shift["shift"], 95)), 3)
                             if len(shift) else None),
            "rotation_deg_p95": p95("rotation_deg"),
            "residual_px_p95": p95("residual_p95"),
        },
        "crops": crops, "params": params.model_dump(mode="json"),
        "pcbforge_version": __version__,
    }


def _order(findings: pd.DataFrame, sample_order: dict[str, int]) -> pd.DataFrame:
    if findings.empty:
        return findings
    rank = {kind: i for i, kind in enumerate(KINDS)}
    return (findings.assign(_s=findings["sample_id"].map(sample_order).fillna(-1),
                            _k=findings["kind"].map(rank))
            .sort_values(["_s", "_k", "y1", "x1", "finding_id"], kind="stable")
            .drop(columns=["_s", "_k"]).reset_index(drop=True))


def run_qa(dataset: Path | str, out: Path | str | None = None, *,
           params: QAParams | None = None, workers: int = 1, engine: Engine | None = None,
           progress: bool = False, register: bool = False, crops_per_kind: int = 20,
           seed: int = 0) -> dict:
    """Check every tested/template pair and every box of ``dataset``; write ``qa.parquet``
    (+ ``qa.csv``), ``qa_registration.parquet``, ``qa.json`` and up to ``crops_per_kind``
    crops per finding kind and detail (chosen with ``seed``) into ``out`` (default: the dataset
    folder itself). ``register`` also writes each registered template to
    ``qa/registered/<sample_id>.png``. Returns the summary (``qa.json``)."""
    params = params or QAParams()
    require_folder(dataset)
    data = load(dataset)
    out = Path(out) if out is not None else Path(dataset)
    into_dataset = out.resolve() == Path(dataset).resolve()
    with staged_output(out, command="qa", clone=into_dataset) as stage, \
            (nullcontext(engine) if engine is not None
             else LocalEngine(workers, preload=WORKER_MODULES)) as run:
        register_dir = stage / REGISTERED_DIR
        if register_dir.exists():  # an earlier run's (the stage is a copy of the folder)
            shutil.rmtree(register_dir)
        if register:
            register_dir.mkdir(parents=True)
        else:
            register_dir = None
        jobs, alone = pair_jobs(data, params, register_dir)
        results: list[PairResult] = []
        with progress_bar(progress, "checking pairs", len(jobs)) as advance:
            for result in run.map(check_pair, jobs):
                results.append(result)
                advance()
        rows = [row for result in results for row in result.findings]
        rows += box_sanity(data, params)
        rows += size_outliers(data, set(alone["sample_id"].astype(str)), params)
        order = {sid: i for i, sid in enumerate(data.samples["sample_id"].astype(str))}
        findings = _order(findings_table(rows), order)
        registration = pd.DataFrame(
            [r.registration for r in results if r.registration is not None],
            columns=list(REGISTRATION_COLUMNS))
        if register_dir is not None:
            registration["registered_template"] = [
                f"{REGISTERED_DIR}/{sid}.png" for sid in registration["sample_id"]]
        crops = _write_crops(stage, data, jobs, findings, params, crops_per_kind, seed, run,
                             progress)
        summary = _summary(dataset, findings, registration, len(jobs), len(alone), params,
                           crops)
        atomic_write(stage / QA_PARQUET, lambda tmp: findings.to_parquet(tmp, index=False))
        atomic_write(stage / QA_CSV, lambda tmp: findings.to_csv(tmp, index=False))
        atomic_write(stage / REGISTRATION_PARQUET,
                     lambda tmp: registration.to_parquet(tmp, index=False))
        write_json(stage / QA_JSON, summary)
    return summary


def _write_crops(stage: Path, data: Dataset, jobs: list[PairJob], findings: pd.DataFrame,
                 params: QAParams, per_kind: int, seed: int, run, progress: bool) -> dict:
    """Crops of some findings of each kind into ``qa/crops``; ``{finding_id: path}``."""
    folder = stage / CROPS_DIR
    if folder.exists():  # an earlier run's crops (the stage is a copy of the folder)
        for old in folder.glob("*.png"):
            old.unlink()
    chosen = _pick_crops(findings, per_kind, seed)
    pairs = {job.sample_id: (job.tested, job.template) for job in jobs}
    paths = {str(sid): str(data.image_path(str(path)))
             for sid, path in zip(data.samples["sample_id"], data.samples["path"],
                                  strict=True)}
    items, ids = [], []
    for record in chosen.to_dict("records"):
        tested, template = pairs.get(record["sample_id"], (paths.get(record["sample_id"]), ""))
        if tested is None:
            continue
        items.append((tested, template, record, params))
        ids.append(record["finding_id"])
    crops = {}
    with progress_bar(progress and bool(items), "drawing crops", len(items)) as advance:
        for fid, png in zip(ids, run.map(_crop_job, items), strict=True):
            advance()
            if png is not None:
                write_bytes(folder / f"{fid}.png", png)
                crops[fid] = f"{CROPS_DIR}/{fid}.png"
    return crops


__all__ = ["box_sanity", "is_template", "pair_jobs", "read_findings", "run_qa",
           "size_outliers"]
