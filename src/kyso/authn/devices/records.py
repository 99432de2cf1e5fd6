"""Device records, challenge rows and the input checks shared by device binding and QR login."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from kyso.authn.devices.signatures import approval_message
from kyso.errors import AuthenticationFailedError, AuthnError, IdentityError
from kyso.store.schema import devices, identities

if TYPE_CHECKING:
    from kyso.context import Kyso

__all__ = [
    "Device",
    "DeviceAlreadyBoundError",
    "DeviceApprovalRequest",
    "DeviceRefusal",
    "DeviceStatus",
    "account_row",
    "challenge_ref",
    "check_name",
    "check_token",
    "device_from_row",
    "device_row",
]

_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")  # nonces, device ids, subjects
_MAX_NAME = 64


class DeviceStatus(StrEnum):
    PENDING = "pending"  # requested, waiting for the old device's or the chip's approval
    ACTIVE = "active"  # the one bound device of the account
    RETIRED = "retired"  # replaced or withdrawn; never active again


@dataclass(frozen=True)
class Device:
    id: str
    subject: str
    name: str
    public_key: bytes = field(repr=False)  # SubjectPublicKeyInfo DER
    thumbprint: str
    status: DeviceStatus
    approved_by: str | None
    created_at: dt.datetime
    activated_at: dt.datetime | None
    retired_at: dt.datetime | None

    @property
    def active(self) -> bool:
        return self.status is DeviceStatus.ACTIVE

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "subject": self.subject,
            "name": self.name,
            "status": self.status.value,
            "thumbprint": self.thumbprint,
            "approved_by": self.approved_by,
            "created_at": self.created_at.isoformat(),
            "activated_at": self.activated_at.isoformat() if self.activated_at else None,
            "retired_at": self.retired_at.isoformat() if self.retired_at else None,
        }


@dataclass(frozen=True)
class DeviceApprovalRequest:
    """A pending device and the nonce its approver signs (see :func:`approval_message`)."""

    device_id: str
    subject: str
    thumbprint: str
    nonce: str
    expires_at: dt.datetime

    @property
    def message(self) -> bytes:
        """What the current active device must sign to approve this device."""
        return approval_message(nonce=self.nonce, subject=self.subject,
                                thumbprint=self.thumbprint)

    def to_dict(self) -> dict[str, Any]:
        return {"device_id": self.device_id, "subject": self.subject,
                "thumbprint": self.thumbprint, "nonce": self.nonce,
                "expires_at": self.expires_at.isoformat()}


class DeviceAlreadyBoundError(IdentityError):
    """A first binding for an account that already has an active device: the new device must
    be requested (:meth:`~kyso.authn.devices.Devices.request_new`) and approved instead."""


class DeviceRefusal(Exception):
    """A security decision to refuse, carried out of a write transaction so that nothing is
    written and the refusal is audited afterwards (with ``details``, if any)."""

    def __init__(self, reason: str, message: str, *, subject: str | None = None,
                 error: type[AuthnError] = AuthenticationFailedError,
                 details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.subject = subject
        self.error = error
        self.details = dict(details or {})


def check_token(value: object, what: str) -> str:
    """A nonce, device id or subject: short URL-safe text; :class:`AuthnError` otherwise."""
    if not isinstance(value, str):
        raise AuthnError(f"the {what} must be text")
    if not _TOKEN.fullmatch(value):
        raise AuthnError(f"the {what} is malformed (1-64 characters A-Z a-z 0-9 _ -)")
    return value


def challenge_ref(nonce: str) -> str:
    """How events name a challenge: a hash, so the log never holds a usable nonce. 32 hex
    characters: the event scrubber leaves such a token whole, while a shorter one holding a run
    of 12 digits would be masked as an ID number."""
    return "challenge:" + hashlib.sha256(nonce.encode("ascii")).hexdigest()[:32]


def check_name(value: object) -> str:
    """A device name as the citizen typed it: 1-64 printable characters, spaces collapsed."""
    if not isinstance(value, str):
        raise AuthnError("the device name must be text")
    name = " ".join(value.split())
    if not name or len(name) > _MAX_NAME or any(
            unicodedata.category(c).startswith("C") for c in name):
        raise AuthnError(f"the device name must be 1-{_MAX_NAME} printable characters")
    return name


def account_row(conn: Connection, subject: str) -> RowMapping | None:
    return conn.execute(
        sa.select(identities.c.subject, identities.c.id_number, identities.c.status,
                  identities.c.level).where(identities.c.subject == subject)
    ).mappings().first()


def citizen_actor(kyso: Kyso, subject: str | None) -> str | None:
    """The audit actor for a citizen: the keyed pseudonym of their ID number (None: no subject
    or no such account — the context's own actor is used)."""
    if subject is None:
        return None
    with kyso.store.read() as conn:
        row = account_row(conn, subject)
    return kyso.pseudonyms.pseudonym(row["id_number"]) if row else None


def device_from_row(row: RowMapping) -> Device:
    return Device(id=row["id"], subject=row["subject"], name=row["name"],
                  public_key=bytes(row["public_key"]), thumbprint=row["thumbprint"],
                  status=DeviceStatus(row["status"]), approved_by=row["approved_by"],
                  created_at=row["created_at"], activated_at=row["activated_at"],
                  retired_at=row["retired_at"])


def device_row(conn: Connection, device_id: str) -> Device | None:
    row = conn.execute(sa.select(devices).where(devices.c.id == device_id)).mappings().first()
    return device_from_row(row) if row else None
