"""TOTP (window, replay, ASCII digits, provisioning URI) and SMS codes (outbox, expiry, single
use, throttling)."""

from __future__ import annotations

import base64
import datetime as dt
import threading
from collections.abc import Callable
from urllib.parse import parse_qs, unquote, urlsplit

import pyotp
import pytest

from kyso.authn.lockout import BruteForceGuard, BruteForceSettings, Factor, MemoryLockoutStore
from kyso.authn.otp import (
    MemorySmsChallengeStore,
    MemorySmsOutbox,
    MemoryTotpStepStore,
    SmsOtp,
    SmsSettings,
    TotpSettings,
    TotpVerifier,
    new_totp_secret,
)
from kyso.clock import FrozenClock
from kyso.errors import AuthenticationFailedError, AuthnError, ConfigError, ThrottledError

CITIZEN_ID = "033301000123"
PHONE = "0912345678"
CREDENTIAL = "totp-1"


@pytest.fixture
def secret() -> str:
    return new_totp_secret()


@pytest.fixture
def steps() -> MemoryTotpStepStore:
    return MemoryTotpStepStore()


@pytest.fixture
def totp(steps: MemoryTotpStepStore, clock: FrozenClock) -> TotpVerifier:
    return TotpVerifier(steps, clock)


def code_at(secret: str, clock: FrozenClock, steps_away: int = 0) -> str:
    return pyotp.TOTP(secret).at(clock.now() + dt.timedelta(seconds=30 * steps_away))


def race(n: int, attempt: Callable[[], object]) -> list[bool]:
    """Run ``attempt`` in ``n`` threads released together; which of them succeeded."""
    barrier = threading.Barrier(n)
    results: list[bool] = []
    lock = threading.Lock()

    def run() -> None:
        barrier.wait()
        try:
            attempt()
            ok = True
        except AuthenticationFailedError:
            ok = False
        with lock:
            results.append(ok)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


# -- TOTP --------------------------------------------------------------------------------


def test_new_secrets_hold_160_random_bits() -> None:
    secrets = {new_totp_secret() for _ in range(20)}
    assert len(secrets) == 20
    for s in secrets:
        assert len(s) == 32
        assert len(base64.b32decode(s)) == 20


def test_a_secret_shorter_than_160_bits_is_refused(totp: TotpVerifier) -> None:
    short = base64.b32encode(bytes(range(10))).decode()  # 80 bits
    with pytest.raises(AuthnError, match="160 bits"):
        totp.verify(CREDENTIAL, short, "123456")
    with pytest.raises(AuthnError, match="160 bits"):
        totp.provisioning_uri("not base32 at all!", CITIZEN_ID)


@pytest.mark.parametrize("drift", [-1, 0, 1])
def test_codes_one_step_either_side_are_accepted(
        drift: int, totp: TotpVerifier, secret: str, clock: FrozenClock) -> None:
    clock.advance(dt.timedelta(seconds=17))  # mid-step: the window is about steps, not seconds
    match = totp.verify(CREDENTIAL, secret, code_at(secret, clock, drift))
    assert match.drift == drift
    assert match.step == int(clock.now().timestamp()) // 30 + drift


@pytest.mark.parametrize("drift", [-2, 2])
def test_codes_two_steps_away_are_refused(
        drift: int, totp: TotpVerifier, secret: str, clock: FrozenClock) -> None:
    with pytest.raises(AuthenticationFailedError, match=r"^invalid credentials$"):
        totp.verify(CREDENTIAL, secret, code_at(secret, clock, drift))


def test_the_window_follows_step_boundaries(
        totp: TotpVerifier, secret: str, clock: FrozenClock) -> None:
    code = code_at(secret, clock)  # T0 starts a step
    clock.advance(dt.timedelta(seconds=59))  # still the next step: drift -1
    assert totp.verify(CREDENTIAL, secret, code).drift == -1
    other = new_totp_secret()
    old = code_at(other, clock, -1)
    clock.advance(dt.timedelta(seconds=1))  # now two steps after that code
    with pytest.raises(AuthenticationFailedError):
        totp.verify("totp-2", other, old)


def test_the_same_code_is_accepted_only_once(
        totp: TotpVerifier, secret: str, clock: FrozenClock) -> None:
    code = code_at(secret, clock)
    totp.verify(CREDENTIAL, secret, code)
    with pytest.raises(AuthenticationFailedError):
        totp.verify(CREDENTIAL, secret, code)
    clock.advance(dt.timedelta(seconds=30))  # the code is still inside the window, but used
    with pytest.raises(AuthenticationFailedError):
        totp.verify(CREDENTIAL, secret, code)


def test_a_code_of_an_earlier_step_is_refused_after_a_later_one(
        totp: TotpVerifier, secret: str, clock: FrozenClock) -> None:
    totp.verify(CREDENTIAL, secret, code_at(secret, clock, 1))
    with pytest.raises(AuthenticationFailedError):
        totp.verify(CREDENTIAL, secret, code_at(secret, clock, 0))


def test_steps_are_remembered_per_credential(
        totp: TotpVerifier, steps: MemoryTotpStepStore, secret: str, clock: FrozenClock) -> None:
    other = new_totp_secret()
    totp.verify(CREDENTIAL, secret, code_at(secret, clock))
    totp.verify("totp-2", other, code_at(other, clock))
    assert steps.last_step(CREDENTIAL) == steps.last_step("totp-2")


def test_concurrent_submissions_of_one_code_accept_exactly_one(
        totp: TotpVerifier, secret: str, clock: FrozenClock) -> None:
    code = code_at(secret, clock)
    results = race(16, lambda: totp.verify(CREDENTIAL, secret, code))
    assert sorted(results) == [False] * 15 + [True]


def test_the_step_store_is_a_compare_and_set() -> None:
    store = MemoryTotpStepStore()
    assert store.last_step("c") is None
    assert store.advance_step("c", 10)
    assert not store.advance_step("c", 10)
    assert not store.advance_step("c", 9)
    assert store.advance_step("c", 11)
    assert store.last_step("c") == 11


def test_pyotp_alone_would_accept_full_width_digits(secret: str, clock: FrozenClock) -> None:
    """The trap this module guards against: pyotp compares NFKC-normalised strings."""
    full_width = code_at(secret, clock).translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    assert pyotp.TOTP(secret).verify(full_width, for_time=clock.now())


@pytest.mark.parametrize(("label", "mangle"), [
    ("full-width", lambda c: c.translate(str.maketrans("0123456789", "０１２３４５６７８９"))),
    ("arabic-indic", lambda c: c.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))),
    ("space inside", lambda c: c[:3] + " " + c[3:]),
    ("leading space", lambda c: " " + c),
    ("trailing newline", lambda c: c + "\n"),
    ("five digits", lambda c: c[:5]),
    ("seven digits", lambda c: c + "0"),
    ("empty", lambda c: ""),
])
def test_only_exactly_six_ascii_digits_are_accepted(
        label: str, mangle: Callable[[str], str], totp: TotpVerifier, secret: str,
        clock: FrozenClock) -> None:
    code = code_at(secret, clock)
    with pytest.raises(AuthenticationFailedError):
        totp.verify(CREDENTIAL, secret, mangle(code))
    totp.verify(CREDENTIAL, secret, code)  # the refusal did not use up the step


def test_the_provisioning_uri_shows_a_masked_id_and_the_kyso_issuer(
        totp: TotpVerifier, secret: str) -> None:
    uri = totp.provisioning_uri(secret, CITIZEN_ID)
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    assert unquote(parts.path) == "/kyso:033******123"
    query = parse_qs(parts.query)
    assert query["issuer"] == ["kyso"]
    assert query["secret"] == [secret]
    assert CITIZEN_ID not in uri
    assert CITIZEN_ID not in unquote(uri)
    parsed = pyotp.parse_uri(uri)
    assert isinstance(parsed, pyotp.TOTP)
    assert parsed.digits == 6
    assert parsed.interval == 30


def test_totp_settings_follow_nist() -> None:
    with pytest.raises(ConfigError, match="2 minutes"):
        TotpSettings(period=dt.timedelta(minutes=3))
    with pytest.raises(ConfigError, match="digits"):
        TotpSettings(digits=4)


# -- SMS ---------------------------------------------------------------------------------


@pytest.fixture
def outbox() -> MemorySmsOutbox:
    return MemorySmsOutbox()


@pytest.fixture
def challenges() -> MemorySmsChallengeStore:
    return MemorySmsChallengeStore()


@pytest.fixture
def sms(challenges: MemorySmsChallengeStore, outbox: MemorySmsOutbox,
        clock: FrozenClock) -> SmsOtp:
    return SmsOtp(challenges, outbox, clock)


def send(sms: SmsOtp, outbox: MemorySmsOutbox) -> str:
    sms.send(CITIZEN_ID, PHONE)
    code = outbox.last_code(PHONE)
    assert code is not None
    return code


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def test_a_code_goes_to_the_outbox_and_only_its_keyed_hash_is_stored(
        sms: SmsOtp, outbox: MemorySmsOutbox, challenges: MemorySmsChallengeStore,
        clock: FrozenClock) -> None:
    sent = sms.send(CITIZEN_ID, PHONE)
    assert sent.expires_at - sent.sent_at == dt.timedelta(minutes=5)
    assert sent.next_send_at == clock.now() + dt.timedelta(seconds=60)
    [message] = outbox.messages(PHONE)
    code = outbox.last_code(PHONE)
    assert code is not None
    assert len(code) == 6
    assert code in message.text
    assert PHONE not in repr(message)
    assert code not in repr(message)
    live = challenges.live(CITIZEN_ID)
    assert live is not None
    assert len(live.digest) == 32
    assert code not in repr(live)
    assert code.encode() not in live.digest


def test_a_code_is_accepted_once(sms: SmsOtp, outbox: MemorySmsOutbox) -> None:
    code = send(sms, outbox)
    assert sms.verify(CITIZEN_ID, code).challenge_id
    with pytest.raises(AuthenticationFailedError, match=r"^invalid credentials$"):
        sms.verify(CITIZEN_ID, code)


def test_a_code_is_valid_for_five_minutes(
        sms: SmsOtp, outbox: MemorySmsOutbox, clock: FrozenClock) -> None:
    code = send(sms, outbox)
    clock.advance(dt.timedelta(minutes=5) - dt.timedelta(seconds=1))
    sms.verify(CITIZEN_ID, code)
    clock.advance(dt.timedelta(seconds=61))
    later = send(sms, outbox)
    clock.advance(dt.timedelta(minutes=5))
    with pytest.raises(AuthenticationFailedError):
        sms.verify(CITIZEN_ID, later)


def test_a_resend_within_sixty_seconds_is_refused(
        sms: SmsOtp, outbox: MemorySmsOutbox, clock: FrozenClock) -> None:
    send(sms, outbox)
    sent_at = clock.now()
    clock.advance(dt.timedelta(seconds=59))
    with pytest.raises(ThrottledError, match="too many codes") as refused:
        sms.send(CITIZEN_ID, PHONE)
    assert refused.value.retry_at == sent_at + dt.timedelta(seconds=60)
    assert len(outbox.messages(PHONE)) == 1
    clock.advance(dt.timedelta(seconds=1))
    send(sms, outbox)


def test_at_most_five_codes_an_hour(
        sms: SmsOtp, outbox: MemorySmsOutbox, clock: FrozenClock) -> None:
    start = clock.now()
    for _ in range(5):
        send(sms, outbox)
        clock.advance(dt.timedelta(minutes=2))
    with pytest.raises(ThrottledError, match="too many codes") as refused:
        sms.send(CITIZEN_ID, PHONE)
    assert sms.next_send_at(CITIZEN_ID) == start + dt.timedelta(hours=1)
    assert refused.value.retry_at == start + dt.timedelta(hours=1)
    clock.set(start + dt.timedelta(hours=1) - dt.timedelta(seconds=1))
    with pytest.raises(AuthnError):
        sms.send(CITIZEN_ID, PHONE)
    clock.set(start + dt.timedelta(hours=1))
    send(sms, outbox)
    assert len(outbox.messages(PHONE)) == 6


def test_a_resend_invalidates_the_previous_code(
        sms: SmsOtp, outbox: MemorySmsOutbox, clock: FrozenClock) -> None:
    first = send(sms, outbox)
    clock.advance(dt.timedelta(seconds=60))
    second = send(sms, outbox)
    if first != second:  # one chance in a million that they are equal
        with pytest.raises(AuthenticationFailedError):
            sms.verify(CITIZEN_ID, first)
    sms.verify(CITIZEN_ID, second)


def test_a_resend_does_not_reset_the_failure_counter(
        sms: SmsOtp, outbox: MemorySmsOutbox, clock: FrozenClock) -> None:
    guard = BruteForceGuard(BruteForceSettings(max_login_failures=3), MemoryLockoutStore(), clock)

    def attempt(code: str) -> None:
        guard.ensure_allowed(CITIZEN_ID)
        try:
            sms.verify(CITIZEN_ID, code)
        except AuthenticationFailedError:
            guard.record_failure(CITIZEN_ID, Factor.SMS)
            raise
        guard.record_success(CITIZEN_ID)

    code = send(sms, outbox)
    for _ in range(2):
        clock.advance(dt.timedelta(seconds=5))
        with pytest.raises(AuthenticationFailedError):
            attempt(wrong(code))
    clock.advance(dt.timedelta(seconds=60))
    code = send(sms, outbox)  # a fresh code, but the two failures still count
    assert guard.failures(CITIZEN_ID)[Factor.SMS] == 2
    clock.advance(dt.timedelta(seconds=5))
    with pytest.raises(AuthenticationFailedError):
        attempt(wrong(code))
    assert not guard.check(CITIZEN_ID).allowed  # third failure: locked
    with pytest.raises(AuthenticationFailedError, match=r"^invalid credentials$"):
        attempt(code)


def test_three_wrong_guesses_burn_the_code(sms: SmsOtp, outbox: MemorySmsOutbox) -> None:
    code = send(sms, outbox)
    for _ in range(3):
        with pytest.raises(AuthenticationFailedError):
            sms.verify(CITIZEN_ID, wrong(code))
    with pytest.raises(AuthenticationFailedError):
        sms.verify(CITIZEN_ID, code)


@pytest.mark.parametrize("mangle", [
    lambda c: c.translate(str.maketrans("0123456789", "０１２３４５６７８９")),
    lambda c: c[:3] + " " + c[3:],
    lambda c: c[:5],
])
def test_sms_codes_must_be_six_ascii_digits(
        mangle: Callable[[str], str], sms: SmsOtp, outbox: MemorySmsOutbox) -> None:
    code = send(sms, outbox)
    with pytest.raises(AuthenticationFailedError):
        sms.verify(CITIZEN_ID, mangle(code))
    sms.verify(CITIZEN_ID, code)


def test_without_a_code_sent_verification_fails_uniformly(sms: SmsOtp) -> None:
    with pytest.raises(AuthenticationFailedError, match=r"^invalid credentials$"):
        sms.verify(CITIZEN_ID, "123456")


def test_concurrent_submissions_of_one_sms_code_accept_exactly_one(
        sms: SmsOtp, outbox: MemorySmsOutbox) -> None:
    code = send(sms, outbox)
    results = race(16, lambda: sms.verify(CITIZEN_ID, code))
    assert sorted(results) == [False] * 15 + [True]


def test_sms_settings_follow_nist() -> None:
    with pytest.raises(ConfigError, match="10 minutes"):
        SmsSettings(validity=dt.timedelta(minutes=11))
    SmsSettings(validity=dt.timedelta(minutes=10))
