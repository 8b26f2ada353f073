"""Defect-aware grouping on a DeepPCB-layout folder.

    python benchmarks/deeppcb_pairs_bench.py DEEPPCB_DIR [--workers 2]

Curates the folder and reports, for every tested image ``X_test.jpg`` and its
template ``X_temp.jpg``: whether the tested (defective) image was marked a
duplicate (it must never be), and whether the pair shares a ``group`` (target
>= 0.95). Also reports groups that span two scanned boards (``groupN``
folders), which would be over-merging.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from pcbforge.curate.runner import CurateParams, curate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("deeppcb", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="pcbforge-pairs-"))
    try:
        params = CurateParams(workers=args.workers)
        table = curate(args.deeppcb, scratch / "dataset", params).samples
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    rows = table.set_index("path")
    tests = [p for p in rows.index if p.endswith("_test.jpg")]
    pairs = [(p, p[: -len("_test.jpg")] + "_temp.jpg") for p in tests]
    pairs = [(t, m) for t, m in pairs if m in rows.index]
    shared = sum(rows.at[t, "group"] == rows.at[m, "group"] for t, m in pairs)
    marked = sum(rows.at[t, "status"] == "duplicate" for t, _ in pairs)
    images = table[table["status"] != "skipped"]
    boards = images.assign(board=images["path"].str.split("/").str[0])
    spanning = int((boards.groupby("group")["board"].nunique() > 1).sum())
    print(f"template/defect pairs: {len(pairs)}")
    print(f"defective image marked duplicate of anything: {marked}")
    print(f"pairs sharing a group: {shared} ({shared / max(len(pairs), 1):.3f}, target >= 0.95)")
    print(f"largest group: {int(images['group_size'].max())} images; "
          f"groups spanning two boards: {spanning}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
