"""core.files: bounded reads of regular files only, paths kept inside a root, atomic writes."""

from __future__ import annotations

import os
import socket
import stat

import pytest

from pcbforge.core.files import (
    PathOutsideRootError,
    UnreadableFileError,
    atomic_write,
    read_regular_file,
    resolve_inside,
    write_bytes,
)


def test_reads_a_regular_file_whole(tmp_path):
    path = tmp_path / "a.jpg"
    path.write_bytes(b"x" * 3_000_000)
    assert read_regular_file(path) == b"x" * 3_000_000
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert read_regular_file(tmp_path / "empty.jpg") == b""


def test_a_file_above_the_cap_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "huge.jpg"
    with open(path, "wb") as handle:
        handle.truncate(8 << 30)  # sparse: 8 GiB that occupy no disk
    with pytest.raises(UnreadableFileError) as caught:
        read_regular_file(path, max_bytes=1 << 20)
    assert caught.value.reason == "too_large"
    assert "8,589,934,592 bytes" in caught.value.detail


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/null"], ids=["zero", "null"])
def test_a_link_to_a_device_is_refused(tmp_path, target):
    if not os.path.exists(target):
        pytest.skip(f"{target} does not exist here")
    link = tmp_path / "x.jpg"
    link.symlink_to(target)
    with pytest.raises(UnreadableFileError) as caught:
        read_regular_file(link)
    assert caught.value.reason == "not_a_regular_file"
    assert "character device" in caught.value.detail


def test_a_fifo_is_refused_at_once(tmp_path):
    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    with pytest.raises(UnreadableFileError) as caught:
        read_regular_file(fifo)  # would block forever in open() without the check
    assert caught.value.reason == "not_a_regular_file"
    assert "FIFO" in caught.value.detail


def test_a_socket_is_refused(tmp_path):
    path = tmp_path / "s.png"
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(path))
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        with pytest.raises(UnreadableFileError, match="socket"):
            read_regular_file(path)
    finally:
        server.close()


def test_the_error_survives_pickling():
    import pickle

    err = pickle.loads(pickle.dumps(UnreadableFileError("too_large", "9 bytes", "/x")))
    assert (err.reason, err.detail, err.path) == ("too_large", "9 bytes", "/x")


def test_resolve_inside_accepts_paths_under_the_root(tmp_path):
    (tmp_path / "images").mkdir()
    assert resolve_inside(tmp_path, "images/a.jpg") == (tmp_path / "images/a.jpg").resolve()
    assert resolve_inside(tmp_path, "images/../images/a.jpg").parent.name == "images"


@pytest.mark.parametrize("name, how", [
    ("../secret/outside.jpg", "climbs out with '..'"),
    ("/etc/passwd", "is absolute"),
    ("link/outside.jpg", "leads out through a link"),
], ids=["dotdot", "absolute", "link"])
def test_resolve_inside_refuses_paths_that_leave_the_root(tmp_path, name, how):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret").mkdir()
    (root / "link").symlink_to(tmp_path / "secret")
    with pytest.raises(PathOutsideRootError, match="--allow-outside-root") as caught:
        resolve_inside(root, name)
    assert how in str(caught.value)
    assert resolve_inside(root, name, allow_outside=True).is_absolute()


def test_atomic_write_leaves_no_temporary_file_on_failure(tmp_path):
    def broken(tmp):
        with open(tmp, "wb") as handle:
            handle.write(b"half")
        raise OSError(28, "No space left on device", tmp)

    with pytest.raises(OSError):
        atomic_write(tmp_path / "out.bin", broken)
    assert os.listdir(tmp_path) == []
    write_bytes(tmp_path / "out.bin", b"whole")
    assert (tmp_path / "out.bin").read_bytes() == b"whole"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_atomic_write_on_a_full_disk_raises_enospc_and_cleans_up(small_disk):
    with pytest.raises(OSError) as caught:
        write_bytes(small_disk / "big.bin", b"\0" * (8 << 20))
    assert caught.value.errno == 28
    assert os.listdir(small_disk) == []


def test_a_writer_that_drops_the_path_gets_it_back(tmp_path):
    def pyarrow_like(tmp):
        raise OSError(28, "error writing bytes to file. detail: [errno 28] No space left")

    with pytest.raises(OSError) as caught:
        atomic_write(tmp_path / "samples.parquet", pyarrow_like)
    assert caught.value.errno == 28 and caught.value.filename == str(tmp_path / "samples.parquet")
    assert caught.value.strerror == "No space left on device"
    assert os.listdir(tmp_path) == []


def test_inside_makes_only_the_folders_below_it(tmp_path):
    write_bytes(tmp_path / "a" / "b" / "c.bin", b"1", inside=tmp_path)
    assert (tmp_path / "a" / "b" / "c.bin").read_bytes() == b"1"
    gone = tmp_path / "stage"  # a stage its failed run removed: never made again
    with pytest.raises(FileNotFoundError):
        write_bytes(gone / "images" / "x.png", b"2", inside=gone)
    assert not gone.exists()
