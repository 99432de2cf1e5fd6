"""Helpers shared by the login tests (tests/authn/test_login.py, test_login_admin.py; imported
by name): the citizen, settings views, failing logins, SMS codes, audit events, and damaging a
stored lockout state the way a broken disk or a bad manual edit would."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import re
from typing import Any

import pytest
import sqlalchemy as sa

from conftest import audit_events
from kyso.authn.login import LoginService
from kyso.authn.registry import Identity, Person, Registry
from kyso.clock import FrozenClock
from kyso.context import Kyso
from kyso.errors import AccountLockedError, AuthenticationFailedError
from kyso.store.schema import lockout_states

ID_NUMBER = "019090012345"
UNKNOWN_ID = "019090054321"
PASSWORD = "tram nam trong coi nguoi ta"
PHONE = "+84912345678"
NEXT_TRY = dt.timedelta(seconds=2)  # past Keycloak's 1 s quick-login check


def register(kyso: Kyso, service: LoginService) -> Identity:
    """The citizen of :data:`ID_NUMBER` (level 1, a phone, :data:`PASSWORD`)."""
    created = Registry(kyso.store, kyso.clock).create(
        Person.of(id_number=ID_NUMBER, full_name="Nguyễn Văn Bình", birth_date="1990-03-04",
                  sex="male", phone="0912345678"), password_hash=None)
    service.set_password(created.subject, PASSWORD)
    return created


def sms_code(service: LoginService, subject: str) -> str:
    service.send_sms(subject)
    code = service.outbox.last_code(PHONE)  # type: ignore[attr-defined]
    assert code is not None
    return code


def with_authn(kyso: Kyso, **authn: Any) -> Kyso:
    """The same home (store, audit log) under other ``[authn]`` settings."""
    view = copy.copy(kyso)
    view.settings = dataclasses.replace(
        kyso.settings, authn=dataclasses.replace(kyso.settings.authn, **authn))
    return view


def fail_passwords(service: LoginService, clock: FrozenClock, times: int, *,
                   locks: bool = True) -> None:
    """``times`` wrong passwords, each past the quick-login check; the last one locks if
    ``locks``."""
    for attempt in range(times):
        with pytest.raises(AuthenticationFailedError) as exc:
            service.check_password(ID_NUMBER, f"wrong password {attempt}")
        assert isinstance(exc.value, AccountLockedError) == (locks and attempt == times - 1)
        clock.advance(NEXT_TRY)


def events(kyso: Kyso, *actions: str) -> list[dict[str, Any]]:
    return [e for e in audit_events(kyso) if e["layer"] == "authn"
            and (not actions or e["action"] in actions)]


def appears(needle: str, text: str) -> bool:
    return re.search(rf"(?<![0-9A-Za-z]){re.escape(needle)}(?![0-9A-Za-z])", text) is not None


def stored_lockout(kyso: Kyso, account: str) -> tuple[int, str] | None:
    """The ``lockout_states`` row of ``account`` as stored: (version, JSON text)."""
    with kyso.store.read() as conn:
        row = conn.execute(sa.select(lockout_states.c.version, lockout_states.c.state)
                           .where(lockout_states.c.account == account)).first()
    return None if row is None else (row.version, row.state)


def damage_lockout(kyso: Kyso, account: str, text: str = '{"failures": {"password": 3') -> None:
    """Overwrite the stored JSON of ``account``'s lockout state (inserting a row at version 4
    if there is none), keeping its version."""
    c = lockout_states.c

    def work(conn: sa.Connection) -> None:
        if conn.execute(sa.update(lockout_states).where(c.account == account)
                        .values(state=text)).rowcount == 0:
            conn.execute(sa.insert(lockout_states).values(account=account, version=4, state=text))

    kyso.store.write(work)
