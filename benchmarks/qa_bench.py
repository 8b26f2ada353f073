"""Does ``pcbforge qa`` find planted label and registration errors, on any DeepPCB folder?

    python benchmarks/qa_bench.py --data DEEPPCB_DIR [--groups G1,G2] [--pairs N]
        [--share 0.5] [--seed S] [--kinds moved,phantom,...] [--workers 2]
        [--gallery DIR] [--json OUT.json] [--workdir DIR]

The folder's pairs (of ``--groups`` only, at most ``--pairs`` spread evenly over the list)
are copied twice into a work folder (hard links; the source is only read): a clean copy,
and a planted copy where a seeded share of the pairs (``--share``, drawn without
replacement, at most one error a pair, the kinds in equal shares) carries one error
(``pcbforge.bench.planting``):

- ``moved``: a box moved 60-300 px to where template and tested image agree;
- ``phantom``: a new box of a random class, the size of one of the data's boxes, there too;
- ``deleted``: a box removed; ``swapped``: a box's class swapped for its opposite
  (open <-> short, spur <-> mousebite, copper <-> pin-hole);
- ``shifted``: the template shifted 2-8 px in x and y; ``rotated``: turned 0.3-1.5 degrees.

Both copies are imported with pcbforge's DeepPCB importer and checked by ``run_qa``. A
planted error is found when a finding of its kind matches it: ``misplaced_box`` on the
moved box (IoU > 0.5; an ``empty_box`` there is "found, wrong kind"), ``empty_box`` on
the phantom, ``missing_label`` proposing a box (action ``add``) on the deleted box (IoU > 0.1 or a
centre inside; its notes that propose nothing, such as a displaced feature, are "found,
wrong kind" there and left out of its precision),
``class_suspect`` on the swapped box, ``misregistered`` (findings or
``qa_registration.parquet``) on the shifted or rotated pair. Precision per kind: among
the findings of that kind, those on a planted error of this kind are true; those on a
planted error of another kind count neither way; the others are false, and "new" when
the clean copy has no such finding (same sample, kind and region, IoU > 0.5). "Proposal
right": the moved box's proposed box on its original place, the deleted box's proposed
box on it, the swapped box's proposed class the original one, the phantom's action
``delete``; for the template kinds, the measured shift within 0.5 px and rotation
within 0.1 degree of the planted one (planted copy minus clean copy, per pair).

Acceptance: recall >= 0.95 at precision (new) >= 0.90 for every kind. Also printed:
qa's wall time and pairs/s on the clean copy, against decoding both images of every pair
in as many processes (measured in the same run), and the count of every finding kind there
(what qa says about unmodified data). ``--gallery DIR`` writes qa's crops (tested | registered
template | difference, the finding's box red, its proposed box green) of up to 20 seeded random
findings per kind and detail of the clean copy, and ``index.md`` listing them for a person
to judge.
``--json`` writes every number, the truth and the misses.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pcbforge.bench.planting import (  # noqa: E402
    FINDING_FOR,
    PLANT_KINDS,
    ROTATION_RIGHT_DEG,
    SHIFT_RIGHT_PX,
    copy_layout,
    layout_pairs,
    plant_kind,
    registration_errors,
    score_findings,
    select_pairs,
    with_registration_flags,
    write_planted_copy,
)
from pcbforge.datasets.qa_tables import (  # noqa: E402
    KINDS,
    QA_PARQUET,
    REGISTRATION_PARQUET,
    empty_findings,
)
from pcbforge.qa.crops import render_crop  # noqa: E402

RECALL_TARGET = 0.95
PRECISION_TARGET = 0.90
GALLERY_PER_KIND = 20
#: Misses listed per kind on the console (all of them go into the JSON).
MISSES_SHOWN = 5


# --- running qa -----------------------------------------------------------------------------

def import_copy(src: Path, out: Path, workers: int) -> None:
    from pcbforge.curate import CurateParams
    from pcbforge.pipeline.ingest import import_deeppcb

    import_deeppcb(src, out, CurateParams(workers=workers))


def run_qa_timed(dataset: Path, workers: int) -> tuple[dict, float]:
    from pcbforge.qa.runner import run_qa

    start = time.perf_counter()
    summary = run_qa(dataset, dataset, workers=workers)
    return summary, time.perf_counter() - start


def _decode_pair(paths: tuple[str, str]) -> int:
    return sum(int(cv2.imread(path, cv2.IMREAD_GRAYSCALE) is not None) for path in paths)


def decode_only_timed(dataset: Path, workers: int) -> float:
    """Seconds to decode every tested image and its template once, in ``workers``
    processes: the floor any pair check stands on."""
    from concurrent.futures import ProcessPoolExecutor

    from pcbforge.datasets.dataset import load

    loaded = load(dataset)
    samples = loaded.samples
    paired = samples[samples["template_path"].fillna("").astype(str) != ""]
    pairs = [(str(loaded.image_path(p)), str(loaded.image_path(t)))
             for p, t in zip(paired["path"], paired["template_path"], strict=True)]
    start = time.perf_counter()
    with ProcessPoolExecutor(max(workers, 1)) as pool:
        decoded = sum(pool.map(_decode_pair, pairs, chunksize=16))
    elapsed = time.perf_counter() - start
    if decoded != 2 * len(pairs):
        print(f"decode-only: {2 * len(pairs) - decoded} images did not decode",
              file=sys.stderr)
    return elapsed


def read_outputs(dataset: Path) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    findings = pd.read_parquet(dataset / QA_PARQUET) if (dataset / QA_PARQUET).is_file() \
        else empty_findings()
    registration = pd.read_parquet(dataset / REGISTRATION_PARQUET) \
        if (dataset / REGISTRATION_PARQUET).is_file() else None
    return findings, registration


def sample_ids(dataset: Path) -> dict[str, str]:
    """Tested image path (relative to the copy) -> its sample id."""
    samples = pd.read_parquet(dataset / "samples.parquet", columns=["path", "sample_id"])
    return dict(zip(samples["path"], samples["sample_id"], strict=True))


# --- printing -------------------------------------------------------------------------------

def _fmt(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.{digits}f}"


def proposal_cell(kind: str, score: dict, registration: dict) -> str:
    if kind in ("shifted", "rotated"):
        reg = registration.get(kind)
        if not reg:
            return "n/a"
        return f"{reg['measured_right']}/{reg['n']} ({_fmt(reg['measured_right'] / reg['n'], 2)})"
    if not score["found"]:
        return "n/a"
    return f"{score['proposal_right']}/{score['found']} " \
           f"({_fmt(score['proposal_right'] / score['found'], 2)})"


def main_table(scores: dict, registration: dict) -> list[str]:
    lines = ["| planted kind | planted | found | recall | precision (new) | precision (raw) "
             "| proposal right |", "|---|---|---|---|---|---|---|"]
    for kind, s in scores.items():
        found = str(s["found"])
        if s["found_wrong_kind"]:
            found += f" (+{s['found_wrong_kind']} wrong kind)"
        lines.append(f"| {kind} | {s['planted']} | {found} | {_fmt(s['recall'])} | "
                     f"{_fmt(s['precision_new'])} | {_fmt(s['precision_raw'])} | "
                     f"{proposal_cell(kind, s, registration)} |")
    return lines


def breakdown_table(scores: dict) -> list[str]:
    lines = ["| planted kind | finding kind | true | false, new | of them on planted pairs "
             "| false, on clean too | on another planted error | found on clean too |",
             "|---|---|---|---|---|---|---|---|"]
    for kind, s in scores.items():
        lines.append(f"| {kind} | {', '.join(FINDING_FOR[plant_kind(kind)])} | "
                     f"{s['true_positives']} | {s['false_positives_new']} | "
                     f"{s['fp_on_planted_pairs']} | {s['false_positives_known']} | "
                     f"{s['matched_other_kind']} | {s['found_on_clean_too']} |")
    return lines


def registration_table(errors: dict) -> list[str]:
    lines = ["| planted kind | pairs | shift error p50 / p95 px | rotation error p50 / p95 deg "
             f"| within {SHIFT_RIGHT_PX} px and {ROTATION_RIGHT_DEG} deg |",
             "|---|---|---|---|---|"]
    for kind, e in errors.items():
        lines.append(f"| {kind} | {e['n']} | {_fmt(e['shift_error_px_p50'], 2)} / "
                     f"{_fmt(e['shift_error_px_p95'], 2)} | "
                     f"{_fmt(e['rotation_error_deg_p50'], 3)} / "
                     f"{_fmt(e['rotation_error_deg_p95'], 3)} | {e['measured_right']} |")
    return lines


def clean_table(findings: pd.DataFrame, pairs: int) -> list[str]:
    lines = ["| finding kind | findings | pairs | share of pairs | details |",
             "|---|---|---|---|---|"]
    for kind in KINDS:
        rows = findings[findings["kind"] == kind]
        details = ", ".join(f"{d or '-'} {n}" for d, n in
                            Counter(rows["detail"].fillna("")).most_common())
        n_pairs = rows["sample_id"].nunique()
        lines.append(f"| {kind} | {len(rows)} | {n_pairs} | {_fmt(n_pairs / max(pairs, 1))} "
                     f"| {details} |")
    n_pairs = findings["sample_id"].nunique()
    lines.append(f"| any | {len(findings)} | {n_pairs} | {_fmt(n_pairs / max(pairs, 1))} | |")
    return lines


def verdict(scores: dict) -> list[str]:
    out = []
    for kind, s in scores.items():
        ok = (s["recall"] >= RECALL_TARGET and not math.isnan(s["precision_new"])
              and s["precision_new"] >= PRECISION_TARGET)
        out.append(f"{kind}: {'pass' if ok else 'FAIL'} (recall {_fmt(s['recall'])}, "
                   f"precision new {_fmt(s['precision_new'])})")
    return out


#: What is kept of each finding on a missed pair.
_SAID = ("kind", "detail", "reason", "x1", "y1", "x2", "y2", "label", "action",
         "proposed_label", "px1", "py1", "px2", "py2")


def _said(f: dict) -> str:
    text = f"{f['kind']}/{f['detail']} [{f['x1']},{f['y1']},{f['x2']},{f['y2']}]"
    if f.get("action") not in (None, "", "none"):
        text += f" -> {f['action']} {f.get('proposed_label') or ''}".rstrip()
        if f.get("px1") is not None:
            text += f" [{f['px1']},{f['py1']},{f['px2']},{f['py2']}]"
    return f"{text} {f['reason']}"


def describe_misses(scores: dict, truth: list[dict], planted: pd.DataFrame,
                    key: str = "missed") -> dict[str, list[dict]]:
    """Per kind, each plant of ``scores[kind][key]`` (the missed ones, or those found with
    a wrong proposal) with what qa said on that pair."""
    by_pair = {t["pair"]: t for t in truth if t.get("status") == "planted"}
    out: dict[str, list[dict]] = {}
    for kind, s in scores.items():
        rows = []
        for pair in s[key]:
            plant = by_pair[pair]
            said = planted[planted["sample_id"] == plant["sample_id"]]
            rows.append({
                "pair": pair, "sample_id": plant["sample_id"],
                "before": plant.get("before"), "after": plant.get("after"),
                "label": plant.get("label"), "new_label": plant.get("new_label"),
                "shift": plant.get("shift"), "rotation_deg": plant.get("rotation_deg"),
                "qa_said": [{k: (None if isinstance(v, float) and math.isnan(v) else v)
                             for k, v in r.items() if k in _SAID}
                            for r in said.to_dict("records")],
            })
        out[kind] = rows
    return out


def print_misses(misses: dict[str, list[dict]], what: str = "missed",
                 limit: int = MISSES_SHOWN) -> None:
    for kind, rows in misses.items():
        if not rows:
            continue
        print(f"\n{what} {kind} ({len(rows)}; first {min(limit, len(rows))}):")
        for row in rows[:limit]:
            where = {k: row[k] for k in ("before", "after", "label", "new_label", "shift",
                                         "rotation_deg") if row[k] not in (None, "")}
            said = "; ".join(_said(f) for f in row["qa_said"]) or "nothing"
            print(f"- {row['pair']} {where}: qa said {said}")


def print_false_positives(scores: dict, limit: int = MISSES_SHOWN) -> None:
    for kind, s in scores.items():
        rows = s["false_positives"]
        if not rows:
            continue
        print(f"\nnew false positives for {kind} ({len(rows)}; first {min(limit, len(rows))}):")
        for f in rows[:limit]:
            on = f" (pair planted {f['planted_kind']})" if f["planted_kind"] else ""
            print(f"- {f['sample_id']}{on}: {f['kind']}/{f['detail']} "
                  f"[{f['x1']},{f['y1']},{f['x2']},{f['y2']}] {f['reason']}")


# --- gallery --------------------------------------------------------------------------------

def _box(finding: dict, prefix: str = "") -> tuple[int, int, int, int] | None:
    keys = ("px1", "py1", "px2", "py2") if prefix else ("x1", "y1", "x2", "y2")
    values = [finding.get(k) for k in keys]
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values):
        return None
    return tuple(int(round(float(v))) for v in values)


def write_gallery(out: Path, dataset: Path, findings: pd.DataFrame, seed: int,
                  per_kind: int = GALLERY_PER_KIND) -> int:
    """Crops of up to ``per_kind`` seeded random findings per kind and detail (a kind's
    details differ in meaning: ``missing_label`` holds claims and notes), and
    ``index.md``."""
    from pcbforge.datasets.dataset import load

    loaded = load(dataset)
    samples = loaded.samples.set_index("sample_id")
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = ["# qa findings on the unmodified copy", "",
             "Each crop (qa's own, as in report.html): tested | registered template | "
             "difference (red: copper added, blue: removed, grey: thin changes qa forgives); "
             "red box: the finding's region, green: the proposed box.", ""]
    written = 0
    details = findings["detail"].fillna("").astype(str)
    for kind, detail in sorted({(k, d) for k, d in zip(findings["kind"], details,
                                                       strict=True)},
                               key=lambda kd: (KINDS.index(kd[0]), kd[1])):
        rows = findings[(findings["kind"] == kind) & (details == detail)] \
            .sort_values("finding_id")
        pick = rng.choice(len(rows), size=min(per_kind, len(rows)), replace=False)
        lines += [f"## {kind} / {detail or '-'} ({len(pick)} of {len(rows)})", "",
                  "| crop | finding_id | sample | pair | detail | reason | proposal |",
                  "|---|---|---|---|---|---|---|"]
        for finding in rows.iloc[np.sort(pick)].to_dict("records"):
            sample = samples.loc[finding["sample_id"]]
            template = str(sample["template_path"] or "")
            crop = render_crop(str(loaded.image_path(sample["path"])),
                               str(loaded.image_path(template)) if template else "", finding)
            name = f"{kind}/{finding['finding_id']}.png"
            if crop is not None:
                (out / kind).mkdir(exist_ok=True)
                cv2.imwrite(str(out / name), crop)
                cell = f"![]({name})"
                written += 1
            else:
                cell = "(unreadable)"
            proposal = " ".join(str(v) for v in (finding["action"], finding["proposed_label"],
                                                 _box(finding, "p") or "") if v)
            reason = str(finding["reason"]).replace("|", "/")
            lines.append(f"| {cell} | {finding['finding_id']} | {finding['sample_id']} | "
                         f"{sample['path']} | {finding['detail']} | {reason} | {proposal} |")
        lines.append("")
    (out / "index.md").write_text("\n".join(lines), encoding="utf-8")
    return written


# --- main -----------------------------------------------------------------------------------

def _clean_json(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean_json(v) for v in value]
    if isinstance(value, np.generic):
        return _clean_json(value.item())
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True,
                        help="a folder in DeepPCB layout (only read)")
    parser.add_argument("--groups", default="",
                        help="comma-separated DeepPCB groups to keep (default: all)")
    parser.add_argument("--pairs", type=int, default=0,
                        help="at most N pairs, spread evenly over the list (0: all)")
    parser.add_argument("--share", type=float, default=0.5,
                        help="share of the pairs that get a planted error")
    parser.add_argument("--kinds", default=",".join(k.value for k in PLANT_KINDS),
                        help="comma-separated plant kinds, in equal shares")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--gallery", type=Path, default=None,
                        help="write crops of the clean copy's findings and index.md here")
    parser.add_argument("--json", type=Path, default=None, help="write every number here")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the copies and datasets here (default: a temporary "
                             "folder, removed at the end)")
    args = parser.parse_args(argv)
    try:
        kinds = tuple(plant_kind(k.strip()) for k in args.kinds.split(",") if k.strip())
    except ValueError as err:
        parser.error(str(err))
    groups = {g.strip() for g in args.groups.split(",") if g.strip()} or None
    pairs = select_pairs(layout_pairs(args.data, groups), args.pairs)
    if not pairs:
        print(f"no template/tested/label triples under {args.data}", file=sys.stderr)
        return 1
    work = args.workdir or Path(tempfile.mkdtemp(prefix="qa_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        return _run(args, kinds, pairs, work)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


def _run(args, kinds: tuple, pairs: list[str], work: Path) -> int:
    started = time.perf_counter()
    clean_src, planted_src = work / "clean-src", work / "planted-src"
    for folder in (clean_src, planted_src, work / "clean", work / "planted"):
        shutil.rmtree(folder, ignore_errors=True)
    copy_layout(args.data, clean_src, pairs)
    truth = write_planted_copy(args.data, planted_src, pairs, seed=args.seed,
                               share=args.share, kinds=kinds)
    import_copy(clean_src, work / "clean", args.workers)
    import_copy(planted_src, work / "planted", args.workers)
    ids = sample_ids(work / "planted")
    for record in truth:
        record["sample_id"] = ids.get(record["tested_path"], "")
    decode_s = decode_only_timed(work / "clean", args.workers)
    clean_summary, clean_s = run_qa_timed(work / "clean", args.workers)
    _, planted_s = run_qa_timed(work / "planted", args.workers)
    clean_findings, clean_registration = read_outputs(work / "clean")
    planted_findings, planted_registration = read_outputs(work / "planted")
    clean_all = with_registration_flags(clean_findings, clean_registration)
    planted_all = with_registration_flags(planted_findings, planted_registration)
    scores = score_findings(truth, planted_all, clean_all, kinds)
    errors = registration_errors(truth, planted_registration, clean_registration)
    misses = describe_misses(scores, truth, planted_all)
    wrong_proposals = describe_misses(scores, truth, planted_all, "proposal_wrong")
    skipped = Counter((t["kind"], t["why"]) for t in truth if t["status"] != "planted")

    n = len(pairs)
    planted_n = sum(t["status"] == "planted" for t in truth)
    print(f"pairs: {n} from {args.data}"
          + (f" (groups {args.groups})" if args.groups else "")
          + f"; planted {planted_n} (share {args.share}, seed {args.seed}), skipped "
          f"{len(truth) - planted_n}" + "".join(f"; {k} skipped {c}: {w}"
                                                for (k, w), c in sorted(skipped.items())))
    print(f"decode-only (both images of every pair, {args.workers} workers): "
          f"{decode_s:.1f} s; qa / decode-only time: {clean_s / decode_s:.1f}x")
    print(f"qa on the clean copy: {clean_s:.1f} s, {n / clean_s:.1f} pairs/s "
          f"({args.workers} workers); on the planted copy: {planted_s:.1f} s")
    print()
    print("\n".join(main_table(scores, errors)))
    print()
    print("\n".join(verdict(scores)))
    print("\nwhere the findings of each kind fall on the planted copy:")
    print("\n".join(breakdown_table(scores)))
    if errors:
        print("\nregistration measured (planted copy minus clean copy) against the planted "
              "shift or rotation:")
        print("\n".join(registration_table(errors)))
    print(f"\nunmodified data (the clean copy, {n} pairs): findings per kind")
    print("\n".join(clean_table(clean_all, n)))
    print_misses(misses)
    print_misses(wrong_proposals, "found with a wrong proposal:")
    print_false_positives(scores)
    gallery_written = 0
    if args.gallery:
        gallery_written = write_gallery(args.gallery, work / "clean", clean_all, args.seed)
        print(f"\ngallery: {gallery_written} crops and index.md in {args.gallery}")
    total_s = time.perf_counter() - started
    print(f"\nbenchmark wall time: {total_s:.1f} s")
    if args.json:
        payload = {
            "data": str(args.data), "groups": args.groups, "pairs": n, "share": args.share,
            "seed": args.seed, "kinds": [k.value for k in kinds], "workers": args.workers,
            "qa_clean_s": clean_s, "qa_planted_s": planted_s, "decode_only_s": decode_s,
            "qa_clean_pairs_per_s": n / clean_s, "benchmark_s": total_s,
            "scores": scores, "registration": errors,
            "clean_counts": {k: int((clean_all["kind"] == k).sum()) for k in KINDS},
            "clean_summary": clean_summary, "misses": misses,
            "proposal_wrong": wrong_proposals, "truth": truth,
            "gallery_crops": gallery_written,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(_clean_json(payload), indent=1, default=str) + "\n",
                             encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
