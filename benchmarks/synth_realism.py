"""Do synthetic defects look and behave like real ones? Measured on any DeepPCB-layout folder.

    python benchmarks/synth_realism.py DEEPPCB_DIR [--groups group44000,group50600]
        [--template-groups G1,G2] [--synth-per-pair K] [--limit N] [--seed S]
        [--json PATH]
    python benchmarks/synth_realism.py --colour-boards N [--synth-per-board K]
        [--mask any] [--finish any] [--seed S] [--json PATH]

For the real pairs of the folder (or of the listed groups only: hold out whole
groups) it measures each labelled box: topology rule passed, changed pixels and
tight size. It then runs ``pcbforge synth`` on the same folder's *templates*
(through the pipeline, into a temporary dataset) and measures every generated
box the same way, from the written image pair only:

- topology pass rate per class (``pcbforge.synth.topology.check_topology``);
- median changed pixels and median tight size, as ratios to the real medians;
- boxes that do not hold their whole defect: any difference outside all boxes
  thicker than 2 px (survives a 3x3 opening) is counted, per image;
- overlapping boxes;
- shape statistics (``pcbforge.bench.shapes``: area, longest side, circularity,
  solidity, fragments, boundary roughness of the significant change in each box)
  per class and statistic: real median, synthetic median, their ratio, the
  two-sample KS distance and pass/fail against the stated tolerances (median
  ratio in [0.85, 1.15], KS <= 0.2), with a one-line verdict per class.

Differences outside every box in regions the synthetic dataset records as
background nuisance (samples column ``nuisance_regions``, when it has one) are
not counted. ``--template-groups`` draws the synthetic defects on other groups'
templates than the real defects come from (default: the same groups);
``--synth-per-pair`` draws that many synthetic images per real pair (more
synthetic defects: less noise in the KS distance).

Changed pixels are the template/tested difference inside the box after a 3x3
opening (edge bands from misregistration, at most 2 px thick, are left out);
tight size is the larger side of their extent. On DeepPCB train/val these
medians come within 15% of the reference table below.

``--colour-boards N`` needs no DeepPCB folder: it draws ``N`` procedural boards twice
with one seed, ``binary`` and ``colour`` (the same copper layout), runs ``pcbforge
synth`` on each set (``--synth-per-board`` images per board, the same seed) and checks
every label of both the same way, from the written pair: the copper of a binary pair at
128, of a colour pair as the board's layout gives it (template) and its palette reads it
(tested image, :meth:`pcbforge.synth.colour.ColourLayout.copper_of`). Per class: labels
placed and dropped, topology pass rate, boxes overlapping, images with a difference
thicker than 2 px outside every box and recorded nuisance region, and on colour boards
the colour family: the share of each defect's inner pixels (its mask, one pixel in) that
the palette reads as the class's side (copper for a short, spur or spurious copper;
not copper for an open, mousebite or pin-hole). ``--without-layout`` (with one
``--mask``) also runs synth on the same colour boards written without their layout, as a
user's own colour photographs come (``copper`` light, dark on a white mask), and checks
those labels against the layouts the boards had.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pcbforge.bench.shapes import (  # noqa: E402
    KS_MAX,
    MEDIAN_RATIO,
    STATS,
    compare,
    pair_shape_stats,
    verdicts,
)
from pcbforge.datasets.deeppcb import DEEPPCB_CLASSES, deeppcb_pairs  # noqa: E402
from pcbforge.synth.topology import check_topology  # noqa: E402

_KERNEL3 = np.ones((3, 3), np.uint8)

#: Reference medians of DeepPCB train/val: changed px, tight size.
TABLE = {"open": (107, 19), "short": (147, 23), "mousebite": (74, 15), "spur": (83, 14),
         "copper": (170, 20), "pin-hole": (112, 18)}


def copper(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    return (image < 128).astype(np.uint8)


def measure(before: np.ndarray, after: np.ndarray, box) -> tuple[bool, int, int]:
    x1, y1, x2, y2, name = box
    b, a = before[y1:y2, x1:x2], after[y1:y2, x1:x2]
    ok, _ = check_topology(name, b, a)
    change = cv2.morphologyEx((b != a).astype(np.uint8), cv2.MORPH_OPEN, _KERNEL3)
    if change.any():
        ys, xs = np.nonzero(change)
        size = int(max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1))
    else:
        size = 0
    return ok, int(change.sum()), size


def outside_thick(before: np.ndarray, after: np.ndarray, boxes, nuisance=()) -> int:
    """Pixels of difference outside every box (and every recorded nuisance region's box,
    ``nuisance``: ``[x1, y1, x2, y2]`` each) that are more than 2 px thick."""
    diff = (before != after).astype(np.uint8)
    for x1, y1, x2, y2 in [b[:4] for b in boxes] + [list(n)[:4] for n in nuisance]:
        diff[max(int(y1), 0):int(y2), max(int(x1), 0):int(x2)] = 0
    return int(cv2.morphologyEx(diff, cv2.MORPH_OPEN, _KERNEL3).sum())


def summarise(rows: dict[str, list]) -> dict[str, dict]:
    out = {}
    for name in DEEPPCB_CLASSES:
        values = rows.get(name, [])
        if not values:
            continue
        arr = np.array(values, dtype=np.float64)
        out[name] = {"n": len(arr), "pass": float(arr[:, 0].mean()),
                     "changed_px": float(np.median(arr[:, 1])), "size": float(np.median(arr[:, 2])),
                     "size_p5_p95": [float(v) for v in np.percentile(arr[:, 2], [5, 95])]}
    return out


def nuisance_boxes(row) -> list:
    """The boxes of the regions a synthetic sample records as background nuisance (its
    ``nuisance_regions`` column: a JSON list of ``{"kind": ..., "box": [x1, y1, x2, y2]}``);
    none when the dataset has no such column."""
    value = getattr(row, "nuisance_regions", None)
    if value is None or (isinstance(value, float) and np.isnan(value)) or value == "":
        return []
    regions = json.loads(value) if isinstance(value, str) else value
    return [region["box"] for region in regions if region.get("box")]


def shape_table(real_rows: list[dict], synth_rows: list[dict]):
    """The comparison of :func:`pcbforge.bench.shapes.compare` in DeepPCB's class order."""
    import pandas as pd

    columns = ["label", *STATS]
    table = compare(pd.DataFrame(real_rows, columns=columns),
                    pd.DataFrame(synth_rows, columns=columns))
    order = {name: i for i, name in enumerate(DEEPPCB_CLASSES)}
    table["_order"] = table["label"].map(lambda name: order.get(name, len(order)))
    return table.sort_values(["_order"], kind="stable").drop(columns="_order")


def print_shapes(table) -> None:
    print(f"shape statistics (pass: median ratio in [{MEDIAN_RATIO[0]}, {MEDIAN_RATIO[1]}], "
          f"KS <= {KS_MAX}):")
    print(f"{'class':<10} {'statistic':<11} {'real n':>6} {'syn n':>6} {'real med':>8} "
          f"{'syn med':>8} {'ratio':>6} {'KS':>5} {'pass':>5}")
    for r in table.itertuples():
        verdict = "-" if r.passed is None or r.passed != r.passed else (
            "yes" if r.passed else "NO")
        print(f"{r.label:<10} {r.stat:<11} {r.n_real:>6} {r.n_synth:>6} {r.real_median:>8.3f} "
              f"{r.synth_median:>8.3f} {r.ratio:>6.2f} {r.ks:>5.2f} {verdict:>5}")
    for name, verdict in verdicts(table).items():
        print(f"  {name:<10} {verdict}")


def _check_dataset(root: Path, colour: bool, layouts_from: Path | None = None) -> dict:
    """Every label of a synthetic dataset checked from its written pair (see the module's
    ``--colour-boards``): per class, n, topology passes, colour-family shares; overall,
    images with thick differences outside the boxes and overlapping boxes.
    ``layouts_from``: the folder of the colour boards whose layouts the templates (boards
    without their layout, of the same names) had."""
    from pcbforge.datasets.dataset import load
    from pcbforge.datasets.masks import decode_mask
    from pcbforge.synth.pipeline import read_board_and_layout
    from pcbforge.synth.registry import DEFECTS

    dataset = load(root)
    labels = dataset.labels
    per_class: dict[str, dict] = defaultdict(lambda: {"n": 0, "pass": 0, "family": []})
    outside, overlapping, images = 0, 0, 0
    layouts: dict[str, object] = {}
    tested = dataset.samples[dataset.samples["template_path"].astype(str) != ""]
    for row in tested.itertuples():
        images += 1
        template_file = dataset.image_path(row.template_path)
        if colour:
            if row.template_path not in layouts:
                source = (template_file if layouts_from is None
                          else layouts_from / Path(row.template_path).name)
                layouts[row.template_path] = read_board_and_layout(str(source))[1]
            layout = layouts[row.template_path]
            image = cv2.imread(str(dataset.image_path(row.path)), cv2.IMREAD_COLOR)
            before, after = layout.copper, layout.copper_of(image)
        else:
            before, after = copper(template_file), copper(dataset.image_path(row.path))
        mine = labels[labels["sample_id"] == row.sample_id]
        boxes = [(int(r.x1), int(r.y1), int(r.x2), int(r.y2), r.label) for r in mine.itertuples()]
        for r, box in zip(mine.itertuples(), boxes, strict=True):
            stats = per_class[box[4]]
            stats["n"] += 1
            stats["pass"] += measure(before, after, box)[0]
            if colour:
                inner = cv2.erode(decode_mask(r.mask).astype(np.uint8), _KERNEL3) > 0
                if inner.any():
                    adds = DEFECTS[box[4]].adds_copper
                    stats["family"].append(float((after[inner] == adds).mean()))
        outside += bool(outside_thick(before, after, boxes, nuisance_boxes(row)))
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                overlapping += a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
    return {"images": images, "outside": outside, "overlapping": overlapping,
            "classes": {name: {"n": v["n"], "pass": v["pass"],
                               "family_mean": (float(np.mean(v["family"])) if v["family"]
                                               else None),
                               "family_90": (float(np.mean(np.asarray(v["family"]) >= 0.9))
                                             if v["family"] else None)}
                        for name, v in per_class.items()}}


def run_colour_boards(args: argparse.Namespace) -> None:
    """``--colour-boards``: the same checks on binary and colour procedural boards of one
    layout (see the module docstring)."""
    from pcbforge.synth.pipeline import read_board_and_layout, synthesize, write_boards

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for style in ("binary", "colour"):
            boards = Path(tmp) / f"boards-{style}"
            write_boards(boards, count=args.colour_boards, seed=args.seed, size=args.size,
                         workers=args.workers, progress=False, style=style, mask=args.mask,
                         finish=args.finish)
            start = time.perf_counter()
            report = synthesize(boards, Path(tmp) / f"synth-{style}",
                                count=args.colour_boards * args.synth_per_board,
                                seed=args.seed, workers=args.workers, progress=False)
            seconds = time.perf_counter() - start
            checked = _check_dataset(Path(tmp) / f"synth-{style}", style == "colour")
            results[style] = {**checked, "seconds": round(seconds, 1),
                              "requested": report["defects_requested"],
                              "dropped": report["dropped"], "failed": len(report["failed_images"]),
                              "layout_images": report.get("layout_images", 0)}
        if args.without_layout:
            results["no layout"] = _without_layout(args, Path(tmp))
        same = all(
            np.array_equal(read_board_and_layout(str(Path(tmp) / "boards-colour" / name))[1]
                           .copper, copper(Path(tmp) / "boards-binary" / name))
            for name in sorted(p.name for p in (Path(tmp) / "boards-binary").iterdir()))
        masks = defaultdict(int)
        for path in sorted((Path(tmp) / "boards-colour").iterdir()):
            params = read_board_and_layout(str(path))[1].params
            masks[f"{params['mask']}/{params['finish']}"] += 1
    binary, colour = results["binary"], results["colour"]
    stripped = results.get("no layout")
    print(f"{args.colour_boards} procedural boards ({args.size} px, seed {args.seed}), "
          f"{args.synth_per_board} images each; colour boards: {dict(sorted(masks.items()))}")
    print(f"same copper layout in both styles: {same}")
    for style, r in results.items():
        placed = sum(v["n"] for v in r["classes"].values())
        print(f"{style}: {r['images']} images in {r['seconds']} s, {placed} "
              f"labels of {r['requested']} asked, dropped {r['dropped']}, failed images "
              f"{r['failed']}, images drawn with a layout {r['layout_images']}")
    print(f"{'class':<10} {'bin n':>6} {'bin pass':>8} {'bin drop':>8} {'col n':>6} "
          f"{'col pass':>8} {'col drop':>8} {'family':>7} {'>=0.9':>6}"
          + ("" if stripped is None else f" {'nl n':>5} {'nl pass':>7} {'nl drop':>7} "
                                         f"{'nl fam':>6}"))
    for name in DEEPPCB_CLASSES:
        b, c = binary["classes"].get(name), colour["classes"].get(name)
        if not b or not c:
            continue
        line = (f"{name:<10} {b['n']:>6} {b['pass'] / b['n']:>8.3f} "
                f"{binary['dropped'].get(name, 0):>8} {c['n']:>6} {c['pass'] / c['n']:>8.3f} "
                f"{colour['dropped'].get(name, 0):>8} {c['family_mean']:>7.3f} "
                f"{c['family_90']:>6.3f}")
        n = stripped["classes"].get(name) if stripped else None
        if n:
            line += (f" {n['n']:>5} {n['pass'] / n['n']:>7.3f} "
                     f"{stripped['dropped'].get(name, 0):>7} {n['family_mean']:>6.3f}")
        print(line)
    for style, r in results.items():
        print(f"{style}: images with a >2 px difference outside every box (and recorded "
              f"nuisance): {r['outside']} of {r['images']}; overlapping box pairs: "
              f"{r['overlapping']}")
    if args.json:
        args.json.write_text(json.dumps({"same_layout": same, "boards": dict(masks),
                                         **results}, indent=2))


def _without_layout(args: argparse.Namespace, tmp: Path) -> dict:
    """``--without-layout``: the colour boards written again without their layout (as a
    user's own colour photographs are), synthesized with ``copper`` light (dark on a white
    mask), and checked against the layouts they had."""
    from pcbforge.synth.compose import SynthConfig
    from pcbforge.synth.pipeline import synthesize

    boards = tmp / "boards-colour-no-layout"
    boards.mkdir()
    for path in sorted((tmp / "boards-colour").iterdir()):
        cv2.imwrite(str(boards / path.name), cv2.imread(str(path), cv2.IMREAD_COLOR))
    side = "dark" if args.mask == "white" else "light"
    start = time.perf_counter()
    report = synthesize(boards, tmp / "synth-no-layout",
                        count=args.colour_boards * args.synth_per_board, seed=args.seed,
                        config=SynthConfig(copper=side), workers=args.workers, progress=False)
    seconds = time.perf_counter() - start
    checked = _check_dataset(tmp / "synth-no-layout", True, layouts_from=tmp / "boards-colour")
    return {**checked, "seconds": round(seconds, 1), "copper": side,
            "requested": report["defects_requested"], "dropped": report["dropped"],
            "failed": len(report["failed_images"]),
            "layout_images": report.get("layout_images", 0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("deeppcb", type=Path, nargs="?")
    parser.add_argument("--colour-boards", type=int, default=0,
                        help="check synth on this many procedural colour boards against "
                             "the same boards binarized (no DeepPCB folder needed)")
    parser.add_argument("--synth-per-board", type=int, default=3,
                        help="--colour-boards: synthetic images per board (default 3)")
    parser.add_argument("--mask", default="any", help="--colour-boards: mask colour")
    parser.add_argument("--finish", default="any", help="--colour-boards: pad finish")
    parser.add_argument("--size", type=int, default=640, help="--colour-boards: board side")
    parser.add_argument("--without-layout", action="store_true",
                        help="--colour-boards with one --mask: also synthesize on the colour "
                             "boards stripped of their layout and check the labels against "
                             "the layouts they had")
    parser.add_argument("--groups", default="", help="comma-separated groups to use (held out)")
    parser.add_argument("--template-groups", default="",
                        help="comma-separated groups whose templates synth draws on "
                             "(default: --groups)")
    parser.add_argument("--synth-per-pair", type=float, default=1.0,
                        help="synthetic images per real pair (default 1)")
    parser.add_argument("--limit", type=int, default=0, help="at most this many pairs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    if args.colour_boards:
        if args.without_layout and args.mask == "any":
            parser.error("--without-layout needs one --mask colour (its copper side is "
                         "light, dark on white)")
        run_colour_boards(args)
        return
    if args.deeppcb is None:
        parser.error("give a DeepPCB folder, or --colour-boards N")

    groups = {g for g in args.groups.split(",") if g} or None
    pairs = deeppcb_pairs(args.deeppcb, groups)
    if args.limit:
        pairs = pairs[: args.limit]
    if not pairs:
        sys.exit(f"no DeepPCB pairs under {args.deeppcb}")

    template_groups = {g for g in args.template_groups.split(",") if g} or groups
    boards_from = (pairs if template_groups == groups
                   else deeppcb_pairs(args.deeppcb, template_groups))
    if args.limit:
        boards_from = boards_from[: args.limit]
    count = max(1, int(round(len(pairs) * args.synth_per_pair)))

    real: dict[str, list] = defaultdict(list)
    real_shapes: list[dict] = []
    for template, tested, boxes in pairs:
        before, after = copper(template), copper(tested)
        for box in boxes:
            real[box[4]].append(measure(before, after, box))
        real_shapes += pair_shape_stats(before, after, boxes)

    from pcbforge.datasets.dataset import load
    from pcbforge.synth.pipeline import synthesize

    with tempfile.TemporaryDirectory() as tmp:
        boards = Path(tmp) / "boards"
        boards.mkdir()
        for i, (template, _, _) in enumerate(boards_from):
            (boards / f"{i:05d}_{template.name}").symlink_to(template.resolve())
        start = time.perf_counter()
        report = synthesize(boards, Path(tmp) / "synth", count=count, seed=args.seed,
                   workers=args.workers, progress=False)
        seconds = time.perf_counter() - start
        dataset = load(Path(tmp) / "synth")
        labels = dataset.labels
        synth: dict[str, list] = defaultdict(list)
        synth_shapes: list[dict] = []
        outside, overlapping, images = [], 0, 0
        tested = dataset.samples[dataset.samples["template_path"].astype(str) != ""]
        for row in tested.itertuples():
            images += 1
            before = copper(dataset.image_path(row.template_path))
            after = copper(dataset.image_path(row.path))
            mine = labels[labels["sample_id"] == row.sample_id]
            boxes = [(int(r.x1), int(r.y1), int(r.x2), int(r.y2), r.label)
                     for r in mine.itertuples()]
            for box in boxes:
                synth[box[4]].append(measure(before, after, box))
            synth_shapes += pair_shape_stats(before, after, boxes)
            outside.append(outside_thick(before, after, boxes, nuisance_boxes(row)))
            for i in range(len(boxes)):
                for j in range(i + 1, len(boxes)):
                    a, b = boxes[i], boxes[j]
                    if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                        overlapping += 1

    r, s = summarise(real), summarise(synth)
    print(f"{len(pairs)} pairs from {args.deeppcb}" + (f" (groups {sorted(groups)})"
                                                       if groups else ""))
    if template_groups != groups:
        print(f"synthetic defects drawn on the templates of {sorted(template_groups or [])}")
    print(f"synth: {images} images, {len(labels)} defects in {seconds:.1f} s; "
          f"requested {report.get('defects_requested', '?')}, "
          f"redrawn spots {report.get('redrawn', '?')}, dropped {report.get('dropped', '?')}")
    print(f"{'class':<10} {'real n':>6} {'real pass':>9} {'syn n':>6} {'syn pass':>8} "
          f"{'real px':>7} {'syn px':>7} {'px ratio':>8} {'tab ratio':>9} {'real sz':>7} "
          f"{'syn sz':>6} {'sz ratio':>8} {'tab ratio':>9}")
    for name in DEEPPCB_CLASSES:
        if name not in s:
            continue
        rr, ss = r.get(name, {"n": 0, "pass": float("nan"), "changed_px": float("nan"),
                              "size": float("nan")}), s[name]
        tab_px, tab_sz = TABLE[name]
        print(f"{name:<10} {rr['n']:>6} {rr['pass']:>9.3f} {ss['n']:>6} {ss['pass']:>8.3f} "
              f"{rr['changed_px']:>7.0f} {ss['changed_px']:>7.0f} "
              f"{ss['changed_px'] / rr['changed_px']:>8.2f} {ss['changed_px'] / tab_px:>9.2f} "
              f"{rr['size']:>7.0f} {ss['size']:>6.0f} {ss['size'] / rr['size']:>8.2f} "
              f"{ss['size'] / tab_sz:>9.2f}")
    total = sum(v["n"] for v in s.values())
    passed = sum(v["n"] * v["pass"] for v in s.values())
    print(f"synthetic topology pass: {passed / max(total, 1):.4f} overall, "
          f"worst class {min(v['pass'] for v in s.values()):.4f}")
    print(f"images with a >2 px difference outside every box (and recorded nuisance): "
          f"{sum(1 for v in outside if v)} of {images}; overlapping box pairs: {overlapping}")
    shapes = shape_table(real_shapes, synth_shapes)
    print_shapes(shapes)
    if args.json:
        records = [{k: (None if isinstance(v, float) and v != v else v) for k, v in rec.items()}
                   for rec in shapes.to_dict("records")]
        args.json.write_text(json.dumps({"real": r, "synth": s, "outside": outside,
                                         "overlapping": overlapping, "shapes": records,
                                         "shape_verdicts": verdicts(shapes),
                                         "tolerances": {"median_ratio": list(MEDIAN_RATIO),
                                                        "ks_max": KS_MAX}}, indent=2))


if __name__ == "__main__":
    main()
