"""Full verification of the audit log, naming the first problem and its kind.

One pass over the segments (:mod:`kyso.audit.scan`) checks, for every entry, that it has the
next sequence number and carries the leaf hash of the entry before it, hashes it into the RFC
9162 tree, and notes the root at every checkpointed size. Checkpoints must be signed by a
trusted audit-signer key, valid when it signed (:mod:`kyso.audit.trust`), and match those
roots; the head file and the purge record must agree with the entries.

When an entry does not fit, a slower diagnosis looks at its neighbours to tell the kinds apart:
*modified* (an entry no longer hashes to what the next one recorded), *deleted* (sequence
numbers missing), *inserted* (an extra entry or line), *reordered* (entries out of order),
*truncated* (fewer entries than the head file or a signed checkpoint records), *torn-tail* (an
incomplete last line: a writer stopped mid-write), *garbage* (a line that is not an entry),
*forged-checkpoint*, *other-key* (a checkpoint nobody we trust signed), *untrusted-signer* (a
checkpoint signed by an audit-signer key whose certificate did not cover it: expired, not yet
valid or revoked at its signing time, not issued by the CA's root, without the audit-signing
usage — see :mod:`kyso.audit.trust`), *rewritten* (the hash chain was recomputed; only the
signed checkpoints catch it).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature

from kyso.audit.checkpoint import Checkpoint, first_refusal, key_id, parse_checkpoint, split_note
from kyso.audit.entry import GENESIS
from kyso.audit.scan import Finding, Kind, Scan, frontier_root, scan_segments
from kyso.audit.segments import (
    Layout,
    Segment,
    TreeState,
    list_segments,
    read_bytes,
    read_state,
)
from kyso.audit.trust import FUTURE_SLACK, TrustAnchor, TrustedSigner, as_signers
from kyso.clock import vn_iso
from kyso.errors import AuditError, CheckpointError

TrustedKeys = Sequence[TrustAnchor]
__all__ = ["Check", "Finding", "Kind", "Status", "TrustedKeys", "VerifyReport", "verify_log",
           "written_after"]


class Status(Enum):
    PASS = "PASS"  # noqa: S105 - a verdict, not a password
    FAIL = "FAIL"
    WARN = "WARN"
    SKIP = "SKIP"


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


def verify_log(
    directory: Path,
    *,
    trusted: TrustedKeys = (),
    origin: str | None = None,
    checkpoints: Sequence[tuple[str, bytes]] = (),
    from_seq: int | None = None,
    now: dt.datetime | None = None,
) -> VerifyReport:
    """Verify everything under ``directory``. ``checkpoints`` are (label, note) pairs given by
    the auditor; the log's own ``checkpoints/`` folder is always checked too. ``trusted`` are
    the keys that may sign checkpoints (with the certificates that say when); ``now`` judges
    checkpoints that carry no signing time, and refuses ones dated in the future."""
    layout = Layout(directory)
    findings: list[Finding] = []
    checks: list[Check] = []
    notes = _read_checkpoints(layout, as_signers(trusted), origin, checkpoints, findings, now)
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
    scan = Scan(size=0, last=GENESIS, hashes=[], want_roots=want, wanted=sorted(want))
    if base is not None:
        scan.size, scan.last, scan.hashes = base.size, base.last_hash, list(base.frontier)
    if not partial and scan.size in scan.want_roots:
        scan.roots[scan.size] = frontier_root(scan.hashes)
        scan.lasts[scan.size] = scan.last
    segments, strays = list_segments(layout)
    first = scan.size if from_seq is None else max(from_seq, scan.size)
    scan_segments(scan, segments, first if partial else None)
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
    root = None if partial else frontier_root(scan.hashes)
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


def _describe(finding: Finding) -> str:
    seq = f" at seq {finding.seq}" if finding.seq is not None else ""
    return f"{finding.kind.value.upper()}{seq} — {finding.where}: {finding.message}"


def _segments_check(segments: list[Segment], strays: list[Path], scan: Scan) -> Check:
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


def _head_check(head: TreeState | str | None, scan: Scan, findings: list[Finding],
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


def _read_checkpoints(layout: Layout, trusted: Sequence[TrustedSigner], origin: str | None,
                      given: Sequence[tuple[str, bytes]], findings: list[Finding],
                      now: dt.datetime | None) -> list[tuple[str, Checkpoint]]:
    """Checkpoints whose signatures verify, by signers trusted when they signed; the others
    become findings. A given checkpoint that is byte for byte one the log holds (a copy the
    auditor kept) is checked once, under the log's name for it."""
    notes: list[tuple[str, bytes]] = []
    if layout.checkpoints.is_dir():
        for path in sorted(layout.checkpoints.glob("*.note")):
            notes.append((f"checkpoints/{path.name}", read_bytes(path)))
    seen = {data for _label, data in notes}
    for label, data in given:
        if data not in seen:
            seen.add(data)
            notes.append((label, data))
    good: list[tuple[str, Checkpoint]] = []
    for label, data in notes:
        try:
            checkpoint = _check_note(data, trusted, origin, now)
        except _BadNote as exc:
            findings.append(Finding(exc.kind, None, label, str(exc)))
            continue
        good.append((label, checkpoint))
    return good


class _BadNote(Exception):
    def __init__(self, kind: Kind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _check_note(data: bytes, trusted: Sequence[TrustedSigner], origin: str | None,
                now: dt.datetime | None) -> Checkpoint:
    try:
        text, signatures = split_note(data)
        checkpoint = parse_checkpoint(text)
        _ = checkpoint.signed_at  # a malformed Timestamp line is damage too
    except (CheckpointError, UnicodeDecodeError) as exc:
        raise _BadNote(Kind.DAMAGED, f"not a signed checkpoint: {exc}") from None
    known: dict[tuple[str, bytes], list[TrustedSigner]] = {}
    for signer in trusted:
        known.setdefault((signer.name, key_id(signer.name, signer.key)), []).append(signer)
    ours = [(s, known[(s.name, s.key_id)]) for s in signatures if (s.name, s.key_id) in known]
    if not ours:
        names = ", ".join(sorted({s.name for s in signatures}))
        raise _BadNote(Kind.OTHER_KEY, f"signed by a key that is not a trusted audit signer "
                       f"({names})")
    for sig, signers in ours:
        try:
            signers[0].key.verify(sig.signature, text)
        except InvalidSignature:
            raise _BadNote(Kind.FORGED_CHECKPOINT, f"the signature of {sig.name} does not verify "
                           "(forged or altered checkpoint)") from None
    if origin is not None and checkpoint.origin != origin:
        raise _BadNote(Kind.OTHER_KEY, f"a checkpoint of another log ({checkpoint.origin!r})")
    refusal = first_refusal(checkpoint, [s for _sig, signers in ours for s in signers], now)
    if refusal is not None:
        raise _BadNote(Kind.UNTRUSTED_SIGNER, f"signed by a key that was not trusted for it: "
                       f"{refusal}")
    return checkpoint


def _checkpoint_check(notes: list[tuple[str, Checkpoint]], scan: Scan, findings: list[Finding],
                      partial: bool, trusted: TrustedKeys) -> Check:
    bad = [f for f in findings if f.kind in (Kind.FORGED_CHECKPOINT, Kind.OTHER_KEY,
                                             Kind.UNTRUSTED_SIGNER, Kind.DAMAGED)]
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
        backdated = written_after(scan.ends.get(cp.size), cp)
        if backdated is not None:
            f = Finding(Kind.UNTRUSTED_SIGNER, cp.size - 1, label, backdated)
            findings.append(f)
            return Check("checkpoints", Status.FAIL, _describe(f))
        checked += 1
        previous = cp.size
    if partial:
        return Check("checkpoints", Status.SKIP, "roots are not recomputed with --from")
    latest = notes[-1][1]
    return Check("checkpoints", Status.PASS, f"{checked} signed checkpoint(s) match; the latest "
                 f"covers {latest.size} of {scan.size} entries")


def entry_time(line: bytes) -> dt.datetime | None:
    """The ``time`` of an entry line (None when it has none that reads as an aware time)."""
    try:
        value = json.loads(line).get("time")
        when = dt.datetime.fromisoformat(value) if isinstance(value, str) else None
    except (ValueError, TypeError, AttributeError, RecursionError):
        return None
    return when if when is not None and when.tzinfo is not None else None


def written_after(line: bytes | None, checkpoint: Checkpoint, seq: int | None = None
                  ) -> str | None:
    """Why ``checkpoint`` cannot have been signed when it says, given an entry it covers
    (``line``, entry ``seq``; by default its last): that entry was written later. The signing
    time is the key holder's claim; this catches a checkpoint backdated into a certificate's
    validity."""
    seq = checkpoint.size - 1 if seq is None else seq
    signed_at = checkpoint.signed_at
    when = entry_time(line) if line is not None and signed_at is not None else None
    if when is None or signed_at is None or when <= signed_at + FUTURE_SLACK:
        return None
    return (f"the checkpoint claims to be signed at {vn_iso(signed_at)}, but entry {seq}, which "
            f"it covers, was written at {vn_iso(when)} (a backdated signature)")


def _torn_kept(layout: Layout) -> Check:
    kept = sorted(layout.torn.glob("*.bin")) if layout.torn.is_dir() else []
    if not kept:
        return Check("torn tails", Status.PASS, "none")
    return Check("torn tails", Status.WARN, f"{len(kept)} incomplete write(s) kept under torn/ "
                 "(each recorded by an AUDIT_TORN_TAIL event)")
