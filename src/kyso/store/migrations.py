"""Versioned schema migrations. Each step runs once, in order, inside one write transaction;
the version table records what was applied. Never edit a released step: add a new one."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from kyso.errors import StoreError
from kyso.store import schema


def _v1_initial(conn: Connection) -> None:
    for table in (
        schema.ca_settings,
        schema.authorities,
        schema.certificates,
        schema.certified_keys,
    ):
        table.create(conn, checkfirst=True)


def _v2_key_compromise(conn: Connection) -> None:
    columns = {c["name"] for c in sa.inspect(conn).get_columns("certified_keys")}
    if "compromised_at" not in columns:  # v1 created the table without it
        kind = "TIMESTAMP WITH TIME ZONE" if conn.dialect.name == "postgresql" else "TIMESTAMP"
        conn.exec_driver_sql(f"ALTER TABLE certified_keys ADD COLUMN compromised_at {kind}")


def _v3_eid(conn: Connection) -> None:
    for table in (
        schema.identities,
        schema.otp_credentials,
        schema.devices,
        schema.device_challenges,
        schema.lockout_states,
        schema.sms_challenges,
        schema.sms_sends,
        schema.sms_outbox,
        schema.oidc_clients,
        schema.oidc_sessions,
        schema.oidc_codes,
        schema.oidc_tokens,
    ):
        table.create(conn, checkfirst=True)


def _v4_roles(conn: Connection) -> None:
    schema.identity_roles.create(conn, checkfirst=True)


def _v5_signing_gateway(conn: Connection) -> None:
    schema.signing_credentials.create(conn, checkfirst=True)
    schema.signing_authorizations.create(conn, checkfirst=True)


MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "initial CA tables", _v1_initial),
    (2, "certified_keys.compromised_at", _v2_key_compromise),
    (3, "e-ID registry, authenticators, devices and OpenID Connect state", _v3_eid),
    (4, "identity roles (auditor, ca-admin)", _v4_roles),
    (5, "signing gateway credentials and signature activation data", _v5_signing_gateway),
]
LATEST = MIGRATIONS[-1][0]


def stored_version(conn: Connection) -> int:
    value = conn.execute(sa.select(sa.func.max(schema.schema_version.c.version))).scalar()
    return int(value or 0)


def current_version(conn: Connection) -> int:
    schema.schema_version.create(conn, checkfirst=True)
    value = conn.execute(sa.select(sa.func.max(schema.schema_version.c.version))).scalar()
    return int(value or 0)


def upgrade(conn: Connection, now: dt.datetime) -> int:
    version = current_version(conn)
    if version > LATEST:
        raise StoreError(
            f"database schema version {version} is newer than this kyso ({LATEST}); upgrade kyso"
        )
    for number, _title, step in MIGRATIONS:
        if number > version:
            step(conn)
            conn.execute(
                sa.insert(schema.schema_version).values(version=number, applied_at=now.isoformat())
            )
            version = number
    return version
