"""One-time codes: TOTP (authenticator app) and SMS codes through a simulated outbox.

TOTP (RFC 6238 with pyotp, Keycloak's defaults): 6 digits, 30-second steps, one step of drift
either way, HMAC-SHA1 (what authenticator apps expect), secrets of 160 bits. A code is accepted
at most once: the matching time step is stored with a compare-and-set, so a code — or any
code of an earlier step — can never be used again, even by two requests racing each other
(NIST SP 800-63B-4 AAL2).

SMS (VNeID's activation and web login): 6 random digits, valid 5 minutes, single use, at most
3 wrong guesses per code, resent no sooner than 60 s after the previous code and at most 5
times an hour. Only a keyed hash of the code is stored and it is compared in constant time. A
resend invalidates the previous code; it does not touch the account's failure counters, which
live in :mod:`kyso.authn.lockout` and are reset only by a successful login.

Codes must be exactly ASCII digits: pyotp compares NFKC-normalised strings, so without this
check ``１２３４５６`` (full-width) would pass as ``123456``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
import secrets
import threading
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import pyotp
from pyotp.exceptions import OTPVerificationError

from kyso.authn.lockout import INVALID_CREDENTIALS
from kyso.clock import Clock, vn_iso
from kyso.errors import AuthenticationFailedError, AuthnError, ConfigError, ThrottledError
from kyso.pki.identifiers import mask_id

ISSUER = "kyso"
SECRET_BYTES = 20  # 160 bits, RFC 4226's recommendation and NIST's minimum
NIST_MAX_TOTP_PERIOD = dt.timedelta(minutes=2)
NIST_MAX_SMS_VALIDITY = dt.timedelta(minutes=10)


def ascii_code(code: object, digits: int) -> str | None:
    """``code`` if it is exactly ``digits`` ASCII digits, else None (no trimming)."""
    if isinstance(code, str) and len(code) == digits and re.fullmatch(r"[0-9]+", code, re.ASCII):
        return code
    return None


# -- TOTP -------------------------------------------------------------------------------


def new_totp_secret() -> str:
    """A fresh base32 secret of 160 random bits (32 characters, no padding)."""
    return base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def _secret_bits(secret: str) -> int:
    try:
        raw = base64.b32decode(secret.upper() + "=" * (-len(secret) % 8))
    except (ValueError, TypeError):
        return 0
    return len(raw) * 8


@dataclass(frozen=True)
class TotpSettings:
    digits: int = 6
    period: dt.timedelta = dt.timedelta(seconds=30)
    window: int = 1  # steps accepted before and after the current one

    def __post_init__(self) -> None:
        seconds = self.period.total_seconds()
        if self.digits < 6 or self.digits > 10:
            raise ConfigError("TOTP codes need between 6 and 10 digits")
        if seconds < 1 or seconds != int(seconds) or self.period > NIST_MAX_TOTP_PERIOD:
            raise ConfigError("the TOTP period must be whole seconds, at most 2 minutes")
        if not 0 <= self.window <= 2:
            raise ConfigError("the TOTP window must be 0, 1 or 2 steps")


class TotpStepStore(Protocol):
    """The last accepted time step of each TOTP credential."""

    def last_step(self, credential_id: str) -> int | None:
        ...

    def advance_step(self, credential_id: str, step: int) -> bool:
        """Compare-and-set: store ``step`` and return True only if it is greater than the
        stored step (or none is stored). Atomic: of concurrent calls with the same step,
        exactly one returns True. A database store does ``UPDATE … SET step = ? WHERE id = ?
        AND step < ?`` (or an ``INSERT`` that may conflict) and checks the row count."""
        ...


class MemoryTotpStepStore:
    """A thread-safe in-memory :class:`TotpStepStore`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._steps: dict[str, int] = {}

    def last_step(self, credential_id: str) -> int | None:
        with self._lock:
            return self._steps.get(credential_id)

    def advance_step(self, credential_id: str, step: int) -> bool:
        with self._lock:
            if step <= self._steps.get(credential_id, -1):
                return False
            self._steps[credential_id] = step
            return True


@dataclass(frozen=True)
class TotpMatch:
    step: int  # the accepted time step (stored; earlier and equal steps are now refused)
    drift: int  # steps between the code and the verifier's clock: -1, 0 or +1

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "drift": self.drift}


class TotpVerifier:
    """Replay-safe TOTP verification and enrolment URIs."""

    def __init__(self, store: TotpStepStore, clock: Clock,
                 settings: TotpSettings | None = None) -> None:
        self.settings = settings or TotpSettings()
        self._store = store
        self._clock = clock

    def _totp(self, secret: str) -> pyotp.TOTP:
        if _secret_bits(secret) < SECRET_BYTES * 8:
            raise AuthnError("the TOTP secret is shorter than 160 bits or not base32")
        return pyotp.TOTP(secret, digits=self.settings.digits,
                          interval=int(self.settings.period.total_seconds()))

    def provisioning_uri(self, secret: str, account_id: str) -> str:
        """The ``otpauth://`` URI for the QR code. The label shows the masked ID number
        (``kyso:019******345``): the raw number never leaves the server."""
        return self._totp(secret).provisioning_uri(name=mask_id(account_id), issuer_name=ISSUER)

    def verify(self, credential_id: str, secret: str, code: str) -> TotpMatch:
        """Accept ``code`` once, or raise :class:`AuthenticationFailedError` (malformed,
        wrong, outside the window, or already used)."""
        totp = self._totp(secret)
        now = self._clock.now()
        checked = ascii_code(code, self.settings.digits)
        if checked is None:
            raise AuthenticationFailedError(INVALID_CREDENTIALS)
        try:
            step = totp.verify_and_get_timecode(checked, for_time=now,
                                                valid_window=self.settings.window)
        except OTPVerificationError:
            raise AuthenticationFailedError(INVALID_CREDENTIALS) from None
        if not self._store.advance_step(credential_id, step):
            raise AuthenticationFailedError(INVALID_CREDENTIALS)  # replayed
        return TotpMatch(step=step, drift=step - totp.timecode(now))


# -- SMS --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmsMessage:
    """One simulated SMS."""

    to: str
    text: str = field(repr=False)
    sent_at: dt.datetime

    def __repr__(self) -> str:
        return f"SmsMessage(to={mask_id(self.to)}, sent_at={vn_iso(self.sent_at)})"


class SmsOutbox(Protocol):
    def deliver(self, message: SmsMessage) -> None:
        ...


class MemorySmsOutbox:
    """Where simulated SMS land; tests and the demo read the codes from here."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[SmsMessage] = []

    def deliver(self, message: SmsMessage) -> None:
        with self._lock:
            self._messages.append(message)

    def messages(self, to: str | None = None) -> tuple[SmsMessage, ...]:
        with self._lock:
            return tuple(m for m in self._messages if to is None or m.to == to)

    def last_code(self, to: str) -> str | None:
        """The code in the latest message to ``to``, as the citizen would read it."""
        sent = self.messages(to)
        found = re.search(r"(?<![0-9])[0-9]{6}(?![0-9])", sent[-1].text) if sent else None
        return found.group(0) if found else None


@dataclass(frozen=True)
class SmsSettings:
    digits: int = 6
    validity: dt.timedelta = dt.timedelta(minutes=5)
    resend_interval: dt.timedelta = dt.timedelta(seconds=60)
    max_sends: int = 5  # per send_window
    send_window: dt.timedelta = dt.timedelta(hours=1)
    max_guesses: int = 3  # wrong codes before the current code is discarded

    def __post_init__(self) -> None:
        if self.digits < 6:
            raise ConfigError("SMS codes need at least 6 digits")
        if not dt.timedelta(0) < self.validity <= NIST_MAX_SMS_VALIDITY:
            raise ConfigError("SMS codes must expire within 10 minutes (NIST SP 800-63B-4)")
        if self.max_sends < 1 or self.max_guesses < 1:
            raise ConfigError("SMS send and guess limits must be at least 1")


@dataclass(frozen=True)
class SmsChallenge:
    """A code that was sent. Only its keyed hash is kept."""

    challenge_id: str
    account: str
    digest: bytes = field(repr=False)
    issued_at: dt.datetime
    expires_at: dt.datetime
    misses: int = 0


class SmsChallengeStore(Protocol):
    """The live SMS code of each account and its recent sends.

    Atomicity contract: :meth:`issue`, :meth:`consume` and :meth:`record_miss` are each one
    transaction; :meth:`consume` is a compare-and-delete, so a code is accepted at most once
    even when two requests race.
    """

    def issue(self, challenge: SmsChallenge, *, previous_by: dt.datetime,
              window_start: dt.datetime, max_sends: int) -> bool:
        """If the account's last send was at or before ``previous_by`` and it had fewer than
        ``max_sends`` sends after ``window_start``: record a send at
        ``challenge.issued_at``, make ``challenge`` the account's only live code (any previous
        one is gone) and return True. Otherwise change nothing and return False."""
        ...

    def sends(self, account: str, since: dt.datetime) -> tuple[dt.datetime, ...]:
        """The account's send times after ``since``, oldest first."""
        ...

    def live(self, account: str) -> SmsChallenge | None:
        ...

    def consume(self, account: str, challenge_id: str) -> bool:
        """Remove that challenge and return True only if it is still the live one."""
        ...

    def record_miss(self, account: str, challenge_id: str, max_misses: int) -> int:
        """Count a wrong guess on that challenge if it is still live, removing it when it
        reaches ``max_misses``; the misses so far (0 if it was not live)."""
        ...


class MemorySmsChallengeStore:
    """A thread-safe in-memory :class:`SmsChallengeStore`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: dict[str, SmsChallenge] = {}
        self._sends: dict[str, list[dt.datetime]] = {}

    def issue(self, challenge: SmsChallenge, *, previous_by: dt.datetime,
              window_start: dt.datetime, max_sends: int) -> bool:
        with self._lock:
            sends = [t for t in self._sends.get(challenge.account, []) if t > window_start]
            if (sends and sends[-1] > previous_by) or len(sends) >= max_sends:
                return False
            self._sends[challenge.account] = [*sends, challenge.issued_at]
            self._live[challenge.account] = challenge
            return True

    def sends(self, account: str, since: dt.datetime) -> tuple[dt.datetime, ...]:
        with self._lock:
            return tuple(t for t in self._sends.get(account, []) if t > since)

    def live(self, account: str) -> SmsChallenge | None:
        with self._lock:
            return self._live.get(account)

    def consume(self, account: str, challenge_id: str) -> bool:
        with self._lock:
            current = self._live.get(account)
            if current is None or current.challenge_id != challenge_id:
                return False
            del self._live[account]
            return True

    def record_miss(self, account: str, challenge_id: str, max_misses: int) -> int:
        with self._lock:
            current = self._live.get(account)
            if current is None or current.challenge_id != challenge_id:
                return 0
            misses = current.misses + 1
            if misses >= max_misses:
                del self._live[account]
            else:
                self._live[account] = replace(current, misses=misses)
            return misses


@dataclass(frozen=True)
class SmsSent:
    challenge_id: str
    sent_at: dt.datetime
    expires_at: dt.datetime
    next_send_at: dt.datetime  # the earliest time a new code may be asked for

    def to_dict(self) -> dict[str, Any]:
        return {"challenge_id": self.challenge_id, "sent_at": vn_iso(self.sent_at),
                "expires_at": vn_iso(self.expires_at), "next_send_at": vn_iso(self.next_send_at)}


@dataclass(frozen=True)
class SmsMatch:
    challenge_id: str

    def to_dict(self) -> dict[str, Any]:
        return {"challenge_id": self.challenge_id}


# Without diacritics, as Vietnamese service SMS usually are (GSM-7 fits 160 characters).
SMS_TEXT = ("Ma xac thuc kyso cua ban la {code}, hieu luc {minutes} phut. "
            "Khong cung cap ma nay cho bat ky ai.")


class SmsOtp:
    """SMS one-time codes: send (throttled) and verify (single use, constant time)."""

    def __init__(self, store: SmsChallengeStore, outbox: SmsOutbox, clock: Clock,
                 settings: SmsSettings | None = None, *, key: bytes | None = None) -> None:
        self.settings = settings or SmsSettings()
        self._store = store
        self._outbox = outbox
        self._clock = clock
        # Keys the stored code hashes: a leaked store does not give the codes away by trying
        # all 10^6 of them. Several processes sharing a store must share the key.
        self._key = key if key is not None else secrets.token_bytes(32)

    def _digest(self, challenge_id: str, account: str, code: str) -> bytes:
        message = f"{challenge_id}\x00{account}\x00{code}".encode()
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def next_send_at(self, account: str) -> dt.datetime:
        """The earliest time a code may be sent to the account."""
        s, now = self.settings, self._clock.now()
        sends = self._store.sends(account, now - s.send_window)
        earliest = now
        if sends:
            earliest = max(earliest, sends[-1] + s.resend_interval)
        if len(sends) >= s.max_sends:
            earliest = max(earliest, sends[len(sends) - s.max_sends] + s.send_window)
        return earliest

    def send(self, account: str, phone: str) -> SmsSent:
        """Send a new code, replacing the previous one; :class:`ThrottledError` when throttled."""
        s, now = self.settings, self._clock.now()
        code = f"{secrets.randbelow(10 ** s.digits):0{s.digits}d}"
        challenge_id = secrets.token_hex(16)
        challenge = SmsChallenge(challenge_id, account, self._digest(challenge_id, account, code),
                                 issued_at=now, expires_at=now + s.validity)
        if not self._store.issue(challenge, previous_by=now - s.resend_interval,
                                 window_start=now - s.send_window,
                                 max_sends=s.max_sends):
            retry_at = self.next_send_at(account)
            raise ThrottledError(f"too many codes requested: try again after {vn_iso(retry_at)}",
                                 retry_at)
        minutes = int(s.validity.total_seconds() // 60)
        self._outbox.deliver(SmsMessage(phone, SMS_TEXT.format(code=code, minutes=minutes), now))
        return SmsSent(challenge_id, now, challenge.expires_at,
                       now + s.resend_interval)

    def verify(self, account: str, code: str) -> SmsMatch:
        """Accept the account's live code once, or raise :class:`AuthenticationFailedError`
        (malformed, wrong, expired, replaced by a resend, or already used)."""
        now = self._clock.now()
        checked = ascii_code(code, self.settings.digits)
        live = self._store.live(account)
        challenge_id = live.challenge_id if live is not None else "none"
        expected = live.digest if live is not None else bytes(32)
        given = self._digest(challenge_id, account, checked or "")
        matched = hmac.compare_digest(given, expected)
        if live is None or checked is None or now >= live.expires_at:
            raise AuthenticationFailedError(INVALID_CREDENTIALS)
        if not matched:
            self._store.record_miss(account, live.challenge_id, self.settings.max_guesses)
            raise AuthenticationFailedError(INVALID_CREDENTIALS)
        if not self._store.consume(account, live.challenge_id):
            raise AuthenticationFailedError(INVALID_CREDENTIALS)  # used by a racing request
        return SmsMatch(live.challenge_id)
