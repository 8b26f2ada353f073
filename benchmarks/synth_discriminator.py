"""The discriminator benchmark: real vs pcbforge-synthetic defect crops on held-out boards.

    python benchmarks/synth_discriminator.py --dir DEEPPCB_LAYOUT \
        --train-boards g1,g2,... --test-boards g3,g4 [--out DIR] [--seeds 0,1,2]
        [--crops background]

A small CNN learns to tell real defect crops of the train boards from ``pcbforge synth``
defects drawn on the same boards' templates; its AUC on the held-out test boards, overall
and per class, says how far synthetic defects still look synthetic (0.5: not at all;
target <= 0.65 per class). Writes discriminator.json, discriminator.md and, per class,
a montage of the most synthetic-looking crops under --out. ``--crops background`` cuts
windows away from every labelled box instead: how far the pairs alone (scan,
misregistration, background nuisance) give synthetic data away. Protocol:
:mod:`pcbforge.bench.discriminator`. Needs torch (``pip install -e .[bench]``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pcbforge.bench.discriminator import (  # noqa: E402
    RESULTS_MD,
    DiscriminatorConfig,
    run_discriminator,
)


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _seeds(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected S or S1,S2,..., got {text!r}") from err


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, required=True, help="a folder in DeepPCB layout")
    parser.add_argument("--train-boards", type=_names, required=True,
                        help="boards (group folders) the discriminator learns on")
    parser.add_argument("--test-boards", type=_names, required=True,
                        help="held-out boards every AUC is measured on")
    parser.add_argument("--out", type=Path, default=Path("discriminator-out"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=_seeds, help="several seeds, e.g. 0,1,2 (each "
                        "reported, and their mean); overrides --seed")
    parser.add_argument("--window", type=int, default=64, help="crop side, px (never resized)")
    parser.add_argument("--jitter", type=int, default=8,
                        help="random shift of the window in training, px")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--synth-per-template", type=int, default=1)
    parser.add_argument("--image-format", choices=("png", "jpg"), default="png",
                        help="what pcbforge synth writes (its default: png)")
    parser.add_argument("--unconditional", action="store_true",
                        help="do not give the network the defect class")
    parser.add_argument("--crops", choices=("defects", "background"), default="defects",
                        help="crop every labelled box, or windows away from every box "
                             "(what the pairs alone give away)")
    parser.add_argument("--background-per-pair", type=int, default=4,
                        help="background windows per pair (with --crops background)")
    parser.add_argument("--montage", type=int, default=12, help="crops per montage row")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1 is fastest on a shared machine)")
    parser.add_argument("--keep-work", action="store_true",
                        help="keep the synthetic datasets under OUT/work")
    args = parser.parse_args()
    config = DiscriminatorConfig(
        data_dir=args.dir, out=args.out, train_boards=args.train_boards,
        test_boards=args.test_boards, seeds=args.seeds or (args.seed,), window=args.window,
        jitter=args.jitter, epochs=args.epochs, synth_per_template=args.synth_per_template,
        image_format=args.image_format, class_conditional=not args.unconditional,
        montage=args.montage, workers=args.workers, device=args.device, threads=args.threads,
        keep_work=args.keep_work, crops=args.crops,
        background_per_pair=args.background_per_pair)
    run_discriminator(config, log=lambda line: print(line, flush=True))
    print()
    print((args.out / RESULTS_MD).read_text())


if __name__ == "__main__":
    main()
