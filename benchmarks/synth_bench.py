"""Synthesis throughput against the I/O bound, measured in one run.

    python benchmarks/synth_bench.py [BOARDS_DIR] [--count N] [--workers 2] [--defects 8]
                                     [--format png|jpg] [--no-nuisance]
                                     [--against GIT_REF [--repeat 3]]

Without BOARDS_DIR, procedural 640x640 boards are drawn first (not timed). Two
loops run over the same boards on one already started pool of worker processes:

1. I/O bound: read each source board and write it back in the output format
   (what any tool must at least do per image);
2. ``pcbforge synth``: analyse the board, place and check N defects, add
   acquisition nuisance, write the tested image, masks, boxes and params
   (the whole pipeline, dataset files included).

Image ``i`` comes from board ``i mod boards``, as in ``pcbforge synth``. It prints
boards/s of each and their ratio, then where one synthetic image's time goes (one
process, the first boards).

``--against GIT_REF`` compares the code here with the code of another commit in the
same run: the commit's tree is exported (``git archive``) into a temporary folder and
both run the same synthesis (same boards, count, seed and worker count) in fresh
processes, alternated ``--repeat`` times; it prints each rate, the medians and their
ratio (this code / the other).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
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
    encode_ms, _ = _ms(lambda m: encode_image(m.image, fmt, binary=m.binary), made)
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


#: Run in a fresh process with the code to time first on ``sys.path``: one warm-up
#: synthesis on the pool, then the timed one; prints images and seconds as JSON.
RUNNER = """
import json, sys, time
from pathlib import Path
from pcbforge.engine import LocalEngine
from pcbforge.synth.compose import SynthConfig
from pcbforge.synth.pipeline import WORKER_MODULES, synthesize
boards, out, count, seed, workers, fmt, defects, nuisance = sys.argv[1:9]
config = SynthConfig(defects_per_image=(int(defects), int(defects)),
                     nuisance={"enabled": nuisance == "1"})
with LocalEngine(int(workers), preload=WORKER_MODULES) as engine:
    synthesize(boards, Path(out) / "warm", count=4 * int(workers), seed=int(seed),
               config=config, image_format=fmt, progress=False, engine=engine)
    start = time.perf_counter()
    report = synthesize(boards, Path(out) / "synth", count=int(count), seed=int(seed),
                        config=config, image_format=fmt, progress=False, engine=engine)
    print(json.dumps({"images": report["images"], "seconds": time.perf_counter() - start}))
"""


def _timed_run(code_root: Path, boards: Path, work: Path, args: argparse.Namespace) -> float:
    """Boards/s of one synthesis by the code under ``code_root``, in a fresh process."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(code_root)}
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, str(boards), str(work), str(args.count), str(args.seed),
         str(args.workers), args.format, str(args.defects), "0" if args.no_nuisance else "1"],
        env=env, cwd=code_root, check=True, capture_output=True, text=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["images"] / result["seconds"]


def compare_with(ref: str, boards: Path, tmp: Path, args: argparse.Namespace) -> None:
    """Synthesis rate of this code against commit ``ref``'s, alternated in one run."""
    here = Path(__file__).resolve().parent.parent
    other = tmp / "ref"
    other.mkdir()
    archive = subprocess.run(["git", "-C", str(here), "archive", ref], check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(other, filter="data")
    rates: dict[str, list[float]] = {"here": [], ref: []}
    for _ in range(args.repeat):
        rates["here"].append(_timed_run(here, boards, tmp / "run", args))
        rates[ref].append(_timed_run(other, boards, tmp / "run", args))
    mine, theirs = float(np.median(rates["here"])), float(np.median(rates[ref]))
    print(f"\nThis code against {ref} ({args.repeat} alternated runs each, fresh processes):")
    print(f"  this code: {', '.join(f'{r:.1f}' for r in rates['here'])} boards/s "
          f"(median {mine:.1f})")
    print(f"  {ref}: {', '.join(f'{r:.1f}' for r in rates[ref])} boards/s "
          f"(median {theirs:.1f})")
    print(f"  ratio this / {ref}: {mine / theirs:.2f}")


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
    parser.add_argument("--against", metavar="GIT_REF",
                        help="also time the code of this commit, alternated, and print the "
                             "ratio")
    parser.add_argument("--repeat", type=int, default=3,
                        help="alternated runs of each side with --against")
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
        print(f"ratio synth / I/O: {synth_rate / io_rate:.2f}")
        stage_breakdown([f.file for f in found[:20]], config, args.format, args.seed)
        if args.against:
            compare_with(args.against, boards, tmp, args)


if __name__ == "__main__":
    main()
