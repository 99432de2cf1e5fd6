#!/usr/bin/env python3
"""e-ID registry at provincial scale: account lookup + token issuance at 1,100,000 identities
against the same at 1,000, in one run.

Two SQLite registries are built in a temporary directory with the project's schema
(``kyso.store.open_store``): ``--small`` (1,000) and ``--size`` (1,100,000, Thái Nguyên's
reported count of level-2 accounts) synthetic level-2 identities. ID numbers are valid and
unique: a 3-digit province code from ``kyso.pki.identifiers.PROVINCES``, the century/sex digit,
the two-digit birth year and a 6-digit sequence; the date of birth and sex agree with them.
Rows go in with ``executemany`` on the ``identities`` table, 20,000 per transaction, with one
fixed placeholder password hash: password hashing (argon2id, deliberately slow) is excluded.

The timed operation is what the provider does per login once the password is checked:
``Registry(store, clock).find(id_number)`` of a random existing ID (fresh read transaction,
indexed lookup, row → Identity) + ``kyso.authn.tokens.issue`` of an RFC 9068 access token for
it (ES256, the OIDC provider's claims). ``--rounds`` rounds of ``--ops`` operations alternate
between the two registries (order swapped every round). Verdict: the large registry's median
per-op time within 1.5× of the small one's. Build time and database size are printed too.
Run ``python3 bench/eid_registry.py [--size N] [--ops N] [--rounds N]``; the databases are
deleted at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import random
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from kyso.authn.acr import ACR_LEVEL_2
from kyso.authn.keys import KeySet
from kyso.authn.registry import Level, Registry
from kyso.authn.tokens import TokenType, issue
from kyso.clock import FrozenClock
from kyso.pki.identifiers import PROVINCES
from kyso.store import Store, open_store
from kyso.store.schema import identities

TARGET = 1.5
CHUNK = 20_000
PLACEHOLDER_HASH = "$argon2id$v=19$m=65536,t=3,p=4$YmVuY2gtc2FsdA$YmVuY2gtcGxhY2Vob2xkZXI"
ISSUER = "https://id.thainguyen.gov.vn"
NOW = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)
CODES = sorted(PROVINCES)
YEARS = range(1950, 2008)
SURNAMES = ("Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Vũ", "Đặng", "Bùi", "Đỗ", "Hồ")
MIDDLE = ("Văn", "Thị", "Đức", "Ngọc", "Minh", "Thu", "Hữu", "Thanh")
GIVEN = ("An", "Bình", "Chi", "Dũng", "Giang", "Hà", "Hùng", "Lan", "Linh", "Nam", "Phương",
         "Quân", "Sơn", "Thảo", "Trang", "Tuấn")


def identity(i: int) -> tuple[str, int, bool]:
    """The i-th synthetic person: (ID number, birth year, female), unique for every i."""
    code = CODES[i % len(CODES)]
    rest = i // len(CODES)
    year = YEARS[rest % len(YEARS)]
    rest //= len(YEARS)
    female = bool(rest % 2)
    serial = rest // 2
    if serial >= 1_000_000:
        raise ValueError("too many identities for the synthetic numbering")
    century_digit = 2 * ((year - 1900) // 100) + int(female)
    return f"{code}{century_digit}{year % 100:02d}{serial:06d}", year, female


def rows(start: int, stop: int) -> Iterator[dict[str, Any]]:
    for i in range(start, stop):
        number, year, female = identity(i)
        yield {
            "subject": "u-" + secrets.token_urlsafe(16),
            "id_number": number,
            "full_name": f"{SURNAMES[i % 10]} {MIDDLE[i % 8]} {GIVEN[i % 16]}",
            "birth_date": f"{year}-{1 + i % 12:02d}-{1 + i % 28:02d}",
            "sex": "female" if female else "male",
            "phone": None, "email": None,
            "level": int(Level.TWO), "status": "active",
            "password_hash": PLACEHOLDER_HASH, "password_changed_at": NOW,
            "level2_at": NOW, "level2_officer": "officer:bench",
            "created_at": NOW, "updated_at": NOW, "version": 1,
        }


def build(path: Path, size: int) -> tuple[Store, float]:
    store = open_store(f"sqlite:///{path}", now=lambda: NOW)
    start = time.perf_counter()
    for first in range(0, size, CHUNK):
        batch = list(rows(first, min(size, first + CHUNK)))
        store.write(lambda conn, b=batch: conn.execute(sa.insert(identities), b))  # type: ignore[misc]
        if size >= 100_000 and first % 200_000 == 0:
            print(f"  … {first:,} / {size:,}", file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - start
    with sqlite3.connect(path) as raw:  # statistics for the query planner, as a DBA would
        raw.execute("ANALYZE")
    return store, elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1_100_000, help="identities, large registry")
    parser.add_argument("--small", type=int, default=1_000, help="identities, small registry")
    parser.add_argument("--ops", type=int, default=2000, help="lookups + issuances per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seed", type=int, default=20261123)
    args = parser.parse_args()
    if not 1 <= args.small <= args.size or args.ops < 1 or args.rounds < 1:
        parser.error("need 1 ≤ --small ≤ --size, --ops ≥ 1, --rounds ≥ 1")
    rng = random.Random(args.seed)
    clock = FrozenClock(NOW)
    keys = KeySet.create(clock)

    with tempfile.TemporaryDirectory() as tmp:
        registries: dict[str, tuple[Registry, int]] = {}
        built: dict[str, tuple[float, int]] = {}
        stores: list[Store] = []
        for name, size in (("small", args.small), ("large", args.size)):
            path = Path(tmp) / f"{name}.db"
            print(f"building {name} registry: {size:,} identities", file=sys.stderr, flush=True)
            store, seconds = build(path, size)
            stores.append(store)
            registry = Registry(store, clock)
            if registry.count() != size:
                print(f"{name}: {registry.count()} rows instead of {size}", file=sys.stderr)
                return 1
            registries[name] = (registry, size)
            wal = path.with_name(path.name + "-wal")
            built[name] = (seconds, path.stat().st_size + (wal.stat().st_size if wal.exists() else 0))

        def run(registry: Registry, size: int, ops: int) -> float:
            picks = [identity(rng.randrange(size))[0] for _ in range(ops)]
            start = time.perf_counter()
            for number in picks:
                found = registry.find(number)
                if found is None or found.level is not Level.TWO:
                    raise SystemExit(f"lookup failed for {number[:3]}…")
                issue(keys, typ=TokenType.ACCESS, issuer=ISSUER, subject=found.subject,
                      audience=["dichvucong-api"], lifetime=dt.timedelta(minutes=30),
                      clock=clock, claims={"client_id": "dichvucong-portal", "scope": "openid",
                                           "acr": ACR_LEVEL_2, "amr": ["pwd", "otp"],
                                           "auth_time": int(NOW.timestamp())})
            return (time.perf_counter() - start) / ops

        for registry, size in registries.values():  # warm-up (page cache, statements)
            run(registry, size, min(args.ops, 300))
        per_op: dict[str, list[float]] = {name: [] for name in registries}
        names = list(registries)
        for r in range(args.rounds):
            for name in (names if r % 2 == 0 else names[::-1]):
                per_op[name].append(run(*registries[name], args.ops))
        for store in stores:
            store.close()

    med = {name: statistics.median(v) for name, v in per_op.items()}
    ratio = med["large"] / med["small"]
    print(f"machine: {platform.machine()}, Python {platform.python_version()}, SQLite "
          f"{sqlite3.sqlite_version}, {args.rounds} rounds × {args.ops} lookup+issue")
    for name in names:
        seconds, size_bytes = built[name]
        count = registries[name][1]
        print(f"  {name:5}  {count:>9,} identities  built in {seconds:6.1f} s "
              f"({count / seconds:,.0f} rows/s), {size_bytes / 2**20:8.2f} MiB   "
              f"{1e6 * med[name]:7.1f} µs/op  {1 / med[name]:6.0f} ops/s")
    verdict = "PASS" if ratio <= TARGET else "FAIL"
    print(f"  large/small time per op: {ratio:.2f}× (target ≤ {TARGET}×): {verdict}")
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
