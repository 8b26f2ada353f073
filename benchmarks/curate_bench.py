"""Throughput of ``pcbforge curate`` against a decode-only loop, in one run.

    python benchmarks/curate_bench.py CORPUS [--workers 2] [--repeat 1]

Both sides see the same files, the same number of worker processes and a warm
page cache (every file is read once before timing). The decode-only loop reads
each file and decodes it fully with OpenCV (``cv2.imdecode``, IMREAD_UNCHANGED),
which is the least any tool that looks at pixels must do. The printed ratio is
curate's images/s over decode-only images/s (target >= 0.6).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from pcbforge.core.scan import scan_folder
from pcbforge.curate.runner import CurateParams, curate


def _decode_only(path: str) -> int:
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        return 0
    return 0 if image is None else int(image.shape[0])


def decode_only_rate(paths: list[str], workers: int) -> float:
    started = time.perf_counter()
    context = multiprocessing.get_context("forkserver")
    with context.Pool(workers) as pool:
        for _ in pool.imap(_decode_only, paths, chunksize=4):
            pass
    return len(paths) / (time.perf_counter() - started)


def curate_rate(corpus: Path, workers: int, n_images: int) -> tuple[float, dict]:
    scratch = Path(tempfile.mkdtemp(prefix="pcbforge-bench-"))
    try:
        started = time.perf_counter()
        result = curate(corpus, scratch / "dataset", CurateParams(workers=workers))
        elapsed = time.perf_counter() - started
        return n_images / elapsed, result.report
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path, help="any folder of images (e.g. DeepPCB layout)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1, help="alternate both sides N times")
    args = parser.parse_args(argv)
    if not args.corpus.is_dir():
        parser.error(f"{args.corpus} is not a folder")

    # Both sides fork their workers from one fork server that has imported
    # numpy/OpenCV/pcbforge once, so neither pays per-worker import time.
    multiprocessing.get_context("forkserver").set_forkserver_preload(
        ["pcbforge.curate.inspect", "pcbforge.curate.dedupe"]
    )
    files = [f for f in scan_folder(args.corpus).files if not f.skip_reason]
    paths = [f.fs_path for f in files]
    for path in paths:  # warm the page cache for both sides alike
        with open(path, "rb") as handle:
            handle.read()
    print(f"corpus: {args.corpus} ({len(paths)} image files, "
          f"{sum(os.path.getsize(p) for p in paths) / 1e6:.1f} MB), workers: {args.workers}, "
          f"cpus: {os.cpu_count()}")

    decode_rates, curate_rates, report = [], [], {}
    for _ in range(args.repeat):
        decode_rates.append(decode_only_rate(paths, args.workers))
        rate, report = curate_rate(args.corpus, args.workers, len(paths))
        curate_rates.append(rate)
    decode_rate, curate_rate_ = float(np.median(decode_rates)), float(np.median(curate_rates))
    timings = report.get("timings", {})
    print(f"decode-only (OpenCV, {args.workers} processes): {decode_rate:8.1f} images/s")
    print(f"pcbforge curate ({args.workers} workers):       {curate_rate_:8.1f} images/s  "
          f"(scan {timings.get('scan_s')} s, inspect {timings.get('inspect_s')} s, "
          f"dedupe {timings.get('dedupe_s')} s, write {timings.get('write_s')} s)")
    print(f"ratio curate / decode-only: {curate_rate_ / decode_rate:.2f} (target >= 0.60)")
    counts = report.get("counts", {})
    print("statuses: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
