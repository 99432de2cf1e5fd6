"""Full verification of the audit log, naming the first problem and its kind.

One pass over the segments checks, for every entry, that it has the next sequence number and
carries the leaf hash of the entry before it (one bytes comparison — see
:mod:`kyso.audit.entry`), hashes it into the RFC 9162 tree, and notes the root at every
checkpointed size. Checkpoints must be signed by a trusted audit-signer key and match those
roots; the head file and the purge record must agree with the entries.

When an entry does not fit, a slower diagnosis looks at its neighbours to tell the kinds apart:
*modified* (an entry no longer hashes to what the next one recorded), *deleted* (sequence
numbers missing), *inserted* (an extra entry or line), *reordered* (entries out of order),
*truncated* (fewer entries than the head file or a signed checkpoint records), *torn-tail* (an
incomplete last line: a writer stopped mid-write), *garbage* (a line that is not an entry),
*forged-checkpoint*, *other-key* (a checkpoint nobody we trust signed), *rewritten* (the hash
chain was recomputed; only the signed checkpoints catch it).
"""

from __future__ import annotations

import hashlib
import json
from binascii import hexlify
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from kyso.audit.checkpoint import Checkpoint, key_id, parse_checkpoint, split_note
from kyso.audit.entry import GENESIS, entry_head, peek
from kyso.audit.merkle import Frontier
from kyso.audit.segments import (
    Layout,
    Segment,
    TreeState,
    list_segments,
    read_bytes,
    read_state,
    segments_from,
)
from kyso.errors import AuditError, CheckpointError

TrustedKeys = Sequence[tuple[str, Ed25519PublicKey]]


class Kind(Enum):
    MODIFIED = "modified"
    DELETED = "deleted"
    INSERTED = "inserted"
    REORDERED = "reordered"
    TRUNCATED = "truncated"
    TORN_TAIL = "torn-tail"
    GARBAGE = "garbage"
    REWRITTEN = "rewritten"
    FORGED_CHECKPOINT = "forged-checkpoint"
    OTHER_KEY = "other-key"
    DAMAGED = "damaged"  # a state file or checkpoint that cannot be read at all


class Status(Enum):
    PASS = "PASS"  # noqa: S105 - a verdict, not a password
    FAIL = "FAIL"
    WARN = "WARN"
    SKIP = "SKIP"


@dataclass(frozen=True)
class Finding:
    kind: Kind
    seq: int | None
    where: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "seq": self.seq, "where": self.where,
                "message": self.message}


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status.value, "detail": self.detail}


@dataclass(frozen=True)
class VerifyReport:
    size: int  # entries that verified, from the start (or --from) to the first problem
    first: int  # the first sequence number checked
    root: bytes | None  # tree root over [0, size) (None with --from)
    checks: tuple[Check, ...]
    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        return all(c.status is not Status.FAIL for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "result": "PASS" if self.ok else "FAIL",
            "first_seq": self.first,
            "verified_entries": self.size - self.first,
            "tree_size": self.size,
            "root": self.root.hex() if self.root is not None else None,
            "checks": [c.to_dict() for c in self.checks],
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass
class _Scan:
    """Running state of the pass over the entries."""

    size: int
    last: str
    hashes: list[bytes]  # the frontier
    want_roots: set[int]
    roots: dict[int, bytes] = field(default_factory=dict)
    lasts: dict[int, str] = field(default_factory=dict)  # last leaf hash at the wanted sizes
    finding: Finding | None = None
    segments: int = 0


def verify_log(
    directory: Path,
    *,
    trusted: TrustedKeys = (),
    origin: str | None = None,
    checkpoints: Sequence[tuple[str, bytes]] = (),
    from_seq: int | None = None,
) -> VerifyReport:
    """Verify everything under ``directory``. ``checkpoints`` are (label, note) pairs given by
    the auditor; the log's own ``checkpoints/`` folder is always checked too."""
    layout = Layout(directory)
    findings: list[Finding] = []
    checks: list[Check] = []
    notes = _read_checkpoints(layout, trusted, origin, checkpoints, findings)
    try:
        base = read_state(layout.base, "purge record")
    except AuditError as exc:
        return _damaged(checks, findings, "purge record", str(exc))
    head = _read_head(layout)  # before the entries: a writer may append while we read
    partial = from_seq is not None
    want = {c.size for _l, c in notes}
    if isinstance(head, TreeState):
        want.add(head.size)
    if partial:
        want = set()  # no roots without the entries before --from
    scan = _Scan(size=0, last=GENESIS, hashes=[], want_roots=want)
    if base is not None:
        scan.size, scan.last, scan.hashes = base.size, base.last_hash, list(base.frontier)
    if not partial and scan.size in scan.want_roots:
        scan.roots[scan.size] = _root(scan.hashes)
        scan.lasts[scan.size] = scan.last
    segments, strays = list_segments(layout)
    first = scan.size if from_seq is None else max(from_seq, scan.size)
    _scan_segments(scan, segments, first if partial else None)
    if partial and scan.finding is None and scan.size < first:
        scan.finding = Finding(Kind.TRUNCATED, first, "end of log",
                               f"the log has only {scan.size} entries; seq {first} is not there")

    checks.append(_segments_check(segments, strays, scan))
    if scan.finding is not None:
        findings.insert(0, scan.finding)
    chain_ok = scan.finding is None or scan.finding.kind is Kind.TORN_TAIL
    what = f"entries {first}–{scan.size - 1}" if scan.size > first else "no entries"
    if chain_ok:
        checks.append(Check("entries and hash chain", Status.PASS, f"{what} chain correctly"))
    else:
        assert scan.finding is not None
        checks.append(Check("entries and hash chain", Status.FAIL, _describe(scan.finding)))
    torn = scan.finding is not None and scan.finding.kind is Kind.TORN_TAIL
    checks.append(Check("tail", Status.FAIL if torn else Status.PASS,
                        _describe(scan.finding) if torn and scan.finding else
                        "the log ends with a complete entry"))
    root = None if partial else _root(scan.hashes)
    if chain_ok:
        checks.append(_head_check(head, scan, findings, partial))
        checks.append(_checkpoint_check(notes, scan, findings, partial, trusted))
    checks.append(_torn_kept(layout))
    if base is not None:
        checks.append(Check("purge record", Status.PASS, f"entries before seq {base.size} were "
                            "purged; their subtree hashes were kept and chain to the rest"))
    return VerifyReport(scan.size, first, root, tuple(checks), tuple(findings))


def _damaged(checks: list[Check], findings: list[Finding], what: str, message: str
             ) -> VerifyReport:
    findings.append(Finding(Kind.DAMAGED, None, what, message))
    checks.append(Check(what, Status.FAIL, message))
    return VerifyReport(0, 0, None, tuple(checks), tuple(findings))


def _root(hashes: list[bytes]) -> bytes:
    return Frontier(0, hashes).root()  # root() reads only the hashes


def _scan_segments(scan: _Scan, segments: list[Segment], from_seq: int | None) -> None:
    segments = segments_from(segments, scan.size if from_seq is None else from_seq)
    for i, segment in enumerate(segments):
        if from_seq is None and segment.first != scan.size:
            scan.finding = _segment_gap(segment, scan.size)
            return
        scan.segments += 1
        data = None
        if from_seq is not None:
            data = _skip_to(scan, segment, read_bytes(segment.path), from_seq)
            from_seq = None
            if scan.finding is not None:
                return
        if not _scan_one(scan, segment, data, last=i == len(segments) - 1):
            return


def _skip_to(scan: _Scan, segment: Segment, data: bytes, from_seq: int) -> bytes:
    """Drop the lines before ``from_seq``; the chain starts at that entry's ``prev``."""
    offset = 0
    while offset < len(data):
        end = data.find(b"\n", offset)
        line = data[offset:] if end < 0 else data[offset:end]
        head = peek(line)
        if head is not None and head[0] >= from_seq:
            scan.size, scan.last = head
            _placeholder_frontier(scan)
            if head[0] > from_seq:
                scan.finding = Finding(Kind.DELETED, from_seq, f"segments/{segment.name}",
                                       f"entries {from_seq}–{head[0] - 1} are missing "
                                       f"(deleted): the log goes on at seq {head[0]}")
            return data[offset:]
        if head is not None:
            scan.size = head[0] + 1  # the log reaches at least this far
        if end < 0:
            break
        offset = end + 1
    scan.size = min(scan.size, from_seq)
    _placeholder_frontier(scan)
    return b""


def _placeholder_frontier(scan: _Scan) -> None:
    """With --from the subtrees before the start are unknown: stand-ins keep the frontier's
    shape (one hash per set bit of the size); no root is computed from them."""
    scan.hashes[:] = [bytes(32)] * bin(scan.size).count("1")


def _segment_gap(segment: Segment, size: int) -> Finding:
    where = f"segments/{segment.name}"
    if segment.first > size:
        return Finding(Kind.DELETED, size, where,
                       f"entries {size}–{segment.first - 1} are missing: the segment holding "
                       "them was deleted or renamed")
    return Finding(Kind.INSERTED, segment.first, where,
                   f"segment {segment.name} starts at seq {segment.first}, but the segments "
                   f"before it already reach seq {size - 1} (an added or renamed segment)")


def _scan_one(scan: _Scan, segment: Segment, data: bytes | None, *, last: bool) -> bool:
    """Hash one segment's entries into the scan; False (with a finding) at the first problem.

    This is the verifier's hot path: the segment is read in 1 MiB chunks and the frontier
    update is inlined. ``data`` is given only after ``--from`` skipped part of it."""
    sha256 = hashlib.sha256
    hashes, want = scan.hashes, scan.want_roots
    pop, push = hashes.pop, hashes.append
    size, prev = scan.size, scan.last.encode()
    done = 0  # lines of this segment already hashed
    rest = b""
    for chunk in _chunks(segment, data):
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        for line in lines:
            if not line.startswith(b'{"seq":%d,"prev":"%b",' % (size, prev)):
                scan.size, scan.last = size, prev.decode()
                whole = data if data is not None else read_bytes(segment.path)
                all_lines = whole.split(b"\n")
                scan.finding = _diagnose(segment, all_lines, done, size, scan.last)
                return False
            h = sha256(b"\x00" + line).digest()
            prev = hexlify(h)
            n = size
            while n & 1:
                h = sha256(b"\x01" + pop() + h).digest()
                n >>= 1
            push(h)
            size += 1
            done += 1
            if size in want:
                scan.roots[size] = _root(hashes)
                scan.lasts[size] = prev.decode()
    scan.size, scan.last = size, prev.decode()
    if rest:
        where = f"segments/{segment.name} line {done + 1}"
        if last:
            scan.finding = Finding(Kind.TORN_TAIL, size, where,
                                   f"an incomplete entry of {len(rest)} bytes after seq "
                                   f"{size - 1}: a writer stopped mid-write; it is not counted. "
                                   "The next write keeps it under torn/ and records "
                                   "AUDIT_TORN_TAIL")
        else:
            scan.finding = Finding(Kind.GARBAGE, size, where,
                                   "an incomplete line at the end of a sealed segment")
        return False
    return True


def _chunks(segment: Segment, data: bytes | None) -> Iterator[bytes]:
    if data is not None:
        yield data
        return
    try:
        with open(segment.path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                yield chunk
    except OSError as exc:
        raise AuditError(f"cannot read {segment.path}: {exc.strerror}") from None


def _location(segment: Segment, lines: list[bytes], index: int) -> str:
    offset = sum(len(x) + 1 for x in lines[:index])
    return f"segments/{segment.name} line {index + 1} (byte {offset})"


def _diagnose(segment: Segment, lines: list[bytes], index: int, seq: int, prev: str
              ) -> Finding:
    """Tell which kind of change made line ``index`` not be entry ``seq`` after ``prev``."""
    where = _location(segment, lines, index)
    line = lines[index]
    nxt = lines[index + 1] if index + 1 < len(lines) else None
    head = peek(line)
    if head is None:
        what = _what_garbage(line)
        if nxt is not None and nxt.startswith(entry_head(seq, prev)):
            return Finding(Kind.INSERTED, seq, where, f"a line that is not an entry ({what}) was "
                           f"inserted before seq {seq}")
        return Finding(Kind.GARBAGE, seq, where, f"the line where entry {seq} belongs is not an "
                       f"entry ({what})")
    found, its_prev = head
    if found == seq:  # right number, wrong predecessor
        own = hashlib.sha256(b"\x00" + line).hexdigest()
        if index > 0 and (before := peek(lines[index - 1])) is not None and before[1] == its_prev:
            return Finding(Kind.INSERTED, seq - 1, where, f"entry {seq - 1} was inserted: it and "
                           f"entry {seq} both claim the same predecessor")
        if seq > 0 and (nxt is None or nxt.startswith(entry_head(seq + 1, own))):
            return Finding(Kind.MODIFIED, seq - 1, where, f"entry {seq - 1} was modified: it no "
                           f"longer has the hash entry {seq} recorded for it")
        return Finding(Kind.MODIFIED, seq, where, f"entry {seq} was modified (its link to "
                       "the entry before is wrong)")
    later = [h[0] for x in lines[index:index + 64] if (h := peek(x)) is not None]
    if found > seq:
        if seq in later:
            return Finding(Kind.REORDERED, seq, where, f"entries are out of order: seq {found} "
                           f"comes before seq {seq}")
        return Finding(Kind.DELETED, seq, where, f"entries {seq}–{found - 1} are missing "
                       f"(deleted): seq {found} follows seq {seq - 1}")
    if nxt is not None and nxt.startswith(entry_head(seq, prev)):
        return Finding(Kind.INSERTED, seq, where, f"an extra entry numbered {found} was inserted "
                       f"before seq {seq}")
    if index > 0 and (before := peek(lines[index - 1])) is not None and before[1] == its_prev:
        return Finding(Kind.INSERTED, found, where, f"an extra entry numbered {found} was "
                       f"inserted: it and the entry before it claim the same predecessor")
    if seq in later:
        return Finding(Kind.REORDERED, found, where, f"entries are out of order: seq {found} "
                       f"appears again where seq {seq} belongs")
    return Finding(Kind.INSERTED, seq, where, f"an entry numbered {found} stands where seq "
                   f"{seq} belongs")


def _what_garbage(line: bytes) -> str:
    if not line.strip():
        return "an empty line"
    if b"\x00" in line:
        return "binary data"
    try:
        json.loads(line)
    except UnicodeDecodeError:
        return "binary data"
    except ValueError:
        return "not JSON"
    return "JSON without the seq/prev header"


def _describe(finding: Finding) -> str:
    seq = f" at seq {finding.seq}" if finding.seq is not None else ""
    return f"{finding.kind.value.upper()}{seq} — {finding.where}: {finding.message}"


def _segments_check(segments: list[Segment], strays: list[Path], scan: _Scan) -> Check:
    if strays:
        names = ", ".join(p.name for p in strays[:5])
        return Check("segments", Status.FAIL, f"unexpected files among the segments: {names} "
                     "(a renamed segment?)")
    if not segments:
        return Check("segments", Status.PASS, "no segments yet (an empty log)")
    return Check("segments", Status.PASS, f"{len(segments)} segment(s), "
                 f"{segments[0].name} … {segments[-1].name}")


def _read_head(layout: Layout) -> TreeState | str | None:
    try:
        return read_state(layout.head, "head file")
    except AuditError as exc:
        return str(exc)


def _head_check(head: TreeState | str | None, scan: _Scan, findings: list[Finding],
                partial: bool) -> Check:
    """The head file is the writer's claim of how far it got: never trusted, but a log that
    is shorter than it, or different at its size, has lost or changed entries."""
    if isinstance(head, str):
        return Check("head file", Status.WARN, f"{head}; the next write rebuilds it")
    if head is None:
        return Check("head file", Status.WARN if scan.size else Status.PASS,
                     "missing; the next write rebuilds it" if scan.size else "empty log")
    if head.size > scan.size:
        f = Finding(Kind.TRUNCATED, scan.size, "head.json", f"the writer recorded {head.size} "
                    f"entries but the log has {scan.size}: entries from seq {scan.size} are gone")
        findings.append(f)
        return Check("head file", Status.FAIL, _describe(f))
    if partial or head.size not in scan.lasts:
        return Check("head file", Status.SKIP, "not compared (partial verification)")
    if head.last_hash != scan.lasts[head.size]:
        f = Finding(Kind.MODIFIED, head.size - 1, "head.json", f"entry {head.size - 1} is not "
                    "the one the writer wrote")
        findings.append(f)
        return Check("head file", Status.FAIL, _describe(f))
    if head.tree().root() != scan.roots[head.size]:
        f = Finding(Kind.REWRITTEN, None, "head.json", "the tree the writer recorded differs "
                    "from the entries (the hash chain was recomputed)")
        findings.append(f)
        return Check("head file", Status.FAIL, _describe(f))
    note = "" if head.size == scan.size else f" (entries after seq {head.size - 1} came later)"
    return Check("head file", Status.PASS, f"agrees with the log at size {head.size}{note}")


def _read_checkpoints(layout: Layout, trusted: TrustedKeys, origin: str | None,
                      given: Sequence[tuple[str, bytes]], findings: list[Finding]
                      ) -> list[tuple[str, Checkpoint]]:
    """Checkpoints whose signatures verify; the others become findings."""
    notes: list[tuple[str, bytes]] = list(given)
    if layout.checkpoints.is_dir():
        for path in sorted(layout.checkpoints.glob("*.note")):
            notes.append((f"checkpoints/{path.name}", read_bytes(path)))
    good: list[tuple[str, Checkpoint]] = []
    for label, data in notes:
        try:
            checkpoint = _check_note(data, trusted, origin)
        except _BadNote as exc:
            findings.append(Finding(exc.kind, None, label, str(exc)))
            continue
        good.append((label, checkpoint))
    return good


class _BadNote(Exception):
    def __init__(self, kind: Kind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _check_note(data: bytes, trusted: TrustedKeys, origin: str | None) -> Checkpoint:
    try:
        text, signatures = split_note(data)
        checkpoint = parse_checkpoint(text)
    except (CheckpointError, UnicodeDecodeError) as exc:
        raise _BadNote(Kind.DAMAGED, f"not a signed checkpoint: {exc}") from None
    known = {(name, key_id(name, key)): key for name, key in trusted}
    ours = [(s, known[(s.name, s.key_id)]) for s in signatures if (s.name, s.key_id) in known]
    if not ours:
        names = ", ".join(sorted({s.name for s in signatures}))
        raise _BadNote(Kind.OTHER_KEY, f"signed by a key that is not a trusted audit signer "
                       f"({names})")
    for sig, key in ours:
        try:
            key.verify(sig.signature, text)
        except InvalidSignature:
            raise _BadNote(Kind.FORGED_CHECKPOINT, f"the signature of {sig.name} does not verify "
                           "(forged or altered checkpoint)") from None
    if origin is not None and checkpoint.origin != origin:
        raise _BadNote(Kind.OTHER_KEY, f"a checkpoint of another log ({checkpoint.origin!r})")
    return checkpoint


def _checkpoint_check(notes: list[tuple[str, Checkpoint]], scan: _Scan, findings: list[Finding],
                      partial: bool, trusted: TrustedKeys) -> Check:
    bad = [f for f in findings if f.kind in (Kind.FORGED_CHECKPOINT, Kind.OTHER_KEY, Kind.DAMAGED)]
    if bad:
        return Check("checkpoints", Status.FAIL, "; ".join(_describe(f) for f in bad[:3]))
    if not notes:
        return Check("checkpoints", Status.SKIP, "no signed checkpoints yet (run `kyso audit "
                     "checkpoint`)" if trusted else "no checkpoints and no audit signer")
    notes = sorted(notes, key=lambda n: n[1].size)
    checked = 0
    previous = 0
    for label, cp in notes:
        if cp.size > scan.size:
            f = Finding(Kind.TRUNCATED, scan.size, label, f"the signed checkpoint covers "
                        f"{cp.size} entries but the log has {scan.size}: entries from seq "
                        f"{scan.size} are gone")
            findings.append(f)
            return Check("checkpoints", Status.FAIL, _describe(f))
        root = scan.roots.get(cp.size)
        if root is None:
            continue  # before a purge cut or --from: nothing to compare with
        if root != cp.root:
            f = Finding(Kind.REWRITTEN, previous, label, f"entries in seq {previous}–{cp.size - 1}"
                        " no longer match the signed checkpoint (the hash chain was recomputed)")
            findings.append(f)
            return Check("checkpoints", Status.FAIL, _describe(f))
        checked += 1
        previous = cp.size
    if partial:
        return Check("checkpoints", Status.SKIP, "roots are not recomputed with --from")
    latest = notes[-1][1]
    return Check("checkpoints", Status.PASS, f"{checked} signed checkpoint(s) match; the latest "
                 f"covers {latest.size} of {scan.size} entries")


def _torn_kept(layout: Layout) -> Check:
    kept = sorted(layout.torn.glob("*.bin")) if layout.torn.is_dir() else []
    if not kept:
        return Check("torn tails", Status.PASS, "none")
    return Check("torn tails", Status.WARN, f"{len(kept)} incomplete write(s) kept under torn/ "
                 "(each recorded by an AUDIT_TORN_TAIL event)")
