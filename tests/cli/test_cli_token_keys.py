"""``kyso id keys list|rotate``: the provider's token signing keys rotate from the command line;
a token signed before the rotation still verifies, both keys are listed, the rotation is one
audit event, and a missing key set or a wrong passphrase is a clear exit 1 (also audited)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from cli_support import assert_refused, audit_lines, cli_env, mode, run_main  # noqa: F401 - autouse

from conftest import FAST_KDF
from kyso.authn.key_store import KEYSET_FILE, PUBLIC_JWKS_FILE, load_key_set, save_key_set
from kyso.authn.keys import KeySet
from kyso.authn.tokens import TokenType, issue
from kyso.clock import FrozenClock, SystemClock
from kyso.config import ENV_TOKEN_KEY_PASSPHRASE, load_settings
from kyso.context import open_kyso

ISSUER = "https://id.thainguyen.gov.vn"
API = "hotich-api"
KEY_PASSPHRASE = "token-key-passphrase"
WRONG_PASSPHRASE = "not-the-token-key-passphrase"


def now() -> dt.datetime:
    return SystemClock().now()  # the CLI's clock


@pytest.fixture
def home(home: Path) -> Path:
    """A home with its database and audit log (as `kyso serve` leaves it)."""
    open_kyso(load_settings(home=home, environ=FAST_KDF)).close()
    return home


@pytest.fixture
def keys(home: Path, monkeypatch: pytest.MonkeyPatch) -> KeySet:
    """The home's key set, created three hours ago; the passphrase in the environment."""
    key_set = KeySet.create(FrozenClock(now() - dt.timedelta(hours=3)))
    save_key_set(home / "secrets" / "token-keys", key_set, KEY_PASSPHRASE, iterations=2000)
    monkeypatch.setenv(ENV_TOKEN_KEY_PASSPHRASE, KEY_PASSPHRASE)
    return key_set


def keys_dir(home: Path) -> Path:
    return home / "secrets" / "token-keys"


def access_token(keys: KeySet, at: dt.datetime | None = None) -> str:
    clock = FrozenClock(at or now())
    return issue(keys, typ=TokenType.ACCESS, issuer=ISSUER, subject="u-citizen", audience=API,
                 lifetime=dt.timedelta(minutes=30), clock=clock,
                 claims={"acr": "urn:vn:vneid:loa:2", "client_id": "dichvucong",
                         "scope": "openid"})


def verify(capsys: pytest.CaptureFixture[str], home: Path, token: str) -> Any:
    return run_main(capsys, home, "token", "verify", token, "--audience", API, "--issuer",
                    ISSUER, "--min-level", "2")


def rotations(home: Path) -> list[dict[str, Any]]:
    return [e for e in audit_lines(home) if e["action"] == "TOKEN_KEY_ROTATED"]


# --- rotate -----------------------------------------------------------------------------------


def test_rotate_makes_a_new_current_key_and_old_tokens_still_verify(
        capsys: pytest.CaptureFixture[str], home: Path, keys: KeySet) -> None:
    before = access_token(keys, now() - dt.timedelta(minutes=1))
    outcome = run_main(capsys, home, "id", "keys", "rotate", "--format", "json")
    assert outcome.code == 0, outcome.text
    result = outcome.json()
    assert result["previous"] == keys.current.kid
    assert result["current"] == keys.next.kid  # type: ignore[union-attr]  # published before
    assert result["fresh"] is False
    assert [k["kid"] for k in result["keys"]] == [result["current"], result["next"],
                                                  keys.current.kid]

    on_disk = load_key_set(keys_dir(home), KEY_PASSPHRASE)
    assert on_disk.current.kid == result["current"]
    assert on_disk.next is not None
    assert on_disk.next.kid == result["next"]
    assert [k.kid for k in on_disk.previous] == [keys.current.kid]
    published = json.loads((keys_dir(home) / PUBLIC_JWKS_FILE).read_text())
    assert [k["kid"] for k in published["keys"]] == [k["kid"] for k in result["keys"]]
    for name in (KEYSET_FILE, PUBLIC_JWKS_FILE, f"{result['next']}.key.pem"):
        assert mode(keys_dir(home) / name) == 0o600, name
    assert (keys_dir(home) / f"{result['next']}.key.pem").read_bytes().startswith(
        b"-----BEGIN ENCRYPTED PRIVATE KEY-----")

    old = verify(capsys, home, before)  # signed by the retired key before the rotation
    assert old.code == 0, old.text
    assert old.out.startswith("PASS")
    new = verify(capsys, home, access_token(on_disk))
    assert new.code == 0, new.text


def test_rotate_text_output_names_both_keys_and_when_the_old_one_stops(
        capsys: pytest.CaptureFixture[str], home: Path, keys: KeySet) -> None:
    outcome = run_main(capsys, home, "id", "keys", "rotate")
    assert outcome.code == 0, outcome.text
    on_disk = load_key_set(keys_dir(home), KEY_PASSPHRASE)
    new = on_disk.current.kid
    assert outcome.out.startswith("Token signing key rotated")
    assert f"{new} (signs from now on; published since the last rotation)" in outcome.out
    assert f"{on_disk.next.kid} (published now" in outcome.out  # type: ignore[union-attr]
    assert f"{keys.current.kid} (verifies until" in outcome.out
    assert "+07:00" in outcome.out


def test_rotation_is_one_audit_event_naming_the_new_and_old_kid(
        capsys: pytest.CaptureFixture[str], home: Path, keys: KeySet) -> None:
    assert run_main(capsys, home, "id", "keys", "rotate").code == 0
    new = load_key_set(keys_dir(home), KEY_PASSPHRASE).current.kid
    (event,) = rotations(home)
    assert (event["layer"], event["outcome"], event["object"]) == ("authn", "success", new)
    assert event["details"]["previous_kid"] == keys.current.kid
    assert event["details"]["fresh"] is False
    assert event["details"]["next_kid"] == load_key_set(
        keys_dir(home), KEY_PASSPHRASE).next.kid  # type: ignore[union-attr]
    assert KEY_PASSPHRASE not in json.dumps(audit_lines(home))


def test_rotate_compromised_signs_with_a_key_never_published_and_drops_every_other_key(
        capsys: pytest.CaptureFixture[str], home: Path, keys: KeySet) -> None:
    published = {k["kid"] for k in json.loads((keys_dir(home) / PUBLIC_JWKS_FILE).read_text())[
        "keys"]}
    before = access_token(keys)
    outcome = run_main(capsys, home, "id", "keys", "rotate", "--compromised", "--format", "json")
    assert outcome.code == 0, outcome.text
    result = outcome.json()
    assert (result["fresh"], result["compromised"]) == (True, True)
    assert result["current"] not in published
    assert result["dropped"] == [k.kid for k in keys]
    assert result["previous_verifies_until"] is None
    assert [k["kid"] for k in result["keys"]] == [result["current"], result["next"]]
    (event,) = rotations(home)
    assert (event["details"]["fresh"], event["details"]["compromised"]) == (True, True)
    refused = verify(capsys, home, before)  # signed by a dropped key
    assert refused.code != 0
    text = run_main(capsys, home, "id", "keys", "rotate", "--compromised")
    assert "(signs from now on; never published before)" in text.out
    assert f"{result['current']} (dropped: verifies nothing any more)" in text.out


def test_list_shows_the_current_and_the_retiring_key(
        capsys: pytest.CaptureFixture[str], home: Path, keys: KeySet) -> None:
    assert run_main(capsys, home, "id", "keys", "rotate").code == 0
    new = load_key_set(keys_dir(home), KEY_PASSPHRASE).current.kid
    text = run_main(capsys, home, "id", "keys", "list")
    assert text.code == 0, text.text
    lines = {line.split()[1]: line for line in text.out.splitlines() if " " in line.strip()
             and line.split()[1] in (new, keys.current.kid)}
    assert "current" in lines[new]
    assert "retiring until" in lines[keys.current.kid]
    listed = run_main(capsys, home, "id", "keys", "list", "--format", "json").json()
    assert listed["current"] == new
    states = {k["kid"]: k for k in listed["keys"]}
    assert states[new]["state"] == "current"
    old = states[keys.current.kid]
    assert old["state"] == "retiring"
    retired = dt.datetime.fromisoformat(old["retired_at"])
    assert dt.datetime.fromisoformat(old["verifies_until"]) == retired + dt.timedelta(
        hours=1, seconds=60)  # the default longest token lifetime + the clock-skew leeway


def test_list_needs_no_passphrase(capsys: pytest.CaptureFixture[str], home: Path, keys: KeySet,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_TOKEN_KEY_PASSPHRASE)
    listed = run_main(capsys, home, "id", "keys", "list", "--format", "json")
    assert listed.code == 0, listed.text
    assert [k["kid"] for k in listed.json()["keys"]] == [k.kid for k in keys]
    assert [k["state"] for k in listed.json()["keys"]] == ["current", "next"]
    assert listed.json()["next"] == keys.next.kid  # type: ignore[union-attr]


def test_a_key_past_its_window_is_listed_retired_and_dropped_by_the_next_rotation(
        capsys: pytest.CaptureFixture[str], home: Path, keys: KeySet) -> None:
    long_ago = FrozenClock(now() - dt.timedelta(hours=2, minutes=50))
    rotated = keys.rotate(long_ago)  # the first key retired 2 h 50 ago: its window is over
    save_key_set(keys_dir(home), rotated, KEY_PASSPHRASE, iterations=2000)
    listed = run_main(capsys, home, "id", "keys", "list", "--format", "json").json()
    assert {k["kid"]: k["state"] for k in listed["keys"]} == {
        rotated.current.kid: "current", rotated.next.kid: "next",  # type: ignore[union-attr]
        keys.current.kid: "retired"}
    result = run_main(capsys, home, "id", "keys", "rotate", "--format", "json").json()
    assert result["dropped"] == [keys.current.kid]
    assert not (keys_dir(home) / f"{keys.current.kid}.key.pem").exists()
    (event,) = rotations(home)
    assert event["details"]["dropped"] == [keys.current.kid]


def test_passphrase_can_come_from_a_file(capsys: pytest.CaptureFixture[str], home: Path,
                                        keys: KeySet, monkeypatch: pytest.MonkeyPatch,
                                        tmp_path: Path) -> None:
    monkeypatch.delenv(ENV_TOKEN_KEY_PASSPHRASE)
    secret = tmp_path / "token.pass"
    secret.write_text(KEY_PASSPHRASE + "\n")
    outcome = run_main(capsys, home, "id", "keys", "rotate", "--key-passphrase-file", secret)
    assert outcome.code == 0, outcome.text
    assert load_key_set(keys_dir(home), KEY_PASSPHRASE).current.kid != keys.current.kid


# --- refusals ---------------------------------------------------------------------------------


def test_rotate_without_a_key_set_is_a_clear_exit_1_and_audited(
        capsys: pytest.CaptureFixture[str], home: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_TOKEN_KEY_PASSPHRASE, KEY_PASSPHRASE)
    outcome = run_main(capsys, home, "id", "keys", "rotate")
    assert_refused(outcome, 1, "no token key set", "kyso serve")
    assert not keys_dir(home).exists()  # nothing created
    (event,) = rotations(home)
    assert event["outcome"] == "failure"
    assert "no token key set" in event["details"]["reason"]


def test_list_without_a_key_set_is_a_clear_exit_1(capsys: pytest.CaptureFixture[str],
                                                  home: Path) -> None:
    assert_refused(run_main(capsys, home, "id", "keys", "list"), 1, "no token key set")


def test_rotate_with_a_wrong_passphrase_is_exit_1_changes_nothing_and_is_audited(
        capsys: pytest.CaptureFixture[str], home: Path, keys: KeySet,
        monkeypatch: pytest.MonkeyPatch) -> None:
    before = {p.name: p.read_bytes() for p in keys_dir(home).iterdir() if p.is_file()
              and not p.name.startswith(".")}
    monkeypatch.setenv(ENV_TOKEN_KEY_PASSPHRASE, WRONG_PASSPHRASE)
    outcome = run_main(capsys, home, "id", "keys", "rotate")
    assert_refused(outcome, 1, "wrong token key passphrase")
    assert WRONG_PASSPHRASE not in outcome.text
    after = {p.name: p.read_bytes() for p in keys_dir(home).iterdir() if p.is_file()
             and not p.name.startswith(".")}
    assert after == before
    (event,) = rotations(home)
    assert (event["outcome"], event["object"]) == ("failure", keys.current.kid)
    assert "wrong token key passphrase" in event["details"]["reason"]
    assert WRONG_PASSPHRASE not in json.dumps(audit_lines(home))


def test_rotate_without_any_passphrase_source_is_a_usage_error(
        capsys: pytest.CaptureFixture[str], home: Path, keys: KeySet,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_TOKEN_KEY_PASSPHRASE)
    outcome = run_main(capsys, home, "id", "keys", "rotate")
    assert_refused(outcome, 2, ENV_TOKEN_KEY_PASSPHRASE)
    assert load_key_set(keys_dir(home), KEY_PASSPHRASE).current.kid == keys.current.kid
    assert rotations(home) == []


def test_corrupt_index_is_a_clear_exit_1(capsys: pytest.CaptureFixture[str], home: Path,
                                         keys: KeySet) -> None:
    (keys_dir(home) / KEYSET_FILE).write_text("{not json")
    assert_refused(run_main(capsys, home, "id", "keys", "list"), 1, "not JSON")
    assert_refused(run_main(capsys, home, "id", "keys", "rotate"), 1, "not JSON")


@pytest.mark.parametrize("command", ["list", "rotate"])
def test_help_has_examples(capsys: pytest.CaptureFixture[str], command: str) -> None:
    outcome = run_main(capsys, None, "id", "keys", command, "--help")
    assert outcome.code == 0
    assert "Examples:" in outcome.out
    assert f"kyso id keys {command}" in outcome.out
