"""The tamper suite: every way of changing the audit log on disk is caught by ``verify_log``,
which names the kind of change and the first sequence number it touched — never a traceback.

Each tamper helper edits the files of a real log (50 events over 3 segments, a signed
checkpoint at size 40) exactly once; each test then checks the verdict and the FIRST finding.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kyso.audit import AuditEvent, AuditLog, Layer, Outcome, iter_entries
from kyso.audit import scan as scan_module
from kyso.audit.checkpoint import Checkpoint, sign_checkpoint
from kyso.audit.entry import GENESIS, encode_entry
from kyso.audit.merkle import Frontier, leaf_hash, root_of
from kyso.audit.segments import TreeState, write_state
from kyso.audit.verify import Kind, Status, VerifyReport, verify_log
from kyso.clock import FrozenClock
from kyso.config import AuditSettings

T0 = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)
ORIGIN = "audit.kyso.thainguyen.gov.vn/v1"
NAME = "audit.kyso.thainguyen.gov.vn"
EVENTS = 50
CHECKPOINT_SIZE = 40
SEGMENT_DAYS = 20  # entries per day: daily rotation makes segments start at 0, 20 and 40


@dataclass
class Log:
    dir: Path
    key: Ed25519PrivateKey

    def verify(self, *, checkpoints: Sequence[tuple[str, bytes]] = (),
               from_seq: int | None = None) -> VerifyReport:
        return verify_log(self.dir, trusted=[(NAME, self.key.public_key())], origin=ORIGIN,
                          checkpoints=checkpoints, from_seq=from_seq)

    # -- the files ---------------------------------------------------------------------------

    def segments(self) -> list[Path]:
        return sorted((self.dir / "segments").glob("*.jsonl"))

    def segment_of(self, seq: int) -> Path:
        return [p for p in self.segments() if int(p.name[:12]) <= seq][-1]

    def lines(self, segment: Path) -> list[bytes]:
        data = segment.read_bytes()
        assert data.endswith(b"\n")
        return data[:-1].split(b"\n")

    def write_lines(self, segment: Path, lines: list[bytes]) -> None:
        writable(segment)
        segment.write_bytes(b"".join(line + b"\n" for line in lines))

    def index_of(self, seq: int) -> tuple[Path, int]:
        """The segment holding ``seq`` and its 0-based line index there."""
        segment = self.segment_of(seq)
        return segment, seq - int(segment.name[:12])

    def entry(self, seq: int) -> bytes:
        segment, index = self.index_of(seq)
        return self.lines(segment)[index]

    def replace(self, seq: int, new: bytes) -> None:
        segment, index = self.index_of(seq)
        lines = self.lines(segment)
        lines[index] = new
        self.write_lines(segment, lines)

    def insert_before(self, seq: int, new: bytes) -> None:
        segment, index = self.index_of(seq)
        lines = self.lines(segment)
        lines.insert(index, new)
        self.write_lines(segment, lines)

    def where(self, seq: int, extra: int = 0) -> str:
        """The location the verifier reports for the line at seq's place (+ extra lines)."""
        segment, index = self.index_of(seq)
        return f"segments/{segment.name} line {index + 1 + extra}"


def writable(path: Path) -> None:
    """Sealed segments are 0400: an attacker (or a test) chmods them back first."""
    path.chmod(0o600)


def event(i: int) -> AuditEvent:
    when = T0 + dt.timedelta(days=i // SEGMENT_DAYS, seconds=i)
    return AuditEvent(time=when, layer=Layer.PKI, action="CERT_CREATION",
                      outcome=Outcome.SUCCESS, actor="admin:test", object=f"serial:{i:04x}",
                      details={"i": i, "profile": "staff", "note": "Nguyễn Văn An"})


def leaves(directory: Path) -> list[bytes]:
    return [entry.leaf_hash for entry in iter_entries(directory)]


def sign(key: Ed25519PrivateKey, size: int, root: bytes, origin: str = ORIGIN) -> bytes:
    return sign_checkpoint(Checkpoint(origin, size, root), NAME, key)


def install_checkpoint(log: Log, note: bytes, size: int = CHECKPOINT_SIZE) -> str:
    folder = log.dir / "checkpoints"
    folder.mkdir(exist_ok=True)
    path = folder / f"{size:012d}.note"
    path.write_bytes(note)
    return f"checkpoints/{path.name}"


@pytest.fixture
def log(tmp_path: Path) -> Log:
    directory = tmp_path / "audit"
    writer = AuditLog(directory, AuditSettings(), FrozenClock(T0))
    for i in range(0, EVENTS, 5):  # a few group commits of 5, so batches are not all alike
        writer.append([event(j) for j in range(i, i + 5)])
    writer.close()
    key = Ed25519PrivateKey.generate()
    made = Log(directory, key)
    assert [int(p.name[:12]) for p in made.segments()] == [0, 20, 40], made.segments()
    install_checkpoint(made, sign(key, CHECKPOINT_SIZE, root_of(leaves(directory)[:CHECKPOINT_SIZE])))
    return made


# --- the tamperings -------------------------------------------------------------------------------

def modify(seq: int) -> Callable[[Log], None]:
    def tamper(log: Log) -> None:
        log.replace(seq, log.entry(seq).replace(b'"profile":"staff"', b'"profile":"seal!"'))
    return tamper


def delete_line(seq: int) -> Callable[[Log], None]:
    def tamper(log: Log) -> None:
        segment, index = log.index_of(seq)
        lines = log.lines(segment)
        del lines[index]
        log.write_lines(segment, lines)
    return tamper


def insert_copy(log: Log) -> None:
    """A copy of entry 24 right after it."""
    log.insert_before(25, log.entry(24))


def insert_well_formed(log: Log) -> None:
    """A new entry numbered 25 that chains correctly to entry 24, before the real 25."""
    fake = json.loads(log.entry(25))
    del fake["seq"], fake["prev"]
    fake["action"] = "CERT_REVOCATION"
    prev = leaf_hash(log.entry(24)).hex()
    log.insert_before(25, encode_entry(25, prev, fake))


def swap(seq: int) -> Callable[[Log], None]:
    def tamper(log: Log) -> None:
        segment, index = log.index_of(seq)
        lines = log.lines(segment)
        lines[index], lines[index + 1] = lines[index + 1], lines[index]
        log.write_lines(segment, lines)
    return tamper


def truncate(keep: int) -> Callable[[Log], None]:
    """Cut the log after ``keep`` entries, removing segments that become empty."""
    def tamper(log: Log) -> None:
        for segment in log.segments():
            first = int(segment.name[:12])
            if first >= keep:
                segment.unlink()
            elif first + len(log.lines(segment)) > keep:
                log.write_lines(segment, log.lines(segment)[:keep - first])
    return tamper


def truncate_and_delete_head(keep: int) -> Callable[[Log], None]:
    def tamper(log: Log) -> None:
        truncate(keep)(log)
        (log.dir / "head.json").unlink()
    return tamper


def forge_checkpoint(log: Log) -> None:
    """Alter the root of the signed checkpoint and re-encode it, keeping the signature."""
    path = log.dir / "checkpoints" / f"{CHECKPOINT_SIZE:012d}.note"
    origin, size, _root, rest = path.read_bytes().split(b"\n", 3)
    fake_root = base64.b64encode(leaf_hash(b"a root the auditor never saw"))
    path.write_bytes(b"\n".join([origin, size, fake_root, rest]))


def checkpoint_by_other_key(log: Log) -> None:
    """Someone with another Ed25519 key signs a checkpoint under the audit signer's name."""
    other = Ed25519PrivateKey.generate()
    root = root_of(leaves(log.dir)[:CHECKPOINT_SIZE])
    install_checkpoint(log, sign(other, CHECKPOINT_SIZE, root))


def rewrite_consistently(log: Log) -> None:
    """Change entry 5 and recompute the whole chain and the head file: only a signed
    checkpoint can tell."""
    frontier = Frontier()
    prev = GENESIS
    seq = 0
    segment = log.segments()[-1]
    for segment in log.segments():
        new_lines = []
        for line in log.lines(segment):
            fields = json.loads(line)
            del fields["seq"], fields["prev"]
            if seq == 5:
                fields["details"]["profile"] = "seal"
            new = encode_entry(seq, prev, fields)
            h = leaf_hash(new)
            frontier.append(h)
            prev = h.hex()
            seq += 1
            new_lines.append(new)
        log.write_lines(segment, new_lines)
    state = TreeState(seq, prev, tuple(frontier.hashes), segment.name, segment.stat().st_size)
    write_state(log.dir / "head.json", state, durable=False)


def insert_garbage(blob: bytes) -> Callable[[Log], None]:
    def tamper(log: Log) -> None:
        log.insert_before(25, blob)
    return tamper


def overwrite_with_garbage(blob: bytes) -> Callable[[Log], None]:
    def tamper(log: Log) -> None:
        log.replace(25, blob)
    return tamper


def delete_segment(log: Log) -> None:
    log.segments()[1].unlink()


def rename_segment(log: Log) -> None:
    segment = log.segments()[1]
    segment.rename(segment.with_name(segment.name + ".bak"))


def torn_tail(log: Log) -> None:
    segment = log.segments()[-1]
    with segment.open("ab") as fh:
        fh.write(b'{"seq":50,"prev":"' + leaf_hash(log.entry(49)).hex().encode() + b'","act')


@dataclass(frozen=True)
class Case:
    tamper: Callable[[Log], None]
    kind: Kind
    seq: int | None
    where: str | Callable[[Log], str] = ""  # what the first finding's location starts with


CASES = {
    "modify-entry-in-the-middle": Case(modify(25), Kind.MODIFIED, 25, lambda lg: lg.where(26)),
    "modify-first-entry": Case(modify(0), Kind.MODIFIED, 0, lambda lg: lg.where(1)),
    "modify-last-entry-of-a-sealed-segment": Case(modify(19), Kind.MODIFIED, 19,
                                                  lambda lg: lg.where(20)),
    "modify-last-entry-caught-by-head-file": Case(modify(49), Kind.MODIFIED, 49, "head.json"),
    "delete-one-line": Case(delete_line(25), Kind.DELETED, 25, lambda lg: lg.where(25)),
    "delete-first-line-of-a-segment": Case(delete_line(20), Kind.DELETED, 20,
                                           lambda lg: lg.where(20)),
    "insert-copy-of-an-entry": Case(insert_copy, Kind.INSERTED, 25, lambda lg: lg.where(25)),
    "insert-new-well-formed-entry": Case(insert_well_formed, Kind.INSERTED, 25,
                                         lambda lg: f"segments/{lg.segment_of(25).name} line "),
    "swap-two-adjacent-lines": Case(swap(25), Kind.REORDERED, 25, lambda lg: lg.where(25)),
    "truncate-last-lines-caught-by-head-file": Case(truncate(47), Kind.TRUNCATED, 47, "head.json"),
    "truncate-without-head-caught-by-checkpoint": Case(truncate_and_delete_head(33),
                                                       Kind.TRUNCATED, 33, "checkpoints/"),
    "forged-checkpoint": Case(forge_checkpoint, Kind.FORGED_CHECKPOINT, None, "checkpoints/"),
    "checkpoint-signed-by-another-key": Case(checkpoint_by_other_key, Kind.OTHER_KEY, None,
                                             "checkpoints/"),
    "rewritten-chain-caught-by-checkpoint": Case(rewrite_consistently, Kind.REWRITTEN, 0,
                                                 "checkpoints/"),
    "insert-line-that-is-not-json": Case(insert_garbage(b"this is not JSON {"), Kind.INSERTED,
                                         25, lambda lg: lg.where(25)),
    "insert-binary-blob": Case(insert_garbage(b"\x00\x01\xff\xfe\x80binary\x7f"), Kind.INSERTED,
                               25, lambda lg: lg.where(25)),
    "insert-empty-line": Case(insert_garbage(b""), Kind.INSERTED, 25, lambda lg: lg.where(25)),
    "insert-json-without-header": Case(insert_garbage(b'{"action":"LOGIN"}'), Kind.INSERTED, 25,
                                       lambda lg: lg.where(25)),
    "overwrite-entry-with-non-json": Case(overwrite_with_garbage(b"garbage!"), Kind.GARBAGE, 25,
                                          lambda lg: lg.where(25)),
    "overwrite-entry-with-binary": Case(overwrite_with_garbage(b"\xff\x00\xfe"), Kind.GARBAGE, 25,
                                        lambda lg: lg.where(25)),
    "delete-segment-file": Case(delete_segment, Kind.DELETED, 20, "segments/000000000040-"),
    "rename-segment-file": Case(rename_segment, Kind.DELETED, 20, "segments/"),
    "torn-tail": Case(torn_tail, Kind.TORN_TAIL, 50, lambda lg: lg.where(49, extra=1)),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_each_tampering_fails_and_names_the_kind_and_first_seq(log: Log, case: Case) -> None:
    expected_where = case.where(log) if callable(case.where) else case.where
    case.tamper(log)
    report = log.verify()
    assert report.ok is False
    assert report.findings, report.checks
    first = report.findings[0]
    assert (first.kind, first.seq) == (case.kind, case.seq), report.findings
    assert first.where.startswith(expected_where), first.where
    failed = [c for c in report.checks if c.status is Status.FAIL]
    assert failed, report.checks
    assert case.kind.value.upper() in " ".join(c.detail for c in failed)
    json.dumps(report.to_dict())  # the report renders, whatever was found


def test_an_untouched_log_passes_every_check(log: Log) -> None:
    report = log.verify()
    assert report.ok
    assert report.findings == ()
    statuses = {c.name: c.status for c in report.checks}
    assert statuses == {"segments": Status.PASS, "entries and hash chain": Status.PASS,
                        "tail": Status.PASS, "head file": Status.PASS,
                        "checkpoints": Status.PASS, "torn tails": Status.PASS}
    assert report.size == EVENTS
    assert report.root == root_of(leaves(log.dir))


def test_a_checkpoint_given_by_the_auditor_is_checked_too(log: Log) -> None:
    note = sign(log.key, EVENTS, root_of(leaves(log.dir)))
    assert log.verify(checkpoints=[("given.note", note)]).ok
    bad = sign(log.key, EVENTS, leaf_hash(b"not the root"))
    report = log.verify(checkpoints=[("given.note", bad)])
    assert not report.ok
    assert (report.findings[0].kind, report.findings[0].where) == (Kind.REWRITTEN, "given.note")


def test_the_truncation_finding_names_the_checkpoint_that_covers_the_lost_entries(log: Log) -> None:
    truncate_and_delete_head(33)(log)
    report = log.verify()
    assert report.size == 33
    assert report.findings[0].where == f"checkpoints/{CHECKPOINT_SIZE:012d}.note"
    assert "40" in report.findings[0].message


def test_a_truncated_log_without_head_or_checkpoint_cannot_be_told_apart(log: Log) -> None:
    """What is gone from the end with nothing recording it is undetectable: the reason the
    head file and signed checkpoints exist. The verifier still warns about the head file."""
    (log.dir / "checkpoints" / f"{CHECKPOINT_SIZE:012d}.note").unlink()
    truncate_and_delete_head(45)(log)
    report = log.verify()
    assert report.ok
    assert {c.name: c.status for c in report.checks}["head file"] is Status.WARN


def test_a_checkpoint_for_another_origin_fails(log: Log) -> None:
    root = root_of(leaves(log.dir)[:CHECKPOINT_SIZE])
    install_checkpoint(log, sign(log.key, CHECKPOINT_SIZE, root, origin="other.example/log"))
    report = log.verify()
    assert not report.ok
    assert report.findings[0].kind is Kind.OTHER_KEY
    assert "other.example/log" in report.findings[0].message


def test_a_checkpoint_nobody_is_trusted_for_fails(log: Log) -> None:
    report = verify_log(log.dir, trusted=[], origin=ORIGIN)
    assert not report.ok
    assert report.findings[0].kind is Kind.OTHER_KEY


def test_a_garbage_head_file_is_only_a_warning(log: Log) -> None:
    (log.dir / "head.json").write_bytes(b"\x00not json at all")
    report = log.verify()
    assert report.ok
    head = next(c for c in report.checks if c.name == "head file")
    assert head.status is Status.WARN
    assert report.findings == ()


def test_a_head_file_with_the_wrong_shape_is_only_a_warning(log: Log) -> None:
    (log.dir / "head.json").write_text(json.dumps({"size": "many"}), encoding="utf-8")
    report = log.verify()
    assert report.ok
    assert next(c for c in report.checks if c.name == "head file").status is Status.WARN


def test_a_renamed_segment_is_reported_as_a_stray_file(log: Log) -> None:
    rename_segment(log)
    report = log.verify()
    segments = next(c for c in report.checks if c.name == "segments")
    assert segments.status is Status.FAIL
    assert ".bak" in segments.detail


def test_a_stray_file_alone_fails_the_segments_check(log: Log) -> None:
    (log.dir / "segments" / "notes.txt").write_text("hello", encoding="utf-8")
    report = log.verify()
    assert not report.ok
    assert next(c for c in report.checks if c.name == "segments").status is Status.FAIL


def test_a_torn_tail_is_not_counted_and_fails_the_tail_check(log: Log) -> None:
    torn_tail(log)
    report = log.verify()
    assert report.size == EVENTS
    assert report.root == root_of(leaves(log.dir))
    assert [f.kind for f in report.findings] == [Kind.TORN_TAIL]
    statuses = {c.name: c.status for c in report.checks}
    assert statuses["tail"] is Status.FAIL
    assert statuses["entries and hash chain"] is Status.PASS


def test_an_incomplete_line_at_the_end_of_a_sealed_segment_is_garbage(log: Log) -> None:
    segment = log.segments()[0]
    writable(segment)
    with segment.open("ab") as fh:
        fh.write(b'{"seq":20,"pr')
    report = log.verify()
    assert not report.ok
    assert report.findings[0].kind is Kind.GARBAGE
    assert report.findings[0].where.startswith(f"segments/{segment.name}")


def test_from_seq_checks_only_the_later_entries(log: Log) -> None:
    modify(10)(log)
    assert not log.verify().ok
    report = log.verify(from_seq=30)
    assert report.ok, report.findings
    assert report.first == 30
    assert report.size == EVENTS
    assert report.root is None


def test_from_seq_still_catches_a_change_after_it(log: Log) -> None:
    modify(35)(log)
    report = log.verify(from_seq=30)
    assert not report.ok
    assert (report.findings[0].kind, report.findings[0].seq) == (Kind.MODIFIED, 35)


@pytest.mark.parametrize("from_seq", [1, 19, 20, 21, 40, 49])
def test_from_seq_at_any_position_verifies_an_untouched_log(log: Log, from_seq: int) -> None:
    report = log.verify(from_seq=from_seq)
    assert report.ok, report.findings
    assert (report.first, report.size) == (from_seq, EVENTS)


def test_from_seq_beyond_the_end_is_a_truncation(log: Log) -> None:
    report = log.verify(from_seq=EVENTS + 10)
    assert not report.ok
    assert report.findings[0].kind is Kind.TRUNCATED
    assert report.size == EVENTS


def test_an_empty_directory_verifies_as_an_empty_log(tmp_path: Path) -> None:
    report = verify_log(tmp_path / "nothing-here")
    assert report.ok
    assert report.size == 0


def test_a_damaged_checkpoint_file_fails_without_a_traceback(log: Log) -> None:
    install_checkpoint(log, b"\xff\xfe not a note", size=7)
    report = log.verify()
    assert not report.ok
    assert report.findings[0].kind is Kind.DAMAGED


def test_verify_does_not_modify_any_file(log: Log) -> None:
    torn_tail(log)
    before = {p: p.read_bytes() for p in log.dir.rglob("*") if p.is_file()}
    modes = {p: os.stat(p).st_mode for p in before}
    log.verify()
    after = {p: p.read_bytes() for p in log.dir.rglob("*") if p.is_file()}
    assert after == before
    assert {p: os.stat(p).st_mode for p in after} == modes


def test_the_describe_text_names_kind_and_seq(log: Log) -> None:
    delete_line(25)(log)
    chain = next(c for c in log.verify().checks if c.name == "entries and hash chain")
    assert chain.status is Status.FAIL
    assert re.match(r"DELETED at seq 25 — segments/\S+ line \d+", chain.detail), chain.detail


@pytest.mark.parametrize("from_seq", [44, 45], ids=["from-before-the-gap", "from-the-deleted-entry"])
def test_from_seq_reports_a_deleted_entry_at_or_after_it(log: Log, from_seq: int) -> None:
    delete_line(45)(log)
    report = log.verify(from_seq=from_seq)
    assert not report.ok
    assert (report.findings[0].kind, report.findings[0].seq) == (Kind.DELETED, 45)


# --- the batched hot path: chunk boundaries, digit boundaries, every header byte -----------------

@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_each_tampering_is_named_the_same_when_chunks_cut_through_entries(
        log: Log, case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = case.where(log) if callable(case.where) else case.where
    case.tamper(log)
    monkeypatch.setattr(scan_module, "_CHUNK", 997)  # about three entries, cut anywhere
    report = log.verify()
    assert not report.ok
    first = report.findings[0]
    assert (first.kind, first.seq) == (case.kind, case.seq), report.findings
    assert first.where.startswith(expected), first.where


def _header_positions(line: bytes) -> list[int]:
    """Byte offsets inside the ``{"seq":N,"prev":"<hex>",`` header worth changing: the
    constant parts, the first and last digit, the first and last hex digit, the quote and
    comma after the hash."""
    width = line.index(b',"prev":"') + 9
    return [0, 6, 7, width - 10, width - 9, width - 1, width, width + 63, width + 64, width + 65]


def _changed(byte: int) -> bytes:
    if chr(byte).isdigit():
        return str((int(chr(byte)) + 1) % 10).encode()
    if chr(byte) in "abcdef":
        return b"0"
    return b"x"


@pytest.mark.parametrize("chunk", [None, 997])
@pytest.mark.parametrize("seq", [0, 9, 10, 19, 20, 33, 40, 49])
def test_any_changed_header_byte_fails_verification(log: Log, seq: int, chunk: int | None,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    if chunk is not None:
        monkeypatch.setattr(scan_module, "_CHUNK", chunk)
    original = log.entry(seq)
    for pos in _header_positions(original):
        changed = original[:pos] + _changed(original[pos]) + original[pos + 1:]
        log.replace(seq, changed)
        report = log.verify()
        assert not report.ok, (seq, pos, changed[:100])
        assert report.findings[0].seq in (seq - 1, seq), (pos, report.findings)
    log.replace(seq, original)
    assert log.verify().ok


@pytest.fixture
def long_log(tmp_path: Path) -> Log:
    """120 entries in one segment: sequence numbers cross 10 and 100 inside one chunk."""
    directory = tmp_path / "long"
    writer = AuditLog(directory, AuditSettings(rotate_daily=False), FrozenClock(T0))
    writer.append([event(i % SEGMENT_DAYS) for i in range(120)])
    writer.close()
    return Log(directory, Ed25519PrivateKey.generate())


@pytest.mark.parametrize(("tamper", "kind", "seq"), [
    (modify(99), Kind.MODIFIED, 99),
    (modify(100), Kind.MODIFIED, 100),
    (swap(9), Kind.REORDERED, 9),
    (swap(99), Kind.REORDERED, 99),
    (delete_line(10), Kind.DELETED, 10),
    (delete_line(100), Kind.DELETED, 100),
])
def test_tampering_where_sequence_numbers_grow_a_digit_is_named(
        long_log: Log, tamper: Callable[[Log], None], kind: Kind, seq: int) -> None:
    assert long_log.verify().ok
    assert long_log.verify().root == root_of(leaves(long_log.dir))
    tamper(long_log)
    report = long_log.verify()
    assert (report.findings[0].kind, report.findings[0].seq) == (kind, seq), report.findings


# --- checkpoints the auditor gives ----------------------------------------------------------------

def test_a_given_copy_of_a_checkpoint_the_log_holds_is_counted_once(log: Log) -> None:
    held = (log.dir / "checkpoints" / f"{CHECKPOINT_SIZE:012d}.note").read_bytes()
    report = log.verify(checkpoints=[("my-copy.note", held)])
    assert report.ok
    checkpoints = next(c for c in report.checks if c.name == "checkpoints")
    assert checkpoints.detail.startswith("1 signed checkpoint(s) match")
    other = sign(log.key, EVENTS, root_of(leaves(log.dir)))
    report = log.verify(checkpoints=[("my-copy.note", held), ("newer.note", other)])
    assert next(c for c in report.checks if c.name == "checkpoints").detail.startswith(
        "2 signed checkpoint(s) match")


def test_a_given_copy_of_a_bad_checkpoint_is_reported_once(log: Log) -> None:
    forge_checkpoint(log)
    held = (log.dir / "checkpoints" / f"{CHECKPOINT_SIZE:012d}.note").read_bytes()
    report = log.verify(checkpoints=[("my-copy.note", held), ("again.note", held)])
    assert [f.kind for f in report.findings] == [Kind.FORGED_CHECKPOINT]
    assert report.findings[0].where == f"checkpoints/{CHECKPOINT_SIZE:012d}.note"


def _chunk_of(log: Log, first: int, count: int) -> tuple[list[bytes], bytes, list[bytes]]:
    lines = [log.entry(seq) for seq in range(first, first + count)]
    prev = leaf_hash(log.entry(first - 1)).hex().encode() if first else GENESIS.encode()
    return lines, prev, [leaf_hash(line) for line in lines]


@pytest.mark.parametrize(("first", "count"), [(0, 10), (10, 10), (20, 20), (40, 10), (49, 1)])
def test_the_whole_chunk_header_check_accepts_untouched_entries(log: Log, first: int,
                                                                 count: int) -> None:
    lines, prev, hashes = _chunk_of(log, first, count)
    assert scan_module.heads_match(lines, first, prev, hashes)


def test_the_whole_chunk_header_check_rejects_any_changed_header(log: Log) -> None:
    lines, prev, hashes = _chunk_of(log, 20, 20)
    assert not scan_module.heads_match(lines, 21, prev, hashes)  # numbers off by one
    assert not scan_module.heads_match(lines, 20, GENESIS.encode(), hashes)  # wrong first link
    assert not scan_module.heads_match(lines[:5] + lines[6:], 20, prev,
                                         hashes[:5] + hashes[6:])  # a line gone
    for i in (0, 7, 19):
        for pos in _header_positions(lines[i]):
            changed = list(lines)
            changed[i] = lines[i][:pos] + _changed(lines[i][pos]) + lines[i][pos + 1:]
            assert not scan_module.heads_match(changed, 20, prev, hashes), (i, pos)
        short = list(lines)
        short[i] = lines[i][:60]  # a line cut inside its header
        assert not scan_module.heads_match(short, 20, prev, hashes), i
    # Numbers growing a digit (9 → 10) are left to the line-by-line check.
    crossing, before, crossing_hashes = _chunk_of(log, 5, 10)
    assert not scan_module.heads_match(crossing, 5, before, crossing_hashes)
