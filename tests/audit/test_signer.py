"""Signed checkpoints of the deployment's audit log (kyso.audit.signer): signed by the CA's
audit-signer key over a log that has just verified, readable by Go's sumdb/note tooling, never
signed over a tampered log, and scheduled only when new entries exist."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from conftest import PASSPHRASE, T0, audit_events
from kyso.audit import Layer, MemoryAuditLog, Outcome
from kyso.audit.checkpoint import (
    Checkpoint,
    key_id,
    parse_verifier_key,
    sign_checkpoint,
    verifier_key,
    verify_checkpoint,
    verify_note,
)
from kyso.audit.merkle import leaf_hash
from kyso.audit.signer import (
    checkpoint_due,
    create_checkpoint,
    log_origin,
    signer_certificates,
    trusted_keys,
    verify_with_store,
)
from kyso.context import Kyso, open_kyso
from kyso.errors import AuditError, PassphraseError
from kyso.pki.authority import CertificateAuthority

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


def test_trusted_keys_are_the_audit_signer_certificates_ed25519_keys(
        kyso: Kyso, ca: CertificateAuthority) -> None:
    (cert,) = signer_certificates(kyso)
    ((name, key),) = trusted_keys(kyso)
    assert name == ORIGIN
    assert isinstance(cert.public_key(), Ed25519PublicKey)
    assert _raw(key) == _raw(cert.public_key())  # type: ignore[arg-type]


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
    ((_name, key),) = trusted_keys(kyso)
    assert last["details"]["key_id"] == key_id(ORIGIN, key).hex()


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


# --- the schedule -----------------------------------------------------------------------------

HOUR = 3600


@pytest.mark.parametrize(("last", "last_size", "size", "now", "due"), [
    (None, 0, 0, T0, False),  # an empty log: nothing to sign
    (None, 0, 5, T0, True),  # never signed, entries exist
    (T0, 5, 5, T0 + dt.timedelta(hours=5), False),  # no new entries, however long
    (T0, 5, 4, T0 + dt.timedelta(hours=5), False),  # fewer entries (never due)
    (T0, 5, 6, T0 + dt.timedelta(minutes=59, seconds=59), False),  # interval not yet passed
    (T0, 5, 6, T0 + dt.timedelta(hours=1), True),  # exactly the interval
    (T0, 5, 6, T0 + dt.timedelta(hours=2), True),
    (T0, 5, 6, T0 - dt.timedelta(hours=2), False),  # a clock that went back
])
def test_checkpoint_due_needs_new_entries_and_the_interval_passed(
        last: dt.datetime | None, last_size: int, size: int, now: dt.datetime, due: bool) -> None:
    assert checkpoint_due(last, last_size, size, now, HOUR) is due
