"""Opening the database, applying migrations, and write transactions that survive contention.

SQLite runs in WAL mode; every write transaction starts with ``BEGIN IMMEDIATE`` so writers
queue on the database lock instead of failing half-way, and a transaction that still meets
"database is locked" after the busy timeout is retried with backoff before the user ever
sees an error.

PostgreSQL (``postgresql+psycopg://…``, several processes or nodes on one database) gives the
same guarantee another way: every write transaction runs at ``SERIALIZABLE``, so each
read-modify-write in a ``work`` function (the next CRL number, a status change, a
compare-and-set, "is this key already certified?" then ``INSERT``) behaves as if the writers
had run one after another; the server aborts a transaction that could break that with a
serialization failure (SQLSTATE 40001) or a deadlock (40P01), and :meth:`Store.write` runs it
again from the start, exactly as it does for SQLite's "database is locked". Reads run at
``REPEATABLE READ``, read-only: one consistent snapshot, like a SQLite read transaction.
Migrations take a transaction-scoped advisory lock, so processes starting together on an empty
database migrate it once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import random
import threading
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
# SQLSTATEs after which PostgreSQL rolled the transaction back and running it again is right:
# serialization_failure, deadlock_detected.
_RETRY_SQLSTATES = frozenset({"40001", "40P01"})
_MIGRATION_LOCK = 0x6B79736F  # "kyso": pg_advisory_xact_lock key held while migrating
# Per process: a CLI command needs one or two connections; `kyso serve` runs requests in a
# thread pool (40 threads by default) that mostly read. 5 + 15 keeps 4 workers × 2 nodes
# well under PostgreSQL's default max_connections = 100.
_PG_POOL_SIZE = 5
_PG_MAX_OVERFLOW = 15
_PG_POOL_TIMEOUT = 30
_PG_CONNECT_TIMEOUT = 10


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
    """A transaction the database refused for contention, which is safe to run again."""
    orig = getattr(exc, "orig", None)
    if getattr(orig, "sqlstate", None) in _RETRY_SQLSTATES:  # psycopg: SerializationFailure,
        return True                                          # DeadlockDetected
    text = str(orig if orig is not None else exc).lower()
    return "database is locked" in text or "database is busy" in text


def _reason(exc: DBAPIError) -> str:
    """The driver's message, first line only (PostgreSQL adds DETAIL / HINT lines that may
    quote row values)."""
    text = str(exc.orig if exc.orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Store:
    """The database of one kyso home (or one shared PostgreSQL)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        self.is_postgresql = engine.dialect.name == "postgresql"
        self._readers: list[PointReader] = []

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for reading: one consistent snapshot until the block ends."""
        try:
            with self.engine.connect() as plain:
                conn = plain
                if self.is_postgresql:
                    conn = plain.execution_options(isolation_level="REPEATABLE READ",
                                                   postgresql_readonly=True)
                yield conn
        except (OperationalError, sa.exc.DataError) as exc:
            raise StoreError(f"database read failed: {_reason(exc)}") from None

    def point_reader(self, sql: str) -> PointReader:
        """A reader for one hot single-row ``SELECT`` (``?`` placeholders; see
        :class:`PointReader`)."""
        reader = PointReader(self, sql)
        self._readers.append(reader)
        return reader

    def write(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one write transaction; retry it whole when the database is busy
        (SQLite's lock, PostgreSQL's serialization failures and deadlocks).

        ``work`` must not have side effects outside the transaction (files, audit): do those
        after it returns. Constraint violations (``IntegrityError``) reach the caller, which
        turns them into its domain's error; lost connections and values the database refuses
        become :class:`StoreError`.
        """
        deadline = time.monotonic() + _RETRY_SECONDS
        attempt = 0
        while True:
            try:
                with self.engine.connect() as plain:
                    conn = plain.execution_options(kyso_write=True)
                    if self.is_postgresql:
                        conn = conn.execution_options(isolation_level="SERIALIZABLE")
                    with conn.begin():
                        return work(conn)
            except (OperationalError, DBAPIError) as exc:
                busy = _is_busy(exc)
                if busy and time.monotonic() <= deadline:
                    attempt += 1
                    time.sleep(min(0.5, 0.01 * 2 ** min(attempt, 6)) * random.random())  # noqa: S311
                    continue
                if busy:
                    raise StoreError(
                        "database stayed busy for too long; another kyso process holds it"
                    ) from None
                if isinstance(exc, OperationalError | sa.exc.DataError):
                    raise StoreError(f"database write failed: {_reason(exc)}") from None
                raise

    def close(self) -> None:
        for reader in self._readers:
            reader.close()
        self.engine.dispose()


class PointReader:
    """One hot, parameterised single-row ``SELECT`` on a connection of its own, outside the pool,
    in autocommit mode and serialised by a lock: no pool checkout and no BEGIN/ROLLBACK per
    call. Each call is its own statement, so it sees the latest committed data (the OCSP
    responder reads a certificate's status this way on every request: about 15 µs on SQLite
    against 300 µs through :meth:`Store.read`). Values come back as the driver gives them (no
    SQLAlchemy type processing): keep to plain columns. A lost connection is reopened once."""

    def __init__(self, store: Store, sql: str) -> None:
        self._store = store
        self._sql = sql if store.engine.dialect.paramstyle == "qmark" else sql.replace("?", "%s")
        self._lock = threading.Lock()
        self._conn: Any = None

    def _connect(self) -> Any:
        # A pool connection, detached: it was set up like every other (SQLite's PRAGMAs and
        # BEGIN handling; PostgreSQL's connect_timeout and application_name) and is ours alone.
        proxied = self._store.engine.raw_connection()
        proxied.detach()
        conn: Any = proxied.dbapi_connection
        if conn is None:
            raise StoreError("database read failed: no connection")
        if self._store.is_sqlite:
            conn.isolation_level = None
        else:
            conn.rollback()  # the pool's pre-ping may have opened a transaction
            conn.autocommit = True
        return conn

    def __call__(self, *params: Any) -> tuple[Any, ...] | None:
        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._conn is None:
                        self._conn = self._connect()
                    cursor = self._conn.cursor()
                    try:
                        cursor.execute(self._sql, params)
                        row = cursor.fetchone()
                    finally:
                        cursor.close()
                    return tuple(row) if row is not None else None
                except Exception as exc:  # the driver's own error types differ per database
                    self._close_locked()
                    if attempt == 2:
                        raise StoreError(f"database read failed: {type(exc).__name__}") from None
        return None  # not reached

    def _close_locked(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def close(self) -> None:
        with self._lock:
            self._close_locked()


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


def _migrate(store: Store, now: dt.datetime) -> None:
    if not store.is_postgresql:
        store.write(lambda conn: migrations.upgrade(conn, now))
        return
    # READ COMMITTED, not the SERIALIZABLE of other writes: after waiting for the lock, each
    # statement must see what the process that held it committed (its tables, its versions).
    with store.engine.connect() as plain:
        conn = plain.execution_options(isolation_level="READ COMMITTED")
        with conn.begin():
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
            migrations.upgrade(conn, now)


def _postgresql_url(url: str) -> sa.URL:
    """Parse a PostgreSQL URL; ``postgresql://`` and ``postgres://`` mean psycopg 3 (the only
    PostgreSQL driver kyso installs)."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise StoreError(f"unusable database URL: {exc}") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _create_server_engine(url: str) -> Engine:
    parsed = _postgresql_url(url)
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql":
        if "connect_timeout" not in parsed.query:  # an unreachable server fails, not hangs
            connect_args["connect_timeout"] = _PG_CONNECT_TIMEOUT
        if "application_name" not in parsed.query:  # pg_stat_activity shows who is connected
            connect_args["application_name"] = "kyso"
    try:
        return sa.create_engine(parsed, pool_pre_ping=True, pool_size=_PG_POOL_SIZE,
                                max_overflow=_PG_MAX_OVERFLOW, pool_timeout=_PG_POOL_TIMEOUT,
                                connect_args=connect_args)
    except ImportError as exc:
        hint = (" (PostgreSQL needs psycopg 3: pip install 'kyso[postgres]')"
                if parsed.get_backend_name() == "postgresql" else "")
        raise StoreError(f"unusable database URL: {exc}{hint}") from None
    except sa.exc.ArgumentError as exc:
        raise StoreError(f"unusable database URL: {exc}") from None


def open_store(url: str, *, now: Callable[[], dt.datetime]) -> Store:
    """Open (creating if needed) and migrate the database at ``url``: SQLite
    (``sqlite:///path``) or PostgreSQL (``postgresql+psycopg://user:password@host/db``)."""
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
        engine = _create_server_engine(url)
    store = Store(engine)
    try:
        if not _is_current(store):  # the common case takes no write lock at start-up
            _migrate(store, now())
    except sa.exc.DatabaseError as exc:
        engine.dispose()
        raise StoreError(f"cannot open database: {_reason(exc)}") from None
    except StoreError as exc:
        engine.dispose()
        raise StoreError(f"cannot open database: {str(exc).removeprefix('database write failed: ')}"
                         ) from None
    return store
