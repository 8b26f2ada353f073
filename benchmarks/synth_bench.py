"""Synthesis throughput against the I/O bound, measured in one run.

    python benchmarks/synth_bench.py [BOARDS_DIR] [--count N] [--workers 2] [--defects 8]

Without BOARDS_DIR, procedural 640x640 boards are drawn first (not timed). Two
loops run over the same boards with the same worker pool size:

1. I/O bound: read each source board and write it back as PNG (what any tool
   must at least do per image);
2. ``pcbforge synth``: analyse the board, place and check N defects, add
   acquisition nuisance, write the tested image, masks, boxes and params
   (the whole pipeline, dataset files included).

It prints boards/s of each and their ratio (target: synth >= 0.5 x I/O).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pcbforge.engine import LocalEngine  # noqa: E402
from pcbforge.synth.compose import SynthConfig  # noqa: E402
from pcbforge.synth.pipeline import (  # noqa: E402
    _encode,
    _write_bytes,
    list_boards,
    read_board,
    synthesize,
    write_boards,
)


def copy_one(task: tuple[str, str]) -> int:
    source, target = task
    image = read_board(source)
    _write_bytes(Path(target), _encode(image, "png"))
    return image.size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("boards", type=Path, nargs="?")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--defects", type=int, default=8, help="defects per image")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        boards = args.boards
        if boards is None:
            boards = tmp / "boards"
            write_boards(boards, count=min(args.count, 50), seed=args.seed, progress=False,
                         workers=args.workers)
        found, _ = list_boards(boards)
        files = [found[i % len(found)].file for i in range(args.count)]
        tasks = [(f, str(tmp / "io" / f"{i:06d}.png")) for i, f in enumerate(files)]
        with LocalEngine(args.workers, preload=("numpy", "cv2")) as engine:
            list(engine.map(copy_one, tasks[: 2 * args.workers]))  # start the pool
            start = time.perf_counter()
            list(engine.map(copy_one, tasks))
            io_seconds = time.perf_counter() - start

        config = SynthConfig(defects_per_image=(args.defects, args.defects))
        start = time.perf_counter()
        report = synthesize(boards, tmp / "synth", count=args.count, seed=args.seed,
                            config=config, workers=args.workers, progress=False)
        synth_seconds = time.perf_counter() - start

    io_rate = args.count / io_seconds
    synth_rate = report["images"] / synth_seconds
    print(f"{args.count} boards from {boards if args.boards else 'procedural boards'}, "
          f"{args.workers} workers, {args.defects} defects each")
    print(f"I/O bound (read + write PNG): {io_rate:8.1f} boards/s")
    print(f"pcbforge synth (end to end):  {synth_rate:8.1f} boards/s "
          f"({report['defects_total']} defects, {sum(report['dropped'].values())} dropped)")
    print(f"ratio synth / I/O: {synth_rate / io_rate:.2f} (target >= 0.5)")


if __name__ == "__main__":
    main()
