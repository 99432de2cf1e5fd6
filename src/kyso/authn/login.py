"""The login service of the e-ID provider: ID number + password, then a one-time code.

The OpenID Connect provider calls :meth:`LoginService.check_password`, then
:meth:`~LoginService.send_sms` if the citizen chose SMS, then :meth:`~LoginService.check_otp`,
which returns the :class:`LoginResult` its tokens are made from (``amr`` per RFC 8176).

Every refusal — unknown or malformed ID number, wrong password, wrong or replayed code, an
account locked by brute-force protection or by an authority (Decree 69) — says only
:data:`~kyso.authn.lockout.INVALID_CREDENTIALS`; locks raise :class:`AccountLockedError`, on
which the provider ends the login session. An unknown account costs one argon2 verification,
like a known one, and its failures are counted under the ID number's pseudonym, so lockout
behaves the same whether the account exists or not.

Brute-force counters are per factor (password, TOTP, SMS) and per account; only a complete
login resets them, so asking for a new SMS code does not. Every outcome is one audit event
(Keycloak names: ``LOGIN``, ``LOGIN_ERROR`` with ``user_not_found``,
``invalid_user_credentials``, ``invalid_user_otp``, ``user_temporarily_disabled``,
``user_disabled``; ``USER_DISABLED_BY_TEMPORARY_LOCKOUT`` / ``…_PERMANENT_LOCKOUT`` when a
failure locks the account). The accepted first factor is ``LOGIN_PASSWORD`` (no Keycloak
equivalent). Events carry the pseudonym as actor and the masked ID — never the raw number, the
password or the code.

An account whose stored brute-force state is damaged is refused like a permanently locked
one (``user_disabled``, the lockout's reason ``damaged-state``) until an administrator unlocks
it. The administration side — brute-force state, unlocks, the simulated SMS outbox — is
:mod:`kyso.authn.login_admin`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from kyso.audit import Layer, Outcome
from kyso.authn.credentials import OtpCredentials
from kyso.authn.lockout import (
    INVALID_CREDENTIALS,
    BruteForceGuard,
    BruteForceSettings,
    Decision,
    Factor,
)
from kyso.authn.otp import SmsOtp, SmsOutbox, SmsSent, TotpVerifier
from kyso.authn.passwords import PasswordHasher, hash_params, require_password_policy
from kyso.authn.registry import Identity, Level, Registry
from kyso.authn.sealing import SecretSealer
from kyso.authn.stores import SqlLockoutStore, SqlSmsChallengeStore, SqlSmsOutbox, SqlTotpStepStore
from kyso.context import Kyso
from kyso.errors import (
    AccountLockedError,
    AuthenticationFailedError,
    AuthnError,
    IdentityError,
    KysoError,
    ThrottledError,
)
from kyso.pki.identifiers import mask_id

__all__ = ["LoginResult", "LoginService", "PasswordAccepted", "SecondFactor"]

_MAX_ID_TEXT = 64  # longer "ID numbers" are cut before they are hashed into a pseudonym


class SecondFactor(StrEnum):
    TOTP = "totp"
    SMS = "sms"


_FACTOR = {SecondFactor.TOTP: Factor.TOTP, SecondFactor.SMS: Factor.SMS}
_AMR = {SecondFactor.TOTP: ("pwd", "otp", "mfa"), SecondFactor.SMS: ("pwd", "sms", "mfa")}


@dataclass(frozen=True)
class PasswordAccepted:
    subject: str
    level: Level
    factors: tuple[SecondFactor, ...]  # TOTP if an active credential, SMS if a phone

    def to_dict(self) -> dict[str, Any]:
        return {"subject": self.subject, "level": int(self.level),
                "factors": [f.value for f in self.factors]}


@dataclass(frozen=True)
class LoginResult:
    subject: str
    level: Level
    amr: tuple[str, ...]  # RFC 8176
    auth_time: dt.datetime

    def to_dict(self) -> dict[str, Any]:
        return {"subject": self.subject, "level": int(self.level), "amr": list(self.amr),
                "auth_time": self.auth_time.isoformat()}


def _id_text(value: object) -> str:
    return value[:_MAX_ID_TEXT] if isinstance(value, str) else ""


def _well_formed(text: str) -> bool:
    return len(text) == 12 and text.isascii() and text.isdigit()


class LoginService:
    """Password and one-time-code checks with brute-force protection and audit events."""

    def __init__(self, kyso: Kyso, *, outbox: SmsOutbox | None = None) -> None:
        self.kyso = kyso
        store, clock = kyso.store, kyso.clock
        self.registry = Registry(store, clock)
        self.hasher = PasswordHasher(hash_params(kyso.settings.authn.password_hash))
        self.guard = BruteForceGuard(BruteForceSettings.from_authn(kyso.settings.authn),
                                     SqlLockoutStore(store), clock)
        self.totp = TotpVerifier(SqlTotpStepStore(store), clock)
        sealer = SecretSealer.for_home(kyso.settings.home)
        self.outbox: SmsOutbox = outbox if outbox is not None else SqlSmsOutbox(store)
        self.sms = SmsOtp(SqlSmsChallengeStore(store), self.outbox, clock,
                          key=sealer.derive_key("sms-otp"))
        self.credentials = OtpCredentials(store, clock, sealer, audit=kyso)

    # -- first factor -----------------------------------------------------------------

    def check_password(self, id_number: str, password: str, *, client_id: str = "",
                       source: str = "", request_id: str = "") -> PasswordAccepted:
        """The account of ``id_number`` if ``password`` is its password and the account may
        log in; else :class:`AuthenticationFailedError` (:class:`AccountLockedError` when
        locked) with the uniform message."""
        text = _id_text(id_number)
        secret = password if isinstance(password, str) else ""
        identity = self.registry.find(text) if _well_formed(text) else None
        # Unknown but well-formed numbers are counted under their pseudonym, so they lock like
        # real accounts; malformed ones can never be an account and leave no state behind.
        account = (identity.subject if identity is not None
                   else self._pseudonym(text) if _well_formed(text) else None)
        ctx = _Attempt(self, text, identity, client_id, source, request_id, Factor.PASSWORD)

        decision = self.guard.check(account) if account is not None else None
        if decision is not None and not decision.allowed:
            self._dummy_verify(secret)
            ctx.refuse(_lock_error(decision), decision)
            raise AccountLockedError(INVALID_CREDENTIALS)
        if identity is not None and identity.locked:
            self._dummy_verify(secret)
            ctx.refuse("user_disabled", None, lock_reason=identity.lock_reason)
            raise AccountLockedError(INVALID_CREDENTIALS)

        stored = self.registry.password_hash(identity.subject) if identity is not None else None
        try:
            match = self.hasher.verify(stored, secret)
        except AuthenticationFailedError:
            error = "invalid_user_credentials" if identity is not None else "user_not_found"
            after = self.guard.record_failure(account, Factor.PASSWORD) if account else None
            ctx.refuse(error, after)
            if after is not None and not after.allowed:
                raise AccountLockedError(INVALID_CREDENTIALS) from None
            raise AuthenticationFailedError(INVALID_CREDENTIALS) from None

        if identity is None:  # unreachable: the dummy hash never matches
            raise AuthenticationFailedError(INVALID_CREDENTIALS)
        if match.new_hash is not None:
            self.registry.set_password_hash(identity.subject, match.new_hash)
        factors: list[SecondFactor] = []
        if self.credentials.active_totp(identity.subject) is not None:
            factors.append(SecondFactor.TOTP)
        if identity.person.phone:
            factors.append(SecondFactor.SMS)
        accepted = PasswordAccepted(identity.subject, identity.level, tuple(factors))
        ctx.record("LOGIN_PASSWORD", Outcome.SUCCESS, factors=[f.value for f in factors],
                   rehashed=match.needs_rehash)
        return accepted

    # -- second factor ----------------------------------------------------------------

    def send_sms(self, subject: str, *, source: str = "", request_id: str = "") -> SmsSent:
        """Send a new SMS code to the account's phone (the previous code dies; the failure
        counters stay). :class:`ThrottledError` when throttled, :class:`AuthnError` when the
        account has no phone."""
        identity = self.account(subject)
        ctx = _Attempt(self, identity.id_number, identity, "", source, request_id, Factor.SMS)
        self._ensure_may_log_in(ctx, identity)
        phone = identity.person.phone
        if not phone:
            ctx.record("SEND_SMS_CODE", Outcome.FAILURE, error="no_phone")
            raise AuthnError("this account has no phone number for SMS codes")
        try:
            sent = self.sms.send(identity.subject, phone)
        except ThrottledError as exc:
            ctx.record("SEND_SMS_CODE", Outcome.FAILURE, error="too_many_codes",
                       phone_hint=mask_id(phone))
            raise exc from None
        ctx.record("SEND_SMS_CODE", Outcome.SUCCESS, phone_hint=mask_id(phone),
                   challenge_id=sent.challenge_id, expires_at=sent.expires_at)
        return sent

    def check_otp(self, subject: str, code: str, factor: SecondFactor, *, client_id: str = "",
                  source: str = "", request_id: str = "") -> LoginResult:
        """Complete the login with a TOTP or SMS code (each accepted at most once)."""
        try:
            second = SecondFactor(factor)
        except ValueError:
            raise AuthnError("the second factor must be 'totp' or 'sms'") from None
        try:
            identity = self.account(subject)
        except IdentityError:
            raise AuthenticationFailedError(INVALID_CREDENTIALS) from None
        ctx = _Attempt(self, identity.id_number, identity, client_id, source, request_id,
                       _FACTOR[second])
        self._ensure_may_log_in(ctx, identity)

        active = self.credentials.active_totp(identity.subject)
        if second is SecondFactor.TOTP and active is None:
            ctx.refuse("credential_setup_required", None)
            raise AuthenticationFailedError(INVALID_CREDENTIALS)
        try:
            if active is not None and second is SecondFactor.TOTP:
                self.totp.verify(active[0], active[1], code)
            else:
                self.sms.verify(identity.subject, code)
        except AuthenticationFailedError:
            after = self.guard.record_failure(identity.subject, _FACTOR[second])
            ctx.refuse("invalid_user_otp", after)
            if not after.allowed:
                raise AccountLockedError(INVALID_CREDENTIALS) from None
            raise AuthenticationFailedError(INVALID_CREDENTIALS) from None

        self.guard.record_success(identity.subject)
        result = LoginResult(identity.subject, identity.level, _AMR[second], self.kyso.now())
        ctx.record("LOGIN", Outcome.SUCCESS, amr=list(result.amr), level=int(identity.level))
        return result

    # -- passwords --------------------------------------------------------------------

    def set_password(self, subject: str, password: str) -> None:
        """Set a new password after checking it against ``[authn] password_policy`` with the
        holder's own data as context; ``UPDATE_PASSWORD`` (or ``…_ERROR``) event."""
        identity = self.account(subject)
        person = identity.person
        born = person.birth_date
        context = [person.id_number, person.full_name, born.isoformat(),
                   born.strftime("%d%m%Y"), born.strftime("%Y%m%d"), person.phone or "",
                   person.email or ""]
        policy = self.kyso.settings.authn.password_policy
        details = {"id_hint": identity.masked_id,
                   "holder": self._pseudonym(identity.id_number), "policy": policy}
        try:
            if not isinstance(password, str):
                raise AuthnError("the password must be text")
            require_password_policy(password, policy, context=[c for c in context if c])
            new_hash = self.hasher.hash(password)
        except KysoError as exc:
            self.kyso.record(Layer.AUTHN, "UPDATE_PASSWORD_ERROR", Outcome.FAILURE,
                             object=identity.subject, error="password_rejected",
                             reason=str(exc), **details)
            raise
        self.registry.set_password_hash(identity.subject, new_hash)
        self.kyso.record(Layer.AUTHN, "UPDATE_PASSWORD", Outcome.SUCCESS,
                         object=identity.subject, **details)

    def account(self, subject: str) -> Identity:
        """The account of ``subject``; :class:`IdentityError` if there is none."""
        if not isinstance(subject, str) or not subject or len(subject) > 40:
            raise IdentityError("no e-ID account with that subject")
        return self.registry.by_subject(subject)

    # -- internals --------------------------------------------------------------------

    def _pseudonym(self, id_text: str) -> str:
        return self.kyso.pseudonyms.pseudonym(id_text)

    def _dummy_verify(self, password: str) -> None:
        with contextlib.suppress(AuthenticationFailedError):
            self.hasher.verify(None, password)

    def _ensure_may_log_in(self, ctx: _Attempt, identity: Identity) -> None:
        decision = self.guard.check(identity.subject)
        if not decision.allowed:
            ctx.refuse(_lock_error(decision), decision)
            raise AccountLockedError(INVALID_CREDENTIALS)
        if identity.locked:
            ctx.refuse("user_disabled", None, lock_reason=identity.lock_reason)
            raise AccountLockedError(INVALID_CREDENTIALS)


def _lock_error(decision: Decision) -> str:
    return "user_disabled" if decision.permanent else "user_temporarily_disabled"


class _Attempt:
    """The audit context of one login step: who (pseudonym), what (subject), from where."""

    def __init__(self, service: LoginService, id_text: str, identity: Identity | None,
                 client_id: str, source: str, request_id: str, factor: Factor) -> None:
        self._kyso = service.kyso
        self._actor = service.kyso.pseudonyms.pseudonym(id_text)
        self._object = identity.subject if identity is not None else ""
        self._common: dict[str, Any] = {
            "id_hint": mask_id(id_text) if id_text else "",
            "client_id": str(client_id)[:128],
            "factor": factor.value,
        }
        self._source = str(source)[:256] or None
        self._request_id = str(request_id)[:128]

    def record(self, action: str, outcome: Outcome, **details: Any) -> None:
        self._kyso.record(Layer.AUTHN, action, outcome, object=self._object, actor=self._actor,
                          source=self._source, request_id=self._request_id,
                          **self._common, **details)

    def refuse(self, error: str, decision: Decision | None, **details: Any) -> None:
        """``LOGIN_ERROR``, and the lockout event when this failure locked the account."""
        lockout = decision.to_dict() if decision is not None else None
        self.record("LOGIN_ERROR", Outcome.FAILURE, error=error, lockout=lockout, **details)
        if decision is not None and not decision.allowed and error in (
                "invalid_user_credentials", "user_not_found", "invalid_user_otp"):
            action = ("USER_DISABLED_BY_PERMANENT_LOCKOUT" if decision.permanent
                      else "USER_DISABLED_BY_TEMPORARY_LOCKOUT")
            self.record(action, Outcome.FAILURE, error=_lock_error(decision), lockout=lockout)
