"""The synthetic-to-real benchmark (reference model A, DeepPCB's protocol).

    python benchmarks/transfer.py --train-dir DEEPPCB_LAYOUT --test-dir DEEPPCB_LAYOUT \
        [--out DIR] [--device cpu|cuda] [--seed S] [--train-boards g1,g2] [--test-boards g3]

Needs torch (``pip install -e .[bench]``). During development, hold whole boards of
one folder out, e.g. ``--train-dir D --test-dir D --test-boards group44000,group50600
--train-boards <the other five>``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pcbforge.bench.transfer import REGIMES, TransferConfig, run_transfer  # noqa: E402


def _names(text: str | None) -> set[str] | None:
    return {v.strip() for v in text.split(",") if v.strip()} if text else None


def _pair(text: str) -> tuple[int, int]:
    """``N`` or ``MIN,MAX`` (an argparse type)."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in (1, 2):
        raise argparse.ArgumentTypeError(f"expected N or MIN,MAX, got {text!r}")
    return values[0], values[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-dir", type=Path, required=True)
    parser.add_argument("--test-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("transfer-out"))
    parser.add_argument("--train-boards", help="only these boards (group folders) to train on")
    parser.add_argument("--test-boards", help="only these boards to test on")
    parser.add_argument("--regimes", default=",".join(REGIMES))
    parser.add_argument("--few-share", type=float, default=0.05)
    parser.add_argument("--synth-per-template", type=int, default=2)
    parser.add_argument("--few-repeat", type=int, default=16,
                        help="repeat each few-real crop this many times in few_real+synthetic")
    parser.add_argument("--no-negatives", action="store_true",
                        help="synthetic regimes without defect-free misregistered pairs")
    parser.add_argument("--etch-px", type=_pair, default=(0, 1),
                        help="MIN,MAX px each synthetic board's copper grows by (0,0: none)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    config = TransferConfig(
        train_dir=args.train_dir, test_dir=args.test_dir, out=args.out,
        train_boards=_names(args.train_boards), test_boards=_names(args.test_boards),
        regimes=tuple(r.strip() for r in args.regimes.split(",") if r.strip()),
        few_share=args.few_share, synth_per_template=args.synth_per_template,
        few_repeat=args.few_repeat, negatives=not args.no_negatives, etch_px=args.etch_px,
        epochs=args.epochs, seed=args.seed, device=args.device, workers=args.workers)
    run_transfer(config, log=lambda line: print(line, flush=True))
    print()
    print((args.out / "results.md").read_text())


if __name__ == "__main__":
    main()
