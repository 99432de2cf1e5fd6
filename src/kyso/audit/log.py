"""Audit sinks. :class:`JsonLinesAuditLog` appends one JSON line per event, under an exclusive
file lock, and fsyncs before returning, so concurrent kyso processes never interleave lines
and a returned ``record`` is durable."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Protocol

from kyso.audit.events import AuditEvent
from kyso.errors import AuditError


class AuditSink(Protocol):
    def record(self, event: AuditEvent) -> None: ...

    def record_many(self, events: list[AuditEvent]) -> None:
        """Several events, durable together (one write and one fsync for a batch)."""
        ...


class JsonLinesAuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def record(self, event: AuditEvent) -> None:
        self.record_many([event])

    def record_many(self, events: list[AuditEvent]) -> None:
        if not events:
            return
        data = "".join(
            json.dumps(e.to_dict(), ensure_ascii=False, sort_keys=True) + "\n" for e in events
        ).encode("utf-8")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                size = os.fstat(fd).st_size
                if size and _last_byte(fd, size) != b"\n":
                    data = b"\n" + data  # a torn line before us stays visible, never merged
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise AuditError(f"cannot write audit log {self.path}: {exc.strerror}") from None

    def read(self) -> list[dict[str, object]]:
        if not self.path.exists():
            return []
        events = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                events.append(json.loads(line))
        return events


def _last_byte(fd: int, size: int) -> bytes:
    return os.pread(fd, 1, size - 1)


class MemoryAuditLog:
    """Keeps events in memory; for tests and library users who route events themselves."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def record(self, event: AuditEvent) -> None:
        self.events.append(event)

    def record_many(self, events: list[AuditEvent]) -> None:
        self.events.extend(events)
