"""Build the mixed benchmark corpus: DeepPCB tiles plus large photo-like images.

    python benchmarks/make_mixed_corpus.py DEEPPCB_DIR OUT [--groups group00041] [--photos 60]

Copies the chosen DeepPCB groups (any folder in DeepPCB layout) and adds
procedurally rendered 3000 x 2250 photo-like JPEGs (quality 90), every third
with a half-size JPEG copy, so throughput is measured on a corpus where images
are not all tiny tiles. The photos are synthetic stand-ins, not photographs.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np

from pcbforge.synth.boards import render_photo_like


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("deeppcb", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--groups", nargs="+", default=["group00041"])
    parser.add_argument("--photos", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.out.exists():
        parser.error(f"{args.out} exists")
    args.out.mkdir(parents=True)
    for group in args.groups:
        shutil.copytree(args.deeppcb / group, args.out / group)
    rng = np.random.default_rng(args.seed)
    for index in range(args.photos):
        image = cv2.resize(render_photo_like(rng, 750, 1000), (3000, 2250),
                           interpolation=cv2.INTER_CUBIC)
        image = np.clip(image + rng.normal(0, 4, image.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(args.out / f"photo_{index:02d}.jpg"), image,
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
        if index % 3 == 0:
            half = cv2.resize(image, None, fx=0.5, fy=0.5)
            cv2.imwrite(str(args.out / f"photo_{index:02d}_copy.jpg"), half,
                        [cv2.IMWRITE_JPEG_QUALITY, 75])
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
