"""Shared fixtures: a frozen clock, a fresh home, an initialised CA (EC P-384 for speed).

With ``KYSO_TEST_DATABASE_URL`` set (a PostgreSQL URL, see scripts/pg-test-cluster), every test
that has a scratch directory also gets a database of its own on that server (see
:func:`database_url`), and tests marked ``sqlite_only`` are skipped.
"""

from __future__ import annotations

import collections
import datetime as dt
import itertools
import os
import shutil
import threading
import time
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
    """Fresh databases on the test server: ``take()`` one per test, ``give_back()`` it after.

    A helper thread keeps ``READY`` copies of the migrated template waiting (a CREATE DATABASE
    copies the template's files, ~50 ms), so a test rarely waits, and drops finished databases
    when nothing is waiting to be created."""

    READY = 3

    def __init__(self, url: str) -> None:
        self.url = sa.make_url(url)
        self._prefix = f"kyso_t{os.getpid()}"
        self.template = f"{self._prefix}_template"
        self._created = itertools.count(1)  # names made by the helper thread
        self._empties = itertools.count(1)  # names made by empty(), in the test's thread
        self._admin = sa.create_engine(self.url, isolation_level="AUTOCOMMIT",
                                       poolclass=sa.pool.NullPool)
        self._drop_leftovers()
        self._ddl(f'CREATE DATABASE "{self.template}"')
        open_store(self.url_of(self.template), now=lambda: T0).close()  # migrated once
        self._cond = threading.Condition()
        self._ready: collections.deque[str] = collections.deque()
        self._drops: collections.deque[str] = collections.deque()
        self._errors: list[BaseException] = []
        self._stopping = False
        self._thread = threading.Thread(target=self._work, name="test-databases", daemon=True)
        self._thread.start()

    def _drop_leftovers(self) -> None:
        """Databases of earlier runs that died before dropping them (a developer's cluster
        lives on between runs): kyso_t<pid>_… where no process <pid> runs any more."""
        with self._admin.connect() as conn:
            names = conn.execute(sa.text("SELECT datname FROM pg_database WHERE datname LIKE :p"),
                                 {"p": "kyso\\_t%"}).scalars().all()
        for name in names:
            pid = name.removeprefix("kyso_t").split("_")[0]
            if not pid.isdigit():
                continue
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                pass
            except OSError:
                continue
            else:
                if int(pid) != os.getpid():
                    continue
            self._ddl(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def url_of(self, name: str) -> str:
        return self.url.set(database=name).render_as_string(hide_password=False)

    def _ddl(self, sql: str) -> None:
        with self._admin.connect() as conn:
            conn.exec_driver_sql(sql)

    def _next_job(self) -> tuple[str, str] | None:
        with self._cond:
            while True:
                if not self._stopping and not self._errors and len(self._ready) < self.READY:
                    return "create", f"{self._prefix}_{next(self._created)}"
                if self._drops:
                    return "drop", self._drops.popleft()
                if self._stopping:
                    return None
                self._cond.wait()

    def _work(self) -> None:
        # One connection for the whole session, opened by the first job at start-up: a test may
        # drop the process's effective uid for a moment (tests/audit/test_log.py), and a new
        # connection to the socket would be refused then; an open one is not affected.
        conn: sa.Connection | None = None
        while (job := self._next_job()) is not None:
            kind, name = job
            if kind == "drop":
                conn = self._drop(conn, name)
                continue
            sql = f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"'
            for attempt in range(1, 6):
                try:
                    conn = conn or self._admin.connect()
                    conn.exec_driver_sql(sql)
                    break
                except sa.exc.OperationalError as exc:  # the connection broke: a new one
                    if conn is not None:
                        conn.invalidate()
                        conn = None
                    if attempt == 5:
                        with self._cond:
                            self._errors.append(exc)
                            self._cond.notify_all()
                    time.sleep(0.2 * attempt)
                except Exception as exc:  # reported by take(); the thread must not die silently
                    with self._cond:
                        self._errors.append(exc)
                        self._cond.notify_all()
                    break
            else:
                continue
            if not self._errors:
                with self._cond:  # created while close() ran: drop it too
                    (self._drops if self._stopping else self._ready).append(name)
                    self._cond.notify_all()
        if conn is not None:
            conn.close()

    def _drop(self, conn: sa.Connection | None, name: str) -> sa.Connection | None:
        """Drop a finished database: WITH (FORCE) ends connections a test left open; plain DROP
        when FORCE is not allowed (an autovacuum worker on it belongs to the superuser). A
        database that cannot be dropped now is left to the next run (:meth:`_drop_leftovers`)."""
        for sql in (f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
                    f'DROP DATABASE IF EXISTS "{name}"'):
            try:
                conn = conn or self._admin.connect()
                conn.exec_driver_sql(sql)
                return conn
            except Exception as exc:  # never end the helper thread over a database left behind
                if isinstance(exc, sa.exc.OperationalError) and conn is not None:
                    conn.invalidate()  # the connection broke: the next statement gets a new one
                    conn = None
        return conn

    def take(self) -> str:
        with self._cond:
            if not self._cond.wait_for(lambda: self._ready or self._errors, timeout=120):
                raise RuntimeError("no test database was created within 120 s")
            if self._errors:
                raise RuntimeError(f"cannot create a test database: {self._errors[0]}")
            name = self._ready.popleft()
            self._cond.notify_all()
        return self.url_of(name)

    def empty(self) -> str:
        """A database with no tables at all (for migration tests); give it back like the others."""
        name = f"{self._prefix}_empty{next(self._empties)}"
        self._ddl(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.url_of(name)

    def give_back(self, url: str) -> None:
        with self._cond:
            self._drops.append(str(sa.make_url(url).database))
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._drops.extend(self._ready)
            self._ready.clear()
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout=300)
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


@pytest.fixture
def openssl() -> str:
    """The openssl binary for the external checks (scripts/test installs it)."""
    path = shutil.which("openssl")
    if path is None:
        pytest.skip("openssl is not installed")
    return path
