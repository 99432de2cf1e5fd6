"""Audit-log performance, side by side with peers in one run (ratios, not absolute times).

1. Durable appends: kyso's group commit (many threads recording at once, each call returns
   only when its event is fsync'd) against the naive peer (one write + fdatasync per event)
   and against raw batched writes of the same bytes (the disk's ceiling).
2. Full verification of a 1,000,000-event log against hashing the same bytes with hashlib:
   per entry (the leaf hashes any verifier must compute) and as one stream.
3. Inclusion proofs in the 1M log: length and verification time.

Usage: .venv/bin/python bench/audit_log.py [--events 1000000] [--threads 32] [--dir DIR]
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
from pathlib import Path

from kyso.audit import AuditEvent, AuditLog, Layer, Outcome
from kyso.audit.merkle import leaf_hash, verify_inclusion
from kyso.audit.proofs import load_tree
from kyso.audit.verify import verify_log
from kyso.config import AuditSettings

T0 = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)


def event(i: int) -> AuditEvent:
    return AuditEvent(T0, Layer.AUTHN, "LOGIN", Outcome.SUCCESS, f"pseud:{i % 977:08x}",
                      "client:dvc-thainguyen", {"ip": f"203.113.1.{i % 250}",
                                                  "level": 2, "session": f"{i:016x}"},
                      source="203.113.1.1", request_id=f"req-{i:012d}")


def bench_appends(root: Path, threads: int, per_thread: int) -> None:
    print(f"\n== durable appends: {threads} threads x {per_thread} events ==")
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

    log = AuditLog(root / "group", AuditSettings(rotate_daily=False))
    events = [event(i) for i in range(per_thread)]

    def worker() -> None:
        for e in events:
            log.record(e)

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    t = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    group = threads * per_thread / (time.perf_counter() - t)
    log.close()
    # record_many: a request that records several events at once (issue_many, batch signing).
    log = AuditLog(root / "many", AuditSettings(rotate_daily=False))
    batch = [event(i) for i in range(100)]
    t = time.perf_counter()
    for _ in range(200):
        log.record_many(batch)
    many = 20000 / (time.perf_counter() - t)
    log.close()
    print(f"naive write+fdatasync per event        {naive:>10,.0f} events/s")
    print(f"raw batched writes (ceiling, 256/sync) {ceiling:>10,.0f} events/s")
    print(f"kyso group commit, {threads} threads         {group:>10,.0f} events/s "
          f"({group / naive:.1f}x naive)")
    print(f"kyso record_many(100)                  {many:>10,.0f} events/s "
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
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="kyso-bench-"))
    try:
        bench_appends(root, args.threads, args.per_thread)
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
