"""Atomic writes: the file is whole or absent, old content survives a failed write, no temporary is left."""

from __future__ import annotations

import errno
import os

import pytest

from pseudoanomaly.io import atomic_path, atomic_write


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = atomic_write(tmp_path / "a.json", lambda f: f.write(b"old"))

    def fail(f):
        f.write(b"half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        atomic_write(target, fail)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["a.json"]


def test_a_full_disk_names_the_target_not_the_temporary(tmp_path):
    def full(f):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OSError, match="No space left on device") as info:
        atomic_write(tmp_path / "report.md", full)
    assert info.value.filename == str(tmp_path / "report.md")
    assert os.listdir(tmp_path) == []


def test_path_writers_get_a_temporary_name_with_the_ending_they_need(tmp_path):
    with atomic_path(tmp_path / "out" / "map.nii.gz", suffix=".nii.gz") as part:
        assert part.name.endswith(".tmp.nii.gz") and part.parent == tmp_path / "out"
        part.write_bytes(b"nifti")
        assert not (tmp_path / "out" / "map.nii.gz").exists()  # nothing visible before the block ends
    assert (tmp_path / "out" / "map.nii.gz").read_bytes() == b"nifti"
    assert os.listdir(tmp_path / "out") == ["map.nii.gz"]


def test_files_get_the_permissions_open_would_give(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "shared.npz", lambda f: f.write(b"x"))
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_temporaries_of_killed_writers_are_removed_and_others_kept(tmp_path):
    dead = tmp_path / ".a.json.999999999.0badc0de.tmp"  # no such process
    dead.write_bytes(b"half")
    alive = tmp_path / f".a.json.{os.getpid()}.0badc0de.tmp"  # a write of this process in flight
    alive.write_bytes(b"half")
    other = tmp_path / ".b.json.999999999.0badc0de.tmp"  # another file's: not ours to remove
    other.write_bytes(b"x")
    atomic_write(tmp_path / "a.json", lambda f: f.write(b"{}"))
    assert not dead.exists() and alive.exists() and other.exists()
