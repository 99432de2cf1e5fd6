"""``kyso audit verify|show|export|checkpoint|prove|consistency|verify-proof|purge`` end to end,
and the secrets scan: after a CA scenario the raw log holds no ID number, passphrase or key."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click
import pytest
from cli_support import (
    CITIZEN_ARGS,
    P12_PASSPHRASE,
    SEAL_ARGS,
    Outcome,
    assert_refused,
    audit_lines,
    cli_env,  # noqa: F401 - autouse fixture
    init_ca,
    issue,
    run_json,
    run_main,
    run_ok,
)
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from conftest import CITIZEN, FAST_KDF, PASSPHRASE, STAFF
from kyso.audit import commands as audit_commands
from kyso.audit.signer import signer_certificates
from kyso.cli import cli
from kyso.config import load_settings
from kyso.context import open_kyso
from kyso.pki.keys import load_private_key

WRONG_PASSPHRASE = "not-the-ca-passphrase"


@pytest.fixture
def ca_home(home: Path) -> Path:
    init_ca(home)
    return home


def audit(capsys: pytest.CaptureFixture[str], home: Path | None, *args: str) -> Outcome:
    return run_main(capsys, home, "audit", *args)


def segments(home: Path) -> list[Path]:
    return sorted((home / "audit" / "segments").glob("*.jsonl"))


def rewrite_segment(home: Path, edit: Any) -> None:
    """Apply ``edit`` to the lines of the (only) segment, as an intruder with write access."""
    found = segments(home)
    if len(found) != 1:  # the CLI runs on the real clock: midnight in Vietnam rotates the log
        pytest.skip("the log rotated at midnight (Asia/Ho_Chi_Minh) during the test")
    (path,) = found
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    body = edit(lines[:-1])
    path.chmod(0o600)
    path.write_bytes(b"\n".join(body) + b"\n")


def signer_pem(home: Path, target: Path) -> Path:
    """The audit-signer certificate, taken from the CA's store as an auditor would be given it."""
    kyso = open_kyso(load_settings(home=home, environ=FAST_KDF))
    try:
        cert = signer_certificates(kyso)[-1]
    finally:
        kyso.close()
    target.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return target


def checkpoint(home: Path) -> dict[str, Any]:
    return dict(run_json(home, "audit", "checkpoint", "--format", "json"))


# --- verify ---------------------------------------------------------------------------------

def test_verify_passes_on_a_fresh_ca_with_a_pass_line_per_check(
        ca_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outcome = audit(capsys, ca_home, "verify")
    assert outcome.code == 0, outcome.text
    for name in ("segments", "entries and hash chain", "tail", "torn tails"):
        assert re.search(rf"^\s+PASS\s+{name}\b", outcome.out, re.MULTILINE), outcome.out
    assert "FAIL" not in outcome.out
    assert outcome.out.rstrip().endswith("Result: PASS")


def test_verify_json_has_the_result_the_checks_and_the_findings(
        ca_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint(ca_home)
    outcome = audit(capsys, ca_home, "verify", "--format", "json")
    assert outcome.code == 0, outcome.text
    data = json.loads(outcome.out)
    assert set(data) == {"result", "first_seq", "verified_entries", "tree_size", "root", "checks",
                         "findings"}
    assert data["result"] == "PASS"
    assert data["first_seq"] == 0
    assert data["tree_size"] == data["verified_entries"] == len(audit_lines(ca_home))
    assert re.fullmatch(r"[0-9a-f]{64}", data["root"])
    assert data["findings"] == []
    assert all(set(c) == {"name", "status", "detail"} for c in data["checks"])
    assert {c["name"]: c["status"] for c in data["checks"]}["checkpoints"] == "PASS"


def test_verify_from_zero_checks_every_entry_without_comparing_roots(
        ca_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint(ca_home)
    outcome = audit(capsys, ca_home, "verify", "--from", "0", "--format", "json")
    assert outcome.code == 0, outcome.text
    data = json.loads(outcome.out)
    assert (data["result"], data["first_seq"], data["root"]) == ("PASS", 0, None)
    assert data["verified_entries"] == len(audit_lines(ca_home))
    assert {c["name"]: c["status"] for c in data["checks"]}["checkpoints"] == "SKIP"


@pytest.mark.parametrize("start", [1, 4, 7])
def test_verify_from_a_sequence_number_checks_the_rest_only(
        ca_home: Path, capsys: pytest.CaptureFixture[str], start: int) -> None:
    outcome = audit(capsys, ca_home, "verify", "--from", str(start), "--format", "json")
    assert "internal error" not in outcome.err
    assert outcome.code == 0, outcome.text
    data = json.loads(outcome.out)
    assert (data["result"], data["first_seq"], data["root"]) == ("PASS", start, None)
    assert data["verified_entries"] == len(audit_lines(ca_home)) - start


def test_verify_from_does_not_report_an_intact_log_as_rewritten(
        ca_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    size = checkpoint(ca_home)["size"]
    outcome = audit(capsys, ca_home, "verify", "--from", str(size - 1))
    assert outcome.code == 0, outcome.text
    assert "rewritten" not in outcome.out


def _modify(lines: list[bytes]) -> list[bytes]:
    assert b'"outcome":"success"' in lines[4]
    return [*lines[:4], lines[4].replace(b'"outcome":"success"', b'"outcome":"failure"'),
            *lines[5:]]


TAMPERS = {
    "modified": (_modify, 4),
    "deleted": (lambda lines: lines[:4] + lines[5:], 4),
    "reordered": (lambda lines: [*lines[:4], lines[5], lines[4], *lines[6:]], 4),
    "inserted": (lambda lines: [*lines[:5], lines[4], *lines[5:]], 5),
    "garbage": (lambda lines: [*lines[:4], b"\x00\x01 binary blob", *lines[5:]], 4),
}


@pytest.mark.parametrize("kind", list(TAMPERS))
def test_verify_fails_naming_the_kind_and_the_first_bad_seq(
        ca_home: Path, capsys: pytest.CaptureFixture[str], kind: str) -> None:
    edit, seq = TAMPERS[kind]
    rewrite_segment(ca_home, edit)
    outcome = audit(capsys, ca_home, "verify")
    assert outcome.code == 1, outcome.text
    assert "Traceback" not in outcome.text
    assert re.search(r"^\s+FAIL\s+entries and hash chain", outcome.out, re.MULTILINE), outcome.out
    assert f"FINDING {kind} at seq {seq}:" in outcome.out
    assert "Result: FAIL" in outcome.out
    assert "verification FAILED" in outcome.err

    data = json.loads(audit(capsys, ca_home, "verify", "--format", "json").out)
    assert data["result"] == "FAIL"
    assert (data["findings"][0]["kind"], data["findings"][0]["seq"]) == (kind, seq)
    assert "line" in data["findings"][0]["where"]


def test_verify_with_a_saved_checkpoint_catches_a_later_truncation(
        ca_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    issue(ca_home, "citizen")
    saved = Path(checkpoint(ca_home)["path"])
    shutil.copy(saved, "saved.note")
    size = int(saved.stem)
    # The intruder cuts the log's tail and removes what would give it away in the home.
    shutil.rmtree(ca_home / "audit" / "checkpoints")
    (ca_home / "audit" / "head.json").unlink(missing_ok=True)
    rewrite_segment(ca_home, lambda lines: lines[:size - 3])

    plain = audit(capsys, ca_home, "verify")
    assert plain.code == 0, plain.text  # nothing in the home contradicts the shorter log
    outcome = audit(capsys, ca_home, "verify", "--checkpoint", "saved.note")
    assert outcome.code == 1, outcome.text
    assert re.search(r"^\s+FAIL\s+checkpoints", outcome.out, re.MULTILINE), outcome.out
    assert f"FINDING truncated at seq {size - 3}: saved.note" in outcome.out


def test_verify_with_a_saved_checkpoint_that_is_not_a_note_is_refused(
        ca_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Path("bogus.note").write_bytes(b"\x00\xffnot a checkpoint")
    outcome = audit(capsys, ca_home, "verify", "--checkpoint", "bogus.note")
    assert outcome.code == 1, outcome.text
    assert "Traceback" not in outcome.text
    assert "FINDING damaged" in outcome.out
    missing = audit(capsys, ca_home, "verify", "--checkpoint", "missing.note")
    assert_refused(missing, 1, "missing.note")


# --- show -------------------------------------------------------------------------------------

def test_show_filters_by_layer_action_and_time(ca_home: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    issue(ca_home, "staff")
    checkpoint(ca_home)
    outcome = audit(capsys, ca_home, "show", "--layer", "pki", "--action", "CERT_CREATION",
                    "--since", "2026-01-01", "--format", "json")
    assert outcome.code == 0, outcome.text
    shown = json.loads(outcome.out)
    since = dt.datetime(2026, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=7)))
    expected = [e for e in audit_lines(ca_home)
                if e["layer"] == "pki" and e["action"] == "CERT_CREATION"
                and dt.datetime.fromisoformat(e["time"]) >= since]
    assert shown == expected
    assert len(shown) >= 6 or dt.datetime.now(dt.UTC) < since  # 5 services at init + the staff
    lower = json.loads(audit(capsys, ca_home, "show", "--action", "cert_creation", "--format",
                             "json").out)
    assert lower == expected
    everything = json.loads(audit(capsys, ca_home, "show", "--since", "24h", "--format",
                                  "json").out)
    assert everything == audit_lines(ca_home)
    assert json.loads(audit(capsys, ca_home, "show", "--since", "2999-01-01", "--format",
                            "json").out) == []
    until = json.loads(audit(capsys, ca_home, "show", "--until", "2026-01-01", "--format",
                             "json").out)
    assert until == [e for e in audit_lines(ca_home) if dt.datetime.fromisoformat(e["time"]) < since]
    audit_only = json.loads(audit(capsys, ca_home, "show", "--layer", "audit", "--format",
                                  "json").out)
    assert [e["action"] for e in audit_only] == ["AUDIT_CHECKPOINT"]


def test_show_as_a_table_lists_times_in_vietnam(ca_home: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    outcome = audit(capsys, ca_home, "show", "--limit", "2")
    assert outcome.code == 0, outcome.text
    assert "2 event(s)" in outcome.out
    assert "+07:00" in outcome.out
    assert "CA_CREATION" in outcome.out


def test_show_accepts_format_table_as_the_issue_names_it(
        ca_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outcome = audit(capsys, ca_home, "show", "--format", "table")
    assert outcome.code == 0, outcome.text


@pytest.mark.parametrize(("option", "value"), [
    ("--since", "yesterday"), ("--since", "2026-13-01"), ("--since", "2026-02-30"),
    ("--since", "7w"), ("--since", ""), ("--until", "next week"),
])
def test_bad_time_filter_is_a_usage_error_naming_the_option(
        ca_home: Path, capsys: pytest.CaptureFixture[str], option: str, value: str) -> None:
    outcome = audit(capsys, ca_home, "show", option, value)
    assert_refused(outcome, 2, option)
    if value:
        assert value in outcome.err


# --- checkpoint, prove, consistency, verify-proof -----------------------------------------------

def test_checkpoint_prints_the_verifier_key(ca_home: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    outcome = audit(capsys, ca_home, "checkpoint")
    assert outcome.code == 0, outcome.text
    assert "Checkpoint signed" in outcome.out
    match = re.search(r"verifier key\s+(pki\.thainguyen\.gov\.vn/kyso/audit\+[0-9a-f]{8}\+\S+)",
                      outcome.out)
    assert match, outcome.out
    key = base64.b64decode(match.group(1).split("+", 2)[2])
    cert = signer_pem(ca_home, Path("signer.pem"))
    public = x509.load_pem_x509_certificate(cert.read_bytes()).public_key()
    assert isinstance(public, ed25519.Ed25519PublicKey)
    assert key == b"\x01" + public.public_bytes_raw()
    data = checkpoint(ca_home)
    assert data["created"] is True
    assert data["verifier_key"] == match.group(1)
    assert Path(data["path"]).is_file()


def test_checkpoint_with_a_wrong_passphrase_is_refused(
        ca_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KYSO_CA_PASSPHRASE", WRONG_PASSPHRASE)
    outcome = audit(capsys, ca_home, "checkpoint")
    assert_refused(outcome, 1, "passphrase")
    assert not list((ca_home / "audit").glob("checkpoints/*.note"))


def test_prove_then_verify_proof_offline_with_the_signer_certificate(
        ca_home: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    checkpoint(ca_home)
    outcome = audit(capsys, ca_home, "prove", "3", "-o", "f.json")
    assert outcome.code == 0, outcome.text
    assert "PASS" in outcome.out
    bundle = json.loads(Path("f.json").read_text())
    assert bundle["seq"] == 3
    cert = signer_pem(ca_home, Path("signer.pem"))

    nowhere = tmp_path / "no-kyso-home"  # offline: no home, only the certificate
    ok = audit(capsys, nowhere, "verify-proof", "f.json", "--cert", str(cert))
    assert ok.code == 0, ok.text
    assert ok.out.startswith("PASS  entry 3 is in the log pki.thainguyen.gov.vn/kyso/audit")
    rooted = audit(capsys, nowhere, "verify-proof", "f.json", "--trust",
                   str(ca_home / "ca" / "root.crt.pem"))
    assert rooted.code == 0, rooted.text
    as_json = json.loads(audit(capsys, nowhere, "verify-proof", "f.json", "--cert", str(cert),
                               "--format", "json").out)
    assert (as_json["result"], as_json["type"], as_json["seq"]) == ("PASS", "inclusion", 3)
    assert not nowhere.exists()


def test_verify_proof_against_a_different_certificate_fails(
        ca_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint(ca_home)
    run_ok(ca_home, "audit", "prove", "3", "-o", "f.json")
    for other in ("services", "root"):
        outcome = audit(capsys, ca_home, "verify-proof", "f.json", "--cert",
                        str(ca_home / "ca" / f"{other}.crt.pem"))
        assert_refused(outcome, 1, "another audit-signer certificate")
        assert "PASS" not in outcome.out


def test_verify_proof_of_an_altered_bundle_fails(ca_home: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint(ca_home)
    run_ok(ca_home, "audit", "prove", "3", "-o", "f.json")
    cert = signer_pem(ca_home, Path("signer.pem"))
    bundle = json.loads(Path("f.json").read_text())
    bundle["entry"] = bundle["entry"].replace('"outcome":"success"', '"outcome":"failure"')
    Path("altered.json").write_text(json.dumps(bundle))
    outcome = audit(capsys, ca_home, "verify-proof", "altered.json", "--cert", str(cert))
    assert_refused(outcome, 1, "inclusion proof")


@pytest.mark.parametrize(("content", "code", "needle"), [
    (b"garbage", 1, "not JSON"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", 1, "not JSON"),
    (b'{"format": "something-else"}', 1, "kyso-audit-proof/1"),
    (b'{"format": "kyso-audit-proof/1"}', 1, "origin"),
    (None, 1, "missing.json"),
], ids=["text", "binary", "other-format", "empty-bundle", "missing-file"])
def test_verify_proof_of_garbage_is_refused_clearly(
        ca_home: Path, capsys: pytest.CaptureFixture[str], content: bytes | None, code: int,
        needle: str) -> None:
    cert = signer_pem(ca_home, Path("signer.pem"))
    name = "missing.json" if content is None else "bundle.json"
    if content is not None:
        Path(name).write_bytes(content)
    outcome = audit(capsys, ca_home, "verify-proof", name, "--cert", str(cert))
    assert_refused(outcome, code, needle)


def test_verify_proof_of_deeply_nested_json_is_refused_clearly(
        ca_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cert = signer_pem(ca_home, Path("signer.pem"))
    Path("deep.json").write_bytes(b"[" * 100_000)
    assert_refused(audit(capsys, ca_home, "verify-proof", "deep.json", "--cert", str(cert)), 1,
                   "proof bundle")


def test_verify_proof_needs_a_certificate_or_a_root(ca_home: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    Path("f.json").write_text("{}")
    assert_refused(audit(capsys, ca_home, "verify-proof", "f.json"), 2, "--cert", "--trust")
    Path("not-a-cert.pem").write_text("hello")
    assert_refused(audit(capsys, ca_home, "verify-proof", "f.json", "--cert", "not-a-cert.pem"),
                   1, "not a certificate")


def test_prove_without_any_checkpoint_is_refused(ca_home: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    outcome = audit(capsys, ca_home, "prove", "3", "-o", "f.json")
    assert_refused(outcome, 1, "no signed checkpoint")
    assert not Path("f.json").exists()


def test_prove_beyond_the_latest_checkpoint_is_refused(ca_home: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    size = checkpoint(ca_home)["size"]
    assert_refused(audit(capsys, ca_home, "prove", str(size + 50)), 1, "no signed checkpoint")


def test_prove_never_overwrites_an_existing_output(ca_home: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint(ca_home)
    Path("taken.json").write_bytes(b"precious")
    outcome = audit(capsys, ca_home, "prove", "3", "-o", "taken.json")
    assert_refused(outcome, 2, "taken.json", "exists")
    assert Path("taken.json").read_bytes() == b"precious"


def test_consistency_between_a_checkpoint_and_the_latest_verifies_offline(
        ca_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = checkpoint(ca_home)["size"]
    issue(ca_home, "citizen")
    latest = checkpoint(ca_home)["size"]
    outcome = audit(capsys, ca_home, "consistency", str(first), "latest", "-o", "c.json")
    assert outcome.code == 0, outcome.text
    assert f"the log of size {first} is a prefix of the log of size {latest}" in outcome.out
    cert = signer_pem(ca_home, Path("signer.pem"))
    checked = audit(capsys, ca_home, "verify-proof", "c.json", "--cert", str(cert))
    assert checked.code == 0, checked.text
    assert f"of size {first} is a prefix of its log of size {latest}" in checked.out
    by_file = audit(capsys, ca_home, "consistency",
                    str(ca_home / "audit" / "checkpoints" / f"{first:012d}.note"))
    assert by_file.code == 0, by_file.text
    assert json.loads(by_file.out)["type"] == "consistency"


def test_consistency_from_a_size_without_a_checkpoint_is_refused(
        ca_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint(ca_home)
    outcome = audit(capsys, ca_home, "consistency", "5", "latest")
    assert_refused(outcome, 1, "no signed checkpoint of size 5")


# --- export and purge -------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["jsonl", "ocsf", "syslog"])
def test_export_writes_one_line_per_event_and_never_overwrites(
        ca_home: Path, capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    events = audit_lines(ca_home)
    outcome = audit(capsys, ca_home, "export", "--format", fmt, "-o", f"out.{fmt}")
    assert outcome.code == 0, outcome.text
    assert f"{len(events)} event(s) written" in outcome.err
    text = Path(f"out.{fmt}").read_text(encoding="utf-8")
    lines = text.splitlines()
    assert len(lines) == len(events)
    assert text.endswith("\n")
    if fmt == "syslog":
        assert all(re.match(r"<[0-9]{1,3}>1 ", line) for line in lines), lines[0]
    else:
        parsed = [json.loads(line) for line in lines]
        if fmt == "jsonl":
            assert [p["seq"] for p in parsed] == [e["seq"] for e in events]
        else:
            assert all("class_uid" in p for p in parsed)

    before = Path(f"out.{fmt}").read_bytes()
    again = audit(capsys, ca_home, "export", "--format", fmt, "-o", f"out.{fmt}")
    assert_refused(again, 2, f"out.{fmt}", "exists")
    assert Path(f"out.{fmt}").read_bytes() == before


def test_export_filters_like_show(ca_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outcome = audit(capsys, ca_home, "export", "--format", "jsonl", "--action", "CA_CREATION")
    assert outcome.code == 0, outcome.text
    assert [json.loads(line)["action"] for line in outcome.out.splitlines()] == ["CA_CREATION"] * 4


def test_purge_dry_run_shows_the_plan_and_removes_nothing(
        ca_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = segments(ca_home)
    outcome = audit(capsys, ca_home, "purge", "--dry-run")
    assert outcome.code == 0, outcome.text
    assert "retention 92 days" in outcome.out
    assert "0 segment(s) to purge: none" in outcome.out
    data = json.loads(audit(capsys, ca_home, "purge", "--dry-run", "--format", "json").out)
    assert data["retention_days"] == 92
    assert data["purged"] is False
    assert data["segments"] == []
    assert data["cut"] == 0
    assert segments(ca_home) == before
    assert not (ca_home / "audit" / "base.json").exists()


@pytest.mark.slow
def test_checkpoint_every_signs_again_once_the_interval_has_passed(
        ca_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """An idle log gets a checkpoint every interval too (the previous one's own event is new),
    so that its freshness can be judged (CUR-L3-LOG-05); never sooner than the interval."""
    import time

    calls = []

    def sleep(_seconds: float) -> None:
        calls.append(1)
        if len(calls) > 3:
            raise KeyboardInterrupt
        time.sleep(1.1)

    monkeypatch.setattr(audit_commands, "time", SimpleNamespace(sleep=sleep))
    outcome = audit(capsys, ca_home, "checkpoint", "--every", "3600")
    assert outcome.code == 130, outcome.text
    folder = ca_home / "audit" / "checkpoints"
    assert len(list(folder.glob("*.note"))) == 1  # the interval has not passed
    calls.clear()
    outcome = audit(capsys, ca_home, "checkpoint", "--every", "1")
    assert outcome.code == 130, outcome.text
    sizes = sorted(int(n.stem) for n in folder.glob("*.note"))
    assert len(sizes) == 5, sizes  # one at the start, then one per elapsed interval
    assert sizes == list(range(sizes[0], sizes[0] + 5))  # each covers the last one's event


# --- the secrets scan ---------------------------------------------------------------------------

def _raw_private(key: Any) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.private_bytes_raw()
    if isinstance(key, ec.EllipticCurvePrivateKey):
        value = key.private_numbers().private_value
    else:
        assert isinstance(key, rsa.RSAPrivateKey)
        value = key.private_numbers().d
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def _key_material(home: Path) -> list[str]:
    """Text forms of every private key in the home: the lines of the encrypted files, and the
    decrypted PKCS#8 DER and raw private value in base64 (standard and URL-safe) and hex."""
    files = sorted([*home.rglob("*.key.pem"), *home.rglob("*.p12")])
    keys: list[Any] = [load_private_key(p, PASSPHRASE) for p in files if p.suffix == ".pem"]
    keys += [pkcs12.load_key_and_certificates(p.read_bytes(), P12_PASSPHRASE.encode())[0]
             for p in files if p.suffix == ".p12"]
    assert len(keys) >= 11  # four CAs, five services, two holders with a PKCS#12
    out: list[str] = []
    for path in files:
        data = path.read_bytes()
        if path.suffix == ".pem":
            out += [line.decode() for line in data.splitlines() if b"-" not in line]
        out.append(base64.b64encode(data[-48:]).decode())
    for key in keys:
        der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        raw = _raw_private(key)
        out += [base64.b64encode(der).decode()[-40:], der.hex()[-40:],
                base64.b64encode(raw).decode()[:24], base64.urlsafe_b64encode(raw).decode()[:24],
                raw.hex()[:24]]
    return out


@pytest.mark.slow
def test_after_a_ca_scenario_the_log_holds_no_id_number_passphrase_or_key(
        home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    init_ca(home)
    staff = issue(home, "staff")
    issue(home, "citizen")
    run_ok(home, "cert", "issue", *SEAL_ARGS)
    monkeypatch.setenv("KYSO_CA_PASSPHRASE", WRONG_PASSPHRASE)
    failed = run_main(capsys, home, "cert", "issue", *CITIZEN_ARGS[:-1], "001099012345")
    assert_refused(failed, 1, "passphrase")
    monkeypatch.setenv("KYSO_CA_PASSPHRASE", PASSPHRASE)
    run_ok(home, "cert", "revoke", str(staff["serial"]), "--reason", "keyCompromise")
    run_ok(home, "crl", "publish")
    policy_check = cli.get_command(click.Context(cli), "policy") is not None
    if policy_check:  # the policies layer records its verdict through the audit log too
        policy = run_main(capsys, home, "policy", "check", "--level", "3")
        assert policy.code in (0, 1), policy.text
        assert "Traceback" not in policy.text
    run_ok(home, "audit", "checkpoint")
    assert audit(capsys, home, "verify").code == 0

    text = "".join(p.read_text(encoding="utf-8") for p in segments(home))
    seen = {(e["action"], e["outcome"]) for e in audit_lines(home)}
    assert {("CERT_CREATION", "success"), ("CERT_CREATION", "failure"),
            ("CA_KEYACTIVATE", "failure"), ("CERT_REVOKED", "success"),
            ("AUDIT_CHECKPOINT", "success")} <= seen
    assert any(action == "POLICY_CHECK" for action, _o in seen) is policy_check

    for raw_id in (STAFF["id"], CITIZEN["id"], "001099012345"):
        assert raw_id not in text, raw_id
    for token in re.findall(r"[0-9A-Za-z]+", text):  # no 12-digit run outside hex digests
        assert not re.search(r"[0-9]{12}", token) or re.fullmatch(r"[0-9a-fA-F]{32,}", token), token
    assert f"{STAFF['id'][:3]}******{STAFF['id'][-3:]}" in text  # masked, not dropped
    for secret in (PASSPHRASE, P12_PASSPHRASE, WRONG_PASSPHRASE):
        assert secret not in text, secret
    assert "PRIVATE KEY" not in text
    assert "ENCRYPTED" not in text
    for needle in _key_material(home):
        assert needle not in text, needle
