"""Binding, approving and retiring devices (see :mod:`kyso.authn.devices`)."""

from __future__ import annotations

import builtins
import datetime as dt
import hmac
import secrets
from collections.abc import Callable
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from kyso.audit import Layer, Outcome
from kyso.authn.devices.records import (
    Device,
    DeviceApprovalRequest,
    DeviceRefusal,
    DeviceStatus,
    PassiveAuthReport,
    VerifiedChip,
    account_row,
    challenge_ref,
    check_name,
    check_token,
    chip_facts,
    citizen_actor,
    device_from_row,
    device_row,
)
from kyso.authn.devices.signatures import (
    ChallengePurpose,
    approval_message,
    load_device_key,
    spki_der,
    verify_device_signature,
)
from kyso.authn.keys import jwk_thumbprint
from kyso.authn.registry import AccountStatus
from kyso.context import Kyso
from kyso.errors import AccountLockedError, AuthenticationFailedError, AuthnError, IdentityError
from kyso.store.schema import device_challenges, devices

__all__ = ["APPROVAL_TTL", "MAX_APPROVAL_TTL", "Devices"]

APPROVAL_TTL = dt.timedelta(minutes=5)
MAX_APPROVAL_TTL = dt.timedelta(minutes=10)  # like an SMS code (NIST SP 800-63B-4)

T = TypeVar("T")


class Devices:
    """Bind, approve, list and retire the devices of e-ID accounts. Every change is one
    transaction followed by one audit event."""

    def __init__(self, kyso: Kyso, *, approval_ttl: dt.timedelta = APPROVAL_TTL) -> None:
        if not dt.timedelta(0) < approval_ttl <= MAX_APPROVAL_TTL:
            raise AuthnError(f"a device approval lives at most {MAX_APPROVAL_TTL}")
        self._kyso = kyso
        self._ttl = approval_ttl

    # -- helpers ------------------------------------------------------------------------------

    def _actor(self, subject: str | None) -> str | None:
        return citizen_actor(self._kyso, subject)

    def _run(self, work: Callable[[Connection], T], *, failure: str, object: str) -> T:
        """Run ``work`` in one write transaction; audit and raise its refusal, if any."""
        try:
            return self._kyso.store.write(work)
        except DeviceRefusal as refusal:
            self._kyso.record(Layer.AUTHN, failure, Outcome.FAILURE, object=object,
                              actor=self._actor(refusal.subject), reason=refusal.reason,
                              subject=refusal.subject)
            raise refusal.error(refusal.message) from None
        except sa.exc.IntegrityError:
            # Only reachable in a race the checks inside the transaction could not see.
            self._kyso.record(Layer.AUTHN, failure, Outcome.FAILURE, object=object,
                              reason="conflict")
            raise IdentityError(
                "the account's devices changed meanwhile (or that device key is already "
                "registered); try again") from None

    @staticmethod
    def _usable_account(conn: Connection, subject: str) -> RowMapping:
        account = account_row(conn, subject)
        if account is None:
            raise DeviceRefusal("unknown-account", "no e-ID account with that subject",
                                error=IdentityError)
        if account["status"] != AccountStatus.ACTIVE.value:
            raise DeviceRefusal("account-locked", "the e-ID account is locked",
                                subject=subject, error=AccountLockedError)
        return account

    @staticmethod
    def _key_is_free(conn: Connection, thumbprint: str, subject: str) -> None:
        taken = conn.execute(sa.select(devices.c.id).where(devices.c.thumbprint == thumbprint)
                             ).first()
        if taken is not None:
            raise DeviceRefusal("key-reused", "that device key is already registered",
                                subject=subject, error=IdentityError)

    # -- binding ------------------------------------------------------------------------------

    def bind_first(self, subject: str, public_key: bytes, name: str) -> Device:
        """Bind the first device of an account that has no active device.

        The caller MUST already have verified an SMS OTP sent to the account's phone in this
        activation flow: this method checks no factor itself."""
        check_token(subject, "subject")
        key = load_device_key(public_key)
        name = check_name(name)
        thumbprint = jwk_thumbprint(key)
        now = self._kyso.now()
        device_id = "dev-" + secrets.token_urlsafe(16)

        def work(conn: Connection) -> Device:
            self._usable_account(conn, subject)
            active = conn.execute(sa.select(devices.c.id).where(
                devices.c.subject == subject, devices.c.status == DeviceStatus.ACTIVE.value)
            ).first()
            if active is not None:
                raise DeviceRefusal(
                    "already-bound", "the account already has an active device; a new device "
                    "needs the old device's approval or a chip card check",
                    subject=subject, error=IdentityError)
            self._key_is_free(conn, thumbprint, subject)
            conn.execute(sa.insert(devices).values(
                id=device_id, subject=subject, name=name, public_key=spki_der(key),
                thumbprint=thumbprint, status=DeviceStatus.ACTIVE.value,
                approved_by="first-binding", created_at=now, activated_at=now))
            found = device_row(conn, device_id)
            assert found is not None
            return found

        device = self._run(work, failure="DEVICE_BIND_ERROR", object=f"device:{device_id}")
        self._kyso.record(Layer.AUTHN, "DEVICE_BOUND", Outcome.SUCCESS,
                          object=f"device:{device.id}", actor=self._actor(subject),
                          subject=subject, thumbprint=thumbprint, approved_by=device.approved_by)
        return device

    def request_new(self, subject: str, public_key: bytes, name: str) -> DeviceApprovalRequest:
        """Register a pending device and the one-time nonce that approves it. An account has
        at most one pending request: a new one replaces the previous (never approved) one.

        The caller MUST have authenticated the holder on the new device first (ID number,
        password and SMS code): the request itself proves nothing, the approval does."""
        check_token(subject, "subject")
        key = load_device_key(public_key)
        name = check_name(name)
        thumbprint = jwk_thumbprint(key)
        now = self._kyso.now()
        device_id = "dev-" + secrets.token_urlsafe(16)
        nonce = secrets.token_urlsafe(32)
        expires = now + self._ttl

        def work(conn: Connection) -> None:
            self._usable_account(conn, subject)
            stale = sa.select(devices.c.id).where(
                devices.c.subject == subject, devices.c.status == DeviceStatus.PENDING.value)
            conn.execute(sa.delete(device_challenges).where(
                device_challenges.c.purpose == ChallengePurpose.APPROVE_DEVICE.value,
                device_challenges.c.target.in_(stale)))
            conn.execute(sa.delete(devices).where(
                devices.c.subject == subject, devices.c.status == DeviceStatus.PENDING.value))
            self._key_is_free(conn, thumbprint, subject)
            conn.execute(sa.insert(devices).values(
                id=device_id, subject=subject, name=name, public_key=spki_der(key),
                thumbprint=thumbprint, status=DeviceStatus.PENDING.value, created_at=now))
            conn.execute(sa.insert(device_challenges).values(
                nonce=nonce, purpose=ChallengePurpose.APPROVE_DEVICE.value, subject=subject,
                target=device_id, created_at=now, expires_at=expires))

        self._run(work, failure="DEVICE_APPROVAL_ERROR", object=f"device:{device_id}")
        self._kyso.record(Layer.AUTHN, "DEVICE_APPROVAL_REQUESTED", Outcome.SUCCESS,
                          object=f"device:{device_id}", actor=self._actor(subject),
                          subject=subject, thumbprint=thumbprint,
                          expires_at=expires.isoformat())
        return DeviceApprovalRequest(device_id=device_id, subject=subject,
                                     thumbprint=thumbprint, nonce=nonce, expires_at=expires)

    # -- approval -----------------------------------------------------------------------------

    def approve_with_device(self, nonce: str, signature: bytes, signer_device_id: str) -> Device:
        """The account's current active device approves the pending device of ``nonce`` by
        signing :func:`approval_message`. The pending device becomes active and the signer
        retired in one transaction; the nonce is single use."""
        check_token(nonce, "nonce")
        check_token(signer_device_id, "device id")
        now = self._kyso.now()

        def work(conn: Connection) -> tuple[Device, str]:
            challenge = conn.execute(sa.select(device_challenges).where(
                device_challenges.c.nonce == nonce,
                device_challenges.c.purpose == ChallengePurpose.APPROVE_DEVICE.value)
            ).mappings().first()
            if challenge is None:
                raise DeviceRefusal("unknown-nonce", "unknown device approval request")
            subject = challenge["subject"]
            if challenge["consumed_at"] is not None:
                raise DeviceRefusal("replayed", "this device approval request was already used",
                                    subject=subject)
            if now >= challenge["expires_at"]:
                raise DeviceRefusal("expired", "this device approval request has expired",
                                    subject=subject)
            self._usable_account(conn, subject)
            pending = device_row(conn, challenge["target"])
            if pending is None or pending.status is not DeviceStatus.PENDING:
                raise DeviceRefusal("not-pending", "the requested device is no longer pending",
                                    subject=subject)
            signer = device_row(conn, signer_device_id)
            if signer is None or signer.subject != subject or not signer.active:
                raise DeviceRefusal(
                    "signer-not-active", "the approving device is not this account's active "
                    "device", subject=subject)
            try:
                verify_device_signature(
                    load_device_key(signer.public_key), signature,
                    approval_message(nonce=nonce, subject=subject,
                                     thumbprint=pending.thumbprint))
            except AuthenticationFailedError as exc:
                raise DeviceRefusal("bad-signature", str(exc), subject=subject) from None
            used = conn.execute(sa.update(device_challenges).where(
                device_challenges.c.nonce == nonce, device_challenges.c.consumed_at.is_(None)
            ).values(device_id=signer.id, approved_at=now, consumed_at=now)).rowcount
            if used != 1:
                raise DeviceRefusal("replayed", "this device approval request was already used",
                                    subject=subject)
            approved_by = f"device:{signer.id}"
            self._switch(conn, subject, pending.id, approved_by, now, retire=signer.id)
            return self._reloaded(conn, pending.id), signer.id

        device, old = self._run(work, failure="DEVICE_APPROVAL_ERROR", object=challenge_ref(nonce))
        self._approved(device, old)
        return device

    def approve_with_chip(self, subject: str, device_id: str,
                          chip: VerifiedChip | PassiveAuthReport) -> Device:
        """Activate the pending device ``device_id`` after a chip card read, while its
        approval request is live (unexpired, unused). The caller MUST have run passive
        authentication on the chip (``chip`` is its verified result, or the
        :class:`~kyso.authn.passive_auth.PassiveAuthResult` itself, which must have passed);
        here the DG13 ID number must be the account's. The previous active device, if any, is
        retired in the same transaction."""
        check_token(subject, "subject")
        check_token(device_id, "device id")
        id_number, ds_serial = chip_facts(chip)
        now = self._kyso.now()

        def work(conn: Connection) -> tuple[Device, str | None]:
            account = self._usable_account(conn, subject)
            if not hmac.compare_digest(id_number.encode("utf-8"),
                                       str(account["id_number"]).encode("utf-8")):
                raise DeviceRefusal("chip-mismatch",
                                    "the chip card does not belong to this account",
                                    subject=subject)
            pending = device_row(conn, device_id)
            if pending is None or pending.subject != subject:
                raise DeviceRefusal("unknown-device", "no such device for this account",
                                    subject=subject, error=IdentityError)
            if pending.status is not DeviceStatus.PENDING:
                raise DeviceRefusal("not-pending", "the device is not waiting for approval",
                                    subject=subject, error=IdentityError)
            live = conn.execute(sa.select(device_challenges.c.nonce).where(
                device_challenges.c.target == device_id,
                device_challenges.c.purpose == ChallengePurpose.APPROVE_DEVICE.value,
                device_challenges.c.consumed_at.is_(None),
                device_challenges.c.expires_at > now)).first()
            if live is None:
                raise DeviceRefusal("expired", "this device approval request has expired; "
                                    "request it again", subject=subject)
            old = conn.execute(sa.select(devices.c.id).where(
                devices.c.subject == subject, devices.c.status == DeviceStatus.ACTIVE.value)
            ).scalar()
            conn.execute(sa.update(device_challenges).where(
                device_challenges.c.target == device_id,
                device_challenges.c.purpose == ChallengePurpose.APPROVE_DEVICE.value,
                device_challenges.c.consumed_at.is_(None)).values(consumed_at=now))
            self._switch(conn, subject, device_id, f"chip:{ds_serial}", now, retire=old)
            return self._reloaded(conn, device_id), old

        device, old = self._run(work, failure="DEVICE_APPROVAL_ERROR", object=f"device:{device_id}")
        self._approved(device, old)
        return device

    @staticmethod
    def _switch(conn: Connection, subject: str, new_id: str, approved_by: str,
                now: dt.datetime, *, retire: str | None) -> None:
        """Retire ``retire`` (the current active device) and activate ``new_id``, each a
        compare-and-set on the status; the unique index backs it up."""
        if retire is not None:
            done = conn.execute(sa.update(devices).where(
                devices.c.id == retire, devices.c.status == DeviceStatus.ACTIVE.value
            ).values(status=DeviceStatus.RETIRED.value, retired_at=now)).rowcount
            if done != 1:
                raise DeviceRefusal("signer-not-active", "the approving device is no longer "
                                    "active", subject=subject)
        done = conn.execute(sa.update(devices).where(
            devices.c.id == new_id, devices.c.status == DeviceStatus.PENDING.value
        ).values(status=DeviceStatus.ACTIVE.value, activated_at=now,
                 approved_by=approved_by)).rowcount
        if done != 1:
            raise DeviceRefusal("not-pending", "the requested device is no longer pending",
                                subject=subject)

    @staticmethod
    def _reloaded(conn: Connection, device_id: str) -> Device:
        found = device_row(conn, device_id)
        assert found is not None
        return found

    def _approved(self, device: Device, retired: str | None) -> None:
        self._kyso.record(Layer.AUTHN, "DEVICE_APPROVED", Outcome.SUCCESS,
                          object=f"device:{device.id}", actor=self._actor(device.subject),
                          subject=device.subject, thumbprint=device.thumbprint,
                          approved_by=device.approved_by, retired_device=retired)

    # -- reads and retirement -----------------------------------------------------------------

    def get(self, device_id: str) -> Device:
        check_token(device_id, "device id")
        with self._kyso.store.read() as conn:
            found = device_row(conn, device_id)
        if found is None:
            raise IdentityError("no device with that id")
        return found

    def active(self, subject: str) -> Device | None:
        """The account's bound device, or None."""
        with self._kyso.store.read() as conn:
            row = conn.execute(sa.select(devices).where(
                devices.c.subject == subject, devices.c.status == DeviceStatus.ACTIVE.value)
            ).mappings().first()
        return device_from_row(row) if row else None

    def retire(self, device_id: str, *, subject: str | None = None,
               actor: str | None = None) -> Device:
        """Retire an active or pending device (lost phone, reset). With ``subject``, the
        device must belong to that account. ``actor`` defaults to the context's (an admin on
        the command line)."""
        check_token(device_id, "device id")
        now = self._kyso.now()

        def work(conn: Connection) -> Device:
            found = device_row(conn, device_id)
            if found is None or (subject is not None and found.subject != subject):
                raise DeviceRefusal("unknown-device", "no such device for this account"
                                    if subject else "no device with that id",
                                    subject=subject, error=IdentityError)
            done = conn.execute(sa.update(devices).where(
                devices.c.id == device_id, devices.c.status != DeviceStatus.RETIRED.value
            ).values(status=DeviceStatus.RETIRED.value, retired_at=now)).rowcount
            if done != 1:
                raise DeviceRefusal("already-retired", "the device is already retired",
                                    subject=found.subject, error=IdentityError)
            conn.execute(sa.update(device_challenges).where(
                device_challenges.c.target == device_id,
                device_challenges.c.purpose == ChallengePurpose.APPROVE_DEVICE.value,
                device_challenges.c.consumed_at.is_(None)).values(consumed_at=now))
            return self._reloaded(conn, device_id)

        device = self._run(work, failure="DEVICE_RETIRE_ERROR", object=f"device:{device_id}")
        self._kyso.record(Layer.AUTHN, "DEVICE_RETIRED", Outcome.SUCCESS,
                          object=f"device:{device.id}", actor=actor,
                          citizen=self._actor(device.subject), subject=device.subject,
                          thumbprint=device.thumbprint)
        return device

    def list(self, subject: str) -> builtins.list[Device]:
        """Every device of the account, oldest first."""
        with self._kyso.store.read() as conn:
            rows = conn.execute(sa.select(devices).where(devices.c.subject == subject)
                                .order_by(devices.c.created_at, devices.c.id)).mappings().all()
        return [device_from_row(r) for r in rows]
