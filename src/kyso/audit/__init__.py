"""Audit: every state change and security decision becomes one typed event.

Here: the event type, the sink interface and a JSON-lines sink. The tamper-evident Merkle log
plugs in behind the same :class:`AuditSink` interface.
"""

from kyso.audit.events import AuditEvent, Layer, Outcome
from kyso.audit.log import AuditSink, JsonLinesAuditLog, MemoryAuditLog
from kyso.audit.pseudonym import Pseudonymizer

__all__ = [
    "AuditEvent",
    "AuditSink",
    "JsonLinesAuditLog",
    "Layer",
    "MemoryAuditLog",
    "Outcome",
    "Pseudonymizer",
]
