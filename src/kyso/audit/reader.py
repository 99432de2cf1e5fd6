"""Reading entries back, for ``audit show``, ``export``, proofs and tests. Reading never
judges integrity — that is :mod:`kyso.audit.verify` — but it never returns a line that is not
a complete entry: damaged lines raise AuditError naming their place."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kyso.audit.entry import Entry, parse_entry
from kyso.audit.segments import Layout, iter_lines, list_segments, read_bytes, segments_from
from kyso.errors import AuditError


def iter_entries(directory: Path, from_seq: int = 0) -> Iterator[Entry]:
    layout = Layout(directory)
    segments = segments_from(list_segments(layout)[0], from_seq)
    for i, segment in enumerate(segments):
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


@dataclass(frozen=True)
class EventFilter:
    """What ``audit show`` and ``audit export`` select. Times compare as instants."""

    since: dt.datetime | None = None
    until: dt.datetime | None = None
    layers: frozenset[str] = frozenset()
    actions: frozenset[str] = frozenset()
    actors: frozenset[str] = frozenset()
    outcome: str | None = None
    from_seq: int = 0

    def matches(self, event: Mapping[str, Any]) -> bool:
        if self.layers and event.get("layer") not in self.layers:
            return False
        if self.actions and event.get("action") not in self.actions:
            return False
        if self.actors and event.get("actor") not in self.actors:
            return False
        if self.outcome and event.get("outcome") != self.outcome:
            return False
        if self.since or self.until:
            try:
                when = dt.datetime.fromisoformat(str(event.get("time")))
            except ValueError:
                return False
            if self.since and when < self.since:
                return False
            if self.until and when >= self.until:
                return False
        return True


def select_events(directory: Path, query: EventFilter, limit: int | None = None
                  ) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for entry in iter_entries(directory, query.from_seq):
        event = entry.event()
        if query.matches(event):
            out.append(event)
            if limit is not None and len(out) >= limit:
                break
    return out
