"""``pcbforge export``: a dataset's usable samples written in another format, per split."""

from __future__ import annotations

from pathlib import Path

from pcbforge.core.files import write_bytes, write_json
from pcbforge.core.output import staged_output
from pcbforge.datasets.dataset import load

EXPORT_FORMATS = ("coco", "yolo", "voc", "deeppcb")


def export_dataset(
    dataset_path: Path | str,
    fmt: str,
    out: Path | str,
    *,
    include_status: tuple[str, ...] = ("ok",),
) -> dict:
    """Write a dataset's samples of the given statuses in ``fmt``, per split.

    COCO and VOC get one folder per split (``all`` when nothing is split);
    YOLO one folder with ``images/<split>`` and a ``data.yaml`` naming every
    split; DeepPCB one layout with ``trainval.txt``/``test.txt``. The export,
    ``export_report.json`` included, is built in a hidden stage and swapped into
    place (:func:`pcbforge.core.staged_output`); an earlier export in ``out`` is
    replaced, any other non-empty folder refused.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is a file")
    if out.is_dir() and any(out.iterdir()) and not (out / EXPORT_REPORT).is_file():
        raise ValueError(f"--out {out} exists, is not empty and is not a pcbforge export; "
                         "refusing to replace it")
    dataset = load(dataset_path, check_files=True)
    rows = dataset.samples[dataset.samples["status"].isin(include_status)]
    labels = dataset.labels[dataset.labels["sample_id"].isin(rows["sample_id"])]
    splits = sorted(set(rows["split"]) - {""}) or [""]
    counts: dict[str, dict[str, int]] = {}
    with staged_output(out, command="export") as stage:
        if fmt == "deeppcb":
            from pcbforge.datasets.deeppcb import save_deeppcb

            counts["all"] = save_deeppcb(rows, labels, dataset.image_root, stage)
        else:
            for split in splits:
                part = rows if split == "" else rows[rows["split"] == split]
                part_labels = labels[labels["sample_id"].isin(part["sample_id"])]
                _save_split(fmt, part, part_labels, dataset, stage, split)
                counts[split or "all"] = {"images": len(part), "boxes": len(part_labels)}
        if fmt == "yolo":
            _point_yolo_yaml_at(stage, out.resolve())
        report = {"command": "export", "format": fmt, "dataset": str(dataset_path),
                  "out": str(out), "include_status": list(include_status), "splits": counts}
        write_json(stage / EXPORT_REPORT, report)
    return report


#: The report an export writes into its folder; it also marks the folder as an export.
EXPORT_REPORT = "export_report.json"


def _save_split(fmt, samples, labels, dataset, stage: Path, split: str) -> None:
    classes, root = dataset.info.classes, dataset.image_root
    if fmt == "coco":
        from pcbforge.datasets.coco import save_coco

        save_coco(samples, labels, classes, root, stage / (split or "all"))
    elif fmt == "voc":
        from pcbforge.datasets.voc import save_voc

        save_voc(samples, labels, classes, root, stage / (split or "all"))
    else:
        from pcbforge.datasets.yolo import save_yolo

        save_yolo(samples, labels, classes, root, stage, split=split or "train")


def _point_yolo_yaml_at(stage: Path, final: Path) -> None:
    """The YOLO config in ``stage`` names the stage as its absolute ``path``: point it at
    ``final``, the folder the stage becomes (Ultralytics resolves a relative path
    elsewhere), before the swap."""
    import yaml

    from pcbforge.datasets.yolo import YAML_NAMES

    for name in YAML_NAMES:
        config_path = stage / name
        if config_path.is_file():
            config = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
            config["path"] = str(final)
            text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
            write_bytes(config_path, text.encode("utf-8"))
