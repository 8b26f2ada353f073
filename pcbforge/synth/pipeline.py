"""``pcbforge synth``: defective boards and their labels, written as a pcbforge dataset.

::

    DATASET/
      templates/<board path>     each good board used, copied byte for byte
      images/syn_000000.png      the tested (defective) boards
      samples.parquet, labels.parquet, dataset.json, synth_report.json

The folder is built in a hidden stage beside ``DATASET`` and swapped in whole
(:func:`pcbforge.core.staged_output`): a run killed at any point leaves the previous
complete output, never a mix of two runs. Every image's ``sha256`` (of the bytes
written) is in the samples table, so a later change to a file can be found.

Image ``i`` is made from board ``i mod len(boards)`` with a generator seeded by
``(seed, i)`` only, so the bytes do not depend on the number of workers, and a
larger ``count`` with the same seed keeps every earlier image. Templates are
samples too (defect-free, ``role`` = ``template``); each tested image names its
template in ``template_path`` and shares its ``group``, so ``pcbforge split``
keeps a board and all its synthetic variants on one side.

A share of the tested images (``SynthConfig.defect_free_share``) has no defect and no
label. Every tested image records its background nuisance in the samples column
``nuisance_regions``: a JSON list of ``{"kind", "box": [x1, y1, x2, y2], "area"}``
(``"[]"`` when none; ``""`` for templates). Every difference from the template thicker
than 2 px lies inside a label's box or one of these boxes (see
:func:`pcbforge.synth.compose.synthesize_image`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path, PurePosixPath

import cv2
import numpy as np
import pandas as pd

from pcbforge import __version__
from pcbforge.core.files import (
    UnreadableFileError,
    atomic_write,
    read_regular_file,
    write_bytes,
    write_json,
)
from pcbforge.core.output import staged_output
from pcbforge.core.progress import progress_bar
from pcbforge.core.scan import scan_folder
from pcbforge.datasets.dataset import (
    DATASET_JSON,
    Dataset,
    DatasetInfo,
    apply_previous_splits,
    load,
    previous_splits,
    read_info,
    sample_id_for,
    save,
    with_defaults,
)
from pcbforge.datasets.formats_common import read_image_size
from pcbforge.datasets.masks import encode_mask_window, mask_box
from pcbforge.datasets.samples import SAMPLES_PARQUET
from pcbforge.engine import Engine, LocalEngine
from pcbforge.synth.analysis import BoardAnalysis, analyze_board
from pcbforge.synth.colour import ColourLayout, embed_layout, layout_from_png
from pcbforge.synth.compose import (
    SynthConfig,
    SynthImage,
    copper_of,
    draw_etch,
    etch_any,
    pad_box,
    synthesize_image,
)
from pcbforge.synth.registry import class_names
from pcbforge.synth.topology import check_topology

REPORT_JSON = "synth_report.json"
IMAGE_FORMATS = ("png", "jpg")
#: What worker processes import before their first task.
WORKER_MODULES = ("numpy", "cv2", "pcbforge.synth.compose")


class SynthError(ValueError):
    """Synthesis cannot start: no boards, an output folder that is not ours..."""


@dataclass(frozen=True)
class Board:
    """A good board to draw on."""

    file: str  # where to read it
    path: str  # its samples-table path in the output (under templates/)
    group: str  # leakage group the board and its variants share


def _safe_relative(path: str, index: int) -> str:
    parts = PurePosixPath(path.replace("\\", "/")).parts
    if not parts or PurePosixPath(path).is_absolute() or ".." in parts:
        return f"{index:05d}_{PurePosixPath(path).name or 'board'}"
    return "/".join(parts)


def _template_path(path: str, index: int) -> str:
    relative = _safe_relative(path, index)
    return relative if relative.startswith("templates/") else f"templates/{relative}"


def source_px_per_mm(src: Path | str) -> float | None:
    """The px/mm a board source records: a pcbforge dataset's ``dataset.json``, else None.
    Reads the header only, not the folder."""
    src = Path(src)
    return read_info(src).px_per_mm if (src / SAMPLES_PARQUET).is_file() else None


def list_boards(src: Path | str) -> tuple[list[Board], float | None]:
    """The good boards in ``src`` and the px/mm it records (``None`` when unknown).

    A pcbforge dataset gives the templates of its inspection pairs, or else its ``ok``
    images that have no labels; any other folder gives every image file in it.
    """
    src = Path(src)
    if not src.is_dir():
        raise SynthError(f"--boards {src}: not a folder")
    if (src / SAMPLES_PARQUET).is_file():
        dataset = load(src)
        samples = dataset.samples
        ok = samples[samples["status"] == "ok"]
        templates = set(ok["template_path"].fillna("").astype(str)) - {""}
        if templates:
            chosen = ok[ok["path"].isin(templates)]
        else:
            labelled = set(dataset.labels["sample_id"])
            synthetic = ok["synthetic"].fillna(False).astype(bool)
            chosen = ok[~ok["sample_id"].isin(labelled) & ~synthetic]
        boards = [
            Board(str(dataset.image_path(row.path)), _template_path(str(row.path), i),
                  str(row.group or row.sample_id))
            for i, row in enumerate(chosen.sort_values("path").itertuples())
        ]
        where = f"dataset {src} (no ok template or unlabelled image)"
        px_per_mm = dataset.info.px_per_mm
    else:
        found = [f for f in scan_folder(src).files if not f.skip_reason]
        boards = [Board(f.fs_path, _template_path(f.path, i),
                        "b" + hashlib.blake2b(f.path.encode(), digest_size=5).hexdigest())
                  for i, f in enumerate(found)]
        where = f"folder {src} (no image file)"
        px_per_mm = None
    if not boards:
        raise SynthError(f"no good boards to draw on in {where}")
    return boards, px_per_mm


def read_board(file: str) -> np.ndarray:
    """A board image as uint8 gray or BGR; ``ValueError`` when it cannot be read (not a
    regular file, too large) or decoded."""
    return read_board_and_layout(file)[0]


def read_board_and_layout(file: str) -> tuple[np.ndarray, ColourLayout | None]:
    """:func:`read_board`, and the copper layout the board's PNG carries (a procedural
    colour board's, :func:`~pcbforge.synth.colour.layout_from_png`; ``None`` for other
    images). A damaged layout, or one that does not fit the image, raises ``ValueError``."""
    try:
        raw = read_regular_file(file)
    except UnreadableFileError as err:  # a FIFO would block the read, a device never end
        raise ValueError(err.detail) from err
    data = np.frombuffer(raw, np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise ValueError("cannot decode the image")
    if image.dtype != np.uint8:
        image = cv2.convertScaleAbs(image, alpha=255.0 / max(float(image.max()), 1.0))
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    layout = layout_from_png(raw)
    if layout is not None and (image.ndim != 3 or layout.shape != image.shape[:2]):
        raise ValueError(f"the board's layout ({layout.shape[1]}x{layout.shape[0]} px) does "
                         f"not fit its image (shape {image.shape})")
    return image, layout


def encode_image(image: np.ndarray, fmt: str, *, binary: bool = False) -> bytes:
    """``image`` encoded as ``fmt`` (``png`` or ``jpg``). ``binary``: a two-level scan
    (JPEG-ringed edges included), which PNG's run-length strategy stores smaller and
    faster than its default filtering (on grey and colour images it does not)."""
    if fmt == "jpg":
        params = [cv2.IMWRITE_JPEG_QUALITY, 95]
    else:
        params = [cv2.IMWRITE_PNG_COMPRESSION, 3]
        if binary:
            params += [cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
    ok, data = cv2.imencode(f".{fmt}", image, params)
    if not ok:
        raise ValueError(f"cannot encode {fmt}")
    return data.tobytes()


def _write_bytes(out: Path | str, name: str, data: bytes) -> str:
    """Write ``data`` as the file ``name`` of the existing folder ``out`` atomically; its
    sha256, of exactly these bytes. Only folders inside ``out`` are made (a Dask task
    still running after its run failed must not make the removed stage again)."""
    write_bytes(Path(out) / name, data, inside=out)
    return hashlib.sha256(data).hexdigest()


def _copy_hashed(source: str, path: Path) -> str:
    """Copy the file ``source`` to ``path`` atomically; the sha256 of the bytes copied
    (hashed on the way through, not read again)."""
    digest = hashlib.sha256()

    def copy(tmp: str) -> None:
        with open(source, "rb") as reader, open(tmp, "wb") as writer:
            while chunk := reader.read(1 << 20):
                digest.update(chunk)
                writer.write(chunk)

    atomic_write(path, copy)
    return digest.hexdigest()


def _class_weight(config: SynthConfig, name: str) -> float | None:
    """The share of draws the class ``name`` had (``None``: every class alike)."""
    if config.class_weights is None:
        return None
    total = sum(config.class_weights)
    return round(config.class_weights[config.classes.index(name)] / total, 6)


@lru_cache(maxsize=4)
def _config(config_json: str) -> SynthConfig:
    return SynthConfig.model_validate_json(config_json)


@lru_cache(maxsize=4)
def _transform(config_json: str):
    return _config(config_json).augment.build()


#: Draws of the albumentations stage tried before an image is kept un-augmented.
AUGMENT_TRIES = 3


def _augment(made: SynthImage, config: SynthConfig, transform, rng: np.random.Generator,
             analysis: BoardAnalysis) -> bool:
    """Run the albumentations stage on the finished pair; labels follow their masks.

    A geometric transform resamples the pair: a thin cut can close, a bridge can break.
    Every label is checked against its class's topology rule again; when one fails, the
    stage is drawn again (``AUGMENT_TRIES`` in all) and then left out, so no label is
    ever kept on a defect it no longer describes. Returns whether the pair was changed.
    """
    from pcbforge.synth.augment import augment_pair

    # Nuisance regions travel as filled boxes after the defects' masks, so their records
    # follow the transform too.
    shape = made.image.shape[:2]
    region_masks = []
    for region in made.nuisance_regions:
        x1, y1, x2, y2 = region["box"]
        box_mask = np.zeros(shape, np.uint8)
        box_mask[y1:y2, x1:x2] = 1
        region_masks.append(box_mask)
    n_labels = len(made.labels)
    for _ in range(AUGMENT_TRIES):
        result = augment_pair(transform, made.image, made.template,
                              [label["mask"].astype(np.uint8) for label in made.labels]
                              + region_masks,
                              [label["box"] for label in made.labels]
                              + [r["box"] for r in made.nuisance_regions],
                              [label["label"] for label in made.labels]
                              + ["nuisance"] * len(region_masks), rng,
                              binary=made.binary)
        regions = [{**made.nuisance_regions[int(index) - n_labels],
                    "box": [int(v) for v in mask_box(mask)]}
                   for mask, index in zip(result.masks, result.kept, strict=True)
                   if int(index) >= n_labels]
        # The pair may be flipped, turned or scaled: read it without the board's positions.
        before = copper_of(analysis, result.template, in_place=False)
        after = copper_of(analysis, result.image, in_place=False)
        labels = []
        for mask, index in zip(result.masks, result.kept, strict=True):
            if int(index) >= n_labels:
                continue
            label = dict(made.labels[int(index)])
            tight = tuple(int(v) for v in mask_box(mask))
            padded = pad_box(tight, config.margin_px, mask.shape)
            x1, y1, x2, y2 = padded
            ok, _ = check_topology(label["label"], before[y1:y2, x1:x2], after[y1:y2, x1:x2])
            if not ok:
                break
            label.update(mask=mask > 0, tight=tight, changed_px=int(mask.sum()),
                         box=tight if config.box == "tight" else padded)
            labels.append(label)
        else:
            made.image, made.template, made.labels = result.image, result.template, labels
            made.nuisance_regions = regions
            return True
    return False


@lru_cache(maxsize=4)
def _analysed_board(board_file: str, px_per_mm: float, copper: str,
                    etch: int = 0) -> BoardAnalysis:
    """A board read, etched and analysed once per worker: tasks come grouped by board, so
    every image after the first from one board (and etch) skips all three (the analysis
    is read-only). A board that carries its layout (a procedural colour board) is
    analysed with it."""
    board, layout = etch_any(*read_board_and_layout(board_file), etch, copper)
    analysis = analyze_board(board, px_per_mm=px_per_mm, copper=copper, layout=layout)
    for value in vars(analysis).values():
        if isinstance(value, np.ndarray):
            value.flags.writeable = False
    return analysis


def synth_one(task: tuple) -> dict:
    """Make and write synthetic image ``index`` into the folder ``out`` (a pure per-item
    function for any engine).

    A board that cannot be used gives an ``error`` result; a failed write (a full disk)
    raises its ``OSError``, which ends the run."""
    index, board_file, out, seed, config_json, fmt = task
    config = _config(config_json)
    name = f"images/syn_{index:06d}.{fmt}"
    template_name = template_sha256 = ""
    try:
        rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
        etch = draw_etch(config, rng)
        analysis = _analysed_board(board_file, config.px_per_mm, config.copper, etch)
        made = synthesize_image(analysis.image, rng, config, analysis=analysis)
        transform = _transform(config_json)
        augmented = transform is not None and _augment(made, config, transform, rng, analysis)
        if etch or augmented:
            # An etched board, or a template that moved with the tested image: this
            # image's own template.
            template_name = f"templates/augmented/syn_{index:06d}.png"
            data = encode_image(made.template, "png", binary=made.binary)
            if analysis.layout is not None and not augmented:
                # An etched colour board keeps its (etched) layout; a moved one has none.
                data = embed_layout(data, analysis.layout)
            template_sha256 = _write_bytes(out, template_name, data)
    except ValueError as err:
        return {"index": index, "error": str(err)}
    sha256 = _write_bytes(out, name, encode_image(made.image, fmt, binary=made.binary))
    height, width = made.image.shape[:2]
    labels = []
    for label in made.labels:
        x1, y1, x2, y2 = label["box"]
        tx1, ty1, tx2, ty2 = label["tight"]  # holds the whole mask: encode just that window
        mask = encode_mask_window(label["mask"][ty1:ty2, tx1:tx2], tx1, ty1, height, width)
        params = {"class": label["label"], "tight_box": list(label["tight"]),
                  "changed_px": label["changed_px"], **label["params"]}
        if config.balance:
            params["balance"] = {"source": config.balance,
                                 "class_weight": _class_weight(config, label["label"])}
        if config.defects_per_mp is not None:  # absent otherwise: earlier labels keep bytes
            params["defects_per_mp"] = list(config.defects_per_mp)
        labels.append({"label": label["label"], "x1": float(x1), "y1": float(y1),
                       "x2": float(x2), "y2": float(y2), "mask": mask,
                       "synthetic": True,
                       "params": json.dumps(params, separators=(",", ":"), sort_keys=True)})
    return {
        "index": index, "path": name, "sha256": sha256, "template": template_name,
        "template_sha256": template_sha256, "width": width, "height": height, "labels": labels,
        "binary": made.binary, "requested": made.requested, "redrawn": made.redrawn,
        "dropped": made.dropped, "defect_free": made.defect_free,
        "nuisance_regions": json.dumps(made.nuisance_regions, separators=(",", ":"),
                                       sort_keys=True),
        "layout": analysis.layout is not None,
        "synth": json.dumps({"seed": seed, "index": index, "nuisance": made.nuisance,
                             "background": made.background, "defect_free": made.defect_free,
                             **({"etch_px": etch} if config.etch_px != (0, 0) else {}),
                             **({"board": board_style(analysis.layout)}
                                if analysis.layout is not None else {})},
                            separators=(",", ":"), sort_keys=True),
    }


def board_style(layout: ColourLayout) -> dict:
    """What a tested image records of a board that carried its layout: its style and
    colours (BGR)."""
    return {"style": layout.params.get("style", "colour"), "mask": layout.params.get("mask"),
            "finish": layout.params.get("finish"), "palette": layout.params["palette"]}


def _synth_crashed(task: tuple) -> dict:
    """The result of an image whose task killed its Dask worker on every attempt."""
    return {"index": task[0], "error": "worker_crash: the worker process died making it"}


def _template_row(path: str, board: Board, width: int, height: int, sha256: str) -> dict:
    return {
        "sample_id": sample_id_for(path, "synth"), "path": path, "sha256": sha256,
        "status": "ok", "reason": "", "synthetic": False, "template_path": "",
        "group": board.group, "role": "template", "source": "synth", "board": board.file,
        "width": width, "height": height, "synth": "", "nuisance_regions": "",
    }


def _check_out(out: Path, boards: Path | None) -> None:
    if boards is not None and (out.resolve() == boards.resolve()
                               or boards.resolve() in out.resolve().parents):
        raise SynthError(f"--out {out} must not be inside --boards {boards}")
    if out.exists() and any(out.iterdir()):
        try:
            info = json.loads((out / DATASET_JSON).read_text())
            ours = any(p.get("step") == "synth" for p in info.get("provenance", []))
        except (OSError, ValueError, AttributeError):
            ours = False
        if not ours:
            raise SynthError(f"--out {out} exists and is not an earlier `pcbforge synth` output; "
                             f"give a new folder")


def synthesize(boards: Path | str, out: Path | str, *, count: int, seed: int = 0,
               config: SynthConfig | None = None, workers: int = 1, image_format: str = "png",
               progress: bool = True, engine: Engine | None = None,
               board_list: list[Board] | None = None) -> dict:
    """Write ``count`` defective boards made from the good boards in ``boards`` as the
    pcbforge dataset ``out``; return the report (also written to ``synth_report.json``).

    ``engine``: a started engine to map the per-image work on (``workers`` is then unused):
    a :class:`LocalEngine`, or a Dask engine whose workers read ``boards`` and write beside
    ``out`` (its hidden stage) at the same paths; by default a :class:`LocalEngine` with
    ``workers`` processes is started and stopped. Either way, and whatever the number of
    workers, the same bytes.
    ``board_list``: the good boards, already listed (several sources: ``pcbforge build``);
    ``boards`` then only names them in the report and provenance.

    Re-running into an earlier output (same or larger ``count``) rewrites it; with the same
    seed the images are the same bytes and earlier split assignments are kept. The new
    output replaces the old one whole, or not at all: a run that fails (a full disk raises
    its ``OSError``) or is killed leaves the previous output as it was. Another process
    writing ``out`` raises :class:`~pcbforge.core.OutputBusyError`.
    """
    boards, out = Path(boards), Path(out)
    config = config or SynthConfig()
    if count < 1:
        raise SynthError(f"count must be >= 1, got {count}")
    if workers < 1:
        raise SynthError(f"workers must be >= 1, got {workers}")
    if image_format not in IMAGE_FORMATS:
        raise SynthError(f"image format must be one of {IMAGE_FORMATS}, got {image_format!r}")
    if board_list is None:
        board_list, _ = list_boards(boards)
        inside = boards
    elif not board_list:
        raise SynthError("no good boards to draw on")
    else:
        inside = None
    _check_out(out, inside)  # before the lock too: a refused --out gets nothing beside it
    with staged_output(out, command="synth") as stage:
        _check_out(out, inside)  # again under the lock, after a killed run's recovery
        # Read before the swap replaces the old output: the test set only grows.
        earlier_split, earlier = previous_splits(out)
        report = _synthesize_into(stage, out, boards, board_list, count=count, seed=seed,
                                  config=config, image_format=image_format, workers=workers,
                                  progress=progress, engine=engine,
                                  earlier_split=earlier_split, earlier=earlier)
    return report


def _synthesize_into(stage: Path, out: Path, boards: Path, board_list: list[Board], *,
                     count: int, seed: int, config: SynthConfig, image_format: str,
                     workers: int, progress: bool, engine: Engine | None,
                     earlier_split: dict | None, earlier: dict[str, str]) -> dict:
    """Write the whole dataset into the empty folder ``stage``; records name ``out``."""
    start = time.perf_counter()
    results, where = _make_images(stage, board_list, count=count, seed=seed, config=config,
                                  image_format=image_format, workers=workers,
                                  progress=progress, engine=engine)
    seconds = time.perf_counter() - start
    tally = _tally(results, board_list)
    tally.template_rows += _copy_templates(stage, tally.used)
    samples = pd.DataFrame(sorted(tally.template_rows, key=lambda r: r["path"])
                           + tally.tested_rows)
    samples["split"] = ""
    samples = apply_previous_splits(samples, earlier)
    labels = pd.DataFrame(tally.label_rows) if tally.label_rows else None
    samples, labels = with_defaults(samples, labels)
    info = DatasetInfo(
        # Every registered class, so a class added to the registry is a valid label.
        classes=class_names(), px_per_mm=config.px_per_mm, image_root=".",
        split=earlier_split,
        provenance=[{"step": "synth", "boards": str(boards), "count": count, "seed": seed,
                     "image_format": image_format, "config": config.model_dump(mode="json"),
                     "pcbforge_version": __version__}],
    )
    save(Dataset(stage, samples, labels, info))
    report = {
        "dataset": str(out), "boards": str(boards), "boards_found": len(board_list),
        "boards_used": len(tally.drawn), "images": len(tally.tested_rows),
        "requested_images": count, "failed_images": tally.failed,
        "defects": dict(sorted(tally.placed.items())),
        "defects_total": int(sum(tally.placed.values())), "defects_requested": tally.requested,
        "dropped": dict(sorted(tally.dropped.items())), "redrawn": tally.redrawn,
        "defect_free_images": tally.defect_free,
        "nuisance_regions": int(sum(len(json.loads(r["nuisance_regions"]))
                                    for r in tally.tested_rows)),
        "binary_boards": int(sum(1 for r in results if r.get("binary"))),
        # Images drawn on a board that carried its copper layout (a procedural colour
        # board): its copper was known, not guessed from the colours.
        "layout_images": int(sum(1 for r in results if r.get("layout"))),
        "seconds": round(seconds, 3),
        "images_per_second": round(len(tally.tested_rows) / seconds, 2) if seconds > 0 else None,
        "seed": seed, "config": config.model_dump(mode="json"), "engine": where,
    }
    write_json(stage / REPORT_JSON, report)
    return report


def _make_images(stage: Path, board_list: list[Board], *, count: int, seed: int,
                 config: SynthConfig, image_format: str, workers: int, progress: bool,
                 engine: Engine | None) -> tuple[list[dict], dict]:
    """Every image's :func:`synth_one` result, in index order, and where they were made."""
    config_json = config.model_dump_json()
    # Grouped by board, so a worker reads and analyses each board once (see
    # _analysed_board); the seeds follow the image index, so the order changes no byte.
    order = sorted(range(count), key=lambda i: (i % len(board_list), i))
    tasks = [(i, board_list[i % len(board_list)].file, str(stage), seed, config_json,
              image_format) for i in order]
    results = []
    with progress_bar(progress, "synth", count) as advance, \
            nullcontext(engine) if engine else LocalEngine(workers, preload=WORKER_MODULES) as run:
        where = run.describe()
        for result in run.map(synth_one, tasks, on_crash=_synth_crashed):
            results.append(result)
            advance()
    results.sort(key=lambda r: r["index"])
    return results, where


@dataclass
class _Tally:
    """The rows and counts of one run's results."""

    tested_rows: list[dict] = field(default_factory=list)
    template_rows: list[dict] = field(default_factory=list)
    label_rows: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    placed: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    redrawn: int = 0
    requested: int = 0
    defect_free: int = 0
    #: Boards copied as a template (drawn on un-etched, unmoved), by board index.
    used: dict[int, Board] = field(default_factory=dict)
    #: Indexes of the boards drawn on at all.
    drawn: set[int] = field(default_factory=set)


def _tally(results: list[dict], board_list: list[Board]) -> _Tally:
    """Sample, template and label rows and the counts of every image's result."""
    tally = _Tally()
    for result in results:
        board = board_list[result["index"] % len(board_list)]
        if "error" in result:
            tally.failed.append({"index": result["index"], "board": board.file,
                                 "reason": result["error"]})
            continue
        sample_id = sample_id_for(result["path"], "synth")
        tally.drawn.add(result["index"] % len(board_list))
        if result["template"]:
            tally.template_rows.append(_template_row(result["template"], board, result["width"],
                                                     result["height"], result["template_sha256"]))
        else:
            tally.used[result["index"] % len(board_list)] = board
        tally.tested_rows.append({
            "sample_id": sample_id, "path": result["path"], "sha256": result["sha256"],
            "status": "ok", "reason": "",
            "synthetic": True, "template_path": result["template"] or board.path,
            "group": board.group,
            "role": "tested", "source": "synth", "board": board.file, "width": result["width"],
            "height": result["height"], "synth": result["synth"],
            "nuisance_regions": result["nuisance_regions"],
        })
        tally.defect_free += bool(result["defect_free"])
        for label in result["labels"]:
            tally.label_rows.append({"sample_id": sample_id, **label})
            tally.placed[label["label"]] += 1
        tally.dropped.update(result["dropped"])
        tally.redrawn += result["redrawn"]
        tally.requested += result["requested"]
    return tally


def _copy_templates(stage: Path, used: dict[int, Board]) -> list[dict]:
    """Copy each board used as it is into ``stage`` as a template; their sample rows."""
    rows = []
    for board in sorted(used.values(), key=lambda b: b.path):
        sha256 = _copy_hashed(board.file, stage / board.path)
        width, height = read_image_size(Path(board.file))  # header only: no decode
        rows.append(_template_row(board.path, board, width, height, sha256))
    return rows


def _board_one(task: tuple) -> str:
    index, out, seed, size, *style = task
    name = BOARD_NAME.format(index=index)
    _write_bytes(out, name, board_png(seed, index, size, *style))
    return name


def board_png(seed: int, index: int, size: int = 640, style: str = "binary",
              mask: str = "green", finish: str = "any") -> bytes:
    """The PNG bytes of procedural board ``index`` of ``seed``: its layout is drawn first
    from a generator seeded by ``(seed, index)``, so a ``colour`` board has the same copper
    as the ``binary`` one; its colours are drawn next from the same generator, and the
    layout travels in the PNG (:func:`~pcbforge.synth.colour.embed_layout`)."""
    from pcbforge.synth.boards import draw_layout
    from pcbforge.synth.colour import embed_layout, render_colour, sample_colour

    rng = np.random.default_rng(np.random.SeedSequence([seed, index, 0xB0A2D]))
    layout = draw_layout(rng, size)
    if style == "binary":
        return encode_image(layout.board, "png")
    if style != "colour":
        raise SynthError(f"unknown board style {style!r}; valid: binary, colour")
    board = render_colour(layout, sample_colour(rng, layout, mask=mask, finish=finish))
    return embed_layout(encode_image(board.image, "png"), board.layout)


#: The name of procedural board ``index``.
BOARD_NAME = "board_{index:06d}.png"
_BOARD_PATTERN = re.compile(r"board_\d{6}\.png")


def _check_boards_out(out: Path) -> None:
    """Refuse an ``out`` that holds anything but procedural boards: the new folder
    replaces it whole, and a user's files are never removed."""
    if not out.is_dir():
        if os.path.lexists(out):
            raise SynthError(f"--out {out} exists and is not a folder; give a new folder")
        return
    foreign = sorted(name for name in os.listdir(out) if not _BOARD_PATTERN.fullmatch(name))
    if foreign:
        raise SynthError(f"--out {out} holds files that are not procedural boards (e.g. "
                         f"{foreign[0]!r}); give a new folder or an earlier `pcbforge synth "
                         f"boards` output")


def write_boards(out: Path | str, *, count: int, seed: int = 0, size: int = 640,
                 workers: int = 1, progress: bool = True, engine: Engine | None = None,
                 style: str = "binary", mask: str = "green", finish: str = "any"
                 ) -> list[str]:
    """Write ``count`` procedural defect-free boards into the folder ``out`` as
    ``board_NNNNNN.png``; board ``i`` depends on ``(seed, i)`` (and the style options)
    only.

    ``style``: ``binary`` (binarized, DeepPCB-like tiles) or ``colour`` (the same copper,
    photographed: a ``mask`` colour (``green``, ``blue``, ``red``, ``black``, ``white``,
    or ``any``: drawn per board), a ``finish`` on pads (``enig``, ``hasl``, ``copper`` or
    ``any``), covered traces, silkscreen, holes, lighting and noise; see
    :mod:`pcbforge.synth.colour`). A colour board's PNG carries its layout and colours.

    The folder is built in a hidden stage and swapped in whole; an existing ``out`` must
    hold nothing but boards (an earlier run's), else :class:`SynthError`. ``engine``: a
    started engine to draw them on; without one, a local pool of ``workers`` processes."""
    from pcbforge.synth.colour import BOARD_STYLES, FINISHES, MASK_COLOURS, finishes_for

    if count < 1:
        raise SynthError(f"count must be >= 1, got {count}")
    if size < 64:
        raise SynthError(f"size must be >= 64, got {size}")
    if style not in BOARD_STYLES:
        raise SynthError(f"unknown board style {style!r}; valid: {', '.join(BOARD_STYLES)}")
    if mask != "any" and mask not in MASK_COLOURS:
        raise SynthError(f"unknown mask colour {mask!r}; valid: any, "
                         f"{', '.join(MASK_COLOURS)}")
    if finish != "any" and finish not in FINISHES:
        raise SynthError(f"unknown finish {finish!r}; valid: any, {', '.join(FINISHES)}")
    if mask != "any" and finish != "any" and finish not in finishes_for(mask):
        raise SynthError(f"a {finish} finish cannot be told from a {mask} mask's colours; "
                         f"on {mask}: {', '.join(finishes_for(mask))}")
    out = Path(out)
    _check_boards_out(out)
    with staged_output(out, command="synth boards") as stage:
        _check_boards_out(out)
        extra = () if style == "binary" else (style, mask, finish)
        tasks = [(i, str(stage), seed, size, *extra) for i in range(count)]
        names = []
        with progress_bar(progress, "boards", count) as advance, \
                nullcontext(engine) if engine is not None \
                else LocalEngine(workers, preload=("numpy", "cv2")) as run:
            for name in run.map(_board_one, tasks):
                names.append(name)
                advance()
    return names
