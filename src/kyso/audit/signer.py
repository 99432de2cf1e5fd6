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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from kyso.audit.checkpoint import Checkpoint, key_id, sign_checkpoint, verifier_key
from kyso.audit.events import Layer, Outcome
from kyso.audit.segments import Layout, write_state
from kyso.audit.verify import VerifyReport, verify_log
from kyso.clock import VIETNAM
from kyso.errors import AuditError, CheckpointError
from kyso.files import atomic_write

if TYPE_CHECKING:
    from kyso.context import Kyso

SIGNER = "audit-signer"
SIGNER_PROFILE = "audit-signer"


def log_origin(kyso: Kyso) -> str:
    from kyso.pki.authority import load_settings

    host = urlsplit(load_settings(kyso).base_url).hostname or "localhost"
    return f"{host}/kyso/audit"


def signer_certificates(kyso: Kyso) -> list[x509.Certificate]:
    """Every audit-signer certificate the CA issued (renewals and re-keys included), except
    those revoked because their key was compromised."""
    from kyso.store import schema

    c = schema.certificates
    with kyso.store.read() as conn:
        rows = conn.execute(
            sa.select(c.c.der, c.c.revocation_reason).where(c.c.profile == SIGNER_PROFILE)
            .order_by(c.c.id)
        ).all()
    return [x509.load_der_x509_certificate(der) for der, reason in rows
            if reason != "keyCompromise"]


def trusted_keys(kyso: Kyso) -> list[tuple[str, Ed25519PublicKey]]:
    origin = log_origin(kyso)
    out = []
    for cert in signer_certificates(kyso):
        key = cert.public_key()
        if isinstance(key, Ed25519PublicKey):
            out.append((origin, key))
    return out


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
    report = verify_log(layout.root, trusted=trusted_keys(kyso), origin=origin)
    if not report.ok or report.root is None:
        failed = next(c for c in report.checks if c.status.value == "FAIL")
        kyso.record(Layer.AUDIT, "AUDIT_CHECKPOINT", Outcome.FAILURE,
                    reason=f"log does not verify: {failed.name}")
        raise AuditError(f"the audit log does not verify, so it is not signed: {failed.detail}")
    checkpoint = Checkpoint(origin, report.size, report.root)
    path = layout.checkpoints / f"{report.size:012d}.note"
    created = False
    if path.exists():
        note = path.read_bytes()
    else:
        note = sign_checkpoint(checkpoint, origin, key)
        _write_new(path, note)
        created = True
        kyso.record(Layer.AUDIT, "AUDIT_CHECKPOINT", Outcome.SUCCESS, object=f"size:{report.size}",
                    size=report.size, root=report.root.hex(),
                    key_id=key_id(origin, key.public_key()).hex())
    return CheckpointResult(checkpoint, note, str(path), created,
                            verifier_key(origin, key.public_key()))


def _write_new(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        atomic_write(path, data, mode=0o644, exclusive=True)
    except FileExistsError:
        raise CheckpointError(f"checkpoint {path.name} was written by another process") from None


def latest_checkpoint_time(kyso: Kyso) -> dt.datetime | None:
    """When the newest checkpoint was written (for the schedule)."""
    layout = Layout(kyso.settings.audit_dir)
    notes = sorted(layout.checkpoints.glob("*.note")) if layout.checkpoints.is_dir() else []
    if not notes:
        return None
    return dt.datetime.fromtimestamp(notes[-1].stat().st_mtime, dt.UTC)


def checkpoint_due(last: dt.datetime | None, last_size: int, size: int, now: dt.datetime,
                   interval_seconds: int) -> bool:
    """A scheduled checkpoint is due when new entries exist and the interval has passed."""
    if size <= last_size:
        return False
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
                      checkpoints=checkpoints or [], from_seq=from_seq)


def record_verification(kyso: Kyso, report: VerifyReport) -> None:
    """Keep ``report`` of a full verification (not one ``--from`` a sequence number) as the
    log's last verification in ``<audit>/verified.json`` (``time`` in Vietnam time, ``ok``,
    ``size``, ``root``), which ``kyso policy check`` reads. Best effort: a read-only copy of a
    log can still be verified, so a file that cannot be written is skipped."""
    record = {"time": kyso.now().astimezone(VIETNAM).isoformat(), "ok": report.ok,
              "size": report.size, "root": report.root.hex() if report.root else None}
    with contextlib.suppress(OSError):
        write_state(Layout(kyso.settings.audit_dir).verified, record, durable=False)
