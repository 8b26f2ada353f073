"""Does ``pcbforge mine`` put a model's errors first, on real test boards?

    python benchmarks/mine_bench.py --test-dir DEEPPCB_LAYOUT --detections TRANSFER_OUT/detections \
        [--test-boards g1,g2] [--share 0.1] [--threshold 0.5] [--workdir DIR] [--json OUT.json]

``--detections``: pcbforge predictions tables (csv or parquet) of models run on the test
boards' tested images, paths relative to ``--test-dir``, or a folder of them: what
``benchmarks/transfer.py`` writes in ``OUT/detections/``. The test boards are imported as a
dataset; each table is scored by ``pcbforge evaluate`` and ranked twice by ``pcbforge
mine``: by errors (labels known) and by uncertainty on a copy with every label hidden.
Printed per table: the model's errors at its best-F threshold, how many of them the top
``--share`` of the tested images holds under each ranking, a random cut of that size on
average and the best possible cut; ``factor`` = ranking / random. See
``pcbforge/bench/mining.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pcbforge.bench.mining import markdown_table, run_mining_benchmark  # noqa: E402


def _tables(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix in (".csv", ".parquet"))
    return [path]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--test-dir", type=Path, required=True)
    parser.add_argument("--detections", type=Path, nargs="+", required=True)
    parser.add_argument("--test-boards", help="only these boards (group folders)")
    parser.add_argument("--share", type=float, default=0.1)
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="the threshold mine measures the scores' nearness to")
    parser.add_argument("--workdir", type=Path, help="keep the datasets here (default: a "
                                                     "temporary folder)")
    parser.add_argument("--json", type=Path, help="write every number here")
    args = parser.parse_args()
    tables = [t for path in args.detections for t in _tables(path)]
    boards = ({b.strip() for b in args.test_boards.split(",") if b.strip()}
              if args.test_boards else None)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            payload = run_mining_benchmark(tables, args.test_dir, args.workdir or Path(tmp),
                                           test_boards=boards, share=args.share,
                                           threshold=args.threshold,
                                           log=lambda line: print(line, flush=True))
        except ValueError as err:
            parser.error(str(err))
    print()
    print(markdown_table(payload))
    if args.json:
        args.json.write_text(json.dumps(payload, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
