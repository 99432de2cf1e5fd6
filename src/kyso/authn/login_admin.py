"""The operator's side of the e-ID login: brute-force state, unlocks, the simulated SMS outbox.

:mod:`kyso.authn.login` runs the login flow; :class:`LoginAdmin` works on the same home (the
login service's brute-force guard, registry and SMS outbox) for administrators:

- :meth:`LoginAdmin.lockout_status` (and :func:`lockout_status`, which needs no login
  service: ``kyso id show``) — an account's brute-force state: locked or not, until when,
  per-factor failures; a damaged stored state shows as a permanent lock, reason
  ``damaged-state``;
- :meth:`LoginAdmin.unlock_account` — lift whatever locks an account is under: a Decree 69
  lock (:func:`~kyso.authn.enrolment.unlock_identity`) and a brute-force lockout
  (:meth:`LoginAdmin.unlock`); one ``USER_UNLOCKED`` event per lock lifted, its ``kind``
  (:class:`LockKind`) saying which. A damaged brute-force state, which would otherwise refuse
  every login for good, is replaced by a fresh one, and the event says so
  (``damaged_state``);
- :meth:`LoginAdmin.read_sms_outbox` — the simulated phones' messages, codes included
  (``SMS_OUTBOX_READ``, without the codes).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from kyso.audit import Layer, Outcome
from kyso.authn.enrolment import unlock_identity
from kyso.authn.lockout import BruteForceGuard, BruteForceSettings, Factor, LockReason
from kyso.authn.login import LoginService
from kyso.authn.otp import SmsMessage
from kyso.authn.registry import Identity, LockGround, parse_phone
from kyso.authn.stores import SqlLockoutStore, sms_code_in
from kyso.clock import vn_iso
from kyso.context import Kyso
from kyso.errors import AuthnError, IdentityError
from kyso.pki.identifiers import mask_id

__all__ = ["AccountUnlock", "LockKind", "LockoutStatus", "LoginAdmin", "SimulatedSms",
           "lockout_status"]


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
    failures: Mapping[Factor, int]  # per factor, Keycloak's counters (none if damaged)
    consecutive: int  # all factors since the last complete login (the NIST cap's counter)

    @classmethod
    def of(cls, guard: BruteForceGuard, account: str) -> LockoutStatus:
        decision = guard.check(account)
        damaged = decision.reason is LockReason.DAMAGED  # its counters cannot be read
        return cls(locked=not decision.allowed, permanent=decision.permanent,
                   locked_until=decision.locked_until, reason=decision.reason,
                   failures={} if damaged else dict(guard.failures(account)),
                   consecutive=decision.failures)

    @property
    def damaged(self) -> bool:
        """The stored state cannot be read: every login is refused until an unlock."""
        return self.reason is LockReason.DAMAGED

    @property
    def summary(self) -> str:
        if self.damaged:
            return "locked: the stored brute-force state is damaged (kyso id unlock resets it)"
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
    """What :meth:`LoginAdmin.unlock_account` lifted."""

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


class LoginAdmin:
    """Administration of the e-ID logins of a home: brute-force state, unlocks, SMS outbox.

    ``LoginAdmin(kyso)`` works through a new :class:`LoginService` on ``kyso``; pass
    ``login=`` to share one already built on the same context (its brute-force settings and
    SMS outbox)."""

    def __init__(self, kyso: Kyso, *, login: LoginService | None = None) -> None:
        if login is not None and login.kyso is not kyso:
            raise ValueError("the login service must be built on the same context")
        self.kyso = kyso
        self.login = login if login is not None else LoginService(kyso)

    # -- brute-force state and unlocks ------------------------------------------------

    def lockout_status(self, subject: str) -> LockoutStatus:
        """The account's brute-force state: locked or not, until when, per-factor failures."""
        return LockoutStatus.of(self.login.guard, self.login.account(subject).subject)

    def unlock(self, subject: str) -> LockoutStatus:
        """An administrator lifts the account's brute-force lockout (temporary, permanent,
        the NIST failure cap, or a damaged stored state, replaced by a fresh one) and clears
        its failure counters; ``USER_UNLOCKED`` with ``kind`` ``brute-force``, whether the
        state was damaged (``damaged_state``) and the lockout as it was. Returns that lockout."""
        identity = self.login.account(subject)
        before = LockoutStatus.of(self.login.guard, identity.subject)
        damaged = self.login.guard.reset(identity.subject)
        self.kyso.record(Layer.AUTHN, "USER_UNLOCKED", Outcome.SUCCESS,
                         object=self._pseudonym(identity.id_number), id_hint=identity.masked_id,
                         kind=LockKind.BRUTE_FORCE.value, subject=identity.subject,
                         damaged_state=damaged, lockout=before.to_event())
        return before

    def unlock_account(self, id_number: str) -> AccountUnlock:
        """Lift whatever locks the account of ``id_number`` is under: its Decree 69 lock
        (:func:`~kyso.authn.enrolment.unlock_identity`: a deceased holder's is refused, and
        then nothing changes) and its brute-force lockout (:meth:`unlock`). One
        ``USER_UNLOCKED`` per lock lifted; :class:`IdentityError` (recorded) if neither."""
        identity = self.login.registry.get(id_number)
        lockout = LockoutStatus.of(self.login.guard, identity.subject)
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
            identity = self.login.registry.get(id_number)
            psn = self._pseudonym(identity.id_number)
            if not identity.person.phone:
                raise AuthnError(f"the e-ID account of {identity.masked_id} has no phone number")
            phone = identity.person.phone
        elif phone is not None:
            phone = parse_phone(phone)
        outbox = self.login.outbox
        if not isinstance(outbox, _ReadableOutbox):
            raise AuthnError("this SMS outbox cannot be read back")
        sent = outbox.messages(phone)
        now, validity = self.kyso.now(), self.login.sms.settings.validity
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

    def _pseudonym(self, id_text: str) -> str:
        return self.kyso.pseudonyms.pseudonym(id_text)
