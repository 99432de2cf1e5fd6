"""``kyso id register | enrol-l2 | chip-issue | chip-verify | show | lock | unlock | csca …``:
the level-1 → level-2 flow, brute-force lockouts shown and lifted by an operator, and clear
refusals (exit 1, message, no traceback, nothing half written) for malformed chips, tampered
chips, rogue CSCAs, revoked Document Signers and malformed ID numbers (every ``--id``)."""

from __future__ import annotations

import base64
import datetime as dt
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
from kyso.authn.login import LoginService
from kyso.authn.registry import Person
from kyso.clock import FrozenClock, SystemClock
from kyso.config import load_settings
from kyso.context import open_kyso
from kyso.errors import AccountLockedError, AuthenticationFailedError

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


def new_home(home: Path, config: str = "") -> Path:
    """A home with a database (and ``config``) but no CA: the e-ID commands need no more."""
    home.mkdir()
    (home / "config.toml").write_text(config, encoding="utf-8")
    open_kyso(load_settings(home=home), actor="test").close()
    return home


def wrong_passwords(home: Path, times: int) -> None:
    """``times`` wrong passwords through the login service of the home (its own clock moving
    past Keycloak's quick-login check between tries); the last one locks the account."""
    ctx = open_kyso(load_settings(home=home), clock=FrozenClock(SystemClock().now()),
                    actor="test")
    try:
        service = LoginService(ctx)
        for attempt in range(times):
            with pytest.raises(AuthenticationFailedError) as exc:
                service.check_password(RAW_ID, f"not the password {attempt}")
            assert isinstance(exc.value, AccountLockedError) == (attempt == times - 1)
            ctx.clock.advance(dt.timedelta(seconds=2))  # type: ignore[attr-defined]
        with pytest.raises(AccountLockedError):  # the right password is refused too
            service.check_password(RAW_ID, PASSWORD)
    finally:
        ctx.close()


def logs_in(home: Path) -> bool:
    ctx = open_kyso(load_settings(home=home), actor="test")
    try:
        return LoginService(ctx).check_password(RAW_ID, PASSWORD).level == 1
    finally:
        ctx.close()


def test_unlock_lifts_a_permanent_brute_force_lockout_that_show_displays(
        home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    new_home(home, '[authn]\nlockout = "permanent"\nmax_login_failures = 3\n')
    run_ok(home, *L1)
    wrong_passwords(home, 3)

    shown = run_json(home, "id", "show", "--id", RAW_ID, "--format", "json")
    assert shown["status"] == "active"  # no Decree 69 lock…
    assert shown["brute_force"]["locked"] is True  # …but locked for good by brute force
    assert shown["brute_force"]["permanent"] is True
    assert shown["brute_force"]["locked_until"] is None
    assert shown["brute_force"]["reason"] == "permanent-lockout"
    assert shown["brute_force"]["failures"] == {"password": 3, "totp": 0, "sms": 0}
    text = run_ok(home, "id", "show", "--id", RAW_ID).output
    assert "permanently locked (permanent-lockout)" in text
    assert "password 3, totp 0, sms 0" in text
    assert RAW_ID not in text

    unlocked = run_main(capsys, home, "id", "unlock", "--id", RAW_ID)
    assert unlocked.code == 0, unlocked.text
    assert "unlocked 019******345: brute-force lockout lifted (permanent" in unlocked.out
    assert "Decree 69" not in unlocked.out
    assert RAW_ID not in unlocked.text

    assert logs_in(home)
    events = [e for e in audit_lines(home) if e["action"] == "USER_UNLOCKED"]
    assert len(events) == 1
    assert events[0]["outcome"] == "success"
    assert events[0]["details"]["kind"] == "brute-force"
    assert "not locked" in run_ok(home, "id", "show", "--id", RAW_ID).output
    assert_refused(run_main(capsys, home, "id", "unlock", "--id", RAW_ID), 1, "not locked",
                   "no brute-force lockout")


def test_unlock_says_which_locks_it_lifted_in_json(home: Path) -> None:
    new_home(home)
    run_ok(home, *L1)
    wrong_passwords(home, 5)  # [authn] defaults (mixed): a first, temporary lockout
    temporary = run_json(home, "id", "show", "--id", RAW_ID, "--format", "json")["brute_force"]
    assert temporary["locked"] is True
    assert temporary["permanent"] is False
    assert temporary["locked_until"].endswith("+07:00")
    assert "temporarily locked until " in run_ok(home, "id", "show", "--id", RAW_ID).output
    run_ok(home, "id", "lock", "--id", RAW_ID, "--reason", "holder-request")
    result = run_json(home, "id", "unlock", "--id", RAW_ID, "--format", "json")
    assert result["lifted"] == ["decree-69", "brute-force"]
    assert result["ground"] == "holder-request"
    assert result["lockout"]["reason"] == "temporary-lockout"
    assert result["status"] == "active"
    assert logs_in(home)
    kinds = [(e["details"].get("ground"), e["details"].get("kind")) for e in audit_lines(home)
             if e["action"] == "USER_UNLOCKED"]
    assert kinds == [("holder-request", "decree-69"), (None, "brute-force")]


def test_show_unknown_account_exits_1(ca_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert_refused(run_main(capsys, ca_home, "id", "show", "--id", RAW_ID), 1,
                   "no e-ID account for 019******345")


# Every command taking --id, with what else it needs to reach the ID number's check.
ID_COMMANDS = {
    "register": ("id", "register", "--name", "Nguyễn Văn An", "--dob", "1999-04-02", "--sex",
                 "male", "--phone", "0912345678", "--face-score", "0.93"),
    "enrol-l2": ("id", "enrol-l2", "--chip", "nowhere.json", "--officer", "CA-TN-0042",
                 "--face-score", "0.95", "--fingerprint-score", "0.97", "--consent"),
    "chip-issue": ("id", "chip-issue", "--name", "Nguyễn Văn An", "--dob", "1999-04-02",
                   "--sex", "male", "--out", "chip.json"),
    "show": ("id", "show"),
    "lock": ("id", "lock", "--reason", "holder-request"),
    "unlock": ("id", "unlock"),
    "otp-setup": ("id", "otp-setup"),
    "otp-confirm": ("id", "otp-confirm", "--code", "123456"),
    "password set": ("id", "password", "set"),
    "sms-outbox": ("id", "sms-outbox"),
    "device list": ("id", "device", "list"),
    "device retire": ("id", "device", "retire", "--device", "dev-x"),
    "role grant": ("id", "role", "grant", "--role", "auditor"),
    "role revoke": ("id", "role", "revoke", "--role", "auditor"),
    "role list": ("id", "role", "list"),
}
BAD_IDS = [  # (value, what the message must say, whether the value could be a real number)
    ("12345", "12 digits", False),
    ("0190990123456", "12 digits", True),  # a real number with one digit too many
    ("01909901234x", "ASCII digits", False),
    ("０１９０９９０１２３４５", "ASCII digits", True),  # full-width digits
    ("019 099 012 345", "ASCII digits", True),
    ("999099012345", "999******345", True),  # no such province
]


@pytest.mark.parametrize("command", ID_COMMANDS.values(), ids=ID_COMMANDS.keys())
@pytest.mark.parametrize(("bad_id", "needle", "real_looking"), BAD_IDS,
                         ids=[b[0] for b in BAD_IDS])
def test_every_id_option_refuses_a_malformed_number_clearly(
        home: Path, capsys: pytest.CaptureFixture[str], command: tuple[str, ...], bad_id: str,
        needle: str, real_looking: bool) -> None:
    run_ok(new_home(home), *L1)  # the home exists: the ID number is what is wrong
    outcome = run_main(capsys, home, *command, "--id", bad_id)
    assert_refused(outcome, 1, "personal ID number", needle)
    if real_looking:
        assert bad_id not in outcome.text
        assert bad_id.replace(" ", "") not in outcome.text
    assert not (home.parent / "work" / "chip.json").exists()


@pytest.mark.parametrize("command", ["register", "enrol-l2", "chip-issue", "chip-verify", "show",
                                     "lock", "unlock"])
def test_every_command_has_examples_in_its_help(home: Path, command: str) -> None:
    assert "Examples:" in run_ok(home, "id", command, "--help").output
