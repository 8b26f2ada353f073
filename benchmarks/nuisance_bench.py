"""Non-defect differences of real tested images against synthetic ones (nuisance calibration).

    python benchmarks/nuisance_bench.py DATASET_DIR [--limit N] [--seed S]
                                        [--set FIELD=VALUE ...]

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
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from pcbforge.datasets.deeppcb import deeppcb_pairs
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
    args = parser.parse_args(argv)
    pairs = deeppcb_pairs(args.dataset)
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
    for temp_path, test_path, boxes in pairs:
        template = cv2.imread(str(temp_path), cv2.IMREAD_GRAYSCALE)
        tested = cv2.imread(str(test_path), cv2.IMREAD_GRAYSCALE)
        if template is None or tested is None or template.shape != tested.shape:
            print(f"skipped unreadable or mismatched pair {temp_path}", file=sys.stderr)
            continue
        keep = outside_boxes(boxes, template.shape)
        real.append(pair_stats(template, tested, keep))
        # DeepPCB templates are q95 JPEGs: binarize first, as the synthesis does.
        board = np.where(template >= 128, np.uint8(255), np.uint8(0))
        sampled = sample_nuisance(rng, params, board.shape)
        start = time.perf_counter()
        fake = apply_nuisance(board, sampled, binary=True)
        seconds.append(time.perf_counter() - start)
        synth.append(pair_stats(board, fake, keep))
    print(f"pairs: {len(real)} from {args.dataset}  (seed {args.seed})")
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
