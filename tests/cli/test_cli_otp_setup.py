"""``kyso id otp-setup | otp-confirm | password set``: enrolment through the command line,
clear refusals (exit 1, no traceback, masked ID), passwords never taken as arguments."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
from cli_support import (
    assert_refused,
    audit_lines,
    cli_env,  # noqa: F401 - autouse fixture
    run_main,
    run_ok,
)
from click.testing import CliRunner

from kyso.authn.login import LoginService, SecondFactor
from kyso.authn.registry import Identity, Person, Registry
from kyso.cli import cli
from kyso.clock import SystemClock
from kyso.config import load_settings
from kyso.context import Kyso, open_kyso
from kyso.errors import AuthenticationFailedError

ID_NUMBER = "019090012345"
PASSWORD = "tram nam trong coi nguoi ta"


@pytest.fixture
def registered(kyso: Kyso) -> Identity:
    """A citizen registered in the home the CLI runs on."""
    return Registry(kyso.store, kyso.clock).create(
        Person.of(id_number=ID_NUMBER, full_name="Nguyễn Văn Bình", birth_date="1990-03-04",
                  sex="male", phone="0912345678"), password_hash=None)


def service_at_now(home: Path) -> tuple[Kyso, LoginService]:
    """The CLI runs on the system clock; so does this check."""
    ctx = open_kyso(load_settings(home=home), clock=SystemClock(), actor="admin:test")
    return ctx, LoginService(ctx)


def setup_json(home: Path) -> dict[str, str]:
    data: dict[str, str] = json.loads(
        run_ok(home, "id", "otp-setup", "--id", ID_NUMBER, "--format", "json").stdout)
    return data


def test_otp_setup_prints_the_uri_and_a_qr_code(home: Path, registered: Identity) -> None:
    out = run_ok(home, "id", "otp-setup", "--id", ID_NUMBER).stdout
    assert "otpauth://totp/kyso:019%2A%2A%2A%2A%2A%2A345?secret=" in out
    assert "█" in out or "▀" in out or "▄" in out  # the compact terminal QR code
    assert ID_NUMBER not in out
    assert "019******345" in out


def test_otp_setup_json_holds_only_the_uri_and_credential_id(home: Path,
                                                             registered: Identity) -> None:
    data = setup_json(home)
    assert set(data) == {"credential_id", "uri"}
    assert data["uri"].startswith("otpauth://totp/")
    assert ID_NUMBER not in data["uri"]
    assert len(parse_qs(urlsplit(data["uri"]).query)["secret"][0]) == 32


def test_otp_confirm_activates_and_the_code_is_then_spent(home: Path,
                                                          registered: Identity) -> None:
    data = setup_json(home)
    secret = parse_qs(urlsplit(data["uri"]).query)["secret"][0]
    code = pyotp.TOTP(secret).now()
    out = run_ok(home, "id", "otp-confirm", "--id", ID_NUMBER, "--code", code,
                 "--format", "json").stdout
    active = json.loads(out)
    assert active["status"] == "active"
    assert active["credential_id"] == data["credential_id"]
    ctx, service = service_at_now(home)
    try:
        assert service.credentials.active_totp(registered.subject) == (
            data["credential_id"], secret)
        with pytest.raises(AuthenticationFailedError, match="invalid credentials"):
            service.check_otp(registered.subject, code, SecondFactor.TOTP)
    finally:
        ctx.close()
    actions = [e["action"] for e in audit_lines(home)]
    assert actions.count("UPDATE_CREDENTIAL") == 2


def test_a_wrong_code_is_refused_clearly(capsys: pytest.CaptureFixture[str], home: Path,
                                         registered: Identity) -> None:
    data = setup_json(home)
    secret = parse_qs(urlsplit(data["uri"]).query)["secret"][0]
    good = pyotp.TOTP(secret).now()
    bad = f"{(int(good) + 500_000) % 10**6:06d}"
    outcome = run_main(capsys, home, "id", "otp-confirm", "--id", ID_NUMBER, "--code", bad)
    assert_refused(outcome, 1, "did not verify")


def test_confirm_without_a_pending_enrolment_is_refused(capsys: pytest.CaptureFixture[str],
                                                        home: Path, registered: Identity) -> None:
    outcome = run_main(capsys, home, "id", "otp-confirm", "--id", ID_NUMBER, "--code", "123456")
    assert_refused(outcome, 1, "otp-setup")


@pytest.mark.parametrize("command", [
    ("id", "otp-setup"), ("id", "otp-confirm", "--code", "123456"), ("id", "password", "set"),
])
@pytest.mark.parametrize("bad_id", ["12345", "01909001234x", "０１９０９００１２３４５"])
def test_an_invalid_id_number_is_a_clear_error(capsys: pytest.CaptureFixture[str], home: Path,
                                               registered: Identity, command: tuple[str, ...],
                                               bad_id: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KYSO_EID_PASSWORD", PASSWORD)
    outcome = run_main(capsys, home, *command, "--id", bad_id)
    assert_refused(outcome, 1)
    assert "id" in outcome.err.lower()


@pytest.mark.parametrize("command", [("id", "otp-setup"), ("id", "password", "set")])
def test_an_unknown_account_is_a_clear_error_with_the_masked_number(
        capsys: pytest.CaptureFixture[str], home: Path, registered: Identity,
        command: tuple[str, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KYSO_EID_PASSWORD", PASSWORD)
    outcome = run_main(capsys, home, *command, "--id", "019090054321")
    assert_refused(outcome, 1, "no e-ID account", "019******321")
    assert "019090054321" not in outcome.text


def test_password_set_reads_a_file_and_the_password_then_logs_in(
        home: Path, registered: Identity, tmp_path: Path) -> None:
    secret_file = tmp_path / "pw.txt"
    secret_file.write_text(PASSWORD + "\n", encoding="utf-8")
    out = run_ok(home, "id", "password", "set", "--id", ID_NUMBER, "--password-file",
                 str(secret_file)).stdout
    assert "019******345" in out
    ctx, service = service_at_now(home)
    try:
        assert service.check_password(ID_NUMBER, PASSWORD).subject == registered.subject
    finally:
        ctx.close()
    text = (home / "audit").as_posix()
    assert PASSWORD not in "".join(p.read_text() for p in Path(text).rglob("*.jsonl"))


def test_password_set_reads_the_environment(home: Path, registered: Identity,
                                            monkeypatch: pytest.MonkeyPatch,
                                            kyso: Kyso) -> None:
    monkeypatch.setenv("KYSO_EID_PASSWORD", PASSWORD)
    run_ok(home, "id", "password", "set", "--id", ID_NUMBER, "--format", "json")
    assert Registry(kyso.store, kyso.clock).password_hash(registered.subject)


def test_password_set_prompts_twice_in_a_terminal(home: Path, registered: Identity,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  kyso: Kyso) -> None:
    monkeypatch.setattr("kyso.cliutil._stdin_is_tty", lambda: True)
    result = CliRunner().invoke(cli, ["--home", str(home), "id", "password", "set", "--id",
                                      ID_NUMBER], input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    assert Registry(kyso.store, kyso.clock).password_hash(registered.subject)


def test_password_set_refuses_a_weak_password_without_echoing_it(
        capsys: pytest.CaptureFixture[str], home: Path, registered: Identity,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KYSO_EID_PASSWORD", "password123")
    outcome = run_main(capsys, home, "id", "password", "set", "--id", ID_NUMBER)
    assert_refused(outcome, 1, "policy")
    assert "password123" not in outcome.text


def test_the_password_is_never_an_argument(capsys: pytest.CaptureFixture[str], home: Path,
                                           registered: Identity) -> None:
    outcome = run_main(capsys, home, "id", "password", "set", "--id", ID_NUMBER,
                       "--password", PASSWORD)
    assert outcome.code == 2
    assert PASSWORD not in outcome.text


def test_without_a_password_source_it_is_a_usage_error(capsys: pytest.CaptureFixture[str],
                                                       home: Path, registered: Identity,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KYSO_EID_PASSWORD", raising=False)
    monkeypatch.setattr("kyso.cliutil._stdin_is_tty", lambda: False)
    outcome = run_main(capsys, home, "id", "password", "set", "--id", ID_NUMBER)
    assert_refused(outcome, 2, "KYSO_EID_PASSWORD")


def test_help_shows_examples() -> None:
    for args in (["id", "otp-setup", "--help"], ["id", "otp-confirm", "--help"],
                 ["id", "password", "set", "--help"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0
        assert "Examples:" in result.output

