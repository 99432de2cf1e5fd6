"""Binding, approving and retiring devices (see :mod:`kyso.authn.devices`)."""

from __future__ import annotations

import builtins
import datetime as dt
import secrets
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from cryptography import x509
from sqlalchemy.engine import Connection

from kyso.audit import Layer, Outcome
from kyso.authn.chip import ChipData
from kyso.authn.devices.approvals import (
    Approved,
    approve_by_chip,
    approve_by_device,
    live_request,
    reloaded,
    usable_account,
)
from kyso.authn.devices.chip_check import check_officer, check_trust, run_chip_check
from kyso.authn.devices.records import (
    Device,
    DeviceAlreadyBoundError,
    DeviceApprovalRequest,
    DeviceRefusal,
    DeviceStatus,
    challenge_ref,
    check_name,
    check_token,
    citizen_actor,
    device_from_row,
    device_row,
)
from kyso.authn.devices.signatures import (
    ChallengePurpose,
    load_device_key,
    spki_der,
)
from kyso.authn.keys import jwk_thumbprint
from kyso.context import Kyso
from kyso.errors import AuthnError, IdentityError
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

    def _run(self, work: Callable[[Connection], T], *, failure: str, object: str,
             actor: str | None = None, **details: Any) -> T:
        """Run ``work`` in one write transaction; audit and raise its refusal, if any (the
        actor: ``actor``, else the citizen's pseudonym)."""
        try:
            return self._kyso.store.write(work)
        except DeviceRefusal as refusal:
            citizen = self._actor(refusal.subject)
            extra: dict[str, Any] = {k: v for k, v in details.items() if v is not None}
            if actor:
                extra["citizen"] = citizen
            extra.update(refusal.details)
            self._kyso.record(Layer.AUTHN, failure, Outcome.FAILURE, object=object,
                              actor=actor or citizen, reason=refusal.reason,
                              subject=refusal.subject, error=refusal.message, **extra)
            raise refusal.error(refusal.message) from None
        except sa.exc.IntegrityError:
            # Only reachable in a race the checks inside the transaction could not see.
            self._kyso.record(Layer.AUTHN, failure, Outcome.FAILURE, object=object,
                              reason="conflict")
            raise IdentityError(
                "the account's devices changed meanwhile (or that device key is already "
                "registered); try again") from None

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
            usable_account(conn, subject)
            active = conn.execute(sa.select(devices.c.id).where(
                devices.c.subject == subject, devices.c.status == DeviceStatus.ACTIVE.value)
            ).first()
            if active is not None:
                raise DeviceRefusal(
                    "already-bound", "the account already has an active device; a new device "
                    "needs the old device's approval or a chip card check",
                    subject=subject, error=DeviceAlreadyBoundError)
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
            usable_account(conn, subject)
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

    def approval_request(self, nonce: str, *, subject: str | None = None
                         ) -> DeviceApprovalRequest:
        """The live approval request of ``nonce`` (with ``subject``: it must be that
        account's), whose :attr:`~DeviceApprovalRequest.message` the active device signs. A
        read: an unknown, used or expired request, or a device no longer pending, is refused
        (:class:`AuthnError`) without an audit event; approving it would record one."""
        check_token(nonce, "nonce")
        if subject is not None:
            check_token(subject, "subject")
        now = self._kyso.now()
        try:
            with self._kyso.store.read() as conn:
                return live_request(conn, nonce, now, subject)[1]
        except DeviceRefusal as refusal:
            raise refusal.error(refusal.message) from None

    def approve_with_device(self, nonce: str, signature: bytes,
                            signer_device_id: str | None = None, *,
                            subject: str | None = None) -> Device:
        """The account's current active device approves the pending device of ``nonce`` by
        signing :func:`approval_message` (``signer_device_id``: that device; None: whichever
        is active). With ``subject``, the request must be that account's. The pending device
        becomes active and the signer retired in one transaction; the nonce is single use."""
        check_token(nonce, "nonce")
        if signer_device_id is not None:
            check_token(signer_device_id, "device id")
        if subject is not None:
            check_token(subject, "subject")
        now = self._kyso.now()
        done = self._run(
            lambda conn: approve_by_device(conn, nonce, signature, signer_device_id, now, subject),
            failure="DEVICE_APPROVAL_ERROR", object=challenge_ref(nonce))
        self._approved(done, method="device-signature")
        return done.device

    def approve_with_chip(self, nonce: str, chip: ChipData, *,
                          csca: Sequence[x509.Certificate],
                          crls: Sequence[x509.CertificateRevocationList] = (),
                          subject: str | None = None, officer: str | None = None) -> Device:
        """Activate the pending device of ``nonce`` after a read of the holder's chip card.

        ``chip`` is the chip as read (:class:`~kyso.authn.chip.ChipData`; nothing else is
        accepted) and passive authentication runs here, as level-2 enrolment runs it, against
        the trusted ``csca`` certificates and their ``crls``: it must pass, the card must not
        be expired and its DG13 ID number must be the account's. ``subject``: the request must
        be that account's; ``officer``: who checked the card at the counter (the event's
        actor; None when the holder's own app read the chip). The account's active device, if
        any, is retired in the same transaction; ``approved_by`` is ``chip:<DS serial>``."""
        check_token(nonce, "nonce")
        if subject is not None:
            check_token(subject, "subject")
        officer = check_officer(officer)
        trusted, revoked = check_trust(csca, crls)
        now = self._kyso.now()
        evidence = run_chip_check(chip, csca=trusted, crls=revoked, now=now)
        actor = f"officer:{officer}" if officer else None
        done = self._run(lambda conn: approve_by_chip(conn, nonce, evidence, now, subject),
                         failure="DEVICE_APPROVAL_ERROR", object=challenge_ref(nonce),
                         actor=actor, officer=officer, method="chip-passive-authentication")
        self._approved(done, actor=actor, method="chip-passive-authentication",
                       officer=officer, ds_serial=evidence.ds_serial, csca=evidence.csca,
                       checks=evidence.checks)
        return done.device

    def _approved(self, done: Approved, *, actor: str | None = None, **details: Any) -> None:
        device = done.device
        self._kyso.record(Layer.AUTHN, "DEVICE_APPROVED", Outcome.SUCCESS,
                          object=f"device:{device.id}",
                          actor=actor or self._actor(device.subject),
                          citizen=self._actor(device.subject), subject=device.subject,
                          thumbprint=device.thumbprint, approved_by=device.approved_by,
                          retired_device=done.retired,
                          **{k: v for k, v in details.items() if v is not None})

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
            return reloaded(conn, device_id)

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
