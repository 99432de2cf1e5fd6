"""``kyso id register | enrol-l2 | chip-issue | chip-verify | show | lock | unlock | csca …``:
the level-1 → level-2 flow, and clear refusals (exit 1, message, no traceback, nothing half
written) for malformed chips, tampered chips, rogue CSCAs and revoked Document Signers."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cli_support import (
    assert_refused,
    audit_lines,
    cli_env,  # noqa: F401 - autouse fixture
    init_ca,
    run_json,
    run_main,
    run_ok,
)
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kyso.authn.chip import ChipPersonalData, chip_to_json, issue_chip
from kyso.authn.csca import DocumentSigner, build_csca_certificate, build_ds_certificate
from kyso.authn.registry import Person
from kyso.clock import SystemClock

RAW_ID = "019099012345"
PERSON = ("--id", RAW_ID, "--name", "Nguyễn Văn An", "--dob", "1999-04-02", "--sex", "male")
L1 = ("id", "register", *PERSON, "--phone", "0912345678", "--face-score", "0.93")
PASSWORD = "Đèn-lồng-phố-Hội!42"


@pytest.fixture(autouse=True)
def eid_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KYSO_EID_PASSWORD", PASSWORD)


@pytest.fixture
def ca_home(home: Path) -> Path:
    init_ca(home)
    return home


@pytest.fixture
def chip_file(ca_home: Path, tmp_path: Path) -> Path:
    out = tmp_path / "chip.json"
    run_ok(ca_home, "id", "chip-issue", *PERSON, "--out", str(out), "--origin", "Thái Nguyên")
    return out


def enrol_args(chip: Path, *extra: str) -> tuple[str, ...]:
    return ("id", "enrol-l2", "--id", RAW_ID, "--chip", str(chip), "--officer", "CA-TN-0042",
            "--face-score", "0.95", "--fingerprint-score", "0.97", "--consent", *extra)


def ds_serial(home: Path) -> str:
    info = run_json(home, "id", "csca", "show", "--format", "json")
    return str(info["document_signers"][-1]["serial"])


# --- the happy path ----------------------------------------------------------------------------

def test_register_then_enrol_level2_then_show(ca_home: Path, chip_file: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    registered = run_json(ca_home, *L1, "--format", "json")
    assert registered["level"] == 1
    assert registered["id_number"] == "019******345"
    enrolled = run_json(ca_home, *enrol_args(chip_file), "--format", "json")
    assert enrolled["level"] == 2
    assert enrolled["created"] is False
    assert enrolled["passive_auth"]["indication"] == "TOTAL-PASSED"
    assert enrolled["evidence"]["ds_serial"] == ds_serial(ca_home)
    shown = run_json(ca_home, "id", "show", "--id", RAW_ID, "--format", "json")
    assert shown["level"] == 2
    assert shown["id_number"] == "019******345"
    text = run_ok(ca_home, "id", "show", "--id", RAW_ID).output
    assert "019******345" in text
    assert RAW_ID not in text
    actions = [e["action"] for e in audit_lines(ca_home)]
    assert {"CHIP_ISSUE", "REGISTER", "ENROL_LEVEL2"} <= set(actions)
    assert RAW_ID not in "".join(p.read_text() for p in (ca_home / "audit").rglob("*.jsonl"))


def test_chip_issue_writes_a_chip_that_verifies(ca_home: Path, chip_file: Path) -> None:
    doc = json.loads(chip_file.read_text())
    assert doc["format"] == "kyso-chip"
    assert set(doc["data_groups"]) == {"DG1", "DG2", "DG13"}
    report = run_json(ca_home, "id", "chip-verify", "--chip", str(chip_file), "--format", "json")
    assert report["indication"] == "TOTAL-PASSED"
    assert (ca_home / "csca" / "csca.key.pem").stat().st_mode & 0o777 == 0o600


def test_chip_issue_never_overwrites_and_leaves_no_partial_file(
        ca_home: Path, chip_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = chip_file.read_bytes()
    out = run_main(capsys, ca_home, "id", "chip-issue", *PERSON, "--out", str(chip_file))
    assert_refused(out, 2, "already exists")
    assert chip_file.read_bytes() == before
    bad = chip_file.parent / "bad.json"
    out = run_main(capsys, ca_home, "id", "chip-issue", "--id", "01909901234", "--name", "An",
                   "--dob", "1999-04-02", "--sex", "male", "--out", str(bad))
    assert_refused(out, 1, "12 digits")
    assert not bad.exists()
    assert not list(chip_file.parent.glob(".bad.json*"))


def test_enrol_level2_without_account_creates_it(ca_home: Path, chip_file: Path) -> None:
    enrolled = run_json(ca_home, *enrol_args(chip_file, "--phone", "0912345678"), "--format",
                        "json")
    assert enrolled["created"] is True
    assert enrolled["level"] == 2


# --- refusals ----------------------------------------------------------------------------------

def _mutated(chip_file: Path, change: Any) -> Path:
    doc = json.loads(chip_file.read_text())
    change(doc)
    out = chip_file.with_name("mutated.json")
    out.write_text(json.dumps(doc))
    return out


@pytest.mark.parametrize(("content", "needle"), [
    (b"\x89PNG garbage \x00\xff", "not UTF-8"),
    (b'{"format": "kyso-chip", "version": 1, "data_gr', "not valid JSON"),
    (b'"just a string"', "JSON object"),
    (b'{"format": "kyso-chip", "version": 1, "data_groups": {"DG1": 5}}', "DG1 must be"),
    (b'{"format": "kyso-chip", "version": 1, "data_groups": {"DG1": "%%%"}}', "not valid base64"),
    (b'{"format": "kyso-chip", "version": 1, "data_groups": {"DG1": "AA==", "DG2": "AA=="},'
     b' "sod": "AA=="}', "missing data group(s) DG13"),
    (b"", "not valid JSON"),
])
def test_malformed_chip_file_exits_1_with_a_message(
        ca_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes,
        needle: str) -> None:
    run_ok(ca_home, *L1)
    bad = tmp_path / "bad-chip.json"
    bad.write_bytes(content)
    assert_refused(run_main(capsys, ca_home, *enrol_args(bad)), 1, needle, str(bad))
    assert_refused(run_main(capsys, ca_home, "id", "chip-verify", "--chip", str(bad)), 1, needle)
    assert run_json(ca_home, "id", "show", "--id", RAW_ID, "--format", "json")["level"] == 1


def test_missing_chip_file_exits_1(ca_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert_refused(run_main(capsys, ca_home, *enrol_args(Path("nowhere.json"))), 1, "cannot read")


def test_tampered_chip_is_refused_naming_the_hash_check(
        ca_home: Path, chip_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_ok(ca_home, *L1)

    def swap_name(doc: dict[str, Any]) -> None:
        dg13 = base64.b64decode(doc["data_groups"]["DG13"])
        doc["data_groups"]["DG13"] = base64.b64encode(
            dg13.replace("Văn An".encode(), "Văn Ân".encode())).decode()

    tampered = _mutated(chip_file, swap_name)
    out = run_main(capsys, ca_home, *enrol_args(tampered))
    assert_refused(out, 1, "data-group-hashes FAILED", "DG13")
    verify = run_main(capsys, ca_home, "id", "chip-verify", "--chip", str(tampered))
    assert verify.code == 1
    assert "TOTAL-FAILED" in verify.out
    assert RAW_ID not in out.text


def test_chip_from_a_rogue_csca_is_refused(ca_home: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    run_ok(ca_home, *L1)
    now = SystemClock().now()
    key = ec.generate_private_key(ec.SECP384R1())
    rogue_csca = build_csca_certificate(key, now)  # same name as the real test CSCA
    ds_key = ec.generate_private_key(ec.SECP256R1())
    signer = DocumentSigner(build_ds_certificate(rogue_csca, key, ds_key.public_key(), now), ds_key)
    person = Person.of(id_number=RAW_ID, full_name="Nguyễn Văn An", birth_date="1999-04-02",
                       sex="male")
    data = ChipPersonalData(person=person, document_number="123456789",
                            issue_date=now.date(), expiry_date=now.date().replace(year=now.year + 10))
    forged = tmp_path / "forged.json"
    forged.write_bytes(chip_to_json(issue_chip(data, b"face", signer, now)))
    run_ok(ca_home, "id", "csca", "init")  # the real CSCA
    assert_refused(run_main(capsys, ca_home, *enrol_args(forged)), 1, "ds-chain FAILED",
                   "rogue CSCA")
    # …and trusting the rogue CSCA explicitly still leaves revocation unknown: refused.
    rogue_pem = tmp_path / "rogue.pem"
    rogue_pem.write_bytes(rogue_csca.public_bytes(serialization.Encoding.PEM))
    assert_refused(run_main(capsys, ca_home, *enrol_args(forged, "--csca", str(rogue_pem))), 1,
                   "ds-revocation INDETERMINATE")
    assert run_json(ca_home, "id", "show", "--id", RAW_ID, "--format", "json")["level"] == 1


def test_revoked_document_signer_is_refused(ca_home: Path, chip_file: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    run_ok(ca_home, *L1)
    serial = ds_serial(ca_home)
    revoked = run_json(ca_home, "id", "csca", "ds-revoke", serial, "--reason", "key-compromise",
                       "--format", "json")
    assert revoked["status"] == "revoked"
    assert_refused(run_main(capsys, ca_home, *enrol_args(chip_file)), 1,
                   "ds-revocation FAILED", serial)
    assert_refused(run_main(capsys, ca_home, "id", "csca", "ds-revoke", serial), 1,
                   "already revoked")
    # a new chip is signed by a new Document Signer and passes
    fresh = chip_file.with_name("fresh.json")
    run_ok(ca_home, "id", "chip-issue", *PERSON, "--out", str(fresh))
    assert run_json(ca_home, *enrol_args(fresh), "--format", "json")["level"] == 2


def test_refusals_of_scores_and_consent(ca_home: Path, chip_file: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    run_ok(ca_home, *L1)
    no_consent = [a for a in enrol_args(chip_file) if a != "--consent"]
    assert_refused(run_main(capsys, ca_home, *no_consent), 1, "consent")
    low = list(enrol_args(chip_file))
    low[low.index("--fingerprint-score") + 1] = "0.5"
    assert_refused(run_main(capsys, ca_home, *low), 1, "fingerprints do not match")
    out = run_main(capsys, ca_home, "id", "register", *PERSON, "--phone", "0912345678",
                   "--face-score", "0.2")
    assert_refused(out, 1, "below the threshold")
    errors = [e["details"]["step"] for e in audit_lines(ca_home)
              if e["action"] in ("ENROL_LEVEL2_ERROR", "REGISTER_ERROR")]
    assert errors == ["consent", "fingerprint-match", "face-match"]


def test_register_refuses_weak_password_without_echoing_it(
        ca_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KYSO_EID_PASSWORD", "matkhau1")
    out = run_main(capsys, ca_home, *L1)
    assert_refused(out, 1, "password does not meet policy")
    assert "matkhau1" not in out.text


def test_lock_and_unlock(ca_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_ok(ca_home, *L1)
    locked = run_json(ca_home, "id", "lock", "--id", RAW_ID, "--reason", "holder-request",
                      "--format", "json")
    assert locked["status"] == "locked"
    assert locked["lock_reason"] == "holder-request"
    assert "unlocked 019******345" in run_ok(ca_home, "id", "unlock", "--id", RAW_ID).output
    assert_refused(run_main(capsys, ca_home, "id", "unlock", "--id", RAW_ID), 1, "not locked")
    assert_refused(run_main(capsys, ca_home, "id", "lock", "--id", RAW_ID, "--reason", "bored"),
                   2)
    events = [(e["action"], e["outcome"], e["details"].get("ground")) for e in audit_lines(ca_home)
              if e["action"] in ("USER_LOCKED", "USER_UNLOCKED")]
    assert events == [("USER_LOCKED", "success", "holder-request"),
                      ("USER_UNLOCKED", "success", "holder-request"),
                      ("USER_UNLOCKED", "failure", None)]


def test_show_unknown_account_exits_1(ca_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert_refused(run_main(capsys, ca_home, "id", "show", "--id", RAW_ID), 1,
                   "no e-ID account for 019******345")


@pytest.mark.parametrize("command", ["register", "enrol-l2", "chip-issue", "chip-verify", "show",
                                     "lock", "unlock"])
def test_every_command_has_examples_in_its_help(home: Path, command: str) -> None:
    assert "Examples:" in run_ok(home, "id", command, "--help").output
