"""Checkpoints of the audit log: C2SP ``tlog-checkpoint`` bodies in the C2SP ``signed-note``
format, signed with Ed25519 (signature type 0x01) — the format of Go's checksum database and
Sigstore Rekor v2, so existing tooling can read and witness them.

    <origin>
    <tree size>
    <base64 root hash>
    Timestamp: <signing time, nanoseconds since 1970-01-01 UTC>

    — <key name> base64(key ID[4] || Ed25519 signature[64])

The ``Timestamp:`` extension line is Sigstore Rekor's: the signing time, under the signature,
against which the signer's certificate is judged (:mod:`kyso.audit.trust`). Checkpoints from
before kyso wrote it have no extension lines.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from kyso.audit.trust import TrustAnchor, TrustedSigner, as_signers
from kyso.errors import CheckpointError

ED25519 = 0x01
MAX_NOTE_BYTES = 1 << 20
MAX_SIGNATURES = 100
_DASH = "\u2014 "
_NAME = re.compile(r"[^\s+]+")
_B64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
TIMESTAMP = "Timestamp: "
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MAX_NANOS = 10**19  # beyond year 2286: not a time this log will see


def timestamp_line(when: dt.datetime) -> str:
    """The ``Timestamp: <ns>`` extension line for a checkpoint signed at ``when``."""
    return f"{TIMESTAMP}{(when - _EPOCH) // dt.timedelta(microseconds=1) * 1000}"


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(name: str, public_key: Ed25519PublicKey) -> bytes:
    """SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[:4] (signed-note §Signatures)."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([ED25519]) + _raw(public_key)
                          ).digest()[:4]


def verifier_key(name: str, public_key: Ed25519PublicKey) -> str:
    """The ``name+keyid+base64(type||key)`` form used by Go's sumdb/note and Rekor."""
    return (f"{name}+{key_id(name, public_key).hex()}+"
            + base64.b64encode(bytes([ED25519]) + _raw(public_key)).decode("ascii"))


def parse_verifier_key(vkey: str) -> tuple[str, Ed25519PublicKey]:
    name, _, rest = vkey.strip().partition("+")  # as Go's note.NewVerifier: the base64 key
    hexid, _, key64 = rest.partition("+")        # may itself contain '+'
    parts = [name, hexid, key64]
    if not all(parts) or not re.fullmatch(r"[0-9a-f]{8}", parts[1]):
        raise CheckpointError("verifier key must look like name+8-hex-digits+base64")
    try:
        raw = base64.b64decode(parts[2], validate=True)
    except (ValueError, binascii.Error):
        raise CheckpointError("verifier key: the key part is not base64") from None
    if len(raw) != 33 or raw[0] != ED25519:
        raise CheckpointError("verifier key is not an Ed25519 key")
    public_key = Ed25519PublicKey.from_public_bytes(raw[1:])
    if key_id(parts[0], public_key).hex() != parts[1]:
        raise CheckpointError("verifier key: its key ID does not match its name and key")
    return parts[0], public_key


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def body(self) -> bytes:
        for line in (self.origin, *self.extensions):
            _check_line(line, "checkpoint line")
        if not self.origin:
            raise CheckpointError("checkpoint origin is empty")
        if self.size < 0 or len(self.root) != 32:
            raise CheckpointError("checkpoint needs a size ≥ 0 and a 32-byte root hash")
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode("ascii"),
                 *self.extensions]
        return ("\n".join(lines) + "\n").encode("utf-8")

    @property
    def signed_at(self) -> dt.datetime | None:
        """The time of the ``Timestamp:`` line (UTC), or None when there is none."""
        stamps = [e for e in self.extensions if e.startswith(TIMESTAMP)]
        if not stamps:
            return None
        value = stamps[0][len(TIMESTAMP):]
        if len(stamps) > 1 or not re.fullmatch(r"0|[1-9][0-9]{0,18}", value) \
                or int(value) >= _MAX_NANOS:
            raise CheckpointError("checkpoint has a malformed Timestamp line (one line of "
                                  "nanoseconds since 1970 is expected)")
        return _EPOCH + dt.timedelta(microseconds=int(value) // 1000)


def _check_line(line: str, what: str) -> None:
    if any(ord(c) < 0x20 for c in line):
        raise CheckpointError(f"{what} contains a control character or newline")


def sign_note(text: bytes, name: str, private_key: Ed25519PrivateKey) -> bytes:
    """Append one Ed25519 signature line to ``text`` (which must end in a newline)."""
    if not _NAME.fullmatch(name):
        raise CheckpointError("key name must be non-empty, without spaces or '+'")
    if not text.endswith(b"\n"):
        raise CheckpointError("note text must end with a newline")
    signature = private_key.sign(text)
    blob = key_id(name, private_key.public_key()) + signature
    line = f"{_DASH}{name} {base64.b64encode(blob).decode('ascii')}\n"
    return text + b"\n" + line.encode("utf-8")


def sign_checkpoint(checkpoint: Checkpoint, name: str, private_key: Ed25519PrivateKey) -> bytes:
    return sign_note(checkpoint.body(), name, private_key)


@dataclass(frozen=True)
class NoteSignature:
    name: str
    key_id: bytes
    signature: bytes


def split_note(data: bytes) -> tuple[bytes, list[NoteSignature]]:
    """Separate the text from its signature lines; malformed notes raise CheckpointError."""
    if len(data) > MAX_NOTE_BYTES:
        raise CheckpointError("signed note is too large")
    try:
        decoded = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CheckpointError("signed note is not UTF-8") from None
    if any(ord(c) < 0x20 and c != "\n" for c in decoded):
        raise CheckpointError("signed note contains control characters")
    cut = decoded.rfind("\n\n")
    if cut < 0 or not decoded.endswith("\n"):
        raise CheckpointError("signed note has no blank line before its signatures")
    text, sig_block = decoded[:cut + 1], decoded[cut + 2:]
    signatures = []
    for line in sig_block.splitlines():
        if not line.startswith(_DASH):
            raise CheckpointError("a signature line must start with an em dash and a space")
        name, sep, b64 = line[len(_DASH):].rpartition(" ")
        if not sep or not _NAME.fullmatch(name) or not _B64.fullmatch(b64):
            raise CheckpointError("malformed signature line")
        blob = base64.b64decode(b64)
        if len(blob) < 5:
            raise CheckpointError("signature too short")
        signatures.append(NoteSignature(name, blob[:4], blob[4:]))
    if not signatures:
        raise CheckpointError("signed note has no signatures")
    if len(signatures) > MAX_SIGNATURES:
        raise CheckpointError("signed note has too many signatures")
    return text.encode("utf-8"), signatures


def verify_note(data: bytes, trusted: Sequence[TrustAnchor]) -> bytes:
    """Return the note text if a trusted key signed it. A signature from a trusted key that
    does not verify rejects the whole note; signatures from unknown keys are ignored."""
    return _verified_by(data, trusted)[0]


def _verified_by(data: bytes, trusted: Sequence[TrustAnchor]
                 ) -> tuple[bytes, list[TrustedSigner]]:
    text, signatures = split_note(data)
    known: dict[tuple[str, bytes], list[TrustedSigner]] = {}
    for signer in as_signers(trusted):
        known.setdefault((signer.name, key_id(signer.name, signer.key)), []).append(signer)
    verified: list[TrustedSigner] = []
    for sig in signatures:
        signers = known.get((sig.name, sig.key_id), [])
        if not signers:
            continue
        try:
            signers[0].key.verify(sig.signature, text)
        except InvalidSignature:
            raise CheckpointError(f"forged checkpoint: the signature of {sig.name} does not "
                                  "verify") from None
        verified += signers
    if not verified:
        raise CheckpointError("checkpoint is not signed by a trusted key")
    return text, verified


def parse_checkpoint(text: bytes) -> Checkpoint:
    lines = text.decode("utf-8").split("\n")
    if len(lines) < 4 or lines[-1] != "":
        raise CheckpointError("checkpoint needs origin, size and root hash lines")
    origin, size_text, root_text, *rest = lines[:-1]
    if not origin:
        raise CheckpointError("checkpoint origin is empty")
    if not re.fullmatch(r"0|[1-9][0-9]{0,19}", size_text):
        raise CheckpointError("checkpoint tree size is not a decimal number")
    try:
        root = base64.b64decode(root_text, validate=True)
    except (ValueError, binascii.Error):
        raise CheckpointError("checkpoint root hash is not base64") from None
    if len(root) != 32:
        raise CheckpointError("checkpoint root hash is not 32 bytes")
    return Checkpoint(origin, int(size_text), root, tuple(rest))


def verify_checkpoint(data: bytes, origin: str, trusted: Sequence[TrustAnchor], *,
                      now: dt.datetime | None = None) -> Checkpoint:
    """Verify the signature, then parse; the origin must be the expected log's, and one
    signer that verified must have been trusted at the checkpoint's signing time
    (:meth:`TrustedSigner.refusal`; ``now`` judges checkpoints without one)."""
    text, signers = _verified_by(data, trusted)
    checkpoint = parse_checkpoint(text)
    if checkpoint.origin != origin:
        raise CheckpointError(f"checkpoint is for log {checkpoint.origin!r}, not {origin!r}")
    refusal = first_refusal(checkpoint, signers, now)
    if refusal is not None:
        raise CheckpointError(f"checkpoint of size {checkpoint.size} is not trusted: {refusal}")
    return checkpoint


def first_refusal(checkpoint: Checkpoint, signers: Sequence[TrustedSigner],
                  now: dt.datetime | None) -> str | None:
    """None when one of ``signers`` (whose signatures verified) was trusted when
    ``checkpoint`` was signed, else the first reason it was not."""
    signed_at = checkpoint.signed_at
    reasons = [signer.refusal(signed_at, now) for signer in signers]
    if any(r is None for r in reasons):
        return None
    return next(r for r in reasons if r is not None)
