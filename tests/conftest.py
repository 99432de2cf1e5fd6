"""Shared fixtures: a frozen clock, a fresh home, an initialised CA (EC P-384 for speed).

With ``KYSO_TEST_DATABASE_URL`` set (a PostgreSQL URL, see scripts/pg-test-cluster), every test
that has a scratch directory also gets a database of its own on that server (see
:func:`database_url`), and tests marked ``sqlite_only`` are skipped.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from kyso.audit import read_events
from kyso.clock import FrozenClock
from kyso.config import load_settings
from kyso.context import Kyso, open_kyso
from kyso.pki.authority import CertificateAuthority, init_ca
from kyso.pki.keys import KeyType
from kyso.store import open_store

PASSPHRASE = "test-ca-passphrase"
# A public-looking host: ETSI linting rightly reports internal names (127.0.0.1) as errors.
BASE_URL = "http://pki.thainguyen.gov.vn"
T0 = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)

STAFF = {
    "name": "Nguyễn Văn An",
    "id": "019099012345",
    "dob": "1999-04-02",
    "title": "Chuyên viên",
    "unit": "Văn phòng UBND xã Phú Đình",
    "email": "an.nv@thainguyen.gov.vn",
}
SEAL = {"name": "UBND xã Phú Đình", "tax_code": "4600100155", "budget_code": "1234567"}
CITIZEN = {"name": "Trần Thị Bình", "id": "033301000123"}


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


# CA keys are protected by 600 000 PBKDF2 iterations in production (0.1 s per key); the suite
# creates hundreds of hierarchies, so it uses fewer. tests/pki/test_authority.py checks the
# production default.
# Likewise argon2id: the suite hashes passwords with the "test-fast" parameters (about a
# thousand times cheaper); tests/authn/test_passwords.py checks the production default.
# On PostgreSQL, the ``database_url`` fixture adds the test's KYSO_DATABASE_URL while a test runs.
FAST_KDF = {"KYSO_KEY_KDF_ITERATIONS": "2000", "KYSO_PASSWORD_HASH": "test-fast"}


@pytest.fixture(autouse=True)
def fast_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in FAST_KDF.items():
        monkeypatch.setenv(name, value)


# --- the database under test --------------------------------------------------------------
# SQLite in the home by default. With KYSO_TEST_DATABASE_URL (PostgreSQL), each test gets a
# database of its own, cloned from a template migrated once per session (CREATE DATABASE …
# TEMPLATE: ~50 ms, isolated, nothing to clean between tests). A helper thread creates the next
# database while a test runs and drops finished ones (DROP … WITH (FORCE)), so tests rarely wait.

TEST_DATABASE_URL = os.environ.get("KYSO_TEST_DATABASE_URL", "")
ON_POSTGRES = TEST_DATABASE_URL.startswith("postgresql")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "sqlite_only(reason): checks SQLite itself (files, modes, WAL); skipped when "
        "the suite runs on PostgreSQL (KYSO_TEST_DATABASE_URL)")
    if TEST_DATABASE_URL and not ON_POSTGRES:
        raise pytest.UsageError("KYSO_TEST_DATABASE_URL must be a postgresql+psycopg:// URL")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if not ON_POSTGRES:
        return
    for item in items:
        marker = item.get_closest_marker("sqlite_only")
        if marker is not None:
            reason = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "")
            item.add_marker(pytest.mark.skip(reason=f"SQLite only: {reason}"))


class PostgresDatabases:
    """Fresh databases on the test server: ``take()`` one per test, ``give_back()`` it after."""

    def __init__(self, url: str) -> None:
        self.url = sa.make_url(url)
        prefix = f"kyso_t{os.getpid()}"
        self.template = f"{prefix}_template"
        self._names = (f"{prefix}_{n}" for n in itertools.count(1))
        self._admin = sa.create_engine(self.url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        self._ddl(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)')
        self._ddl(f'CREATE DATABASE "{self.template}"')
        open_store(self.url_of(self.template), now=lambda: T0).close()  # migrated once
        self._jobs: queue.Queue[tuple[str, str, threading.Event | None]] = queue.Queue()
        self._errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._work, name="test-databases", daemon=True)
        self._thread.start()
        self._next = self._schedule()

    def url_of(self, name: str) -> str:
        return self.url.set(database=name).render_as_string(hide_password=False)

    def _ddl(self, sql: str) -> None:
        with self._admin.connect() as conn:
            conn.exec_driver_sql(sql)

    def _schedule(self) -> tuple[str, threading.Event]:
        name, done = next(self._names), threading.Event()
        self._jobs.put(("create", name, done))
        return name, done

    def _work(self) -> None:
        while True:
            kind, name, done = self._jobs.get()
            try:
                if kind == "create":
                    self._ddl(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
                elif kind == "drop":
                    self._ddl(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except Exception as exc:  # reported by take(); a thread must not die silently
                self._errors.append(exc)
            finally:
                if done is not None:
                    done.set()
            if kind == "stop":
                return

    def take(self) -> str:
        name, done = self._next
        if not done.wait(timeout=120) or self._errors:
            raise RuntimeError(f"cannot create test database {name}: {self._errors[-1:]}")
        self._next = self._schedule()
        return self.url_of(name)

    def empty(self) -> str:
        """A database with no tables at all (for migration tests); give it back like the others."""
        name = next(self._names)
        self._ddl(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.url_of(name)

    def give_back(self, url: str) -> None:
        self._jobs.put(("drop", str(sa.make_url(url).database), None))

    def close(self) -> None:
        name, _done = self._next
        self._jobs.put(("drop", name, None))
        stopped = threading.Event()
        self._jobs.put(("stop", "", stopped))
        stopped.wait(timeout=120)
        self._ddl(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)')
        self._admin.dispose()


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases | None]:
    if not ON_POSTGRES:
        yield None
        return
    databases = PostgresDatabases(TEST_DATABASE_URL)
    yield databases
    databases.close()


@pytest.fixture
def database_url(postgres_databases: PostgresDatabases | None,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[str | None]:
    """The test's own PostgreSQL database (a fresh copy of the migrated template), also
    exported as KYSO_DATABASE_URL for the CLI and subprocesses; None on SQLite (the home's
    kyso.db)."""
    if postgres_databases is None:
        yield None
        return
    url = postgres_databases.take()
    monkeypatch.setenv("KYSO_DATABASE_URL", url)
    # Tests open extra contexts with load_settings(home=..., environ=FAST_KDF): those reach the
    # same database too, for this test only.
    monkeypatch.setitem(FAST_KDF, "KYSO_DATABASE_URL", url)
    yield url
    postgres_databases.give_back(url)


@pytest.fixture(autouse=True)
def _database_for_scratch_tests(request: pytest.FixtureRequest) -> None:
    """On PostgreSQL, every test with a scratch directory (``tmp_path``, where every home comes
    from) gets its database even if it never names ``database_url``: it may open a store through
    the CLI or ``load_settings`` reading KYSO_DATABASE_URL."""
    if ON_POSTGRES and "tmp_path" in request.fixturenames:
        request.getfixturevalue("database_url")


@pytest.fixture
def empty_postgres_url(postgres_databases: PostgresDatabases | None) -> Iterator[str]:
    """A PostgreSQL database without tables; the test is skipped on SQLite."""
    if postgres_databases is None:
        pytest.skip("needs PostgreSQL (KYSO_TEST_DATABASE_URL; scripts/pg-test-cluster)")
    url = postgres_databases.empty()
    yield url
    postgres_databases.give_back(url)


@pytest.fixture
def kyso(home: Path, clock: FrozenClock, database_url: str | None) -> Iterator[Kyso]:
    ctx = open_kyso(load_settings(home=home, database_url=database_url, environ=FAST_KDF),
                    clock=clock, actor="admin:test")
    yield ctx
    ctx.close()


@pytest.fixture
def ca(kyso: Kyso) -> CertificateAuthority:
    init_ca(kyso, passphrase=PASSPHRASE, org="UBND tỉnh Thái Nguyên", province="thai-nguyen",
            key_type=KeyType.EC_P384, base_url=BASE_URL)
    return CertificateAuthority(kyso, PASSPHRASE)


def audit_events(kyso: Kyso) -> list[dict[str, Any]]:
    """Every event recorded so far, in order."""
    return read_events(kyso.settings.audit_dir)


def audit_text(kyso: Kyso) -> str:
    """The raw text of every audit segment, for checks that nothing secret was written."""
    segments = sorted((kyso.settings.audit_dir / "segments").glob("*.jsonl"))
    return "".join(p.read_text(encoding="utf-8") for p in segments)
