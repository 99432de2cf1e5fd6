"""Audit sinks, and the tamper-evident log every kyso layer records through.

:class:`AuditLog` appends entries (see :mod:`kyso.audit.entry`) to the current segment with
**group commit**: threads that record at the same time are written together with one write and
one ``fdatasync``, and each ``record`` returns only once its event is durable. Several
processes may share one log: each commit holds an exclusive ``flock`` and first catches up
with what the others wrote.

A writer killed mid-write can leave an incomplete last line (a *torn tail*). The next writer
never drops it silently and never treats it as an event: it moves the bytes to ``torn/``,
truncates the segment to the last complete entry, and records an ``AUDIT_TORN_TAIL`` event
with their size and SHA-256. Anything else that does not chain (a changed, missing or added
entry) makes the writer refuse to append — run ``kyso audit verify`` to see what happened.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from kyso.audit.entry import GENESIS, encode_entry, entry_head
from kyso.audit.events import AuditEvent, Layer, Outcome
from kyso.audit.merkle import Frontier, leaf_hash
from kyso.audit.segments import (
    Layout,
    Segment,
    TreeState,
    fsync_dir,
    iter_lines,
    list_segments,
    read_bytes,
    read_state,
    segment_name,
    write_state,
)
from kyso.clock import Clock, SystemClock
from kyso.config import AuditSettings
from kyso.errors import AuditError

VN = dt.timezone(dt.timedelta(hours=7), "ICT")
WRITER = "kyso:audit-log"


class AuditSink(Protocol):
    def record(self, event: AuditEvent) -> None: ...

    def record_many(self, events: list[AuditEvent]) -> None:
        """Several events, durable together (one write and one fsync for a batch)."""
        ...


class MemoryAuditLog:
    """Keeps events in memory; for tests and library users who route events themselves."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def record(self, event: AuditEvent) -> None:
        self.events.append(event)

    def record_many(self, events: list[AuditEvent]) -> None:
        self.events.extend(events)


@dataclass
class _Tip:
    """Where the next entry goes; cached while this process holds the newest head file."""

    size: int
    last_hash: str
    frontier: Frontier
    segment: Segment | None  # None until the first entry of an empty log
    offset: int
    fd: int | None


@dataclass(frozen=True)
class _Torn:
    segment: Segment
    offset: int
    data: bytes


class AuditLog:
    """The segmented, hash-chained, Merkle-tree audit log (an :class:`AuditSink`)."""

    def __init__(self, directory: Path, settings: AuditSettings | None = None,
                 clock: Clock | None = None) -> None:
        self.layout = Layout(directory)
        self.settings = settings or AuditSettings()
        self.clock = clock or SystemClock()
        self._cond = threading.Condition()
        self._queue: list[tuple[int, list[dict[str, Any]]]] = []
        self._tickets = 0
        self._flushing = False
        self._results: dict[int, list[int] | BaseException] = {}
        self._tip: _Tip | None = None
        self._lock_fd: int | None = None

    def __repr__(self) -> str:
        return f"AuditLog({self.layout.root})"

    # -- the sink interface --------------------------------------------------------------

    def record(self, event: AuditEvent) -> None:
        self.append([event])

    def record_many(self, events: list[AuditEvent]) -> None:
        self.append(events)

    def append(self, events: Sequence[AuditEvent]) -> list[int]:
        """Append ``events`` durably; return their sequence numbers."""
        if not events:
            return []
        dicts = [e.to_dict() for e in events]  # scrubbing happens outside every lock
        with self._cond:
            self._tickets += 1
            ticket = self._tickets
            self._queue.append((ticket, dicts))
            while ticket not in self._results and self._flushing:
                self._cond.wait()
            if ticket in self._results:
                return self._take(ticket)
            self._flushing = True  # this thread leads the next group commit
            batch, self._queue = self._queue, []
        outcome: list[list[int]] | BaseException
        try:
            outcome = self._commit([d for _t, d in batch])
        except BaseException as exc:  # every waiter learns of the failure, then it propagates
            outcome = exc
        with self._cond:
            for i, (t, _d) in enumerate(batch):
                self._results[t] = outcome if isinstance(outcome, BaseException) else outcome[i]
            self._flushing = False
            self._cond.notify_all()
            return self._take(ticket)

    def _take(self, ticket: int) -> list[int]:
        result = self._results.pop(ticket)
        if isinstance(result, AuditError):
            raise AuditError(str(result))
        if isinstance(result, BaseException):
            raise result
        return result

    def close(self) -> None:
        with self._cond:
            self._forget_tip()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    # -- one group commit ----------------------------------------------------------------

    def _commit(self, groups: list[list[dict[str, Any]]]) -> list[list[int]]:
        try:
            with self.locked():
                tip, torn = self._current_tip()
                extra = [self._quarantine(tip, torn)] if torn else []
                events = extra + [d for g in groups for d in g]
                tip = self._segment_for(tip, events[0]["time"])
                seqs = self._write(tip, events)
        except OSError as exc:
            self._forget_tip()
            raise AuditError(f"cannot write the audit log in {self.layout.root}: "
                             f"{exc.strerror or exc}") from None
        except AuditError:
            self._forget_tip()
            raise
        out = []
        start = len(extra)
        for g in groups:
            out.append(seqs[start:start + len(g)])
            start += len(g)
        return out

    @contextmanager
    def locked(self) -> Iterator[None]:
        if self._lock_fd is None:
            self.layout.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.layout.segments.mkdir(exist_ok=True, mode=0o700)
            self._lock_fd = os.open(self.layout.lock, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _forget_tip(self) -> None:
        if self._tip is not None and self._tip.fd is not None:
            os.close(self._tip.fd)
        self._tip = None

    def _still_ours(self, tip: _Tip) -> bool:
        """True when nobody else appended since our last commit: the head file still names
        our size and segment, and the segment still ends where we left it."""
        try:
            head = read_state(self.layout.head, "head file")
        except AuditError:
            return False
        if tip.segment is None or tip.fd is None:
            return head is None
        return (head is not None and head.size == tip.size and head.segment == tip.segment.name
                and os.fstat(tip.fd).st_size == tip.offset)

    def _current_tip(self) -> tuple[_Tip, _Torn | None]:
        tip = self._tip
        if tip is not None and self._still_ours(tip):
            return tip, None
        self._forget_tip()
        state, torn = catch_up(self.layout)
        segments, _ = list_segments(self.layout)
        segment, fd, offset = None, None, 0
        if segments and segments[-1].first <= state.size:
            segment = segments[-1]
            fd = os.open(segment.path, os.O_WRONLY | os.O_APPEND)
            offset = os.fstat(fd).st_size - (len(torn.data) if torn else 0)
        self._tip = _Tip(state.size, state.last_hash, state.tree(), segment, offset, fd)
        return self._tip, torn

    def _quarantine(self, tip: _Tip, torn: _Torn) -> dict[str, Any]:
        """Keep the torn bytes, cut them from the segment, and return the event saying so."""
        digest = hashlib.sha256(torn.data).hexdigest()
        self.layout.torn.mkdir(exist_ok=True, mode=0o700)
        kept = self.layout.torn / f"{torn.segment.name}@{torn.offset}.bin"
        fd = os.open(kept, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, torn.data)
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(kept.parent)
        fd = os.open(torn.segment.path, os.O_WRONLY)
        try:
            os.ftruncate(fd, torn.offset)
            os.fsync(fd)
        finally:
            os.close(fd)
        tip.offset = torn.offset
        event = AuditEvent(time=self.clock.now(), layer=Layer.AUDIT, action="AUDIT_TORN_TAIL",
                           outcome=Outcome.FAILURE, actor=WRITER,
                           object=f"segment:{torn.segment.name}",
                           details={"offset": torn.offset, "bytes": len(torn.data),
                                    "sha256": digest, "kept_as": f"torn/{kept.name}",
                                    "after_seq": tip.size - 1})
        return event.to_dict()

    def _segment_for(self, tip: _Tip, time_text: str) -> _Tip:
        """Rotate when the current segment is of another day or has reached its size."""
        when = dt.datetime.fromisoformat(time_text)
        if tip.segment is not None and tip.fd is not None:
            day = when.astimezone(VN).strftime("%Y%m%d")
            full = tip.offset >= self.settings.segment_max_bytes
            other_day = self.settings.rotate_daily and day != tip.segment.day
            if tip.offset == 0 or not (full or other_day):
                return tip
            os.close(tip.fd)
            tip.fd = None
            os.chmod(tip.segment.path, 0o400)  # sealed: never appended to again
        tip.segment = self._new_segment(tip.size, when)
        tip.fd = os.open(tip.segment.path, os.O_WRONLY | os.O_APPEND)
        tip.offset = 0
        return tip

    def _new_segment(self, first: int, when: dt.datetime) -> Segment:
        day = when.astimezone(VN).strftime("%Y%m%d")
        path = self.layout.segments / segment_name(first, day)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        fsync_dir(self.layout.segments)
        return Segment(first, day, path)

    def _write(self, tip: _Tip, events: list[dict[str, Any]]) -> list[int]:
        assert tip.segment is not None
        assert tip.fd is not None
        lines = []
        seqs = []
        size, last, frontier = tip.size, tip.last_hash, tip.frontier.copy()
        for event in events:
            line = encode_entry(size, last, event)
            h = leaf_hash(line)
            frontier.append(h)
            lines.append(line)
            seqs.append(size)
            size, last = size + 1, h.hex()
        data = b"\n".join(lines) + b"\n"
        view = memoryview(data)
        while view:
            written = os.write(tip.fd, view)
            view = view[written:]
        os.fdatasync(tip.fd)
        tip.size, tip.last_hash, tip.frontier = size, last, frontier
        tip.offset += len(data)
        state = TreeState(size, last, tuple(frontier.hashes), tip.segment.name, tip.offset)
        write_state(self.layout.head, state, durable=False)
        return seqs


def catch_up(layout: Layout) -> tuple[TreeState, _Torn | None]:
    """The tree state after the last complete entry, read from the head file (when it is
    sound) and then forward through the segments; plus a torn tail if one is there. Entries
    that do not chain make this raise: the writer never appends to a damaged log."""
    segments, _ = list_segments(layout)
    base = read_state(layout.base, "purge record")
    try:
        head = read_state(layout.head, "head file")
    except AuditError:
        head = None  # a claim only; rebuild it from the entries
    by_name = {s.name: i for i, s in enumerate(segments)}
    if head is not None and head.segment in by_name and (base is None or head.size >= base.size):
        state, index, offset = head, by_name[head.segment], head.offset
    else:
        state = base or TreeState(0, GENESIS, ())
        index = next((i for i, s in enumerate(segments) if s.first >= state.size), len(segments))
        offset = 0
    frontier = state.tree()
    size, last = state.size, state.last_hash
    torn: _Torn | None = None
    for i in range(index, len(segments)):
        segment = segments[i]
        data = read_bytes(segment.path)
        if offset > len(data):
            raise AuditError(f"audit log is damaged: {segment.name} is shorter than the head "
                             "file records (truncated?); run `kyso audit verify`")
        if offset == 0 and segment.first != size:
            raise AuditError(f"audit log is damaged: segment {segment.name} should start at "
                             f"seq {size}; run `kyso audit verify`")
        for line in iter_lines(data[offset:]):
            if not line.complete:
                torn = _Torn(segment, offset + line.offset, line.data)
                break
            if not line.data.startswith(entry_head(size, last)):
                raise AuditError(f"audit log is damaged at seq {size} ({segment.name} line "
                                 f"{line.number}); run `kyso audit verify`")
            h = leaf_hash(line.data)
            frontier.append(h)
            size, last = size + 1, h.hex()
        if torn is not None and i != len(segments) - 1:
            raise AuditError(f"audit log is damaged: an incomplete entry in {segment.name} is "
                             "not at the end of the log; run `kyso audit verify`")
        offset = 0
    return TreeState(size, last, tuple(frontier.hashes)), torn
