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

import _thread
import datetime as dt
import fcntl
import hashlib
import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from kyso.audit.entry import GENESIS, encode_body, entry_head, join_entry
from kyso.audit.events import AuditEvent, Layer, Outcome
from kyso.audit.merkle import Frontier, leaf_hash
from kyso.audit.segments import (
    Layout,
    Segment,
    TreeState,
    fsync_dir,
    iter_lines,
    list_segments,
    read_state,
    segment_name,
    write_state,
)
from kyso.clock import Clock, SystemClock
from kyso.config import AuditSettings
from kyso.errors import AuditError

VN = dt.timezone(dt.timedelta(hours=7), "ICT")
WRITER = "kyso:audit-log"
HEAD_INTERVAL = 1.0  # seconds between head-file refreshes while appending


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


class _Batch:
    """Events of the callers who arrived while the previous commit ran. Callers sleep on
    raw locks (the cheapest wake-up CPython has): each holds its own and blocks acquiring it
    again until the committer releases it."""

    def __init__(self) -> None:
        self.groups: list[list[tuple[bytes, dt.datetime]]] = []
        self.sleepers: list[Any] = []  # one held lock per caller waiting for the outcome
        self.turn = _thread.allocate_lock()  # held until this batch may be committed
        self.turn.acquire()
        self.seqs: list[list[int]] = []
        self.error: BaseException | None = None

    def wake_all(self) -> None:
        for sleeper in self.sleepers:
            sleeper.release()


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
        self._mutex = threading.Lock()
        self._open = _Batch()
        self._flushing = False
        self._tip: _Tip | None = None
        self._lock_fd: int | None = None
        self._head_written = -HEAD_INTERVAL

    def __repr__(self) -> str:
        return f"AuditLog({self.layout.root})"

    # -- the sink interface --------------------------------------------------------------

    def record(self, event: AuditEvent) -> None:
        self.append([event])

    def record_many(self, events: list[AuditEvent]) -> None:
        self.append(events)

    def append(self, events: Sequence[AuditEvent]) -> list[int]:
        """Append ``events`` durably; return their sequence numbers.

        Group commit: callers join the open batch. The first caller of a batch commits it
        when the commit before it is done (or at once if none is running); the others sleep
        until their batch is durable — one wake-up each, however many threads wait."""
        if not events:
            return []
        # Scrubbing and encoding happen here, outside every lock; the commit only numbers and
        # chains the encoded bodies.
        items = [(encode_body(e.to_dict()), e.time) for e in events]
        with self._mutex:
            batch = self._open
            slot = len(batch.groups)
            batch.groups.append(items)
            leads = slot == 0
            if leads and not self._flushing:  # nothing running: commit this batch at once
                self._flushing = True
                self._open = _Batch()
                batch.turn.release()
            # otherwise the batch stays open until the running commit hands it its turn
            if not leads:
                sleeper = _thread.allocate_lock()
                sleeper.acquire()
                batch.sleepers.append(sleeper)
        if leads:
            batch.turn.acquire()
            self._run(batch)
        else:
            sleeper.acquire()
        if batch.error is not None:
            if isinstance(batch.error, AuditError):
                raise AuditError(str(batch.error))
            raise batch.error
        return batch.seqs[slot]

    def _run(self, batch: _Batch) -> None:
        try:
            batch.seqs = self._commit(batch.groups)
        except BaseException as exc:  # every caller of the batch learns of it
            batch.error = exc
        finally:
            with self._mutex:
                nxt = self._open
                if nxt.groups:  # hand over to the first caller of the next batch
                    self._open = _Batch()
                    nxt.turn.release()
                else:
                    self._flushing = False
                batch.wake_all()

    def close(self) -> None:
        with self._mutex:
            if self._tip is not None and self._lock_fd is not None:
                with self.locked():
                    if self._still_ours(self._tip):
                        self._write_head(self._tip)
            self._forget_tip()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    # -- one group commit ----------------------------------------------------------------

    def _commit(self, groups: list[list[tuple[bytes, dt.datetime]]]) -> list[list[int]]:
        try:
            with self.locked():
                tip, torn = self._current_tip()
                extra = [(self._quarantine(tip, torn), self.clock.now())] if torn else []
                items = extra + [item for g in groups for item in g]
                tip = self._segment_for(tip, items[0][1])
                seqs = self._write(tip, [body for body, _when in items])
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
        """True when nobody else appended since our last commit: our segment still ends where
        we left it and was not sealed by a writer that rotated (one fstat)."""
        if tip.segment is None or tip.fd is None:
            return not list_segments(self.layout)[0]
        st = os.fstat(tip.fd)
        return st.st_size == tip.offset and bool(st.st_mode & 0o200)

    def _current_tip(self) -> tuple[_Tip, _Torn | None]:
        tip = self._tip
        if tip is not None and self._still_ours(tip):
            return tip, None
        known = None
        if tip is not None and tip.segment is not None:  # another writer appended: read on
            known = TreeState(tip.size, tip.last_hash, tuple(tip.frontier.hashes),  # from
                              tip.segment.name, tip.offset)                        # our place
        self._forget_tip()
        state, torn = catch_up(self.layout, known)
        segments, _ = list_segments(self.layout)
        segment, fd, offset = None, None, 0
        # A sealed last segment means a writer stopped between sealing it and starting the
        # next one: start the next one now.
        if (segments and segments[-1].first <= state.size
                and (torn is not None or os.stat(segments[-1].path).st_mode & 0o200)):
            segment = segments[-1]
            fd = os.open(segment.path, os.O_WRONLY | os.O_APPEND)
            offset = os.fstat(fd).st_size - (len(torn.data) if torn else 0)
        self._tip = _Tip(state.size, state.last_hash, state.tree(), segment, offset, fd)
        return self._tip, torn

    def _quarantine(self, tip: _Tip, torn: _Torn) -> bytes:
        """Keep the torn bytes, cut them from the segment, and return the event saying so."""
        digest = hashlib.sha256(torn.data).hexdigest()
        self.layout.torn.mkdir(exist_ok=True, mode=0o700)
        # Named without the zero-padded seq: a 12-digit run would be masked as an ID number.
        label = f"{torn.segment.first}-{torn.segment.day}"
        # Unique per content: a torn tail at the same place twice (the recording write itself
        # torn) never overwrites the first one.
        kept = self.layout.torn / f"{label}@{torn.offset}-{digest[:16]}.bin"
        if not kept.exists():
            tmp = kept.with_name(f".{kept.name}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                _write_all(fd, torn.data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, kept)
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
                           object=f"segment:{label}",
                           details={"offset": torn.offset, "bytes": len(torn.data),
                                    "sha256": digest, "kept_as": f"torn/{kept.name}",
                                    "after_seq": tip.size - 1})
        return encode_body(event.to_dict())

    def _segment_for(self, tip: _Tip, when: dt.datetime) -> _Tip:
        """Rotate when the current segment is of another day or has reached its size."""
        if tip.segment is not None and tip.fd is not None:
            day = when.astimezone(VN).strftime("%Y%m%d")
            full = tip.offset >= self.settings.segment_max_bytes
            other_day = self.settings.rotate_daily and day != tip.segment.day
            if tip.offset == 0 or not (full or other_day):
                return tip
            os.close(tip.fd)
            tip.fd = None
            os.chmod(tip.segment.path, 0o400)  # sealed: never appended to again
            self._head_written = -HEAD_INTERVAL  # name the new segment in the head promptly
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

    def _write(self, tip: _Tip, bodies: list[bytes]) -> list[int]:
        assert tip.segment is not None
        assert tip.fd is not None
        lines = []
        seqs = []
        size, last, frontier = tip.size, tip.last_hash, tip.frontier.copy()
        for body in bodies:
            line = join_entry(size, last, body)
            h = leaf_hash(line)
            frontier.append(h)
            lines.append(line)
            seqs.append(size)
            size, last = size + 1, h.hex()
        data = b"\n".join(lines) + b"\n"
        _write_all(tip.fd, data)
        os.fdatasync(tip.fd)
        tip.size, tip.last_hash, tip.frontier = size, last, frontier
        tip.offset += len(data)
        now = time.monotonic()
        if now - self._head_written >= HEAD_INTERVAL:
            self._write_head(tip)
            self._head_written = now
        return seqs

    def _write_head(self, tip: _Tip) -> None:
        """The head file: where the writer stands, so the next process need not re-read the
        whole segment. Refreshed at most every HEAD_INTERVAL seconds, on rotation and on close;
        a stale head only means a longer catch-up."""
        if tip.segment is None:
            return
        state = TreeState(tip.size, tip.last_hash, tuple(tip.frontier.hashes), tip.segment.name,
                          tip.offset)
        write_state(self.layout.head, state, durable=False)


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until everything is written (a write may be short)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _read_from(segment: Segment, offset: int) -> bytes:
    try:
        with open(segment.path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if offset > size:
                raise AuditError(f"audit log is damaged: {segment.name} is shorter than the "
                                 "head file records (truncated?); run `kyso audit verify`")
            fh.seek(offset)
            return fh.read()
    except OSError as exc:
        raise AuditError(f"cannot read {segment.path}: {exc.strerror}") from None


def catch_up(layout: Layout, known: TreeState | None = None) -> tuple[TreeState, _Torn | None]:
    """The tree state after the last complete entry, read from where this writer last stood
    (``known``) or else the head file (when it is sound), then forward through the segments;
    plus a torn tail if one is there. Entries that do not chain make this raise: the writer
    never appends to a damaged log."""
    segments, _ = list_segments(layout)
    base = read_state(layout.base, "purge record")
    head: TreeState | None = known
    if head is None:
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
        data = _read_from(segment, offset)  # only what was appended after our place
        if offset == 0 and segment.first != size:
            raise AuditError(f"audit log is damaged: segment {segment.name} should start at "
                             f"seq {size}; run `kyso audit verify`")
        for line in iter_lines(data):
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
