"""Signed checkpoints of the deployment's audit log (kyso.audit.signer): signed by the CA's
audit-signer key over a log that has just verified, readable by Go's sumdb/note tooling, never
signed over a tampered log, and scheduled only when new entries exist."""

from __future__ import annotations

import base64
import datetime as dt
import subprocess
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import NameOID

from conftest import PASSPHRASE, T0, audit_events
from kyso.audit import Layer, MemoryAuditLog, Outcome
from kyso.audit.checkpoint import (
    Checkpoint,
    key_id,
    parse_verifier_key,
    sign_checkpoint,
    timestamp_line,
    verifier_key,
    verify_checkpoint,
    verify_note,
)
from kyso.audit.merkle import leaf_hash
from kyso.audit.proofs import AUDIT_SIGNER_POLICY
from kyso.audit.signer import (
    LatestCheckpoint,
    checkpoint_due,
    create_checkpoint,
    latest_verified_checkpoint,
    log_origin,
    signer_certificates,
    trusted_keys,
    verify_with_store,
)
from kyso.audit.verify import Finding, Kind, Status, verify_log
from kyso.clock import vn_iso
from kyso.context import Kyso, open_kyso
from kyso.errors import AuditError, CheckpointError, PassphraseError
from kyso.pki.authority import CertificateAuthority, list_services
from kyso.pki.keys import load_private_key
from kyso.pki.lifecycle import revoke
from kyso.pki.records import certificate_row
from kyso.pki.serials import serial_hex
from kyso.store import schema

ORIGIN = "pki.thainguyen.gov.vn/kyso/audit"


def _notes(kyso: Kyso) -> list[Path]:
    folder = kyso.settings.audit_dir / "checkpoints"
    return sorted(folder.glob("*.note")) if folder.is_dir() else []


def _raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _segment(kyso: Kyso) -> Path:
    (path,) = sorted((kyso.settings.audit_dir / "segments").glob("*.jsonl"))
    return path


def _tamper_same_length(path: Path, line_index: int) -> None:
    """Change one character of one entry, keeping its length (the writer's offsets stay)."""
    lines = path.read_bytes().split(b"\n")
    assert b'"actor":"admin:test"' in lines[line_index]
    lines[line_index] = lines[line_index].replace(b'"actor":"admin:test"', b'"actor":"admin:tesT"')
    path.chmod(0o600)
    path.write_bytes(b"\n".join(lines))


# --- the origin and the trusted keys ----------------------------------------------------------

def test_origin_is_the_ca_base_url_host_with_the_kyso_audit_path(kyso: Kyso,
                                                                 ca: CertificateAuthority) -> None:
    assert log_origin(kyso) == ORIGIN


def test_trusted_keys_are_the_audit_signer_certificates_checked_against_the_root(
        kyso: Kyso, ca: CertificateAuthority) -> None:
    (cert,) = signer_certificates(kyso)
    (signer,) = trusted_keys(kyso)
    assert signer.name == ORIGIN
    assert isinstance(cert.public_key(), Ed25519PublicKey)
    assert _raw(signer.key) == _raw(cert.public_key())  # type: ignore[arg-type]
    assert signer.certificate == cert
    assert signer.problem is None
    assert list(signer.chain) == [ca.certificate("services"), ca.certificate("root")]
    assert signer.revocation is None


# --- signing ------------------------------------------------------------------------------------

def test_checkpoint_after_ca_init_covers_the_whole_log_and_verifies_with_the_trusted_keys(
        kyso: Kyso, ca: CertificateAuthority) -> None:
    size_before = len(audit_events(kyso))
    result = create_checkpoint(kyso, PASSPHRASE)

    assert result.created
    assert result.checkpoint.origin == ORIGIN
    assert result.checkpoint.size == size_before
    assert Path(result.path) == kyso.settings.audit_dir / "checkpoints" / f"{size_before:012d}.note"
    assert Path(result.path).read_bytes() == result.note
    assert result.note.startswith(f"{ORIGIN}\n{size_before}\n".encode())
    assert verify_checkpoint(result.note, ORIGIN, trusted_keys(kyso)) == result.checkpoint
    report = verify_with_store(kyso)
    assert report.ok, report.to_dict()
    checks = {c.name: c.status.value for c in report.checks}
    assert checks["checkpoints"] == "PASS"


def test_checkpoint_is_recorded_as_an_audit_checkpoint_event(kyso: Kyso,
                                                             ca: CertificateAuthority) -> None:
    result = create_checkpoint(kyso, PASSPHRASE)
    last = audit_events(kyso)[-1]
    assert last["seq"] == result.checkpoint.size  # it lands in the next checkpoint
    assert (last["layer"], last["action"], last["outcome"]) == ("audit", "AUDIT_CHECKPOINT",
                                                                "success")
    assert last["details"]["size"] == result.checkpoint.size
    assert last["details"]["root"] == result.checkpoint.root.hex()
    (signer,) = trusted_keys(kyso)
    assert last["details"]["key_id"] == key_id(ORIGIN, signer.key).hex()


def _go_parse(vkey: str) -> tuple[str, Ed25519PublicKey]:
    """golang.org/x/mod/sumdb/note.NewVerifier: chop at the first '+', then the next one; the
    base64 key (which may itself hold '+') is the rest."""
    name, _, rest = vkey.partition("+")
    hash_hex, _, key64 = rest.partition("+")
    raw = base64.b64decode(key64, validate=True)
    assert raw[0] == 0x01
    assert len(raw) == 33
    key = Ed25519PublicKey.from_public_bytes(raw[1:])
    assert key_id(name, key).hex() == hash_hex
    return name, key


def test_verifier_key_parses_the_go_way_and_verifies_the_note(kyso: Kyso,
                                                              ca: CertificateAuthority) -> None:
    result = create_checkpoint(kyso, PASSPHRASE)
    name, key = _go_parse(result.verifier_key)
    assert name == ORIGIN
    (cert,) = signer_certificates(kyso)
    assert _raw(key) == _raw(cert.public_key())  # type: ignore[arg-type]
    assert verify_note(result.note, [(name, key)]) == result.checkpoint.body()
    assert result.to_dict()["verifier_key"] == result.verifier_key
    if "+" not in result.verifier_key.split("+", 2)[2]:  # see the test below for the other half
        assert parse_verifier_key(result.verifier_key) == (name, key)


def _key_with_plus_in_its_verifier_key() -> Ed25519PrivateKey:
    for seed in range(256):
        key = Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)
        if "+" in verifier_key(ORIGIN, key.public_key()).split("+", 2)[2]:
            return key
    raise AssertionError("no such seed")  # pragma: no cover - about half of all keys qualify


def test_parse_verifier_key_accepts_a_plus_inside_the_base64_key() -> None:
    key = _key_with_plus_in_its_verifier_key()
    vkey = verifier_key(ORIGIN, key.public_key())
    name, parsed = parse_verifier_key(vkey)
    assert name == ORIGIN
    assert _raw(parsed) == _raw(key.public_key())
    assert _go_parse(vkey)[0] == ORIGIN


def test_a_second_checkpoint_of_the_same_size_is_not_signed_again(
        kyso: Kyso, ca: CertificateAuthority) -> None:
    # The checkpoint's own AUDIT_CHECKPOINT event grows the log; route events elsewhere so the
    # log stands still and a second run sees the same size.
    quiet = open_kyso(kyso.settings, clock=kyso.clock, audit=MemoryAuditLog(), actor="admin:test")
    try:
        first = create_checkpoint(quiet, PASSPHRASE)
        path = Path(first.path)
        stamp = path.stat().st_mtime_ns
        second = create_checkpoint(quiet, PASSPHRASE)
    finally:
        quiet.close()
    assert first.created
    assert not second.created
    assert second.note == first.note
    assert second.checkpoint == first.checkpoint
    assert path.read_bytes() == first.note
    assert path.stat().st_mtime_ns == stamp
    assert _notes(kyso) == [path]
    recorded = [e for e in quiet.audit.events if e.action == "AUDIT_CHECKPOINT"]  # type: ignore[attr-defined]
    assert len(recorded) == 1


def test_a_later_checkpoint_covers_the_first_ones_event(kyso: Kyso,
                                                        ca: CertificateAuthority) -> None:
    first = create_checkpoint(kyso, PASSPHRASE)
    second = create_checkpoint(kyso, PASSPHRASE)
    assert second.created
    assert second.checkpoint.size == first.checkpoint.size + 1
    assert len(_notes(kyso)) == 2
    assert verify_with_store(kyso).ok


# --- refusals -------------------------------------------------------------------------------

def test_a_tampered_log_is_not_signed_and_the_refusal_is_recorded(
        kyso: Kyso, ca: CertificateAuthority) -> None:
    create_checkpoint(kyso, PASSPHRASE)
    notes = _notes(kyso)
    kyso.record(Layer.ADMIN, "TEST_EVENT", Outcome.SUCCESS, object="after-checkpoint")
    _tamper_same_length(_segment(kyso), 3)

    with pytest.raises(AuditError, match="does not verify"):
        create_checkpoint(kyso, PASSPHRASE)

    assert _notes(kyso) == notes
    failures = [e for e in audit_events(kyso)
                if e["action"] == "AUDIT_CHECKPOINT" and e["outcome"] == "failure"]
    assert len(failures) == 1
    assert "does not verify" in failures[0]["details"]["reason"]


def test_a_log_with_a_forged_checkpoint_is_not_signed(kyso: Kyso,
                                                      ca: CertificateAuthority) -> None:
    intruder = Ed25519PrivateKey.generate()
    size = len(audit_events(kyso))
    forged = sign_checkpoint(Checkpoint(ORIGIN, size, leaf_hash(b"x")), ORIGIN, intruder)
    folder = kyso.settings.audit_dir / "checkpoints"
    folder.mkdir(mode=0o700)
    (folder / f"{size:012d}.note").write_bytes(forged)

    with pytest.raises(AuditError, match="not signed"):
        create_checkpoint(kyso, PASSPHRASE)

    assert [p.name for p in _notes(kyso)] == [f"{size:012d}.note"]
    assert (folder / f"{size:012d}.note").read_bytes() == forged
    last = audit_events(kyso)[-1]
    assert (last["action"], last["outcome"]) == ("AUDIT_CHECKPOINT", "failure")


def test_a_wrong_passphrase_is_refused_before_anything_is_written(
        kyso: Kyso, ca: CertificateAuthority) -> None:
    before = audit_events(kyso)
    with pytest.raises(PassphraseError):
        create_checkpoint(kyso, "not-the-ca-passphrase")
    assert _notes(kyso) == []
    assert not any(e["action"] == "AUDIT_CHECKPOINT" for e in audit_events(kyso)[len(before):])


def test_checkpoint_without_a_ca_is_refused(kyso: Kyso) -> None:
    with pytest.raises(AuditError, match="audit-signer"):
        create_checkpoint(kyso, PASSPHRASE)
    assert _notes(kyso) == []


def test_checkpoint_is_refused_once_the_audit_signer_certificate_has_expired(
        kyso: Kyso, ca: CertificateAuthority) -> None:
    (cert,) = signer_certificates(kyso)
    kyso.clock.set(cert.not_valid_after_utc + dt.timedelta(days=1))  # type: ignore[attr-defined]
    with pytest.raises(AuditError, match="not valid now"):
        create_checkpoint(kyso, PASSPHRASE)
    assert _notes(kyso) == []


# --- which checkpoints the store's signers vouch for ----------------------------------------------

def _signer_key(kyso: Kyso) -> Ed25519PrivateKey:
    info = {s.name: s for s in list_services(kyso)}["audit-signer"]
    key = load_private_key(info.key_file, PASSPHRASE)
    assert isinstance(key, Ed25519PrivateKey)
    return key


def _install(kyso: Kyso, key: Ed25519PrivateKey, signed_at: dt.datetime | None,
             name: str = ORIGIN) -> tuple[str, bytes]:
    """Sign a checkpoint of the log as it stands, dated ``signed_at`` (None: no Timestamp
    line, as before kyso wrote one), and put it among the log's checkpoints."""
    report = verify_log(kyso.settings.audit_dir)  # no trusted keys: only the entries count
    assert report.root is not None
    lines = (timestamp_line(signed_at),) if signed_at is not None else ()
    note = sign_checkpoint(Checkpoint(ORIGIN, report.size, report.root, lines), name, key)
    folder = kyso.settings.audit_dir / "checkpoints"
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / f"{report.size:012d}.note"
    path.write_bytes(note)
    return f"checkpoints/{path.name}", note


def _refused(kyso: Kyso, where: str) -> Finding:
    report = verify_with_store(kyso)
    assert not report.ok
    checks = {c.name: c for c in report.checks}
    assert checks["checkpoints"].status is Status.FAIL
    (finding,) = [f for f in report.findings if f.where == where]
    assert finding.kind is Kind.UNTRUSTED_SIGNER
    assert "UNTRUSTED-SIGNER" in checks["checkpoints"].detail
    return finding


def _move_on(kyso: Kyso, to: dt.datetime) -> None:
    kyso.clock.set(to)  # type: ignore[attr-defined]
    kyso.record(Layer.ADMIN, "TEST_EVENT", Outcome.SUCCESS, object="later")


def test_a_checkpoint_carries_its_signing_time_under_the_signature(
        kyso: Kyso, ca: CertificateAuthority) -> None:
    result = create_checkpoint(kyso, PASSPHRASE)
    ns = (T0 - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1) * 1000
    assert result.note.split(b"\n")[3] == f"Timestamp: {ns}".encode()
    assert result.checkpoint.signed_at == T0
    moved = result.note.replace(f"Timestamp: {ns}".encode(), f"Timestamp: {ns + 10**9}".encode())
    with pytest.raises(CheckpointError, match="forged"):
        verify_checkpoint(moved, ORIGIN, trusted_keys(kyso))


def test_a_checkpoint_signed_while_the_certificate_was_valid_still_verifies_after_it_expired(
        kyso: Kyso, ca: CertificateAuthority) -> None:
    create_checkpoint(kyso, PASSPHRASE)
    (cert,) = signer_certificates(kyso)
    _move_on(kyso, cert.not_valid_after_utc + dt.timedelta(days=30))
    report = verify_with_store(kyso)
    assert report.ok, report.to_dict()
    assert {c.name: c.status for c in report.checks}["checkpoints"] is Status.PASS


def test_a_checkpoint_signed_after_the_certificate_expired_is_refused_by_name(
        kyso: Kyso, ca: CertificateAuthority) -> None:
    (cert,) = signer_certificates(kyso)
    later = cert.not_valid_after_utc + dt.timedelta(days=1)
    _move_on(kyso, later)
    where, note = _install(kyso, _signer_key(kyso), later)
    finding = _refused(kyso, where)
    assert "audit-signer certificate UBND tỉnh Thái Nguyên Audit Log Signer G1 (serial" in finding.message
    assert f"expired on {vn_iso(cert.not_valid_after_utc)}" in finding.message
    with pytest.raises(CheckpointError, match="expired on"):
        verify_checkpoint(note, ORIGIN, trusted_keys(kyso), now=later)


def test_a_checkpoint_dated_before_the_certificate_was_valid_is_refused(
        kyso: Kyso, ca: CertificateAuthority) -> None:
    (cert,) = signer_certificates(kyso)
    where, _note = _install(kyso, _signer_key(kyso), cert.not_valid_before_utc
                            - dt.timedelta(days=1))
    assert "was not yet valid" in _refused(kyso, where).message


def test_a_checkpoint_dated_in_the_future_is_refused(kyso: Kyso,
                                                     ca: CertificateAuthority) -> None:
    where, _note = _install(kyso, _signer_key(kyso), T0 + dt.timedelta(hours=1))
    assert "after the time of verification" in _refused(kyso, where).message


def test_a_checkpoint_backdated_before_the_entries_it_covers_is_refused(
        kyso: Kyso, ca: CertificateAuthority) -> None:
    _move_on(kyso, T0 + dt.timedelta(days=10))
    where, _note = _install(kyso, _signer_key(kyso), T0 + dt.timedelta(days=1))
    finding = _refused(kyso, where)
    assert "backdated" in finding.message
    assert finding.seq == len(audit_events(kyso)) - 1


def test_revocation_refuses_checkpoints_signed_after_it_and_keeps_the_earlier_ones(
        kyso: Kyso, ca: CertificateAuthority) -> None:
    before = create_checkpoint(kyso, PASSPHRASE)
    (cert,) = signer_certificates(kyso)
    key = _signer_key(kyso)
    _move_on(kyso, T0 + dt.timedelta(days=2))
    revoke(kyso, serial_hex(cert.serial_number), reason="superseded")
    assert verify_with_store(kyso).ok  # the checkpoint signed before the revocation stands
    assert verify_checkpoint(before.note, ORIGIN, trusted_keys(kyso)) == before.checkpoint
    _move_on(kyso, T0 + dt.timedelta(days=3))
    where, _note = _install(kyso, key, kyso.now())
    message = _refused(kyso, where).message
    assert f"was revoked on {vn_iso(T0 + dt.timedelta(days=2))} (superseded)" in message


def test_a_key_compromise_refuses_every_checkpoint_of_the_key(kyso: Kyso,
                                                              ca: CertificateAuthority) -> None:
    before = create_checkpoint(kyso, PASSPHRASE)
    (cert,) = signer_certificates(kyso)
    _move_on(kyso, T0 + dt.timedelta(days=2))
    revoke(kyso, serial_hex(cert.serial_number), reason="keyCompromise")
    message = _refused(kyso, f"checkpoints/{Path(before.path).name}").message
    assert "revoked for key compromise" in message
    with pytest.raises(CheckpointError, match="key compromise"):
        verify_checkpoint(before.note, ORIGIN, trusted_keys(kyso))


def _slip_into_store(kyso: Kyso, cert: x509.Certificate) -> None:
    """What someone who can write to kyso.db could do: add a certificate as an audit signer."""
    row = certificate_row(cert, profile="audit-signer", issuer="services", now=T0,
                          holder_pseudonym=None, holder_hint=None, email=None)
    kyso.store.write(lambda conn: conn.execute(sa.insert(schema.certificates).values(**row)))


def _signer_cert(key: Ed25519PrivateKey, issuer: x509.Name, signing_key: Any, *,
                 policy: bool = True, eku: bool = False) -> x509.Certificate:
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                           "Audit Log Signer G1")]))
               .issuer_name(issuer).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(T0 - dt.timedelta(days=1))
               .not_valid_after(T0 + dt.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(
                   digital_signature=True, content_commitment=False, key_encipherment=False,
                   data_encipherment=False, key_agreement=False, key_cert_sign=False,
                   crl_sign=False, encipher_only=False, decipher_only=False), critical=True))
    if policy:
        builder = builder.add_extension(x509.CertificatePolicies([x509.PolicyInformation(
            x509.ObjectIdentifier(AUDIT_SIGNER_POLICY), None)]), critical=False)
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(
            [x509.oid.ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
    algorithm = None if isinstance(signing_key, Ed25519PrivateKey) else hashes.SHA384()
    return builder.sign(signing_key, algorithm)


def test_an_audit_signer_from_another_ca_slipped_into_the_store_is_refused(
        kyso: Kyso, ca: CertificateAuthority) -> None:
    rogue_ca = Ed25519PrivateKey.generate()
    rogue_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Services CA G1")])
    key = Ed25519PrivateKey.generate()
    _slip_into_store(kyso, _signer_cert(key, rogue_name, rogue_ca))
    where, _note = _install(kyso, key, T0)
    message = _refused(kyso, where).message
    assert "is not issued by" in message
    assert ca.certificate("root").subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value \
        in message


@pytest.mark.parametrize(("policy", "eku", "why"), [
    (False, False, "does not carry the audit-signer policy"),
    (True, True, "extended key usage limits it to"),
])
def test_a_certificate_of_our_ca_without_the_audit_signing_usage_is_refused(
        kyso: Kyso, ca: CertificateAuthority, policy: bool, eku: bool, why: str) -> None:
    services = ca.issuer("services")
    key = Ed25519PrivateKey.generate()
    _slip_into_store(kyso, _signer_cert(key, services.certificate.subject, services.key,
                                        policy=policy, eku=eku))
    where, _note = _install(kyso, key, T0)
    message = _refused(kyso, where).message
    assert "lacks the audit-signing usage" in message
    assert why in message


def test_a_checkpoint_without_a_signing_time_is_judged_at_the_time_of_verification(
        kyso: Kyso, ca: CertificateAuthority) -> None:
    where, note = _install(kyso, _signer_key(kyso), None)
    assert verify_with_store(kyso).ok
    with pytest.raises(CheckpointError, match="no signing time"):
        verify_checkpoint(note, ORIGIN, trusted_keys(kyso))  # and no now to judge it by
    (cert,) = signer_certificates(kyso)
    _move_on(kyso, cert.not_valid_after_utc + dt.timedelta(days=1))
    message = _refused(kyso, where).message
    assert "carries no signing time" in message
    assert "expired on" in message


def test_the_latest_verified_checkpoint_skips_newer_ones_that_do_not_verify(
        kyso: Kyso, ca: CertificateAuthority) -> None:
    assert latest_verified_checkpoint(kyso) == LatestCheckpoint()
    good = create_checkpoint(kyso, PASSPHRASE)
    kyso.record(Layer.ADMIN, "TEST_EVENT", Outcome.SUCCESS, object="after")
    where, _note = _install(kyso, Ed25519PrivateKey.generate(), T0)
    latest = latest_verified_checkpoint(kyso)
    assert latest.checkpoint == good.checkpoint
    assert latest.signed_at == T0
    assert latest.path == good.path
    ((name, reason),) = latest.refused
    assert name == Path(where).name
    assert "not signed by a trusted key" in reason


# --- an independent judge: openssl ------------------------------------------------------------------

def _openssl(openssl: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([openssl, *args], capture_output=True, text=True, check=False,
                          timeout=30)


@pytest.mark.external
def test_openssl_verifies_the_dated_checkpoint_signature_with_the_certificate_key(
        kyso: Kyso, ca: CertificateAuthority, openssl: str, tmp_path: Path) -> None:
    result = create_checkpoint(kyso, PASSPHRASE)
    (cert,) = signer_certificates(kyso)
    body, _blank, signature_line = result.note.decode().rpartition("\n\n")
    (tmp_path / "body").write_bytes((body + "\n").encode())  # every line above the blank one
    blob = base64.b64decode(signature_line.strip().rsplit(" ", 1)[1])
    (tmp_path / "sig").write_bytes(blob[4:])  # after the 4-byte key ID
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pub = _openssl(openssl, "x509", "-in", str(tmp_path / "cert.pem"), "-pubkey", "-noout")
    (tmp_path / "pub.pem").write_text(pub.stdout)
    verified = _openssl(openssl, "pkeyutl", "-verify", "-pubin", "-inkey",
                        str(tmp_path / "pub.pem"), "-rawin", "-in", str(tmp_path / "body"),
                        "-sigfile", str(tmp_path / "sig"))
    assert verified.returncode == 0, verified.stderr
    assert "Signature Verified Successfully" in verified.stdout


@pytest.mark.external
def test_openssl_agrees_on_when_the_audit_signer_chain_was_valid(
        kyso: Kyso, ca: CertificateAuthority, openssl: str, tmp_path: Path) -> None:
    """``openssl verify -attime`` judges the chain at a checkpoint's signing time, as kyso does."""
    (signer,) = trusted_keys(kyso)
    assert signer.certificate is not None
    pem = serialization.Encoding.PEM
    (tmp_path / "signer.pem").write_bytes(signer.certificate.public_bytes(pem))
    (tmp_path / "services.pem").write_bytes(ca.certificate("services").public_bytes(pem))
    (tmp_path / "root.pem").write_bytes(ca.certificate("root").public_bytes(pem))
    after = signer.certificate.not_valid_after_utc
    before = signer.certificate.not_valid_before_utc
    for when in (T0, T0 + dt.timedelta(days=400), after - dt.timedelta(hours=1),
                 after + dt.timedelta(days=1), before - dt.timedelta(days=1)):
        judged = _openssl(openssl, "verify", "-attime", str(int(when.timestamp())), "-CAfile",
                          str(tmp_path / "root.pem"), "-untrusted", str(tmp_path / "services.pem"),
                          str(tmp_path / "signer.pem"))
        ours = signer.refusal(when, when)
        assert (judged.returncode == 0) is (ours is None), (when, judged.stdout, judged.stderr,
                                                             ours)


def test_no_checkpoint_is_signed_while_the_clock_is_behind_the_log(
        kyso: Kyso, ca: CertificateAuthority) -> None:
    """A clock stepped back would date the checkpoint before entries it covers: every verifier
    would refuse it as backdated, so it is not signed at all."""
    _move_on(kyso, T0 + dt.timedelta(hours=1))
    kyso.clock.set(T0 + dt.timedelta(minutes=30))  # type: ignore[attr-defined]
    with pytest.raises(AuditError, match="the clock is behind the log"):
        create_checkpoint(kyso, PASSPHRASE)
    assert _notes(kyso) == []
    last = audit_events(kyso)[-1]
    assert (last["action"], last["outcome"]) == ("AUDIT_CHECKPOINT", "failure")
    kyso.clock.set(T0 + dt.timedelta(hours=1, minutes=4))  # within the allowed skew
    assert create_checkpoint(kyso, PASSPHRASE).created
    assert verify_with_store(kyso).ok


# --- the schedule -----------------------------------------------------------------------------

HOUR = 3600


@pytest.mark.parametrize(("last", "now", "due"), [
    (None, T0, True),  # never signed
    (T0, T0 + dt.timedelta(minutes=59, seconds=59), False),  # interval not yet passed
    (T0, T0 + dt.timedelta(hours=1), True),  # exactly the interval
    (T0, T0 + dt.timedelta(hours=5), True),  # idle or not: an hourly checkpoint keeps it fresh
    (T0, T0 - dt.timedelta(hours=2), False),  # a clock that went back
])
def test_checkpoint_due_once_the_interval_has_passed(last: dt.datetime | None, now: dt.datetime,
                                                     due: bool) -> None:
    assert checkpoint_due(last, now, HOUR) is due
