"""The login service: password then TOTP or SMS, uniform refusals, per-factor brute-force
counters, replay safety (also under racing threads), Decree 69 locks, a damaged brute-force
state failing closed, audit without secrets. (Unlocks and the SMS outbox:
test_login_admin.py.)"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pyotp
import pytest
from login_support import (
    ID_NUMBER,
    NEXT_TRY,
    PASSWORD,
    PHONE,
    UNKNOWN_ID,
    appears,
    damage_lockout,
    events,
    register,
    sms_code,
    stored_lockout,
)

from conftest import audit_text
from kyso.authn.lockout import Factor
from kyso.authn.login import LoginResult, LoginService, PasswordAccepted, SecondFactor
from kyso.authn.passwords import HashParams, PasswordHasher
from kyso.authn.registry import Identity, Level, LockGround, Person, Registry
from kyso.clock import FrozenClock
from kyso.context import Kyso
from kyso.errors import (
    AccountLockedError,
    AuthenticationFailedError,
    AuthnError,
    PasswordPolicyError,
)


@pytest.fixture
def service(kyso: Kyso) -> LoginService:
    return LoginService(kyso)


@pytest.fixture
def identity(kyso: Kyso, service: LoginService) -> Identity:
    return register(kyso, service)


@pytest.fixture
def totp_secret(service: LoginService, identity: Identity, clock: FrozenClock) -> str:
    """An active TOTP credential; the clock is moved past the confirming code's step."""
    enrolment = service.credentials.begin_totp(identity.subject)
    service.credentials.confirm_totp(identity.subject, enrolment.credential_id,
                                     pyotp.TOTP(enrolment.secret).at(clock.now()), service.totp)
    clock.advance(dt.timedelta(seconds=30))
    return enrolment.secret


def totp_now(secret: str, clock: FrozenClock) -> str:
    return pyotp.TOTP(secret).at(clock.now())


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


def uniform(exc: pytest.ExceptionInfo[AuthenticationFailedError]) -> None:
    assert str(exc.value) == "invalid credentials"


# -- success ------------------------------------------------------------------------------


def test_password_and_totp_log_in_at_the_accounts_level(
        kyso: Kyso, service: LoginService, identity: Identity, totp_secret: str,
        clock: FrozenClock) -> None:
    accepted = service.check_password(ID_NUMBER, PASSWORD, client_id="dvc-portal")
    assert accepted == PasswordAccepted(identity.subject, Level.ONE,
                                        (SecondFactor.TOTP, SecondFactor.SMS))
    result = service.check_otp(identity.subject, totp_now(totp_secret, clock), SecondFactor.TOTP,
                               client_id="dvc-portal", source="203.0.113.9", request_id="r-1")
    assert result == LoginResult(identity.subject, Level.ONE, ("pwd", "otp", "mfa"), clock.now())
    [login] = events(kyso, "LOGIN")
    assert login["outcome"] == "success"
    assert login["actor"] == kyso.pseudonyms.pseudonym(ID_NUMBER)
    assert login["object"] == identity.subject
    assert login["source"] == "203.0.113.9"
    assert login["request_id"] == "r-1"
    assert login["details"]["amr"] == ["pwd", "otp", "mfa"]
    assert login["details"]["level"] == 1
    assert login["details"]["client_id"] == "dvc-portal"
    assert login["details"]["id_hint"] == "019******345"


def test_password_and_sms_log_in(kyso: Kyso, service: LoginService, identity: Identity,
                                 clock: FrozenClock) -> None:
    accepted = service.check_password(ID_NUMBER, PASSWORD)
    assert accepted.factors == (SecondFactor.SMS,)  # no TOTP credential yet
    code = sms_code(service, identity.subject)
    result = service.check_otp(identity.subject, code, SecondFactor.SMS)
    assert result.amr == ("pwd", "sms", "mfa")
    assert result.auth_time == clock.now()
    [sent] = events(kyso, "SEND_SMS_CODE")
    assert sent["details"]["phone_hint"] == "+84******678"


def test_a_level_2_account_logs_in_at_level_2(kyso: Kyso, service: LoginService,
                                              identity: Identity) -> None:
    Registry(kyso.store, kyso.clock).promote_level2(
        identity.subject, person=identity.person, officer="officer-1", evidence={"chip": "ok"})
    assert service.check_password(ID_NUMBER, PASSWORD).level is Level.TWO
    result = service.check_otp(identity.subject, sms_code(service, identity.subject),
                               SecondFactor.SMS)
    assert result.level is Level.TWO


def test_a_success_resets_the_failure_counters(service: LoginService, identity: Identity,
                                               clock: FrozenClock) -> None:
    with pytest.raises(AuthenticationFailedError):
        service.check_password(ID_NUMBER, "not the password")
    clock.advance(NEXT_TRY)
    service.check_password(ID_NUMBER, PASSWORD)
    assert service.guard.failures(identity.subject)[Factor.PASSWORD] == 1  # not yet
    service.check_otp(identity.subject, sms_code(service, identity.subject), SecondFactor.SMS)
    assert service.guard.failures(identity.subject)[Factor.PASSWORD] == 0


def test_an_outdated_hash_is_replaced_after_a_good_password(
        kyso: Kyso, service: LoginService, identity: Identity) -> None:
    registry = Registry(kyso.store, kyso.clock)
    old = PasswordHasher(HashParams("old", time_cost=2, memory_kib=128, parallelism=1))
    registry.set_password_hash(identity.subject, old.hash(PASSWORD))
    service.check_password(ID_NUMBER, PASSWORD)
    stored = registry.password_hash(identity.subject)
    assert stored is not None
    assert not service.hasher.needs_rehash(stored)
    assert "t=1" in stored
    [step] = events(kyso, "LOGIN_PASSWORD")
    assert step["details"]["rehashed"] is True


# -- uniform refusals ---------------------------------------------------------------------


def test_a_wrong_password_gets_the_uniform_message(kyso: Kyso, service: LoginService,
                                                   identity: Identity) -> None:
    with pytest.raises(AuthenticationFailedError) as exc:
        service.check_password(ID_NUMBER, "not the password", client_id="dvc-portal")
    uniform(exc)
    assert not isinstance(exc.value, AccountLockedError)
    [event] = events(kyso, "LOGIN_ERROR")
    assert event["outcome"] == "failure"
    assert event["object"] == identity.subject
    assert event["actor"] == kyso.pseudonyms.pseudonym(ID_NUMBER)
    assert event["details"]["error"] == "invalid_user_credentials"
    assert event["details"]["factor"] == "password"


def test_an_unknown_account_looks_like_a_wrong_password(kyso: Kyso, service: LoginService,
                                                        identity: Identity) -> None:
    with pytest.raises(AuthenticationFailedError) as known:
        service.check_password(ID_NUMBER, "not the password", client_id="c")
    with pytest.raises(AuthenticationFailedError) as unknown:
        service.check_password(UNKNOWN_ID, "not the password", client_id="c")
    assert str(known.value) == str(unknown.value) == "invalid credentials"
    assert type(known.value) is type(unknown.value)
    first, second = events(kyso, "LOGIN_ERROR")
    assert set(first["details"]) == set(second["details"])
    assert second["details"]["error"] == "user_not_found"
    assert second["details"]["id_hint"] == "019******321"
    assert second["actor"] == kyso.pseudonyms.pseudonym(UNKNOWN_ID)


def test_an_unknown_account_costs_one_password_verification(
        service: LoginService, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str | None] = []
    real = service.hasher.verify

    def counting(stored: str | None, password: str) -> Any:
        calls.append(stored)
        return real(stored, password)

    monkeypatch.setattr(service.hasher, "verify", counting)
    with pytest.raises(AuthenticationFailedError):
        service.check_password(UNKNOWN_ID, "whatever it is")
    assert calls == [None]


@pytest.mark.parametrize("bad_id", [
    "123", "", "０１９０９００１２３４５", "019090012345\n", " 019090012345", "x" * 100_000,
    "01909001234a", None, 19090012345, ["019090012345"],
])
def test_malformed_id_numbers_are_refused_like_unknown_accounts(
        kyso: Kyso, service: LoginService, identity: Identity, bad_id: Any) -> None:
    with pytest.raises(AuthenticationFailedError) as exc:
        service.check_password(bad_id, PASSWORD)
    uniform(exc)
    [event] = events(kyso, "LOGIN_ERROR")
    assert event["details"]["error"] == "user_not_found"
    assert event["object"] == ""


@pytest.mark.parametrize("bad_password", [None, 12345678, b"bytes", "p" * 100_000])
def test_hostile_passwords_are_refused_uniformly(service: LoginService, identity: Identity,
                                                 bad_password: Any) -> None:
    with pytest.raises(AuthenticationFailedError) as exc:
        service.check_password(ID_NUMBER, bad_password)
    uniform(exc)


def test_an_account_without_a_password_cannot_log_in(kyso: Kyso, service: LoginService) -> None:
    Registry(kyso.store, kyso.clock).create(
        Person.of(id_number=UNKNOWN_ID, full_name="Lê Văn C", birth_date="1990-01-01",
                  sex="male"), password_hash=None)
    with pytest.raises(AuthenticationFailedError) as exc:
        service.check_password(UNKNOWN_ID, "")
    uniform(exc)


# -- brute force --------------------------------------------------------------------------


def test_five_wrong_passwords_lock_the_account_with_the_uniform_message(
        kyso: Kyso, service: LoginService, identity: Identity, clock: FrozenClock) -> None:
    for attempt in range(5):
        with pytest.raises(AuthenticationFailedError) as exc:
            service.check_password(ID_NUMBER, f"wrong password {attempt}")
        uniform(exc)
        assert isinstance(exc.value, AccountLockedError) == (attempt == 4)
        clock.advance(NEXT_TRY)
    with pytest.raises(AccountLockedError) as locked:
        service.check_password(ID_NUMBER, PASSWORD)  # the right password is refused too
    uniform(locked)
    [lock] = events(kyso, "USER_DISABLED_BY_TEMPORARY_LOCKOUT")
    assert lock["object"] == identity.subject
    assert lock["details"]["lockout"]["reason"] == "temporary-lockout"
    assert events(kyso, "LOGIN_ERROR")[-1]["details"]["error"] == "user_temporarily_disabled"
    clock.advance(dt.timedelta(minutes=1))
    assert service.check_password(ID_NUMBER, PASSWORD).subject == identity.subject


def test_mixed_mode_locks_for_good_after_the_second_round(
        kyso: Kyso, service: LoginService, identity: Identity, clock: FrozenClock) -> None:
    for attempt in range(10):
        with pytest.raises(AuthenticationFailedError):
            service.check_password(ID_NUMBER, f"wrong password {attempt}")
        clock.advance(NEXT_TRY if attempt != 4 else dt.timedelta(minutes=2))
    assert events(kyso, "USER_DISABLED_BY_PERMANENT_LOCKOUT")
    clock.advance(dt.timedelta(days=2))
    with pytest.raises(AccountLockedError):
        service.check_password(ID_NUMBER, PASSWORD)
    assert events(kyso, "LOGIN_ERROR")[-1]["details"]["error"] == "user_disabled"


def test_unknown_accounts_lock_like_real_ones(kyso: Kyso, service: LoginService,
                                              clock: FrozenClock) -> None:
    for attempt in range(5):
        with pytest.raises(AuthenticationFailedError) as exc:
            service.check_password(UNKNOWN_ID, f"guess {attempt}")
        assert isinstance(exc.value, AccountLockedError) == (attempt == 4)
        clock.advance(NEXT_TRY)
    assert events(kyso, "USER_DISABLED_BY_TEMPORARY_LOCKOUT")


def test_quick_successive_failures_lock_briefly(service: LoginService, identity: Identity) -> None:
    with pytest.raises(AuthenticationFailedError):
        service.check_password(ID_NUMBER, "wrong one")
    with pytest.raises(AccountLockedError):
        service.check_password(ID_NUMBER, "wrong two")  # within Keycloak's quick-login check


def test_otp_guessing_locks_the_account_and_counts_apart_from_passwords(
        kyso: Kyso, service: LoginService, identity: Identity, totp_secret: str,
        clock: FrozenClock) -> None:
    service.check_password(ID_NUMBER, PASSWORD)
    for attempt in range(5):
        with pytest.raises(AuthenticationFailedError) as exc:
            service.check_otp(identity.subject, wrong(totp_now(totp_secret, clock)),
                              SecondFactor.TOTP)
        uniform(exc)
        assert isinstance(exc.value, AccountLockedError) == (attempt == 4)
        clock.advance(NEXT_TRY)
    failures = service.guard.failures(identity.subject)
    assert failures[Factor.TOTP] == 5
    assert failures[Factor.PASSWORD] == 0
    clock.advance(dt.timedelta(seconds=30))
    with pytest.raises(AccountLockedError):  # even the right code, while locked
        service.check_otp(identity.subject, totp_now(totp_secret, clock), SecondFactor.TOTP)
    errors = [e["details"]["error"] for e in events(kyso, "LOGIN_ERROR")]
    assert errors == ["invalid_user_otp"] * 5 + ["user_temporarily_disabled"]


def test_a_resend_does_not_reset_the_otp_counter(
        service: LoginService, identity: Identity, clock: FrozenClock) -> None:
    service.check_password(ID_NUMBER, PASSWORD)
    code = sms_code(service, identity.subject)
    for _ in range(2):
        with pytest.raises(AuthenticationFailedError):
            service.check_otp(identity.subject, wrong(code), SecondFactor.SMS)
        clock.advance(NEXT_TRY)
    clock.advance(dt.timedelta(seconds=61))
    code = sms_code(service, identity.subject)
    assert service.guard.failures(identity.subject)[Factor.SMS] == 2
    for _ in range(2):
        with pytest.raises(AuthenticationFailedError):
            service.check_otp(identity.subject, wrong(code), SecondFactor.SMS)
        clock.advance(NEXT_TRY)
    with pytest.raises(AccountLockedError):
        service.check_otp(identity.subject, wrong(code), SecondFactor.SMS)
    assert service.guard.failures(identity.subject)[Factor.SMS] == 5
    with pytest.raises(AccountLockedError):  # no new code for a locked account
        service.send_sms(identity.subject)


def test_a_damaged_lockout_state_refuses_every_login_uniformly_until_an_unlock(
        kyso: Kyso, service: LoginService, identity: Identity, clock: FrozenClock) -> None:
    service.check_password(ID_NUMBER, PASSWORD)  # a password accepted before the damage…
    code = sms_code(service, identity.subject)
    damage_lockout(kyso, identity.subject)
    damaged = stored_lockout(kyso, identity.subject)
    with pytest.raises(AccountLockedError) as exc:  # …cannot be completed with its code
        service.check_otp(identity.subject, code, SecondFactor.SMS)
    uniform(exc)
    clock.advance(dt.timedelta(days=30))  # it never ends by itself
    with pytest.raises(AccountLockedError) as exc:
        service.check_password(ID_NUMBER, PASSWORD)
    uniform(exc)
    with pytest.raises(AccountLockedError):
        service.send_sms(identity.subject)
    refusals = events(kyso, "LOGIN_ERROR")
    assert [(e["details"]["factor"], e["details"]["error"]) for e in refusals] == [
        ("sms", "user_disabled"), ("password", "user_disabled"), ("sms", "user_disabled")]
    assert {e["details"]["lockout"]["reason"] for e in refusals} == {"damaged-state"}
    assert not events(kyso, "LOGIN")
    assert stored_lockout(kyso, identity.subject) == damaged  # never restarted from zero


# -- replay and input ---------------------------------------------------------------------


def test_a_totp_code_logs_in_once(service: LoginService, identity: Identity, totp_secret: str,
                                  clock: FrozenClock) -> None:
    code = totp_now(totp_secret, clock)
    service.check_password(ID_NUMBER, PASSWORD)
    service.check_otp(identity.subject, code, SecondFactor.TOTP)
    clock.advance(NEXT_TRY)
    service.check_password(ID_NUMBER, PASSWORD)
    with pytest.raises(AuthenticationFailedError) as exc:
        service.check_otp(identity.subject, code, SecondFactor.TOTP)
    uniform(exc)


def test_racing_submissions_of_one_totp_code_give_at_most_one_login(
        service: LoginService, identity: Identity, totp_secret: str, clock: FrozenClock) -> None:
    code = totp_now(totp_secret, clock)
    service.check_password(ID_NUMBER, PASSWORD)
    barrier = threading.Barrier(8)
    results: list[object] = []
    lock = threading.Lock()

    def attempt() -> None:
        barrier.wait()
        try:
            outcome: object = service.check_otp(identity.subject, code, SecondFactor.TOTP)
        except Exception as exc:
            outcome = exc
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len([r for r in results if isinstance(r, LoginResult)]) == 1
    assert all(isinstance(r, LoginResult | AuthenticationFailedError) for r in results)


def test_an_sms_code_logs_in_once(service: LoginService, identity: Identity) -> None:
    code = sms_code(service, identity.subject)
    service.check_otp(identity.subject, code, SecondFactor.SMS)
    with pytest.raises(AuthenticationFailedError):
        service.check_otp(identity.subject, code, SecondFactor.SMS)


def test_full_width_digits_are_refused(service: LoginService, identity: Identity,
                                       totp_secret: str, clock: FrozenClock) -> None:
    code = totp_now(totp_secret, clock)
    full_width = code.translate({ord(d): 0xFF10 + int(d) for d in "0123456789"})
    with pytest.raises(AuthenticationFailedError):
        service.check_otp(identity.subject, full_width, SecondFactor.TOTP)
    clock.advance(NEXT_TRY)
    assert service.check_otp(identity.subject, code, SecondFactor.TOTP).amr[1] == "otp"


@pytest.mark.parametrize("bad_code", ["", "12345", "1234567", " 123456", None, 123456, "abcdef"])
def test_malformed_codes_are_refused_uniformly(service: LoginService, identity: Identity,
                                               totp_secret: str, bad_code: Any) -> None:
    with pytest.raises(AuthenticationFailedError) as exc:
        service.check_otp(identity.subject, bad_code, SecondFactor.TOTP)
    uniform(exc)


def test_totp_without_an_enrolled_credential_is_refused(kyso: Kyso, service: LoginService,
                                                        identity: Identity) -> None:
    with pytest.raises(AuthenticationFailedError):
        service.check_otp(identity.subject, "123456", SecondFactor.TOTP)
    assert events(kyso, "LOGIN_ERROR")[-1]["details"]["error"] == "credential_setup_required"


def test_an_unknown_subject_or_factor_is_refused_cleanly(service: LoginService,
                                                         identity: Identity) -> None:
    with pytest.raises(AuthenticationFailedError) as exc:
        service.check_otp("u-nobody", "123456", SecondFactor.SMS)
    uniform(exc)
    with pytest.raises(AuthnError, match="totp' or 'sms"):
        service.check_otp(identity.subject, "123456", "email")  # type: ignore[arg-type]


def test_sms_needs_a_phone(kyso: Kyso, service: LoginService) -> None:
    other = Registry(kyso.store, kyso.clock).create(
        Person.of(id_number=UNKNOWN_ID, full_name="Lê Văn C", birth_date="1990-01-01",
                  sex="male"), password_hash=None)
    with pytest.raises(AuthnError, match="no phone"):
        service.send_sms(other.subject)


def test_sms_resends_are_throttled(service: LoginService, identity: Identity) -> None:
    service.send_sms(identity.subject)
    with pytest.raises(AuthnError, match="too many codes"):
        service.send_sms(identity.subject)


# -- Decree 69 locks ----------------------------------------------------------------------


def test_a_locked_registry_account_is_refused_with_the_uniform_message(
        kyso: Kyso, service: LoginService, identity: Identity) -> None:
    Registry(kyso.store, kyso.clock).lock(identity.subject, LockGround.HOLDER_REQUEST,
                                          by="admin:test")
    with pytest.raises(AccountLockedError) as exc:
        service.check_password(ID_NUMBER, PASSWORD)
    uniform(exc)
    event = events(kyso, "LOGIN_ERROR")[-1]
    assert event["details"]["error"] == "user_disabled"
    assert event["details"]["lock_reason"] == "holder-request"


def test_a_lock_between_password_and_code_stops_the_login(
        kyso: Kyso, service: LoginService, identity: Identity) -> None:
    service.check_password(ID_NUMBER, PASSWORD)
    code = sms_code(service, identity.subject)
    Registry(kyso.store, kyso.clock).lock(identity.subject, LockGround.AUTHORITY_REQUEST,
                                          by="admin:test")
    with pytest.raises(AccountLockedError):
        service.check_otp(identity.subject, code, SecondFactor.SMS)


# -- passwords and secrets ----------------------------------------------------------------


def test_set_password_applies_the_policy_with_the_holders_data(
        kyso: Kyso, service: LoginService, identity: Identity) -> None:
    for bad in ("password123", ID_NUMBER + "!", "Binh04031990"):
        with pytest.raises(PasswordPolicyError) as exc:
            service.set_password(identity.subject, bad)
        assert bad not in str(exc.value)
    assert [e["outcome"] for e in events(kyso, "UPDATE_PASSWORD_ERROR")] == ["failure"] * 3
    service.set_password(identity.subject, "mot con vit xoe ra hai cai canh")
    with pytest.raises(AuthenticationFailedError):
        service.check_password(ID_NUMBER, PASSWORD)
    assert events(kyso, "UPDATE_PASSWORD")[-1]["object"] == identity.subject


def test_secrets_never_reach_the_audit_log(kyso: Kyso, service: LoginService,
                                           identity: Identity, totp_secret: str,
                                           clock: FrozenClock) -> None:
    codes = []
    with pytest.raises(AuthenticationFailedError):
        service.check_password(ID_NUMBER, "my wrong secret guess")
    clock.advance(NEXT_TRY)
    service.check_password(ID_NUMBER, PASSWORD)
    codes.append(totp_now(totp_secret, clock))
    with pytest.raises(AuthenticationFailedError):
        service.check_otp(identity.subject, wrong(codes[-1]), SecondFactor.TOTP)
    clock.advance(NEXT_TRY)
    service.check_otp(identity.subject, codes[-1], SecondFactor.TOTP)
    codes.append(sms_code(service, identity.subject))
    service.check_otp(identity.subject, codes[-1], SecondFactor.SMS)
    text = audit_text(kyso)
    for secret in (PASSWORD, "my wrong secret guess", ID_NUMBER, totp_secret, "0912345678",
                   PHONE):
        assert secret not in text
    for code in codes:
        assert not appears(code, text)
    assert "019******345" in text
