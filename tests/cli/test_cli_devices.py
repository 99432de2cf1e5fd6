"""``kyso id device list | bind | request | approval-message | approve | retire``: the whole
path through the CLI (bind → request → approve with the old device's signature, made by
`cryptography` or by openssl, or with a chip card check that runs passive authentication),
table and JSON output, and clear refusals (exit 1 or 2, no traceback, no raw ID number) for
unknown accounts, malformed ID numbers, keys, signatures and chips, tampered / rogue / foreign
chips, wrong signatures, expired, used and foreign requests."""

from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cli_support import (
    assert_refused,
    audit_lines,
    cli_env,  # noqa: F401 - autouse fixture
    run_json,
    run_main,
    run_ok,
)
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from devices_support import (
    AN_ID,
    AN_MASKED,
    BINH,
    BINH_ID,
    OFFICER,
    Citizen,
    devices_of,
    ds_serial,
    enrolled,
    new_key,
    open_home,
    private_pem,
    public_pem,
    rogue_chip,
    signature_file,
    tampered,
)

from conftest import FAST_KDF, T0
from kyso.authn.devices import Device, Devices, approval_message
from kyso.authn.keys import jwk_thumbprint
from kyso.authn.registry import Level, Person, Registry
from kyso.clock import FrozenClock, SystemClock
from kyso.config import load_settings
from kyso.context import open_kyso


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


# --- bind → request → approve (old device's signature or chip card check) ---------------------

@pytest.fixture
def an(home: Path, tmp_path: Path) -> Citizen:
    return enrolled(home, tmp_path)


@dataclass(frozen=True)
class Pending:
    """An's bound (old) device and a pending request for a new one, all through the CLI."""

    old_key: ec.EllipticCurvePrivateKey
    old_id: str
    new_key: ec.EllipticCurvePrivateKey
    new_id: str
    nonce: str


def bind_and_request(an: Citizen) -> Pending:
    old_key, new_key = new_key_pair()
    bound = run_json(an.home, "id", "device", "bind", "--id", AN_ID, "--public-key",
                     str(public_pem(old_key, an.work / "old.pub.pem")), "--name",
                     "iPhone của An", "--format", "json")
    request = run_json(an.home, "id", "device", "request", "--id", AN_ID, "--public-key",
                       str(public_pem(new_key, an.work / "new.pub.pem")), "--name",
                       "Samsung của An", "--format", "json")
    return Pending(old_key, bound["id"], new_key, request["device_id"], request["nonce"])


def new_key_pair() -> tuple[ec.EllipticCurvePrivateKey, ec.EllipticCurvePrivateKey]:
    return new_key(), new_key()


@pytest.fixture
def pending(an: Citizen) -> Pending:
    return bind_and_request(an)


def events(home: Path, action: str) -> list[dict[str, Any]]:
    return [e for e in audit_lines(home) if e["action"] == action]


def assert_old_retired_new_active(home: Path, p: Pending, approved_by: str) -> None:
    listed = devices_of(home)
    assert listed[p.old_id]["status"] == "retired"
    assert listed[p.new_id]["status"] == "active"
    assert listed[p.new_id]["approved_by"] == approved_by
    assert [d["status"] for d in listed.values()].count("active") == 1


def test_bind_request_and_approve_with_the_old_devices_signature(an: Citizen) -> None:
    old_key, new_key_ = new_key_pair()
    bound = run_json(an.home, "id", "device", "bind", "--id", AN_ID, "--public-key",
                     str(public_pem(old_key, an.work / "old.pub.pem")), "--name",
                     "iPhone của An", "--format", "json")
    assert bound["status"] == "active"
    assert bound["approved_by"] == "first-binding"
    assert bound["id_number"] == AN_MASKED
    assert bound["thumbprint"] == jwk_thumbprint(old_key.public_key())
    request = run_json(an.home, "id", "device", "request", "--id", AN_ID, "--public-key",
                       str(public_pem(new_key_, an.work / "new.pub.pem")), "--name",
                       "Samsung của An", "--format", "json")
    assert request["name"] == "Samsung của An"
    assert request["thumbprint"] == jwk_thumbprint(new_key_.public_key())
    assert devices_of(an.home)[request["device_id"]]["status"] == "pending"

    out = an.work / "approval.bin"
    shown = run_json(an.home, "id", "device", "approval-message", "--request", request["nonce"],
                     "--id", AN_ID, "--out", str(out), "--format", "json")
    expected = approval_message(nonce=request["nonce"], subject=request["subject"],
                                thumbprint=request["thumbprint"])
    assert out.read_bytes() == expected
    assert base64.b64decode(shown["message_base64"]) == expected
    sig = signature_file(old_key, out.read_bytes(), an.work / "sig.b64")
    approved = run_json(an.home, "id", "device", "approve", "--id", AN_ID, "--request",
                        request["nonce"], "--signature", str(sig), "--format", "json")
    assert approved["id"] == request["device_id"]
    assert approved["status"] == "active"
    assert approved["retired_device"] == bound["id"]
    p = Pending(old_key, bound["id"], new_key_, request["device_id"], request["nonce"])
    assert_old_retired_new_active(an.home, p, f"device:{bound['id']}")
    # one event per state change, none recorded twice, never the raw ID number
    assert [len(events(an.home, a)) for a in ("DEVICE_BOUND", "DEVICE_APPROVAL_REQUESTED",
                                              "DEVICE_APPROVED")] == [1, 1, 1]
    assert events(an.home, "DEVICE_APPROVED")[0]["details"]["method"] == "device-signature"
    assert AN_ID not in json.dumps(audit_lines(an.home), ensure_ascii=False)


def test_text_output_of_each_step_masks_the_id_number(an: Citizen) -> None:
    old_key, new_key_ = new_key_pair()
    bound = run_ok(an.home, "id", "device", "bind", "--id", AN_ID, "--public-key",
                   str(public_pem(old_key, an.work / "old.pub.pem"))).stdout
    assert "Device bound" in bound
    assert AN_MASKED in bound
    assert "e-ID app" in bound
    requested = run_ok(an.home, "id", "device", "request", "--id", AN_ID, "--public-key",
                       str(public_pem(new_key_, an.work / "new.pub.pem"))).stdout
    nonce = next(line.split()[1] for line in requested.splitlines()
                 if line.strip().startswith("request "))
    assert f"approval-message --request {nonce}" in requested
    message = run_ok(an.home, "id", "device", "approval-message", "--request", nonce).stdout
    encoded = next(line.split()[-1] for line in message.splitlines() if "base64" in line)
    sig = signature_file(old_key, base64.b64decode(encoded), an.work / "sig.b64")
    approved = run_ok(an.home, "id", "device", "approve", "--id", AN_ID, "--request", nonce,
                      "--signature", str(sig)).stdout
    assert "now the active device" in approved
    assert "device:dev-" in approved
    for text in (bound, requested, message, approved):
        assert AN_ID not in text


def test_openssl_signs_the_approval_message_and_kyso_accepts_it(an: Citizen,
                                                               pending: Pending) -> None:
    """An independent signer: openssl's ECDSA over the bytes kyso prints."""
    message = an.work / "approval.bin"
    run_ok(an.home, "id", "device", "approval-message", "--request", pending.nonce,
           "--out", str(message))
    key_file = private_pem(pending.old_key, an.work / "old.key.pem")
    der = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(key_file), str(message)],
                         check=True, capture_output=True).stdout
    sig = an.work / "openssl.sig.b64"
    sig.write_text(base64.b64encode(der).decode())
    run_ok(an.home, "id", "device", "approve", "--id", AN_ID, "--request", pending.nonce,
           "--signature", str(sig))
    assert_old_retired_new_active(an.home, pending, f"device:{pending.old_id}")


def test_approve_with_a_chip_check_at_the_counter(an: Citizen, pending: Pending) -> None:
    approved = run_json(an.home, "id", "device", "approve", "--id", AN_ID, "--request",
                        pending.nonce, "--chip", str(an.chip), "--officer", OFFICER,
                        "--format", "json")
    serial = ds_serial(an.home)
    assert approved["approved_by"] == f"chip:{serial}"
    assert approved["retired_device"] == pending.old_id
    assert_old_retired_new_active(an.home, pending, f"chip:{serial}")
    [event] = events(an.home, "DEVICE_APPROVED")
    assert event["actor"] == f"officer:{OFFICER}"
    assert event["details"]["ds_serial"] == serial
    assert set(event["details"]["checks"].values()) == {"PASSED"}
    assert AN_ID not in json.dumps(audit_lines(an.home), ensure_ascii=False)


def test_chip_check_with_explicit_trust_files(an: Citizen, pending: Pending) -> None:
    csca_dir = an.home / "csca"
    run_ok(an.home, "id", "device", "approve", "--id", AN_ID, "--request", pending.nonce,
           "--chip", str(an.chip), "--officer", OFFICER, "--csca", str(csca_dir / "csca.crt.pem"),
           "--crl", str(csca_dir / "csca.crl"))
    assert devices_of(an.home)[pending.new_id]["status"] == "active"


def test_chip_check_binds_a_new_device_after_the_old_one_was_retired(an: Citizen,
                                                                    pending: Pending) -> None:
    run_ok(an.home, "id", "device", "retire", "--id", AN_ID, "--device", pending.old_id)
    request = run_json(an.home, "id", "device", "request", "--id", AN_ID, "--public-key",
                       str(public_pem(new_key(), an.work / "third.pub.pem")), "--format", "json")
    out = run_ok(an.home, "id", "device", "approve", "--id", AN_ID, "--request",
                 request["nonce"], "--chip", str(an.chip), "--officer", OFFICER).stdout
    assert "(no active device before)" in out
    assert devices_of(an.home)[request["device_id"]]["status"] == "active"


# --- refusals -----------------------------------------------------------------------------------

def assert_still_pending(home: Path, p: Pending) -> None:
    listed = devices_of(home)
    assert listed[p.new_id]["status"] == "pending"
    assert listed[p.old_id]["status"] == "active"


def test_a_second_bind_is_refused_and_points_to_request(
        an: Citizen, pending: Pending, capsys: pytest.CaptureFixture[str]) -> None:
    other = public_pem(new_key(), an.work / "other.pub.pem")
    outcome = run_main(capsys, an.home, "id", "device", "bind", "--id", AN_ID, "--public-key",
                       other)
    assert_refused(outcome, 1, "already has an active device", "kyso id device request")
    assert AN_ID not in outcome.text
    assert events(an.home, "DEVICE_BIND_ERROR")[-1]["details"]["reason"] == "already-bound"
    assert_still_pending(an.home, pending)


def test_chips_that_do_not_pass_are_refused_and_leave_the_device_pending(
        an: Citizen, pending: Pending, capsys: pytest.CaptureFixture[str]) -> None:
    binh_chip = an.work / "binh-chip.json"
    run_ok(an.home, "id", "chip-issue", *BINH, "--out", str(binh_chip))
    cases = [
        (tampered(an.chip, an.work / "tampered.json"), ("data-group-hashes FAILED",)),
        (rogue_chip(an.work / "rogue.json"), ("ds-chain FAILED",)),
        (binh_chip, ("does not belong to this account",)),
    ]
    for chip, needles in cases:
        outcome = run_main(capsys, an.home, "id", "device", "approve", "--id", AN_ID,
                           "--request", pending.nonce, "--chip", chip, "--officer", OFFICER)
        assert_refused(outcome, 1, *needles)
        assert AN_ID not in outcome.text
        assert BINH_ID not in outcome.text
        assert_still_pending(an.home, pending)
    reasons = [e["details"]["reason"] for e in events(an.home, "DEVICE_APPROVAL_ERROR")]
    assert reasons == ["passive-auth", "passive-auth", "chip-mismatch"]
    text = json.dumps(audit_lines(an.home), ensure_ascii=False)
    assert AN_ID not in text
    assert BINH_ID not in text
    run_ok(an.home, "id", "device", "approve", "--id", AN_ID, "--request", pending.nonce,
           "--chip", str(an.chip), "--officer", OFFICER)  # the request stayed usable


def test_a_revoked_document_signer_is_refused(an: Citizen, pending: Pending,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    serial = ds_serial(an.home)
    run_ok(an.home, "id", "csca", "ds-revoke", serial, "--reason", "key-compromise")
    outcome = run_main(capsys, an.home, "id", "device", "approve", "--id", AN_ID, "--request",
                       pending.nonce, "--chip", an.chip, "--officer", OFFICER)
    assert_refused(outcome, 1, "ds-revocation FAILED")
    assert_still_pending(an.home, pending)


def test_a_wrong_signature_is_refused(an: Citizen, pending: Pending,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    message = run_json(an.home, "id", "device", "approval-message", "--request", pending.nonce,
                       "--format", "json")["message_base64"]
    by_new = signature_file(pending.new_key, base64.b64decode(message), an.work / "new.b64")
    other = signature_file(pending.old_key, b"another message", an.work / "other.b64")
    for sig in (by_new, other):
        outcome = run_main(capsys, an.home, "id", "device", "approve", "--id", AN_ID,
                           "--request", pending.nonce, "--signature", sig)
        assert_refused(outcome, 1, "does not verify")
    assert [e["details"]["reason"] for e in events(an.home, "DEVICE_APPROVAL_ERROR")] == [
        "bad-signature", "bad-signature"]
    assert_still_pending(an.home, pending)


def test_an_expired_request_is_refused(an: Citizen, database_url: str | None,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    old_key = new_key()
    run_ok(an.home, "id", "device", "bind", "--id", AN_ID, "--public-key",
           str(public_pem(old_key, an.work / "old.pub.pem")))
    # a request made an hour ago (the approval lives 5 minutes)
    kyso = open_home(an.home, database_url, FrozenClock(SystemClock().now() - dt.timedelta(hours=1)))
    try:
        subject = Registry(kyso.store, kyso.clock).get(AN_ID).subject
        req = Devices(kyso).request_new(subject, spki(), "stale phone")
    finally:
        kyso.close()
    outcome = run_main(capsys, an.home, "id", "device", "approval-message", "--request", req.nonce)
    assert_refused(outcome, 1, "expired")
    sig = signature_file(old_key, req.message, an.work / "sig.b64")
    outcome = run_main(capsys, an.home, "id", "device", "approve", "--id", AN_ID, "--request",
                       req.nonce, "--signature", sig)
    assert_refused(outcome, 1, "expired")
    outcome = run_main(capsys, an.home, "id", "device", "approve", "--id", AN_ID, "--request",
                       req.nonce, "--chip", an.chip, "--officer", OFFICER)
    assert_refused(outcome, 1, "expired")
    assert devices_of(an.home)[req.device_id]["status"] == "pending"
    assert [e["details"]["reason"] for e in events(an.home, "DEVICE_APPROVAL_ERROR")] == [
        "expired", "expired"]


def test_a_used_request_is_refused(an: Citizen, pending: Pending,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    run_ok(an.home, "id", "device", "approve", "--id", AN_ID, "--request", pending.nonce,
           "--chip", str(an.chip), "--officer", OFFICER)
    for args in (("approve", "--id", AN_ID, "--request", pending.nonce, "--chip", str(an.chip),
                  "--officer", OFFICER), ("approval-message", "--request", pending.nonce)):
        assert_refused(run_main(capsys, an.home, "id", "device", *args), 1, "already used")


def test_another_accounts_request_is_refused(an: Citizen, pending: Pending,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    binh_chip = an.work / "binh-chip.json"
    run_ok(an.home, "id", "chip-issue", *BINH, "--out", str(binh_chip))
    run_ok(an.home, "id", "enrol-l2", "--id", BINH_ID, "--chip", str(binh_chip), "--officer",
           OFFICER, "--face-score", "0.95", "--fingerprint-score", "0.97", "--consent")
    for args in (("approve", "--id", BINH_ID, "--request", pending.nonce, "--chip",
                  str(binh_chip), "--officer", OFFICER),
                 ("approval-message", "--id", BINH_ID, "--request", pending.nonce)):
        outcome = run_main(capsys, an.home, "id", "device", *args)
        assert_refused(outcome, 1, "not for this account")
        assert BINH_ID not in outcome.text
    assert_still_pending(an.home, pending)


def test_approval_message_never_overwrites(an: Citizen, pending: Pending,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = an.work / "approval.bin"
    out.write_bytes(b"keep me")
    outcome = run_main(capsys, an.home, "id", "device", "approval-message", "--request",
                       pending.nonce, "--out", out)
    assert_refused(outcome, 2, "already exists")
    assert out.read_bytes() == b"keep me"


def _bad_key_files(work: Path) -> dict[str, tuple[Path, str]]:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_pem = work / "rsa.pub.pem"
    rsa_pem.write_bytes(rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    p384 = work / "p384.pub.pem"
    p384.write_bytes(ec.generate_private_key(ec.SECP384R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    broken = work / "broken.pub.pem"
    good = public_pem(new_key(), work / "good.pub.pem").read_text().splitlines()
    broken.write_text("\n".join([good[0], good[1][:20], good[-1]]) + "\n")
    garbage = work / "garbage.bin"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    empty = work / "empty.pem"
    empty.write_bytes(b"")
    big = work / "big.pem"
    big.write_bytes(b"0" * 100_000)
    cert = work / "cert.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    truncated_der = work / "truncated.der"
    truncated_der.write_bytes(spki()[:-5])
    return {
        "private": (private_pem(new_key(), work / "old.key.pem"), "holds a private key"),
        "rsa": (rsa_pem, "must be EC P-256"),
        "p384": (p384, "must be EC P-256"),
        "broken-pem": (broken, "not a valid PEM public key"),
        "garbage": (garbage, "neither a PEM public key"),
        "empty": (empty, "is empty"),
        "big": (big, "larger than 64 KiB"),
        "certificate": (cert, "PEM CERTIFICATE, not a PUBLIC KEY"),
        "truncated-der": (truncated_der, "not a valid DER"),
        "missing": (work / "missing.pem", "cannot read"),
    }


@pytest.mark.parametrize("case", ["private", "rsa", "p384", "broken-pem", "garbage", "empty",
                                  "big", "certificate", "truncated-der", "missing"])
@pytest.mark.parametrize("command", ["bind", "request"])
def test_malformed_public_key_files_are_refused(an: Citizen, capsys: pytest.CaptureFixture[str],
                                                case: str, command: str) -> None:
    path, needle = _bad_key_files(an.work)[case]
    outcome = run_main(capsys, an.home, "id", "device", command, "--id", AN_ID, "--public-key",
                       path)
    assert_refused(outcome, 1, needle, path.name)
    assert "PRIVATE" not in outcome.text
    assert devices_of(an.home) == {}


@pytest.mark.parametrize(("content", "needle"), [
    (b"", "is empty"),
    (b"\xff\xfe not text", "not base64"),
    (b"!!!! not base64 ****", "not base64"),
    (b"QUJD", "not an ECDSA P-256 signature"),  # "ABC": base64, but no signature
    (b"A" * 5000, "larger than 4 KiB"),
])
def test_malformed_signature_files_are_refused(an: Citizen, pending: Pending,
                                               capsys: pytest.CaptureFixture[str],
                                               content: bytes, needle: str) -> None:
    sig = an.work / "sig.b64"
    sig.write_bytes(content)
    outcome = run_main(capsys, an.home, "id", "device", "approve", "--id", AN_ID, "--request",
                       pending.nonce, "--signature", sig)
    assert_refused(outcome, 1, needle)
    assert_still_pending(an.home, pending)


@pytest.mark.parametrize(("content", "needle"), [
    (b'{"format": "kyso-chip", "version": 1, "data_gr', "not valid JSON"),
    (b"\x89PNG garbage \x00\xff", "not UTF-8"),
    (b'"just a string"', "JSON object"),
])
def test_malformed_chip_files_are_refused(an: Citizen, pending: Pending,
                                          capsys: pytest.CaptureFixture[str], content: bytes,
                                          needle: str) -> None:
    chip = an.work / "bad-chip.json"
    chip.write_bytes(content)
    outcome = run_main(capsys, an.home, "id", "device", "approve", "--id", AN_ID, "--request",
                       pending.nonce, "--chip", chip, "--officer", OFFICER)
    assert_refused(outcome, 1, needle, chip.name)
    assert_still_pending(an.home, pending)


@pytest.mark.parametrize(("args", "code", "needles"), [
    (("bind", "--id", "033301000124", "--public-key", "k.pem"), 1,
     ("no e-ID account", "033******124")),
    (("request", "--id", "0190900123", "--public-key", "k.pem"), 1, ("12 digits",)),
    (("approve", "--id", "033301000124", "--request", "N", "--signature", "s.b64"), 1,
     ("no e-ID account",)),
    (("approve", "--id", AN_ID, "--request", "A" * 43, "--signature", "s.b64"), 1,
     ("unknown device approval request",)),
    (("approve", "--id", AN_ID, "--request", "bad nonce!", "--chip", "c.json", "--officer",
      OFFICER), 1, ("nonce is malformed",)),
    (("approve", "--id", AN_ID, "--request", "N", "--chip", "c.json", "--officer",
      "bad officer!"), 1, ("officer",)),
    (("approval-message", "--request", "A" * 43), 1, ("unknown device approval request",)),
    (("approve", "--id", AN_ID, "--request", "N"), 2, ("--signature", "--chip")),
    (("approve", "--id", AN_ID, "--request", "N", "--signature", "s.b64", "--chip", "c.json"),
     2, ("exactly one",)),
    (("approve", "--id", AN_ID, "--request", "N", "--chip", "c.json"), 2, ("--officer",)),
    (("approve", "--id", AN_ID, "--request", "N", "--signature", "s.b64", "--officer", OFFICER),
     2, ("--chip only",)),
    (("approve", "--id", AN_ID, "--signature", "s.b64"), 2, ("--request",)),
    (("bind", "--id", AN_ID), 2, ("--public-key",)),
])
def test_bad_approval_input_is_refused_with_a_clear_message(
        an: Citizen, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], code: int,
        needles: tuple[str, ...]) -> None:
    cwd = Path.cwd()  # the arguments name files relative to it
    old = public_pem(new_key(), cwd / "k.pem")
    run_ok(an.home, "id", "device", "bind", "--id", AN_ID, "--public-key", str(old))
    (cwd / "s.b64").write_text(base64.b64encode(b"\x00" * 64).decode())
    (cwd / "c.json").write_bytes(an.chip.read_bytes())
    outcome = run_main(capsys, an.home, "id", "device", *args)
    assert_refused(outcome, code, *needles)
    assert "033301000124" not in outcome.text
    assert AN_ID not in outcome.err


def test_every_device_command_has_examples_in_its_help(home: Path) -> None:
    for command in ("list", "bind", "request", "approval-message", "approve", "retire"):
        out = run_ok(home, "id", "device", command, "--help").stdout
        assert "Examples:" in out, command
        assert f"kyso id device {command} " in out, command
        assert "--format" in out, command
