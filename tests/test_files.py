from __future__ import annotations

import stat
from pathlib import Path

import pytest

from kyso.files import atomic_write


def test_atomic_write_sets_mode_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "key.pem"
    atomic_write(target, b"secret", mode=0o600)
    assert target.read_bytes() == b"secret"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["key.pem"]


def test_exclusive_write_never_replaces_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "ca.key.pem"
    target.write_bytes(b"original")
    with pytest.raises(FileExistsError):
        atomic_write(target, b"new", exclusive=True)
    assert target.read_bytes() == b"original"
    assert [p.name for p in tmp_path.iterdir()] == ["ca.key.pem"]


def test_plain_write_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "crl.pem"
    atomic_write(target, b"one" * 1000)
    atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
