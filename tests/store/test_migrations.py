"""Opening the database: versioned migrations, idempotence, refusal of newer schemas. On SQLite,
and in the PostgreSQL pass (KYSO_TEST_DATABASE_URL) on an empty PostgreSQL database."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa

from conftest import FAST_KDF, ON_POSTGRES
from kyso.errors import StoreError
from kyso.store import migrations, open_store, schema

NOW = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)
SQLITE_ITSELF = "checks SQLite's own behaviour (files, WAL, :memory:)"


@pytest.fixture
def fresh_url(tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A database URL with nothing in it yet: a new SQLite file, or an empty PostgreSQL database
    in the PostgreSQL pass."""
    if ON_POSTGRES:
        return str(request.getfixturevalue("empty_postgres_url"))
    return f"sqlite:///{tmp_path / 'db' / 'kyso.db'}"


def versions(store_url: str) -> list[tuple[int, str]]:
    engine = sa.create_engine(store_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(schema.schema_version.c.version,
                                          schema.schema_version.c.applied_at)
                                .order_by(schema.schema_version.c.version)).all()
    finally:
        engine.dispose()
    return [(r[0], r[1]) for r in rows]


def test_fresh_database_is_at_the_latest_version(fresh_url: str) -> None:
    store = open_store(fresh_url, now=lambda: NOW)
    try:
        with store.read() as conn:
            assert migrations.current_version(conn) == migrations.LATEST
            tables = set(sa.inspect(conn).get_table_names())
    finally:
        store.close()
    assert {"schema_version", "ca_settings", "authorities", "certificates",
            "certified_keys"} <= tables
    assert versions(fresh_url) == [
        (n, NOW.isoformat()) for n, _title, _step in migrations.MIGRATIONS]


def test_latest_is_the_last_migration_and_versions_are_in_order() -> None:
    numbers = [n for n, _title, _step in migrations.MIGRATIONS]
    assert numbers == sorted(numbers) == list(range(1, len(numbers) + 1))
    assert numbers[-1] == migrations.LATEST


def test_opening_twice_is_idempotent_and_keeps_data(fresh_url: str) -> None:
    first = open_store(fresh_url, now=lambda: NOW)
    first.write(lambda conn: conn.execute(sa.insert(schema.certified_keys).values(
        spki_sha256="ab" * 32, first_serial="abc")))
    first.close()
    later = NOW + dt.timedelta(days=1)
    second = open_store(fresh_url, now=lambda: later)
    try:
        with second.read() as conn:
            assert migrations.current_version(conn) == migrations.LATEST
            keys = conn.execute(sa.select(schema.certified_keys.c.first_serial)).scalars().all()
    finally:
        second.close()
    assert keys == ["abc"]
    # No step ran twice, and the recorded time is that of the first run.
    assert versions(fresh_url) == [
        (n, NOW.isoformat()) for n, _title, _step in migrations.MIGRATIONS]


def test_upgrade_on_a_current_database_applies_nothing(fresh_url: str) -> None:
    store = open_store(fresh_url, now=lambda: NOW)
    try:
        assert store.write(lambda conn: migrations.upgrade(conn, NOW)) == migrations.LATEST
    finally:
        store.close()
    assert len(versions(fresh_url)) == len(migrations.MIGRATIONS)


def test_database_with_a_newer_version_is_refused(fresh_url: str) -> None:
    open_store(fresh_url, now=lambda: NOW).close()
    engine = sa.create_engine(fresh_url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.execute(sa.insert(schema.schema_version).values(
            version=migrations.LATEST + 1, applied_at=NOW.isoformat()))
    engine.dispose()
    with pytest.raises(StoreError, match=rf"version {migrations.LATEST + 1} is newer"):
        open_store(fresh_url, now=lambda: NOW)
    # The refusal changed nothing.
    assert versions(fresh_url)[-1][0] == migrations.LATEST + 1


def test_open_kyso_on_a_newer_database_is_refused(tmp_path: Path) -> None:
    from kyso.clock import FrozenClock
    from kyso.config import load_settings
    from kyso.context import open_kyso

    settings = load_settings(home=tmp_path / "home", environ=FAST_KDF)  # the test's database
    open_kyso(settings, clock=FrozenClock(NOW), actor="admin:test").close()
    engine = sa.create_engine(settings.database_url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.execute(sa.insert(schema.schema_version).values(version=999, applied_at="x"))
    engine.dispose()
    with pytest.raises(StoreError, match="upgrade kyso"):
        open_kyso(settings, clock=FrozenClock(NOW), actor="admin:test")


@pytest.mark.sqlite_only(reason=SQLITE_ITSELF)
def test_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "kyso.db"
    path.write_bytes(b"this is not an SQLite database at all" * 100)
    with pytest.raises(StoreError, match="cannot open database"):
        open_store(f"sqlite:///{path}", now=lambda: NOW)


def test_unusable_database_url_is_refused() -> None:
    with pytest.raises(StoreError, match="unusable database URL"):
        open_store("nosuchdialect://user@host/db", now=lambda: NOW)


@pytest.mark.sqlite_only(reason=SQLITE_ITSELF)
def test_sqlite_database_runs_in_wal_mode(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'kyso.db'}", now=lambda: NOW)
    try:
        with store.read() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        store.close()


@pytest.mark.sqlite_only(reason=SQLITE_ITSELF)
def test_missing_parent_directory_is_created(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "kyso.db"
    open_store(f"sqlite:///{target}", now=lambda: NOW).close()
    assert target.exists()


@pytest.mark.sqlite_only(reason=SQLITE_ITSELF)
def test_in_memory_database_is_migrated() -> None:
    store = open_store("sqlite:///:memory:", now=lambda: NOW)
    try:
        with store.read() as conn:
            assert migrations.current_version(conn) == migrations.LATEST
    finally:
        store.close()


def test_failed_write_is_rolled_back(fresh_url: str) -> None:
    store = open_store(fresh_url, now=lambda: NOW)

    def work(conn: sa.Connection) -> None:
        conn.execute(sa.insert(schema.certified_keys).values(spki_sha256="cd" * 32,
                                                             first_serial="1"))
        raise RuntimeError("boom")

    try:
        with pytest.raises(RuntimeError):
            store.write(work)
        with store.read() as conn:
            count = conn.execute(
                sa.select(sa.func.count()).select_from(schema.certified_keys)).scalar_one()
    finally:
        store.close()
    assert count == 0


def test_a_version_1_database_is_upgraded_in_place(fresh_url: str) -> None:
    store = open_store(fresh_url, now=lambda: dt.datetime(2026, 11, 23, tzinfo=dt.UTC))
    with store.engine.begin() as conn:  # make it look like a database written by kyso v1
        conn.exec_driver_sql("ALTER TABLE certified_keys DROP COLUMN compromised_at")
        conn.exec_driver_sql("DELETE FROM schema_version WHERE version > 1")
    store.close()
    store = open_store(fresh_url, now=lambda: dt.datetime(2026, 11, 24, tzinfo=dt.UTC))
    with store.engine.connect() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("certified_keys")}
        assert migrations.stored_version(conn) == migrations.LATEST
        assert migrations.LATEST >= 2
    assert "compromised_at" in columns
    store.close()
