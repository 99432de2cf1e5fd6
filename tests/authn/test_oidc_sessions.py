"""Browser sessions: idle and absolute limits, rotation, CSRF tokens."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from kyso.authn.oidc_sessions import SessionStore, session_hash
from kyso.clock import FrozenClock
from kyso.context import Kyso
from kyso.store.schema import oidc_sessions


@pytest.fixture
def sessions(kyso: Kyso) -> SessionStore:
    return SessionStore(kyso.store, kyso.clock, idle=dt.timedelta(minutes=15),
                        absolute=dt.timedelta(hours=10))


def test_only_the_hash_of_the_cookie_is_stored(sessions: SessionStore, kyso: Kyso) -> None:
    cookie, session = sessions.create({"stage": "password"})
    with kyso.store.read() as conn:
        keys = [r[0] for r in conn.execute(sa.select(oidc_sessions.c.id_hash))]
    assert keys == [session_hash(cookie)]
    assert cookie not in repr(session)


def test_idle_session_dies_and_use_keeps_it_alive(sessions: SessionStore,
                                                  clock: FrozenClock) -> None:
    cookie, _ = sessions.create()
    clock.advance(dt.timedelta(minutes=14))
    assert sessions.load(cookie) is not None  # used: idle timer restarts
    clock.advance(dt.timedelta(minutes=14))
    assert sessions.load(cookie) is not None
    clock.advance(dt.timedelta(minutes=15))
    assert sessions.load(cookie) is None


def test_absolute_limit_ends_even_a_busy_session(kyso: Kyso, clock: FrozenClock) -> None:
    store = SessionStore(kyso.store, kyso.clock, idle=dt.timedelta(hours=1),
                         absolute=dt.timedelta(hours=2))
    cookie, _ = store.create()
    for _ in range(3):
        clock.advance(dt.timedelta(minutes=50))
        alive = store.load(cookie)
    assert alive is None


def test_absolute_limit_is_capped_at_24_hours(kyso: Kyso) -> None:
    store = SessionStore(kyso.store, kyso.clock, idle=dt.timedelta(hours=1),
                         absolute=dt.timedelta(hours=100))
    assert store.absolute == dt.timedelta(hours=24)


def test_rotation_ends_the_old_id_and_authenticates_a_new_one(sessions: SessionStore) -> None:
    old, session = sessions.create({"stage": "otp"})
    new, rotated = sessions.rotate(session, subject="u-1", auth_time=session.created_at,
                                   acr="urn:vn:vneid:loa:2", amr=("pwd", "otp", "mfa"))
    assert new != old
    assert sessions.load(old) is None
    assert rotated.authenticated
    assert rotated.sid
    assert rotated.sid != session.sid


def test_csrf_token_is_bound_to_the_session(sessions: SessionStore) -> None:
    a, session_a = sessions.create()
    b, session_b = sessions.create()
    token_a = sessions.csrf_token(a, session_a)
    assert sessions.check_csrf(a, session_a, token_a)
    assert not sessions.check_csrf(b, session_b, token_a)
    assert not sessions.check_csrf(a, session_a, token_a.upper())
    for bad in (None, "", "0" * 64, token_a[:-1], 42, "é" * 64):
        assert not sessions.check_csrf(a, session_a, bad)


@pytest.mark.parametrize("cookie", [None, "", "short", "x" * 500, "é" * 40, 12345])
def test_garbage_cookies_find_no_session(sessions: SessionStore, cookie: object) -> None:
    assert sessions.load(cookie) is None


def test_ended_session_stays_ended(sessions: SessionStore) -> None:
    cookie, session = sessions.create()
    assert sessions.end(session)
    assert not sessions.end(session)
    assert sessions.load(cookie) is None
