"""The audit log on disk.

::

    <home>/audit/
      segments/000000000000-20261123.jsonl   entries, one per line; named by first seq and day
      checkpoints/000000001000.note           signed checkpoints, named by tree size
      head.json                               where the writer stands (a claim, not trusted)
      base.json                               after a purge: the tree state at the cut
      torn/                                   incomplete tails a crashed writer left, kept
      verified.json                           the last full verification

Segments rotate daily (the date in Asia/Ho_Chi_Minh, where the log is read) or by size; only
the last one is ever appended to, and sealed ones are made read-only.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kyso.audit.merkle import HASH_SIZE, Frontier
from kyso.errors import AuditError

_SEGMENT = re.compile(r"([0-9]{12})-([0-9]{8})\.jsonl")


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def segments(self) -> Path:
        return self.root / "segments"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def torn(self) -> Path:
        return self.root / "torn"

    @property
    def head(self) -> Path:
        return self.root / "head.json"

    @property
    def base(self) -> Path:
        return self.root / "base.json"

    @property
    def verified(self) -> Path:
        return self.root / "verified.json"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"


@dataclass(frozen=True)
class Segment:
    first: int
    day: str  # YYYYMMDD
    path: Path

    @property
    def name(self) -> str:
        return self.path.name


def segment_name(first: int, day: str) -> str:
    return f"{first:012d}-{day}.jsonl"


def list_segments(layout: Layout) -> tuple[list[Segment], list[Path]]:
    """Segments in order of their first sequence number, and any other files found there."""
    if not layout.segments.is_dir():
        return [], []
    found: list[Segment] = []
    strays: list[Path] = []
    for path in layout.segments.iterdir():
        m = _SEGMENT.fullmatch(path.name)
        if m and path.is_file():
            found.append(Segment(int(m.group(1)), m.group(2), path))
        elif not path.name.startswith("."):
            strays.append(path)
    found.sort(key=lambda s: s.first)
    return found, sorted(strays)


def segments_from(segments: list[Segment], start: int) -> list[Segment]:
    """The segments that can hold entries from ``start`` on: the ones wholly before it (or
    left over from an interrupted purge at ``start``) are dropped."""
    return [s for i, s in enumerate(segments)
            if not (i + 1 < len(segments) and segments[i + 1].first <= start)]


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise AuditError(f"cannot read {path}: {exc.strerror}") from None


@dataclass(frozen=True)
class Line:
    number: int  # 1-based line number inside the segment
    offset: int  # byte offset of the line's start
    data: bytes
    complete: bool  # ended by a newline


def iter_lines(data: bytes) -> Iterator[Line]:
    offset = 0
    number = 0
    size = len(data)
    while offset < size:
        end = data.find(b"\n", offset)
        number += 1
        if end < 0:
            yield Line(number, offset, data[offset:], False)
            return
        yield Line(number, offset, data[offset:end], True)
        offset = end + 1


@dataclass(frozen=True)
class TreeState:
    """The tree after ``size`` entries: enough to append, to chain the next entry, and to
    compute any later root or proof without the entries before ``size``."""

    size: int
    last_hash: str  # hex leaf hash of entry size-1 (GENESIS when empty)
    frontier: tuple[bytes, ...]
    segment: str = ""  # head only: the segment holding the next append
    offset: int = 0  # head only: its length after entry size-1

    def tree(self) -> Frontier:
        return Frontier(self.size, list(self.frontier))

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "last_hash": self.last_hash,
            "frontier": [base64.b64encode(h).decode("ascii") for h in self.frontier],
            "segment": self.segment,
            "offset": self.offset,
        }

    @classmethod
    def from_dict(cls, data: object, what: str) -> TreeState:
        try:
            if not isinstance(data, dict):
                raise TypeError
            size, last, frontier = data["size"], data["last_hash"], data["frontier"]
            segment, offset = data.get("segment", ""), data.get("offset", 0)
            if (type(size) is not int or size < 0 or not isinstance(last, str)
                    or not re.fullmatch(r"[0-9a-f]{64}", last) or not isinstance(frontier, list)
                    or not isinstance(segment, str) or type(offset) is not int or offset < 0):
                raise TypeError
            hashes = tuple(base64.b64decode(h, validate=True) for h in frontier)
        except (KeyError, TypeError, ValueError, binascii.Error):
            raise AuditError(f"{what} is damaged (not a tree state)") from None
        if any(len(h) != HASH_SIZE for h in hashes) or len(hashes) != bin(size).count("1"):
            raise AuditError(f"{what} is damaged (its frontier does not fit its size)")
        return cls(size, last, hashes, segment, offset)


def read_state(path: Path, what: str) -> TreeState | None:
    if not path.exists():
        return None
    try:
        data = json.loads(read_bytes(path))
    except ValueError:
        raise AuditError(f"{what} {path} is damaged (not JSON)") from None
    return TreeState.from_dict(data, f"{what} {path}")


def write_state(path: Path, state: TreeState | dict[str, Any], *, durable: bool) -> None:
    """Replace a small state file atomically (fsync only when ``durable``)."""
    data = state.to_dict() if isinstance(state, TreeState) else state
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(json.dumps(data, indent=1, sort_keys=True).encode() + b"\n")
        while view:
            view = view[os.write(fd, view):]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if durable:
        fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
