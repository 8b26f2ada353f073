"""Synthesis throughput against the I/O bound, measured in one run.

    python benchmarks/synth_bench.py [BOARDS_DIR] [--count N] [--workers 2] [--defects 8]
                                     [--format png|jpg] [--no-nuisance]

Without BOARDS_DIR, procedural 640x640 boards are drawn first (not timed). Two
loops run over the same boards on one already started pool of worker processes:

1. I/O bound: read each source board and write it back in the output format
   (what any tool must at least do per image);
2. ``pcbforge synth``: analyse the board, place and check N defects, add
   acquisition nuisance, write the tested image, masks, boxes and params
   (the whole pipeline, dataset files included).

Image ``i`` comes from board ``i mod boards``, as in ``pcbforge synth``. It prints
boards/s of each and their ratio (target: synth >= 0.5 x I/O), then where one
synthetic image's time goes (one process, the first boards).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pcbforge.core.files import write_bytes  # noqa: E402
from pcbforge.datasets.masks import encode_mask_window  # noqa: E402
from pcbforge.engine import LocalEngine  # noqa: E402
from pcbforge.synth.analysis import analyze_board  # noqa: E402
from pcbforge.synth.compose import SynthConfig, synthesize_image  # noqa: E402
from pcbforge.synth.nuisance import apply_nuisance, sample_nuisance  # noqa: E402
from pcbforge.synth.pipeline import (  # noqa: E402
    WORKER_MODULES,
    encode_image,
    list_boards,
    read_board,
    synthesize,
    write_boards,
)


def copy_one(task: tuple[str, str, str]) -> int:
    source, target, fmt = task
    image = read_board(source)
    write_bytes(Path(target), encode_image(image, fmt))  # atomic, as synth writes
    return image.size


def _ms(function, items) -> tuple[float, list]:
    start = time.perf_counter()
    out = [function(item) for item in items]
    return (time.perf_counter() - start) / len(items) * 1000, out


def stage_breakdown(files: list[str], config: SynthConfig, fmt: str, seed: int) -> None:
    """Milliseconds per image of each stage, in this process (one core)."""
    read_ms, boards = _ms(read_board, files)
    analyse_ms, analyses = _ms(lambda b: analyze_board(b, px_per_mm=config.px_per_mm), boards)
    rngs = [np.random.default_rng([seed, i]) for i in range(len(files))]
    whole_ms, made = _ms(lambda k: synthesize_image(boards[k], rngs[k], config,
                                                    analysis=analyses[k]), range(len(files)))
    nuisance = [sample_nuisance(np.random.default_rng([seed, i]), config.nuisance, b.shape[:2])
                for i, b in enumerate(boards)]
    nuisance_ms, _ = _ms(lambda k: apply_nuisance(boards[k], nuisance[k], binary=True),
                         range(len(files)))
    encode_ms, _ = _ms(lambda m: encode_image(m.image, fmt), made)
    clean_ms, _ = _ms(lambda b: encode_image(b, fmt), boards)
    masks_ms, _ = _ms(lambda m: [encode_mask_window(
        lab["mask"][lab["tight"][1]:lab["tight"][3], lab["tight"][0]:lab["tight"][2]],
        lab["tight"][0], lab["tight"][1], *m.image.shape[:2]) for lab in m.labels], made)
    print(f"\nWhere one image's time goes ({len(files)} images, one process, ms per image):")
    print(f"  read board {read_ms:6.1f}   analyse board {analyse_ms:6.1f} "
          f"(once per board and worker)")
    print(f"  place, draw, check defects + nuisance + re-check {whole_ms:6.1f} "
          f"(of which nuisance alone ~{nuisance_ms:.1f})")
    print(f"  encode {fmt.upper()} {encode_ms:6.1f} (the I/O loop encodes the clean board: "
          f"{clean_ms:.1f})   encode masks {masks_ms:6.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("boards", type=Path, nargs="?")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--defects", type=int, default=8, help="defects per image")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--format", choices=("png", "jpg"), default="png",
                        help="image format both loops write")
    parser.add_argument("--no-nuisance", action="store_true",
                        help="synthesize without acquisition nuisance (shows what it costs)")
    args = parser.parse_args()
    config = SynthConfig(defects_per_image=(args.defects, args.defects),
                         nuisance={"enabled": not args.no_nuisance})

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        boards = args.boards
        if boards is None:
            boards = tmp / "boards"
            write_boards(boards, count=min(args.count, 50), seed=args.seed, progress=False,
                         workers=args.workers)
        found, _ = list_boards(boards)
        files = [found[i % len(found)].file for i in range(args.count)]
        tasks = [(f, str(tmp / "io" / f"{i:06d}.{args.format}"), args.format)
                 for i, f in enumerate(files)]
        with LocalEngine(args.workers, preload=WORKER_MODULES) as engine:
            list(engine.map(copy_one, tasks[: 4 * args.workers]))  # start the pool
            start = time.perf_counter()
            list(engine.map(copy_one, tasks))
            io_seconds = time.perf_counter() - start
            start = time.perf_counter()
            report = synthesize(boards, tmp / "synth", count=args.count, seed=args.seed,
                                config=config, image_format=args.format, progress=False,
                                engine=engine)
            synth_seconds = time.perf_counter() - start

        io_rate = args.count / io_seconds
        synth_rate = report["images"] / synth_seconds
        print(f"{args.count} boards from {boards if args.boards else 'procedural boards'} "
              f"({len(found)} distinct), {args.workers} workers, {args.defects} defects each"
              + (", no acquisition nuisance" if args.no_nuisance else ""))
        print(f"I/O bound (read + write {args.format.upper()}): {io_rate:8.1f} boards/s")
        print(f"pcbforge synth (end to end):  {synth_rate:8.1f} boards/s "
              f"({report['defects_total']} defects, {sum(report['dropped'].values())} dropped)")
        print(f"ratio synth / I/O: {synth_rate / io_rate:.2f} (target >= 0.5)")
        stage_breakdown([f.file for f in found[:20]], config, args.format, args.seed)


if __name__ == "__main__":
    main()
