"""Opening the database, applying migrations, and write transactions that survive contention.

SQLite runs in WAL mode; every write transaction starts with ``BEGIN IMMEDIATE`` so writers
queue on the database lock instead of failing half-way, and a transaction that still meets
"database is locked" after the busy timeout is retried with backoff before the user ever
sees an error.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from kyso.errors import StoreError
from kyso.store import migrations

T = TypeVar("T")

_BUSY_TIMEOUT_MS = 30_000
_RETRY_SECONDS = 120.0


def _is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL (None for other databases and :memory:)."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and url != "sqlite:///:memory:":
        return Path(url[len(prefix):])
    return None


def _create_private(path: Path) -> None:
    """Create the database file 0600 before SQLite does (it would use the umask); its -wal and
    -shm files inherit the mode."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise StoreError(f"cannot create database {path}: {exc.strerror}") from None
    os.close(fd)


def _is_busy(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "database is locked" in text or "database is busy" in text or (
        "could not serialize" in text or "deadlock detected" in text
    )


class Store:
    """The database of one kyso home (or one shared PostgreSQL)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"

    @contextmanager
    def read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                yield conn
        except OperationalError as exc:
            raise StoreError(f"database read failed: {exc.orig}") from None

    def write(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one write transaction; retry it whole when the database is busy.

        ``work`` must not have side effects outside the transaction (files, audit): do those
        after it returns.
        """
        deadline = time.monotonic() + _RETRY_SECONDS
        attempt = 0
        while True:
            try:
                with self.engine.connect() as plain:
                    conn = plain.execution_options(kyso_write=True)
                    with conn.begin():
                        return work(conn)
            except (OperationalError, DBAPIError) as exc:
                if not _is_busy(exc) or time.monotonic() > deadline:
                    if _is_busy(exc):
                        raise StoreError(
                            "database stayed busy for too long; another kyso process holds it"
                        ) from None
                    raise
                attempt += 1
                time.sleep(min(0.5, 0.01 * 2 ** min(attempt, 6)) * random.random())  # noqa: S311

    def close(self) -> None:
        self.engine.dispose()


def _configure_sqlite(engine: Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")  # a committed serial or CRL number survives power loss
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers queue on the lock up front (no deadlock upgrading a read lock); readers
        # take a plain deferred transaction and never block anyone in WAL mode.
        write = conn.get_execution_options().get("kyso_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _is_current(store: Store) -> bool:
    try:
        with store.engine.connect() as conn:
            if not sa.inspect(conn).has_table("schema_version"):
                return False
            return migrations.stored_version(conn) == migrations.LATEST
    except sa.exc.DBAPIError:
        return False  # let the write path report it (or migrate it)


def open_store(url: str, *, now: Callable[[], dt.datetime]) -> Store:
    """Open (creating if needed) and migrate the database at ``url``."""
    if _is_sqlite(url):
        path = sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            _create_private(path)
        if path is None:  # :memory: lives in one connection
            engine = sa.create_engine(url, poolclass=sa.pool.StaticPool)
        else:
            # Connections stay open: closing the last one would checkpoint the WAL and delete
            # the -wal/-shm files on every write (4 fdatasync per certificate, measured).
            engine = sa.create_engine(url, poolclass=sa.pool.QueuePool, pool_size=2,
                                      max_overflow=4)
        _configure_sqlite(engine)
    else:
        try:
            engine = sa.create_engine(url, pool_pre_ping=True)
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise StoreError(f"unusable database URL: {exc}") from None
    store = Store(engine)
    try:
        if not _is_current(store):  # the common case takes no write lock at start-up
            store.write(lambda conn: migrations.upgrade(conn, now()))
    except sa.exc.DatabaseError as exc:
        engine.dispose()
        raise StoreError(f"cannot open database: {exc.orig}") from None
    return store
