"""The synthetic-to-real benchmark: three detector designs, DeepPCB's protocol.

    python benchmarks/transfer.py --train-dir DEEPPCB_LAYOUT --test-dir DEEPPCB_LAYOUT \
        [--out DIR] [--detectors reference,opening,single-image] [--seeds 0,1,2] \
        [--device cpu|cuda] [--train-boards g1,g2] [--test-boards g3] \
        [--validation-boards g4 --regimes few_real+synthetic,few_real+targeted]

Needs torch (``pip install -e .[bench]``). During development, hold whole boards of
one folder out, e.g. ``--train-dir D --test-dir D --test-boards group44000,group50600
--train-boards <the other five>``. The synthetic regimes train on exactly what
``pcbforge synth`` writes on the train templates (synth seed = training seed). The
targeted regime (``few_real+targeted``) scores the uniform ``few_real+synthetic`` model
on ``--validation-boards`` (held out of all training) with ``pcbforge evaluate`` and
draws the same number of synthetic images again with ``--balance from-evaluation``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pcbforge.bench.detectors import detector_names  # noqa: E402
from pcbforge.bench.transfer import (  # noqa: E402
    DEFAULT_REGIMES,
    REGIMES,
    TransferConfig,
    run_transfer,
)


def _names(text: str | None) -> set[str] | None:
    return {v.strip() for v in text.split(",") if v.strip()} if text else None


def _list(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _ints(text: str) -> tuple[int, ...]:
    """``0,1,2`` (an argparse type)."""
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected integers like 0,1,2, got {text!r}") from err


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
    parser.add_argument("--detectors", type=_list, default=tuple(detector_names()),
                        help=f"designs to train (default: {','.join(detector_names())})")
    parser.add_argument("--validation-boards",
                        help="boards of the train folder held out of training, where the "
                             "targeted regime evaluates the uniform model")
    parser.add_argument("--regimes", type=_list, default=DEFAULT_REGIMES,
                        help=f"of {','.join(REGIMES)} (default: "
                             f"{','.join(DEFAULT_REGIMES)})")
    parser.add_argument("--seeds", type=_ints, default=(0, 1, 2),
                        help="train every regime once per seed; also the synth seed")
    parser.add_argument("--few-share", type=float, default=0.05)
    parser.add_argument("--synth-per-template", type=int, default=2)
    parser.add_argument("--few-repeat", type=int, default=16,
                        help="repeat each few real pair this many times in few_real+synthetic")
    parser.add_argument("--etch-px", type=_pair, default=(0, 1),
                        help="MIN,MAX px each synthetic board's copper grows by (0,0: none)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs of every design (default: each design's own)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    try:
        config = TransferConfig(
            train_dir=args.train_dir, test_dir=args.test_dir, out=args.out,
            train_boards=_names(args.train_boards), test_boards=_names(args.test_boards),
            validation_boards=_names(args.validation_boards),
            detectors=args.detectors, regimes=args.regimes, seeds=args.seeds,
            few_share=args.few_share, synth_per_template=args.synth_per_template,
            few_repeat=args.few_repeat, etch_px=args.etch_px, epochs=args.epochs,
            device=args.device, workers=args.workers)
    except ValueError as err:
        parser.error(str(err))
    run_transfer(config, log=lambda line: print(line, flush=True))
    print()
    print((args.out / "results.md").read_text())


if __name__ == "__main__":
    main()
