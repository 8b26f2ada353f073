"""``pcbforge export``: a dataset's usable samples written in another format, per split.

Any format of the registry (:data:`pcbforge.datasets.formats.FORMATS`) that can be
exported: the format writes the rows (its ``save``), this module chooses them, stages the
folder and writes the report.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pcbforge.core.files import write_json
from pcbforge.core.output import staged_output
from pcbforge.datasets.dataset import Dataset, load
from pcbforge.datasets.formats import FormatNames, LabelFormat, get_format
from pcbforge.datasets.formats_common import PAIR_TEMPLATE, PAIR_TEMPLATE_ID, TemplateMode
from pcbforge.datasets.samples import USABLE_STATUSES, template_rows

#: The formats :func:`export_dataset` writes (a live view of the registry).
EXPORT_FORMATS = FormatNames("export")
#: The report an export writes into its folder; it also marks the folder as an export.
EXPORT_REPORT = "export_report.json"


def export_dataset(
    dataset_path: Path | str,
    fmt: str,
    out: Path | str,
    *,
    include_status: tuple[str, ...] = ("ok",),
    templates: TemplateMode | str = TemplateMode.negatives,
) -> dict:
    """Write a dataset's samples of the given statuses in ``fmt``, per split.

    COCO and VOC get one folder per split (``all`` when nothing is split);
    YOLO one folder with ``images/<split>`` and a ``data.yaml`` naming every
    split; DeepPCB one layout with ``trainval.txt``/``test.txt``. The export,
    ``export_report.json`` included, is built in a hidden stage and swapped into
    place (:func:`pcbforge.core.staged_output`); an earlier export in ``out`` is
    replaced, any other non-empty folder refused.

    ``templates`` (:class:`~pcbforge.datasets.formats_common.TemplateMode`; the format
    must list it in its ``templates``): what becomes of the templates
    (:func:`~pcbforge.datasets.samples.template_rows`). ``negatives``: images without
    boxes, like any other sample of those statuses (the files are what they were before
    the option existed); ``omit``: left out; ``pair``: written beside each tested image
    that names one (COCO: ``template_file_name`` of its image entry; YOLO: a ``templates/``
    tree beside ``images/``), not as images of their own. A template is paired when its row
    has a usable status (or one of ``include_status``); a tested image whose template has
    not (a corrupt file) is still written, without it, and counted ``unpaired``.
    """
    label_format = get_format(fmt, can="export")
    mode = template_mode(templates, label_format)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is a file")
    if out.is_dir() and any(out.iterdir()) and not (out / EXPORT_REPORT).is_file():
        raise ValueError(f"--out {out} exists, is not empty and is not a pcbforge export; "
                         "refusing to replace it")
    dataset = load(dataset_path, check_files=True)
    rows = exported_rows(dataset.samples, include_status, mode)
    labels = dataset.labels[dataset.labels["sample_id"].isin(rows["sample_id"])]
    with staged_output(out, command="export") as stage:
        counts = _save_parts(label_format, rows, labels, dataset, stage)
        if label_format.finish is not None:
            label_format.finish(stage, out.resolve())
        report = {"command": "export", "format": label_format.name,
                  "dataset": str(dataset_path), "out": str(out),
                  "include_status": list(include_status), "splits": counts}
        if mode is not TemplateMode.negatives:  # the default's report keeps its bytes
            report["templates"] = mode.value
        write_json(stage / EXPORT_REPORT, report)
    return report


def template_mode(templates: TemplateMode | str, label_format: LabelFormat) -> TemplateMode:
    """``templates`` as a :class:`TemplateMode` that ``label_format`` can write; else
    ``ValueError`` saying what can be."""
    try:
        mode = TemplateMode(getattr(templates, "value", templates))
    except ValueError:
        raise ValueError(f"templates: expected one of "
                         f"{', '.join(m.value for m in TemplateMode)}, got {templates!r}"
                         ) from None
    if mode.value not in label_format.templates:
        can = [m.value for m in TemplateMode if m.value in label_format.templates]
        raise ValueError(f"a {label_format.name} export cannot write templates as "
                         f"{mode.value!r}; it can: {', '.join(can)}")
    return mode


def exported_rows(samples: pd.DataFrame, include_status: tuple[str, ...],
                  mode: TemplateMode) -> pd.DataFrame:
    """The rows an export writes: those of the statuses asked for, the templates among
    them as ``mode`` says; in ``pair`` mode with :data:`PAIR_TEMPLATE` and
    :data:`PAIR_TEMPLATE_ID` (the template of each row, "" when it has none usable)."""
    rows = samples[samples["status"].isin(include_status)]
    if mode is TemplateMode.negatives:
        return rows
    templates = template_rows(samples)
    rows = rows[~templates.loc[rows.index]]
    if mode is TemplateMode.omit:
        return rows
    usable = samples[templates & samples["status"].isin({*USABLE_STATUSES, *include_status})]
    ids = dict(zip(usable["path"].astype(str), usable["sample_id"].astype(str), strict=True))
    named = rows["template_path"].fillna("").astype(str)
    return rows.assign(**{PAIR_TEMPLATE: named.where(named.isin(set(ids)), ""),
                          PAIR_TEMPLATE_ID: named.map(ids).fillna("")})


def _save_parts(label_format: LabelFormat, rows: pd.DataFrame, labels: pd.DataFrame,
                dataset: Dataset, stage: Path) -> dict[str, dict[str, int]]:
    """Every split saved into ``stage`` (one call per split, or one for all the rows when
    the format writes the splits itself): the counts of each, by split name."""
    if not label_format.per_split:
        return {"all": _save_split(label_format, rows, labels, dataset, stage, "")}
    counts = {}
    for split in sorted(set(rows["split"]) - {""}) or [""]:
        part = rows if split == "" else rows[rows["split"] == split]
        part_labels = labels[labels["sample_id"].isin(part["sample_id"])]
        counts[split or "all"] = _save_split(label_format, part, part_labels, dataset, stage,
                                             split)
    return counts


def _save_split(label_format: LabelFormat, samples: pd.DataFrame, labels: pd.DataFrame,
                dataset: Dataset, stage: Path, split: str) -> dict[str, int]:
    return label_format.save(samples, labels, dataset.info.classes, dataset.image_root,
                             stage, split)
