"""Administration of the e-ID logins: brute-force state (a damaged one too), unlocks of
Decree 69 locks and brute-force lockouts with one audit event each, the simulated SMS outbox
(codes shown, never logged)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from login_support import (
    ID_NUMBER,
    NEXT_TRY,
    PASSWORD,
    UNKNOWN_ID,
    appears,
    damage_lockout,
    events,
    fail_passwords,
    register,
    sms_code,
    stored_lockout,
    with_authn,
)

from conftest import audit_text
from kyso.authn.lockout import Factor, LockoutState, LockReason
from kyso.authn.login import LoginService, SecondFactor
from kyso.authn.login_admin import LockKind, LoginAdmin, lockout_status
from kyso.authn.otp import SmsMessage
from kyso.authn.registry import Identity, LockGround, Person, Registry
from kyso.authn.stores import encode_lockout_state
from kyso.clock import FrozenClock
from kyso.context import Kyso
from kyso.errors import (
    AccountLockedError,
    AuthenticationFailedError,
    AuthnError,
    IdentityError,
    InvalidIdentifierError,
)


@pytest.fixture
def service(kyso: Kyso) -> LoginService:
    return LoginService(kyso)


@pytest.fixture
def admin(kyso: Kyso, service: LoginService) -> LoginAdmin:
    return LoginAdmin(kyso, login=service)


@pytest.fixture
def identity(kyso: Kyso, service: LoginService) -> Identity:
    return register(kyso, service)


def admin_of(service: LoginService) -> LoginAdmin:
    return LoginAdmin(service.kyso, login=service)


# -- administrators lift brute-force lockouts ---------------------------------------------


def test_an_administrator_unlock_clears_a_permanent_lockout(
        kyso: Kyso, identity: Identity, clock: FrozenClock) -> None:
    service = LoginService(with_authn(kyso, lockout="permanent", max_login_failures=3))
    admin = admin_of(service)
    fail_passwords(service, clock, 3)
    clock.advance(dt.timedelta(days=30))  # a permanent lockout never ends by itself
    with pytest.raises(AccountLockedError):
        service.check_password(ID_NUMBER, PASSWORD)
    status = admin.lockout_status(identity.subject)
    assert (status.locked, status.permanent, status.locked_until) == (True, True, None)
    assert status.reason is LockReason.PERMANENT
    assert status.failures[Factor.PASSWORD] == 3
    assert status.summary == "permanently locked (permanent-lockout)"

    lifted = admin.unlock(identity.subject)

    assert lifted == status  # what was lifted, as it was
    after = admin.lockout_status(identity.subject)
    assert not after.locked
    assert dict(after.failures) == {Factor.PASSWORD: 0, Factor.TOTP: 0, Factor.SMS: 0}
    assert after.consecutive == 0
    assert service.check_password(ID_NUMBER, PASSWORD).subject == identity.subject
    [event] = events(kyso, "USER_UNLOCKED")
    assert event["outcome"] == "success"
    assert event["actor"] == "admin:test"  # the operator, not the citizen
    assert event["object"] == kyso.pseudonyms.pseudonym(ID_NUMBER)
    assert event["details"]["kind"] == "brute-force"
    assert event["details"]["damaged_state"] is False
    assert event["details"]["id_hint"] == "019******345"
    assert event["details"]["lockout"]["reason"] == "permanent-lockout"
    assert {"factor": "password", "count": 3} in event["details"]["lockout"]["failures"]
    assert ID_NUMBER not in audit_text(kyso)


def test_an_administrator_unlock_lifts_the_nist_failure_cap(
        kyso: Kyso, identity: Identity, clock: FrozenClock) -> None:
    # Per-factor thresholds far away; the consecutive cap (NIST: at most 100) at 4.
    service = LoginService(with_authn(kyso, lockout="temporary", max_login_failures=30))
    service.guard.settings = dataclasses.replace(service.guard.settings,
                                                 max_consecutive_failures=4)
    admin = admin_of(service)
    service.check_password(ID_NUMBER, PASSWORD)
    for _ in range(2):
        with pytest.raises(AuthenticationFailedError):
            service.check_otp(identity.subject, "000000", SecondFactor.SMS)
        clock.advance(NEXT_TRY)
    fail_passwords(service, clock, 2)
    clock.advance(dt.timedelta(days=2))  # past the failure reset: the cap's counter stays
    status = admin.lockout_status(identity.subject)
    assert status.permanent
    assert status.reason is LockReason.FAILURE_CAP
    assert (status.failures[Factor.SMS], status.failures[Factor.PASSWORD]) == (2, 2)
    assert status.consecutive == 4
    result = admin.unlock_account(ID_NUMBER)
    assert result.lifted == (LockKind.BRUTE_FORCE,)
    assert result.ground is None
    assert result.lockout == status
    assert service.check_password(ID_NUMBER, PASSWORD).subject == identity.subject


def test_a_temporary_lockout_says_until_when(kyso: Kyso, admin: LoginAdmin,
                                             service: LoginService, identity: Identity,
                                             clock: FrozenClock) -> None:
    fail_passwords(service, clock, 5)  # [authn] defaults: 5 failures, 1 minute
    status = admin.lockout_status(identity.subject)
    assert status.locked
    assert not status.permanent
    assert status.reason is LockReason.TEMPORARY
    assert status.locked_until is not None
    assert status.locked_until - clock.now() == dt.timedelta(minutes=1) - NEXT_TRY
    assert status.summary.startswith("temporarily locked until 2026-11-23T")
    assert status.to_dict()["locked_until"].endswith("+07:00")
    assert lockout_status(kyso, identity.subject) == status


def test_unlock_account_lifts_a_decree_69_lock_and_a_lockout_with_one_event_each(
        kyso: Kyso, admin: LoginAdmin, service: LoginService, identity: Identity, clock: FrozenClock) -> None:
    fail_passwords(service, clock, 5)
    Registry(kyso.store, kyso.clock).lock(identity.subject, LockGround.HOLDER_REQUEST,
                                          by="admin:test")
    result = admin.unlock_account(ID_NUMBER)
    assert result.lifted == (LockKind.DECREE_69, LockKind.BRUTE_FORCE)
    assert result.ground is LockGround.HOLDER_REQUEST
    assert result.lockout is not None
    assert result.lockout.reason is LockReason.TEMPORARY
    assert not result.identity.locked
    assert result.to_dict()["lifted"] == ["decree-69", "brute-force"]
    assert service.check_password(ID_NUMBER, PASSWORD).subject == identity.subject
    first, second = events(kyso, "USER_UNLOCKED")
    assert first["details"]["ground"] == "holder-request"
    assert first["details"]["kind"] == LockKind.DECREE_69 == "decree-69"
    assert second["details"]["kind"] == LockKind.BRUTE_FORCE == "brute-force"
    assert second["details"]["damaged_state"] is False


def test_unlock_account_of_an_account_under_no_lock_is_refused_and_recorded(
        kyso: Kyso, admin: LoginAdmin, service: LoginService, identity: Identity, clock: FrozenClock) -> None:
    fail_passwords(service, clock, 1, locks=False)  # a failure counted is not a lock
    with pytest.raises(IdentityError, match=r"not locked.*no brute-force lockout"):
        admin.unlock_account(ID_NUMBER)
    [event] = events(kyso, "USER_UNLOCKED")
    assert event["outcome"] == "failure"
    assert event["details"]["kind"] == "decree-69"
    assert service.guard.failures(identity.subject)[Factor.PASSWORD] == 1  # untouched


def test_a_deceased_holders_account_keeps_its_lockout_too(
        kyso: Kyso, admin: LoginAdmin, service: LoginService, identity: Identity, clock: FrozenClock) -> None:
    fail_passwords(service, clock, 5)
    Registry(kyso.store, kyso.clock).lock(identity.subject, LockGround.DECEASED, by="admin:test")
    with pytest.raises(IdentityError, match="cannot be unlocked"):
        admin.unlock_account(ID_NUMBER)
    assert admin.lockout_status(identity.subject).locked  # nothing changed
    assert [e["outcome"] for e in events(kyso, "USER_UNLOCKED")] == ["failure"]


def test_unlock_replaces_a_damaged_lockout_state_and_the_citizen_logs_in_again(
        kyso: Kyso, admin: LoginAdmin, service: LoginService, identity: Identity,
        clock: FrozenClock) -> None:
    fail_passwords(service, clock, 2, locks=False)  # counters stored, then damaged
    damage_lockout(kyso, identity.subject)
    stored = stored_lockout(kyso, identity.subject)
    assert stored is not None
    version = stored[0]
    status = admin.lockout_status(identity.subject)
    assert (status.locked, status.permanent, status.damaged) == (True, True, True)
    assert status.reason is LockReason.DAMAGED
    assert dict(status.failures) == {}  # unreadable, not zero
    assert "damaged" in status.summary
    assert status.to_dict()["reason"] == "damaged-state"
    assert lockout_status(kyso, identity.subject) == status  # kyso id show's view
    with pytest.raises(AccountLockedError):
        service.check_password(ID_NUMBER, PASSWORD)

    result = admin.unlock_account(ID_NUMBER)

    assert result.lifted == (LockKind.BRUTE_FORCE,)
    assert result.lockout == status
    assert result.to_dict()["lockout"]["reason"] == "damaged-state"
    fresh = LockoutState(version=version + 1)
    assert stored_lockout(kyso, identity.subject) == (version + 1, encode_lockout_state(fresh))
    after = admin.lockout_status(identity.subject)
    assert not after.locked
    assert dict(after.failures) == {Factor.PASSWORD: 0, Factor.TOTP: 0, Factor.SMS: 0}
    clock.advance(NEXT_TRY)
    assert service.check_password(ID_NUMBER, PASSWORD).subject == identity.subject
    login = service.check_otp(identity.subject, sms_code(service, identity.subject),
                              SecondFactor.SMS)
    assert login.subject == identity.subject
    [event] = events(kyso, "USER_UNLOCKED")
    assert event["outcome"] == "success"
    assert event["details"]["kind"] == "brute-force"
    assert event["details"]["damaged_state"] is True
    assert event["details"]["lockout"]["reason"] == "damaged-state"
    assert event["details"]["lockout"]["failures"] == []
    assert event["object"] == kyso.pseudonyms.pseudonym(ID_NUMBER)


def test_a_damaged_state_and_a_decree_69_lock_are_both_lifted(
        kyso: Kyso, admin: LoginAdmin, service: LoginService, identity: Identity) -> None:
    damage_lockout(kyso, identity.subject)  # no state stored before: a damaged row appears
    Registry(kyso.store, kyso.clock).lock(identity.subject, LockGround.AUTHORITY_REQUEST,
                                          by="admin:test")
    result = admin.unlock_account(ID_NUMBER)
    assert result.lifted == (LockKind.DECREE_69, LockKind.BRUTE_FORCE)
    assert [(e["details"]["kind"], e["details"].get("damaged_state"))
            for e in events(kyso, "USER_UNLOCKED")] == [("decree-69", None), ("brute-force", True)]
    assert service.check_password(ID_NUMBER, PASSWORD).subject == identity.subject


# -- the simulated SMS outbox -------------------------------------------------------------


def test_the_sms_outbox_shows_each_code_with_its_state(
        kyso: Kyso, admin: LoginAdmin, service: LoginService, identity: Identity, clock: FrozenClock) -> None:
    first = sms_code(service, identity.subject)
    clock.advance(dt.timedelta(seconds=61))
    second = sms_code(service, identity.subject)
    old, new = admin.read_sms_outbox(id_number=ID_NUMBER)
    assert (old.code, old.state, new.code, new.state) == (first, "replaced", second, "current")
    assert new.expires_at == new.sent_at + dt.timedelta(minutes=5)
    assert new.to_dict()["to"] == "+84******678"
    assert second in new.to_dict()["text"]
    assert admin.read_sms_outbox(phone="0912 345 678", last=True) == (new,)
    clock.advance(dt.timedelta(minutes=5))
    [expired] = admin.read_sms_outbox(last=True)
    assert expired.state == "expired"
    reads = events(kyso, "SMS_OUTBOX_READ")
    assert [e["details"]["count"] for e in reads] == [2, 1, 1]
    assert reads[0]["object"] == kyso.pseudonyms.pseudonym(ID_NUMBER)
    assert reads[0]["details"]["phone_hint"] == "+84******678"
    text = audit_text(kyso)
    assert not appears(first, text)
    assert not appears(second, text)
    assert ID_NUMBER not in text


def test_the_sms_outbox_refuses_bad_filters_clearly(kyso: Kyso, admin: LoginAdmin,
                                                    identity: Identity) -> None:
    with pytest.raises(AuthnError, match="not both"):
        admin.read_sms_outbox(id_number=ID_NUMBER, phone="0912345678")
    with pytest.raises(InvalidIdentifierError, match="Vietnamese mobile number"):
        admin.read_sms_outbox(phone="12345")
    with pytest.raises(IdentityError, match=r"019\*{6}321"):
        admin.read_sms_outbox(id_number=UNKNOWN_ID)
    Registry(kyso.store, kyso.clock).create(
        Person.of(id_number=UNKNOWN_ID, full_name="Lê Văn C", birth_date="1990-01-01",
                  sex="male"), password_hash=None)
    with pytest.raises(AuthnError, match="no phone number"):
        admin.read_sms_outbox(id_number=UNKNOWN_ID)
    assert admin.read_sms_outbox() == ()


class _GatewayOutbox:
    """An SMS gateway that delivers and keeps nothing (what a real one looks like here)."""

    def __init__(self) -> None:
        self.delivered = 0

    def deliver(self, message: SmsMessage) -> None:
        self.delivered += 1


def test_an_outbox_that_cannot_be_read_back_is_refused_clearly(
        kyso: Kyso, identity: Identity) -> None:
    outbox = _GatewayOutbox()
    service = LoginService(kyso, outbox=outbox)
    service.send_sms(identity.subject)
    assert outbox.delivered == 1
    with pytest.raises(AuthnError, match="cannot be read back"):
        LoginAdmin(kyso, login=service).read_sms_outbox()
    assert not events(kyso, "SMS_OUTBOX_READ")


def test_the_login_service_shared_must_be_on_the_same_context(kyso: Kyso) -> None:
    with pytest.raises(ValueError, match="same context"):
        LoginAdmin(kyso, login=LoginService(with_authn(kyso, max_login_failures=3)))
