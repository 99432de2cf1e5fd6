"""Retention: purge old sealed segments while keeping the tree provable.

A purge removes whole sealed segments older than the retention period, only after the log
verified completely and a signed checkpoint covers everything removed. Before any file is
deleted, ``base.json`` durably records the tree state at the cut — the hashes of the perfect
subtrees left of it and the last removed entry's hash — plus the covering checkpoint, so every
later entry still chains, every later root is still computed, and every later entry and
checkpoint can still be proved. The purge itself is recorded as an ``AUDIT_PURGE`` event.

The retention period is the configured ``[audit] retention_days`` but never less than the
security level's minimum (level 3: three months).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kyso.audit.events import Layer, Outcome
from kyso.audit.log import VN, AuditLog
from kyso.audit.merkle import Frontier, leaf_hash
from kyso.audit.segments import (
    Layout,
    Segment,
    TreeState,
    iter_lines,
    list_segments,
    read_bytes,
    read_state,
    write_state,
)
from kyso.errors import AuditError

if TYPE_CHECKING:
    from kyso.context import Kyso

# Minimum log retention per security level (domain brief §4): L2 one month, L3 three months
# centralised, L4 six months, L5 twelve months.
# Login IP and time must be kept 90 days at every level, so no level keeps less.
LEVEL_MIN_DAYS = {1: 90, 2: 90, 3: 92, 4: 183, 5: 366}


def retention_days(kyso: Kyso) -> int:
    minimum = LEVEL_MIN_DAYS[kyso.settings.security.level]
    return max(kyso.settings.audit.retention_days or minimum, minimum)


@dataclass(frozen=True)
class PurgePlan:
    cutoff: dt.date  # segments whose day is before this are old enough
    segments: tuple[Segment, ...]
    cut: int  # first seq kept

    def to_dict(self) -> dict[str, Any]:
        return {"cutoff": self.cutoff.isoformat(), "cut": self.cut,
                "segments": [s.name for s in self.segments]}


def plan_purge(kyso: Kyso, days: int | None = None) -> PurgePlan:
    keep = retention_days(kyso) if days is None else days
    minimum = LEVEL_MIN_DAYS[kyso.settings.security.level]
    if keep < minimum:
        raise AuditError(f"level {kyso.settings.security.level} keeps audit logs at least "
                         f"{minimum} days; {keep} is too short")
    cutoff = (kyso.now().astimezone(VN) - dt.timedelta(days=keep)).date()
    segments, _ = list_segments(Layout(kyso.settings.audit_dir))
    old: list[Segment] = []
    for i, segment in enumerate(segments[:-1]):  # the last segment is never purged
        # A segment's entries are no newer than the day the next segment starts on.
        ends = dt.datetime.strptime(segments[i + 1].day, "%Y%m%d").date()
        if ends > cutoff:
            break
        old.append(segment)
    cut = segments[len(old)].first if old else 0
    return PurgePlan(cutoff, tuple(old), cut)


def _state_at(layout: Layout, segments: tuple[Segment, ...], cut: int) -> TreeState:
    base = read_state(layout.base, "purge record") or TreeState(0, "0" * 64, ())
    frontier = Frontier(base.size, list(base.frontier))
    last = base.last_hash
    for segment in segments:
        if segment.first < base.size:
            continue
        for line in iter_lines(read_bytes(segment.path)):
            if line.complete:
                h = leaf_hash(line.data)
                frontier.append(h)
                last = h.hex()
    if frontier.size != cut:
        raise AuditError(f"the segments to purge hold {frontier.size} entries, not {cut}")
    return TreeState(cut, last, tuple(frontier.hashes))


def purge(kyso: Kyso, plan: PurgePlan) -> TreeState | None:
    """Carry out ``plan``; None when there is nothing to purge."""
    from kyso.audit.signer import verify_with_store

    if not plan.segments:
        return None
    layout = Layout(kyso.settings.audit_dir)
    report = verify_with_store(kyso)
    if not report.ok:
        raise AuditError("the audit log does not verify; nothing is purged (run `kyso audit "
                         "verify`)")
    notes = sorted(layout.checkpoints.glob("*.note")) if layout.checkpoints.is_dir() else []
    covering = [p for p in notes if int(p.stem) >= plan.cut]
    if not covering:
        raise AuditError(f"no signed checkpoint covers the entries to purge (up to seq "
                         f"{plan.cut - 1}); run `kyso audit checkpoint` first")
    state = _state_at(layout, plan.segments, plan.cut)
    record = state.to_dict()
    record["purged"] = [{"segment": s.name, "sha256": hashlib.sha256(read_bytes(s.path))
                         .hexdigest()} for s in plan.segments]
    record["checkpoint"] = read_bytes(covering[0]).decode("utf-8")
    record["time"] = kyso.now().astimezone(dt.UTC).isoformat()
    log = AuditLog(layout.root, kyso.settings.audit, kyso.clock)
    try:
        with log.locked():
            write_state(layout.base, record, durable=True)  # first: a crash keeps a sound cut
            for segment in plan.segments:
                os.unlink(segment.path)
    finally:
        log.close()
    kyso.record(Layer.AUDIT, "AUDIT_PURGE", Outcome.SUCCESS, object=f"before-seq:{plan.cut}",
                segments=[f"{s.first}-{s.day}" for s in plan.segments], cut=plan.cut,
                cutoff=plan.cutoff.isoformat())
    return state
