"""Audit sinks, and the tamper-evident log every kyso layer records through.

:class:`AuditLog` appends entries (see :mod:`kyso.audit.entry`) to the current segment with
**group commit**: threads that record at the same time are written together with one write and
one ``fdatasync``, and each ``record`` returns only once its event is durable. A caller who
finds nobody else recording commits its own event at once (no thread wake-up on the way). When
callers overlap, a writer thread (started on demand, ended when idle or at ``close``) does the
work: callers only queue their events and sleep; it scrubs, encodes and chains the whole batch,
commits it and wakes them all with one system call. Several processes may share one log: each
commit holds an exclusive ``flock`` and first catches up with what the others wrote.

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
import itertools
import os
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from kyso.audit.entry import GENESIS, encode_body, encode_event, entry_head, join_entry
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
WRITER_IDLE = 2.0  # seconds a writer thread waits for work before it ends
_EVENTFD = hasattr(os, "eventfd")  # Linux


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


class _Waiter:
    """One caller's events on their way to the disk, and then the seq of the first or the
    error."""

    __slots__ = ("error", "events", "first")

    def __init__(self, events: Sequence[AuditEvent]) -> None:
        self.events = events
        self.first = -1
        self.error: BaseException | None = None


class _Gate:
    """Where the callers of one batch sleep until it is durable: an eventfd (a pipe where
    there is none) each of them reads once. The writer wakes them all with one ``write``,
    made without the GIL — releasing a lock per caller costs a futex wake-up each, with the
    GIL held — and the last caller to wake closes it."""

    __slots__ = ("count", "read_fd", "sleepers", "woke", "write_fd")

    def __init__(self) -> None:
        if _EVENTFD:
            self.read_fd = self.write_fd = os.eventfd(0, os.EFD_SEMAPHORE | os.EFD_CLOEXEC)
        else:  # where os.eventfd is missing (the tests force this path too)
            self.read_fd, self.write_fd = os.pipe()
        self.sleepers = 0  # set when the gate opens; until then nobody can be the last
        self.count = itertools.count()
        self.woke = 0  # about how many callers are past wait() (a hint for the writer)

    def wait(self) -> None:
        try:
            os.read(self.read_fd, 8 if _EVENTFD else 1)  # eventfd: one count; pipe: one byte
        finally:
            woke = next(self.count) + 1  # atomic: one C call under the GIL
            self.woke = woke
            if woke == self.sleepers:
                os.close(self.read_fd)

    def open(self, sleepers: int) -> None:
        """Wake the ``sleepers`` callers (each takes one count, or byte, and goes)."""
        self.sleepers = sleepers
        if _EVENTFD:
            os.eventfd_write(self.write_fd, sleepers)
        else:
            try:
                _write_all(self.write_fd, b"\0" * sleepers)
            finally:
                os.close(self.write_fd)

    def discard(self) -> None:
        """Close a gate nobody sleeps at."""
        os.close(self.read_fd)
        if self.write_fd != self.read_fd:
            os.close(self.write_fd)


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
        self._mutex = threading.Lock()  # guards the fields below, held for moments only
        self._pending: list[_Waiter] = []  # callers waiting for the next commit
        self._gate: _Gate | None = None  # where they sleep
        self._spare: _Gate | None = None  # the writer's, ready for the next batch
        self._writer: threading.Thread | None = None
        self._writer_id = 0
        self._idle = True  # no writer is running, or it sleeps on _wake
        self._wake = _thread.allocate_lock()  # held except to wake an idle writer
        self._wake.acquire()
        self._closing = False
        self._inline = 0  # the thread committing its own events (nobody else was recording)
        self._io = threading.Lock()  # held by one commit, or by close(), at a time
        self._tip: _Tip | None = None
        self._lock_fd: int | None = None
        self._head_written = -HEAD_INTERVAL
        _LIVE.add(self)

    def __repr__(self) -> str:
        return f"AuditLog({self.layout.root})"

    # -- the sink interface --------------------------------------------------------------

    def record(self, event: AuditEvent) -> None:
        self._submit((event,))

    def record_many(self, events: list[AuditEvent]) -> None:
        if events:
            self._submit(events)

    def append(self, events: Sequence[AuditEvent]) -> list[int]:
        """Append ``events`` durably; return their sequence numbers.

        Group commit: a writer thread takes the events of every caller that arrived since
        its last commit, scrubs and encodes them, chains them, and writes them with one
        ``write`` and one ``fdatasync``; each caller sleeps until its events are durable."""
        if not events:
            return []
        first = self._submit(events)
        return list(range(first, first + len(events)))

    def _submit(self, events: Sequence[AuditEvent]) -> int:
        # As little as possible happens in the caller: every line of Python here delays the
        # hand-over of the GIL to the next woken caller.
        me = _thread.get_ident()
        if me in (self._writer_id, self._inline):  # from an event's __str__: it would wait forever
            raise AuditError("an audit event cannot be recorded while the audit log's writer "
                             "encodes another one")
        waiter = _Waiter(events)
        alone = False
        with self._mutex:
            if self._idle and not self._pending and not self._inline:
                # Nobody else is recording: commit here. Waking a sleeping writer and being
                # woken by it costs two thread wake-ups (~0.6 ms on a VM) for one event.
                self._inline = me
                inline = True
            else:
                inline = False
        if inline:
            try:
                self._commit_batch([waiter])
            finally:
                self._hand_over()
            return self._outcome(waiter)
        with self._mutex:
            gate = self._gate
            if gate is None:  # the first caller, or the writer could not prepare one
                try:
                    gate = self._gate = _Gate()
                except OSError as exc:
                    raise AuditError(f"cannot append to the audit log: {exc.strerror}") from None
            self._pending.append(waiter)
            if self._idle and not self._inline:  # else the inline committer hands them over
                self._idle = False
                if self._writer is not None:
                    self._wake.release()
                else:
                    alone = not self._start_writer()
        if alone:  # no thread to be had: commit here what is pending, this caller's included
            with self._mutex:
                batch, self._pending = self._pending, []
                self._gate, self._idle = None, True
            self._run(batch, gate)
        gate.wait()
        return self._outcome(waiter)

    def _hand_over(self) -> None:
        """After an inline commit: the callers who came meanwhile (and sleep at the gate) go to
        the writer together, as one batch."""
        with self._mutex:
            self._inline = 0
            if not (self._pending and self._idle):
                return
            self._idle = False
            if self._writer is not None:
                self._wake.release()
                return
            if self._start_writer():
                return
            batch, self._pending = self._pending, []  # no thread to be had: commit them here
            gate, self._gate, self._idle = self._gate, None, True
        assert gate is not None
        self._run(batch, gate)

    @staticmethod
    def _outcome(waiter: _Waiter) -> int:
        """The seq of the waiter's first event, or its error raised."""
        if waiter.error is not None:
            if isinstance(waiter.error, AuditError):  # a fresh one: several callers may share it
                raise AuditError(str(waiter.error)) from None
            raise waiter.error
        return waiter.first

    def _start_writer(self) -> bool:
        """Start the writer thread (holding the mutex); False when no thread can be started
        (at interpreter shutdown, or at the process's thread limit)."""
        writer = threading.Thread(target=self._serve, daemon=True,
                                  name=f"kyso-audit-writer:{self.layout.root}")
        try:
            writer.start()
        except RuntimeError:
            return False
        self._writer = writer
        return True

    def _serve(self) -> None:
        """The writer thread: commit what is pending, again and again; sleep when there is
        nothing; end after WRITER_IDLE seconds without work, or at close."""
        self._writer_id = _thread.get_ident()
        try:
            while True:
                if self._spare is None:
                    with suppress(OSError):  # if so, the next caller makes one or says why not
                        self._spare = _Gate()  # for the next batch, made outside the mutex
                with self._mutex:
                    if not self._pending:
                        if not self._closing and self._wait_for_work():
                            continue
                        self._retire()
                        return
                    batch, self._pending = self._pending, []
                    gate, self._gate, self._spare = self._gate, self._spare, None
                assert gate is not None
                self._run(batch, gate)
                # The callers just woken go first: they need the GIL anyway, and those that
                # record again join the next batch (fewer, fuller commits; ~8 % faster).
                for _ in range(len(batch)):
                    if gate.woke >= len(batch):
                        break
                    os.sched_yield()  # without the GIL
        except BaseException as exc:  # pragma: no cover - a bug; never leave a caller asleep
            with self._mutex:
                batch, self._pending = self._pending, []
                gate, self._gate = self._gate, None
                self._retire()
            for waiter in batch:
                waiter.error = exc
            if gate is not None:
                gate.open(len(batch))
            raise
        finally:
            if self._spare is not None:
                self._spare.discard()
                self._spare = None

    def _wait_for_work(self) -> bool:
        """Called holding the mutex with nothing pending: sleep (without it) until a caller
        brings work; False after WRITER_IDLE seconds without any."""
        self._idle = True
        self._mutex.release()
        try:
            if self._wake.acquire(timeout=WRITER_IDLE):
                return True
        finally:
            self._mutex.acquire()
        if self._idle:  # still nothing to do: end; the next caller starts a writer
            return False
        self._wake.acquire()  # a caller woke us just as we timed out
        return True

    def _retire(self) -> None:
        """The writer ends (holding the mutex, nothing pending)."""
        self._writer, self._writer_id, self._idle = None, 0, True
        if self._gate is not None:
            self._gate.discard()
            self._gate = None

    def _run(self, batch: list[_Waiter], gate: _Gate) -> None:
        """Commit a batch and wake its callers, whatever happens."""
        try:
            self._commit_batch(batch)
        finally:
            gate.open(len(batch))

    def _commit_batch(self, batch: list[_Waiter]) -> None:
        """Encode each caller's events (a bad event fails its own caller only) and commit
        them all together."""
        bodies: list[bytes] = []
        good: list[_Waiter] = []
        for waiter in batch:
            events = waiter.events
            try:
                encoded = ([encode_event(events[0])] if len(events) == 1
                           else [encode_event(e) for e in events])
            except BaseException as exc:  # the caller gets it, as if raised in place
                waiter.error = exc
                continue
            waiter.first = len(bodies)  # for now, within the batch
            bodies += encoded
            good.append(waiter)
        if not good:
            return
        try:
            with self._io:
                first = self._commit(bodies, good[0].events[0].time)
        except BaseException as exc:  # every caller of the batch learns of it
            for waiter in good:
                waiter.error = exc
        else:
            for waiter in good:
                waiter.first += first

    def close(self) -> None:
        """Let the writer thread finish what is pending and end, and write the head file."""
        with self._mutex:
            writer = self._writer
            if writer is not None:
                self._closing = True
                if self._idle:
                    self._idle = False
                    self._wake.release()
        if writer is not None and writer is not threading.current_thread():
            writer.join()
        with self._mutex:
            self._closing = False
        with self._io:
            if self._tip is not None and self._lock_fd is not None:
                with self.locked():
                    if self._still_ours(self._tip):
                        self._write_head(self._tip)
            self._forget_tip()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    def _after_fork(self) -> None:
        """In a forked child: no writer thread runs there, and locks may be held by threads
        that do not exist; start afresh (the parent keeps its descriptors)."""
        self._mutex = threading.Lock()
        self._io = threading.Lock()
        self._pending = []
        for gate in (self._gate, self._spare):  # the parent's callers sleep at the originals
            if gate is not None:
                gate.discard()
        self._gate = self._spare = None
        self._writer, self._writer_id, self._idle, self._closing = None, 0, True, False
        self._inline = 0
        self._wake = _thread.allocate_lock()
        self._wake.acquire()
        self._forget_tip()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # the parent's flock stays with the parent's descriptor
            self._lock_fd = None

    # -- one group commit ----------------------------------------------------------------

    def _commit(self, bodies: list[bytes], when: dt.datetime) -> int:
        """Write the entries with one write and one fdatasync; return the seq of the first.
        ``when`` (the first event's time) decides a daily rotation."""
        try:
            with self.locked():
                tip, torn = self._current_tip()
                extra = [self._quarantine(tip, torn)] if torn else []
                if torn:
                    when = self.clock.now()
                tip = self._segment_for(tip, when)
                first = self._write(tip, extra + bodies if extra else bodies) + len(extra)
        except OSError as exc:
            self._forget_tip()
            raise AuditError(f"cannot write the audit log in {self.layout.root}: "
                             f"{exc.strerror or exc}") from None
        except AuditError:
            self._forget_tip()
            raise
        return first

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
        # The whole digest: a shorter hex prefix may hold a 12-digit run, which the event scrubber
        # would mask as an ID number, and kept_as would name no file.
        kept = self.layout.torn / f"{label}@{torn.offset}-{digest}.bin"
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

    def _write(self, tip: _Tip, bodies: list[bytes]) -> int:
        """Chain and write the entries, durably; return the seq of the first."""
        assert tip.segment is not None
        assert tip.fd is not None
        lines = []
        first, last, frontier = tip.size, tip.last_hash, tip.frontier.copy()
        add = frontier.append
        for seq, body in enumerate(bodies, first):
            line = join_entry(seq, last, body)
            h = leaf_hash(line)
            add(h)
            lines.append(line)
            last = h.hex()
        size = first + len(bodies)
        lines.append(b"")
        data = b"\n".join(lines)
        _write_all(tip.fd, data)
        os.fdatasync(tip.fd)
        tip.size, tip.last_hash, tip.frontier = size, last, frontier
        tip.offset += len(data)
        now = time.monotonic()
        if now - self._head_written >= HEAD_INTERVAL:
            self._write_head(tip)
            self._head_written = now
        return first

    def _write_head(self, tip: _Tip) -> None:
        """The head file: where the writer stands, so the next process need not re-read the
        whole segment. Refreshed at most every HEAD_INTERVAL seconds, on rotation and on close;
        a stale head only means a longer catch-up."""
        if tip.segment is None:
            return
        state = TreeState(tip.size, tip.last_hash, tuple(tip.frontier.hashes), tip.segment.name,
                          tip.offset)
        write_state(self.layout.head, state, durable=False)


_LIVE: weakref.WeakSet[AuditLog] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for log in list(_LIVE):
        log._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


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
