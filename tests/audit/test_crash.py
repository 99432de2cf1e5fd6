"""The crash suite: a writer appending from several threads is killed with SIGKILL at a random
moment, again and again. Every event it acknowledged as durable must still be there, the log must
verify up to at least the last of them, a partial last line must be reported as a torn tail
(never passed over, never called anything else), and the next writer must quarantine it and
leave a log that verifies completely."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from kyso.audit import AuditEvent, AuditLog, Layer, Outcome, read_events
from kyso.audit.verify import Kind, Status, verify_log
from kyso.clock import FrozenClock
from kyso.config import AuditSettings

pytestmark = pytest.mark.slow

T0 = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)
RUNS = 24
THREADS = 4
RECORD_RUNS = 8
RECORD_THREADS = 32

# Each thread appends batches of 1-12 events of ~700 bytes and prints their seqs once they are
# acknowledged. A kill rarely lands inside a write() of a few KiB, so some runs simulate a slow
# disk (short writes, as POSIX allows and the writer's loop handles) to tear writes often.
_CHILD = """
import datetime as dt, random, sys, threading
from pathlib import Path
from kyso.audit import AuditEvent, AuditLog, Layer, Outcome
from kyso.config import AuditSettings

directory, label, max_bytes, threads = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
chunk, pause, mode = int(sys.argv[5]), float(sys.argv[6]), sys.argv[7]
if chunk:  # a slow disk: segment writes return short, so a kill often lands mid-write
    import os, time
    real_write = os.write

    def slow_disk(fd, data):
        if "/segments/" not in os.readlink(f"/proc/self/fd/{fd}"):
            return real_write(fd, data)
        written = real_write(fd, bytes(memoryview(data)[:chunk]))
        time.sleep(pause)
        return written

    os.write = slow_disk
log = AuditLog(directory, AuditSettings(segment_max_bytes=max_bytes))
out = threading.Lock()
t0 = dt.datetime(2026, 11, 23, 16, 59, 59, tzinfo=dt.UTC)
pad = "Nguyễn Văn An đã ký hồ sơ " * 16

def work(n):
    rnd = random.Random(n)
    i = 0
    while True:
        when = t0 + dt.timedelta(milliseconds=rnd.randint(0, 2000))  # across a VN midnight
        if mode == "record":  # one event per call, as a server request records it
            log.record(AuditEvent(time=when, layer=Layer.SERVER, action="CRASH_TEST",
                                  outcome=Outcome.SUCCESS, actor=f"{label}:t{n}",
                                  details={"i": i, "pad": pad}))
            i += 1
            acked = f"t{n}:{i - 1}"
        else:
            k = rnd.randint(1, 12)
            batch = [AuditEvent(time=when, layer=Layer.SERVER, action="CRASH_TEST",
                                outcome=Outcome.SUCCESS, actor=f"{label}:t{n}",
                                details={"i": i + j, "pad": pad}) for j in range(k)]
            seqs = log.append(batch)
            i += k
            acked = " ".join(map(str, seqs))
        with out:
            sys.stdout.write(acked + "\\n")
            sys.stdout.flush()

workers = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(threads)]
sys.stdout.write("ready\\n")
sys.stdout.flush()
for w in workers:
    w.start()
for w in workers:
    w.join()
"""


@dataclass
class Kill:
    acked: set[int]
    delay: float


def run_and_kill(directory: Path, out: Path, label: str, delay: float, max_bytes: int, *,
                 chunk: int = 0, pause: float = 0.0, after_acks: int = 0, threads: int = THREADS,
                 mode: str = "append") -> list[str]:
    """Start a writer, let it append for ``delay`` seconds once ready (and once it acknowledged
    ``after_acks`` appends), SIGKILL it; return its acknowledgements (complete output lines
    only): seqs in "append" mode, ``t<thread>:<i>`` in "record" mode."""
    with out.open("wb") as stdout:
        child = subprocess.Popen([sys.executable, "-c", _CHILD, str(directory), label, str(max_bytes),
                                  str(threads), str(chunk), str(pause), mode],
                                 stdout=stdout, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while (not out.read_bytes().startswith(b"ready\n")
               or out.read_bytes().count(b"\n") < 1 + after_acks):
            assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
            assert time.monotonic() < deadline, "the writer never got ready"
            time.sleep(0.005)
        time.sleep(delay)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        _stdout, err = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL, err.decode()
    data = out.read_bytes()
    return data[:data.rfind(b"\n") + 1].decode().splitlines()[1:]


def acked_seqs(lines: list[str]) -> set[int]:
    return {int(s) for line in lines for s in line.split()}


def complete_lines_and_tail(directory: Path) -> tuple[int, bytes]:
    """Counted independently of the verifier: complete lines in all segments, and the bytes
    after the last newline of the last segment."""
    files = sorted((directory / "segments").glob("*.jsonl"))
    count = sum(p.read_bytes().count(b"\n") for p in files)
    last = files[-1].read_bytes() if files else b""
    return count, last[last.rfind(b"\n") + 1:]


def assert_only_a_torn_tail_then_recovers(directory: Path, max_bytes: int, size: int) -> None:
    """(b) a partial last line is a torn tail, and only that; (c) the next writer quarantines it
    and the whole log verifies."""
    report = verify_log(directory)
    assert report.size == size
    lines, tail = complete_lines_and_tail(directory)
    assert report.size == lines
    kinds = [f.kind for f in report.findings]
    if tail:
        assert kinds == [Kind.TORN_TAIL], report.findings
        assert report.findings[0].seq == report.size
        assert not report.ok
        assert {c.name: c.status for c in report.checks}["tail"] is Status.FAIL
    else:
        assert kinds == [], report.findings
        assert report.ok, report.checks

    # (c) the next writer quarantines the tail and the whole log verifies
    writer = AuditLog(directory, AuditSettings(segment_max_bytes=max_bytes), FrozenClock(T0))
    (seq,) = writer.append([AuditEvent(time=T0, layer=Layer.AUDIT, action="AFTER_CRASH",
                                       outcome=Outcome.SUCCESS, actor="test")])
    writer.close()
    assert seq == report.size + (1 if tail else 0)
    events = read_events(directory)
    assert [e["seq"] for e in events] == list(range(seq + 1))
    if tail:
        torn = events[seq - 1]
        assert torn["action"] == "AUDIT_TORN_TAIL"
        assert torn["details"]["sha256"] == hashlib.sha256(tail).hexdigest()
        assert torn["details"]["bytes"] == len(tail)
        assert (directory / torn["details"]["kept_as"]).read_bytes() == tail
    final = verify_log(directory)
    assert final.ok, (final.findings, final.checks)
    assert final.findings == ()
    assert final.size == seq + 1
    statuses = {c.name: c.status for c in final.checks}
    assert all(s in (Status.PASS, Status.SKIP, Status.WARN) for s in statuses.values())
    if not any(e["action"] == "AUDIT_TORN_TAIL" for e in events):
        assert statuses["torn tails"] is Status.PASS


@pytest.mark.parametrize("seed", range(RUNS))
def test_a_writer_killed_at_a_random_moment_loses_no_durable_event(tmp_path: Path, seed: int) -> None:
    rnd = random.Random(seed)
    directory = tmp_path / "audit"
    max_bytes = rnd.choice([8 * 1024, 32 * 1024, 1 << 20])
    acked: set[int] = set()
    chunk, pause = rnd.choice([(0, 0.0), (512, 0.0002), (4096, 0.001)])
    for round_ in range(1 + seed % 2):  # every other run kills a writer that recovered a crash
        acked |= acked_seqs(run_and_kill(directory, tmp_path / f"out{round_}", f"r{round_}",
                                         rnd.uniform(0.02, 0.3), max_bytes, chunk=chunk, pause=pause,
                                         after_acks=1))
    assert acked, "the writer acknowledged nothing before it was killed"

    # (a) every acknowledged event is there, and the log verifies at least up to the last one
    present = {e["seq"] for e in read_events(directory)}
    assert acked <= present, sorted(acked - present)[:10]
    report = verify_log(directory)
    assert report.size >= max(acked) + 1
    assert report.size == len(present)

    assert_only_a_torn_tail_then_recovers(directory, max_bytes, report.size)


@pytest.mark.parametrize("seed", range(RECORD_RUNS))
def test_a_writer_killed_while_many_threads_record_single_events_loses_none_it_acknowledged(
        tmp_path: Path, seed: int) -> None:
    """The server's path: many threads, one event per ``record`` call, each handed to the log's
    writer thread. A call that returned is durable; a thread's events are in its order."""
    rnd = random.Random(1000 + seed)
    directory = tmp_path / "audit"
    max_bytes = rnd.choice([32 * 1024, 1 << 20])
    chunk, pause = rnd.choice([(0, 0.0), (4096, 0.001)])
    acked = set(run_and_kill(directory, tmp_path / "out", "rec", rnd.uniform(0.02, 0.3), max_bytes,
                             chunk=chunk, pause=pause, after_acks=RECORD_THREADS,
                             threads=RECORD_THREADS, mode="record"))
    assert len(acked) >= RECORD_THREADS
    events = read_events(directory)
    by_thread: dict[str, list[int]] = {}
    for e in events:
        by_thread.setdefault(e["actor"].split(":", 1)[1], []).append(e["details"]["i"])
    present = {f"{thread}:{i}" for thread, mine in by_thread.items() for i in mine}
    assert acked <= present, sorted(acked - present)[:10]
    for mine in by_thread.values():  # each thread's events, in its order, without a gap
        assert mine == list(range(len(mine)))
    assert_only_a_torn_tail_then_recovers(directory, max_bytes, len(events))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to simulate a slow disk")
def test_a_writer_killed_in_the_middle_of_a_write_leaves_a_torn_tail_that_is_reported(
        tmp_path: Path) -> None:
    directory = tmp_path / "audit"
    acked = acked_seqs(run_and_kill(directory, tmp_path / "out", "slow", 0.05, 1 << 20, chunk=16,
                                    pause=0.001, after_acks=1))
    lines, tail = complete_lines_and_tail(directory)
    assert tail, "the kill was meant to land in the middle of a write"
    report = verify_log(directory)
    assert [f.kind for f in report.findings] == [Kind.TORN_TAIL]
    assert report.size == lines >= max(acked) + 1
    writer = AuditLog(directory, AuditSettings(), FrozenClock(T0))
    writer.append([AuditEvent(time=T0, layer=Layer.AUDIT, action="AFTER_CRASH", outcome=Outcome.SUCCESS,
                              actor="test")])
    writer.close()
    torn = read_events(directory)[lines]
    assert torn["action"] == "AUDIT_TORN_TAIL"
    assert torn["details"]["sha256"] == hashlib.sha256(tail).hexdigest()
    assert verify_log(directory).ok
