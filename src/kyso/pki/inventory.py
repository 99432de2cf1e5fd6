"""The searchable inventory: filters by profile, status, expiry window, holder ID, issuer."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from kyso.context import Kyso
from kyso.errors import CertificateNotFoundError, PkiError
from kyso.pki.authority import load_settings
from kyso.pki.identifiers import parse_personal_id, parse_tax_code
from kyso.pki.records import CertificateRecord, Status
from kyso.pki.serials import parse_serial
from kyso.store import schema

STATUS_FILTERS = ("valid", "revoked", "on_hold", "expired")


@dataclass(frozen=True)
class Query:
    profile: str | None = None
    status: str | None = None
    expiring_within: dt.timedelta | None = None
    holder_id: str | None = None
    issuer: str | None = None
    limit: int | None = None

    def __repr__(self) -> str:
        return f"Query(profile={self.profile!r}, status={self.status!r})"


def parse_duration(text: str) -> dt.timedelta:
    """``30d``, ``12h``, ``2w`` → timedelta."""
    t = text.strip().lower()
    units = {"d": 1.0, "w": 7.0, "h": 1 / 24}
    if len(t) < 2 or t[-1] not in units or not t[:-1].isdigit() or len(t) > 8:
        raise PkiError(f"duration {text[:20]!r} must look like 30d, 2w or 12h (at most 100 years)")
    if int(t[:-1]) * units[t[-1]] > 36525:
        raise PkiError(f"duration {text!r} is more than 100 years")
    return dt.timedelta(days=int(t[:-1]) * units[t[-1]])


MIN_SERIAL_PREFIX = 8


def find_serial(kyso: Kyso, text: str) -> str:
    """The full serial for ``text``: a whole serial, or a unique prefix of at least 8 hex digits
    (as ``git`` accepts short commit ids)."""
    serial = parse_serial(text)
    load_settings(kyso)  # "no CA here" rather than "no such certificate"
    c = schema.certificates
    with kyso.store.read() as conn:
        if conn.execute(sa.select(c.c.serial).where(c.c.serial == serial)).first() is not None:
            return serial
        if len(serial) < MIN_SERIAL_PREFIX:
            raise CertificateNotFoundError(
                f"no certificate with serial {serial} in this CA (a shortened serial needs at "
                f"least {MIN_SERIAL_PREFIX} hex digits)")
        matches = conn.execute(
            sa.select(c.c.serial).where(c.c.serial.startswith(serial, autoescape=True)).limit(2)
        ).scalars().all()
    if not matches:
        raise CertificateNotFoundError(f"no certificate with serial {serial} in this CA")
    if len(matches) > 1:
        raise CertificateNotFoundError(f"serial prefix {serial} is ambiguous; give more digits")
    return str(matches[0])


def search(kyso: Kyso, query: Query) -> list[CertificateRecord]:
    load_settings(kyso)  # an empty home is "no CA here", not an empty inventory
    c = schema.certificates
    now = kyso.now()
    stmt = sa.select(c)
    if query.profile:
        kyso.profiles.get(query.profile)
        stmt = stmt.where(c.c.profile == query.profile)
    if query.issuer:
        stmt = stmt.where(c.c.issuer == query.issuer)
    if query.status:
        if query.status not in STATUS_FILTERS:
            raise PkiError(f"unknown status {query.status!r}; use {', '.join(STATUS_FILTERS)}")
        if query.status == "expired":
            stmt = stmt.where(c.c.status == Status.VALID.value, c.c.not_after < now)
        elif query.status == "valid":
            stmt = stmt.where(c.c.status == Status.VALID.value, c.c.not_after >= now)
        else:
            stmt = stmt.where(c.c.status == query.status)
    if query.expiring_within is not None:
        stmt = stmt.where(c.c.status == Status.VALID.value, c.c.not_after >= now,
                          c.c.not_after <= now + query.expiring_within)
    if query.holder_id:
        text = query.holder_id.strip()
        key = parse_personal_id(text).number if text.isdigit() and len(text) == 12 else parse_tax_code(text)
        stmt = stmt.where(c.c.holder_pseudonym == kyso.pseudonyms.pseudonym(key))
    stmt = stmt.order_by(c.c.not_after, c.c.serial)
    if query.limit:
        stmt = stmt.limit(query.limit)
    with kyso.store.read() as conn:
        rows = conn.execute(stmt).mappings().all()
    return [CertificateRecord.from_row(r) for r in rows]
