"""What happens inside the write transaction that approves a pending device: the request is
taken (live, unused, for this account), the approval is checked (the active device's signature,
or a passed chip check for the account's ID number), the nonce is spent, the old device retired
and the new one activated. Each step raises :class:`DeviceRefusal`, so a refusal writes
nothing; :class:`kyso.authn.devices.Devices` audits it."""

from __future__ import annotations

import datetime as dt
import hmac
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from kyso.authn.devices.chip_check import ChipEvidence
from kyso.authn.devices.records import (
    Device,
    DeviceApprovalRequest,
    DeviceRefusal,
    DeviceStatus,
    account_row,
    device_row,
)
from kyso.authn.devices.signatures import (
    ChallengePurpose,
    approval_message,
    load_device_key,
    verify_device_signature,
)
from kyso.authn.registry import AccountStatus
from kyso.errors import AccountLockedError, AuthenticationFailedError, IdentityError
from kyso.store.schema import device_challenges, devices

__all__ = ["Approved", "approve_by_chip", "approve_by_device", "live_request", "reloaded",
           "switch", "usable_account"]


@dataclass(frozen=True)
class Approved:
    device: Device
    retired: str | None  # the device id retired in the same transaction


def usable_account(conn: Connection, subject: str) -> RowMapping:
    account = account_row(conn, subject)
    if account is None:
        raise DeviceRefusal("unknown-account", "no e-ID account with that subject",
                            error=IdentityError)
    if account["status"] != AccountStatus.ACTIVE.value:
        raise DeviceRefusal("account-locked", "the e-ID account is locked",
                            subject=subject, error=AccountLockedError)
    return account


def live_request(conn: Connection, nonce: str, now: dt.datetime, subject: str | None
                 ) -> tuple[RowMapping, DeviceApprovalRequest]:
    """The account row and the approval request of ``nonce``, if it is live (unused,
    unexpired, its device still pending) and, with ``subject``, that account's."""
    challenge = conn.execute(sa.select(device_challenges).where(
        device_challenges.c.nonce == nonce,
        device_challenges.c.purpose == ChallengePurpose.APPROVE_DEVICE.value)
    ).mappings().first()
    if challenge is None:
        raise DeviceRefusal("unknown-nonce", "unknown device approval request", subject=subject)
    owner: str = challenge["subject"]
    if subject is not None and owner != subject:
        raise DeviceRefusal("wrong-account", "the device approval request is not for this "
                            "account", subject=subject, error=IdentityError)
    if challenge["consumed_at"] is not None:
        raise DeviceRefusal("replayed", "this device approval request was already used",
                            subject=owner)
    if now >= challenge["expires_at"]:
        raise DeviceRefusal("expired", "this device approval request has expired; request "
                            "the new device again", subject=owner)
    account = usable_account(conn, owner)
    pending = device_row(conn, challenge["target"])
    if pending is None or pending.status is not DeviceStatus.PENDING:
        raise DeviceRefusal("not-pending", "the requested device is no longer pending",
                            subject=owner)
    return account, DeviceApprovalRequest(device_id=pending.id, subject=owner,
                                          thumbprint=pending.thumbprint, nonce=nonce,
                                          expires_at=challenge["expires_at"])


def _spend(conn: Connection, nonce: str, now: dt.datetime, subject: str,
           signer: str | None) -> None:
    used = conn.execute(sa.update(device_challenges).where(
        device_challenges.c.nonce == nonce, device_challenges.c.consumed_at.is_(None)
    ).values(device_id=signer, approved_at=now, consumed_at=now)).rowcount
    if used != 1:
        raise DeviceRefusal("replayed", "this device approval request was already used",
                            subject=subject)


def approve_by_device(conn: Connection, nonce: str, signature: bytes, signer_id: str | None,
                      now: dt.datetime, subject: str | None) -> Approved:
    """The account's active device (``signer_id``, or whichever is active) signed the
    request's :func:`approval_message`."""
    _, request = live_request(conn, nonce, now, subject)
    owner = request.subject
    if signer_id is None:
        signer_id = conn.execute(sa.select(devices.c.id).where(
            devices.c.subject == owner, devices.c.status == DeviceStatus.ACTIVE.value)).scalar()
        if signer_id is None:
            raise DeviceRefusal("no-active-device", "the account has no active device to "
                                "approve with; a chip card check can approve instead",
                                subject=owner)
    signer = device_row(conn, signer_id)
    if signer is None or signer.subject != owner or not signer.active:
        raise DeviceRefusal("signer-not-active", "the approving device is not this account's "
                            "active device", subject=owner)
    try:
        verify_device_signature(load_device_key(signer.public_key), signature,
                                approval_message(nonce=nonce, subject=owner,
                                                 thumbprint=request.thumbprint))
    except AuthenticationFailedError as exc:
        raise DeviceRefusal("bad-signature", str(exc), subject=owner) from None
    _spend(conn, nonce, now, owner, signer.id)
    switch(conn, owner, request.device_id, f"device:{signer.id}", now, retire=signer.id)
    return Approved(reloaded(conn, request.device_id), signer.id)


def approve_by_chip(conn: Connection, nonce: str, evidence: ChipEvidence, now: dt.datetime,
                    subject: str | None) -> Approved:
    """A chip check (already run: ``evidence``) passed and its DG13 ID number is the
    account's; the account's active device, if any, is retired."""
    account, request = live_request(conn, nonce, now, subject)
    owner = request.subject
    if evidence.refusal is not None:
        refusal = evidence.refusal
        raise DeviceRefusal(refusal.reason, refusal.message, subject=owner,
                            error=refusal.error, details=refusal.details)
    assert evidence.id_number is not None
    assert evidence.ds_serial is not None
    if not hmac.compare_digest(evidence.id_number.encode("utf-8"),
                               str(account["id_number"]).encode("utf-8")):
        raise DeviceRefusal("chip-mismatch", "the chip card does not belong to this account",
                            subject=owner, details={"ds_serial": evidence.ds_serial})
    old = conn.execute(sa.select(devices.c.id).where(
        devices.c.subject == owner, devices.c.status == DeviceStatus.ACTIVE.value)).scalar()
    _spend(conn, nonce, now, owner, None)
    switch(conn, owner, request.device_id, f"chip:{evidence.ds_serial}", now, retire=old)
    return Approved(reloaded(conn, request.device_id), old)


def switch(conn: Connection, subject: str, new_id: str, approved_by: str, now: dt.datetime,
           *, retire: str | None) -> None:
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


def reloaded(conn: Connection, device_id: str) -> Device:
    found = device_row(conn, device_id)
    assert found is not None
    return found
