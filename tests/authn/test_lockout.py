"""Brute-force protection: Keycloak's modes and defaults, per-factor counters, NIST's cap; a
damaged stored state fails closed until an administrator's unlock replaces it."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
import sqlalchemy as sa

from kyso.authn.lockout import (
    BruteForceGuard,
    BruteForceSettings,
    DamagedLockoutStateError,
    Decision,
    Factor,
    LockoutMode,
    LockoutState,
    LockReason,
    MemoryLockoutStore,
    WaitStrategy,
)
from kyso.authn.stores import SqlLockoutStore, encode_lockout_state
from kyso.clock import FrozenClock
from kyso.config import AuthnSettings
from kyso.context import Kyso
from kyso.errors import AccountLockedError, AuthenticationFailedError, ConfigError
from kyso.store.schema import lockout_states

ACCOUNT = "033301000123"
GAP = dt.timedelta(seconds=2)  # slower than Keycloak's quick-login check (1 s)
MINUTE = dt.timedelta(minutes=1)


def make_guard(clock: FrozenClock, **settings: Any) -> BruteForceGuard:
    return BruteForceGuard(BruteForceSettings(**settings), MemoryLockoutStore(), clock)


def fail(guard: BruteForceGuard, clock: FrozenClock, times: int,
         factor: Factor = Factor.PASSWORD, gap: dt.timedelta = GAP) -> Decision:
    decision = guard.check(ACCOUNT)
    for _ in range(times):
        clock.advance(gap)
        decision = guard.record_failure(ACCOUNT, factor)
    return decision


def test_the_defaults_are_keycloaks_and_nists() -> None:
    s = BruteForceSettings()
    assert s.mode is LockoutMode.TEMPORARY
    assert s.strategy is WaitStrategy.MULTIPLE
    assert s.max_login_failures == 30
    assert (s.wait_increment, s.max_wait, s.failure_reset) == (
        MINUTE, dt.timedelta(minutes=15), dt.timedelta(hours=12))
    assert (s.quick_login_check, s.minimum_quick_login_wait) == (dt.timedelta(seconds=1), MINUTE)
    assert s.max_consecutive_failures == 100
    assert not s.reveal_lockout


def test_settings_come_from_the_authn_section() -> None:
    s = BruteForceSettings.from_authn(AuthnSettings(), max_temporary_lockouts=2)
    assert s.mode is LockoutMode.MIXED
    assert s.max_login_failures == 5
    assert s.max_wait == dt.timedelta(seconds=900)
    assert s.max_temporary_lockouts == 2


@pytest.mark.parametrize("bad", [
    {"max_consecutive_failures": 101},
    {"max_consecutive_failures": 0},
    {"max_login_failures": 0},
    {"mode": LockoutMode.MIXED, "max_temporary_lockouts": 0},
    {"max_wait": -MINUTE},
])
def test_unsafe_settings_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        BruteForceSettings(**bad)


def test_thirty_failures_lock_the_account_for_one_minute(clock: FrozenClock) -> None:
    guard = make_guard(clock)
    before = fail(guard, clock, 29)
    assert before.allowed
    assert not before.end_session
    assert before.failures == 29
    locking = fail(guard, clock, 1)
    assert not locking.allowed
    assert locking.end_session
    assert not locking.permanent
    assert locking.reason is LockReason.TEMPORARY
    assert locking.locked_until == clock.now() + MINUTE
    assert guard.check(ACCOUNT) == locking
    clock.advance(MINUTE - dt.timedelta(seconds=1))
    assert not guard.check(ACCOUNT).allowed
    clock.advance(dt.timedelta(seconds=1))
    assert guard.check(ACCOUNT).allowed


def test_the_multiple_strategy_grows_the_wait_every_threshold_up_to_the_max(
        clock: FrozenClock) -> None:
    guard = make_guard(clock, max_login_failures=2, max_wait=dt.timedelta(minutes=3))
    waits = []
    for _ in range(10):
        decision = fail(guard, clock, 1)
        waits.append(decision.locked_until - clock.now() if decision.locked_until else None)
        clock.advance(dt.timedelta(minutes=5))  # let every lock run out
    m = MINUTE
    assert waits == [None, m, m, 2 * m, 2 * m, 3 * m, 3 * m, 3 * m, 3 * m, 3 * m]


def test_the_linear_strategy_adds_one_increment_per_failure(clock: FrozenClock) -> None:
    guard = make_guard(clock, max_login_failures=3, strategy=WaitStrategy.LINEAR,
                       max_wait=dt.timedelta(minutes=4))
    waits = []
    for _ in range(8):
        decision = fail(guard, clock, 1)
        waits.append(decision.locked_until - clock.now() if decision.locked_until else None)
        clock.advance(dt.timedelta(minutes=5))
    m = MINUTE
    assert waits == [None, None, m, 2 * m, 3 * m, 4 * m, 4 * m, 4 * m]


def test_the_default_wait_is_capped_at_fifteen_minutes(clock: FrozenClock) -> None:
    guard = make_guard(clock, max_login_failures=1, strategy=WaitStrategy.LINEAR)
    for _ in range(20):
        decision = fail(guard, clock, 1)
        clock.advance(dt.timedelta(minutes=16))
    assert decision.locked_until is not None
    assert decision.locked_until - (clock.now() - dt.timedelta(minutes=16)) == dt.timedelta(
        minutes=15)


def test_permanent_mode_locks_for_good_at_the_threshold(clock: FrozenClock) -> None:
    guard = make_guard(clock, mode=LockoutMode.PERMANENT, max_login_failures=5)
    assert fail(guard, clock, 4).allowed
    locked = fail(guard, clock, 1)
    assert locked.permanent
    assert locked.end_session
    assert locked.locked_until is None
    assert locked.reason is LockReason.PERMANENT
    clock.advance(dt.timedelta(days=30))
    assert not guard.check(ACCOUNT).allowed
    guard.record_success(ACCOUNT)  # a success cannot lift it…
    assert not guard.check(ACCOUNT).allowed
    assert guard.unlock(ACCOUNT).allowed  # …an administrator can
    assert guard.check(ACCOUNT).allowed
    assert guard.failures(ACCOUNT)[Factor.PASSWORD] == 0


def test_permanent_mode_never_forgets_failures(clock: FrozenClock) -> None:
    guard = make_guard(clock, mode=LockoutMode.PERMANENT, max_login_failures=5)
    fail(guard, clock, 4)
    clock.advance(dt.timedelta(days=2))
    assert fail(guard, clock, 1).permanent  # Keycloak: no failure reset in permanent mode


def test_mixed_mode_locks_for_good_after_the_allowed_temporary_lockouts(
        clock: FrozenClock) -> None:
    guard = make_guard(clock, mode=LockoutMode.MIXED, max_login_failures=3,
                       max_temporary_lockouts=2)
    first = fail(guard, clock, 3)
    assert first.reason is LockReason.TEMPORARY
    assert not first.permanent
    clock.advance(dt.timedelta(minutes=2))
    second = fail(guard, clock, 1)  # multiple strategy: every failure past 3 locks again
    assert second.reason is LockReason.TEMPORARY
    assert not second.permanent
    clock.advance(dt.timedelta(minutes=2))
    third = fail(guard, clock, 1)
    assert third.permanent
    assert third.reason is LockReason.PERMANENT
    assert third.end_session


def test_failures_are_forgotten_after_the_reset_time(clock: FrozenClock) -> None:
    guard = make_guard(clock)
    fail(guard, clock, 29)
    clock.advance(dt.timedelta(hours=12) + dt.timedelta(seconds=1) - GAP)
    after = fail(guard, clock, 1)
    assert after.allowed
    assert guard.failures(ACCOUNT)[Factor.PASSWORD] == 1


def test_failures_within_the_reset_time_still_count(clock: FrozenClock) -> None:
    guard = make_guard(clock)
    fail(guard, clock, 29)
    clock.advance(dt.timedelta(hours=12) - GAP)  # exactly 12 h after the last failure
    assert not fail(guard, clock, 1).allowed


def test_each_factor_has_its_own_counter(clock: FrozenClock) -> None:
    guard = make_guard(clock)
    for factor in Factor:
        assert fail(guard, clock, 29, factor).allowed
    assert guard.failures(ACCOUNT) == {Factor.PASSWORD: 29, Factor.TOTP: 29, Factor.SMS: 29}
    assert guard.check(ACCOUNT).failures == 87
    locked = fail(guard, clock, 1, Factor.TOTP)
    assert not locked.allowed
    assert locked.reason is LockReason.TEMPORARY


def test_one_hundred_consecutive_failures_lock_the_account_for_good(clock: FrozenClock) -> None:
    guard = make_guard(clock, max_login_failures=1000)
    assert fail(guard, clock, 99).allowed
    capped = fail(guard, clock, 1)
    assert capped.permanent
    assert capped.reason is LockReason.FAILURE_CAP
    assert capped.failures == 100


def test_the_failure_cap_is_not_reset_by_time(clock: FrozenClock) -> None:
    guard = make_guard(clock)  # Keycloak's 30 per factor, reset after 12 h
    for _ in range(3):
        for factor in Factor:
            assert fail(guard, clock, 11, factor).allowed
        clock.advance(dt.timedelta(hours=13))
    assert guard.failures(ACCOUNT)[Factor.PASSWORD] == 11  # Keycloak's counters were reset
    assert guard.check(ACCOUNT).failures == 99  # the NIST count was not
    assert fail(guard, clock, 1).reason is LockReason.FAILURE_CAP


def test_a_success_resets_every_counter(clock: FrozenClock) -> None:
    guard = make_guard(clock)
    fail(guard, clock, 29)
    fail(guard, clock, 20, Factor.SMS)
    decision = guard.record_success(ACCOUNT)
    assert decision.allowed
    assert decision.failures == 0
    assert set(guard.failures(ACCOUNT).values()) == {0}
    assert fail(guard, clock, 29).allowed  # counting starts again from zero


def test_quick_failures_wait_the_minimum_without_counting_as_a_temporary_lockout(
        clock: FrozenClock) -> None:
    guard = make_guard(clock, mode=LockoutMode.MIXED, max_login_failures=30,
                       max_temporary_lockouts=1)
    fail(guard, clock, 1)
    quick = fail(guard, clock, 1, gap=dt.timedelta(milliseconds=500))
    assert quick.reason is LockReason.QUICK_LOGIN
    assert quick.end_session
    assert quick.locked_until == clock.now() + MINUTE
    for _ in range(3):
        clock.advance(dt.timedelta(minutes=2))
        fail(guard, clock, 1)
        assert fail(guard, clock, 1, gap=dt.timedelta(0)).reason is LockReason.QUICK_LOGIN
    assert not guard.check(ACCOUNT).permanent


def test_a_locked_account_gets_the_generic_message(clock: FrozenClock) -> None:
    guard = make_guard(clock, max_login_failures=2)
    assert guard.ensure_allowed(ACCOUNT).allowed
    fail(guard, clock, 2)
    with pytest.raises(AccountLockedError, match=r"^invalid credentials$") as caught:
        guard.ensure_allowed(ACCOUNT)
    assert isinstance(caught.value, AuthenticationFailedError)
    assert guard.check(ACCOUNT).message == "invalid credentials"


def test_the_lockout_can_be_revealed_when_policy_says_so(clock: FrozenClock) -> None:
    guard = make_guard(clock, max_login_failures=2, reveal_lockout=True)
    fail(guard, clock, 2)
    with pytest.raises(AccountLockedError, match="account locked until 2026-11-23T09:01:04"):
        guard.ensure_allowed(ACCOUNT)


def test_only_the_locking_failure_ends_the_login_session(clock: FrozenClock) -> None:
    guard = make_guard(clock, max_login_failures=3)
    assert [fail(guard, clock, 1).end_session for _ in range(3)] == [False, False, True]


def test_the_decision_is_ready_for_the_audit_log(clock: FrozenClock) -> None:
    guard = make_guard(clock, max_login_failures=1)
    record = fail(guard, clock, 1).to_dict()
    assert record == {"allowed": False, "locked_until": "2026-11-23T09:01:02+07:00",
                      "permanent": False, "reason": "temporary-lockout", "end_session": True,
                      "failures": 1}


def test_accounts_are_counted_apart(clock: FrozenClock) -> None:
    guard = make_guard(clock, max_login_failures=2)
    fail(guard, clock, 2)
    assert guard.check("another-account").allowed


def test_concurrent_failures_are_all_counted(clock: FrozenClock) -> None:
    guard = make_guard(clock, quick_login_check=dt.timedelta(0))
    barrier = threading.Barrier(16)

    def attempt() -> None:
        barrier.wait()
        for _ in range(5):
            guard.record_failure(ACCOUNT, Factor.PASSWORD)

    threads = [threading.Thread(target=attempt) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert guard.check(ACCOUNT).failures == 80
    assert guard.failures(ACCOUNT)[Factor.PASSWORD] == 80


# -- a damaged stored state (the SQL store, its JSON overwritten) ------------------------------


def sql_guard(kyso: Kyso, clock: FrozenClock, **settings: Any) -> BruteForceGuard:
    return BruteForceGuard(BruteForceSettings(**settings), SqlLockoutStore(kyso.store), clock)


def store_row(kyso: Kyso, version: Any, text: str) -> None:
    kyso.store.write(lambda conn: conn.execute(sa.insert(lockout_states).values(
        account=ACCOUNT, version=version, state=text)))


def stored(kyso: Kyso) -> tuple[int, str]:
    with kyso.store.read() as conn:
        row = conn.execute(sa.select(lockout_states.c.version, lockout_states.c.state)
                           .where(lockout_states.c.account == ACCOUNT)).one()
    return row.version, row.state


@pytest.mark.parametrize("text", ["{not json", '{"failures": {"bogus": 1}}', "[]",
                                  '{"not_before": "2026-11-23T09:00:00"}'])
def test_a_damaged_state_is_a_permanent_lock_that_time_and_logins_never_clear(
        kyso: Kyso, clock: FrozenClock, text: str) -> None:
    guard = sql_guard(kyso, clock)
    store_row(kyso, 3, text)
    decision = guard.check(ACCOUNT)
    assert (decision.allowed, decision.permanent, decision.end_session) == (False, True, True)
    assert decision.reason is LockReason.DAMAGED
    assert decision.to_dict()["reason"] == "damaged-state"
    with pytest.raises(AccountLockedError) as locked:
        guard.ensure_allowed(ACCOUNT)
    assert str(locked.value) == "invalid credentials"
    with pytest.raises(DamagedLockoutStateError, match="damaged") as exc:
        guard.record_failure(ACCOUNT, Factor.PASSWORD)  # never counted again from zero
    assert exc.value.version == 3
    with pytest.raises(DamagedLockoutStateError):
        guard.record_success(ACCOUNT)
    clock.advance(dt.timedelta(days=365))
    assert not guard.check(ACCOUNT).allowed
    assert stored(kyso) == (3, text)  # untouched


def test_a_revealing_policy_tells_a_damaged_account_to_call_an_administrator(
        kyso: Kyso, clock: FrozenClock) -> None:
    store_row(kyso, 1, "{not json")
    with pytest.raises(AccountLockedError, match="contact an administrator"):
        sql_guard(kyso, clock, reveal_lockout=True).ensure_allowed(ACCOUNT)


def test_unlock_replaces_a_damaged_state_with_a_fresh_one(kyso: Kyso, clock: FrozenClock) -> None:
    guard = sql_guard(kyso, clock)
    store_row(kyso, 7, '{"failures": {"password": 3')
    assert guard.unlock(ACCOUNT).allowed
    assert stored(kyso) == (8, encode_lockout_state(LockoutState(version=8)))
    assert guard.check(ACCOUNT).allowed
    assert guard.failures(ACCOUNT) == {Factor.PASSWORD: 0, Factor.TOTP: 0, Factor.SMS: 0}
    assert guard.record_failure(ACCOUNT, Factor.PASSWORD).allowed  # counting again from 1
    assert guard.failures(ACCOUNT)[Factor.PASSWORD] == 1


def test_reset_says_whether_the_state_it_replaced_was_damaged(
        kyso: Kyso, clock: FrozenClock) -> None:
    guard = sql_guard(kyso, clock)
    assert guard.reset(ACCOUNT) is False  # none stored: a fresh one is written
    assert stored(kyso)[0] == 1
    fail(guard, clock, 2)
    assert guard.reset(ACCOUNT) is False
    assert guard.failures(ACCOUNT)[Factor.PASSWORD] == 0
    kyso.store.write(lambda conn: conn.execute(
        sa.update(lockout_states).values(state="garbage, not JSON")))
    assert guard.reset(ACCOUNT) is True
    assert guard.reset(ACCOUNT) is False
    assert stored(kyso) == (6, encode_lockout_state(LockoutState(version=6)))


@pytest.mark.parametrize("version", [0, -2, pytest.param("three", marks=pytest.mark.sqlite_only)])
def test_a_damaged_state_without_a_usable_version_cannot_be_reset_and_says_so(
        kyso: Kyso, clock: FrozenClock, version: Any) -> None:
    guard = sql_guard(kyso, clock)
    store_row(kyso, version, "{not json")
    assert not guard.check(ACCOUNT).allowed
    with pytest.raises(DamagedLockoutStateError, match="cannot be reset") as exc:
        guard.unlock(ACCOUNT)
    assert exc.value.version is None
    assert stored(kyso) == (version, "{not json")
