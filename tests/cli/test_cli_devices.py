"""``kyso id device list|retire``: table and JSON output, clear refusals (exit 1, no traceback,
no raw ID number) for a malformed ID number, an unknown account or an unknown device."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_support import (
    assert_refused,
    audit_lines,
    cli_env,  # noqa: F401 - autouse fixture
    run_main,
    run_ok,
)
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from conftest import FAST_KDF, T0
from kyso.authn.devices import Device, Devices
from kyso.authn.registry import Level, Person, Registry
from kyso.clock import FrozenClock
from kyso.config import load_settings
from kyso.context import open_kyso

AN_ID = "019090012345"
BINH_ID = "001085001234"


def spki() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass(frozen=True)
class Setup:
    home: Path
    active: Device
    pending_id: str
    other_device: Device


@pytest.fixture
def setup(home: Path) -> Setup:
    """An's account with an active and a pending device; Bình's account with one device."""
    kyso = open_kyso(load_settings(home=home, environ=FAST_KDF), clock=FrozenClock(T0),
                     actor="admin:test")
    try:
        registry = Registry(kyso.store, kyso.clock)
        an = registry.create(Person.of(id_number=AN_ID, full_name="Nguyễn Văn An",
                                       birth_date="1990-05-17", sex="male", phone="0912345678"),
                             password_hash=None, level=Level.TWO)
        binh = registry.create(Person.of(id_number=BINH_ID, full_name="Trần Văn Bình",
                                         birth_date="1985-01-01", sex="male"),
                               password_hash=None, level=Level.TWO)
        devices = Devices(kyso)
        active = devices.bind_first(an.subject, spki(), "iPhone của An")
        pending = devices.request_new(an.subject, spki(), "Samsung của An")
        other = devices.bind_first(binh.subject, spki(), "Bình's phone")
    finally:
        kyso.close()
    return Setup(home, active, pending.device_id, other)


def test_device_list_json_shows_every_device_without_the_raw_id(setup: Setup) -> None:
    result = run_ok(setup.home, "id", "device", "list", "--id", AN_ID, "--format", "json")
    data = json.loads(result.stdout)
    assert data["id_number"] == "019******345"
    assert AN_ID not in result.stdout
    by_id = {d["id"]: d for d in data["devices"]}
    assert set(by_id) == {setup.active.id, setup.pending_id}
    active = by_id[setup.active.id]
    assert active["status"] == "active"
    assert active["name"] == "iPhone của An"
    assert active["thumbprint"] == setup.active.thumbprint
    assert active["approved_by"] == "first-binding"
    assert active["created_at"] == T0.isoformat()
    assert by_id[setup.pending_id]["status"] == "pending"


def test_device_list_table_names_each_device(setup: Setup) -> None:
    out = run_ok(setup.home, "id", "device", "list", "--id", AN_ID).stdout
    for needle in (setup.active.id, setup.pending_id, "active", "pending", "iPhone của An",
                   setup.active.thumbprint, "019******345", "2026-11-23T09:00:00+07:00"):
        assert needle in out, needle
    assert AN_ID not in out
    assert setup.other_device.id not in out


def test_device_retire_retires_it_and_records_an_event(setup: Setup) -> None:
    data = json.loads(run_ok(setup.home, "id", "device", "retire", "--id", AN_ID, "--device",
                             setup.active.id, "--format", "json").stdout)
    assert data["id"] == setup.active.id
    assert data["status"] == "retired"
    assert data["retired_at"] is not None
    listed = json.loads(run_ok(setup.home, "id", "device", "list", "--id", AN_ID,
                               "--format", "json").stdout)
    assert {d["id"]: d["status"] for d in listed["devices"]}[setup.active.id] == "retired"
    event = [e for e in audit_lines(setup.home) if e["action"] == "DEVICE_RETIRED"][-1]
    assert event["object"] == f"device:{setup.active.id}"
    assert event["outcome"] == "success"
    assert AN_ID not in json.dumps(audit_lines(setup.home))


def test_device_retire_text_output(setup: Setup) -> None:
    out = run_ok(setup.home, "id", "device", "retire", "--id", AN_ID, "--device",
                 setup.pending_id).stdout
    assert f"device {setup.pending_id} (Samsung của An) of 019******345 retired" in out


@pytest.mark.parametrize(("args", "needles"), [
    (("list", "--id", "01909001234"), ("12 digits",)),
    (("list", "--id", "abc"), ("ASCII digits",)),
    (("list", "--id", "033301000124"), ("no e-ID account", "033******124")),
    (("retire", "--id", "033301000124", "--device", "dev-x"), ("no e-ID account",)),
    (("retire", "--id", AN_ID, "--device", "dev-unknown"), ("no such device",)),
    (("retire", "--id", AN_ID, "--device", "bad device id!"), ("device id",)),
    (("retire", "--id", AN_ID, "--device", "x" * 500), ("device id",)),
])
def test_bad_input_is_refused_with_a_clear_message(setup: Setup, capsys: pytest.CaptureFixture[str],
                                                   args: tuple[str, ...],
                                                   needles: tuple[str, ...]) -> None:
    outcome = run_main(capsys, setup.home, "id", "device", *args)
    assert_refused(outcome, 1, *needles)
    assert "033301000124" not in outcome.text


def test_retiring_another_accounts_device_is_refused(setup: Setup,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    outcome = run_main(capsys, setup.home, "id", "device", "retire", "--id", AN_ID, "--device",
                       setup.other_device.id)
    assert_refused(outcome, 1, "no such device for this account")
    data = json.loads(run_ok(setup.home, "id", "device", "list", "--id", BINH_ID,
                             "--format", "json").stdout)
    assert data["devices"][0]["status"] == "active"


def test_retiring_twice_is_refused(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    run_ok(setup.home, "id", "device", "retire", "--id", AN_ID, "--device", setup.active.id)
    outcome = run_main(capsys, setup.home, "id", "device", "retire", "--id", AN_ID, "--device",
                       setup.active.id)
    assert_refused(outcome, 1, "already retired")


def test_missing_options_are_usage_errors(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    assert_refused(run_main(capsys, setup.home, "id", "device", "list"), 2, "--id")
    assert_refused(run_main(capsys, setup.home, "id", "device", "retire", "--id", AN_ID), 2,
                   "--device")


def test_device_list_in_a_home_without_a_database_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty-home"
    outcome = run_main(capsys, empty, "id", "device", "list", "--id", AN_ID)
    assert_refused(outcome, 1)
    assert not (empty / "kyso.db").exists()


def test_help_shows_examples(setup: Setup) -> None:
    for command in ("list", "retire"):
        out = run_ok(setup.home, "id", "device", command, "--help").stdout
        assert "Examples:" in out
        assert f"kyso id device {command} --id 019090012345" in out
