"""``kyso id role grant|revoke|list``: text and JSON output, idempotent grants and revokes, the
audit events, and clear refusals (exit 1 for an unknown or malformed account, exit 2 for an
unknown role or a missing option; never a traceback or the raw ID number)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_support import (
    assert_refused,
    audit_lines,
    cli_env,  # noqa: F401 - autouse fixture
    run_main,
    run_ok,
)

from conftest import FAST_KDF, T0
from kyso.authn.registry import Level, Person, Registry
from kyso.authn.roles import roles_of
from kyso.clock import FrozenClock
from kyso.config import load_settings
from kyso.context import open_kyso

AN_ID = "019090012345"
BINH_ID = "001085001234"
NOBODY = "033301000124"


@pytest.fixture
def accounts(home: Path) -> dict[str, str]:
    """Two level-2 accounts (An, Bình) without roles; their subjects by ID number."""
    kyso = open_kyso(load_settings(home=home, environ=FAST_KDF), clock=FrozenClock(T0),
                     actor="admin:test")
    try:
        registry = Registry(kyso.store, kyso.clock)
        an = registry.create(Person.of(id_number=AN_ID, full_name="Nguyễn Văn An",
                                       birth_date="1990-05-17", sex="male"),
                             password_hash=None, level=Level.TWO)
        binh = registry.create(Person.of(id_number=BINH_ID, full_name="Trần Văn Bình",
                                         birth_date="1985-01-01", sex="male"),
                               password_hash=None, level=Level.TWO)
    finally:
        kyso.close()
    return {AN_ID: an.subject, BINH_ID: binh.subject}


def held(home: Path, subject: str) -> tuple[str, ...]:
    kyso = open_kyso(load_settings(home=home, environ=FAST_KDF))
    try:
        return roles_of(kyso.store, subject)
    finally:
        kyso.close()


def test_grant_gives_the_role_and_says_so(home: Path, accounts: dict[str, str]) -> None:
    out = run_ok(home, "id", "role", "grant", "--id", AN_ID, "--role", "auditor").stdout

    assert "granted auditor to 019******345" in out
    assert "roles of 019******345: auditor" in out
    assert AN_ID not in out
    assert held(home, accounts[AN_ID]) == ("auditor",)


def test_grant_json_and_granting_again_changes_nothing(home: Path,
                                                       accounts: dict[str, str]) -> None:
    first = json.loads(run_ok(home, "id", "role", "grant", "--id", AN_ID, "--role", "auditor",
                              "--format", "json").stdout)
    again = run_ok(home, "id", "role", "grant", "--id", AN_ID, "--role", "auditor").stdout

    assert first == {"id_number": "019******345", "subject": accounts[AN_ID], "role": "auditor",
                     "action": "grant", "changed": True, "roles": ["auditor"]}
    assert "019******345 already holds auditor; nothing changed" in again
    assert held(home, accounts[AN_ID]) == ("auditor",)


def test_revoke_takes_the_role_and_revoking_again_changes_nothing(
        home: Path, accounts: dict[str, str]) -> None:
    run_ok(home, "id", "role", "grant", "--id", AN_ID, "--role", "auditor")
    run_ok(home, "id", "role", "grant", "--id", AN_ID, "--role", "ca-admin")

    out = run_ok(home, "id", "role", "revoke", "--id", AN_ID, "--role", "auditor").stdout
    assert "revoked auditor from 019******345" in out
    assert "roles of 019******345: ca-admin" in out
    again = json.loads(run_ok(home, "id", "role", "revoke", "--id", AN_ID, "--role", "auditor",
                              "--format", "json").stdout)
    assert (again["changed"], again["action"], again["roles"]) == (False, "revoke", ["ca-admin"])
    assert held(home, accounts[AN_ID]) == ("ca-admin",)


def test_list_shows_every_grant_or_one_accounts(home: Path, accounts: dict[str, str]) -> None:
    assert "no roles granted" in run_ok(home, "id", "role", "list").stdout
    run_ok(home, "id", "role", "grant", "--id", AN_ID, "--role", "auditor")
    run_ok(home, "id", "role", "grant", "--id", BINH_ID, "--role", "ca-admin")

    table = run_ok(home, "id", "role", "list").stdout
    for needle in ("019******345", "001******234", "auditor", "ca-admin", accounts[AN_ID]):
        assert needle in table, needle
    assert AN_ID not in table
    assert BINH_ID not in table
    only = json.loads(run_ok(home, "id", "role", "list", "--id", BINH_ID, "--format",
                             "json").stdout)
    assert [(g["id_number"], g["role"], g["subject"]) for g in only] == [
        ("001******234", "ca-admin", accounts[BINH_ID])]
    assert only[0]["granted_by"].startswith("admin:")
    run_ok(home, "id", "role", "revoke", "--id", BINH_ID, "--role", "ca-admin")
    assert "no roles granted to that account" in run_ok(home, "id", "role", "list", "--id",
                                                        BINH_ID).stdout


def test_grants_and_revokes_are_audited_without_the_raw_id(home: Path,
                                                          accounts: dict[str, str]) -> None:
    run_ok(home, "id", "role", "grant", "--id", AN_ID, "--role", "auditor")
    run_ok(home, "id", "role", "revoke", "--id", AN_ID, "--role", "auditor")

    events = [e for e in audit_lines(home) if e["action"] in ("ROLE_GRANT", "ROLE_REVOKE")]
    assert [(e["action"], e["outcome"]) for e in events] == [("ROLE_GRANT", "success"),
                                                             ("ROLE_REVOKE", "success")]
    assert events[0]["actor"].startswith("admin:")
    assert events[0]["details"]["id_hint"] == "019******345"
    assert AN_ID not in json.dumps(audit_lines(home))


@pytest.mark.parametrize(("args", "needles"), [
    (("grant", "--id", NOBODY, "--role", "auditor"), ("no e-ID account", "033******124")),
    (("revoke", "--id", NOBODY, "--role", "auditor"), ("no e-ID account",)),
    (("list", "--id", NOBODY), ("no e-ID account",)),
    (("grant", "--id", "01909001234", "--role", "auditor"), ("12 digits",)),
    (("grant", "--id", "abc", "--role", "auditor"), ("ASCII digits",)),
])
def test_an_unknown_or_malformed_account_is_refused_with_exit_1(
        home: Path, accounts: dict[str, str], capsys: pytest.CaptureFixture[str],
        args: tuple[str, ...], needles: tuple[str, ...]) -> None:
    outcome = run_main(capsys, home, "id", "role", *args)
    assert_refused(outcome, 1, *needles)
    assert NOBODY not in outcome.text


@pytest.mark.parametrize("args", [
    ("grant", "--id", AN_ID, "--role", "admin"),
    ("grant", "--id", AN_ID),
    ("revoke", "--role", "auditor"),
])
def test_an_unknown_role_or_a_missing_option_is_a_usage_error(
        home: Path, accounts: dict[str, str], capsys: pytest.CaptureFixture[str],
        args: tuple[str, ...]) -> None:
    assert_refused(run_main(capsys, home, "id", "role", *args), 2)
    assert held(home, accounts[AN_ID]) == ()


def test_help_shows_examples(home: Path, accounts: dict[str, str]) -> None:
    for command in ("grant", "revoke", "list"):
        out = run_ok(home, "id", "role", command, "--help").stdout
        assert "Examples:" in out
        assert f"kyso id role {command}" in out
