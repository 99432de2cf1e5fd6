"""Offline proof bundles (kyso.audit.proofs): an auditor with the audit-signer certificate alone
(or a trusted root) checks that an entry is in the signed log and that a later signed log
extends an earlier one; every alteration is refused by name, and purging old segments keeps
every later entry and checkpoint provable."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import math
import os
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import PASSPHRASE, T0, audit_events
from kyso.audit import AuditEvent, AuditLog, Layer, Outcome
from kyso.audit.checkpoint import Checkpoint, sign_checkpoint, timestamp_line
from kyso.audit.merkle import Frontier, MerkleTree, leaf_hash
from kyso.audit.proofs import (
    AUDIT_SIGNER_POLICY,
    FORMAT,
    MAX_BUNDLE_BYTES,
    consistency_bundle,
    inclusion_bundle,
    load_tree,
    parse_bundle,
    verify_bundle,
)
from kyso.audit.retention import plan_purge, purge
from kyso.audit.segments import Layout, iter_lines, list_segments
from kyso.audit.signer import CheckpointResult, create_checkpoint, log_origin, signer_certificates
from kyso.audit.verify import verify_log
from kyso.clock import VIETNAM, vn_iso
from kyso.context import Kyso
from kyso.errors import AuditError, CheckpointError, ProofError
from kyso.pki.authority import CertificateAuthority, list_authorities, list_services
from kyso.pki.keys import load_private_key

LOG_SIZE = 40


# --- helpers ------------------------------------------------------------------------------------

def record(kyso: Kyso, n: int, tag: str = "e") -> None:
    for i in range(n):
        kyso.record(Layer.ADMIN, "TEST_EVENT", Outcome.SUCCESS, object=f"{tag}{i}")


def grow_to(kyso: Kyso, size: int) -> None:
    record(kyso, size - len(audit_events(kyso)))
    assert len(audit_events(kyso)) == size


@dataclass(frozen=True)
class Signer:
    cert: x509.Certificate
    chain: list[x509.Certificate]
    root: x509.Certificate


def signer_of(kyso: Kyso) -> Signer:
    authorities = {a.name: a.certificate for a in list_authorities(kyso)}
    return Signer(signer_certificates(kyso)[-1], [authorities["services"], authorities["root"]],
                  authorities["root"])


def signer_key(kyso: Kyso) -> Ed25519PrivateKey:
    info = {s.name: s for s in list_services(kyso)}["audit-signer"]
    key = load_private_key(info.key_file, PASSPHRASE)
    assert isinstance(key, Ed25519PrivateKey)
    return key


def pair(result: CheckpointResult) -> tuple[bytes, Checkpoint]:
    return result.note, result.checkpoint


def self_signed_ed25519(name: str = "Kẻ giả mạo") -> x509.Certificate:
    key = Ed25519PrivateKey.generate()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = T0
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, None))


def all_leaf_hashes(directory: Path) -> list[bytes]:
    out = []
    for segment in list_segments(Layout(directory))[0]:
        out += [leaf_hash(line.data) for line in iter_lines(segment.path.read_bytes())
                if line.complete]
    return out


@pytest.fixture
def log40(kyso: Kyso, ca: CertificateAuthority) -> CheckpointResult:
    """A log of exactly LOG_SIZE entries and a signed checkpoint of all of them."""
    grow_to(kyso, LOG_SIZE)
    result = create_checkpoint(kyso, PASSPHRASE)
    assert result.checkpoint.size == LOG_SIZE
    return result


# --- inclusion ------------------------------------------------------------------------------

def test_every_entry_proves_with_the_signer_certificate_alone_and_with_the_root(
        kyso: Kyso, log40: CheckpointResult) -> None:
    signer = signer_of(kyso)
    entries = audit_events(kyso)
    bound = math.ceil(math.log2(LOG_SIZE))
    for seq in range(LOG_SIZE):
        bundle = inclusion_bundle(kyso.settings.audit_dir, seq, log40.note, log40.checkpoint,
                                  signer.cert, signer.chain)
        assert bundle["format"] == FORMAT
        assert bundle["type"] == "inclusion"
        assert len(bundle["proof"]) <= bound
        alone = verify_bundle(bundle, signer.cert)
        assert (alone.kind, alone.seq, alone.tree_size) == ("inclusion", seq, LOG_SIZE)
        assert alone.origin == log_origin(kyso)
        assert alone.entry is not None
        assert alone.entry["seq"] == seq
        assert alone.entry["action"] == entries[seq]["action"]
        rooted = verify_bundle(bundle, roots=[signer.root])
        assert rooted == alone
    assert alone.to_dict()["result"] == "PASS"


def test_bundle_checked_against_another_certificate_fails(kyso: Kyso,
                                                          log40: CheckpointResult) -> None:
    signer = signer_of(kyso)
    bundle = inclusion_bundle(kyso.settings.audit_dir, 7, log40.note, log40.checkpoint,
                              signer.cert, signer.chain)
    for other in (signer.chain[0], signer.root, self_signed_ed25519()):
        with pytest.raises(ProofError, match="another audit-signer certificate"):
            verify_bundle(bundle, other)


def test_bundle_carrying_the_auditors_certificate_but_signed_by_another_key_fails(
        kyso: Kyso, log40: CheckpointResult) -> None:
    signer = signer_of(kyso)
    bundle = inclusion_bundle(kyso.settings.audit_dir, 7, log40.note, log40.checkpoint,
                              signer.cert, signer.chain)
    key = Ed25519PrivateKey.generate()
    other = _cert("Ký nhật ký", "Ký nhật ký", key, key, ca=False, policy=True)
    swapped = dict(bundle, signer_certificate=other.public_bytes(Encoding.PEM).decode())
    with pytest.raises(CheckpointError):
        verify_bundle(swapped, other)


def test_bundle_whose_signer_does_not_chain_to_the_given_root_fails(
        kyso: Kyso, log40: CheckpointResult) -> None:
    signer = signer_of(kyso)
    bundle = inclusion_bundle(kyso.settings.audit_dir, 7, log40.note, log40.checkpoint,
                              signer.cert, signer.chain)
    with pytest.raises(ProofError, match=r"is not issued by Gốc khác .*: its chain ends at .*Root "
                       "CA G1 .*, a root that is not trusted"):
        verify_bundle(bundle, roots=[self_signed_ed25519("Gốc khác")])
    without_chain = dict(bundle, chain=[])
    with pytest.raises(ProofError, match=r"is not issued by .*Root CA G1 .*\(it does not chain "
                       r"to a trusted root\)"):
        verify_bundle(without_chain, roots=[signer.root])


def _cert(subject: str, issuer: str, key: Ed25519PrivateKey, signer: Ed25519PrivateKey, *,
          ca: bool, policy: bool = False, valid: tuple[dt.datetime, dt.datetime] | None = None
          ) -> x509.Certificate:
    not_before, not_after = valid or (T0 - dt.timedelta(days=30), T0 + dt.timedelta(days=30))
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(not_before)
               .not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(
                   digital_signature=not ca, content_commitment=False, key_encipherment=False,
                   data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                   encipher_only=False, decipher_only=False), critical=True))
    if policy:
        builder = builder.add_extension(x509.CertificatePolicies([x509.PolicyInformation(
            x509.ObjectIdentifier(AUDIT_SIGNER_POLICY), None)]), critical=False)
    return builder.sign(signer, None)


def test_a_tsa_certificate_from_the_same_root_is_not_an_audit_signer(
        kyso: Kyso, log40: CheckpointResult) -> None:
    signer = signer_of(kyso)
    bundle = inclusion_bundle(kyso.settings.audit_dir, 7, log40.note, log40.checkpoint,
                              signer.cert, signer.chain)
    tsa = {s.name: s.certificate for s in list_services(kyso)}["tsa"]
    swapped = dict(bundle, signer_certificate=tsa.public_bytes(Encoding.PEM).decode())
    with pytest.raises(ProofError, match="lacks the audit-signing usage"):
        verify_bundle(swapped, roots=[signer.root])


def test_a_chain_through_an_end_entity_certificate_is_refused(
        kyso: Kyso, log40: CheckpointResult) -> None:
    signer = signer_of(kyso)
    bundle = inclusion_bundle(kyso.settings.audit_dir, 7, log40.note, log40.checkpoint,
                              signer.cert, signer.chain)
    root_key, middle_key, leaf_key = (Ed25519PrivateKey.generate() for _ in range(3))
    root = _cert("Gốc", "Gốc", root_key, root_key, ca=True)
    middle = _cert("Nhân viên", "Gốc", middle_key, root_key, ca=False)
    leaf = _cert("Ký nhật ký", "Nhân viên", leaf_key, middle_key, ca=False, policy=True)
    forged = dict(bundle, signer_certificate=leaf.public_bytes(Encoding.PEM).decode(),
                  chain=[middle.public_bytes(Encoding.PEM).decode()])
    with pytest.raises(ProofError, match="issued another certificate but is not a CA"):
        verify_bundle(forged, roots=[root])
    ca_leaf = _cert("Ký nhật ký", "Gốc", leaf_key, root_key, ca=True, policy=True)
    as_ca = dict(bundle, signer_certificate=ca_leaf.public_bytes(Encoding.PEM).decode(), chain=[])
    with pytest.raises(ProofError, match="is a CA certificate, not an audit signer"):
        verify_bundle(as_ca, roots=[root])


def _dated(note: str, key: Ed25519PrivateKey, signed_at: dt.datetime) -> str:
    """The checkpoint of ``note`` signed again by ``key``, dated ``signed_at``."""
    origin, size, root = note.split("\n")[:3]
    checkpoint = Checkpoint(origin, int(size), base64.b64decode(root),
                            (timestamp_line(signed_at),))
    return sign_checkpoint(checkpoint, origin, key).decode()


def test_a_bundle_signed_while_the_certificate_was_valid_verifies_after_it_expired(
        kyso: Kyso, log40: CheckpointResult) -> None:
    signer = signer_of(kyso)
    bundle = inclusion_bundle(kyso.settings.audit_dir, 7, log40.note, log40.checkpoint,
                              signer.cert, signer.chain)
    years_later = signer.cert.not_valid_after_utc + dt.timedelta(days=365)
    assert verify_bundle(bundle, signer.cert, now=years_later).seq == 7
    assert verify_bundle(bundle, roots=[signer.root], now=years_later).seq == 7


def test_a_bundle_signed_after_the_certificate_expired_is_refused_by_name(
        kyso: Kyso, log40: CheckpointResult) -> None:
    signer = signer_of(kyso)
    bundle = inclusion_bundle(kyso.settings.audit_dir, 7, log40.note, log40.checkpoint,
                              signer.cert, signer.chain)
    late = signer.cert.not_valid_after_utc + dt.timedelta(days=1)
    bundle["checkpoint"] = _dated(bundle["checkpoint"], signer_key(kyso), late)
    for kwargs in ({"certificate": signer.cert}, {"roots": [signer.root]}):
        with pytest.raises(CheckpointError, match=re.escape(
                f"expired on {vn_iso(signer.cert.not_valid_after_utc)}; the checkpoint was "
                f"signed at {vn_iso(late)}")):
            verify_bundle(bundle, now=late, **kwargs)  # type: ignore[arg-type]


def test_a_bundle_dated_in_the_future_is_refused(kyso: Kyso, log40: CheckpointResult) -> None:
    signer = signer_of(kyso)
    bundle = inclusion_bundle(kyso.settings.audit_dir, 7, log40.note, log40.checkpoint,
                              signer.cert, signer.chain)
    bundle["checkpoint"] = _dated(bundle["checkpoint"], signer_key(kyso),
                                  T0 + dt.timedelta(days=1))
    assert verify_bundle(bundle, signer.cert).seq == 7  # without a clock, nothing to compare
    with pytest.raises(CheckpointError, match="after the time of verification"):
        verify_bundle(bundle, signer.cert, now=T0)


def test_a_chain_through_a_ca_expired_when_the_checkpoint_was_signed_is_refused(
        kyso: Kyso, log40: CheckpointResult) -> None:
    signer = signer_of(kyso)
    bundle = inclusion_bundle(kyso.settings.audit_dir, 7, log40.note, log40.checkpoint,
                              signer.cert, signer.chain)
    root_key, middle_key, leaf_key = (Ed25519PrivateKey.generate() for _ in range(3))
    root = _cert("Gốc", "Gốc", root_key, root_key, ca=True)
    middle = _cert("Dịch vụ", "Gốc", middle_key, root_key, ca=True,
                   valid=(T0 - dt.timedelta(days=30), T0 - dt.timedelta(days=1)))
    leaf = _cert("Ký nhật ký", "Dịch vụ", leaf_key, middle_key, ca=False, policy=True)
    forged = dict(bundle, signer_certificate=leaf.public_bytes(Encoding.PEM).decode(),
                  chain=[middle.public_bytes(Encoding.PEM).decode()],
                  checkpoint=_dated(bundle["checkpoint"], leaf_key, T0))
    with pytest.raises(CheckpointError, match=r"CA certificate Dịch vụ \(serial [0-9a-f]+\) "
                       "expired on"):
        verify_bundle(forged, roots=[root])
    assert verify_bundle(forged, leaf).seq == 7  # pinned, the auditor vouches for the leaf


def test_a_checkpoint_backdated_before_the_entry_it_proves_is_refused(
        kyso: Kyso, ca: CertificateAuthority) -> None:
    kyso.clock.advance(dt.timedelta(days=10))  # type: ignore[attr-defined]
    record(kyso, 3)
    result = create_checkpoint(kyso, PASSPHRASE)
    signer = signer_of(kyso)
    seq = result.checkpoint.size - 1
    bundle = inclusion_bundle(kyso.settings.audit_dir, seq, result.note, result.checkpoint,
                              signer.cert, signer.chain)
    assert verify_bundle(bundle, signer.cert).seq == seq
    bundle["checkpoint"] = _dated(bundle["checkpoint"], signer_key(kyso), T0 + dt.timedelta(days=1))
    with pytest.raises(CheckpointError, match=f"entry {seq}, which it covers, was written at "
                       f".*backdated"):
        verify_bundle(bundle, signer.cert)


def test_bundle_checked_against_nothing_is_refused(kyso: Kyso, log40: CheckpointResult) -> None:
    signer = signer_of(kyso)
    bundle = inclusion_bundle(kyso.settings.audit_dir, 7, log40.note, log40.checkpoint,
                              signer.cert, signer.chain)
    with pytest.raises(ProofError, match="give the audit-signer certificate"):
        verify_bundle(bundle)


def _flip_first_proof_byte(b: dict[str, Any]) -> None:
    raw = bytearray(base64.b64decode(b["proof"][0]))
    raw[0] ^= 0x01
    b["proof"][0] = base64.b64encode(bytes(raw)).decode()


def _alter_checkpoint_root(b: dict[str, Any]) -> None:
    origin, size, root, rest = b["checkpoint"].split("\n", 3)
    raw = bytearray(base64.b64decode(root))
    raw[-1] ^= 0x01
    b["checkpoint"] = "\n".join([origin, size, base64.b64encode(bytes(raw)).decode(), rest])


def _resign_checkpoint_with_another_key(b: dict[str, Any]) -> None:
    text = b["checkpoint"].split("\n\n", 1)[0] + "\n"
    lines = text.split("\n")
    cp = Checkpoint(lines[0], int(lines[1]), base64.b64decode(lines[2]))
    b["checkpoint"] = sign_checkpoint(cp, lines[0], Ed25519PrivateKey.generate()).decode()


TAMPERS: dict[str, tuple[Callable[[dict[str, Any]], None], type[Exception]]] = {
    "entry text": (lambda b: b.update(entry=b["entry"].replace("admin:test", "admin:tesT")),
                   ProofError),
    "entry replaced by its neighbour": (lambda b: b.update(seq=b["seq"] + 1), ProofError),
    "seq": (lambda b: b.update(seq=b["seq"] + 1), ProofError),
    "seq as text": (lambda b: b.update(seq=str(b["seq"])), ProofError),
    "seq as a boolean": (lambda b: b.update(seq=True), ProofError),
    "flipped proof hash": (_flip_first_proof_byte, ProofError),
    "proof one hash short": (lambda b: b["proof"].pop(), ProofError),
    "proof one hash long": (lambda b: b["proof"].append(b["proof"][0]), ProofError),
    "proof hash not base64": (lambda b: b["proof"].__setitem__(0, "!!!"), ProofError),
    "proof hash of the wrong size": (lambda b: b["proof"].__setitem__(0, "AAAA"), ProofError),
    "proof not a list": (lambda b: b.update(proof="AAAA"), ProofError),
    "checkpoint size": (lambda b: b.update(checkpoint=b["checkpoint"].replace(
        f"\n{LOG_SIZE}\n", f"\n{LOG_SIZE + 1}\n", 1)), CheckpointError),
    "checkpoint root": (_alter_checkpoint_root, CheckpointError),
    "checkpoint signed by another key": (_resign_checkpoint_with_another_key, CheckpointError),
    "checkpoint signature dropped": (lambda b: b.update(
        checkpoint=b["checkpoint"].split("\n\n", 1)[0] + "\n"), CheckpointError),
    "origin": (lambda b: b.update(origin="example.org/other-log"), CheckpointError),
    "type": (lambda b: b.update(type="exclusion"), ProofError),
    "signer certificate not PEM": (lambda b: b.update(signer_certificate="-----BEGIN x"), ProofError),
}


@pytest.mark.parametrize("what", sorted(TAMPERS))
def test_altered_inclusion_bundle_is_refused(kyso: Kyso, log40: CheckpointResult,
                                             what: str) -> None:
    signer = signer_of(kyso)
    seq = 17
    bundle = inclusion_bundle(kyso.settings.audit_dir, seq, log40.note, log40.checkpoint,
                              signer.cert, signer.chain)
    altered = copy.deepcopy(bundle)
    if what == "entry replaced by its neighbour":  # a real entry, its real number, wrong proof
        altered["entry"] = inclusion_bundle(kyso.settings.audit_dir, seq + 1, log40.note,
                                            log40.checkpoint, signer.cert)["entry"]
    mutate, error = TAMPERS[what]
    mutate(altered)
    assert altered != bundle
    with pytest.raises(error):
        verify_bundle(altered, signer.cert)
    with pytest.raises((ProofError, CheckpointError)):
        verify_bundle(altered, roots=[signer.root])


def test_inclusion_bundle_outside_the_checkpoint_is_refused(kyso: Kyso,
                                                            log40: CheckpointResult) -> None:
    signer = signer_of(kyso)
    for seq in (LOG_SIZE, LOG_SIZE + 5, -1):
        with pytest.raises(ProofError, match="not covered"):
            inclusion_bundle(kyso.settings.audit_dir, seq, log40.note, log40.checkpoint,
                             signer.cert)


def test_inclusion_bundle_over_a_log_that_no_longer_matches_is_refused(
        kyso: Kyso, log40: CheckpointResult) -> None:
    signer = signer_of(kyso)
    other = Checkpoint(log40.checkpoint.origin, LOG_SIZE, leaf_hash(b"another root"))
    with pytest.raises(AuditError, match="does not match"):
        inclusion_bundle(kyso.settings.audit_dir, 3, log40.note, other, signer.cert)


# --- consistency ----------------------------------------------------------------------------

def test_consistency_between_every_pair_of_checkpoints_verifies(kyso: Kyso,
                                                                ca: CertificateAuthority) -> None:
    results = [create_checkpoint(kyso, PASSPHRASE)]
    for n in (1, 6, 16, 3):
        record(kyso, n)
        results.append(create_checkpoint(kyso, PASSPHRASE))
    signer = signer_of(kyso)
    for i, old in enumerate(results):
        for new in results[i:]:
            bundle = consistency_bundle(kyso.settings.audit_dir, pair(old), pair(new),
                                        signer.cert, signer.chain)
            assert bundle["type"] == "consistency"
            result = verify_bundle(bundle, signer.cert)
            assert (result.kind, result.old_size, result.tree_size) == (
                "consistency", old.checkpoint.size, new.checkpoint.size)
            assert verify_bundle(bundle, roots=[signer.root]) == result
            if old.checkpoint.size == new.checkpoint.size:
                assert bundle["proof"] == []


def test_consistency_with_the_checkpoints_in_the_wrong_order_is_refused(
        kyso: Kyso, ca: CertificateAuthority) -> None:
    old = create_checkpoint(kyso, PASSPHRASE)
    record(kyso, 4)
    new = create_checkpoint(kyso, PASSPHRASE)
    with pytest.raises(ProofError, match="newer"):
        consistency_bundle(kyso.settings.audit_dir, pair(new), pair(old), signer_of(kyso).cert)


def _fork(kyso: Kyso, tmp_path: Path, events: int) -> tuple[bytes, Checkpoint]:
    """A copy of the log as it stands, grown differently, with a checkpoint signed by the same
    audit-signer key: what a writer rewriting history would try to pass off."""
    fork = tmp_path / "fork"
    shutil.copytree(kyso.settings.audit_dir, fork)
    shutil.rmtree(fork / "checkpoints", ignore_errors=True)
    (fork / "head.json").unlink(missing_ok=True)
    log = AuditLog(fork, kyso.settings.audit, kyso.clock)
    try:
        log.append([AuditEvent(time=kyso.now(), layer=Layer.ADMIN, action="FORKED_EVENT",
                               outcome=Outcome.SUCCESS, actor="admin:mallory", object=f"f{i}")
                    for i in range(events)])
    finally:
        log.close()
    report = verify_log(fork)
    assert report.ok
    assert report.root is not None
    origin = log_origin(kyso)
    checkpoint = Checkpoint(origin, report.size, report.root, (timestamp_line(kyso.now()),))
    return sign_checkpoint(checkpoint, origin, signer_key(kyso)), checkpoint


def test_consistency_from_a_checkpoint_of_a_forked_log_fails(kyso: Kyso, ca: CertificateAuthority,
                                                             tmp_path: Path) -> None:
    record(kyso, 5)
    before = create_checkpoint(kyso, PASSPHRASE)
    forked = _fork(kyso, tmp_path, 3)
    record(kyso, 10, "real")
    new = create_checkpoint(kyso, PASSPHRASE)
    assert forked[1].size < new.checkpoint.size
    signer = signer_of(kyso)
    bundle = consistency_bundle(kyso.settings.audit_dir, forked, pair(new), signer.cert,
                                signer.chain)
    with pytest.raises(ProofError, match="first root"):
        verify_bundle(bundle, signer.cert)
    # The same when the fork's checkpoint is slipped into a bundle made for an honest one.
    honest = consistency_bundle(kyso.settings.audit_dir, pair(before), pair(new), signer.cert)
    honest["old_checkpoint"] = forked[0].decode()
    with pytest.raises(ProofError):
        verify_bundle(honest, signer.cert)


def test_altered_consistency_bundle_is_refused(kyso: Kyso, ca: CertificateAuthority) -> None:
    old = create_checkpoint(kyso, PASSPHRASE)
    record(kyso, 12)
    new = create_checkpoint(kyso, PASSPHRASE)
    signer = signer_of(kyso)
    bundle = consistency_bundle(kyso.settings.audit_dir, pair(old), pair(new), signer.cert)
    for mutate in (_flip_first_proof_byte, lambda b: b["proof"].pop(),
                   lambda b: b.update(proof=[]),
                   lambda b: b.update(old_checkpoint=b["new_checkpoint"],
                                      new_checkpoint=b["old_checkpoint"])):
        altered = copy.deepcopy(bundle)
        mutate(altered)
        with pytest.raises(ProofError):
            verify_bundle(altered, signer.cert)
    forged = copy.deepcopy(bundle)
    forged["new_checkpoint"] = forged["new_checkpoint"].replace(
        f"\n{new.checkpoint.size}\n", f"\n{new.checkpoint.size + 1}\n", 1)
    with pytest.raises(CheckpointError):
        verify_bundle(forged, signer.cert)


# --- the bundle as a file ---------------------------------------------------------------------

def test_bundles_survive_a_json_round_trip(kyso: Kyso, log40: CheckpointResult) -> None:
    first = create_checkpoint(kyso, PASSPHRASE)  # size LOG_SIZE + 1 (log40's own event)
    signer = signer_of(kyso)
    bundles = [
        inclusion_bundle(kyso.settings.audit_dir, 39, log40.note, log40.checkpoint, signer.cert,
                         signer.chain),
        consistency_bundle(kyso.settings.audit_dir, pair(log40), pair(first), signer.cert,
                           signer.chain),
    ]
    for bundle in bundles:
        for text in (json.dumps(bundle), json.dumps(bundle, ensure_ascii=False, indent=1)):
            parsed = parse_bundle(text.encode("utf-8"))
            assert parsed == bundle
            assert verify_bundle(parsed, signer.cert) == verify_bundle(bundle, signer.cert)
            assert verify_bundle(parsed, roots=[signer.root]).kind == bundle["type"]


@pytest.mark.parametrize("data", [
    b"",
    b"not json at all",
    b"\xff\xfe\x00binary",
    b"[]",
    b'"a string"',
    b"{}",
    b'{"format": "kyso-audit-proof/2", "type": "inclusion"}',
    b'{"format": null}',
    b"{" + b" " * (MAX_BUNDLE_BYTES + 1) + b"}",
], ids=["empty", "text", "binary", "array", "string", "no-format", "other-format", "null-format",
        "oversized"])
def test_garbage_bundles_are_refused_when_parsed(data: bytes) -> None:
    with pytest.raises(ProofError):
        parse_bundle(data)


@pytest.mark.parametrize("data", [b"[" * 100_000, b'{"a":' * 100_000])
def test_deeply_nested_json_is_refused_as_a_bundle(data: bytes) -> None:
    assert len(data) <= MAX_BUNDLE_BYTES
    with pytest.raises(ProofError):
        parse_bundle(data)


@pytest.mark.parametrize("bundle", [
    {"format": FORMAT},
    {"format": FORMAT, "origin": 5, "type": "inclusion"},
    {"format": FORMAT, "origin": "o", "type": "inclusion"},
    {"format": FORMAT, "origin": "o", "type": "inclusion", "signer_certificate": 7},
], ids=["bare", "origin-not-text", "no-certificate", "certificate-not-text"])
def test_incomplete_bundles_are_refused_by_name(bundle: dict[str, Any]) -> None:
    with pytest.raises(ProofError):
        verify_bundle(bundle, self_signed_ed25519())


@pytest.mark.parametrize("field", ["checkpoint", "entry", "origin"])
def test_bundle_text_that_is_not_unicode_is_refused(kyso: Kyso, log40: CheckpointResult,
                                                    field: str) -> None:
    signer = signer_of(kyso)
    bundle = inclusion_bundle(kyso.settings.audit_dir, 3, log40.note, log40.checkpoint,
                              signer.cert)
    bundle[field] = "\ud800"  # what json.loads gives for the JSON text "\ud800"
    parsed = parse_bundle(json.dumps(bundle).encode())
    with pytest.raises(ProofError):
        verify_bundle(parsed, signer.cert)


# --- proofs after a purge ---------------------------------------------------------------------

def daily_events(kyso: Kyso, days: int, per_day: int = 2) -> None:
    """Events on each of ``days`` days, so daily rotation makes one segment a day."""
    for day in range(days):
        kyso.clock.advance(dt.timedelta(days=1))  # type: ignore[attr-defined]
        record(kyso, per_day, f"d{day}-")


@dataclass(frozen=True)
class Purged:
    leaves: list[bytes]  # every leaf hash before the purge
    before: CheckpointResult  # a checkpoint before the cut
    covering: CheckpointResult  # the checkpoint that allowed the purge
    cut: int


@pytest.fixture
def purged(kyso: Kyso, ca: CertificateAuthority) -> Purged:
    before = create_checkpoint(kyso, PASSPHRASE)
    daily_events(kyso, 100)
    covering = create_checkpoint(kyso, PASSPHRASE)
    leaves = all_leaf_hashes(kyso.settings.audit_dir)
    plan = plan_purge(kyso)
    assert plan.segments
    assert plan.cut > before.checkpoint.size
    purge(kyso, plan)
    assert not any(s.path.exists() for s in plan.segments)
    return Purged(leaves, before, covering, plan.cut)


def test_entries_after_the_cut_still_prove(kyso: Kyso, purged: Purged) -> None:
    signer = signer_of(kyso)
    size = purged.covering.checkpoint.size
    for seq in range(purged.cut, size):
        bundle = inclusion_bundle(kyso.settings.audit_dir, seq, purged.covering.note,
                                  purged.covering.checkpoint, signer.cert, signer.chain)
        assert verify_bundle(bundle, signer.cert).seq == seq
        assert verify_bundle(bundle, roots=[signer.root]).seq == seq


def test_checkpoints_after_the_cut_still_prove_consistent(kyso: Kyso, purged: Purged) -> None:
    record(kyso, 5, "after")
    latest = create_checkpoint(kyso, PASSPHRASE)
    signer = signer_of(kyso)
    bundle = consistency_bundle(kyso.settings.audit_dir, pair(purged.covering), pair(latest),
                                signer.cert, signer.chain)
    result = verify_bundle(bundle, signer.cert)
    assert (result.old_size, result.tree_size) == (purged.covering.checkpoint.size,
                                                   latest.checkpoint.size)


def test_pruned_tree_gives_the_same_proofs_as_the_full_tree(kyso: Kyso, purged: Purged) -> None:
    full = MerkleTree(purged.leaves)
    n = purged.covering.checkpoint.size
    log = load_tree(kyso.settings.audit_dir, n)
    assert log.tree.root() == full.root(n) == purged.covering.checkpoint.root
    for m in range(purged.cut, n):
        assert log.tree.inclusion_proof(m) == full.inclusion_proof(m, n)
        assert log.tree.consistency_proof(m) == full.consistency_proof(m, n)


def _purge_day(kyso: Kyso) -> str:
    return f"{kyso.now().astimezone(VIETNAM):%Y-%m-%d}"  # the fixture purged at the clock's now


def test_proof_for_a_purged_entry_names_the_seq_and_the_purge_date(kyso: Kyso,
                                                                   purged: Purged) -> None:
    signer = signer_of(kyso)
    with pytest.raises(ProofError) as caught:
        inclusion_bundle(kyso.settings.audit_dir, 2, purged.covering.note,
                         purged.covering.checkpoint, signer.cert)
    assert str(caught.value) == (
        f"entry 2 was purged on {_purge_day(kyso)}: entries before seq {purged.cut} are kept "
        "only as subtree hashes, so it can no longer be proved")


def test_a_purged_entry_is_named_even_with_a_checkpoint_from_before_the_cut(
        kyso: Kyso, purged: Purged) -> None:
    signer = signer_of(kyso)
    with pytest.raises(ProofError, match=f"^entry 2 was purged on {_purge_day(kyso)}"):
        inclusion_bundle(kyso.settings.audit_dir, 2, purged.before.note, purged.before.checkpoint,
                         signer.cert)
    with pytest.raises(ProofError, match=f"size {purged.cut - 1} lies in the purged range "
                       rf"\(entries before seq {purged.cut} were purged on {_purge_day(kyso)}\)"):
        load_tree(kyso.settings.audit_dir, purged.cut - 1)


def test_consistency_from_a_checkpoint_inside_the_purged_range_names_it_and_the_date(
        kyso: Kyso, purged: Purged) -> None:
    signer = signer_of(kyso)
    size = purged.before.checkpoint.size
    with pytest.raises(ProofError, match=f"^the checkpoint of size {size} lies in the purged "
                       f"range .*purged on {_purge_day(kyso)}"):
        consistency_bundle(kyso.settings.audit_dir, pair(purged.before), pair(purged.covering),
                           signer.cert)


def test_proofs_still_work_after_an_interrupted_purge(kyso: Kyso, ca: CertificateAuthority,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    daily_events(kyso, 100)
    covering = create_checkpoint(kyso, PASSPHRASE)
    plan = plan_purge(kyso)

    class Crash(Exception):
        pass

    def crash(*_a: object, **_k: object) -> None:
        raise Crash

    with monkeypatch.context() as m:
        m.setattr(os, "unlink", crash)
        with pytest.raises(Crash):
            purge(kyso, plan)
    assert (kyso.settings.audit_dir / "base.json").exists()
    assert plan.segments[0].path.exists()
    signer = signer_of(kyso)
    bundle = inclusion_bundle(kyso.settings.audit_dir, plan.cut + 1, covering.note,
                              covering.checkpoint, signer.cert)
    assert verify_bundle(bundle, signer.cert).seq == plan.cut + 1


# --- property: a pruned tree proves like the full one -------------------------------------------

class _Pruned(Sequence[bytes]):
    """Leaf hashes with the first ``base`` gone (mirrors proofs._Leaves): touching one fails."""

    def __init__(self, base: int, rest: list[bytes]) -> None:
        self.base, self.rest = base, rest

    def __len__(self) -> int:
        return self.base + len(self.rest)

    def __getitem__(self, index: Any) -> Any:
        assert isinstance(index, int)
        assert index >= self.base, f"purged leaf {index} was read"
        return self.rest[index - self.base]


@settings(max_examples=80, deadline=None)
@given(st.integers(min_value=1, max_value=70).flatmap(
    lambda total: st.tuples(st.just(total), st.integers(min_value=0, max_value=total))),
    st.data())
def test_pruned_tree_proofs_equal_full_tree_proofs(sizes: tuple[int, int], data: st.DataObject
                                                   ) -> None:
    total, cut = sizes
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(total)]
    frontier = Frontier()
    for h in leaves[:cut]:
        frontier.append(h)
    full = MerkleTree(leaves)
    pruned = MerkleTree(_Pruned(cut, leaves[cut:]), known=frontier.blocks())
    n = data.draw(st.integers(min_value=max(cut, 1), max_value=total), label="n")
    assert pruned.root(n) == full.root(n)
    for m in range(cut, n):
        assert pruned.inclusion_proof(m, n) == full.inclusion_proof(m, n)
    for m in range(max(cut, 1), n + 1):
        assert pruned.consistency_proof(m, n) == full.consistency_proof(m, n)
