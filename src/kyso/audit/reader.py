"""Reading entries back, for ``audit show``, ``export``, proofs and tests. Reading never
judges integrity — that is :mod:`kyso.audit.verify` — but it never returns a line that is not
a complete entry: damaged lines raise AuditError naming their place."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kyso.audit.entry import Entry, parse_entry
from kyso.audit.segments import Layout, iter_lines, list_segments, read_bytes
from kyso.errors import AuditError


def iter_entries(directory: Path, from_seq: int = 0) -> Iterator[Entry]:
    layout = Layout(directory)
    segments, _ = list_segments(layout)
    for i, segment in enumerate(segments):
        if i + 1 < len(segments) and segments[i + 1].first <= from_seq:
            continue  # every entry of this segment is before from_seq
        last = i == len(segments) - 1
        for line in iter_lines(read_bytes(segment.path)):
            if not line.complete and last:
                return  # a torn tail: not an entry (verify reports it)
            try:
                entry = parse_entry(line.data)
            except AuditError as exc:
                raise AuditError(f"{segment.name} line {line.number}: {exc}; run "
                                 "`kyso audit verify`") from None
            if entry.seq >= from_seq:
                yield entry


def read_events(directory: Path, from_seq: int = 0) -> list[dict[str, Any]]:
    """Every entry as a dict (seq and prev included), in log order."""
    return [entry.event() for entry in iter_entries(directory, from_seq)]
