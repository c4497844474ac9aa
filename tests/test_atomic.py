"""gankit.atomic, the one atomic writer: files follow the umask, failures leave nothing, folders swap whole."""

from __future__ import annotations

import os
import stat

import pytest

from gankit.atomic import atomic_write, staged_dir, write_atomic
from gankit.errors import GankitError


@pytest.fixture
def umask():
    def set_mask(mask: int) -> None:
        os.umask(mask)

    old = os.umask(0o022)
    yield set_mask
    os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_follow_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    path = write_atomic(tmp_path / "f.bin", b"abc")
    assert stat.S_IMODE(path.stat().st_mode) == mode
    plain = tmp_path / "plain"
    plain.write_bytes(b"x")  # what open() makes under the same umask
    assert stat.S_IMODE(plain.stat().st_mode) == mode


def test_failure_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = write_atomic(tmp_path / "f.bin", b"old")
    with pytest.raises(RuntimeError):
        with atomic_write(path) as handle:
            handle.write(b"new, half written")
            raise RuntimeError("boom")
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_os_errors_become_one_gankit_error_naming_the_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(GankitError, match=r"Cannot write thing .*file/sub/out"):
        write_atomic(blocker / "sub" / "out", b"", "thing")
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_staged_dir_swaps_a_whole_folder(tmp_path):
    final = tmp_path / "ckpt"
    with staged_dir(final) as tmp:
        (tmp / "a").write_text("1")
    assert (final / "a").read_text() == "1"
    with pytest.raises(RuntimeError):
        with staged_dir(final) as tmp:
            (tmp / "a").write_text("2")
            raise RuntimeError("killed mid-write")
    assert (final / "a").read_text() == "1" and [p.name for p in tmp_path.iterdir()] == ["ckpt"]
    with staged_dir(final) as tmp:
        (tmp / "b").write_text("3")
    assert sorted(p.name for p in final.iterdir()) == ["b"] and [p.name for p in tmp_path.iterdir()] == ["ckpt"]
