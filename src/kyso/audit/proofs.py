"""Proof bundles an auditor checks offline, with the audit-signer certificate alone.

An *inclusion* bundle shows that one entry (given in full) is entry ``seq`` of the log whose
signed checkpoint it carries; a *consistency* bundle shows that the log of one signed
checkpoint is a prefix of the log of a later one — nothing was changed or removed in between.
Both are JSON (``kyso-audit-proof/1``): the signed notes as text, hashes in base64, and the
signer's certificate (plus its chain) in PEM.

After a purge the entries before the cut are gone, but the subtree hashes kept in the purge
record still let the log prove every later entry and every later checkpoint.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from kyso.audit.checkpoint import Checkpoint, verify_checkpoint
from kyso.audit.entry import peek
from kyso.audit.merkle import (
    Frontier,
    MerkleTree,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from kyso.audit.segments import (
    Layout,
    TreeState,
    iter_lines,
    list_segments,
    read_bytes,
    read_state,
    segments_from,
)
from kyso.errors import AuditError, ProofError

FORMAT = "kyso-audit-proof/1"
MAX_BUNDLE_BYTES = 1 << 20
# The certificate policy of kyso's audit-signer profile (policies/profiles/audit-signer.toml).
AUDIT_SIGNER_POLICY = "1.3.6.1.4.1.32473.704.1.4.2"


class _Leaves(Sequence[bytes]):
    """Leaf hashes of a log whose first ``base`` entries were purged."""

    def __init__(self, base: int, hashes: list[bytes]) -> None:
        self._base = base
        self._hashes = hashes

    def __len__(self) -> int:
        return self._base + len(self._hashes)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice) or index < 0:
            raise TypeError("only single, non-negative indexes")
        if index < self._base:
            raise ProofError(f"entry {index} was purged; no proof can reach inside the purged "
                             "range")
        return self._hashes[index - self._base]


@dataclass(frozen=True)
class LogTree:
    tree: MerkleTree
    lines: dict[int, bytes]  # the entries asked for, by seq

    @property
    def size(self) -> int:
        return len(self.tree)


def load_tree(directory: Path, size: int, want: Sequence[int] = ()) -> LogTree:
    """The Merkle tree of the first ``size`` entries (and the lines of the ``want`` ones)."""
    layout = Layout(directory)
    base = read_state(layout.base, "purge record") or TreeState(0, "0" * 64, ())
    if size < base.size:
        raise ProofError(f"entries before seq {base.size} were purged; tree size {size} is "
                         "gone")
    hashes: list[bytes] = []
    lines: dict[int, bytes] = {}
    wanted = set(want)
    purged = sorted(s for s in wanted if s < base.size)
    if purged:
        raise ProofError(f"entry {purged[0]} was purged (entries before seq {base.size} are "
                         "kept only as subtree hashes); it can no longer be proved")
    for segment in segments_from(list_segments(layout)[0], base.size):
        if len(hashes) + base.size >= size:
            break
        for line in iter_lines(read_bytes(segment.path)):
            seq = base.size + len(hashes)
            if seq >= size or not line.complete:
                break
            head = peek(line.data)
            if head is None or head[0] != seq:
                raise AuditError(f"{segment.name} line {line.number} is not entry {seq}; run "
                                 "`kyso audit verify`")
            if seq in wanted:
                lines[seq] = line.data
            hashes.append(leaf_hash(line.data))
    if base.size + len(hashes) < size:
        raise ProofError(f"the log has {base.size + len(hashes)} entries, fewer than {size}")
    known = Frontier(base.size, list(base.frontier)).blocks()
    return LogTree(MerkleTree(_Leaves(base.size, hashes), known), lines)


def _b64(items: Sequence[bytes]) -> list[str]:
    return [base64.b64encode(h).decode("ascii") for h in items]


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def inclusion_bundle(directory: Path, seq: int, note: bytes, checkpoint: Checkpoint,
                     signer: x509.Certificate, chain: Sequence[x509.Certificate] = ()
                     ) -> dict[str, Any]:
    if not 0 <= seq < checkpoint.size:
        raise ProofError(f"seq {seq} is not covered by the checkpoint of size {checkpoint.size}")
    log = load_tree(directory, checkpoint.size, [seq])
    if log.tree.root() != checkpoint.root:
        raise AuditError("the log does not match the checkpoint; run `kyso audit verify`")
    return {
        "format": FORMAT,
        "type": "inclusion",
        "origin": checkpoint.origin,
        "checkpoint": note.decode("utf-8"),
        "seq": seq,
        "entry": log.lines[seq].decode("utf-8"),
        "tree_size": checkpoint.size,
        "proof": _b64(log.tree.inclusion_proof(seq)),
        "signer_certificate": _pem(signer),
        "chain": [_pem(c) for c in chain],
    }


def consistency_bundle(directory: Path, old: tuple[bytes, Checkpoint],
                       new: tuple[bytes, Checkpoint], signer: x509.Certificate,
                       chain: Sequence[x509.Certificate] = ()) -> dict[str, Any]:
    (old_note, old_cp), (new_note, new_cp) = old, new
    if old_cp.size > new_cp.size:
        raise ProofError(f"the first checkpoint ({old_cp.size}) is newer than the second "
                         f"({new_cp.size})")
    log = load_tree(directory, new_cp.size)
    if log.tree.root() != new_cp.root:
        raise AuditError("the log does not match the newer checkpoint; run `kyso audit verify`")
    proof = log.tree.consistency_proof(old_cp.size) if 0 < old_cp.size < new_cp.size else []
    return {
        "format": FORMAT,
        "type": "consistency",
        "origin": new_cp.origin,
        "old_checkpoint": old_note.decode("utf-8"),
        "new_checkpoint": new_note.decode("utf-8"),
        "proof": _b64(proof),
        "signer_certificate": _pem(signer),
        "chain": [_pem(c) for c in chain],
    }


@dataclass(frozen=True)
class BundleResult:
    kind: str
    origin: str
    tree_size: int
    old_size: int | None = None
    seq: int | None = None
    entry: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"result": "PASS", "type": self.kind, "origin": self.origin,
                "tree_size": self.tree_size, "old_size": self.old_size, "seq": self.seq,
                "entry": dict(self.entry) if self.entry is not None else None}


def parse_bundle(data: bytes) -> dict[str, Any]:
    if len(data) > MAX_BUNDLE_BYTES:
        raise ProofError("proof bundle is too large")
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ProofError("proof bundle is not JSON (or nested too deeply)") from None
    if not isinstance(value, dict) or value.get("format") != FORMAT:
        raise ProofError(f"not a {FORMAT} proof bundle")
    return value


def _field(bundle: Mapping[str, Any], name: str, kind: type) -> Any:
    value = bundle.get(name)
    if type(value) is not kind:
        raise ProofError(f"proof bundle: {name} is missing or not a {kind.__name__}")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ProofError(f"proof bundle: {name} is not valid Unicode text") from None
    return value


def _hashes(bundle: Mapping[str, Any]) -> list[bytes]:
    items = _field(bundle, "proof", list)
    try:
        return [base64.b64decode(_str(h), validate=True) for h in items]
    except (binascii.Error, ValueError):
        raise ProofError("proof bundle: a proof hash is not base64") from None


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise ProofError("proof bundle: a proof hash is not a string")
    return value


def _load_pem(text: object, what: str) -> x509.Certificate:
    if not isinstance(text, str):
        raise ProofError(f"proof bundle: {what} is not PEM text")
    try:
        return x509.load_pem_x509_certificate(text.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise ProofError(f"proof bundle: {what} is not a PEM certificate") from None


def signer_key(bundle: Mapping[str, Any], certificate: x509.Certificate | None,
               roots: Sequence[x509.Certificate]) -> Ed25519PublicKey:
    """The key to trust: the auditor's own copy of the audit-signer certificate, or else the
    bundle's certificate once it chains (through the bundle's chain) to one of ``roots``."""
    embedded = _load_pem(bundle.get("signer_certificate"), "signer_certificate")
    if certificate is not None:
        if embedded != certificate:
            raise ProofError("the bundle names another audit-signer certificate than the one "
                             "given")
    elif roots:
        chain = [_load_pem(c, "chain certificate") for c in _field(bundle, "chain", list)]
        _check_chain(embedded, chain, roots)
    else:
        raise ProofError("give the audit-signer certificate (or a trusted root) to check against")
    key = embedded.public_key()
    if not isinstance(key, Ed25519PublicKey):
        raise ProofError("the audit-signer certificate does not hold an Ed25519 key")
    return key


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _key_usage(cert: x509.Certificate) -> x509.KeyUsage | None:
    try:
        return cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None


def _check_signer_profile(cert: x509.Certificate) -> None:
    """A certificate found through a root must be an audit-signer certificate: an end entity
    for digital signatures under the audit-signer policy (a TSA or staff certificate from
    the same root does not sign checkpoints)."""
    name = cert.subject.rfc4514_string()
    if _is_ca(cert):
        raise ProofError(f"certificate {name} is a CA certificate, not an audit signer")
    usage = _key_usage(cert)
    if usage is None or not usage.digital_signature:
        raise ProofError(f"certificate {name} is not for digital signatures (key usage)")
    try:
        policies = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
    except x509.ExtensionNotFound:
        policies = x509.CertificatePolicies([])
    if AUDIT_SIGNER_POLICY not in {p.policy_identifier.dotted_string for p in policies}:
        raise ProofError(f"certificate {name} does not carry the audit-signer policy "
                         f"{AUDIT_SIGNER_POLICY}")


def _check_issuer(issuer: x509.Certificate, below: int) -> None:
    """``issuer`` signs ``below`` CA certificates under it: it must be a CA allowed to sign
    certificates at that depth."""
    name = issuer.subject.rfc4514_string()
    if not _is_ca(issuer):
        raise ProofError(f"certificate {name} issued another certificate but is not a CA")
    usage = _key_usage(issuer)
    if usage is not None and not usage.key_cert_sign:
        raise ProofError(f"CA certificate {name} may not sign certificates (key usage)")
    limit = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length
    if limit is not None and below > limit:
        raise ProofError(f"CA certificate {name} allows {limit} CA certificate(s) below it, "
                         f"the chain has {below}")


def _check_chain(cert: x509.Certificate, chain: Sequence[x509.Certificate],
                 roots: Sequence[x509.Certificate]) -> None:
    _check_signer_profile(cert)
    current = cert
    pool = list(chain) + list(roots)
    for depth in range(len(pool) + 1):
        if current in roots:
            return
        issuer = next((c for c in pool if c.subject == current.issuer and c != current), None)
        if issuer is None:
            break
        try:
            current.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            raise ProofError(f"certificate {current.subject.rfc4514_string()} is not signed by "
                             "its issuer") from None
        _check_issuer(issuer, depth)
        current = issuer
    raise ProofError("the signer certificate does not chain to a trusted root")


def verify_bundle(bundle: Mapping[str, Any], certificate: x509.Certificate | None = None,
                  roots: Sequence[x509.Certificate] = ()) -> BundleResult:
    """Check a bundle offline; raise ProofError / CheckpointError naming what is wrong."""
    origin = _field(bundle, "origin", str)
    trusted = [(origin, signer_key(bundle, certificate, roots))]
    kind = bundle.get("type")
    if kind == "inclusion":
        cp = verify_checkpoint(_field(bundle, "checkpoint", str).encode("utf-8"), origin, trusted)
        seq = _field(bundle, "seq", int)
        entry = _field(bundle, "entry", str).encode("utf-8")
        head = peek(entry)
        if head is None or head[0] != seq:
            raise ProofError(f"the entry in the bundle is not entry {seq}")
        verify_inclusion(seq, cp.size, leaf_hash(entry), _hashes(bundle), cp.root)
        return BundleResult("inclusion", origin, cp.size, seq=seq, entry=json.loads(entry))
    if kind == "consistency":
        old = verify_checkpoint(_field(bundle, "old_checkpoint", str).encode("utf-8"), origin,
                                trusted)
        new = verify_checkpoint(_field(bundle, "new_checkpoint", str).encode("utf-8"), origin,
                                trusted)
        proof = _hashes(bundle)
        if old.size == 0:
            if proof:
                raise ProofError("a consistency proof from the empty tree must be empty")
        else:
            verify_consistency(old.size, new.size, old.root, new.root, proof)
        return BundleResult("consistency", origin, new.size, old_size=old.size)
    raise ProofError("proof bundle: type must be inclusion or consistency")
