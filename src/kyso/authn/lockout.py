"""Brute-force protection with Keycloak's settings and NIST SP 800-63B-4's failure cap.

:class:`BruteForceGuard` is pure logic over an injected store and clock. Before an attempt the
login flow calls :meth:`~BruteForceGuard.check`; after a factor fails,
:meth:`~BruteForceGuard.record_failure`; after a complete login,
:meth:`~BruteForceGuard.record_success`. It follows Keycloak's ``DefaultBruteForceProtector``
(Keycloak 24+ with the multiple/linear wait strategies and "lockout permanently after temporary
lockout"), with three differences:

- failures are counted **per factor** (password, TOTP, SMS): the Keycloak thresholds apply to
  each factor's counter, so a guessed password is not blamed on a mistyped OTP and vice versa;
  the failure-reset time and the temporary-lockout count are per account, as in Keycloak;
- the account's **consecutive** failures over all factors are capped (NIST: at most 100). The
  cap counter is reset only by a successful login or an administrator, never by time, so the
  12-hour failure reset cannot be used to guess forever. Reaching it locks the account
  permanently;
- a lockout ends the login session in progress (``Decision.end_session``), so a password that
  was accepted before the lock cannot be completed with an OTP afterwards.

A stored state that cannot be read (:class:`DamagedLockoutStateError` from the store) fails
closed: :meth:`~BruteForceGuard.check` treats it as a permanent lock (:attr:`LockReason.DAMAGED`)
instead of starting again from zero failures, and only an administrator's
:meth:`~BruteForceGuard.unlock` (:meth:`~BruteForceGuard.reset`) replaces it with a fresh state.

Every refusal says only :data:`INVALID_CREDENTIALS` (Keycloak shows the generic message to a
locked user too); the reason goes to the audit log through :meth:`Decision.to_dict`.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from kyso.clock import Clock, vn_iso
from kyso.errors import AccountLockedError, AuthnError, ConfigError

if TYPE_CHECKING:
    from kyso.config import AuthnSettings

# The one message a user sees when any factor fails or the account is locked.
INVALID_CREDENTIALS = "invalid credentials"
NIST_MAX_CONSECUTIVE_FAILURES = 100  # SP 800-63B-4 §3.2.2
_CAS_RETRIES = 1000


class Factor(StrEnum):
    PASSWORD = "password"  # noqa: S105 - a factor's name
    TOTP = "totp"
    SMS = "sms"


class LockoutMode(StrEnum):
    """Keycloak's three brute-force modes."""

    TEMPORARY = "temporary"  # permanentLockout=false
    PERMANENT = "permanent"  # permanentLockout=true, maxTemporaryLockouts=0
    MIXED = "mixed"  # permanentLockout=true, maxTemporaryLockouts>0


class WaitStrategy(StrEnum):
    """How the wait grows once the failure threshold is reached (Keycloak's bruteForceStrategy)."""

    MULTIPLE = "multiple"  # increment × (failures ÷ threshold): locks again every threshold failures
    LINEAR = "linear"  # increment × (1 + failures − threshold): each failure past it adds one step


class LockReason(StrEnum):
    NONE = "none"
    QUICK_LOGIN = "quick-login"  # two failures closer than quick_login_check
    TEMPORARY = "temporary-lockout"
    PERMANENT = "permanent-lockout"
    FAILURE_CAP = "failure-cap"  # NIST's consecutive-failure cap
    DAMAGED = "damaged-state"  # the stored state cannot be read: locked until an admin resets it


class DamagedLockoutStateError(AuthnError):
    """An account's stored brute-force state cannot be read. ``version`` is the stored version,
    the compare-and-set key under which :meth:`BruteForceGuard.reset` replaces the state; None
    when it cannot be read either (then the state cannot be replaced through the store)."""

    def __init__(self, message: str, *, version: int | None = None) -> None:
        super().__init__(message)
        self.version = version


@dataclass(frozen=True)
class BruteForceSettings:
    """Keycloak's brute-force detection settings; the defaults are Keycloak's."""

    mode: LockoutMode = LockoutMode.TEMPORARY
    max_login_failures: int = 30  # failureFactor, per factor
    wait_increment: dt.timedelta = dt.timedelta(minutes=1)
    max_wait: dt.timedelta = dt.timedelta(minutes=15)
    failure_reset: dt.timedelta = dt.timedelta(hours=12)  # maxDeltaTimeSeconds
    max_temporary_lockouts: int = 1  # mixed mode: permanent after more temporary ones than this
    quick_login_check: dt.timedelta = dt.timedelta(milliseconds=1000)  # 0 disables
    minimum_quick_login_wait: dt.timedelta = dt.timedelta(minutes=1)
    strategy: WaitStrategy = WaitStrategy.MULTIPLE
    max_consecutive_failures: int = NIST_MAX_CONSECUTIVE_FAILURES
    reveal_lockout: bool = False  # Keycloak: the user sees the generic message

    def __post_init__(self) -> None:
        if self.max_login_failures < 1:
            raise ConfigError("max login failures must be at least 1")
        if not 1 <= self.max_consecutive_failures <= NIST_MAX_CONSECUTIVE_FAILURES:
            raise ConfigError("max consecutive failures must be between 1 and "
                              f"{NIST_MAX_CONSECUTIVE_FAILURES} (NIST SP 800-63B-4)")
        if self.mode is LockoutMode.MIXED and self.max_temporary_lockouts < 1:
            raise ConfigError("mixed lockout needs at least 1 temporary lockout before the "
                              "permanent one")
        for name in ("wait_increment", "max_wait", "failure_reset", "quick_login_check",
                     "minimum_quick_login_wait"):
            if getattr(self, name) < dt.timedelta(0):
                raise ConfigError(f"{name.replace('_', ' ')} must not be negative")

    @classmethod
    def from_authn(cls, authn: AuthnSettings, **overrides: Any) -> BruteForceSettings:
        """The settings of a home's ``[authn]`` section (mode, threshold, waits, reset)."""
        values: dict[str, Any] = {
            "mode": LockoutMode(authn.lockout),
            "max_login_failures": authn.max_login_failures,
            "wait_increment": dt.timedelta(seconds=authn.wait_increment_seconds),
            "max_wait": dt.timedelta(seconds=authn.max_wait_seconds),
            "failure_reset": dt.timedelta(seconds=authn.failure_reset_seconds),
            "max_temporary_lockouts": authn.max_temporary_lockouts,
        }
        values.update(overrides)
        return cls(**values)


@dataclass(frozen=True)
class LockoutState:
    """What the store keeps per account. ``version`` grows by one with every write."""

    version: int = 0
    failures: Mapping[Factor, int] = field(default_factory=dict)  # per factor, Keycloak rules
    consecutive: int = 0  # all factors since the last success (NIST cap); time never resets it
    last_failure: dt.datetime | None = None
    not_before: dt.datetime | None = None
    reason: LockReason = LockReason.NONE
    temporary_lockouts: int = 0
    permanent: bool = False


class LockoutStore(Protocol):
    """Per-account brute-force state.

    Atomicity contract: :meth:`compare_and_set` is the only write and is a compare-and-set on
    ``version``, so two concurrent failures are never counted as one (the loser reloads and
    recomputes). A database store does ``UPDATE … SET … WHERE account = ? AND version = ?`` (or
    an ``INSERT`` for version 0) and reports whether a row changed.
    """

    def load(self, account: str) -> LockoutState:
        """The account's state; a fresh ``LockoutState()`` (version 0) if none is stored;
        :class:`DamagedLockoutStateError` (with the stored version) if it cannot be read."""
        ...

    def compare_and_set(self, account: str, expected_version: int, state: LockoutState) -> bool:
        """Store ``state`` only if the stored version is still ``expected_version`` (0: none
        stored); ``state.version`` is ``expected_version + 1``. True if it was stored."""
        ...


class MemoryLockoutStore:
    """A thread-safe in-memory :class:`LockoutStore` (one process; tests and the demo)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, LockoutState] = {}

    def load(self, account: str) -> LockoutState:
        with self._lock:
            return self._states.get(account, LockoutState())

    def compare_and_set(self, account: str, expected_version: int, state: LockoutState) -> bool:
        if state.version != expected_version + 1:
            raise ValueError("the new state's version must be the expected version + 1")
        with self._lock:
            if self._states.get(account, LockoutState()).version != expected_version:
                return False
            self._states[account] = state
            return True


@dataclass(frozen=True)
class Decision:
    """Whether an attempt may go ahead, and why not, for the audit log."""

    allowed: bool
    locked_until: dt.datetime | None  # a temporary lock's end; None if not or permanently locked
    permanent: bool
    reason: LockReason
    end_session: bool  # the login session in progress must be discarded
    failures: int  # consecutive failures of the account, all factors

    @property
    def message(self) -> str:
        """What the user is told: always the generic message (the reason is for auditors)."""
        return INVALID_CREDENTIALS

    def to_dict(self) -> dict[str, Any]:
        return {"allowed": self.allowed,
                "locked_until": vn_iso(self.locked_until) if self.locked_until else None,
                "permanent": self.permanent, "reason": self.reason.value,
                "end_session": self.end_session, "failures": self.failures}


class BruteForceGuard:
    """Keycloak-style brute-force detection with per-factor counters and the NIST cap."""

    def __init__(self, settings: BruteForceSettings, store: LockoutStore, clock: Clock) -> None:
        self.settings = settings
        self._store = store
        self._clock = clock

    def check(self, account: str) -> Decision:
        """Before an attempt: may this account try to log in now? Not if its stored state is
        damaged: that is a permanent lock (:attr:`LockReason.DAMAGED`) until :meth:`unlock`."""
        try:
            state = self._store.load(account)
        except DamagedLockoutStateError:
            return Decision(allowed=False, locked_until=None, permanent=True,
                            reason=LockReason.DAMAGED, end_session=True, failures=0)
        return self._decide(state, self._clock.now())

    def ensure_allowed(self, account: str) -> Decision:
        """Like :meth:`check`, but a locked account raises :class:`AccountLockedError` with the
        generic message (or a revealing one if the settings ask for it)."""
        decision = self.check(account)
        if not decision.allowed:
            raise AccountLockedError(self._refusal(decision))
        return decision

    def failures(self, account: str) -> Mapping[Factor, int]:
        """The account's current failure count per factor (for tests, admins and the audit);
        :class:`DamagedLockoutStateError` if its stored state is damaged."""
        state = self._store.load(account)
        return {factor: state.failures.get(factor, 0) for factor in Factor}

    def record_failure(self, account: str, factor: Factor) -> Decision:
        """After a factor failed: count it and lock the account if a limit is reached
        (:class:`DamagedLockoutStateError` on a damaged state: never counted from zero)."""
        now = self._clock.now()
        state = self._update(account, lambda s: self._fail(s, factor, now))
        return self._decide(state, now)

    def record_success(self, account: str) -> Decision:
        """After a complete login: forget the account's failures (a permanent lock stays)."""
        now = self._clock.now()
        state = self._update(account, lambda s: LockoutState(
            version=s.version + 1, permanent=s.permanent,
            reason=s.reason if s.permanent else LockReason.NONE))
        return self._decide(state, now)

    def unlock(self, account: str) -> Decision:
        """An administrator lifts every lock and clears every counter of the account, a
        damaged stored state included (:meth:`reset`)."""
        self.reset(account)
        return self._decide(LockoutState(), self._clock.now())

    def reset(self, account: str) -> bool:
        """Replace the account's stored state with a fresh one (no lock, no failures), even
        a damaged one, which nothing else can clear; True if the state replaced was damaged.
        :class:`DamagedLockoutStateError` if even its version cannot be read."""
        for _ in range(_CAS_RETRIES):
            try:
                version, damaged = self._store.load(account).version, False
            except DamagedLockoutStateError as exc:
                if exc.version is None:
                    raise DamagedLockoutStateError(
                        f"{exc}, its version too: it cannot be reset through the store") from None
                version, damaged = exc.version, True
            if self._store.compare_and_set(account, version, LockoutState(version=version + 1)):
                return damaged
        raise AuthnError("the lockout store is too busy: try again")

    # -- internals -----------------------------------------------------------------------

    def _update(self, account: str,
                change: Callable[[LockoutState], LockoutState]) -> LockoutState:
        for _ in range(_CAS_RETRIES):
            current = self._store.load(account)
            new = change(current)
            if self._store.compare_and_set(account, current.version, new):
                return new
        raise AuthnError("the lockout store is too busy: try again")

    def _fail(self, state: LockoutState, factor: Factor, now: dt.datetime) -> LockoutState:
        s = self.settings
        failures = dict(state.failures)
        temporary_lockouts = state.temporary_lockouts
        delta = now - state.last_failure if state.last_failure is not None else None
        if s.mode is not LockoutMode.PERMANENT and delta is not None and delta > s.failure_reset:
            # Keycloak clears all failures (and the temporary-lockout count) after the reset
            # time; the NIST consecutive counter is deliberately kept.
            failures = {}
            temporary_lockouts = 0
        count = failures.get(factor, 0) + 1
        failures[factor] = count
        consecutive = state.consecutive + 1

        wait = dt.timedelta(0)
        if s.mode is not LockoutMode.PERMANENT:
            steps = (count // s.max_login_failures if s.strategy is WaitStrategy.MULTIPLE
                     else 1 + count - s.max_login_failures)
            wait = s.wait_increment * max(steps, 0)
        quick = False
        if wait <= dt.timedelta(0) and delta is not None and delta < s.quick_login_check:
            wait = s.minimum_quick_login_wait
            quick = True

        not_before = state.not_before
        reason = state.reason if state.permanent else LockReason.NONE
        if wait > dt.timedelta(0):
            if s.mode is not LockoutMode.PERMANENT:
                wait = min(wait, s.max_wait)
            if not quick:
                temporary_lockouts += 1
            if (quick or s.mode is LockoutMode.TEMPORARY
                    or temporary_lockouts <= s.max_temporary_lockouts):
                not_before = now + wait
                reason = LockReason.QUICK_LOGIN if quick else LockReason.TEMPORARY

        permanent = state.permanent
        if not permanent and (
                (s.mode is LockoutMode.MIXED and temporary_lockouts > s.max_temporary_lockouts)
                or (s.mode is LockoutMode.PERMANENT and count >= s.max_login_failures)):
            permanent, reason = True, LockReason.PERMANENT
        if not permanent and consecutive >= s.max_consecutive_failures:
            permanent, reason = True, LockReason.FAILURE_CAP
        return LockoutState(version=state.version + 1, failures=failures,
                            consecutive=consecutive, last_failure=now, not_before=not_before,
                            reason=reason, temporary_lockouts=temporary_lockouts,
                            permanent=permanent)

    def _decide(self, state: LockoutState, now: dt.datetime) -> Decision:
        if state.permanent:
            return Decision(allowed=False, locked_until=None, permanent=True,
                            reason=state.reason, end_session=True, failures=state.consecutive)
        if state.not_before is not None and now < state.not_before:
            return Decision(allowed=False, locked_until=state.not_before, permanent=False,
                            reason=state.reason, end_session=True, failures=state.consecutive)
        return Decision(allowed=True, locked_until=None, permanent=False,
                        reason=LockReason.NONE, end_session=False, failures=state.consecutive)

    def _refusal(self, decision: Decision) -> str:
        if not self.settings.reveal_lockout:
            return INVALID_CREDENTIALS
        if decision.permanent:
            return "account locked: contact an administrator"
        assert decision.locked_until is not None
        return f"account locked until {vn_iso(decision.locked_until)}"

