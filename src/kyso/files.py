"""Atomic, permission-aware file writes: a reader sees the old file or the new one, never half."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) with mode 0700 if missing."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


@contextmanager
def atomic_output(path: Path, *, mode: int = 0o644, exclusive: bool = True
                  ) -> Iterator[BinaryIO]:
    """A new file for ``path``, open for reading and writing: written under a temporary name in
    the same directory, made visible (fsync, then link or rename) only when the block ends
    without an error, removed otherwise. ``mode`` is set before any byte is written; with
    ``exclusive`` an existing ``path`` is never replaced (FileExistsError)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w+b") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        if exclusive:
            os.link(tmp, path)  # fails with FileExistsError, never overwrites
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


@contextmanager
def exclusive_lock(path: Path, fail: Callable[[str], Exception]) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created 0600) for the block; ``fail(reason)``
    is raised when the lock file cannot be opened."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise fail(exc.strerror or str(exc)) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644, exclusive: bool = False) -> None:
    """Write ``data`` to ``path`` through a temporary file, fsync and rename.

    ``mode`` is applied before any byte is written, so a 0600 file is never readable by others.
    With ``exclusive`` an existing file is never replaced (FileExistsError).
    """
    with atomic_output(path, mode=mode, exclusive=exclusive) as fh:
        fh.write(data)


def _fsync_dir(directory: Path) -> None:
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def spreadsheet_safe(value: object) -> str:
    """A CSV cell a spreadsheet shows as text and never runs as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


class StagedFiles:
    """Files written under hidden names first, made visible together once the work they belong
    to is committed — or removed if it is not. A certificate is never stored while its only
    key is still in memory."""

    def __init__(self) -> None:
        self._items: list[tuple[Path, Path]] = []

    def add(self, final: Path, data: bytes, *, mode: int = 0o644) -> None:
        staged = final.with_name(f".{final.name}.staged")
        atomic_write(staged, data, mode=mode, exclusive=True)
        self._items.append((staged, final))

    @property
    def finals(self) -> list[Path]:
        return [final for _staged, final in self._items]

    def publish(self) -> None:
        for staged, final in self._items:
            os.link(staged, final)  # never replaces: FileExistsError if someone took the name
            os.unlink(staged)
        self._items.clear()

    def discard(self) -> None:
        for staged, _final in self._items:
            with contextlib.suppress(FileNotFoundError):
                staged.unlink()
        self._items.clear()
