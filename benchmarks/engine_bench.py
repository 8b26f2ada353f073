"""``curate`` on the local engine against the Dask engine, on a generated corpus of small tiles.

    python benchmarks/engine_bench.py [--count 100000] [--configs local:1,local:2,dask:1,dask:2]
                                      [--flat-count 10000] [--work DIR] [--json results.json]

Writes ``--count`` small PNG tiles (``--size`` px, drawn PCB-like patterns; about 6% exact,
re-encoded, brightened or rotated copies, 0.5% truncated files) under ``--work``, then curates
the folder once per configuration, ``engine:workers``, each run with its own engine started
beforehand (a process pool, or a ``LocalCluster`` of single-threaded worker processes; the
start is timed apart). Per run it prints images/s over the whole ``curate`` call, the
inspection and near-duplicate stage times, and the peak resident memory of each worker
process and of the driver process (each run is a fresh Python process, so that its peak is
its own), sampled every 0.2 s with psutil. ``--flat-count``
repeats the Dask configurations on the first N files of the corpus (a smaller corpus), to
compare peak worker memory between the two sizes. Outputs are deleted after each run (the
thumbnail cache alone is 64 KiB per image).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import psutil

from pcbforge.curate.runner import WORKER_MODULES, CurateParams, curate
from pcbforge.engine import LocalEngine

FILES_PER_FOLDER = 1000


# --------------------------------------------------------------------------------------
# Corpus
# --------------------------------------------------------------------------------------


def draw_tile(rng: np.random.Generator, size: int) -> np.ndarray:
    """A small grey PCB-like tile: unevenly lit substrate, pads and traces (distinct per seed).

    The uneven light (a smooth random field) makes the perceptual hashes of unrelated tiles
    about as far apart as random ones: flat tiles with a few bright shapes share their low
    frequencies, and their hashes collide within the search radius far more often."""
    field = cv2.resize(rng.uniform(0, 90, (5, 5)).astype(np.float32), (size, size),
                       interpolation=cv2.INTER_CUBIC)
    tile = np.clip(field + rng.integers(0, 6, (size, size)), 0, 255).astype(np.uint8)
    copper = int(rng.integers(150, 230))
    for _ in range(int(rng.integers(8, 14))):
        x, y = rng.integers(0, size, 2)
        if rng.random() < 0.5:
            w, h = rng.integers(size // 16, size // 4, 2)
            cv2.rectangle(tile, (int(x), int(y)), (int(x + w), int(y + h)), copper, -1)
        else:
            x2, y2 = rng.integers(0, size, 2)
            cv2.line(tile, (int(x), int(y)), (int(x2), int(y2)), copper,
                     int(rng.integers(1, max(2, size // 16))))
    return tile


def _write_chunk(task: tuple[str, int, int, int, int]) -> int:
    out, first, stop, size, seed = task
    written = 0
    for index in range(first, stop):
        rng = np.random.default_rng([seed, index])
        folder = Path(out) / f"d{index // FILES_PER_FOLDER:05d}"
        folder.mkdir(exist_ok=True)
        kind = rng.random()
        # Copies of an earlier tile: its pixels come from its own generator.
        source = int(rng.integers(0, index)) if index else 0
        if kind < 0.06 and index:
            tile = draw_tile(np.random.default_rng([seed, source, 1]), size)
            if kind < 0.02:
                name, data = f"t{index:07d}.png", cv2.imencode(".png", tile)[1].tobytes()
            elif kind < 0.035:
                name = f"t{index:07d}.jpg"
                data = cv2.imencode(".jpg", tile, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
            elif kind < 0.05:
                name = f"t{index:07d}.png"
                data = cv2.imencode(".png", cv2.convertScaleAbs(tile, alpha=1.1, beta=8))[1]
                data = data.tobytes()
            else:
                name = f"t{index:07d}.png"
                data = cv2.imencode(".png", np.rot90(tile).copy())[1].tobytes()
        else:
            tile = draw_tile(np.random.default_rng([seed, index, 1]), size)
            name, data = f"t{index:07d}.png", cv2.imencode(".png", tile)[1].tobytes()
            if kind > 0.995:
                data = data[: len(data) // 2]  # truncated
        (folder / name).write_bytes(data)
        written += 1
    return written


def make_corpus(out: Path, count: int, size: int, seed: int, workers: int) -> float:
    """Write ``count`` tiles under ``out`` (reused when already complete); seconds taken."""
    marker = out.parent / f".{out.name}-complete-{size}-{seed}"
    if marker.is_file():
        return 0.0
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    started = time.perf_counter()
    step = 2000
    tasks = [(str(out), first, min(first + step, count), size, seed)
             for first in range(0, count, step)]
    with multiprocessing.get_context("forkserver").Pool(workers) as pool:
        assert sum(pool.imap_unordered(_write_chunk, tasks)) == count
    marker.write_text("")
    return time.perf_counter() - started


def subset(corpus: Path, out: Path, count: int) -> Path:
    """The first ``count`` files of the corpus, as symlinked folders plus one partial."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    full, rest = divmod(count, FILES_PER_FOLDER)
    for k in range(full):
        os.symlink(corpus / f"d{k:05d}", out / f"d{k:05d}")
    if rest:
        (out / f"d{full:05d}").mkdir()
        for path in sorted((corpus / f"d{full:05d}").iterdir())[:rest]:
            os.symlink(path, out / f"d{full:05d}" / path.name)
    return out


# --------------------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------------------


class PeakMemory:
    """Peak RSS of given processes, sampled in a thread every ``interval`` seconds."""

    def __init__(self, pids: list[int], interval: float = 0.2):
        self.pids, self.interval = list(pids), interval
        self.peak = dict.fromkeys(self.pids, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        processes = {}
        while not self._stop.is_set():
            for pid in self.pids:
                try:
                    process = processes.setdefault(pid, psutil.Process(pid))
                    self.peak[pid] = max(self.peak[pid], process.memory_info().rss)
                except psutil.Error:
                    pass
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def worker_pids(engine) -> list[int]:
    if engine.kind == "dask":
        return sorted(engine.client.run(os.getpid).values())
    if engine._pool is None:  # one worker: the work runs in this process
        return [os.getpid()]
    return sorted(process.pid for process in engine._pool._pool)


# --------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------


def open_bench_engine(kind: str, workers: int):
    if kind == "local":
        return LocalEngine(workers, preload=WORKER_MODULES)
    from pcbforge.engine.dask import DaskEngine

    return DaskEngine(workers, preload=WORKER_MODULES)


def run_one(corpus: Path, work: Path, kind: str, workers: int, count: int) -> dict:
    out = work / f"out-{kind}-{workers}-{count}"
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    with open_bench_engine(kind, workers) as engine:
        start_s = time.perf_counter() - started
        pids = worker_pids(engine)
        driver = psutil.Process()
        with PeakMemory([*pids, driver.pid]) as memory:
            tick = time.perf_counter()
            result = curate(corpus, out, CurateParams(workers=workers), engine=engine)
            seconds = time.perf_counter() - tick
        # A worker restarted by a crash would have a new pid: count only those sampled.
        worker_peaks = [memory.peak[pid] for pid in pids if pid != driver.pid]
    report = result.report
    shutil.rmtree(out, ignore_errors=True)
    files = report["files"]
    return {
        "engine": kind, "workers": workers, "files": files,
        "engine_start_s": round(start_s, 2), "curate_s": round(seconds, 2),
        "images_per_s": round(files / seconds, 1),
        "inspect_s": report["timings"]["inspect_s"], "near_dup_s": report["timings"]["dedupe_s"],
        "candidate_search": report["duplicate_search"]["candidate_search"],
        "candidate_pairs": report["duplicate_search"]["candidate_pairs"],
        "duplicates": report["counts"]["duplicate"], "corrupt": report["counts"]["corrupt"],
        "groups": report["groups"],
        "peak_worker_rss_mb": [round(b / 2**20) for b in worker_peaks] or None,
        "peak_driver_rss_mb": round(memory.peak[driver.pid] / 2**20),
    }


def run_child(corpus: Path, work: Path, kind: str, workers: int, count: int) -> dict:
    """:func:`run_one` in a fresh Python process, so that the driver's peak memory is that
    run's own (a process keeps the heap of the runs before it)."""
    done = subprocess.run(
        [sys.executable, __file__, "--work", str(work), "--one", str(corpus), kind,
         str(workers), str(count)], stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:  # its traceback went to stderr, above
        raise RuntimeError(f"{kind}:{workers} on {corpus} failed ({done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _row(result: dict) -> str:
    workers = result["peak_worker_rss_mb"]
    where = "in driver" if result["engine"] == "local" and result["workers"] == 1 else \
        "/".join(str(m) for m in workers)
    return (f"{result['engine']:5s} {result['workers']:2d}  {result['files']:7d}  "
            f"{result['images_per_s']:8.1f}  {result['curate_s']:8.1f}  "
            f"{result['inspect_s']:8.1f}  {result['near_dup_s']:8.1f}  "
            f"{result['engine_start_s']:6.1f}  {where:>13s}  {result['peak_driver_rss_mb']:7d}"
            f"  {result['candidate_search']:>10s} {result['candidate_pairs']:7d}"
            f"  {result['duplicates']:5d} {result['groups']:7d}")


HEADER = ("engine  W    files  images/s  curate_s  inspect_s near_dup_s start_s  "
          "worker_MB(peak) driver_MB      search   pairs   dups  groups")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=64, help="tile side in px")
    parser.add_argument("--configs", default="local:1,local:2,dask:1,dask:2")
    parser.add_argument("--flat-count", type=int, default=10_000,
                        help="also run the Dask configurations on this many files (0: no)")
    parser.add_argument("--work", type=Path, default=Path("engine-bench"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--one", nargs=4, metavar=("CORPUS", "ENGINE", "WORKERS", "COUNT"),
                        help=argparse.SUPPRESS)  # one run, in a child process (see below)
    args = parser.parse_args(argv)
    if args.one:
        corpus, kind, workers, count = args.one
        print(json.dumps(run_one(Path(corpus), args.work, kind, int(workers), int(count))))
        return 0
    configs = [(kind, int(n)) for kind, n in (c.split(":") for c in args.configs.split(","))]

    corpus = args.work / f"corpus-{args.count}"
    made = make_corpus(corpus, args.count, args.size, args.seed, workers=2)
    print(f"corpus: {args.count} tiles of {args.size} px under {corpus}"
          + (f" (written in {made:.0f} s)" if made else " (reused)"), flush=True)
    print(HEADER, flush=True)
    results = []
    for kind, workers in configs:
        results.append(run_child(corpus, args.work, kind, workers, args.count))
        print(_row(results[-1]), flush=True)
    if args.flat_count and args.flat_count < args.count:
        small = subset(corpus, args.work / f"subset-{args.flat_count}", args.flat_count)
        for kind, workers in configs:
            if kind == "dask":
                results.append(run_child(small, args.work, kind, workers, args.flat_count))
                print(_row(results[-1]), flush=True)
        if any(kind == "dask" for kind, _ in configs):
            print("peak worker memory, Dask, small corpus -> full corpus:")
        for workers in sorted({w for k, w in configs if k == "dask"}):
            pair = [r for r in results if r["engine"] == "dask" and r["workers"] == workers]
            small_mb = max(pair[-1]["peak_worker_rss_mb"])
            full_mb = max(pair[0]["peak_worker_rss_mb"])
            print(f"  {workers} workers: {small_mb} MB at {pair[-1]['files']} files -> "
                  f"{full_mb} MB at {pair[0]['files']} files ({full_mb / small_mb - 1:+.0%})")
    if args.json:
        args.json.write_text(json.dumps({"count": args.count, "size": args.size,
                                         "cpu_count": os.cpu_count(), "results": results},
                                        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
