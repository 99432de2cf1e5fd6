"""Revocation, hold and release. Each change is one conditional UPDATE, so two admins acting
at once cannot both win, and a revoked certificate never comes back."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from kyso.audit import Layer, Outcome
from kyso.context import Kyso
from kyso.errors import CertificateNotFoundError, KysoError, RevocationError
from kyso.pki.records import CertificateRecord, RevocationReason, Status
from kyso.store import schema

REVOKE_REASONS = tuple(r.value for r in RevocationReason if r is not RevocationReason.CERTIFICATE_HOLD)


@dataclass(frozen=True)
class StatusChange:
    serial: str
    old_status: Status
    record: CertificateRecord


def parse_reason(value: str) -> RevocationReason:
    for r in RevocationReason:
        if r.value.lower() == value.strip().lower():
            return r
    raise RevocationError(f"unknown revocation reason {value!r}; use one of "
                          f"{', '.join(REVOKE_REASONS)}")


def _change(
    kyso: Kyso,
    serial: str,
    *,
    allowed_from: tuple[Status, ...],
    values: dict[str, object],
    action: str,
    verb: str,
) -> StatusChange:
    c = schema.certificates

    def work(conn: sa.Connection) -> StatusChange:
        row = conn.execute(sa.select(c).where(c.c.serial == serial)).mappings().first()
        if row is None:
            raise CertificateNotFoundError(f"no certificate with serial {serial} in this CA")
        old = Status(row["status"])
        if old not in allowed_from:
            raise RevocationError(f"certificate {serial} is {old.value}; cannot {verb} it")
        result = conn.execute(
            sa.update(c).where(c.c.serial == serial, c.c.status == old.value).values(**values)
        )
        if result.rowcount != 1:
            raise RevocationError(f"certificate {serial} changed concurrently; try again")
        new_row = conn.execute(sa.select(c).where(c.c.serial == serial)).mappings().one()
        return StatusChange(serial, old, CertificateRecord.from_row(new_row))

    try:
        change = kyso.store.write(work)
    except KysoError as exc:
        kyso.record(Layer.PKI, action, Outcome.FAILURE, object=serial, reason=str(exc))
        raise
    rec = change.record
    kyso.record(
        Layer.PKI, action, Outcome.SUCCESS, object=serial, old_status=change.old_status.value,
        new_status=rec.status.value,
        reason=rec.revocation_reason.value if rec.revocation_reason else None,
        invalidity_date=rec.invalidity_date, profile=rec.profile, issuer=rec.issuer,
    )
    return change


def revoke(
    kyso: Kyso,
    serial: str,
    *,
    reason: str | RevocationReason = RevocationReason.UNSPECIFIED,
    invalidity_date: dt.datetime | None = None,
) -> StatusChange:
    """Revoke (permanently). ``keyCompromise`` also revokes every other certificate on the same
    key (renewals) and marks the key so it is never certified again; a certificate already
    revoked for another reason may still be moved to ``keyCompromise`` (RFC 5280 §5.3.1), keeping
    its revocation date."""
    r = reason if isinstance(reason, RevocationReason) else parse_reason(reason)
    if r is RevocationReason.CERTIFICATE_HOLD:
        raise RevocationError("certificateHold is not a revocation; use `kyso cert hold`")
    now = kyso.now()
    if invalidity_date is not None:
        if invalidity_date.tzinfo is None:
            raise RevocationError("invalidity date needs a time zone (e.g. 2026-11-20T08:00+07:00)")
        if invalidity_date > now:
            raise RevocationError("invalidity date is in the future")
    if r is not RevocationReason.KEY_COMPROMISE:
        return _change(
            kyso, serial, allowed_from=(Status.VALID, Status.ON_HOLD),
            values={"status": Status.REVOKED.value, "revoked_at": now,
                    "revocation_reason": r.value, "invalidity_date": invalidity_date},
            action="CERT_REVOKED", verb="revoke",
        )
    return _compromise(kyso, serial, invalidity_date, now)


def _compromise(
    kyso: Kyso, serial: str, invalidity_date: dt.datetime | None, now: dt.datetime
) -> StatusChange:
    c, ck = schema.certificates, schema.certified_keys
    compromised = RevocationReason.KEY_COMPROMISE.value

    def work(conn: sa.Connection) -> tuple[StatusChange, list[str]]:
        row = conn.execute(sa.select(c).where(c.c.serial == serial)).mappings().first()
        if row is None:
            raise CertificateNotFoundError(f"no certificate with serial {serial} in this CA")
        old = Status(row["status"])
        if old is Status.REVOKED and row["revocation_reason"] == compromised:
            raise RevocationError(f"certificate {serial} is already revoked for keyCompromise")
        values: dict[str, object] = {"status": Status.REVOKED.value,
                                     "revocation_reason": compromised,
                                     "invalidity_date": invalidity_date or row["invalidity_date"]}
        if old is not Status.REVOKED:
            values["revoked_at"] = now
        conn.execute(sa.update(c).where(c.c.serial == serial).values(**values))
        siblings = list(conn.execute(
            sa.select(c.c.serial).where(c.c.spki_sha256 == row["spki_sha256"],
                                        c.c.serial != serial,
                                        c.c.status.in_([Status.VALID.value, Status.ON_HOLD.value]))
        ).scalars())
        if siblings:
            conn.execute(sa.update(c).where(c.c.serial.in_(siblings)).values(
                status=Status.REVOKED.value, revoked_at=now, revocation_reason=compromised,
                invalidity_date=invalidity_date))
        conn.execute(sa.update(ck).where(ck.c.spki_sha256 == row["spki_sha256"],
                                         ck.c.compromised_at.is_(None))
                     .values(compromised_at=now))
        new_row = conn.execute(sa.select(c).where(c.c.serial == serial)).mappings().one()
        return StatusChange(serial, old, CertificateRecord.from_row(new_row)), siblings

    try:
        change, siblings = kyso.store.write(work)
    except KysoError as exc:
        kyso.record(Layer.PKI, "CERT_REVOKED", Outcome.FAILURE, object=serial, reason=str(exc))
        raise
    rec = change.record
    kyso.audit.record_many([
        kyso.event(Layer.PKI, "CERT_REVOKED", Outcome.SUCCESS, object=s,
                   old_status=(change.old_status.value if s == serial else "valid"),
                   new_status="revoked", reason=compromised, invalidity_date=rec.invalidity_date,
                   profile=rec.profile, issuer=rec.issuer,
                   same_key_as=(None if s == serial else serial))
        for s in [serial, *siblings]])
    return change


def hold(kyso: Kyso, serial: str) -> StatusChange:
    """Suspend (tạm dừng): listed on the CRL with reason certificateHold until released."""
    return _change(
        kyso, serial, allowed_from=(Status.VALID,),
        values={"status": Status.ON_HOLD.value, "revoked_at": kyso.now(),
                "revocation_reason": RevocationReason.CERTIFICATE_HOLD.value,
                "invalidity_date": None},
        action="CERT_STATUSCHANGE", verb="hold",
    )


def release(kyso: Kyso, serial: str) -> StatusChange:
    """End a hold: the certificate is valid again and leaves the next CRL."""
    return _change(
        kyso, serial, allowed_from=(Status.ON_HOLD,),
        values={"status": Status.VALID.value, "revoked_at": None, "revocation_reason": None,
                "invalidity_date": None},
        action="CERT_STATUSCHANGE", verb="release",
    )
