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

Administrators see an account's brute-force state with :meth:`LoginService.lockout_status`
and lift a lock with :meth:`~LoginService.unlock_account` (a Decree 69 lock, a brute-force
lockout, or both: one ``USER_UNLOCKED`` event per lock lifted, its ``kind`` saying which).
SMS codes are simulated: :meth:`~LoginService.read_sms_outbox` shows the simulated phones'
messages (``SMS_OUTBOX_READ``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from kyso.audit import Layer, Outcome
from kyso.authn.credentials import OtpCredentials
from kyso.authn.enrolment import unlock_identity
from kyso.authn.lockout import (
    INVALID_CREDENTIALS,
    BruteForceGuard,
    BruteForceSettings,
    Decision,
    Factor,
    LockReason,
)
from kyso.authn.otp import SmsMessage, SmsOtp, SmsOutbox, SmsSent, TotpVerifier
from kyso.authn.passwords import PasswordHasher, hash_params, require_password_policy
from kyso.authn.registry import Identity, Level, LockGround, Registry, parse_phone
from kyso.authn.sealing import SecretSealer
from kyso.authn.stores import (
    SqlLockoutStore,
    SqlSmsChallengeStore,
    SqlSmsOutbox,
    SqlTotpStepStore,
    sms_code_in,
)
from kyso.clock import vn_iso
from kyso.context import Kyso
from kyso.errors import AccountLockedError, AuthenticationFailedError, AuthnError, IdentityError, KysoError
from kyso.pki.identifiers import mask_id

__all__ = ["AccountUnlock", "LockKind", "LockoutStatus", "LoginResult", "LoginService",
           "PasswordAccepted", "SecondFactor", "SimulatedSms", "lockout_status"]

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


class LockKind(StrEnum):
    """The two locks an account can be under; ``kind`` of the ``USER_UNLOCKED`` events."""

    DECREE_69 = "decree-69"  # an authority's lock on a Decree 69 ground (kyso id lock)
    BRUTE_FORCE = "brute-force"  # brute-force protection: temporary, permanent, the NIST cap


@dataclass(frozen=True)
class LockoutStatus:
    """An account's brute-force state, as an administrator sees it."""

    locked: bool
    permanent: bool
    locked_until: dt.datetime | None  # a temporary lock's end; None if not or for good
    reason: LockReason
    failures: Mapping[Factor, int]  # per factor, Keycloak's counters
    consecutive: int  # all factors since the last complete login (the NIST cap's counter)

    @classmethod
    def of(cls, guard: BruteForceGuard, account: str) -> LockoutStatus:
        decision = guard.check(account)
        return cls(locked=not decision.allowed, permanent=decision.permanent,
                   locked_until=decision.locked_until, reason=decision.reason,
                   failures=dict(guard.failures(account)), consecutive=decision.failures)

    @property
    def summary(self) -> str:
        if self.permanent:
            return f"permanently locked ({self.reason.value})"
        if self.locked_until is not None:
            return f"temporarily locked until {vn_iso(self.locked_until)} ({self.reason.value})"
        return "not locked"

    def to_dict(self) -> dict[str, Any]:
        return {"locked": self.locked, "permanent": self.permanent,
                "locked_until": vn_iso(self.locked_until) if self.locked_until else None,
                "reason": self.reason.value,
                "failures": {f.value: n for f, n in self.failures.items()},
                "consecutive_failures": self.consecutive}

    def to_event(self) -> dict[str, Any]:
        """:meth:`to_dict` for the audit log, whose scrubber redacts any value under a key
        named ``password`` or ``totp``: the failures as a list of factor and count."""
        return {**self.to_dict(), "failures": [{"factor": f.value, "count": n}
                                               for f, n in self.failures.items()]}


@dataclass(frozen=True)
class AccountUnlock:
    """What :meth:`LoginService.unlock_account` lifted."""

    identity: Identity  # after the unlock
    lifted: tuple[LockKind, ...]
    ground: LockGround | None  # the Decree 69 ground lifted
    lockout: LockoutStatus | None  # the brute-force lockout lifted, as it was

    def to_dict(self) -> dict[str, Any]:
        return {**self.identity.to_dict(), "lifted": [k.value for k in self.lifted],
                "ground": self.ground.value if self.ground else None,
                "lockout": self.lockout.to_dict() if self.lockout else None}


@dataclass(frozen=True)
class SimulatedSms:
    """One message of the simulated SMS network, as the citizen's phone shows it."""

    to: str = field(repr=False)
    text: str = field(repr=False)
    code: str | None = field(repr=False)
    sent_at: dt.datetime
    expires_at: dt.datetime
    state: str  # "replaced" (a later code was sent), "expired", or "current" (maybe used)

    def to_dict(self) -> dict[str, Any]:
        return {"to": mask_id(self.to), "sent_at": vn_iso(self.sent_at),
                "expires_at": vn_iso(self.expires_at), "state": self.state, "code": self.code,
                "text": self.text}


@runtime_checkable
class _ReadableOutbox(Protocol):
    def messages(self, to: str | None = None) -> tuple[SmsMessage, ...]:
        ...


def lockout_status(kyso: Kyso, subject: str) -> LockoutStatus:
    """The brute-force state of an account (by ``sub``) under the home's ``[authn]`` rules,
    without the login service's secrets (``kyso id show``)."""
    guard = BruteForceGuard(BruteForceSettings.from_authn(kyso.settings.authn),
                            SqlLockoutStore(kyso.store), kyso.clock)
    return LockoutStatus.of(guard, subject)


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
        counters stay). :class:`AuthnError` when throttled or the account has no phone."""
        identity = self._identity(subject)
        ctx = _Attempt(self, identity.id_number, identity, "", source, request_id, Factor.SMS)
        self._ensure_may_log_in(ctx, identity)
        phone = identity.person.phone
        if not phone:
            ctx.record("SEND_SMS_CODE", Outcome.FAILURE, error="no_phone")
            raise AuthnError("this account has no phone number for SMS codes")
        try:
            sent = self.sms.send(identity.subject, phone)
        except AuthnError as exc:
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
            identity = self._identity(subject)
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

    # -- administration ---------------------------------------------------------------

    def set_password(self, subject: str, password: str) -> None:
        """Set a new password after checking it against ``[authn] password_policy`` with the
        holder's own data as context; ``UPDATE_PASSWORD`` (or ``…_ERROR``) event."""
        identity = self._identity(subject)
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

    def lockout_status(self, subject: str) -> LockoutStatus:
        """The account's brute-force state: locked or not, until when, per-factor failures."""
        return LockoutStatus.of(self.guard, self._identity(subject).subject)

    def unlock(self, subject: str) -> LockoutStatus:
        """An administrator lifts the account's brute-force lockout (temporary, permanent or
        the NIST failure cap) and clears its failure counters; ``USER_UNLOCKED`` with
        ``kind`` ``brute-force`` and the lockout as it was. Returns that lockout."""
        identity = self._identity(subject)
        before = LockoutStatus.of(self.guard, identity.subject)
        self.guard.unlock(identity.subject)
        self.kyso.record(Layer.AUTHN, "USER_UNLOCKED", Outcome.SUCCESS,
                         object=self._pseudonym(identity.id_number), id_hint=identity.masked_id,
                         kind=LockKind.BRUTE_FORCE.value, subject=identity.subject,
                         lockout=before.to_event())
        return before

    def unlock_account(self, id_number: str) -> AccountUnlock:
        """Lift whatever locks the account of ``id_number`` is under: its Decree 69 lock
        (:func:`~kyso.authn.enrolment.unlock_identity`: a deceased holder's is refused, and
        then nothing changes) and its brute-force lockout (:meth:`unlock`). One
        ``USER_UNLOCKED`` per lock lifted; :class:`IdentityError` (recorded) if neither."""
        identity = self.registry.get(id_number)
        lockout = LockoutStatus.of(self.guard, identity.subject)
        if not identity.locked and not lockout.locked:
            try:
                unlock_identity(self.kyso, id_number)  # records the refusal, then raises
            except IdentityError as exc:
                raise IdentityError(f"{exc} (no Decree 69 lock, no brute-force lockout)") from None
        lifted: list[LockKind] = []
        ground = identity.lock_reason
        if identity.locked:
            identity = unlock_identity(self.kyso, id_number)
            lifted.append(LockKind.DECREE_69)
        if lockout.locked:
            lockout = self.unlock(identity.subject)
            lifted.append(LockKind.BRUTE_FORCE)
        return AccountUnlock(identity, tuple(lifted),
                             ground if LockKind.DECREE_69 in lifted else None,
                             lockout if LockKind.BRUTE_FORCE in lifted else None)

    # -- the simulated SMS network ----------------------------------------------------

    def read_sms_outbox(self, *, id_number: str | None = None, phone: str | None = None,
                        last: bool = False) -> tuple[SimulatedSms, ...]:
        """The simulated SMS messages, oldest first: all, those to the phone of the account
        of ``id_number``, or those to ``phone``; with ``last``, only the latest. A
        simulator's view (no real SMS is ever sent): each message carries its code.
        ``SMS_OUTBOX_READ`` records who read which phone's messages (never the codes)."""
        if id_number is not None and phone is not None:
            raise AuthnError("give an ID number or a phone number, not both")
        psn = ""
        if id_number is not None:
            identity = self.registry.get(id_number)
            psn = self._pseudonym(identity.id_number)
            if not identity.person.phone:
                raise AuthnError(f"the e-ID account of {identity.masked_id} has no phone number")
            phone = identity.person.phone
        elif phone is not None:
            phone = parse_phone(phone)
        if not isinstance(self.outbox, _ReadableOutbox):
            raise AuthnError("this SMS outbox cannot be read back")
        sent = self.outbox.messages(phone)
        now, validity = self.kyso.now(), self.sms.settings.validity
        latest = {m.to: m for m in sent}  # the last message to each phone
        found = tuple(SimulatedSms(
            to=m.to, text=m.text, code=sms_code_in(m.text), sent_at=m.sent_at,
            expires_at=m.sent_at + validity,
            state=("replaced" if latest[m.to] is not m
                   else "expired" if now >= m.sent_at + validity else "current"))
            for m in sent)
        if last:
            found = found[-1:]
        self.kyso.record(Layer.AUTHN, "SMS_OUTBOX_READ", Outcome.SUCCESS, object=psn,
                         phone_hint=mask_id(phone) if phone else None, count=len(found),
                         last=last, simulator=True)
        return found

    # -- internals --------------------------------------------------------------------

    def _pseudonym(self, id_text: str) -> str:
        return self.kyso.pseudonyms.pseudonym(id_text)

    def _identity(self, subject: str) -> Identity:
        if not isinstance(subject, str) or not subject or len(subject) > 40:
            raise IdentityError("no e-ID account with that subject")
        return self.registry.by_subject(subject)

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
