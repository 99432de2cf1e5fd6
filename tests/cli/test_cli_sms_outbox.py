"""``kyso id sms-outbox``: the simulated phones' inbox read from the command line — the code
it prints logs in, filters by account or phone, states (current, replaced, expired), clear
refusals, and neither the raw ID number nor a code in the audit log."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_support import (
    assert_refused,
    audit_lines,
    cli_env,  # noqa: F401 - autouse fixture
    run_json,
    run_main,
    run_ok,
)

from kyso.authn.login import LoginService, SecondFactor
from kyso.authn.passwords import PasswordHasher, hash_params
from kyso.authn.registry import Identity, Person, Registry
from kyso.clock import FrozenClock, SystemClock
from kyso.config import load_settings
from kyso.context import Kyso, open_kyso
from kyso.errors import AuthenticationFailedError

ID_NUMBER = "019090012345"
OTHER_ID = "019090054321"
PASSWORD = "tram nam trong coi nguoi ta"
CODE_LINE = re.compile(r"^\s*code\s+([0-9]{6})\s*$", re.M)


@pytest.fixture
def registered(kyso: Kyso) -> Identity:
    """A citizen with a password and a phone, in the home the CLI runs on."""
    return Registry(kyso.store, kyso.clock).create(
        Person.of(id_number=ID_NUMBER, full_name="Nguyễn Văn Bình", birth_date="1990-03-04",
                  sex="male", phone="0912345678"),
        password_hash=PasswordHasher(hash_params("test-fast")).hash(PASSWORD))


@pytest.fixture
def service(home: Path, registered: Identity) -> Iterator[LoginService]:
    """The login service of the home, on a clock that starts at the system's time (the CLI's)
    and that a test can move (SMS resends are 60 s apart)."""
    ctx = open_kyso(load_settings(home=home), clock=FrozenClock(SystemClock().now()),
                    actor="test")
    yield LoginService(ctx)
    ctx.close()


def advance(service: LoginService, delta: dt.timedelta) -> None:
    clock = service.kyso.clock
    assert isinstance(clock, FrozenClock)
    clock.advance(delta)


def test_the_code_the_outbox_prints_logs_in(home: Path, registered: Identity,
                                            service: LoginService) -> None:
    assert service.check_password(ID_NUMBER, PASSWORD).subject == registered.subject
    service.send_sms(registered.subject)
    out = run_ok(home, "id", "sms-outbox", "--id", ID_NUMBER, "--last").output
    assert "simulator" in out.lower()
    assert "+84******678" in out
    assert "current" in out
    codes = CODE_LINE.findall(out)
    assert len(codes) == 1
    result = service.check_otp(registered.subject, codes[0], SecondFactor.SMS)
    assert result.amr == ("pwd", "sms", "mfa")
    assert ID_NUMBER not in out
    assert "0912345678" not in out
    log = "".join(p.read_text(encoding="utf-8") for p in (home / "audit").rglob("*.jsonl"))
    assert ID_NUMBER not in log
    assert not re.search(rf"(?<![0-9]){codes[0]}(?![0-9])", log)
    [read] = [e for e in audit_lines(home) if e["action"] == "SMS_OUTBOX_READ"]
    assert read["details"]["phone_hint"] == "+84******678"
    assert read["details"]["count"] == 1


def test_json_lists_every_message_with_its_state(home: Path, registered: Identity,
                                                 service: LoginService) -> None:
    service.send_sms(registered.subject)
    advance(service, dt.timedelta(seconds=61))  # the resend interval
    service.send_sms(registered.subject)
    messages = run_json(home, "id", "sms-outbox", "--phone", "+84912345678", "--format", "json")
    assert [m["state"] for m in messages] == ["replaced", "current"]
    assert all(m["to"] == "+84******678" for m in messages)
    assert all(m["expires_at"].endswith("+07:00") for m in messages)
    first, second = (m["code"] for m in messages)
    assert second in messages[1]["text"]
    assert run_json(home, "id", "sms-outbox", "--format", "json", "--last") == messages[1:]
    # The replaced code no longer works; the current one does.
    with pytest.raises(AuthenticationFailedError, match="invalid credentials"):
        service.check_otp(registered.subject, first, SecondFactor.SMS)
    assert service.check_otp(registered.subject, second, SecondFactor.SMS).subject == \
        registered.subject


def test_an_expired_code_says_so(home: Path, registered: Identity) -> None:
    earlier = FrozenClock(SystemClock().now() - dt.timedelta(minutes=6))  # codes live 5
    ctx = open_kyso(load_settings(home=home), clock=earlier, actor="test")
    try:
        LoginService(ctx).send_sms(registered.subject)
    finally:
        ctx.close()
    [message] = run_json(home, "id", "sms-outbox", "--format", "json")
    assert message["state"] == "expired"


def test_an_empty_outbox_says_so(home: Path, registered: Identity) -> None:
    assert "no message to that phone" in run_ok(home, "id", "sms-outbox", "--id",
                                                ID_NUMBER).output
    assert run_json(home, "id", "sms-outbox", "--format", "json") == []


def test_refusals_are_clear(capsys: pytest.CaptureFixture[str], home: Path,
                            registered: Identity, kyso: Kyso) -> None:
    assert_refused(run_main(capsys, home, "id", "sms-outbox", "--id", ID_NUMBER, "--phone",
                            "0912345678"), 2, "not both")
    assert_refused(run_main(capsys, home, "id", "sms-outbox", "--phone", "12345"), 1,
                   "Vietnamese mobile number")
    unknown = run_main(capsys, home, "id", "sms-outbox", "--id", OTHER_ID)
    assert_refused(unknown, 1, "no e-ID account", "019******321")
    assert OTHER_ID not in unknown.text
    Registry(kyso.store, kyso.clock).create(
        Person.of(id_number=OTHER_ID, full_name="Lê Văn C", birth_date="1990-01-01",
                  sex="male"), password_hash=None)
    assert_refused(run_main(capsys, home, "id", "sms-outbox", "--id", OTHER_ID), 1,
                   "no phone number", "019******321")


def test_help_says_it_is_a_simulator_with_examples(home: Path) -> None:
    out = run_ok(home, "id", "sms-outbox", "--help").output
    assert "Examples:" in out
    assert "SIMULATOR" in out
    assert "no real SMS" in out
