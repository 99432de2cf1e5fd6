"""Audit: every state change and security decision becomes one typed event, appended to a
tamper-evident log (hash chain + RFC 9162 Merkle tree + signed C2SP checkpoints)."""

from kyso.audit.events import AuditEvent, Layer, Outcome
from kyso.audit.log import AuditLog, AuditSink, MemoryAuditLog
from kyso.audit.pseudonym import Pseudonymizer
from kyso.audit.reader import iter_entries, read_events

__all__ = [
    "AuditEvent",
    "AuditLog",
    "AuditSink",
    "Layer",
    "MemoryAuditLog",
    "Outcome",
    "Pseudonymizer",
    "iter_entries",
    "read_events",
]
