"""Does ``pcbforge curate`` scale linearly, with flat memory, to 100k tiles?

    python benchmarks/curate_scale_bench.py [--sizes 10000,100000] [--workers 2]
        [--workdir DIR] [--copies 0.02] [--seed 0]

Generates a corpus of 640x640 binarized JPEG tiles (~40 KB, as inspection lines write
them) that looks the same at every size: procedural boards of 2048 px
(``pcbforge.synth.boards.draw_board``), each cut into all 529 tiles at 64 px offsets
(neighbours overlap by 90%, as the tiles of a panel scan do), each tile in one random
flip/quarter turn; after each tile, with probability ``--copies``, a copy of it
(re-encoded at quality 75, mirrored, or turned). The corpus of N tiles is the first N
tiles, board by board, so the share of copies and the density of overlapping
neighbours do not change with N (hard links into one folder per size). Every file of
a size is read once before its run (a warm page cache, as in ``curate_bench.py``); then
``pcbforge curate`` runs on it in a fresh process (``--workers`` workers). Printed per
size: wall time, images/s, the stage times, the peak RSS of the parent process and of
the largest worker (and the worker's own part, without the pages of mapped files), and
the scaling: (time at N / time at the smallest) / (N / smallest), 1.0 being linear, of
the wall time and of curate's own total (without the interpreter's start).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pcbforge.synth.boards import draw_board  # noqa: E402

TILE, BOARD, STEP = 640, 2048, 64
OFFSETS = np.arange(0, BOARD - TILE + 1, STEP)


def _orient(tile: np.ndarray, k: int) -> np.ndarray:
    tile = np.rot90(tile, k % 4)
    return np.ascontiguousarray(tile[:, ::-1] if k >= 4 else tile)


def _encode(tile: np.ndarray, quality: int = 90) -> bytes:
    ok, data = cv2.imencode(".jpg", tile, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return data.tobytes()


def board_tiles(board_index: int, seed: int, copies: float) -> list[bytes]:
    """The encoded tiles of one board, in order: each cell, then its copy if it has one."""
    rng = np.random.default_rng([seed, board_index])
    board = draw_board(rng, BOARD)
    out = []
    for y in OFFSETS:
        for x in OFFSETS:
            tile = _orient(board[y:y + TILE, x:x + TILE], int(rng.integers(8)))
            out.append(_encode(tile))
            if rng.random() < copies:
                kind = int(rng.integers(3))
                out.append(_encode(tile, 75) if kind == 0 else
                           _encode(np.ascontiguousarray(tile[:, ::-1])) if kind == 1 else
                           _encode(np.ascontiguousarray(np.rot90(tile))))
    return out


def make_corpus(out: Path, count: int, copies: float, seed: int, workers: int = 2
                ) -> list[Path]:
    """``count`` tiles in ``out/shard-NNN/`` (1,000 per folder), board by board."""
    files: list[Path] = []
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers) as pool:
        jobs = pool.imap(_board_job, ((b, seed, copies) for b in range(10**6)))
        for tiles in jobs:
            for data in tiles:
                if len(files) == count:
                    break
                position = len(files)
                path = out / f"shard-{position // 1000:03d}" / f"tile-{position:06d}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                files.append(path)
            if len(files) == count:
                pool.terminate()
                break
    return files


def _board_job(args: tuple[int, int, float]) -> list[bytes]:
    return board_tiles(*args)


def curate_once(corpus: Path, out: Path, workers: int) -> dict:
    """``pcbforge curate`` in a fresh process: wall seconds, and the peak RSS (MB) of
    that process and of the largest of its descendants (the workers), sampled with
    psutil every 0.1 s."""
    script = ("import sys; from pcbforge.curate.runner import CurateParams, curate; "
              "curate(sys.argv[1], sys.argv[2], CurateParams(workers=int(sys.argv[3])))")
    t0 = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(corpus), str(out), str(workers)],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    parent_peak = worker_peak = worker_anon_peak = 0
    root = psutil.Process(process.pid)
    while process.poll() is None:
        try:
            parent_peak = max(parent_peak, root.memory_info().rss)
            for child in root.children(recursive=True):
                worker_peak = max(worker_peak, child.memory_info().rss)
                worker_anon_peak = max(worker_anon_peak, _anonymous_rss(child.pid))
        except psutil.Error:
            pass
        time.sleep(0.1)
    seconds = time.perf_counter() - t0
    if process.returncode:
        raise SystemExit(f"curate failed with exit status {process.returncode}")
    return {"seconds": round(seconds, 2), "parent_peak_rss_mb": round(parent_peak / 2**20, 1),
            "worker_peak_rss_mb": round(worker_peak / 2**20, 1),
            "worker_peak_anonymous_mb": round(worker_anon_peak / 2**20, 1)}


def _anonymous_rss(pid: int) -> int:
    """The process's own resident memory (``RssAnon``; RSS also counts the pages of files it
    has mapped, such as the thumbnail store, which the kernel can drop), in bytes; 0 when
    unknown."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--copies", type=float, default=0.02,
                        help="probability that a tile is followed by a copy of it")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sizes = sorted(int(v) for v in args.sizes.split(",") if v.strip())
    work = args.workdir or Path(tempfile.mkdtemp(prefix="curate-scale-"))
    source = work / "tiles"
    t0 = time.perf_counter()
    manifest = {"tiles": sizes[-1], "copies": args.copies, "seed": args.seed}
    if (source / "manifest.json").is_file() and json.loads(
            (source / "manifest.json").read_text()) == manifest:
        files = sorted(source.glob("shard-*/tile-*.jpg"))
        print(f"corpus: {len(files)} tiles reused from {source}", flush=True)
    else:
        if source.exists():
            shutil.rmtree(source)
        files = make_corpus(source, sizes[-1], args.copies, args.seed, args.workers)
        (source / "manifest.json").write_text(json.dumps(manifest))
        print(f"corpus: {len(files)} tiles in {time.perf_counter() - t0:.0f} s "
              f"({sum(f.stat().st_size for f in files) / len(files) / 1024:.0f} KB each)",
              flush=True)
    rows = []
    for size in sizes:
        corpus = work / f"corpus-{size}"
        if corpus.exists():
            shutil.rmtree(corpus)
        for path in files[:size]:
            target = corpus / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, target)
        started = time.perf_counter()
        for path in files[:size]:  # a warm page cache at every size, as curate_bench has
            path.read_bytes()
        print(f"{size:>7} tiles read once in {time.perf_counter() - started:.1f} s", flush=True)
        out = work / f"curated-{size}"
        if out.exists():
            shutil.rmtree(out)
        result = curate_once(corpus, out, args.workers)
        report = json.loads((out / "report.json").read_text())
        rows.append({"images": size, **result,
                     "images_per_s": round(size / result["seconds"], 1),
                     "timings": report["timings"], "counts": report["counts"],
                     "duplicate_search": report["duplicate_search"]})
        stages = ", ".join(f"{k[:-2]} {v:.1f}" for k, v in report["timings"].items()
                           if k != "total_s")
        found = report["duplicate_search"]
        print(f"{size:>7} tiles: {result['seconds']:8.1f} s  "
              f"{size / result['seconds']:7.0f} img/s  peak RSS parent "
              f"{result['parent_peak_rss_mb']} MB, worker {result['worker_peak_rss_mb']} MB "
              f"({result['worker_peak_anonymous_mb']} MB its own); "
              f"stages (s): {stages}; "
              f"{found['candidate_pairs']} candidate pairs, "
              f"{found['duplicate_pairs_verified']} duplicate; "
              f"statuses: {report['counts']}", flush=True)
        shutil.rmtree(out)
    base = rows[0]
    for row in rows[1:]:
        growth = row["images"] / base["images"]
        row["scaling"] = round(row["seconds"] / base["seconds"] / growth, 3)
        row["scaling_in_process"] = round(
            row["timings"]["total_s"] / base["timings"]["total_s"] / growth, 3)
        print(f"scaling {base['images']} -> {row['images']}: {row['scaling']:.3f} wall, "
              f"{row['scaling_in_process']:.3f} in curate itself (without the interpreter's "
              f"start; 1.0 linear, target within 10%)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
