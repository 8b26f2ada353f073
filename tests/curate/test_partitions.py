"""Per-partition stores of a Dask run's inspection (pcbforge.curate.partitions)."""

from __future__ import annotations

import numpy as np
import pytest

from pcbforge.core.scan import scan_folder
from pcbforge.curate.inspect import InspectParams, inspect_file
from pcbforge.curate.partitions import PartedCoarse, PartedThumbs, plan_partitions, write_partition
from pcbforge.curate.verify import coarse_record


def test_parted_stores_hold_each_slots_thumbnail_and_coarse_view(tmp_path) -> None:
    from pcbforge.synth.messy import make_messy_corpus

    make_messy_corpus(tmp_path / "src", seed=5, n_boards=4, n_photos=2)
    files = scan_folder(tmp_path / "src").files
    partitions = plan_partitions(files, 8)
    folders = {name: tmp_path / name for name in ("parts", "thumbs", "coarse")}
    for folder in folders.values():
        folder.mkdir()
    thumbs, views = {}, {}
    for partition in partitions:
        inspections = [inspect_file(found, InspectParams()) for _, found in partition.items]
        for (slot, _), inspection in zip(partition.items, inspections, strict=True):
            if slot >= 0 and inspection.thumb is not None:
                thumbs[slot], views[slot] = inspection.thumb, coarse_record(inspection.coarse)
        write_partition(partition, iter(inspections), str(folders["parts"]),
                        str(folders["thumbs"]), 256, str(folders["coarse"]))
    n_slots = sum(p.n_slots for p in partitions)
    assert len(partitions) > 2 and len(views) > 16
    parted_thumbs = PartedThumbs(str(folders["thumbs"]), 8, n_slots, 256)
    coarse = PartedCoarse(str(folders["coarse"]), 8, n_slots, 256)
    slots = np.array(sorted(views), dtype=np.int64)
    gathered = coarse[slots]  # what a chunk of pairs reads at once
    for n, slot in enumerate(slots):
        assert gathered[n].tobytes() == views[slot].tobytes()
        assert coarse[slot].tobytes() == views[slot].tobytes()
        np.testing.assert_array_equal(parted_thumbs[slot], thumbs[slot])
    for store in (coarse, parted_thumbs):
        with pytest.raises(IndexError):
            store[n_slots]
