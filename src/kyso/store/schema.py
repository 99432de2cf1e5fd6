"""The tables. Serial numbers are stored in one canonical form only: lowercase hex, no leading
zeros (see :func:`kyso.pki.serials.serial_hex`)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect


class UTCDateTime(sa.types.TypeDecorator[dt.datetime]):
    """Stores UTC on every backend; always returns timezone-aware UTC datetimes."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if not isinstance(value, dt.datetime) or value.tzinfo is None:
            raise ValueError("UTCDateTime needs a timezone-aware datetime")
        utc = value.astimezone(dt.UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


metadata = sa.MetaData()

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.String(32), nullable=False),
)

ca_settings = sa.Table(
    "ca_settings",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),  # always 1: one CA per home
    sa.Column("org", sa.Text, nullable=False),
    sa.Column("province_slug", sa.String(64), nullable=False),
    sa.Column("province_name", sa.Text, nullable=False),
    sa.Column("email_domain", sa.String(253), nullable=False),
    sa.Column("base_url", sa.Text, nullable=False),
    sa.Column("key_type", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("id = 1", name="one_ca_per_home"),
)

authorities = sa.Table(
    "authorities",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),  # root, staff, citizen, services
    sa.Column("profile", sa.String(64), nullable=False),
    sa.Column("parent", sa.String(32), nullable=True),
    sa.Column("serial", sa.String(40), nullable=False, unique=True),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("der", sa.LargeBinary, nullable=False),
    sa.Column("key_file", sa.Text, nullable=False),
    sa.Column("crl_number", sa.BigInteger, nullable=False, default=0),
    sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
)

certificates = sa.Table(
    "certificates",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("serial", sa.String(40), nullable=False, unique=True),
    sa.Column("issuer", sa.String(32), nullable=False),
    sa.Column("profile", sa.String(64), nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("common_name", sa.Text, nullable=False),
    sa.Column("holder_pseudonym", sa.String(64), nullable=True, index=True),
    sa.Column("holder_hint", sa.String(32), nullable=True),
    sa.Column("email", sa.String(254), nullable=True),
    sa.Column("key_type", sa.String(16), nullable=False),
    sa.Column("spki_sha256", sa.String(64), nullable=False, index=True),
    sa.Column("not_before", UTCDateTime(timezone=True), nullable=False),
    sa.Column("not_after", UTCDateTime(timezone=True), nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("revoked_at", UTCDateTime(timezone=True), nullable=True),
    sa.Column("revocation_reason", sa.String(32), nullable=True),
    sa.Column("invalidity_date", UTCDateTime(timezone=True), nullable=True),
    sa.Column("replaces", sa.String(40), nullable=True),
    sa.Column("key_file", sa.Text, nullable=True),  # service keys only (OCSP, TSA, audit)
    sa.Column("der", sa.LargeBinary, nullable=False),
    sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint(
        "status IN ('valid', 'revoked', 'on_hold')", name="certificate_status"
    ),
)

# One row per public key ever certified: the store, not chance, refuses a second subscriber
# for a key. Renewals reuse the row of the certificate they renew.
certified_keys = sa.Table(
    "certified_keys",
    metadata,
    sa.Column("spki_sha256", sa.String(64), primary_key=True),
    sa.Column("first_serial", sa.String(40), nullable=False),
    sa.Column("compromised_at", UTCDateTime(timezone=True), nullable=True),  # schema v2
)
