"""The SQL authenticator stores behave like the memory ones, and keep their atomicity contracts
on a real file-backed SQLite database with threads racing (and two engines on one file)."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pyotp
import pytest
import sqlalchemy as sa

from kyso.authn.lockout import (
    BruteForceGuard,
    BruteForceSettings,
    Factor,
    LockoutState,
    LockReason,
    MemoryLockoutStore,
)
from kyso.authn.otp import (
    MemorySmsChallengeStore,
    MemorySmsOutbox,
    MemoryTotpStepStore,
    SmsChallenge,
    SmsMessage,
    SmsOtp,
    TotpVerifier,
    new_totp_secret,
)
from kyso.authn.registry import Person, Registry
from kyso.authn.stores import (
    SqlLockoutStore,
    SqlSmsChallengeStore,
    SqlSmsOutbox,
    SqlTotpStepStore,
    decode_lockout_state,
    encode_lockout_state,
)
from kyso.clock import FrozenClock
from kyso.context import Kyso
from kyso.errors import AuthenticationFailedError, AuthnError
from kyso.store import Store, open_store
from kyso.store.schema import lockout_states, otp_credentials

ACCOUNT = "u-account-1"
PHONE = "+84912345678"


def add_credential(kyso: Kyso, credential_id: str, id_number: str = "019090012345") -> None:
    """An otp_credentials row (and its identity) for the SQL step store."""
    registry = Registry(kyso.store, kyso.clock)
    identity = registry.find(id_number)
    if identity is None:
        identity = registry.create(Person.of(id_number=id_number, full_name="Nguyễn Văn Bình",
                                             birth_date="1990-03-04", sex="male"),
                                   password_hash=None)
    subject = identity.subject
    kyso.store.write(lambda conn: conn.execute(sa.insert(otp_credentials).values(
        id=credential_id, subject=subject, kind="totp", secret_sealed=b"x", status="active",
        created_at=kyso.now())))


def race(n: int, attempt: Callable[[int], object]) -> list[Any]:
    """Run ``attempt(i)`` in ``n`` threads released together; each result or exception."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = attempt(i)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@pytest.fixture
def second_store(kyso: Kyso) -> Iterator[Store]:
    """Another engine on the same database file, as a second server process would have."""
    store = open_store(kyso.settings.database_url, now=kyso.now)
    yield store
    store.close()


# -- TOTP steps ---------------------------------------------------------------------------


@pytest.fixture(params=["memory", "sql"])
def step_store(request: pytest.FixtureRequest, kyso: Kyso) -> Any:
    if request.param == "memory":
        return MemoryTotpStepStore()
    for cid in ("c1", "c2"):
        add_credential(kyso, cid)
    return SqlTotpStepStore(kyso.store)


def test_a_step_advances_only_forward(step_store: Any) -> None:
    assert step_store.last_step("c1") is None
    assert step_store.advance_step("c1", 10)
    assert not step_store.advance_step("c1", 10)
    assert not step_store.advance_step("c1", 9)
    assert step_store.last_step("c1") == 10
    assert step_store.advance_step("c1", 11)
    assert step_store.last_step("c1") == 11


def test_steps_are_kept_per_credential(step_store: Any) -> None:
    assert step_store.advance_step("c1", 50)
    assert step_store.advance_step("c2", 40)
    assert step_store.last_step("c1") == 50
    assert step_store.last_step("c2") == 40


def test_a_verifier_on_the_sql_store_accepts_a_code_once(kyso: Kyso, clock: FrozenClock) -> None:
    add_credential(kyso, "c1")
    secret = new_totp_secret()
    totp = TotpVerifier(SqlTotpStepStore(kyso.store), clock)
    code = pyotp.TOTP(secret).at(clock.now())
    match = totp.verify("c1", secret, code)
    assert SqlTotpStepStore(kyso.store).last_step("c1") == match.step
    with pytest.raises(AuthenticationFailedError):
        totp.verify("c1", secret, code)


def test_an_unknown_credential_never_advances(kyso: Kyso) -> None:
    store = SqlTotpStepStore(kyso.store)
    assert not store.advance_step("missing", 1)
    assert store.last_step("missing") is None


def test_threads_submitting_one_totp_step_on_a_file_database_accept_exactly_one(
        kyso: Kyso, second_store: Store, clock: FrozenClock) -> None:
    assert kyso.settings.database_url.startswith(("sqlite:///", "postgresql"))  # not :memory:
    add_credential(kyso, "c1")
    secret = new_totp_secret()
    code = pyotp.TOTP(secret).at(clock.now())
    verifiers = [TotpVerifier(SqlTotpStepStore(s), clock) for s in (kyso.store, second_store)]
    results = race(12, lambda i: verifiers[i % 2].verify("c1", secret, code))
    accepted = [r for r in results if not isinstance(r, Exception)]
    assert len(accepted) == 1
    assert all(isinstance(r, AuthenticationFailedError) for r in results if r not in accepted)


def test_threads_advancing_the_same_step_store_call_accept_exactly_one(
        kyso: Kyso, second_store: Store) -> None:
    add_credential(kyso, "c1")
    stores = [SqlTotpStepStore(kyso.store), SqlTotpStepStore(second_store)]
    assert sorted(race(12, lambda i: stores[i % 2].advance_step("c1", 7))) == [False] * 11 + [True]


# -- lockout ------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "sql"])
def lockout_store(request: pytest.FixtureRequest, kyso: Kyso) -> Any:
    return MemoryLockoutStore() if request.param == "memory" else SqlLockoutStore(kyso.store)


def full_state(version: int, clock: FrozenClock) -> LockoutState:
    return LockoutState(version=version, failures={Factor.PASSWORD: 3, Factor.SMS: 1},
                        consecutive=4, last_failure=clock.now(),
                        not_before=clock.now() + dt.timedelta(minutes=1),
                        reason=LockReason.TEMPORARY, temporary_lockouts=1, permanent=False)


def test_an_unknown_account_has_a_fresh_state(lockout_store: Any) -> None:
    assert lockout_store.load(ACCOUNT) == LockoutState()


def test_the_state_is_stored_whole(lockout_store: Any, clock: FrozenClock) -> None:
    state = full_state(1, clock)
    assert lockout_store.compare_and_set(ACCOUNT, 0, state)
    assert lockout_store.load(ACCOUNT) == state
    permanent = LockoutState(version=2, consecutive=100, permanent=True,
                             reason=LockReason.FAILURE_CAP)
    assert lockout_store.compare_and_set(ACCOUNT, 1, permanent)
    assert lockout_store.load(ACCOUNT) == permanent


def test_a_second_first_write_loses_cleanly(lockout_store: Any, clock: FrozenClock) -> None:
    assert lockout_store.compare_and_set(ACCOUNT, 0, full_state(1, clock))
    assert not lockout_store.compare_and_set(ACCOUNT, 0, LockoutState(version=1, consecutive=9))
    assert lockout_store.load(ACCOUNT).consecutive == 4


def test_a_stale_version_is_refused(lockout_store: Any, clock: FrozenClock) -> None:
    assert lockout_store.compare_and_set(ACCOUNT, 0, LockoutState(version=1, consecutive=1))
    assert lockout_store.compare_and_set(ACCOUNT, 1, LockoutState(version=2, consecutive=2))
    assert not lockout_store.compare_and_set(ACCOUNT, 1, LockoutState(version=2, consecutive=7))
    assert lockout_store.load(ACCOUNT) == LockoutState(version=2, consecutive=2)


def test_the_new_version_must_follow_the_expected_one(lockout_store: Any) -> None:
    with pytest.raises(ValueError, match="expected version"):
        lockout_store.compare_and_set(ACCOUNT, 0, LockoutState(version=5))


def test_accounts_are_stored_apart(lockout_store: Any) -> None:
    assert lockout_store.compare_and_set(ACCOUNT, 0, LockoutState(version=1, consecutive=1))
    assert lockout_store.load("u-other") == LockoutState()


def test_a_damaged_stored_state_fails_closed(kyso: Kyso) -> None:
    kyso.store.write(lambda conn: conn.execute(sa.insert(lockout_states).values(
        account=ACCOUNT, version=3, state="{not json")))
    with pytest.raises(AuthnError, match="damaged"):
        SqlLockoutStore(kyso.store).load(ACCOUNT)
    with pytest.raises(AuthnError, match="damaged"):
        decode_lockout_state(1, '{"failures": {"bogus": 1}}')


def test_the_encoding_round_trips(clock: FrozenClock) -> None:
    state = full_state(7, clock)
    assert decode_lockout_state(7, encode_lockout_state(state)) == state


def test_concurrent_failures_on_a_file_database_are_all_counted(
        kyso: Kyso, second_store: Store, clock: FrozenClock) -> None:
    settings = BruteForceSettings(quick_login_check=dt.timedelta(0))
    guards = [BruteForceGuard(settings, SqlLockoutStore(s), clock)
              for s in (kyso.store, second_store)]

    def attempt(i: int) -> None:
        for _ in range(3):
            guards[i % 2].record_failure(ACCOUNT, Factor.PASSWORD)

    results = race(8, attempt)
    assert results == [None] * 8
    assert guards[0].failures(ACCOUNT)[Factor.PASSWORD] == 24
    assert guards[1].check(ACCOUNT).failures == 24


# -- SMS challenges -----------------------------------------------------------------------


@pytest.fixture(params=["memory", "sql"])
def challenge_store(request: pytest.FixtureRequest, kyso: Kyso) -> Any:
    return MemorySmsChallengeStore() if request.param == "memory" else SqlSmsChallengeStore(
        kyso.store)


def challenge(cid: str, at: dt.datetime) -> SmsChallenge:
    return SmsChallenge(cid, ACCOUNT, bytes([len(cid)]) * 32, issued_at=at,
                        expires_at=at + dt.timedelta(minutes=5))


def issue(store: Any, ch: SmsChallenge, max_sends: int = 5) -> bool:
    now = ch.issued_at
    return bool(store.issue(ch, previous_by=now - dt.timedelta(seconds=60),
                            window_start=now - dt.timedelta(hours=1), max_sends=max_sends))


def test_an_issued_challenge_is_live_and_its_send_counted(challenge_store: Any,
                                                          clock: FrozenClock) -> None:
    ch = challenge("a", clock.now())
    assert issue(challenge_store, ch)
    assert challenge_store.live(ACCOUNT) == ch
    assert challenge_store.sends(ACCOUNT, clock.now() - dt.timedelta(hours=1)) == (clock.now(),)
    assert challenge_store.live("u-other") is None


def test_a_resend_too_soon_changes_nothing(challenge_store: Any, clock: FrozenClock) -> None:
    first = challenge("a", clock.now())
    assert issue(challenge_store, first)
    clock.advance(dt.timedelta(seconds=30))
    assert not issue(challenge_store, challenge("bb", clock.now()))
    assert challenge_store.live(ACCOUNT) == first
    assert len(challenge_store.sends(ACCOUNT, clock.now() - dt.timedelta(hours=1))) == 1


def test_a_resend_replaces_the_live_challenge(challenge_store: Any, clock: FrozenClock) -> None:
    assert issue(challenge_store, challenge("a", clock.now()))
    clock.advance(dt.timedelta(seconds=61))
    second = challenge("bb", clock.now())
    assert issue(challenge_store, second)
    assert challenge_store.live(ACCOUNT) == second
    assert not challenge_store.consume(ACCOUNT, "a")


def test_sends_are_capped_per_window(challenge_store: Any, clock: FrozenClock) -> None:
    for i in range(3):
        assert issue(challenge_store, challenge(f"c{i}", clock.now()), max_sends=3)
        clock.advance(dt.timedelta(minutes=2))
    assert not issue(challenge_store, challenge("late", clock.now()), max_sends=3)
    clock.advance(dt.timedelta(hours=1))
    assert issue(challenge_store, challenge("next", clock.now()), max_sends=3)


def test_a_challenge_is_consumed_once(challenge_store: Any, clock: FrozenClock) -> None:
    assert issue(challenge_store, challenge("a", clock.now()))
    assert challenge_store.consume(ACCOUNT, "a")
    assert not challenge_store.consume(ACCOUNT, "a")
    assert challenge_store.live(ACCOUNT) is None


def test_misses_are_counted_and_burn_the_challenge(challenge_store: Any,
                                                   clock: FrozenClock) -> None:
    assert issue(challenge_store, challenge("a", clock.now()))
    assert challenge_store.record_miss(ACCOUNT, "a", 3) == 1
    live = challenge_store.live(ACCOUNT)
    assert live is not None
    assert live.misses == 1
    assert challenge_store.record_miss(ACCOUNT, "a", 3) == 2
    assert challenge_store.record_miss(ACCOUNT, "a", 3) == 3
    assert challenge_store.live(ACCOUNT) is None
    assert challenge_store.record_miss(ACCOUNT, "a", 3) == 0


def test_a_miss_on_a_replaced_challenge_counts_nothing(challenge_store: Any,
                                                       clock: FrozenClock) -> None:
    assert issue(challenge_store, challenge("a", clock.now()))
    assert challenge_store.record_miss(ACCOUNT, "old", 3) == 0
    live = challenge_store.live(ACCOUNT)
    assert live is not None
    assert live.misses == 0


def test_threads_submitting_one_sms_code_on_a_file_database_accept_exactly_one(
        kyso: Kyso, second_store: Store, clock: FrozenClock) -> None:
    outbox = SqlSmsOutbox(kyso.store)
    key = b"k" * 32
    senders = [SmsOtp(SqlSmsChallengeStore(s), outbox, clock, key=key)
               for s in (kyso.store, second_store)]
    senders[0].send(ACCOUNT, PHONE)
    code = outbox.last_code(PHONE)
    assert code is not None
    results = race(10, lambda i: senders[i % 2].verify(ACCOUNT, code))
    accepted = [r for r in results if not isinstance(r, Exception)]
    assert len(accepted) == 1
    assert all(isinstance(r, AuthenticationFailedError) for r in results if r not in accepted)


def test_sms_codes_work_end_to_end_on_the_sql_stores(kyso: Kyso, clock: FrozenClock) -> None:
    outbox = SqlSmsOutbox(kyso.store)
    sms = SmsOtp(SqlSmsChallengeStore(kyso.store), outbox, clock, key=b"k" * 32)
    sms.send(ACCOUNT, PHONE)
    first = outbox.last_code(PHONE)
    clock.advance(dt.timedelta(seconds=61))
    sms.send(ACCOUNT, PHONE)
    second = outbox.last_code(PHONE)
    assert first is not None
    assert second is not None
    if first != second:
        with pytest.raises(AuthenticationFailedError):
            sms.verify(ACCOUNT, first)  # replaced by the resend
    assert sms.verify(ACCOUNT, second).challenge_id
    with pytest.raises(AuthenticationFailedError):
        sms.verify(ACCOUNT, second)


# -- outbox -------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "sql"])
def outbox(request: pytest.FixtureRequest, kyso: Kyso) -> Any:
    return MemorySmsOutbox() if request.param == "memory" else SqlSmsOutbox(kyso.store)


def test_the_outbox_keeps_messages_per_phone_in_order(outbox: Any, clock: FrozenClock) -> None:
    assert outbox.messages() == ()
    assert outbox.last_code(PHONE) is None
    outbox.deliver(SmsMessage(PHONE, "Ma xac thuc 123456", clock.now()))
    outbox.deliver(SmsMessage("+84987654321", "Ma xac thuc 222222", clock.now()))
    outbox.deliver(SmsMessage(PHONE, "Ma xac thuc 654321, hieu luc 5 phut", clock.now()))
    mine = outbox.messages(PHONE)
    assert [m.text for m in mine] == ["Ma xac thuc 123456", "Ma xac thuc 654321, hieu luc 5 phut"]
    assert mine[0].sent_at == clock.now()
    assert len(outbox.messages()) == 3
    assert outbox.last_code(PHONE) == "654321"
    assert outbox.last_code("+84987654321") == "222222"
