"""Audit-log performance, side by side with peers in one run (ratios, not absolute times).

1. Durable appends: kyso's group commit (many threads recording at once, each call returns
   only when its event is fsync'd) against the naive peer (one write + fdatasync per event)
   and against raw batched writes of the same bytes (the disk's ceiling); both through
   AuditLog.record and through Kyso.record, the server's path. The harness alone (the same
   threads into a sink that keeps nothing) shows what the threads themselves cost.
2. Full verification of a 1,000,000-event log against hashing the same bytes with hashlib:
   per entry (the leaf hashes any verifier must compute) and as one stream.
3. Inclusion proofs in the 1M log: length and verification time.

Usage: .venv/bin/python bench/audit_log.py [--events 1000000] [--threads 32] [--per-thread 1000]
       [--rounds 3] [--appends-only] [--dir DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kyso.audit import AuditEvent, AuditLog, Layer, Outcome
from kyso.audit.merkle import leaf_hash, verify_inclusion
from kyso.audit.proofs import load_tree
from kyso.audit.verify import verify_log
from kyso.config import AuditSettings, load_settings
from kyso.context import open_kyso

T0 = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)


def event(i: int) -> AuditEvent:
    return AuditEvent(T0, Layer.AUTHN, "LOGIN", Outcome.SUCCESS, f"pseud:{i % 977:08x}",
                      "client:dvc-thainguyen", {"ip": f"203.113.1.{i % 250}",
                                                  "level": 2, "session": f"{i:016x}"},
                      source="203.113.1.1", request_id=f"req-{i:012d}")


def _machine_busy_seconds() -> float | None:
    """CPU seconds all processes of the machine have used (Linux /proc/stat), else None."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    ticks = [int(x) for x in fields]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    rate: float  # events/s
    cpu_per_event: float  # µs of this process's CPU per event
    others: float | None  # cores other processes used meanwhile


def threaded(threads: int, per_thread: int, call: Callable[[int], object]) -> tuple[Run, float]:
    """``call(i)`` for i in range(per_thread) in each of ``threads`` threads. The threads are
    started (and their start-up timed apart) before the clock starts; a barrier releases them
    together. Returns the run and the start-up time."""
    start = threading.Barrier(threads + 1)

    def worker() -> None:
        start.wait()
        for i in range(per_thread):
            call(i)

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    t = time.perf_counter()
    for w in workers:
        w.start()
    startup = time.perf_counter() - t
    machine0, cpu0 = _machine_busy_seconds(), time.process_time()
    t = time.perf_counter()
    start.wait()
    for w in workers:
        w.join()
    wall = time.perf_counter() - t
    cpu = time.process_time() - cpu0
    machine1 = _machine_busy_seconds()
    n = threads * per_thread
    others = (None if machine0 is None or machine1 is None
              else max(0.0, machine1 - machine0 - cpu) / wall)  # (clock ticks: coarse)
    return Run(n / wall, cpu / n * 1e6, others), startup


def bench_appends(root: Path, threads: int, per_thread: int, rounds: int) -> None:
    print(f"\n== durable appends: {threads} threads x {per_thread} events, {rounds} rounds ==")
    # Peer: one write + fdatasync per event, same bytes, one thread (what a naive log does).
    lines = [f'{{"seq":{i},"x":"{"a" * 300}"}}\n'.encode() for i in range(2000)]
    path = root / "naive.jsonl"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    t = time.perf_counter()
    for line in lines:
        os.write(fd, line)
        os.fdatasync(fd)
    naive = len(lines) / (time.perf_counter() - t)
    os.close(fd)
    # Ceiling: the same bytes written in batches of 256 with one fdatasync each.
    fd = os.open(root / "batched.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    t = time.perf_counter()
    for i in range(0, 20000, 256):
        os.write(fd, b"".join(lines[j % 2000] for j in range(i, i + 256)))
        os.fdatasync(fd)
    ceiling = 20000 / (time.perf_counter() - t)
    os.close(fd)

    events = [event(i) for i in range(per_thread)]
    # What the harness itself costs: the same threads and loop, into a sink that keeps nothing.
    harness, startup = threaded(threads, per_thread, lambda i: events[i])

    # The threaded log: each thread calls AuditLog.record once per event (the events are
    # made beforehand), as a thread pool of request handlers does.
    log = AuditLog(root / "group", AuditSettings(rotate_daily=False))
    log.record(event(0))  # the first commit opens the files; not timed
    # The server's path: Kyso.record (the clock, the event, the redaction, the durable write)
    # from the same number of threads.
    home = root / "home"
    ctx = open_kyso(load_settings(home=home, environ={}), source="server")
    ctx.record(Layer.SERVER, "BENCH_START", Outcome.SUCCESS)
    args = [(f"psn:{i % 977:08x}", f"{uuid.UUID(int=i)}", f"203.113.1.{i % 250}", f"{i:016x}")
            for i in range(per_thread)]

    def server_call(i: int) -> None:
        actor, request_id, ip, session = args[i]
        ctx.record(Layer.AUTHN, "LOGIN", Outcome.SUCCESS, "client:dvc-thainguyen", actor=actor,
                   request_id=request_id, ip=ip, level=2, session=session)

    runs: dict[str, list[Run]] = {"log": [], "kyso": []}
    for r in range(rounds):  # alternate, so that drift in the machine's speed hits both alike
        for name in ("log", "kyso") if r % 2 == 0 else ("kyso", "log"):
            call = (lambda i: log.record(events[i])) if name == "log" else server_call
            runs[name].append(threaded(threads, per_thread, call)[0])
    log.close()
    ctx.close()
    # record_many: a request that records several events at once (issue_many, batch signing).
    log = AuditLog(root / "many", AuditSettings(rotate_daily=False))
    batch = [event(i) for i in range(100)]
    t = time.perf_counter()
    for _ in range(200):
        log.record_many(batch)
    many = 20000 / (time.perf_counter() - t)
    log.close()

    def load(run: Run) -> str:
        return "" if run.others is None else f"; other processes used {run.others:.2f} cores"

    print(f"naive write+fdatasync per event              {naive:>10,.0f} events/s")
    print(f"raw batched writes (256 per fdatasync)       {ceiling:>10,.0f} events/s")
    print(f"harness alone ({threads} threads, no sink)         {harness.rate:>10,.0f} events/s "
          f"(thread start-up {startup * 1e3:.0f} ms, not timed)")
    for name, label in (("log", f"AuditLog.record, {threads} threads"),
                        ("kyso", f"Kyso.record (server path), {threads} thr.")):
        rates = sorted(run.rate for run in runs[name])
        mid = sorted(runs[name], key=lambda run: run.rate)[len(rates) // 2]
        print(f"{label:<44} {mid.rate:>10,.0f} events/s (median of {rounds}; "
              f"{mid.rate / naive:.1f}x naive, {mid.rate / ceiling:.1%} of raw batched)")
        print(f"{'':<44} best {rates[-1]:,.0f}/s, worst {rates[0]:,.0f}/s; "
              f"{mid.cpu_per_event:.0f} µs CPU per event{load(mid)}")
    print(f"kyso record_many(100), 1 thread              {many:>10,.0f} events/s "
          f"({many / naive:.1f}x naive)")


def build_log(directory: Path, n: int) -> None:
    log = AuditLog(directory, AuditSettings(rotate_daily=False))
    step = 10_000
    for i in range(0, n, step):
        log.append([event(j) for j in range(i, min(n, i + step))])
    log.close()


def bench_verify(directory: Path, n: int) -> None:
    print(f"\n== full verification of a {n:,}-event log ==")
    segments = sorted((directory / "segments").iterdir())
    total = sum(p.stat().st_size for p in segments)
    verify_log(directory)  # warm the page cache for everyone alike
    t = time.perf_counter()
    report = verify_log(directory)
    ours = time.perf_counter() - t
    if not report.ok or report.size != n:
        raise SystemExit(f"the benchmark log does not verify: {report.checks}")
    t = time.perf_counter()
    for p in segments:
        for line in p.read_bytes().split(b"\n")[:-1]:
            hashlib.sha256(b"\x00" + line).digest()
    per_entry = time.perf_counter() - t
    t = time.perf_counter()
    for p in segments:
        hashlib.sha256(p.read_bytes()).digest()
    stream = time.perf_counter() - t
    print(f"log: {len(segments)} segment(s), {total / 1e6:,.1f} MB, {total / n:.0f} bytes/entry")
    print(f"kyso verify_log (chain + tree + head)  {n / ours:>12,.0f} events/s  {ours:.2f} s")
    print(f"hashlib, one sha256 per entry          {n / per_entry:>12,.0f} events/s  "
          f"{per_entry:.2f} s  -> kyso takes {ours / per_entry:.2f}x")
    print(f"hashlib, one sha256 over all bytes     {n / stream:>12,.0f} events/s  "
          f"{stream:.2f} s  -> kyso takes {ours / stream:.2f}x")


def bench_proofs(directory: Path, n: int) -> None:
    print(f"\n== inclusion proofs in the {n:,}-event log ==")
    t = time.perf_counter()
    log = load_tree(directory, n, [0, n // 3, n - 1])
    root = log.tree.root()
    print(f"load tree (read + hash every entry)    {time.perf_counter() - t:.2f} s")
    worst = 0
    t_verify = 0.0
    rounds = 2000
    for seq in (0, n // 3, n - 1):
        proof = log.tree.inclusion_proof(seq)
        worst = max(worst, len(proof))
        leaf = leaf_hash(log.lines[seq])
        t = time.perf_counter()
        for _ in range(rounds):
            verify_inclusion(seq, n, leaf, proof, root)
        t_verify = max(t_verify, (time.perf_counter() - t) / rounds)
    print(f"longest proof                          {worst} hashes (ceil(log2 n) = "
          f"{(n - 1).bit_length()})")
    print(f"verify one inclusion proof             {t_verify * 1e6:.1f} µs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--per-thread", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the threaded appends")
    parser.add_argument("--appends-only", action="store_true", help="skip the 1M-event log")
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="kyso-bench-"))
    try:
        bench_appends(root, args.threads, args.per_thread, args.rounds)
        if args.appends_only:
            return
        big = root / "big"
        t = time.perf_counter()
        build_log(big, args.events)
        print(f"\n(built the {args.events:,}-event log in {time.perf_counter() - t:.1f} s)")
        bench_verify(big, args.events)
        bench_proofs(big, args.events)
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
