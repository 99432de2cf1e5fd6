"""``kyso cert revoke|hold|release|renew|rekey|show|list`` and ``kyso crl publish``."""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import re
from pathlib import Path
from typing import Any

import pytest
from cli_support import (
    P12_PASSPHRASE,
    assert_refused,
    audit_lines,
    ca_cert,
    cli_env,  # noqa: F401 - autouse fixture
    init_ca,
    issue,
    listed,
    mode,
    run_json,
    run_main,
    run_ok,
    serials,
    verifies,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from conftest import CITIZEN, PASSPHRASE, STAFF
from kyso.config import load_settings
from kyso.context import open_kyso
from kyso.pki import issuance
from kyso.pki.authority import CertificateAuthority
from kyso.pki.subjects import SubjectRequest

ICT = dt.timezone(dt.timedelta(hours=7))
ISSUE_INVALIDITY = "2026-11-20T08:00:00+07:00"
OTHER_STAFF = ("--profile", "staff", "--name", "Lê Thị Cúc", "--id", "019185000111",
               "--title", "Phó Chủ tịch", "--unit", "UBND xã Phú Đình",
               "--email", "cuc.lt@thainguyen.gov.vn")


def invalidity_date() -> str:
    """The issue's example date, unless this machine's clock is earlier (then a day ago)."""
    wanted = dt.datetime.fromisoformat(ISSUE_INVALIDITY)
    now = dt.datetime.now(dt.UTC)
    if wanted < now - dt.timedelta(minutes=5):
        return ISSUE_INVALIDITY
    return (now - dt.timedelta(days=1)).astimezone(ICT).replace(microsecond=0).isoformat()


@pytest.fixture
def ca_home(home: Path) -> Path:
    init_ca(home)
    return home


@pytest.fixture
def staff_serial(ca_home: Path) -> str:
    return str(issue(ca_home, "staff")["serial"])


def show(home: Path, serial: str) -> dict[str, Any]:
    return dict(run_json(home, "cert", "show", serial, "--format", "json"))


def publish_crl(home: Path, ca: str = "staff") -> x509.CertificateRevocationList:
    run_ok(home, "crl", "publish", "--ca", ca)
    der = (home / "crl" / f"{ca}.crl").read_bytes()
    crl = x509.load_der_x509_crl(der)
    from_pem = x509.load_pem_x509_crl((home / "crl" / f"{ca}.crl.pem").read_bytes())
    assert from_pem.public_bytes(serialization.Encoding.DER) == der
    issuer = ca_cert(home, ca)
    assert crl.issuer == issuer.subject
    assert crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    return crl


def spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)


def load_pem_cert(path: str) -> x509.Certificate:
    return x509.load_pem_x509_certificates(Path(path).read_bytes())[0]


# --- revoke and the CRL -----------------------------------------------------------------------

def test_revoke_with_reason_and_invalidity_date_then_the_crl_lists_it(
        ca_home: Path, staff_serial: str) -> None:
    when = invalidity_date()
    out = run_ok(ca_home, "cert", "revoke", staff_serial, "--reason", "keyCompromise",
                 "--invalidity-date", when).stdout
    assert staff_serial in out
    record = show(ca_home, staff_serial)
    assert record["status"] == "revoked"
    assert record["revocation_reason"] == "keyCompromise"
    assert dt.datetime.fromisoformat(record["invalidity_date"]) == dt.datetime.fromisoformat(when)

    crl = publish_crl(ca_home)
    entry = crl.get_revoked_certificate_by_serial_number(int(staff_serial, 16))
    assert entry is not None, "the revoked serial is not in the CRL"
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason is x509.ReasonFlags.key_compromise
    invalidity = entry.extensions.get_extension_for_class(x509.InvalidityDate).value
    assert invalidity.invalidity_date_utc == dt.datetime.fromisoformat(when).astimezone(dt.UTC)


def test_crl_publish_writes_der_and_pem_for_one_ca(ca_home: Path) -> None:
    data = run_json(ca_home, "crl", "publish", "--ca", "staff", "--format", "json")
    assert [d["ca"] for d in data] == ["staff"]
    assert Path(data[0]["der"]) == ca_home / "crl" / "staff.crl"
    assert Path(data[0]["pem"]) == ca_home / "crl" / "staff.crl.pem"
    crl = publish_crl(ca_home)
    assert len(list(crl)) == 0
    assert not (ca_home / "crl" / "citizen.crl").exists()


def test_crl_numbers_increase_with_each_publication(ca_home: Path) -> None:
    first = publish_crl(ca_home).extensions.get_extension_for_class(x509.CRLNumber).value
    second = publish_crl(ca_home).extensions.get_extension_for_class(x509.CRLNumber).value
    assert second.crl_number > first.crl_number


def test_revoking_twice_fails_and_keeps_the_first_reason(
        ca_home: Path, staff_serial: str, capsys: pytest.CaptureFixture[str]) -> None:
    run_ok(ca_home, "cert", "revoke", staff_serial, "--reason", "affiliationChanged")
    outcome = run_main(capsys, ca_home, "cert", "revoke", staff_serial, "--reason",
                       "superseded")
    assert_refused(outcome, 1, staff_serial, "revoked")
    assert show(ca_home, staff_serial)["revocation_reason"] == "affiliationChanged"


def test_a_revoked_certificate_can_be_moved_to_key_compromise_keeping_its_date(
        ca_home: Path, staff_serial: str, capsys: pytest.CaptureFixture[str]) -> None:
    run_ok(ca_home, "cert", "revoke", staff_serial, "--reason", "superseded")
    first = show(ca_home, staff_serial)["revoked_at"]
    run_ok(ca_home, "cert", "revoke", staff_serial, "--reason", "keyCompromise",
           "--invalidity-date", "2026-11-01T00:00:00+07:00")
    after = show(ca_home, staff_serial)
    assert after["revocation_reason"] == "keyCompromise"
    assert after["revoked_at"] == first
    assert after["invalidity_date"] == "2026-11-01T00:00:00+07:00"
    outcome = run_main(capsys, ca_home, "cert", "revoke", staff_serial, "--reason",
                       "keyCompromise")
    assert_refused(outcome, 1, "already revoked for keyCompromise")


@pytest.mark.parametrize("argv", [
    ("revoke",), ("hold",), ("release",), ("renew",), ("rekey",), ("show",)])
def test_an_unknown_serial_is_refused(ca_home: Path, capsys: pytest.CaptureFixture[str],
                                      argv: tuple[str, ...]) -> None:
    before = serials(ca_home)
    outcome = run_main(capsys, ca_home, "cert", *argv, "123456789abcdef0")
    assert_refused(outcome, 1, "123456789abcdef0", "no certificate")
    assert serials(ca_home) == before


# A run of exactly 12 decimal digits between hex letters (or at an end), as in …f137436366454d…
DIGIT_RUN = re.compile(r"(?<![0-9])[0-9]{12}(?![0-9])")


def test_audit_events_name_a_certificate_by_its_full_serial(ca_home: Path) -> None:
    """About 1.5 % of random 159-bit serials contain a run of 12 decimal digits that looks like a
    personal ID number; the audit trail must still name such a certificate by its exact serial.
    Certificates are issued (through the library, into the same home) until one has that shape,
    then revoked through the CLI."""
    kyso = open_kyso(load_settings(home=ca_home, database_url=os.environ.get("KYSO_DATABASE_URL"),
                                   environ={}), actor="admin:test")
    try:
        ca = CertificateAuthority(kyso, PASSPHRASE)
        for _ in range(3000):  # P(no such serial in 3000) < 1e-18
            serial = issuance.issue(kyso, ca, "citizen", SubjectRequest.of(**CITIZEN)).record.serial
            if DIGIT_RUN.search(serial):
                break
        else:
            pytest.fail("no serial with a 12-digit run was drawn")
    finally:
        kyso.close()
    run_ok(ca_home, "cert", "revoke", serial, "--reason", "affiliationChanged")
    events = audit_lines(ca_home)
    created = [e for e in events if e["action"] == "CERT_CREATION" and e["outcome"] == "success"]
    assert created[-1]["object"] == serial
    assert (events[-1]["action"], events[-1]["object"]) == ("CERT_REVOKED", serial)


@pytest.mark.parametrize("garbage", ["not-a-serial", "12345g", "", "0x", "ab" * 30])
@pytest.mark.parametrize("command", ["revoke", "hold", "release", "show"])
def test_a_garbage_serial_is_refused(ca_home: Path, capsys: pytest.CaptureFixture[str],
                                     command: str, garbage: str) -> None:
    outcome = run_main(capsys, ca_home, "cert", command, garbage)
    assert_refused(outcome, 1, "serial")


@pytest.mark.parametrize(("value", "code", "needle"), [
    ("2026-11-20T08:00:00", 2, "offset"),
    ("yesterday", 2, "ISO 8601"),
    ("2999-01-01T00:00:00+07:00", 1, "future"),
])
def test_a_bad_invalidity_date_is_refused_and_the_certificate_stays_valid(
        ca_home: Path, staff_serial: str, capsys: pytest.CaptureFixture[str],
        value: str, code: int, needle: str) -> None:
    outcome = run_main(capsys, ca_home, "cert", "revoke", staff_serial, "--reason",
                       "keyCompromise", "--invalidity-date", value)
    assert_refused(outcome, code, needle)
    assert show(ca_home, staff_serial)["status"] == "valid"


def test_certificate_hold_is_not_a_revocation_reason(
        ca_home: Path, staff_serial: str, capsys: pytest.CaptureFixture[str]) -> None:
    outcome = run_main(capsys, ca_home, "cert", "revoke", staff_serial, "--reason",
                       "certificateHold")
    assert_refused(outcome, 2, "reason")
    assert show(ca_home, staff_serial)["status"] == "valid"


# --- hold and release -------------------------------------------------------------------------

def test_hold_lists_the_certificate_on_the_crl_and_release_removes_it(
        ca_home: Path, staff_serial: str, capsys: pytest.CaptureFixture[str]) -> None:
    run_ok(ca_home, "cert", "hold", staff_serial)
    assert show(ca_home, staff_serial)["status"] == "on_hold"
    entry = publish_crl(ca_home).get_revoked_certificate_by_serial_number(int(staff_serial, 16))
    assert entry is not None
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason is x509.ReasonFlags.certificate_hold

    assert_refused(run_main(capsys, ca_home, "cert", "hold", staff_serial), 1, "on_hold")

    run_ok(ca_home, "cert", "release", staff_serial)
    assert show(ca_home, staff_serial)["status"] == "valid"
    crl = publish_crl(ca_home)
    assert crl.get_revoked_certificate_by_serial_number(int(staff_serial, 16)) is None

    assert_refused(run_main(capsys, ca_home, "cert", "release", staff_serial), 1, "valid")


def test_a_revoked_certificate_cannot_be_held_or_released(
        ca_home: Path, staff_serial: str, capsys: pytest.CaptureFixture[str]) -> None:
    run_ok(ca_home, "cert", "revoke", staff_serial)
    assert_refused(run_main(capsys, ca_home, "cert", "hold", staff_serial), 1, "revoked")
    assert_refused(run_main(capsys, ca_home, "cert", "release", staff_serial), 1, "revoked")
    assert show(ca_home, staff_serial)["status"] == "revoked"


def test_a_held_certificate_can_be_revoked(ca_home: Path, staff_serial: str) -> None:
    run_ok(ca_home, "cert", "hold", staff_serial)
    run_ok(ca_home, "cert", "revoke", staff_serial, "--reason", "cessationOfOperation")
    record = show(ca_home, staff_serial)
    assert (record["status"], record["revocation_reason"]) == ("revoked", "cessationOfOperation")


# --- renew and rekey --------------------------------------------------------------------------

def test_renew_issues_a_new_certificate_for_the_same_key(ca_home: Path,
                                                         staff_serial: str) -> None:
    old = load_pem_cert(issue_path(ca_home, staff_serial))
    record = run_json(ca_home, "cert", "renew", staff_serial, "--format", "json")
    assert record["serial"] != staff_serial
    assert record["replaces"] == staff_serial
    new = load_pem_cert(record["files"]["certificate"])
    assert format(new.serial_number, "x") == record["serial"]
    assert spki(new) == spki(old)
    assert new.subject == old.subject
    assert verifies(new, ca_cert(ca_home, "staff"))
    assert show(ca_home, staff_serial)["status"] == "valid"  # renewal does not revoke
    assert record["serial"] in serials(ca_home)


def test_renew_to_an_existing_file_is_refused_and_stores_nothing(
        ca_home: Path, staff_serial: str, capsys: pytest.CaptureFixture[str]) -> None:
    Path("taken.pem").write_bytes(b"precious")
    before = serials(ca_home)
    outcome = run_main(capsys, ca_home, "cert", "renew", staff_serial, "--out", "taken.pem")
    assert outcome.code in (1, 2)
    assert_refused(outcome, outcome.code, "taken.pem", "already exists")
    assert Path("taken.pem").read_bytes() == b"precious"
    assert serials(ca_home) == before, "a renewed certificate was stored although refused"


def test_rekey_issues_a_new_key_and_revokes_the_old_certificate_as_superseded(
        ca_home: Path, staff_serial: str) -> None:
    old = load_pem_cert(issue_path(ca_home, staff_serial))
    record = run_json(ca_home, "cert", "rekey", staff_serial, "--format", "json")
    assert record["replaces"] == staff_serial
    new = load_pem_cert(record["files"]["certificate"])
    assert spki(new) != spki(old)
    assert new.subject == old.subject
    p12 = Path(record["files"]["pkcs12"])
    assert mode(p12) == 0o600
    key, p12_cert, _ = pkcs12.load_key_and_certificates(p12.read_bytes(), P12_PASSPHRASE.encode())
    assert p12_cert == new
    assert key is not None
    old_record = show(ca_home, staff_serial)
    assert (old_record["status"], old_record["revocation_reason"]) == ("revoked", "superseded")
    assert show(ca_home, record["serial"])["status"] == "valid"
    crl = publish_crl(ca_home)
    entry = crl.get_revoked_certificate_by_serial_number(int(staff_serial, 16))
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason is \
        x509.ReasonFlags.superseded


def test_rekey_to_an_existing_p12_is_refused_and_changes_nothing(
        ca_home: Path, staff_serial: str, capsys: pytest.CaptureFixture[str]) -> None:
    Path("taken.p12").write_bytes(b"precious")
    before = serials(ca_home)
    outcome = run_main(capsys, ca_home, "cert", "rekey", staff_serial, "--p12", "taken.p12")
    assert outcome.code in (1, 2)
    assert_refused(outcome, outcome.code, "taken.p12", "already exists")
    assert Path("taken.p12").read_bytes() == b"precious"
    assert serials(ca_home) == before
    assert show(ca_home, staff_serial)["status"] == "valid"


@pytest.mark.parametrize("command", ["renew", "rekey"])
def test_a_revoked_certificate_cannot_be_renewed_or_rekeyed(
        ca_home: Path, staff_serial: str, capsys: pytest.CaptureFixture[str],
        command: str) -> None:
    run_ok(ca_home, "cert", "revoke", staff_serial)
    before = serials(ca_home)
    outcome = run_main(capsys, ca_home, "cert", command, staff_serial)
    assert_refused(outcome, 1, "revoked")
    assert serials(ca_home) == before


def test_rekey_with_a_short_p12_passphrase_changes_nothing(
        ca_home: Path, staff_serial: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KYSO_P12_PASSPHRASE", "short")
    before = serials(ca_home)
    outcome = run_main(capsys, ca_home, "cert", "rekey", staff_serial)
    assert_refused(outcome, 1, "passphrase")
    assert serials(ca_home) == before
    assert show(ca_home, staff_serial)["status"] == "valid"


def test_rekey_with_a_csr_for_the_already_certified_key_keeps_the_old_certificate(
        ca_home: Path, staff_serial: str, capsys: pytest.CaptureFixture[str]) -> None:
    p12 = (ca_home / "issued" / f"{staff_serial}.p12").read_bytes()
    key, _cert, _ = pkcs12.load_key_and_certificates(p12, P12_PASSPHRASE.encode())
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, STAFF["name"])])).sign(
        key, hashes.SHA256())  # type: ignore[arg-type]
    Path("same-key.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    before = serials(ca_home)
    outcome = run_main(capsys, ca_home, "cert", "rekey", staff_serial, "--csr", "same-key.csr")
    assert_refused(outcome, 1, "already been certified")
    assert serials(ca_home) == before
    assert show(ca_home, staff_serial)["status"] == "valid"


def issue_path(home: Path, serial: str) -> str:
    return str(home / "issued" / f"{serial}.crt.pem")


# --- cert list --------------------------------------------------------------------------------

@pytest.fixture
def inventory(ca_home: Path) -> dict[str, str]:
    """One staff certificate revoked, another staff, a seal and a citizen certificate."""
    serial_of = {name: str(issue(ca_home, name)["serial"]) for name in ("staff", "seal", "citizen")}
    serial_of["other_staff"] = str(run_json(ca_home, "cert", "issue", *OTHER_STAFF,
                                            "--format", "json")["serial"])
    run_ok(ca_home, "cert", "revoke", serial_of["staff"], "--reason", "affiliationChanged")
    return serial_of


def test_list_by_profile(ca_home: Path, inventory: dict[str, str]) -> None:
    rows = listed(ca_home, "--profile", "staff")
    assert {r["serial"] for r in rows} == {inventory["staff"], inventory["other_staff"]}
    assert {r["profile"] for r in rows} == {"staff"}


def test_list_by_status(ca_home: Path, inventory: dict[str, str]) -> None:
    assert [r["serial"] for r in listed(ca_home, "--status", "revoked")] == [inventory["staff"]]
    valid = {r["serial"] for r in listed(ca_home, "--status", "valid")}
    assert inventory["staff"] not in valid
    assert {inventory["seal"], inventory["citizen"], inventory["other_staff"]} <= valid


def test_list_expiring_shows_the_30_day_ocsp_responder_certificates(
        ca_home: Path, inventory: dict[str, str]) -> None:
    rows = listed(ca_home, "--expiring", "30d")
    assert sorted(r["issuer"] for r in rows) == ["citizen", "services", "staff"]
    assert {r["profile"] for r in rows} == {"ocsp"}
    assert not set(inventory.values()) & {r["serial"] for r in rows}
    assert listed(ca_home, "--expiring", "12h") == []


def test_list_by_holder_id(ca_home: Path, inventory: dict[str, str]) -> None:
    rows = listed(ca_home, "--id", STAFF["id"])
    assert [r["serial"] for r in rows] == [inventory["staff"]]
    assert rows[0]["holder"] == "019******345"
    assert [r["serial"] for r in listed(ca_home, "--id", "019185000111")] == \
        [inventory["other_staff"]]
    assert [r["serial"] for r in listed(ca_home, "--id", "4600100155")] == [inventory["seal"]]


def test_list_filters_combine(ca_home: Path, inventory: dict[str, str]) -> None:
    assert listed(ca_home, "--profile", "staff", "--status", "valid", "--id", STAFF["id"]) == []
    rows = listed(ca_home, "--profile", "staff", "--status", "valid")
    assert [r["serial"] for r in rows] == [inventory["other_staff"]]


def test_list_csv(ca_home: Path, inventory: dict[str, str]) -> None:
    out = run_ok(ca_home, "cert", "list", "--profile", "staff", "--format", "csv").stdout
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["serial", "profile", "common_name", "holder", "status", "not_after",
                       "issuer"]
    by_serial = {r[0]: r for r in rows[1:]}
    assert set(by_serial) == {inventory["staff"], inventory["other_staff"]}
    assert by_serial[inventory["staff"]][4] == "revoked"
    assert by_serial[inventory["staff"]][2] == STAFF["name"]
    assert STAFF["id"] not in out


def test_list_json_has_every_certificate(ca_home: Path, inventory: dict[str, str]) -> None:
    rows = listed(ca_home)
    assert set(inventory.values()) <= {r["serial"] for r in rows}
    assert len(rows) == len(inventory) + 5  # plus the five service certificates
    for r in rows:
        assert set(r) >= {"serial", "profile", "status", "not_after", "issuer", "sha256"}
    assert STAFF["id"] not in str(rows)


def test_list_text_table(ca_home: Path, inventory: dict[str, str]) -> None:
    out = run_ok(ca_home, "cert", "list", "--profile", "staff").stdout
    assert "2 certificate(s)" in out
    assert inventory["other_staff"] in out


@pytest.mark.parametrize(("argv", "code", "needle"), [
    (("--expiring", "soon"), 2, "30d"),
    (("--id", "999099012345"), 1, "province"),
    (("--profile", "no-such-profile"), 1, "known profiles"),
    (("--status", "sleeping"), 2, "sleeping"),
])
def test_list_with_a_bad_filter_is_refused(ca_home: Path, capsys: pytest.CaptureFixture[str],
                                           argv: tuple[str, ...], code: int, needle: str) -> None:
    outcome = run_main(capsys, ca_home, "cert", "list", *argv)
    assert_refused(outcome, code, needle)
    assert "999099012345" not in outcome.text


def test_a_serial_prefix_shorter_than_eight_digits_says_so(
        ca_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outcome = run_main(capsys, ca_home, "cert", "show", "4abc12")
    assert_refused(outcome, 1, "at least 8 hex digits")


def test_a_broken_site_profile_never_blocks_revocation_or_crls(
        ca_home: Path, staff_serial: str, capsys: pytest.CaptureFixture[str]) -> None:
    (ca_home / "profiles").mkdir()
    (ca_home / "profiles" / "citizen.toml").write_text('name = "citizen"\n', encoding="utf-8")
    run_ok(ca_home, "cert", "revoke", staff_serial, "--reason", "keyCompromise")
    run_ok(ca_home, "crl", "publish", "--ca", "staff")
    crl = x509.load_der_x509_crl((ca_home / "crl" / "staff.crl").read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(int(staff_serial, 16)) is not None
    outcome = run_main(capsys, ca_home, "cert", "issue", "--profile", "citizen",
                       "--name", "Trần Thị Bình", "--id", "033301000123")
    assert_refused(outcome, 1, "citizen.toml", "description is missing")


def test_names_that_look_like_markup_or_formulas_are_shown_as_data(
        ca_home: Path) -> None:
    run_ok(ca_home, "cert", "issue", "--profile", "citizen", "--name", "=HYPERLINK([red]x[/])",
           "--surname", "=HYPERLINK([red]x[/])", "--given-name", "An", "--id", "033301000124")
    assert "[red]x[/]" in run_ok(ca_home, "cert", "list").stdout
    assert "'=HYPERLINK" in run_ok(ca_home, "cert", "list", "--format", "csv").stdout
