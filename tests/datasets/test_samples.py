import os
import stat

import pytest

from pcbforge.core.files import atomic_write


def test_atomic_write_gives_the_usual_mode_and_leaves_nothing_behind(tmp_path):
    mask = os.umask(0o022)
    os.umask(mask)
    target = tmp_path / "out" / "table.csv"
    atomic_write(target, lambda tmp: open(tmp, "w").write("a,b\n"))
    assert target.read_text() == "a,b\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask  # not mkstemp's 0600
    assert [p.name for p in target.parent.iterdir()] == ["table.csv"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old\n")

    def broken(tmp):
        open(tmp, "w").write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, broken)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]


@pytest.mark.parametrize(("columns", "expected"), [
    ({"role": ["template", "tested", ""], "template_path": ["", "t.png", ""]},
     [True, False, False]),
    ({"template_path": ["", "t.png", ""]}, [True, False, False]),  # named, no role column
    ({"role": ["", "", "template"]}, [False, False, True]),
    ({}, [False, False, False]),
], ids=["role_and_named", "named_only", "role_only", "neither"])
def test_template_rows_are_by_role_or_named_by_another_row(columns, expected):
    import pandas as pd

    from pcbforge.datasets.samples import template_rows

    samples = pd.DataFrame({"path": ["t.png", "a.png", "b.png"], **columns})
    assert template_rows(samples).tolist() == expected
