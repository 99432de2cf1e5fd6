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
import contextlib
import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
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
from kyso.audit.trust import (
    TrustedSigner,
    TrustError,
    chain_to_root,
    check_signer_profile,
    shipped_usage,
)
from kyso.audit.verify import written_after
from kyso.clock import VIETNAM
from kyso.errors import AuditError, CheckpointError, ProofError

FORMAT = "kyso-audit-proof/1"
MAX_BUNDLE_BYTES = 1 << 20
# The certificate policy of kyso's audit-signer profile (policies/profiles/audit-signer.toml).
AUDIT_SIGNER_POLICY = "1.3.6.1.4.1.32473.704.1.4.2"


class _PurgedLeaf(ProofError):
    """A proof needed the hash of an entry that was purged."""


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
            raise _PurgedLeaf(f"the proof needs entry {index}, which was purged")
        return self._hashes[index - self._base]


@dataclass(frozen=True)
class Purge:
    """What ``base.json`` says of the last purge: entries before ``cut`` are gone."""

    cut: int = 0
    time: dt.datetime | None = None

    def when(self) -> str:
        return f" on {self.time.astimezone(VIETNAM):%Y-%m-%d}" if self.time else ""

    def entry_gone(self, seq: int) -> ProofError:
        return ProofError(f"entry {seq} was purged{self.when()}: entries before seq {self.cut} "
                          "are kept only as subtree hashes, so it can no longer be proved")

    def checkpoint_gone(self, size: int) -> ProofError:
        return ProofError(f"the checkpoint of size {size} lies in the purged range (entries "
                          f"before seq {self.cut} were purged{self.when()}); use a checkpoint "
                          f"of size {self.cut} or more")


def read_purge(directory: Path) -> Purge:
    """The cut and date of the last purge (none: cut 0). The date is the record's ``time``."""
    layout = Layout(directory)
    base = read_state(layout.base, "purge record")
    if base is None:
        return Purge()
    when = None
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        raw = json.loads(read_bytes(layout.base)).get("time")
        when = dt.datetime.fromisoformat(raw) if isinstance(raw, str) else None
        if when is not None and when.tzinfo is None:
            when = None
    return Purge(base.size, when)


@dataclass(frozen=True)
class LogTree:
    tree: MerkleTree
    lines: dict[int, bytes]  # the entries asked for, by seq
    purge: Purge = Purge()

    @property
    def size(self) -> int:
        return len(self.tree)


def load_tree(directory: Path, size: int, want: Sequence[int] = ()) -> LogTree:
    """The Merkle tree of the first ``size`` entries (and the lines of the ``want`` ones)."""
    layout = Layout(directory)
    base = read_state(layout.base, "purge record") or TreeState(0, "0" * 64, ())
    purge = read_purge(directory) if base.size else Purge()
    wanted = set(want)
    purged = sorted(s for s in wanted if s < base.size)
    if purged:
        raise purge.entry_gone(purged[0])
    if size < base.size:
        raise purge.checkpoint_gone(size)
    hashes: list[bytes] = []
    lines: dict[int, bytes] = {}
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
    return LogTree(MerkleTree(_Leaves(base.size, hashes), known), lines, purge)


def _b64(items: Sequence[bytes]) -> list[str]:
    return [base64.b64encode(h).decode("ascii") for h in items]


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def inclusion_bundle(directory: Path, seq: int, note: bytes, checkpoint: Checkpoint,
                     signer: x509.Certificate, chain: Sequence[x509.Certificate] = ()
                     ) -> dict[str, Any]:
    if not 0 <= seq < checkpoint.size:
        raise ProofError(f"seq {seq} is not covered by the checkpoint of size {checkpoint.size}")
    log = load_tree(directory, checkpoint.size, [seq])  # a purged seq is named first
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
    try:
        proof = log.tree.consistency_proof(old_cp.size) if 0 < old_cp.size < new_cp.size else []
    except _PurgedLeaf:
        raise log.purge.checkpoint_gone(old_cp.size) from None
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


def bundle_signer(bundle: Mapping[str, Any], certificate: x509.Certificate | None,
                  roots: Sequence[x509.Certificate]) -> TrustedSigner:
    """The signer to trust: the auditor's own copy of the audit-signer certificate, or else the
    bundle's certificate once it chains (through the bundle's chain) to one of ``roots``.
    Either way it must be an audit-signer certificate (:func:`kyso.audit.trust.
    check_signer_profile`); its dates are checked against each checkpoint's signing time."""
    embedded = _load_pem(bundle.get("signer_certificate"), "signer_certificate")
    origin = _field(bundle, "origin", str)
    pool: list[x509.Certificate] = []
    if certificate is not None:
        if embedded != certificate:
            raise ProofError("the bundle names another audit-signer certificate than the one "
                             "given")
    elif roots:
        pool = [_load_pem(c, "chain certificate") for c in _field(bundle, "chain", list)]
    else:
        raise ProofError("give the audit-signer certificate (or a trusted root) to check against")
    try:
        chain = chain_to_root(embedded, pool, roots)[1:] if certificate is None else []
        check_signer_profile(embedded, shipped_usage())
    except TrustError as exc:
        raise ProofError(str(exc)) from None
    except ValueError as exc:  # a certificate cryptography cannot fully read
        raise ProofError(f"proof bundle: a certificate cannot be read ({exc})") from None
    key = embedded.public_key()
    assert isinstance(key, Ed25519PublicKey)  # check_signer_profile made sure
    return TrustedSigner(origin, key, embedded, tuple(chain))


def signer_key(bundle: Mapping[str, Any], certificate: x509.Certificate | None,
               roots: Sequence[x509.Certificate]) -> Ed25519PublicKey:
    """The key of :func:`bundle_signer`."""
    return bundle_signer(bundle, certificate, roots).key


def verify_bundle(bundle: Mapping[str, Any], certificate: x509.Certificate | None = None,
                  roots: Sequence[x509.Certificate] = (), *, now: dt.datetime | None = None
                  ) -> BundleResult:
    """Check a bundle offline; raise ProofError / CheckpointError naming what is wrong.

    The signer certificate must be the auditor's ``certificate``, or chain to one of
    ``roots``; it must be an audit signer, and it (and the CAs above it) must have been valid
    and unrevoked when each checkpoint was signed. ``now`` (the verifier's clock) refuses
    checkpoints dated in the future and judges those without a signing time."""
    origin = _field(bundle, "origin", str)
    trusted = [bundle_signer(bundle, certificate, roots)]
    kind = bundle.get("type")
    if kind == "inclusion":
        cp = verify_checkpoint(_field(bundle, "checkpoint", str).encode("utf-8"), origin, trusted,
                               now=now)
        seq = _field(bundle, "seq", int)
        entry = _field(bundle, "entry", str).encode("utf-8")
        head = peek(entry)
        if head is None or head[0] != seq:
            raise ProofError(f"the entry in the bundle is not entry {seq}")
        verify_inclusion(seq, cp.size, leaf_hash(entry), _hashes(bundle), cp.root)
        backdated = written_after(entry, cp, seq)
        if backdated is not None:
            raise CheckpointError(f"checkpoint of size {cp.size} is not trusted: {backdated}")
        return BundleResult("inclusion", origin, cp.size, seq=seq, entry=json.loads(entry))
    if kind == "consistency":
        old = verify_checkpoint(_field(bundle, "old_checkpoint", str).encode("utf-8"), origin,
                                trusted, now=now)
        new = verify_checkpoint(_field(bundle, "new_checkpoint", str).encode("utf-8"), origin,
                                trusted, now=now)
        proof = _hashes(bundle)
        if old.size == 0:
            if proof:
                raise ProofError("a consistency proof from the empty tree must be empty")
        else:
            verify_consistency(old.size, new.size, old.root, new.root, proof)
        return BundleResult("consistency", origin, new.size, old_size=old.size)
    raise ProofError("proof bundle: type must be inclusion or consistency")
