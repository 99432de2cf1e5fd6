"""The store on a real PostgreSQL server (skipped without KYSO_TEST_DATABASE_URL, which
scripts/test sets; see scripts/pg-test-cluster): migrations from an empty database and from a
v1 one, timezone-aware columns, serializable writes retried on serialization failures and
deadlocks, consistent read snapshots, and clear errors for what the server refuses."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from conftest import ON_POSTGRES, PASSPHRASE, T0
from kyso.context import Kyso
from kyso.errors import StoreError
from kyso.pki.authority import CertificateAuthority
from kyso.pki.crl import publish_crl
from kyso.store import migrations, open_store, schema
from kyso.store.engine import Store, _is_busy

pytestmark = pytest.mark.skipif(not ON_POSTGRES, reason="needs PostgreSQL (KYSO_TEST_DATABASE_URL)")

VN = dt.timezone(dt.timedelta(hours=7))


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    opened = open_store(database_url, now=lambda: T0)
    yield opened
    opened.close()


def count(store: Store, table: sa.Table) -> int:
    with store.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


# -- migrations and types ---------------------------------------------------------------------


def test_an_empty_postgres_database_is_migrated_to_the_latest_version(empty_postgres_url: str) -> None:
    store = open_store(empty_postgres_url, now=lambda: T0)
    try:
        assert store.is_postgresql
        with store.read() as conn:
            assert migrations.stored_version(conn) == migrations.LATEST
            tables = set(sa.inspect(conn).get_table_names())
            versions = conn.execute(sa.select(schema.schema_version.c.version)
                                    .order_by(schema.schema_version.c.version)).scalars().all()
    finally:
        store.close()
    assert set(schema.metadata.tables) <= tables
    assert versions == [n for n, _title, _step in migrations.MIGRATIONS]


def test_every_time_column_is_timestamp_with_time_zone(store: Store) -> None:
    with store.read() as conn:
        inspector = sa.inspect(conn)
        declared = [(table.name, column.name) for table in schema.metadata.sorted_tables
                    for column in table.columns if isinstance(column.type, schema.UTCDateTime)]
        kinds = {(t, c): next(col["type"] for col in inspector.get_columns(t) if col["name"] == c)
                 for t, c in declared}
    assert len(declared) > 30
    naive = [name for name, kind in kinds.items()
             if not (isinstance(kind, sa.DateTime) and kind.timezone)]
    assert naive == []


def test_a_time_written_in_another_zone_reads_back_as_the_same_instant_in_utc(store: Store) -> None:
    local = dt.datetime(2026, 11, 23, 9, 30, 15, 123456, tzinfo=VN)
    store.write(lambda conn: conn.execute(sa.insert(schema.sms_sends).values(
        account="a", sent_at=local)))
    with store.read() as conn:
        back = conn.execute(sa.select(schema.sms_sends.c.sent_at)).scalar_one()
        # The server keeps the instant, whatever its session time zone is.
        conn.exec_driver_sql("SET LOCAL TIME ZONE 'America/New_York'")
        again = conn.execute(sa.select(schema.sms_sends.c.sent_at)).scalar_one()
    assert back == again == local
    assert back.utcoffset() == dt.timedelta(0)


def test_a_naive_time_is_refused_before_it_reaches_the_server(store: Store) -> None:
    with pytest.raises(sa.exc.StatementError, match="timezone-aware"):
        store.write(lambda conn: conn.execute(sa.insert(schema.sms_sends).values(
            account="a", sent_at=dt.datetime(2026, 11, 23, 9, 30))))
    assert count(store, schema.sms_sends) == 0


def test_a_version_1_postgres_database_is_upgraded_in_place(database_url: str) -> None:
    store = open_store(database_url, now=lambda: T0)
    store.write(lambda conn: conn.execute(sa.insert(schema.certified_keys).values(
        spki_sha256="ab" * 32, first_serial="abc")))
    with store.engine.begin() as conn:  # what kyso v1 left behind
        conn.exec_driver_sql("ALTER TABLE certified_keys DROP COLUMN compromised_at")
        conn.exec_driver_sql("DELETE FROM schema_version WHERE version > 1")
        for table in reversed(schema.metadata.sorted_tables):
            if table.name not in ("schema_version", "ca_settings", "authorities", "certificates",
                                  "certified_keys"):
                conn.exec_driver_sql(f'DROP TABLE "{table.name}"')
    store.close()
    later = T0 + dt.timedelta(days=1)
    store = open_store(database_url, now=lambda: later)
    try:
        with store.read() as conn:
            column = next(c for c in sa.inspect(conn).get_columns("certified_keys")
                          if c["name"] == "compromised_at")
            assert migrations.stored_version(conn) == migrations.LATEST
            applied = dict(conn.execute(sa.select(schema.schema_version.c.version,
                                                  schema.schema_version.c.applied_at)).all())
            kept = conn.execute(sa.select(schema.certified_keys.c.first_serial)).scalars().all()
    finally:
        store.close()
    assert isinstance(column["type"], sa.DateTime)
    assert column["type"].timezone
    assert applied[1] == T0.isoformat()
    assert {v for v, at in applied.items() if at == later.isoformat()} == set(
        range(2, migrations.LATEST + 1))
    assert kept == ["abc"]


# Processes that start together on an empty database (several `kyso serve` nodes after a
# deployment): all of them open it, and every migration step runs exactly once.
OPENER = r"""
import datetime as dt, sys, time
from kyso.store import open_store
url, go = sys.argv[1], float(sys.argv[2])
while time.time() < go:
    time.sleep(0.001)
open_store(url, now=lambda: dt.datetime.now(dt.timezone.utc)).close()
print("opened")
"""


def test_processes_opening_an_empty_database_together_migrate_it_once(
        empty_postgres_url: str) -> None:
    go = time.time() + 3.0  # after every interpreter has started and imported kyso
    procs = [subprocess.Popen([sys.executable, "-c", OPENER, empty_postgres_url, str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    results = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
        assert out.strip() == "opened"
    engine = sa.create_engine(empty_postgres_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            versions = conn.execute(sa.select(schema.schema_version.c.version)).scalars().all()
    finally:
        engine.dispose()
    assert sorted(versions) == [n for n, _title, _step in migrations.MIGRATIONS]


# -- serializable writes, retried -------------------------------------------------------------


def race(n: int, attempt: Callable[[int], object]) -> list[Any]:
    """Run ``attempt(i)`` in ``n`` threads released together; each result or exception."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = attempt(i)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return results


def test_concurrent_read_modify_writes_lose_no_update(database_url: str, store: Store) -> None:
    """Read a counter, think, write it + 1: at READ COMMITTED two writers would both write the
    same value. SERIALIZABLE aborts one (40001) and Store.write runs it again."""
    other = open_store(database_url, now=lambda: T0)
    stores = [store, other]
    ck = schema.certified_keys
    store.write(lambda conn: conn.execute(sa.insert(ck).values(spki_sha256="c" * 64,
                                                               first_serial="0")))
    calls = [0, 0]
    per_thread = 15

    def increment(i: int) -> None:
        def work(conn: sa.Connection) -> None:
            calls[i] += 1
            value = int(conn.execute(sa.select(ck.c.first_serial)).scalar_one())
            time.sleep(0.005)  # the window another writer can step into
            conn.execute(sa.update(ck).values(first_serial=str(value + 1)))

        for _ in range(per_thread):
            stores[i].write(work)

    try:
        results = race(2, increment)
    finally:
        other.close()
    assert results == [None, None]
    with store.read() as conn:
        assert conn.execute(sa.select(ck.c.first_serial)).scalar_one() == str(2 * per_thread)
    assert sum(calls) > 2 * per_thread  # some transactions were aborted and run again


def conflicting_transactions(store: Store) -> sa.exc.DBAPIError:
    """Make PostgreSQL abort a SERIALIZABLE transaction: two transactions read the same row,
    then both update it."""
    ck = schema.certified_keys
    store.write(lambda conn: conn.execute(sa.insert(ck).values(spki_sha256="d" * 64,
                                                               first_serial="0")))
    with store.engine.connect() as a, store.engine.connect() as b:
        a = a.execution_options(isolation_level="SERIALIZABLE")
        b = b.execution_options(isolation_level="SERIALIZABLE")
        with a.begin():
            a.execute(sa.select(ck.c.first_serial)).scalar_one()
            tb = b.begin()
            b.execute(sa.select(ck.c.first_serial)).scalar_one()
            a.execute(sa.update(ck).values(first_serial="a"))
        try:
            b.execute(sa.update(ck).values(first_serial="b"))
            tb.commit()
        except sa.exc.DBAPIError as exc:
            tb.rollback()
            return exc
    raise AssertionError("PostgreSQL let both transactions commit")


def test_a_serialization_failure_is_recognised_as_retryable(store: Store) -> None:
    import psycopg

    exc = conflicting_transactions(store)
    assert isinstance(exc.orig, psycopg.errors.SerializationFailure)
    assert _is_busy(exc)


def test_a_deadlock_is_recognised_as_retryable(store: Store) -> None:
    import psycopg

    ck = schema.certified_keys
    store.write(lambda conn: conn.execute(sa.insert(ck), [
        {"spki_sha256": "1" * 64, "first_serial": "1"},
        {"spki_sha256": "2" * 64, "first_serial": "2"}]))
    barrier = threading.Barrier(2)

    def lock_both(i: int) -> None:
        first, second = ("1", "2") if i == 0 else ("2", "1")
        with store.engine.connect() as conn, conn.begin():
            conn.execute(sa.update(ck).where(ck.c.spki_sha256 == first * 64).values(
                first_serial=f"t{i}"))
            barrier.wait()
            conn.execute(sa.update(ck).where(ck.c.spki_sha256 == second * 64).values(
                first_serial=f"t{i}"))

    results = race(2, lock_both)  # PostgreSQL breaks the cycle after deadlock_timeout (1 s)
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(errors) == 1, results
    assert isinstance(errors[0], sa.exc.DBAPIError)
    assert isinstance(errors[0].orig, psycopg.errors.DeadlockDetected)
    assert _is_busy(errors[0])


def test_a_constraint_violation_is_not_retried_but_reaches_the_caller(store: Store) -> None:
    ck = schema.certified_keys
    row = {"spki_sha256": "e" * 64, "first_serial": "1"}
    store.write(lambda conn: conn.execute(sa.insert(ck).values(**row)))
    calls = []

    def work(conn: sa.Connection) -> None:
        calls.append(1)
        conn.execute(sa.insert(ck).values(**row))

    with pytest.raises(sa.exc.IntegrityError):
        store.write(work)
    assert calls == [1]


def test_a_value_longer_than_its_column_is_a_store_error_without_the_value(store: Store) -> None:
    secret = "S3cret-value-" * 10
    with pytest.raises(StoreError, match="value too long") as info:
        store.write(lambda conn: conn.execute(sa.insert(schema.certified_keys).values(
            spki_sha256=secret, first_serial="1")))
    assert secret not in str(info.value)
    assert count(store, schema.certified_keys) == 0


def test_a_read_sees_one_snapshot_and_cannot_write(store: Store) -> None:
    ck = schema.certified_keys
    with store.read() as conn:
        before = conn.execute(sa.select(sa.func.count()).select_from(ck)).scalar_one()
        store.write(lambda w: w.execute(sa.insert(ck).values(spki_sha256="f" * 64,
                                                             first_serial="1")))
        during = conn.execute(sa.select(sa.func.count()).select_from(ck)).scalar_one()
        with pytest.raises(sa.exc.InternalError, match="read-only transaction"):
            conn.execute(sa.delete(ck))
    assert before == during == 0
    assert count(store, ck) == 1


# -- CRL numbers from several processes -------------------------------------------------------


def test_crl_numbers_from_concurrent_publishers_never_repeat(
        kyso: Kyso, ca: CertificateAuthority, tmp_path: Path) -> None:
    """Publishers on different folders (different nodes) share no file lock: the database alone
    hands out the numbers."""
    from kyso.config import load_settings
    from kyso.context import open_kyso

    contexts = [open_kyso(load_settings(home=kyso.settings.home,
                                        database_url=kyso.settings.database_url,
                                        environ={"KYSO_KEY_KDF_ITERATIONS": "2000"}),
                          clock=kyso.clock, actor=f"admin:node{i}") for i in range(3)]
    authorities = [CertificateAuthority(c, PASSPHRASE) for c in contexts]
    for authority in authorities:
        authority.issuer("staff")  # unlock first

    def publish(i: int) -> list[int]:
        return [publish_crl(contexts[i], authorities[i], "staff", tmp_path / f"node{i}").number
                for _ in range(4)]

    try:
        results = race(3, publish)
    finally:
        for c in contexts:
            c.close()
    numbers = [n for r in results for n in r]
    assert sorted(numbers) == list(range(1, 13)), results
    with kyso.store.read() as conn:
        stored = conn.execute(sa.select(schema.authorities.c.crl_number)
                              .where(schema.authorities.c.name == "staff")).scalar_one()
    assert stored == 12


def test_one_key_certified_from_several_nodes_at_once_is_stored_once_with_clear_refusals(
        kyso: Kyso, ca: CertificateAuthority) -> None:
    """The same public key sent to four nodes together: the unique constraint (or the
    serializable check before it) lets one through; the others get the CA's own error."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from conftest import CITIZEN
    from kyso.config import load_settings
    from kyso.context import open_kyso
    from kyso.errors import DuplicateKeyError
    from kyso.pki.issuance import issue
    from kyso.pki.keys import spki_sha256
    from kyso.pki.subjects import SubjectRequest

    public_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    contexts = [open_kyso(load_settings(home=kyso.settings.home,
                                        database_url=kyso.settings.database_url,
                                        environ={"KYSO_KEY_KDF_ITERATIONS": "2000"}),
                          clock=kyso.clock, actor=f"admin:node{i}") for i in range(4)]
    authorities = [CertificateAuthority(c, PASSPHRASE) for c in contexts]
    for authority in authorities:
        authority.issuer("citizen")
    request = SubjectRequest.of(name=CITIZEN["name"], id=CITIZEN["id"])
    try:
        results = race(4, lambda i: issue(contexts[i], authorities[i], "citizen", request,
                                          public_key=public_key).record.serial)
    finally:
        for c in contexts:
            c.close()
    serials = [r for r in results if isinstance(r, str)]
    refused = [r for r in results if not isinstance(r, str)]
    assert len(serials) == 1, results
    assert len(refused) == 3
    for error in refused:
        assert isinstance(error, DuplicateKeyError), repr(error)
        assert "certified" in str(error)
    with kyso.store.read() as conn:
        rows = conn.execute(sa.select(schema.certified_keys.c.first_serial).where(
            schema.certified_keys.c.spki_sha256 == spki_sha256(public_key))).scalars().all()
        stored = conn.execute(sa.select(schema.certificates.c.serial).where(
            schema.certificates.c.spki_sha256 == spki_sha256(public_key))).scalars().all()
    assert rows == stored == serials


# -- URLs and servers -------------------------------------------------------------------------


def test_a_plain_postgresql_url_uses_psycopg(database_url: str) -> None:
    url = sa.make_url(database_url).set(drivername="postgresql")
    store = open_store(url.render_as_string(hide_password=False), now=lambda: T0)
    try:
        assert store.engine.dialect.driver == "psycopg"
        assert count(store, schema.certificates) == 0
    finally:
        store.close()


def test_an_unreachable_server_is_a_clear_store_error(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(StoreError, match="cannot open database") as info:
        open_store(f"postgresql+psycopg://kyso:pw-not-shown@/kyso?host={tmp_path}", now=lambda: T0)
    assert time.monotonic() - started < 30
    assert "pw-not-shown" not in str(info.value)


def test_a_missing_database_is_a_clear_store_error(database_url: str) -> None:
    url = sa.make_url(database_url).set(database="no_such_kyso_database")
    with pytest.raises(StoreError, match=r"cannot open database: .*no_such_kyso_database"):
        open_store(url.render_as_string(hide_password=False), now=lambda: T0)


def test_connections_say_they_are_kyso(store: Store) -> None:
    with store.read() as conn:
        name = conn.exec_driver_sql("SELECT current_setting('application_name')").scalar()
    assert name == "kyso"


def test_the_cli_in_a_subprocess_uses_the_database_of_kyso_database_url(
        database_url: str, tmp_path: Path) -> None:
    """`kyso ca init` goes to the PostgreSQL database, not to a kyso.db in the home."""
    import os

    from conftest import BASE_URL, FAST_KDF

    home = tmp_path / "home"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("KYSO_")}, **FAST_KDF,
           "KYSO_DATABASE_URL": database_url, "KYSO_CA_PASSPHRASE": PASSPHRASE}
    proc = subprocess.run(
        [sys.executable, "-m", "kyso", "--home", str(home), "ca", "init", "--org", "UBND tỉnh X",
         "--province", "thai-nguyen", "--key-type", "ec-p384", "--base-url", BASE_URL,
         "--format", "json"],
        capture_output=True, text=True, env=env, timeout=120, check=False, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)
    assert not (home / "kyso.db").exists()
    store = open_store(database_url, now=lambda: T0)
    try:
        assert count(store, schema.authorities) == 4
    finally:
        store.close()
