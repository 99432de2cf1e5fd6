"""TOTP credentials of e-ID accounts (``otp_credentials``), seeds sealed at rest.

Life of a credential: :meth:`OtpCredentials.begin_totp` stores a *pending* one (a new begin
replaces an earlier pending one) and returns the ``otpauth://`` URI for the authenticator app;
:meth:`~OtpCredentials.confirm_totp` with the first valid code makes it *active* and retires the
account's previous active one. The confirming code's time step stays stored in ``last_step``,
so that code can never be replayed to log in. :meth:`~OtpCredentials.remove` retires one.

Seeds are sealed with :class:`kyso.authn.sealing.SecretSealer` bound to the credential id; the
seed and the URI leave only through :class:`TotpEnrolment` (whose ``repr`` hides them), never
through an event or an error.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from kyso.audit import Layer, Outcome
from kyso.authn.otp import TotpMatch, TotpSettings, TotpVerifier, new_totp_secret
from kyso.authn.registry import Identity, Registry
from kyso.authn.stores import SqlTotpStepStore
from kyso.clock import Clock, vn_iso
from kyso.errors import AuthenticationFailedError, AuthnError
from kyso.store import Store
from kyso.store.schema import otp_credentials

if TYPE_CHECKING:
    from kyso.authn.sealing import SecretSealer
    from kyso.context import Kyso

__all__ = ["CredentialStatus", "OtpCredential", "OtpCredentials", "TotpEnrolment"]

KIND_TOTP = "totp"


class CredentialStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    RETIRED = "retired"


@dataclass(frozen=True)
class TotpEnrolment:
    """What the citizen's authenticator app needs; shown once, never logged."""

    credential_id: str
    secret: str = field(repr=False)
    provisioning_uri: str = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """For the enrolling user's screen only (it holds the seed inside the URI)."""
        return {"credential_id": self.credential_id, "uri": self.provisioning_uri}


@dataclass(frozen=True)
class OtpCredential:
    """A stored credential without its seed."""

    credential_id: str
    subject: str
    kind: str
    status: CredentialStatus
    created_at: dt.datetime
    activated_at: dt.datetime | None
    last_step: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"credential_id": self.credential_id, "subject": self.subject, "kind": self.kind,
                "status": self.status.value, "created_at": vn_iso(self.created_at),
                "activated_at": vn_iso(self.activated_at) if self.activated_at else None,
                "last_step": self.last_step}


def _credential(row: RowMapping) -> OtpCredential:
    return OtpCredential(credential_id=row["id"], subject=row["subject"], kind=row["kind"],
                         status=CredentialStatus(row["status"]), created_at=row["created_at"],
                         activated_at=row["activated_at"], last_step=row["last_step"])


_PUBLIC = [c for c in otp_credentials.c if c.name != "secret_sealed"]


class OtpCredentials:
    """Enrol, activate, read and retire the TOTP credentials of accounts.

    With ``audit`` (the :class:`~kyso.context.Kyso` context) every change and every refused
    confirmation is recorded (``UPDATE_CREDENTIAL``, ``UPDATE_CREDENTIAL_ERROR``,
    ``REMOVE_CREDENTIAL``) with the masked ID and the holder's pseudonym.
    """

    def __init__(self, store: Store, clock: Clock, sealer: SecretSealer, *,
                 settings: TotpSettings | None = None, audit: Kyso | None = None) -> None:
        self._store = store
        self._clock = clock
        self._sealer = sealer
        self._audit = audit
        self._registry = Registry(store, clock)
        self._uris = TotpVerifier(SqlTotpStepStore(store), clock, settings)

    # -- reads ------------------------------------------------------------------------

    def credentials(self, subject: str) -> tuple[OtpCredential, ...]:
        with self._store.read() as conn:
            rows = conn.execute(sa.select(*_PUBLIC).where(otp_credentials.c.subject == subject)
                                .order_by(otp_credentials.c.created_at, otp_credentials.c.id)
                                ).mappings().all()
        return tuple(_credential(r) for r in rows)

    def active_totp(self, subject: str) -> tuple[str, str] | None:
        """``(credential_id, secret)`` of the account's active TOTP credential, or None."""
        c = otp_credentials.c
        with self._store.read() as conn:
            row = conn.execute(sa.select(c.id, c.secret_sealed).where(
                c.subject == subject, c.kind == KIND_TOTP,
                c.status == CredentialStatus.ACTIVE.value)).first()
        if row is None:
            return None
        secret = self._sealer.unseal(bytes(row.secret_sealed), context=row.id)
        return row.id, secret.decode("ascii")

    # -- changes ----------------------------------------------------------------------

    def begin_totp(self, subject: str) -> TotpEnrolment:
        """A new pending TOTP credential for the account (replacing an earlier pending one)."""
        identity = self._registry.by_subject(subject)
        credential_id = "otp-" + secrets.token_urlsafe(16)
        secret = new_totp_secret()
        sealed = self._sealer.seal(secret.encode("ascii"), context=credential_id)
        now = self._clock.now()
        c = otp_credentials.c

        def work(conn: Connection) -> None:
            conn.execute(sa.delete(otp_credentials).where(
                c.subject == subject, c.kind == KIND_TOTP,
                c.status == CredentialStatus.PENDING.value))
            conn.execute(sa.insert(otp_credentials).values(
                id=credential_id, subject=subject, kind=KIND_TOTP, secret_sealed=sealed,
                status=CredentialStatus.PENDING.value, last_step=None, created_at=now,
                activated_at=None))

        self._store.write(work)
        self._record("UPDATE_CREDENTIAL", Outcome.SUCCESS, identity, credential_id,
                     stage=CredentialStatus.PENDING.value)
        uri = self._uris.provisioning_uri(secret, identity.id_number)
        return TotpEnrolment(credential_id, secret, uri)

    def confirm_totp(self, subject: str, credential_id: str, code: str,
                     verifier: TotpVerifier) -> OtpCredential:
        """Activate a pending credential with its first valid code; the previous active one is
        retired. :class:`AuthnError` if there is no such pending credential,
        :class:`AuthenticationFailedError` if the code does not verify."""
        identity = self._registry.by_subject(subject)
        c = otp_credentials.c
        with self._store.read() as conn:
            row = conn.execute(sa.select(c.secret_sealed).where(
                c.id == credential_id, c.subject == subject, c.kind == KIND_TOTP,
                c.status == CredentialStatus.PENDING.value)).first()
        if row is None:
            self._record("UPDATE_CREDENTIAL_ERROR", Outcome.FAILURE, identity, str(credential_id),
                         error="credential_not_found")
            raise AuthnError("no pending TOTP enrolment with that credential id for this "
                             "account: start again with otp-setup")
        secret = self._sealer.unseal(bytes(row.secret_sealed), context=credential_id).decode()
        try:
            match = verifier.verify(credential_id, secret, code)
        except AuthenticationFailedError:
            self._record("UPDATE_CREDENTIAL_ERROR", Outcome.FAILURE, identity, credential_id,
                         error="invalid_user_otp")
            raise
        self._store.write(lambda conn: self._activate(conn, subject, credential_id, match))
        self._record("UPDATE_CREDENTIAL", Outcome.SUCCESS, identity, credential_id,
                     stage=CredentialStatus.ACTIVE.value)
        return self._get(credential_id)

    def _activate(self, conn: Connection, subject: str, credential_id: str,
                  match: TotpMatch) -> None:
        c = otp_credentials.c
        now = self._clock.now()
        # The confirming step stays stored whatever step store the verifier used.
        changed = conn.execute(sa.update(otp_credentials).where(
            c.id == credential_id, c.status == CredentialStatus.PENDING.value).values(
            status=CredentialStatus.ACTIVE.value, activated_at=now,
            last_step=sa.case((c.last_step.is_(None), match.step),
                              (c.last_step < match.step, match.step), else_=c.last_step),
        )).rowcount
        if changed != 1:
            raise AuthnError("the TOTP enrolment changed meanwhile: start again with otp-setup")
        conn.execute(sa.update(otp_credentials).where(
            c.subject == subject, c.kind == KIND_TOTP, c.id != credential_id,
            c.status == CredentialStatus.ACTIVE.value).values(
            status=CredentialStatus.RETIRED.value))

    def remove(self, subject: str, credential_id: str) -> OtpCredential:
        """Retire one of the account's credentials (pending or active)."""
        identity = self._registry.by_subject(subject)
        c = otp_credentials.c
        changed = self._store.write(lambda conn: conn.execute(sa.update(otp_credentials).where(
            c.id == credential_id, c.subject == subject,
            c.status != CredentialStatus.RETIRED.value).values(
            status=CredentialStatus.RETIRED.value)).rowcount)
        if changed != 1:
            raise AuthnError("this account has no such TOTP credential in use")
        self._record("REMOVE_CREDENTIAL", Outcome.SUCCESS, identity, credential_id)
        return self._get(credential_id)

    # -- internals --------------------------------------------------------------------

    def _get(self, credential_id: str) -> OtpCredential:
        with self._store.read() as conn:
            row = conn.execute(sa.select(*_PUBLIC).where(otp_credentials.c.id == credential_id)
                               ).mappings().first()
        if row is None:
            raise AuthnError("no such TOTP credential")
        return _credential(row)

    def _record(self, action: str, outcome: Outcome, identity: Identity, credential_id: str,
                **details: Any) -> None:
        if self._audit is None:
            return
        self._audit.record(Layer.AUTHN, action, outcome, object=identity.subject,
                           id_hint=identity.masked_id,
                           holder=self._audit.pseudonyms.pseudonym(identity.id_number),
                           kind=KIND_TOTP, authenticator=credential_id[:64], **details)
