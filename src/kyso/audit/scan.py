"""One pass over the audit log's segments: the verifier's hot path, and the diagnosis that
names what changed when an entry does not fit.

Each segment is read in 256 KiB chunks (small enough that the joined headers below stay off
the mmap path of malloc), and each chunk's entries are handled together so that the
per-entry work runs in C: one list comprehension hashes the leaves, :func:`heads_match`
checks every ``{"seq":N,"prev":"<hex>",`` header against them with a few bytes operations,
and :func:`~kyso.audit.merkle.extend_frontier` adds them to the tree a level at a time. Only
a chunk that does not match is read line by line, and the first bad line is then diagnosed
by looking at its neighbours (:class:`Kind`). :mod:`kyso.audit.verify` builds the report.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from binascii import hexlify
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from operator import itemgetter
from typing import Any

from kyso.audit.entry import entry_head, peek
from kyso.audit.merkle import Frontier, extend_frontier
from kyso.audit.segments import Segment, read_bytes, segments_from
from kyso.errors import AuditError


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
    UNTRUSTED_SIGNER = "untrusted-signer"  # a trusted key, but its certificate did not cover it
    DAMAGED = "damaged"  # a state file or checkpoint that cannot be read at all


@dataclass(frozen=True)
class Finding:
    kind: Kind
    seq: int | None
    where: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "seq": self.seq, "where": self.where,
                "message": self.message}


@dataclass
class Scan:
    """Running state of the pass over the entries."""

    size: int
    last: str
    hashes: list[bytes]  # the frontier
    want_roots: set[int]
    roots: dict[int, bytes] = field(default_factory=dict)
    wanted: list[int] = field(default_factory=list)  # want_roots, sorted
    lasts: dict[int, str] = field(default_factory=dict)  # last leaf hash at the wanted sizes
    ends: dict[int, bytes] = field(default_factory=dict)  # last entry at the wanted sizes
    finding: Finding | None = None
    segments: int = 0


def frontier_root(hashes: list[bytes]) -> bytes:
    return Frontier(0, hashes).root()  # root() reads only the hashes


def scan_segments(scan: Scan, segments: list[Segment], from_seq: int | None) -> None:
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


def _skip_to(scan: Scan, segment: Segment, data: bytes, from_seq: int) -> bytes:
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


def _placeholder_frontier(scan: Scan) -> None:
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


def _scan_one(scan: Scan, segment: Segment, data: bytes | None, *, last: bool) -> bool:
    """Hash one segment's entries into the scan, a chunk at a time (see the module's text);
    False (with a finding) at the first problem. ``data`` is given only after ``--from``
    skipped part of it."""
    sha256 = hashlib.sha256
    size, prev = scan.size, scan.last.encode()
    done = 0  # lines of this segment already hashed
    rest = b""
    for chunk in _chunks(segment, data):
        lines = chunk.split(b"\n")
        lines[0] = rest + lines[0]  # the line the last chunk ended in
        rest = lines.pop()
        if not lines:
            continue
        leaves = [sha256(b"\x00" + line).digest() for line in lines]
        bad = _first_bad_head(lines, size, prev, leaves)
        if bad is not None:
            _grow(scan, size, leaves[:bad], lines)
            scan.size = size + bad
            scan.last = (hexlify(leaves[bad - 1]) if bad else prev).decode()
            whole = data if data is not None else read_bytes(segment.path)
            scan.finding = _diagnose(segment, whole.split(b"\n"), done + bad, scan.size,
                                     scan.last)
            return False
        _grow(scan, size, leaves, lines)
        size += len(lines)
        done += len(lines)
        prev = hexlify(leaves[-1])
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


_CHUNK = 1 << 18
_SEQ_HEAD = b'{"seq":%d,"prev":"'
_HEAD = _SEQ_HEAD + b'%b",'


def _first_bad_head(lines: list[bytes], first: int, prev: bytes, leaves: list[bytes]
                    ) -> int | None:
    """The index of the first line that does not start with the header of entry
    ``first + i`` chained to the line before (``prev``, then the hex of ``leaves``), or None.
    :func:`heads_match` checks the whole chunk at once; only a chunk it does not accept is
    checked line by line, to find the line."""
    if heads_match(lines, first, prev, leaves):
        return None
    for i, line in enumerate(lines):
        if not line.startswith(_HEAD % (first + i, prev)):
            return i
        prev = hexlify(leaves[i])
    return None


def heads_match(lines: list[bytes], first: int, prev: bytes, leaves: list[bytes]) -> bool:
    """True when every line ``i`` starts with ``{"seq":<first + i>,"prev":"<hex>",``, the hex
    being ``prev`` for the first line and the previous line's leaf hash after that.

    While the sequence numbers keep the same number of digits the headers are two
    fixed-width columns, checked with a few C-speed operations instead of a Python loop: the
    ``{"seq":N,"prev":"`` parts, joined, must equal one formatted string; the ``<hex>",``
    parts, joined, must have their commas exactly every 66 bytes and, without them, equal the
    hex of the previous leaf hashes with a quote after each. (Every part is sliced to at most
    its width, so the total lengths matching means every part is whole.) A chunk whose
    numbers grow a digit returns False and is checked line by line."""
    n = len(lines)
    digits = len(str(first))
    if digits != len(str(first + n - 1)):
        return False
    width = 16 + digits  # {"seq":N,"prev":"
    heads = b"".join(map(itemgetter(slice(0, width)), lines))
    if heads != (_SEQ_HEAD * n) % tuple(range(first, first + n)):
        return False
    links = b"".join(map(itemgetter(slice(width, width + 66)), lines))  # <hex>",
    if len(links) != 66 * n or links[65::66] != b"," * n:
        return False
    hexes = hexlify(b"".join(leaves[:-1]), b'"', 32)  # hex"hex"…hex
    return links.translate(None, b",") == (prev + b'"' + hexes + b'"' if hexes else prev + b'"')


def _grow(scan: Scan, size: int, leaves: list[bytes], lines: list[bytes]) -> None:
    """Add the leaf hashes of entries ``size …`` (``lines``) to the tree, noting the root, the
    last leaf hash and the last entry at every size verification needs."""
    end = size + len(leaves)
    wanted = scan.wanted
    i = bisect.bisect_right(wanted, size)
    start = 0
    while i < len(wanted) and wanted[i] <= end:
        cut = wanted[i] - size
        extend_frontier(scan.hashes, size + start, leaves[start:cut])
        scan.roots[wanted[i]] = frontier_root(scan.hashes)
        scan.lasts[wanted[i]] = leaves[cut - 1].hex()
        scan.ends[wanted[i]] = lines[cut - 1]
        start = cut
        i += 1
    extend_frontier(scan.hashes, size + start, leaves[start:])


def _chunks(segment: Segment, data: bytes | None) -> Iterator[bytes]:
    if data is not None:
        yield data
        return
    try:
        with open(segment.path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
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
