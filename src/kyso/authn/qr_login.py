"""QR cross-device login: the portal shows a one-time nonce, the level-2 app approves it.

1. The portal calls :meth:`QrLogin.start` and shows ``QrChallenge.payload``
   (``vneid-qr:1:<issuer>:<nonce>``) as a QR code; the nonce has 256 random bits and lives at
   most 120 seconds.
2. The app scans it, shows the citizen which service asks (``client_id``) and, on consent,
   signs :func:`kyso.authn.devices.login_message` with its bound key;
   the server calls :meth:`QrLogin.approve`. Only the account's *active* device counts, the
   account must not be locked and must be level 2 ("approved in the level-2 app").
3. The portal polls (:meth:`QrLogin.poll`) and, once approved, calls :meth:`QrLogin.complete`,
   which hands out the subject exactly once (a compare-and-set on ``consumed_at``); the portal
   then opens the session (its LOGIN event is the session layer's).

Every refusal (unknown, expired, replayed, wrong device, bad signature, locked or level-1
account) is an :class:`~kyso.errors.AuthenticationFailedError` (locks:
:class:`~kyso.errors.AccountLockedError`) and one QR_LOGIN_ERROR event. Like any QR login this
cannot stop a citizen from approving a code a phishing site relays; naming the relying party in
what the app shows and signs is the mitigation, so ``client_id`` is part of the signed message.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from kyso.audit import Layer, Outcome
from kyso.authn.devices.records import (
    DeviceRefusal,
    account_row,
    challenge_ref,
    check_token,
    citizen_actor,
    device_row,
)
from kyso.authn.devices.signatures import (
    ChallengePurpose,
    load_device_key,
    login_message,
    verify_device_signature,
)
from kyso.authn.registry import AccountStatus, Level
from kyso.context import Kyso
from kyso.errors import AccountLockedError, AuthenticationFailedError, AuthnError
from kyso.store.schema import device_challenges

__all__ = ["MAX_TTL", "PAYLOAD_PREFIX", "QrChallenge", "QrLogin", "QrState", "QrStatus",
           "parse_payload"]

MAX_TTL = dt.timedelta(seconds=120)
PAYLOAD_PREFIX = "vneid-qr:1:"
_CLIENT_ID = re.compile(r"[\x21-\x7e]{0,64}")  # printable ASCII without spaces, like client ids
_ISSUER = re.compile(r"[\x21-\x7e]{1,200}")
_MAX_PAYLOAD = 400

T = TypeVar("T")


class QrState(StrEnum):
    PENDING = "pending"  # shown, not yet approved
    APPROVED = "approved"  # the app approved; the portal may complete it once
    EXPIRED = "expired"  # older than its time to live (approved or not) and never completed
    CONSUMED = "consumed"  # completed: the login happened


@dataclass(frozen=True)
class QrChallenge:
    nonce: str
    client_id: str
    expires_at: dt.datetime
    payload: str  # what the QR code shows

    def to_dict(self) -> dict[str, Any]:
        return {"nonce": self.nonce, "client_id": self.client_id,
                "expires_at": self.expires_at.isoformat(), "payload": self.payload}


@dataclass(frozen=True)
class QrStatus:
    state: QrState
    expires_at: dt.datetime
    subject: str | None = None  # only while APPROVED

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state.value, "expires_at": self.expires_at.isoformat(),
                "subject": self.subject}


def parse_payload(payload: object) -> tuple[str, str]:
    """``(issuer, nonce)`` of a QR payload, as the app reads it; :class:`AuthnError` for
    anything that is not one."""
    if not isinstance(payload, str) or len(payload) > _MAX_PAYLOAD or not payload.startswith(
            PAYLOAD_PREFIX):
        raise AuthnError(f"not a QR login code (expected {PAYLOAD_PREFIX}<issuer>:<nonce>)")
    issuer, sep, nonce = payload[len(PAYLOAD_PREFIX):].rpartition(":")
    if not sep or not _ISSUER.fullmatch(issuer):
        raise AuthnError(f"not a QR login code (expected {PAYLOAD_PREFIX}<issuer>:<nonce>)")
    return issuer, check_token(nonce, "nonce")


class QrLogin:
    """The provider side of QR login over the ``device_challenges`` table."""

    def __init__(self, kyso: Kyso, *, issuer: str = "kyso") -> None:
        if not isinstance(issuer, str) or not _ISSUER.fullmatch(issuer):
            raise AuthnError("the QR issuer must be 1-200 printable ASCII characters")
        self._kyso = kyso
        self._issuer = issuer

    def _actor(self, subject: str | None) -> str | None:
        return citizen_actor(self._kyso, subject)

    def _run(self, nonce: str, step: str, work: Callable[[Connection], T]) -> T:
        try:
            return self._kyso.store.write(work)
        except DeviceRefusal as refusal:
            self._kyso.record(Layer.AUTHN, "QR_LOGIN_ERROR", Outcome.FAILURE,
                              object=challenge_ref(nonce), actor=self._actor(refusal.subject),
                              step=step, reason=refusal.reason, subject=refusal.subject)
            raise refusal.error(refusal.message) from None

    @staticmethod
    def _challenge(conn: Connection, nonce: str) -> RowMapping:
        row = conn.execute(sa.select(device_challenges).where(
            device_challenges.c.nonce == nonce,
            device_challenges.c.purpose == ChallengePurpose.LOGIN.value)).mappings().first()
        if row is None:
            raise DeviceRefusal("unknown-nonce", "unknown QR login code")
        return row

    # -- the portal ---------------------------------------------------------------------------

    def start(self, *, client_id: str = "", ttl: dt.timedelta = MAX_TTL) -> QrChallenge:
        """A fresh QR login code for ``client_id`` ("" for the portal itself)."""
        if not isinstance(client_id, str) or not _CLIENT_ID.fullmatch(client_id):
            raise AuthnError("the client id must be at most 64 printable ASCII characters")
        if not isinstance(ttl, dt.timedelta) or not dt.timedelta(0) < ttl <= MAX_TTL:
            raise AuthnError("a QR login code lives more than 0 and at most 120 seconds")
        now = self._kyso.now()
        nonce = secrets.token_urlsafe(32)  # 256 bits
        expires = now + ttl

        def work(conn: Connection) -> None:
            conn.execute(sa.insert(device_challenges).values(
                nonce=nonce, purpose=ChallengePurpose.LOGIN.value, target=client_id,
                created_at=now, expires_at=expires))

        self._kyso.store.write(work)
        self._kyso.record(Layer.AUTHN, "QR_LOGIN_STARTED", Outcome.SUCCESS,
                          object=challenge_ref(nonce), client_id=client_id,
                          expires_at=expires.isoformat())
        return QrChallenge(nonce=nonce, client_id=client_id, expires_at=expires,
                           payload=f"{PAYLOAD_PREFIX}{self._issuer}:{nonce}")

    def poll(self, nonce: str) -> QrStatus:
        """Where the code stands; the subject only while approved and not yet completed.
        :class:`AuthenticationFailedError` for an unknown code. Not audited (a read)."""
        check_token(nonce, "nonce")
        with self._kyso.store.read() as conn:
            row = conn.execute(sa.select(device_challenges).where(
                device_challenges.c.nonce == nonce,
                device_challenges.c.purpose == ChallengePurpose.LOGIN.value)).mappings().first()
        if row is None:
            raise AuthenticationFailedError("unknown QR login code")
        if row["consumed_at"] is not None:
            state = QrState.CONSUMED
        elif self._kyso.now() >= row["expires_at"]:
            state = QrState.EXPIRED
        elif row["approved_at"] is not None:
            state = QrState.APPROVED
        else:
            state = QrState.PENDING
        return QrStatus(state=state, expires_at=row["expires_at"],
                        subject=row["subject"] if state is QrState.APPROVED else None)

    def complete(self, nonce: str) -> str:
        """The approved subject, exactly once; every later call (and a call on an expired or
        unapproved code) is refused."""
        check_token(nonce, "nonce")
        now = self._kyso.now()

        def work(conn: Connection) -> str:
            row = self._challenge(conn, nonce)
            subject = row["subject"]
            if row["consumed_at"] is not None:
                raise DeviceRefusal("replayed", "this QR login code was already used",
                                    subject=subject)
            if now >= row["expires_at"]:
                raise DeviceRefusal("expired", "this QR login code has expired", subject=subject)
            if row["approved_at"] is None or subject is None:
                raise DeviceRefusal("not-approved", "this QR login code is not approved yet")
            device = device_row(conn, row["device_id"] or "")
            if device is None or not device.active or device.subject != subject:
                raise DeviceRefusal("device-not-active", "the approving device is no longer "
                                    "bound to the account", subject=subject)
            self._check_account(conn, subject)
            done = conn.execute(sa.update(device_challenges).where(
                device_challenges.c.nonce == nonce,
                device_challenges.c.purpose == ChallengePurpose.LOGIN.value,
                device_challenges.c.consumed_at.is_(None),
                device_challenges.c.approved_at.is_not(None),
                device_challenges.c.expires_at > now,
            ).values(consumed_at=now)).rowcount
            if done != 1:
                raise DeviceRefusal("replayed", "this QR login code was already used",
                                    subject=subject)
            return str(subject)

        subject = self._run(nonce, "complete", work)
        self._kyso.record(Layer.AUTHN, "QR_LOGIN_COMPLETED", Outcome.SUCCESS,
                          object=challenge_ref(nonce), actor=self._actor(subject),
                          subject=subject, auth_method="qr")
        return subject

    # -- the app ------------------------------------------------------------------------------

    @staticmethod
    def _check_account(conn: Connection, subject: str) -> None:
        account = account_row(conn, subject)
        if account is None:
            raise DeviceRefusal("unknown-account", "unknown e-ID account")
        if account["status"] != AccountStatus.ACTIVE.value:
            raise DeviceRefusal("account-locked", "the e-ID account is locked",
                                subject=subject, error=AccountLockedError)
        if int(account["level"]) < Level.TWO:
            raise DeviceRefusal("level-1", "QR login needs a level-2 e-ID account",
                                subject=subject)

    def approve(self, nonce: str, device_id: str, signature: bytes) -> QrStatus:
        """The bound device ``device_id`` approves the code by signing
        :func:`~kyso.authn.devices.login_message` for its own account."""
        check_token(nonce, "nonce")
        check_token(device_id, "device id")
        now = self._kyso.now()

        def work(conn: Connection) -> QrStatus:
            row = self._challenge(conn, nonce)
            device = device_row(conn, device_id)
            subject = device.subject if device else None
            if row["consumed_at"] is not None:
                raise DeviceRefusal("replayed", "this QR login code was already used",
                                    subject=subject)
            if row["approved_at"] is not None:
                raise DeviceRefusal("replayed", "this QR login code was already approved",
                                    subject=subject)
            if now >= row["expires_at"]:
                raise DeviceRefusal("expired", "this QR login code has expired", subject=subject)
            if device is None or not device.active or subject is None:
                raise DeviceRefusal("device-not-active", "that device is not an active bound "
                                    "device", subject=subject)
            self._check_account(conn, subject)
            message = login_message(nonce=nonce, subject=subject, client_id=row["target"] or "")
            try:
                verify_device_signature(load_device_key(device.public_key), signature, message)
            except AuthenticationFailedError as exc:
                raise DeviceRefusal("bad-signature", str(exc), subject=subject) from None
            done = conn.execute(sa.update(device_challenges).where(
                device_challenges.c.nonce == nonce,
                device_challenges.c.approved_at.is_(None),
                device_challenges.c.consumed_at.is_(None),
                device_challenges.c.expires_at > now,
            ).values(approved_at=now, subject=subject, device_id=device.id)).rowcount
            if done != 1:
                raise DeviceRefusal("replayed", "this QR login code was already approved",
                                    subject=subject)
            return QrStatus(state=QrState.APPROVED, expires_at=row["expires_at"],
                            subject=subject)

        status = self._run(nonce, "approve", work)
        self._kyso.record(Layer.AUTHN, "QR_LOGIN_APPROVED", Outcome.SUCCESS,
                          object=challenge_ref(nonce), actor=self._actor(status.subject),
                          subject=status.subject, device=f"device:{device_id}")
        return status
