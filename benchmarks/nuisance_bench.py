"""Non-defect differences of real tested images against synthetic ones (nuisance calibration).

    python benchmarks/nuisance_bench.py DATASET_DIR [--limit N] [--seed S]
                                        [--set FIELD=VALUE ...] [--groups G1,G2]
                                        [--regions-only]

DATASET_DIR is any folder in DeepPCB layout (``groupN/N/X_test.jpg``, ``X_temp.jpg`` and
``groupN/N_not/X.txt``), read by ``pcbforge.datasets.deeppcb.deeppcb_pairs``.

For every pair, outside the labelled boxes and binarized at 128, it measures the real
tested image against its template, and a synthetic tested image
``apply_nuisance(template)`` against the same template: share of differing pixels, their
ratio to template edge pixels (3x3 morphological gradient), share that is copper added,
phase-correlation shift, share of grey pixels (30 < v < 225) and the thickness of the
thickest difference band (largest n such that an n x n opening leaves something). It prints
percentiles real vs synthetic and the share of synthetic images whose 3x3-opened difference
is empty (must be 100 %). ``--set`` overrides a NuisanceParams default, for tuning.

Thick regions (background nuisance): for every real pair, the difference outside every
labelled box (boxes padded by ``BOX_PAD`` px) split into 8-connected regions; a region
counts when something of it survives a 3x3 opening. Per pair: the number of such regions;
per region: its area before and after the opening and its thickness (twice the largest
distance to its outside). The same on what ``pcbforge synth`` makes from each pair's
binarized template (``synthesize_image`` with the default SynthConfig: defects, background
and acquisition nuisance), outside the synthetic labels' boxes. Printed real vs synthetic
with the ratio (target: within 20 %). ``--groups`` keeps the pairs of those DeepPCB groups.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from pcbforge.datasets.deeppcb import deeppcb_pairs
from pcbforge.synth.analysis import analyze_board
from pcbforge.synth.compose import SynthConfig, synthesize_image
from pcbforge.synth.nuisance import NuisanceParams, apply_nuisance, sample_nuisance

PERCENTILES = (0, 5, 25, 50, 75, 95, 100)
MAX_BAND = 12
_K3 = np.ones((3, 3), np.uint8)


def outside_boxes(boxes: list, shape: tuple[int, int]) -> np.ndarray:
    """True outside every labelled box."""
    keep = np.ones(shape, bool)
    for x1, y1, x2, y2, _ in boxes:
        keep[max(y1, 0) : max(y2, 0), max(x1, 0) : max(x2, 0)] = False
    return keep


def band_thickness(diff: np.ndarray) -> int:
    """Largest n such that opening ``diff`` with an n x n square leaves a pixel (0: empty)."""
    if not diff.any():
        return 0
    n = 1
    while n < MAX_BAND and cv2.morphologyEx(diff, cv2.MORPH_OPEN, np.ones((n + 1, n + 1),
                                                                            np.uint8)).any():
        n += 1
    return n


def pair_stats(template: np.ndarray, tested: np.ndarray, keep: np.ndarray) -> dict[str, float]:
    temp_white = template >= 128
    test_white = tested >= 128
    diff = (temp_white != test_white) & keep
    n_diff = int(diff.sum())
    edge = cv2.morphologyEx(temp_white.view(np.uint8), cv2.MORPH_GRADIENT, _K3).astype(bool)
    n_edge = int((edge & keep).sum())
    (dx, dy), _ = cv2.phaseCorrelate(template.astype(np.float64), tested.astype(np.float64))
    diff_u8 = diff.view(np.uint8)
    return {
        "diff_frac": n_diff / max(int(keep.sum()), 1),
        "diff_per_edge": n_diff / max(n_edge, 1),
        "added_share": float((diff & temp_white).sum()) / n_diff if n_diff else float("nan"),
        "shift_dx": dx,
        "shift_dy": dy,
        "grey_frac": float(((tested > 30) & (tested < 225)).mean()),
        "band_px": band_thickness(diff_u8),
        "opened_empty": float(not cv2.morphologyEx(diff_u8, cv2.MORPH_OPEN, _K3).any()),
    }


#: Labelled boxes are padded by this much before the difference outside them is measured.
BOX_PAD = 6


def thick_regions(template: np.ndarray, tested: np.ndarray, boxes: list) -> dict:
    """Regions of the binarized difference outside the (padded) boxes that survive a 3x3
    opening: their count, areas before and after the opening, thicknesses."""
    keep = outside_boxes([(x1 - BOX_PAD, y1 - BOX_PAD, x2 + BOX_PAD, y2 + BOX_PAD, "")
                          for x1, y1, x2, y2, *_ in boxes], template.shape)
    diff = (((template >= 128) != (tested >= 128)) & keep).view(np.uint8)
    opened = cv2.morphologyEx(diff, cv2.MORPH_OPEN, _K3)
    _, ids, stats, _ = cv2.connectedComponentsWithStats(diff, connectivity=8)
    kept = np.unique(ids[opened > 0])
    kept = kept[kept > 0]
    areas, opened_areas, thickness = [], [], []
    for k in kept:
        x, y, w, h, area = (int(v) for v in stats[k])
        region = (ids[y:y + h, x:x + w] == k).astype(np.uint8)
        areas.append(area)
        opened_areas.append(int((opened[y:y + h, x:x + w][region > 0] > 0).sum()))
        inside = cv2.distanceTransform(cv2.copyMakeBorder(region, 1, 1, 1, 1,
                                                          cv2.BORDER_CONSTANT, value=0),
                                       cv2.DIST_L2, 5)
        thickness.append(2.0 * float(inside.max()))
    return {"count": len(kept), "area": areas, "opened_area": opened_areas,
            "thickness": thickness}


def region_table(real: list[dict], synth: list[dict]) -> list[tuple[str, float, float]]:
    """(statistic, real, synthetic) rows of the thick-region comparison."""
    def pooled(rows: list[dict], key: str) -> np.ndarray:
        return np.asarray([v for r in rows for v in r[key]], np.float64)

    def counts(rows: list[dict]) -> np.ndarray:
        return np.asarray([r["count"] for r in rows], np.float64)

    out = [("regions per pair, mean", counts(real).mean(), counts(synth).mean()),
           ("pairs with a region, share", (counts(real) > 0).mean(), (counts(synth) > 0).mean()),
           ("regions per pair, p75", np.percentile(counts(real), 75),
            np.percentile(counts(synth), 75)),
           ("regions per pair, p90", np.percentile(counts(real), 90),
            np.percentile(counts(synth), 90))]
    for key in ("area", "opened_area", "thickness"):
        a, b = pooled(real, key), pooled(synth, key)
        for q in (25, 50, 75, 90):
            out.append((f"{key} p{q}", float(np.percentile(a, q)) if len(a) else float("nan"),
                        float(np.percentile(b, q)) if len(b) else float("nan")))
    return out


def _print_regions(real: list[dict], synth: list[dict]) -> None:
    print(f"thick regions outside boxes (padded {BOX_PAD} px), {len(real)} pairs:")
    print(f"{'statistic':<30}{'real':>10}{'synth':>10}{'synth/real':>12}")
    for name, a, b in region_table(real, synth):
        ratio = b / a if a else float("nan")
        print(f"{name:<30}{a:>10.3g}{b:>10.3g}{ratio:>12.2f}")


def _override(params: NuisanceParams, assignments: list[str]) -> NuisanceParams:
    values = {}
    for item in assignments:
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects FIELD=VALUE, got {item!r}")
        values[name] = value
    return NuisanceParams.model_validate({**params.model_dump(), **values})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--limit", type=int, default=0,
                        help="use N pairs spread evenly over the list (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a NuisanceParams field")
    parser.add_argument("--background", action="append", default=[], metavar="FIELD=JSON",
                        help="override a BackgroundParams field (JSON value)")
    parser.add_argument("--groups", default="",
                        help="comma-separated DeepPCB groups to keep (default: all)")
    parser.add_argument("--regions-only", action="store_true",
                        help="print the thick-region table only")
    args = parser.parse_args(argv)
    groups = {g.strip() for g in args.groups.split(",") if g.strip()} or None
    pairs = deeppcb_pairs(args.dataset, groups)
    if not pairs:
        print(f"no template/tested pairs under {args.dataset}", file=sys.stderr)
        return 1
    if 0 < args.limit < len(pairs):
        pick = np.linspace(0, len(pairs) - 1, args.limit).round().astype(int)
        pairs = [pairs[i] for i in pick]
    params = _override(NuisanceParams(), args.set)
    rng = np.random.default_rng(args.seed)
    real: list[dict[str, float]] = []
    synth: list[dict[str, float]] = []
    seconds: list[float] = []
    real_regions: list[dict] = []
    synth_regions: list[dict] = []
    background = {name: json.loads(value) for name, _, value in
                  (item.partition("=") for item in args.background)}
    config = SynthConfig(nuisance=params, background=background)
    for index, (temp_path, test_path, boxes) in enumerate(pairs):
        template = cv2.imread(str(temp_path), cv2.IMREAD_GRAYSCALE)
        tested = cv2.imread(str(test_path), cv2.IMREAD_GRAYSCALE)
        if template is None or tested is None or template.shape != tested.shape:
            print(f"skipped unreadable or mismatched pair {temp_path}", file=sys.stderr)
            continue
        # DeepPCB templates are q95 JPEGs: binarize first, as the synthesis does.
        board = np.where(template >= 128, np.uint8(255), np.uint8(0))
        real_regions.append(thick_regions(template, tested, boxes))
        made = synthesize_image(board, np.random.default_rng([args.seed, index]), config,
                                analysis=analyze_board(board, px_per_mm=config.px_per_mm))
        synth_regions.append(thick_regions(made.template, made.image,
                                           [tuple(label["box"]) for label in made.labels]))
        if args.regions_only:
            continue
        keep = outside_boxes(boxes, template.shape)
        real.append(pair_stats(template, tested, keep))
        sampled = sample_nuisance(rng, params, board.shape)
        start = time.perf_counter()
        fake = apply_nuisance(board, sampled, binary=True)
        seconds.append(time.perf_counter() - start)
        synth.append(pair_stats(board, fake, keep))
    print(f"pairs: {len(real_regions)} from {args.dataset}  (seed {args.seed})")
    _print_regions(real_regions, synth_regions)
    if args.regions_only:
        return 0
    print(f"params: {params.model_dump()}")
    header = "".join(f"{f'p{q}':>10}" for q in PERCENTILES)
    print(f"{'statistic':<15}{'':<8}{header}")
    # Real pairs that already meet the 2-px bound: what the synthesis can fully match.
    thin = [r for r in real if r["band_px"] <= 2]
    groups = (("real", real), ("real<=2", thin), ("synth", synth))
    for key in real[0]:
        if key == "opened_empty":
            continue
        for name, rows in groups:
            values = np.array([r[key] for r in rows], dtype=np.float64)
            values = values[np.isfinite(values)]
            if not len(values):
                continue
            cells = "".join(f"{v:>10.4g}" for v in np.percentile(values, PERCENTILES))
            print(f"{key if name == 'real' else '':<15}{name:<8}{cells}")
    print(f"real pairs with every band <= 2 px (rows real<=2): {len(thin)} of {len(real)}")
    for name, rows in (("real", real), ("synth", synth)):
        empty = np.mean([r["opened_empty"] for r in rows])
        print(f"3x3-opened difference empty, {name}: {100 * empty:.1f} %"
              + ("  (must be 100 %)" if name == "synth" else ""))
    ms = 1000 * np.array(seconds)
    print(f"apply_nuisance per {board.shape[1]}x{board.shape[0]} image: median "
          f"{np.median(ms):.2f} ms, p10 {np.percentile(ms, 10):.2f} ms, mean {ms.mean():.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
