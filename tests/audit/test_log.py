"""The audit log on disk: numbering and hash chaining, group commit across threads and processes,
catch-up, rotation, torn-tail quarantine, refusal to append to a damaged log; and the scrubbing
of event details (no secret and no raw ID number ever reaches a segment)."""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kyso.audit import AuditEvent, AuditLog, Layer, MemoryAuditLog, Outcome, iter_entries, read_events
from kyso.audit import log as audit_log
from kyso.audit.entry import GENESIS, MAX_ENTRY_BYTES, encode_body, encode_entry, encode_event
from kyso.audit.events import _TOKEN, SCHEMA, _mask_token, scrub, secret_key
from kyso.audit.merkle import leaf_hash
from kyso.audit.pseudonym import Pseudonymizer
from kyso.audit.reader import EventFilter, select_events
from kyso.audit.verify import Kind, Status, verify_log
from kyso.clock import FrozenClock
from kyso.config import AuditSettings
from kyso.errors import AuditError, ConfigError

T0 = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)
VIETNAM = dt.timezone(dt.timedelta(hours=7))
RAW_ID = "019099012345"
ROOT = Path(__file__).resolve().parents[2]


def event(action: str = "CERT_CREATION", *, when: dt.datetime = T0, actor: str = "admin:test",
          **details: object) -> AuditEvent:
    return AuditEvent(time=when, layer=Layer.PKI, action=action, outcome=Outcome.SUCCESS,
                      actor=actor, object="abc123", details=details)


@pytest.fixture
def audit_dir(tmp_path: Path) -> Path:
    return tmp_path / "audit"


@pytest.fixture
def log(audit_dir: Path, clock: FrozenClock) -> Iterator[AuditLog]:
    writer = AuditLog(audit_dir, AuditSettings(), clock)
    yield writer
    writer.close()


def segments(directory: Path) -> list[Path]:
    return sorted((directory / "segments").glob("*.jsonl"))


def raw_lines(directory: Path) -> list[bytes]:
    out: list[bytes] = []
    for segment in segments(directory):
        data = segment.read_bytes()
        assert data.endswith(b"\n"), f"{segment.name} does not end with a complete line"
        out.extend(data[:-1].split(b"\n"))
    return out


def raw_text(directory: Path) -> str:
    return b"".join(p.read_bytes() for p in segments(directory)).decode("utf-8")


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file of the log (but the lock file) and its bytes."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def seqs_of(directory: Path) -> list[int]:
    return [e["seq"] for e in read_events(directory)]


def assert_verifies(directory: Path) -> None:
    report = verify_log(directory)
    assert report.ok, (report.findings, report.checks)


def rewrite_segment(segment: Path, data: bytes) -> None:
    segment.chmod(0o600)
    segment.write_bytes(data)


# --- numbering, chaining and the line format -------------------------------------------------------

def test_entries_are_numbered_from_zero_and_chain_to_the_previous_leaf_hash(
        log: AuditLog, audit_dir: Path) -> None:
    log.append([event("A"), event("B")])
    log.append([event("C")])
    lines = raw_lines(audit_dir)
    entries = [json.loads(line) for line in lines]
    assert [e["seq"] for e in entries] == [0, 1, 2]
    assert entries[0]["prev"] == "0" * 64 == GENESIS
    for before, line, entry in zip(lines, lines[1:], entries[1:], strict=False):
        assert entry["prev"] == hashlib.sha256(b"\x00" + before).hexdigest()
        assert line.startswith(b'{"seq":%d,"prev":"%s",' % (entry["seq"], entry["prev"].encode()))
    assert [e["action"] for e in entries] == ["A", "B", "C"]


def test_each_line_is_canonical_json_with_seq_and_prev_first(log: AuditLog, audit_dir: Path) -> None:
    first = event("CA_CREATION", zeta=1, alpha="Nguyễn")
    second = event("CERT_CREATION")
    log.append([first])
    log.append([second])
    data = segments(audit_dir)[0].read_bytes()
    line0 = encode_entry(0, GENESIS, first.to_dict())
    line1 = encode_entry(1, leaf_hash(line0).hex(), second.to_dict())
    assert data == line0 + b"\n" + line1 + b"\n"
    assert line0.startswith(b'{"seq":0,"prev":"' + b"0" * 64 + b'","action":"CA_CREATION","actor":')
    assert b", " not in line0
    assert b'": ' not in line0
    entry = json.loads(line0)
    keys = list(entry)
    assert keys[:2] == ["seq", "prev"]
    assert keys[2:] == sorted(keys[2:])
    assert list(entry["details"]) == ["alpha", "zeta"]


def test_append_returns_the_sequence_numbers_of_its_events(log: AuditLog, audit_dir: Path) -> None:
    assert log.append([event("A"), event("B"), event("C")]) == [0, 1, 2]
    assert log.append([event("D")]) == [3]
    assert log.append([]) == []
    log.record(event("E"))
    log.record_many([event("F"), event("G")])
    assert seqs_of(audit_dir) == list(range(7))
    assert [e["action"] for e in read_events(audit_dir)] == list("ABCDEFG")


def test_appending_nothing_writes_nothing(log: AuditLog, audit_dir: Path) -> None:
    assert log.append([]) == []
    log.record_many([])
    assert not audit_dir.exists()


def test_event_fields_follow_the_schema(log: AuditLog, audit_dir: Path) -> None:
    log.record(AuditEvent(time=T0, layer=Layer.AUTHN, action="LOGIN", outcome=Outcome.FAILURE,
                          actor="citizen:psn:1", object="x", details={}, source="server",
                          request_id="req-1"))
    (data,) = read_events(audit_dir)
    assert data == {
        "seq": 0, "prev": GENESIS,
        "schema": SCHEMA, "time": "2026-11-23T02:00:00+00:00", "layer": "authn",
        "action": "LOGIN", "outcome": "failure", "actor": "citizen:psn:1", "object": "x",
        "source": "server", "request_id": "req-1", "details": {},
    }


def test_event_time_is_written_in_utc(log: AuditLog, audit_dir: Path) -> None:
    log.record(event("X", when=dt.datetime(2026, 11, 23, 9, 0, tzinfo=VIETNAM)))
    assert read_events(audit_dir)[0]["time"] == "2026-11-23T02:00:00+00:00"


def test_vietnamese_text_is_written_as_utf8_not_escaped(log: AuditLog, audit_dir: Path) -> None:
    log.record(event(common_name="Nguyễn Văn An"))
    raw = b"".join(p.read_bytes() for p in segments(audit_dir))
    assert "Nguyễn Văn An".encode() in raw
    assert b"\\u" not in raw


def test_memory_log_keeps_events_in_order() -> None:
    sink = MemoryAuditLog()
    sink.record(event("A"))
    sink.record_many([event("B"), event("C")])
    assert [e.action for e in sink.events] == ["A", "B", "C"]


def test_an_unwritable_log_raises_audit_error(tmp_path: Path, clock: FrozenClock) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory", encoding="utf-8")
    with pytest.raises(AuditError, match="cannot write the audit log"):
        AuditLog(blocker / "audit", AuditSettings(), clock).record(event())


# --- catch-up: several writers on one directory ----------------------------------------------------

def test_a_second_writer_continues_the_sequence(audit_dir: Path, clock: FrozenClock) -> None:
    first = AuditLog(audit_dir, AuditSettings(), clock)
    second = AuditLog(audit_dir, AuditSettings(), clock)
    assert first.append([event("A"), event("B")]) == [0, 1]
    assert second.append([event("C")]) == [2]
    assert first.append([event("D")]) == [3]  # the first writer catches up with the second
    assert second.append([event("E"), event("F")]) == [4, 5]
    first.close()
    second.close()
    assert AuditLog(audit_dir, AuditSettings(), clock).append([event("G")]) == [6]
    assert [e["action"] for e in read_events(audit_dir)] == list("ABCDEFG")
    assert_verifies(audit_dir)


def _delete(head: Path, _old: bytes) -> None:
    head.unlink()


def _garbage(head: Path, _old: bytes) -> None:
    head.write_bytes(b"\x00\xffnot json")


def _wrong_shape(head: Path, _old: bytes) -> None:
    head.write_text(json.dumps({"size": 2, "last_hash": "zz", "frontier": []}), encoding="utf-8")


def _stale(head: Path, old: bytes) -> None:
    head.write_bytes(old)  # as a writer killed before it refreshed the head file leaves it


def _missing_segment(head: Path, _old: bytes) -> None:
    data = json.loads(head.read_bytes())
    data["segment"] = "000000000000-19991231.jsonl"
    head.write_text(json.dumps(data), encoding="utf-8")


@pytest.mark.parametrize("spoil", [_delete, _garbage, _wrong_shape, _stale, _missing_segment],
                         ids=["head-deleted", "head-garbage", "head-wrong-shape", "head-stale",
                              "head-names-a-missing-segment"])
def test_a_new_writer_continues_whatever_the_head_file_says(
        audit_dir: Path, clock: FrozenClock, spoil: Callable[[Path, bytes], None]) -> None:
    writer = AuditLog(audit_dir, AuditSettings(segment_max_bytes=700), clock)
    writer.append([event("A")])
    writer.close()
    old_head = (audit_dir / "head.json").read_bytes()
    writer = AuditLog(audit_dir, AuditSettings(segment_max_bytes=700), clock)
    for action in "BCDEF":
        writer.append([event(action)])
    writer.close()
    assert len(segments(audit_dir)) > 1
    spoil(audit_dir / "head.json", old_head)
    assert AuditLog(audit_dir, AuditSettings(segment_max_bytes=700), clock).append([event("G")]) == [6]
    assert [e["action"] for e in read_events(audit_dir)] == list("ABCDEFG")
    assert_verifies(audit_dir)


def _threads(log: AuditLog, threads: int, per_thread: int) -> dict[int, list[int]]:
    acked: dict[int, list[int]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def work(n: int) -> None:
        try:
            start.wait()
            mine: list[int] = []
            for i in range(per_thread):
                batch = [event(f"T{n}", i=i)] if i % 3 else [event(f"T{n}", i=i), event(f"T{n}", i=-i)]
                mine.extend(log.append(batch))
            acked[n] = mine
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    assert not errors
    return acked


@pytest.mark.parametrize(("threads", "per_thread"), [(2, 150), (16, 25)], ids=["2-threads", "16-threads"])
def test_concurrent_threads_get_unique_contiguous_seqs(log: AuditLog, audit_dir: Path,
                                                       threads: int, per_thread: int) -> None:
    acked = _threads(log, threads, per_thread)
    everything = sorted(s for mine in acked.values() for s in mine)
    assert everything == list(range(len(everything)))
    events = read_events(audit_dir)
    assert [e["seq"] for e in events] == everything
    for n, mine in acked.items():
        assert mine == sorted(mine)  # each thread's events stay in its order
        assert all(events[s]["action"] == f"T{n}" for s in mine)
    assert_verifies(audit_dir)


def test_callers_that_arrive_during_a_commit_share_the_next_fdatasync(
        log: AuditLog, audit_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log.append([event("FIRST")])
    syncs: list[int] = []
    real = os.fdatasync

    def counting(fd: int) -> None:
        syncs.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", counting)
    blocker = os.open(audit_dir / ".lock", os.O_RDWR)  # another process commits meanwhile
    fcntl.flock(blocker, fcntl.LOCK_EX)
    results: dict[int, list[int]] = {}

    def one(n: int) -> None:
        results[n] = log.append([event(f"T{n}")])

    try:
        leader = threading.Thread(target=one, args=(0,))
        leader.start()
        time.sleep(0.2)  # the leader now waits for the lock; the others join the next batch
        others = [threading.Thread(target=one, args=(n,)) for n in range(1, 16)]
        for t in others:
            t.start()
        time.sleep(0.5)
    finally:
        fcntl.flock(blocker, fcntl.LOCK_UN)
        os.close(blocker)
    for t in [leader, *others]:
        t.join(timeout=30)
    assert sorted(s for r in results.values() for s in r) == list(range(1, 17))
    assert len(syncs) <= 2  # the leader's event, then the 15 others together
    assert_verifies(audit_dir)


def _blocked_batch(log: AuditLog, audit_dir: Path, appends: dict[str, list[AuditEvent]],
                   ) -> tuple[dict[str, list[int] | BaseException], int]:
    """While another process holds the log's lock, a leader's append waits for it in the
    writer thread, and every append of ``appends`` (one thread each) arrives meanwhile, so
    that they share the next commit; return what each got, and how many fdatasyncs the
    commits took (the leader's, then theirs)."""
    syncs: list[int] = []
    real = os.fdatasync

    def counting(fd: int) -> None:
        syncs.append(fd)
        real(fd)

    results: dict[str, list[int] | BaseException] = {}

    def one(name: str) -> None:
        try:
            results[name] = log.append(appends[name])
        except BaseException as exc:  # recorded for the test to look at
            results[name] = exc

    blocker = os.open(audit_dir / ".lock", os.O_RDWR)  # another process commits meanwhile
    fcntl.flock(blocker, fcntl.LOCK_EX)
    appends = {"leader": [event("LEADER")], **appends}
    threads = [threading.Thread(target=one, args=(name,)) for name in appends]
    os.fdatasync = counting
    try:
        for t in threads:
            t.start()
            time.sleep(0.2 if t is threads[0] else 0)
        time.sleep(0.5)
    finally:
        fcntl.flock(blocker, fcntl.LOCK_UN)
        os.close(blocker)
        for t in threads:
            t.join(timeout=30)
        os.fdatasync = real
    return results, len(syncs)


def test_a_bad_event_fails_only_its_own_caller_in_a_shared_commit(log: AuditLog, audit_dir: Path) -> None:
    log.append([event("FIRST")])
    appends = {f"ok{n}": [event(f"OK{n}")] for n in range(5)}
    appends["big"] = [event("BIG", blob="x" * MAX_ENTRY_BYTES)]
    appends["half-big"] = [event("SMALL"), event("BIG", blob="y" * MAX_ENTRY_BYTES)]
    results, syncs = _blocked_batch(log, audit_dir, appends)
    assert results.pop("leader") == [1]
    assert syncs == 2  # the leader's commit, then one for the others, the bad ones among them
    for name in ("big", "half-big"):
        error = results.pop(name)
        assert isinstance(error, AuditError)
        assert "too large" in str(error)
    assert sorted(s for r in results.values() for s in r) == [2, 3, 4, 5, 6]  # type: ignore[union-attr]
    actions = [e["action"] for e in read_events(audit_dir)]
    assert actions[:2] == ["FIRST", "LEADER"]
    assert sorted(actions[2:]) == [f"OK{n}" for n in range(5)]
    assert_verifies(audit_dir)


def test_a_failed_fdatasync_fails_every_caller_of_its_commit_and_the_log_goes_on(
        log: AuditLog, audit_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log.append([event("FIRST")])
    real = os.fdatasync
    calls: list[int] = []

    def failing(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 2:  # the commit after the leader's
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real(fd)

    monkeypatch.setattr(os, "fdatasync", failing)
    appends = {f"t{n}": [event(f"T{n}")] for n in range(6)}
    results, syncs = _blocked_batch(log, audit_dir, appends)
    assert results.pop("leader") == [1]
    assert syncs == 2
    for name, result in results.items():
        assert isinstance(result, AuditError), name
        assert "cannot write the audit log" in str(result)
        assert "Input/output error" in str(result)
    seq = log.append([event("AFTER")])  # the unacknowledged entries may be there; they chain
    assert [e["action"] for e in read_events(audit_dir)][-1] == "AFTER"
    assert seqs_of(audit_dir) == list(range(seq[0] + 1))
    assert_verifies(audit_dir)


def _writers(directory: Path) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"kyso-audit-writer:{directory}"]


def test_a_lone_caller_commits_its_event_itself_without_a_writer_thread(
        log: AuditLog, audit_dir: Path) -> None:
    log.record(event("A"))
    log.record(event("B"))
    assert not _writers(audit_dir)
    assert [e["action"] for e in read_events(audit_dir)] == ["A", "B"]


def _overlapping_callers(writer: AuditLog, audit_dir: Path, names: list[str]) -> None:
    """The first name commits inline and waits for the lock another process holds; the
    others arrive meanwhile, so they go to a writer thread together."""
    blocker = os.open(audit_dir / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(blocker, fcntl.LOCK_EX)
    threads = [threading.Thread(target=writer.record, args=(event(n),)) for n in names]
    try:
        threads[0].start()
        time.sleep(0.2)
        for t in threads[1:]:
            t.start()
        time.sleep(0.2)
    finally:
        fcntl.flock(blocker, fcntl.LOCK_UN)
        os.close(blocker)
    for t in threads:
        t.join(timeout=30)


def test_the_writer_thread_starts_for_overlapping_callers_and_ends_when_idle_and_at_close(
        audit_dir: Path, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_log, "WRITER_IDLE", 0.05)
    writer = AuditLog(audit_dir, AuditSettings(), clock)
    writer.record(event("A"))
    assert not _writers(audit_dir)
    _overlapping_callers(writer, audit_dir, ["B", "C", "D"])
    (thread,) = _writers(audit_dir)
    assert thread.daemon
    thread.join(timeout=10)  # idle: it ends by itself
    assert not thread.is_alive()
    monkeypatch.setattr(audit_log, "WRITER_IDLE", 60.0)
    _overlapping_callers(writer, audit_dir, ["E", "F"])  # and overlapping callers start another
    assert len(_writers(audit_dir)) == 1
    writer.close()
    assert not _writers(audit_dir)
    writer.record(event("G"))  # a closed log can still be appended to
    writer.close()
    actions = [e["action"] for e in read_events(audit_dir)]
    assert actions[:2] == ["A", "B"]
    assert sorted(actions[2:4]) == ["C", "D"]
    assert actions[4:] == ["E", "F", "G"]
    assert_verifies(audit_dir)


def test_without_a_writer_thread_callers_commit_themselves(
        log: AuditLog, audit_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """At interpreter shutdown, or at the process's thread limit, no thread can be started."""
    start = threading.Thread.start

    def refuse(thread: threading.Thread) -> None:
        if thread.name.startswith("kyso-audit-writer:"):
            raise RuntimeError("can't start new thread")
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", refuse)
    assert log.append([event("A")]) == [0]
    acked = _threads(log, 8, 10)
    assert not _writers(audit_dir)
    assert sorted(s for mine in acked.values() for s in mine) == list(range(1, seqs_of(audit_dir)[-1] + 1))
    assert_verifies(audit_dir)


def _open_descriptors() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts descriptors in /proc")
@pytest.mark.parametrize("eventfd", [True, False], ids=["eventfd", "pipe"])
def test_many_threads_appending_leave_no_descriptor_open(
        audit_dir: Path, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch, eventfd: bool) -> None:
    monkeypatch.setattr(audit_log, "_EVENTFD", eventfd)  # callers sleep on pipes where no eventfd
    before = _open_descriptors()
    writer = AuditLog(audit_dir, AuditSettings(), clock)
    acked = _threads(writer, 12, 20)
    writer.close()
    assert _open_descriptors() == before
    assert sorted(s for mine in acked.values() for s in mine) == seqs_of(audit_dir)
    assert_verifies(audit_dir)


class _Recorder:
    """A details value whose text records another event: a caller's mistake, which must not
    hang the log's writer thread waiting for itself."""

    def __init__(self, log: AuditLog) -> None:
        self.log = log

    def __str__(self) -> str:
        self.log.record(event("INNER"))
        return "recorder"


def test_recording_while_an_event_is_encoded_is_refused_not_a_deadlock(
        audit_dir: Path, clock: FrozenClock) -> None:
    log = AuditLog(audit_dir, AuditSettings(), clock)
    outcome: list[BaseException | None] = []

    def outer() -> None:
        try:
            log.record(event("OUTER", what=_Recorder(log)))
            outcome.append(None)
        except AuditError as exc:
            outcome.append(exc)

    t = threading.Thread(target=outer, daemon=True)
    t.start()
    t.join(timeout=30)
    if t.is_alive():
        pytest.fail("the writer thread waits for itself")  # (and the log stays unclosed)
    (error,) = outcome
    assert error is not None
    assert "cannot be recorded while the audit log's writer encodes" in str(error)
    log.record(event("AFTER"))
    log.close()
    assert [e["action"] for e in read_events(audit_dir)] == ["AFTER"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_appends_to_the_log_its_parent_appends_to(log: AuditLog, audit_dir: Path) -> None:
    log.append([event("PARENT")])  # the parent's writer thread is running
    with warnings.catch_warnings():  # Python 3.12+ warns about fork() in a threaded process
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: no writer thread came along; a new one starts
        code = 1
        try:
            for i in range(20):
                log.append([event("CHILD", i=i)])
            log.close()
            code = 0
        finally:
            os._exit(code)
    acked = _threads(log, 4, 10)
    deadline = time.monotonic() + 30
    while not (done := os.waitpid(pid, os.WNOHANG))[0]:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child never got its appends done")
        time.sleep(0.01)
    assert os.waitstatus_to_exitcode(done[1]) == 0
    events = read_events(audit_dir)
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert [e["details"]["i"] for e in events if e["action"] == "CHILD"] == list(range(20))
    assert len(events) == 1 + 20 + sum(len(mine) for mine in acked.values())
    assert_verifies(audit_dir)


_WRITER_SCRIPT = """
import datetime as dt, sys, time
from pathlib import Path
from kyso.audit import AuditEvent, AuditLog, Layer, Outcome
from kyso.config import AuditSettings

directory, name, count, go = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
log = AuditLog(directory, AuditSettings(segment_max_bytes=20000))
while not go.exists():
    time.sleep(0.001)
t0 = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)
acked = []
i = 0
while i < count:
    batch = [AuditEvent(time=t0, layer=Layer.SERVER, action="WRITE", outcome=Outcome.SUCCESS,
                        actor=name, details={"i": j}) for j in range(i, min(count, i + 1 + i % 4))]
    acked.extend(log.append(batch))
    i += len(batch)
log.close()
print(" ".join(map(str, acked)))
"""


def test_two_processes_appending_concurrently_make_one_linear_log(tmp_path: Path, audit_dir: Path) -> None:
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    count = 300
    children = [subprocess.Popen([sys.executable, "-c", _WRITER_SCRIPT, str(audit_dir), name, str(count),
                                  str(go)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
                for name in ("writer:a", "writer:b")]
    time.sleep(0.3)
    go.touch()
    acked = {}
    for name, child in zip(("writer:a", "writer:b"), children, strict=True):
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err.decode()
        acked[name] = [int(s) for s in out.split()]
    events = read_events(audit_dir)
    assert [e["seq"] for e in events] == list(range(2 * count))
    for name, mine in acked.items():
        assert len(mine) == count
        assert [events[s]["actor"] for s in mine] == [name] * count
        assert [events[s]["details"]["i"] for s in mine] == list(range(count))
    assert set(acked["writer:a"]).isdisjoint(acked["writer:b"])
    assert_verifies(audit_dir)


# --- rotation and file modes ---------------------------------------------------------------------

def test_segments_rotate_on_a_new_day_in_vietnam(log: AuditLog, audit_dir: Path) -> None:
    log.append([event("LATE", when=dt.datetime(2026, 11, 23, 16, 59, 59, tzinfo=dt.UTC))])
    log.append([event("SAME_DAY", when=dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC))])
    log.append([event("MIDNIGHT_VN", when=dt.datetime(2026, 11, 23, 17, 0, tzinfo=dt.UTC))])
    log.append([event("NEXT", when=dt.datetime(2026, 11, 24, 3, 0, tzinfo=dt.UTC))])
    names = [p.name for p in segments(audit_dir)]
    assert names == ["000000000000-20261123.jsonl", "000000000002-20261124.jsonl"]
    sealed, current = segments(audit_dir)
    assert mode(sealed) == 0o400
    assert mode(current) == 0o600
    assert mode(audit_dir) == 0o700
    assert mode(audit_dir / "segments") == 0o700
    assert [e["action"] for e in read_events(audit_dir)] == ["LATE", "SAME_DAY", "MIDNIGHT_VN", "NEXT"]
    assert_verifies(audit_dir)


def test_without_daily_rotation_days_share_a_segment(audit_dir: Path, clock: FrozenClock) -> None:
    writer = AuditLog(audit_dir, AuditSettings(rotate_daily=False), clock)
    writer.append([event("A", when=dt.datetime(2026, 11, 23, 16, 59, tzinfo=dt.UTC))])
    writer.append([event("B", when=dt.datetime(2026, 11, 23, 17, 0, tzinfo=dt.UTC))])
    writer.close()
    assert [p.name for p in segments(audit_dir)] == ["000000000000-20261123.jsonl"]


def test_segments_rotate_by_size_and_sealed_ones_are_read_only(audit_dir: Path, clock: FrozenClock) -> None:
    limit = 1000
    writer = AuditLog(audit_dir, AuditSettings(segment_max_bytes=limit), clock)
    for i in range(30):
        writer.append([event("X", i=i)])
    writer.close()
    files = segments(audit_dir)
    assert len(files) >= 5
    for segment in files[:-1]:
        data = segment.read_bytes()
        last_line = data[:-1].rsplit(b"\n", 1)[-1]
        assert len(data) >= limit
        assert len(data) - len(last_line) - 1 < limit  # it rotated at the first chance
        assert mode(segment) == 0o400
    assert mode(files[-1]) == 0o600
    for segment in files:  # each is named by the seq of its first entry
        first = json.loads(segment.read_bytes().split(b"\n", 1)[0])["seq"]
        assert segment.name == f"{first:012d}-20261123.jsonl"
    assert seqs_of(audit_dir) == list(range(30))
    assert_verifies(audit_dir)


def test_file_and_directory_modes_are_private_whatever_the_umask(tmp_path: Path, clock: FrozenClock) -> None:
    directory = tmp_path / "open" / "audit"
    old = os.umask(0)
    try:
        writer = AuditLog(directory, AuditSettings(segment_max_bytes=100), clock)
        writer.append([event("A")])
        writer.append([event("B")])
        writer.close()
    finally:
        os.umask(old)
    sealed, current = segments(directory)
    assert (mode(sealed), mode(current)) == (0o400, 0o600)
    assert mode(directory) == 0o700
    assert mode(directory / "segments") == 0o700
    assert mode(directory / "head.json") == 0o600


@contextmanager
def unprivileged(directory: Path) -> Iterator[None]:
    """Run the block as an ordinary user, as a deployment does (root ignores file modes)."""
    if os.geteuid() != 0:
        yield
        return
    for path in [directory, *directory.rglob("*")]:
        os.chown(path, 65534, 65534)
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def test_a_writer_killed_right_after_sealing_a_segment_does_not_block_the_log(clock: FrozenClock) -> None:
    """Rotation seals (chmod 0400) the full segment before creating the next one; a writer
    killed in between leaves a sealed last segment, and the next writer must not need to
    open it for writing."""
    top = Path(tempfile.mkdtemp(prefix="kyso-audit-"))  # reachable by the unprivileged user
    try:
        directory = top / "audit"
        settings = AuditSettings(segment_max_bytes=600)
        writer = AuditLog(directory, settings, clock)
        while len(segments(directory)) < 2 or segments(directory)[-1].stat().st_size < 600:
            writer.append([event("FILL")])
        writer.close()
        size = len(read_events(directory))
        segments(directory)[-1].chmod(0o400)  # sealed; the next segment was never created
        with unprivileged(top):
            seqs = AuditLog(directory, settings, clock).append([event("AFTER")])
        assert seqs == [size]
        assert mode(segments(directory)[-1]) == 0o600
        assert_verifies(directory)
    finally:
        shutil.rmtree(top, ignore_errors=True)


# --- torn tails ----------------------------------------------------------------------------------

TORN = b'{"seq":2,"prev":"' + b"ab" * 16 + b'","action":"CERT_CRE'


def _tear(directory: Path, data: bytes = TORN) -> tuple[Path, int]:
    segment = segments(directory)[-1]
    offset = segment.stat().st_size
    with segment.open("ab") as fh:
        fh.write(data)
    return segment, offset


@pytest.mark.parametrize("same_writer", [False, True], ids=["new-writer", "same-writer"])
def test_a_torn_tail_is_quarantined_and_recorded(audit_dir: Path, clock: FrozenClock,
                                                 same_writer: bool) -> None:
    writer = AuditLog(audit_dir, AuditSettings(), clock)
    writer.append([event("A"), event("B")])
    segment, offset = _tear(audit_dir)
    if not same_writer:
        writer.close()
        writer = AuditLog(audit_dir, AuditSettings(), clock)
    assert writer.append([event("AFTER")]) == [3]
    writer.close()

    (kept,) = (audit_dir / "torn").iterdir()
    assert kept.read_bytes() == TORN
    assert mode(kept) == 0o600
    assert TORN not in segment.read_bytes()
    events = read_events(audit_dir)
    assert [e["action"] for e in events] == ["A", "B", "AUDIT_TORN_TAIL", "AFTER"]
    torn = events[2]
    assert (torn["layer"], torn["outcome"], torn["actor"]) == ("audit", "failure", "kyso:audit-log")
    assert torn["details"]["sha256"] == hashlib.sha256(TORN).hexdigest()
    assert torn["details"]["bytes"] == len(TORN)
    assert torn["details"]["offset"] == offset
    assert torn["details"]["after_seq"] == 1
    assert torn["object"].startswith("segment:")
    assert torn["details"]["kept_as"] == f"torn/{kept.name}"  # an auditor can find the bytes
    report = verify_log(audit_dir)
    assert report.ok
    assert {c.name: c.status for c in report.checks}["torn tails"] is Status.WARN


def test_a_torn_tail_whose_digest_starts_with_twelve_digits_is_named_as_kept(
        audit_dir: Path, clock: FrozenClock) -> None:
    # sha256 of this tail is 446437698653db67…: a 16-character prefix in the file name would be
    # masked as an ID number (446******653) in the event, and kept_as would name no file.
    tail = TORN + b"80"
    assert re.match(r"[0-9]{12}", hashlib.sha256(tail).hexdigest())
    writer = AuditLog(audit_dir, AuditSettings(), clock)
    writer.append([event("A")])
    _tear(audit_dir, tail)
    writer.append([event("AFTER")])
    writer.close()
    torn = read_events(audit_dir)[1]
    assert (audit_dir / torn["details"]["kept_as"]).read_bytes() == tail


def test_before_the_next_write_a_torn_tail_is_reported_not_read(audit_dir: Path, log: AuditLog) -> None:
    log.append([event("A"), event("B")])
    _tear(audit_dir)
    assert seqs_of(audit_dir) == [0, 1]
    report = verify_log(audit_dir)
    assert not report.ok
    assert [f.kind for f in report.findings] == [Kind.TORN_TAIL]
    assert report.size == 2


def test_a_torn_tail_alone_in_a_new_segment_is_quarantined(audit_dir: Path, clock: FrozenClock) -> None:
    """A writer killed just after it created a segment, mid-way through the first line."""
    writer = AuditLog(audit_dir, AuditSettings(), clock)
    writer.append([event("A")])
    writer.close()
    fresh = audit_dir / "segments" / "000000000001-20261123.jsonl"
    segments(audit_dir)[0].chmod(0o400)
    fresh.write_bytes(b'{"seq":1,"pr')
    fresh.chmod(0o600)
    assert AuditLog(audit_dir, AuditSettings(), clock).append([event("AFTER")]) == [2]
    (kept,) = (audit_dir / "torn").iterdir()
    assert kept.read_bytes() == b'{"seq":1,"pr'
    assert [e["action"] for e in read_events(audit_dir)] == ["A", "AUDIT_TORN_TAIL", "AFTER"]
    assert_verifies(audit_dir)


def test_a_write_that_fails_midway_leaves_a_tail_the_next_write_quarantines(
        audit_dir: Path, log: AuditLog, monkeypatch: pytest.MonkeyPatch) -> None:
    log.append([event("A")])
    real = os.write

    def disk_full(fd: int, data: Any) -> int:
        real(fd, bytes(data)[:25])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", disk_full)
    with pytest.raises(AuditError, match="No space left"):
        log.append([event("LOST")])
    monkeypatch.setattr(os, "write", real)
    assert log.append([event("B")]) == [2]
    assert [e["action"] for e in read_events(audit_dir)] == ["A", "AUDIT_TORN_TAIL", "B"]
    assert_verifies(audit_dir)


def test_a_second_torn_tail_at_the_same_place_does_not_erase_the_first(
        audit_dir: Path, log: AuditLog, monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed once mid-write, then again while recording that: both torn writes are kept."""
    log.append([event("A")])
    _tear(audit_dir)
    real = os.write

    def dies_while_recording_the_tail(fd: int, data: Any) -> int:
        chunk = bytes(data)
        if b"AUDIT_TORN_TAIL" in chunk:
            real(fd, chunk[:60])
            raise OSError(errno.EIO, "Input/output error")
        return real(fd, data)

    monkeypatch.setattr(os, "write", dies_while_recording_the_tail)
    with pytest.raises(AuditError):
        log.append([event("B")])
    monkeypatch.setattr(os, "write", real)
    log.append([event("C")])
    kept = sorted(p.read_bytes() for p in (audit_dir / "torn").iterdir())
    assert TORN in kept, "the first torn tail was overwritten before any event recorded it"
    assert len(kept) == 2
    assert_verifies(audit_dir)


# --- a damaged log is never appended to ----------------------------------------------------------

def _modify_middle(directory: Path) -> None:
    segment = segments(directory)[0]
    rewrite_segment(segment, segment.read_bytes().replace(b'"i":2', b'"i":7', 1))


def _and_delete_head(tamper: Callable[[Path], None]) -> Callable[[Path], None]:
    def both(directory: Path) -> None:
        tamper(directory)
        (directory / "head.json").unlink()
    return both


def _and_garbage_head(tamper: Callable[[Path], None]) -> Callable[[Path], None]:
    def both(directory: Path) -> None:
        tamper(directory)
        (directory / "head.json").write_bytes(b"{not json")
    return both


def _drop_last_line(directory: Path) -> None:
    segment = segments(directory)[-1]
    lines = segment.read_bytes()[:-1].split(b"\n")
    rewrite_segment(segment, b"".join(line + b"\n" for line in lines[:-1]))


def _cut_bytes(directory: Path) -> None:
    segment = segments(directory)[-1]
    rewrite_segment(segment, segment.read_bytes()[:-10])


def _delete_first_segment(directory: Path) -> None:
    segments(directory)[0].unlink()


def _garbage_line(directory: Path) -> None:
    segment = segments(directory)[0]
    lines = segment.read_bytes().split(b"\n")
    lines.insert(1, b"\x00garbage")
    rewrite_segment(segment, b"\n".join(lines))


def _torn_in_sealed_segment(directory: Path) -> None:
    segment = segments(directory)[0]
    rewrite_segment(segment, segment.read_bytes() + b'{"seq":99,"pr')


DAMAGE = {
    "modified-entry-head-deleted": _and_delete_head(_modify_middle),
    "modified-entry-head-garbage": _and_garbage_head(_modify_middle),
    "last-line-removed": _drop_last_line,
    "last-bytes-cut": _cut_bytes,
    "first-segment-deleted": _and_delete_head(_delete_first_segment),
    "garbage-line-head-deleted": _and_delete_head(_garbage_line),
    "incomplete-line-inside-the-log": _and_delete_head(_torn_in_sealed_segment),
}


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_log_makes_the_writer_refuse_and_write_nothing(
        audit_dir: Path, clock: FrozenClock, damage: Callable[[Path], None]) -> None:
    settings = AuditSettings(segment_max_bytes=1200)
    writer = AuditLog(audit_dir, settings, clock)
    for i in range(10):
        writer.append([event("X", i=i)])
    writer.close()
    assert len(segments(audit_dir)) >= 2
    damage(audit_dir)
    before = snapshot(audit_dir)
    writer = AuditLog(audit_dir, settings, clock)
    for _attempt in range(2):
        with pytest.raises(AuditError, match=r"damaged|verify"):
            writer.append([event("AFTER")])
    assert snapshot(audit_dir) == before
    assert not verify_log(audit_dir).ok


def test_the_same_writer_refuses_after_its_entries_were_cut(audit_dir: Path, log: AuditLog) -> None:
    for i in range(3):
        log.append([event("X", i=i)])
    log.close()  # the head file now records all three
    _drop_last_line(audit_dir)
    before = snapshot(audit_dir)
    with pytest.raises(AuditError, match="damaged"):
        log.append([event("AFTER")])
    assert snapshot(audit_dir) == before


def test_a_writer_never_reuses_a_seq_it_acknowledged(audit_dir: Path, log: AuditLog) -> None:
    """Entries this writer reported durable disappear (the head file has not caught up with
    them yet): appending would silently replace them and hide the loss."""
    acked = [s for i in range(5) for s in log.append([event("X", i=i)])]
    assert acked == [0, 1, 2, 3, 4]
    _drop_last_line(audit_dir)
    with pytest.raises(AuditError):
        log.append([event("AFTER")])
    assert [e["details"].get("i") for e in read_events(audit_dir)] == [0, 1, 2, 3]


# --- what an event may carry -------------------------------------------------------------------

def test_secrets_and_raw_id_numbers_never_reach_a_segment(log: AuditLog, audit_dir: Path) -> None:
    log.record(AuditEvent(time=T0, layer=Layer.AUTHN, action="LOGIN", outcome=Outcome.FAILURE,
                          actor=f"citizen:{RAW_ID}", object=f"CCCD:{RAW_ID}",
                          details={"password": "hunter2-Passw0rd", "otp": "492817",
                                   "passphrase": "ca-secret-phrase", "clientSecret": "cs-abcdef",
                                   "reason": f"personal ID number {RAW_ID} is locked",
                                   "nested": {"ids": [RAW_ID, f"IDCVN-{RAW_ID}"], "pin": 1234}}))
    text = raw_text(audit_dir)
    for secret in ("hunter2-Passw0rd", "492817", "ca-secret-phrase", "cs-abcdef", RAW_ID):
        assert secret not in text
    assert "019******345" in text
    (data,) = read_events(audit_dir)
    assert data["actor"] == "citizen:019******345"
    assert data["object"] == "CCCD:019******345"
    assert data["details"]["password"] == "[redacted]"
    assert data["details"]["otp"] == "[redacted]"
    assert data["details"]["reason"] == "personal ID number 019******345 is locked"
    assert data["details"]["nested"] == {"ids": ["019******345", "IDCVN-019******345"],
                                         "pin": "[redacted]"}


def test_an_oversized_event_is_refused_and_leaves_no_gap(log: AuditLog, audit_dir: Path) -> None:
    log.append([event("A")])
    before = snapshot(audit_dir)
    with pytest.raises(AuditError, match="too large"):
        log.append([event("BIG", blob="x" * MAX_ENTRY_BYTES)])
    with pytest.raises(AuditError, match="too large"):  # a batch is all or nothing
        log.append([event("SMALL"), event("BIG", blob="y" * MAX_ENTRY_BYTES)])
    assert snapshot(audit_dir) == before
    assert log.append([event("B")]) == [1]
    assert [e["action"] for e in read_events(audit_dir)] == ["A", "B"]


def test_an_event_just_under_the_limit_is_kept(log: AuditLog, audit_dir: Path) -> None:
    log.append([event("BIG", blob="x" * (MAX_ENTRY_BYTES - 1000))])
    (line,) = raw_lines(audit_dir)
    assert len(line) <= MAX_ENTRY_BYTES
    assert_verifies(audit_dir)


def test_a_lone_surrogate_does_not_lose_the_event(log: AuditLog, audit_dir: Path) -> None:
    log.append([event("A", name="Nguy\udce1n Văn An", actor="user:\ud800")])
    log.append([event("B")])
    events = read_events(audit_dir)
    assert [e["action"] for e in events] == ["A", "B"]
    assert events[0]["details"]["name"] == "Nguy\udce1n Văn An"
    assert events[0]["actor"] == "user:\ud800"
    raw_lines(audit_dir)[0].decode("utf-8")  # the line itself is valid UTF-8
    assert_verifies(audit_dir)


# --- reading back ------------------------------------------------------------------------------

def test_iter_entries_from_a_seq_skips_earlier_segments(audit_dir: Path, clock: FrozenClock) -> None:
    writer = AuditLog(audit_dir, AuditSettings(segment_max_bytes=700), clock)
    for i in range(12):
        writer.append([event("X", i=i)])
    writer.close()
    assert len(segments(audit_dir)) > 2
    assert [e.seq for e in iter_entries(audit_dir, 7)] == list(range(7, 12))
    assert [e["seq"] for e in read_events(audit_dir, from_seq=11)] == [11]
    assert read_events(audit_dir, from_seq=12) == []


def test_reading_a_garbage_line_names_its_place(log: AuditLog, audit_dir: Path) -> None:
    log.append([event("A"), event("B")])
    _garbage_line(audit_dir)
    name = segments(audit_dir)[0].name
    with pytest.raises(AuditError, match=rf"{name} line 2"):
        read_events(audit_dir)


def test_reading_a_missing_log_is_empty(tmp_path: Path) -> None:
    assert read_events(tmp_path / "none") == []


def test_select_events_filters_by_field_time_and_seq(log: AuditLog, audit_dir: Path) -> None:
    log.append([
        AuditEvent(time=T0, layer=Layer.AUTHN, action="LOGIN", outcome=Outcome.SUCCESS, actor="u:1"),
        AuditEvent(time=T0 + dt.timedelta(hours=1), layer=Layer.AUTHN, action="LOGIN_ERROR",
                   outcome=Outcome.FAILURE, actor="u:2"),
        AuditEvent(time=T0 + dt.timedelta(hours=2), layer=Layer.PKI, action="CERT_CREATION",
                   outcome=Outcome.SUCCESS, actor="u:1"),
    ])

    def seqs(**query: Any) -> list[int]:
        return [e["seq"] for e in select_events(audit_dir, EventFilter(**query))]

    assert seqs() == [0, 1, 2]
    assert seqs(layers=frozenset({"authn"})) == [0, 1]
    assert seqs(actions=frozenset({"CERT_CREATION", "LOGIN"})) == [0, 2]
    assert seqs(actors=frozenset({"u:1"})) == [0, 2]
    assert seqs(outcome="failure") == [1]
    # 10:00 in Vietnam is 03:00 UTC: since is inclusive, until exclusive, compared as instants
    assert seqs(since=dt.datetime(2026, 11, 23, 10, 0, tzinfo=VIETNAM)) == [1, 2]
    assert seqs(until=dt.datetime(2026, 11, 23, 10, 0, tzinfo=VIETNAM)) == [0]
    assert seqs(from_seq=2) == [2]
    assert [e["seq"] for e in select_events(audit_dir, EventFilter(), limit=2)] == [0, 1]


# --- scrub -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (RAW_ID, "019******345"),
        (f"CCCD:{RAW_ID}", "CCCD:019******345"),
        (f"IDCVN-{RAW_ID}", "IDCVN-019******345"),
        (f"ids {RAW_ID} and 033301000123.", "ids 019******345 and 033******123."),
        (f"x{RAW_ID}y", "x019******345y"),
    ],
)
def test_scrub_masks_twelve_digit_ids(value: str, expected: str) -> None:
    assert scrub(value) == expected


@pytest.mark.parametrize(
    "value", ["01909901234", "0190990123456", "4600100155", "0100233488-001", "2026-11-23"]
)
def test_scrub_leaves_other_numbers_alone(value: str) -> None:
    assert scrub(value) == value


@pytest.mark.parametrize(
    "key",
    ["password", "passphrase", "ca_passphrase", "PASSWORD", "client_secret", "otp", "otp_code",
     "pin", "private_key", "key_pem", "access_token", "id_token", "pass"],
)
def test_scrub_redacts_values_under_secret_named_keys(key: str) -> None:
    out = scrub({key: "hunter2-very-secret", "profile": "staff"})
    assert out == {key: "[redacted]", "profile": "staff"}


def test_scrub_redacts_secret_keys_at_any_depth() -> None:
    out = scrub({"request": {"user": "an", "password": "x"},
                 "items": [{"token": "t", "n": 1}]})
    assert out == {"request": {"user": "an", "password": "[redacted]"},
                   "items": [{"token": "[redacted]", "n": 1}]}


def test_scrub_redacts_non_string_secrets_too() -> None:
    assert scrub({"pin": 1234, "private_key": b"\x00"}) == {"pin": "[redacted]",
                                                          "private_key": "[redacted]"}


def test_scrub_keeps_ordinary_keys() -> None:
    details = {"profile": "staff", "issuer": "staff", "serial": "abc", "crl_number": 3,
               "holder_hint": "019******345", "key_type": "ec-p256", "entries": 0}
    assert scrub(details) == details


def test_scrub_converts_datetimes_enums_and_tuples() -> None:
    out = scrub({"when": dt.datetime(2026, 11, 23, 9, 0, tzinfo=VIETNAM),
                 "layer": Layer.PKI, "pair": ("a", RAW_ID)})
    assert out == {"when": "2026-11-23T02:00:00+00:00", "layer": "pki",
                   "pair": ["a", "019******345"]}


def test_event_details_are_scrubbed_in_to_dict() -> None:
    data = event(passphrase="s3cret-passphrase", reason=f"bad {RAW_ID}").to_dict()
    assert data["details"] == {"passphrase": "[redacted]", "reason": "bad 019******345"}
    assert "s3cret" not in json.dumps(data)


def test_scrub_masks_ids_glued_to_letters_but_keeps_hex_serials_whole() -> None:
    serial = "6c38f01812ff484000021600cec9eb332d0872dc"
    assert scrub(f"CSR UID cccd033301000123 for {serial}") == (
        f"CSR UID cccd033******123 for {serial}")


class _Text(str):
    pass


class _Number(int):
    pass


def reference_text(value: str) -> str:
    """Masking as first written: every token once any 12 digits are in the text."""
    return _TOKEN.sub(_mask_token, value) if re.search(r"[0-9]{12}", value) else value


def reference_scrub(value: Any, key: str = "") -> Any:
    """scrub() as first written: its general rules, without the fast paths for exact types."""
    if key and secret_key(key):
        return "[redacted]"
    if type(value) is str:
        return reference_text(value)
    if isinstance(value, Enum):
        return reference_scrub(value.value)
    if isinstance(value, bool | float) or value is None:
        return value
    if isinstance(value, int):
        return reference_text(str(int(value))) if 10**11 <= abs(value) < 10**12 else int(value)
    if isinstance(value, str):
        return reference_text(str(value))
    if isinstance(value, Mapping):
        return {reference_text(str(k)): reference_scrub(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [reference_scrub(v) for v in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    return reference_text(str(value))


# Text that often holds 12-digit runs, UUID-like tokens, hex, quotes, controls, Vietnamese
# letters and lone surrogates.
_TEXT = st.one_of(
    st.text(alphabet=st.sampled_from([*"0123456789" * 3, *"-aAfFx :._/\"\\\n\x00", "đ", "ễ", "\udce1"]),
            max_size=48),
    st.text(max_size=16),
    st.builds(lambda a, b: f"{a}{RAW_ID}{b}", st.text("-a0", max_size=3), st.text("-a0", max_size=3)),
    st.uuids().map(lambda u: f"{u}{RAW_ID}"),  # a UUID cuts a longer digit run
)
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(10**11 - 2, 10**12 + 2), st.floats(),
    _TEXT, st.binary(max_size=6), st.sampled_from([Layer.PKI, Outcome.FAILURE]),
    _TEXT.map(_Text), st.integers(10**11, 10**12).map(_Number),
    st.datetimes(timezones=st.sampled_from([dt.UTC, VIETNAM])),
)
_KEYS = st.one_of(st.sampled_from(["password", "otp", "accessToken", "reason", "ip", "session", "n"]),
                  _TEXT, st.integers(10**11, 10**12))
_VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.tuples(inner, inner), st.frozensets(st.integers(), max_size=3),
    st.dictionaries(_KEYS, inner, max_size=3)), max_leaves=10)


@settings(max_examples=400, deadline=None)
@given(_VALUES, _KEYS.map(str) | st.just(""))
def test_scrub_gives_what_its_general_rules_give(value: Any, key: str) -> None:
    assert repr(scrub(value, key)) == repr(reference_scrub(value, key))


@settings(max_examples=400, deadline=None)
@given(st.builds(
    AuditEvent,
    time=st.datetimes(timezones=st.sampled_from([dt.UTC, VIETNAM])),
    layer=st.sampled_from(Layer), action=_TEXT, outcome=st.sampled_from(Outcome),
    actor=_TEXT | _TEXT.map(_Text), object=_TEXT | st.integers(),
    details=st.dictionaries(_KEYS, _VALUES, max_size=4) | st.just({"blob": "x" * MAX_ENTRY_BYTES}),
    source=_TEXT, request_id=_TEXT))
def test_the_fast_encoder_writes_the_canonical_json_of_to_dict(e: AuditEvent) -> None:
    try:
        expected = encode_body(e.to_dict())
    except AuditError as exc:
        with pytest.raises(AuditError, match=re.escape(str(exc))):
            encode_event(e)
        return
    assert encode_event(e) == expected


# --- pseudonyms ------------------------------------------------------------------------------------

def test_pseudonym_is_stable_per_key_and_hides_the_id(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "pseudonym.key"
    first = Pseudonymizer.from_file(path)
    again = Pseudonymizer.from_file(path)
    assert first.pseudonym(RAW_ID) == again.pseudonym(RAW_ID)
    assert first.pseudonym(RAW_ID) != first.pseudonym("033301000123")
    assert first.pseudonym(RAW_ID).startswith("psn:")
    assert RAW_ID not in first.pseudonym(RAW_ID)
    assert mode(path) == 0o600
    other = Pseudonymizer.from_file(tmp_path / "other.key")
    assert other.pseudonym(RAW_ID) != first.pseudonym(RAW_ID)
    assert "key hidden" in repr(first)


def test_pseudonym_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pseudonym.key"
    path.write_bytes(b"k" * 32)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        Pseudonymizer.from_file(path)


def test_short_pseudonym_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="32 bytes"):
        Pseudonymizer(b"short")
