"""Signed checkpoints of this deployment's audit log, by the audit-signer key of our CA.

The log's *origin* (the first line of every checkpoint, and the key name in its signature)
is ``<host of the CA base URL>/kyso/audit``. A checkpoint is signed only over a log that has
just verified completely, so a tampered log can never get a fresh signature. Every
checkpoint is kept under ``checkpoints/<size>.note`` and recorded as an ``AUDIT_CHECKPOINT``
event (which itself lands in the next checkpoint).

:func:`verify_with_store` verifies the log against those signers; :func:`record_verification`
keeps the outcome of a full verification in ``verified.json``, where ``kyso policy check``
reads it (:func:`kyso.policies.facts.read_verification`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kyso.audit.checkpoint import (
    Checkpoint,
    key_id,
    parse_checkpoint,
    sign_checkpoint,
    split_note,
    timestamp_line,
    verifier_key,
    verify_checkpoint,
)
from kyso.audit.entry import MAX_ENTRY_BYTES, peek
from kyso.audit.events import Layer, Outcome
from kyso.audit.segments import Layout, list_segments, write_state
from kyso.audit.trust import (
    SIGNER_PROFILE,
    Revocation,
    SignerUsage,
    TrustedSigner,
    certificate_signer,
)
from kyso.audit.verify import VerifyReport, verify_log, written_after
from kyso.clock import VIETNAM
from kyso.errors import AuditError, CheckpointError
from kyso.files import atomic_write
from kyso.pki.records import CertificateRecord, RevocationReason
from kyso.pki.records import Status as CertStatus

if TYPE_CHECKING:
    from kyso.context import Kyso

SIGNER = "audit-signer"


def log_origin(kyso: Kyso) -> str:
    from kyso.pki.authority import load_settings

    host = urlsplit(load_settings(kyso).base_url).hostname or "localhost"
    return f"{host}/kyso/audit"


def signer_certificates(kyso: Kyso) -> list[x509.Certificate]:
    """Every audit-signer certificate the CA issued (renewals and re-keys included), except
    those revoked because their key was compromised."""
    return [r.certificate for r in signer_records(kyso)
            if r.revocation_reason is not RevocationReason.KEY_COMPROMISE]


def signer_records(kyso: Kyso) -> list[CertificateRecord]:
    """The store's records of every audit-signer certificate, oldest first: status,
    revocation time, reason and invalidity date included."""
    from kyso.store import schema

    c = schema.certificates
    with kyso.store.read() as conn:
        rows = conn.execute(sa.select(c).where(c.c.profile == SIGNER_PROFILE).order_by(c.c.id)
                            ).mappings().all()
    return [CertificateRecord.from_row(row) for row in rows]


def trusted_keys(kyso: Kyso) -> list[TrustedSigner]:
    """The signers :func:`verify_with_store` trusts: every audit-signer certificate in the
    store with an Ed25519 key, each checked against the CA's root (chain, and the usage of
    the audit-signer profile) and carrying what the store records about its revocation, so
    that each checkpoint is judged at its own signing time (:mod:`kyso.audit.trust`). A
    certificate that fails the checks stays in the list with its ``problem``: checkpoints
    signed with its key are refused by name rather than as signed by an unknown key."""
    from kyso.pki.authority import list_authorities

    origin = log_origin(kyso)
    authorities = list_authorities(kyso)
    roots = [a.certificate for a in authorities if a.parent is None]
    pool = [a.certificate for a in authorities if a.parent is not None]
    usage = SignerUsage.of_profile(kyso.profiles.get(SIGNER_PROFILE))
    out = []
    for record in signer_records(kyso):
        signer = certificate_signer(origin, record.certificate, usage=usage, roots=roots,
                                    pool=pool, revocation=_revocation(record))
        if signer is not None:
            out.append(signer)
    return out


def _revocation(record: CertificateRecord) -> Revocation | None:
    if record.status is CertStatus.VALID or record.revoked_at is None:
        return None
    reason = record.revocation_reason.value if record.revocation_reason else record.status.value
    return Revocation(record.revoked_at, reason, record.invalidity_date)


@dataclass(frozen=True)
class CheckpointResult:
    checkpoint: Checkpoint
    note: bytes
    path: str
    created: bool  # False when a checkpoint of this size already existed
    verifier_key: str  # Go sumdb / note verifier key, for tools outside kyso

    def to_dict(self) -> dict[str, Any]:
        return {
            "origin": self.checkpoint.origin,
            "size": self.checkpoint.size,
            "root": self.checkpoint.root.hex(),
            "path": self.path,
            "created": self.created,
            "verifier_key": self.verifier_key,
        }


def _current_signer(kyso: Kyso, passphrase: str) -> tuple[Ed25519PrivateKey, x509.Certificate]:
    from kyso.pki.authority import list_services
    from kyso.pki.keys import load_private_key, spki_sha256

    services = {s.name: s for s in list_services(kyso)}
    info = services.get(SIGNER)
    if info is None:
        raise AuditError("no valid audit-signer certificate in this CA (renew it with "
                         "`kyso cert renew`)")
    now = kyso.now()
    cert = info.certificate
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise AuditError("the audit-signer certificate is not valid now "
                         f"({cert.not_valid_before_utc:%Y-%m-%d} – {cert.not_valid_after_utc:%Y-%m-%d})")
    key = load_private_key(info.key_file, passphrase)
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditError("the audit-signer key is not an Ed25519 key")
    if spki_sha256(key.public_key()) != spki_sha256(cert.public_key()):
        raise AuditError(f"key file {info.key_file} does not match the audit-signer certificate")
    return key, cert


def create_checkpoint(kyso: Kyso, passphrase: str) -> CheckpointResult:
    """Verify the whole log, then sign a checkpoint of it (unless one of that size exists)."""
    key, _cert = _current_signer(kyso, passphrase)
    origin = log_origin(kyso)
    layout = Layout(kyso.settings.audit_dir)
    now = kyso.now()
    report = verify_log(layout.root, trusted=trusted_keys(kyso), origin=origin, now=now)
    if not report.ok or report.root is None:
        failed = next(c for c in report.checks if c.status.value == "FAIL")
        kyso.record(Layer.AUDIT, "AUDIT_CHECKPOINT", Outcome.FAILURE,
                    reason=f"log does not verify: {failed.name}")
        raise AuditError(f"the audit log does not verify, so it is not signed: {failed.detail}")
    checkpoint = Checkpoint(origin, report.size, report.root, (timestamp_line(now),))
    path = layout.checkpoints / f"{report.size:012d}.note"
    created = False
    behind = written_after(_last_entry(layout, report.size), checkpoint)
    if behind is not None and not path.exists():
        kyso.record(Layer.AUDIT, "AUDIT_CHECKPOINT", Outcome.FAILURE,
                    reason="the clock is behind the newest entry")
        raise AuditError(f"the clock is behind the log, so no checkpoint is signed (every "
                         f"verifier would refuse it as backdated): {behind}; set the clock right")
    if path.exists():
        note = path.read_bytes()
        with contextlib.suppress(CheckpointError, UnicodeDecodeError):
            checkpoint = parse_checkpoint(split_note(note)[0])
    else:
        note = sign_checkpoint(checkpoint, origin, key)
        _write_new(path, note)
        created = True
        kyso.record(Layer.AUDIT, "AUDIT_CHECKPOINT", Outcome.SUCCESS, object=f"size:{report.size}",
                    size=report.size, root=report.root.hex(),
                    key_id=key_id(origin, key.public_key()).hex())
    return CheckpointResult(checkpoint, note, str(path), created,
                            verifier_key(origin, key.public_key()))


def _last_entry(layout: Layout, size: int) -> bytes | None:
    """Entry ``size - 1``, read from the end of the last segment (None when it is not there)."""
    segments = list_segments(layout)[0]
    if not segments or size == 0:
        return None
    try:
        with open(segments[-1].path, "rb") as fh:
            end = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, end - 2 * MAX_ENTRY_BYTES))
            tail = fh.read()
    except OSError:
        return None
    lines = tail.split(b"\n")
    line = lines[-2] if len(lines) >= 2 else b""
    head = peek(line)
    return line if head is not None and head[0] == size - 1 else None


def _write_new(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        atomic_write(path, data, mode=0o644, exclusive=True)
    except FileExistsError:
        raise CheckpointError(f"checkpoint {path.name} was written by another process") from None


@dataclass(frozen=True)
class LatestCheckpoint:
    """The newest checkpoint of the log that verifies: signed by a trusted audit signer whose
    certificate was valid when it signed. ``refused`` names the newer ones that did not
    (file name, reason), newest first."""

    checkpoint: Checkpoint | None = None
    path: str | None = None
    refused: tuple[tuple[str, str], ...] = ()

    @property
    def signed_at(self) -> dt.datetime | None:
        return self.checkpoint.signed_at if self.checkpoint is not None else None


def latest_verified_checkpoint(kyso: Kyso, *, limit: int = 50) -> LatestCheckpoint:
    """Look through ``checkpoints/`` from the largest size down (at most ``limit`` files) for
    the first checkpoint that verifies (:func:`kyso.audit.checkpoint.verify_checkpoint` with
    :func:`trusted_keys`, at the clock's now). Its root is not compared with the log here:
    that is ``kyso audit verify``'s work."""
    from kyso.errors import CANotInitialisedError

    layout = Layout(kyso.settings.audit_dir)
    try:
        notes = sorted((p for p in layout.checkpoints.glob("*.note") if p.stem.isdigit()),
                       key=lambda p: int(p.stem), reverse=True)
    except OSError:
        notes = []
    if not notes:
        return LatestCheckpoint()
    try:
        trusted, origin = trusted_keys(kyso), log_origin(kyso)
    except CANotInitialisedError:
        return LatestCheckpoint(refused=((notes[0].name, "no CA in this home, so no audit "
                                          "signer to trust"),))
    now = kyso.now()
    refused = []
    for path in notes[:limit]:
        try:
            with open(path, "rb") as fh:
                data = fh.read(1 << 20)
            checkpoint = verify_checkpoint(data, origin, trusted, now=now)
        except (OSError, CheckpointError, UnicodeDecodeError) as exc:
            refused.append((path.name, str(exc) if not isinstance(exc, OSError)
                            else f"cannot read it ({exc.strerror})"))
            continue
        return LatestCheckpoint(checkpoint, str(path), tuple(refused))
    return LatestCheckpoint(refused=tuple(refused))


def checkpoint_due(last: dt.datetime | None, now: dt.datetime, interval_seconds: int) -> bool:
    """A scheduled checkpoint is due when none was signed yet or the interval has passed,
    whether or not other events arrived: an idle log gets its hourly checkpoint too (each
    one's own ``AUDIT_CHECKPOINT`` event gives it a new size), so its freshness can be judged
    (``CUR-L3-LOG-05``)."""
    return last is None or (now - last).total_seconds() >= interval_seconds


def verify_with_store(kyso: Kyso, *, checkpoints: list[tuple[str, bytes]] | None = None,
                      from_seq: int | None = None) -> VerifyReport:
    """``verify_log`` with this deployment's trusted signers and origin (when a CA exists)."""
    from kyso.errors import CANotInitialisedError

    try:
        trusted, origin = trusted_keys(kyso), log_origin(kyso)
    except CANotInitialisedError:
        trusted, origin = [], None
    return verify_log(kyso.settings.audit_dir, trusted=trusted, origin=origin,
                      checkpoints=checkpoints or [], from_seq=from_seq, now=kyso.now())


def record_verification(kyso: Kyso, report: VerifyReport) -> None:
    """Keep ``report`` of a full verification (not one ``--from`` a sequence number) as the
    log's last verification in ``<audit>/verified.json`` (``time`` in Vietnam time, ``ok``,
    ``size``, ``root``), which ``kyso policy check`` reads. Best effort: a read-only copy of a
    log can still be verified, so a file that cannot be written is skipped."""
    record = {"time": kyso.now().astimezone(VIETNAM).isoformat(), "ok": report.ok,
              "size": report.size, "root": report.root.hex() if report.root else None}
    with contextlib.suppress(OSError):
        write_state(Layout(kyso.settings.audit_dir).verified, record, durable=False)
