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


def test_exclusive_lock_says_why_it_cannot_open_its_file(tmp_path: Path) -> None:
    from kyso.files import exclusive_lock

    with pytest.raises(RuntimeError, match="cannot lock: No such file or directory"), \
            exclusive_lock(tmp_path / "missing" / ".lock", lambda why: RuntimeError(f"cannot lock: {why}")):
        pass


def test_exclusive_lock_makes_a_second_holder_wait(tmp_path: Path) -> None:
    import threading

    from kyso.files import exclusive_lock

    order: list[str] = []
    lock = tmp_path / ".lock"
    with exclusive_lock(lock, RuntimeError):
        worker = threading.Thread(target=lambda: _hold(lock, order))
        worker.start()
        worker.join(timeout=0.3)
        order.append("first released")
    worker.join(timeout=10)
    assert order == ["first released", "second held"]
    assert (lock.stat().st_mode & 0o777) == 0o600


def _hold(lock: Path, order: list[str]) -> None:
    from kyso.files import exclusive_lock

    with exclusive_lock(lock, RuntimeError):
        order.append("second held")
