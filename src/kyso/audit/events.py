"""The audit event (schema ``vn-audit/1``). Events never carry secrets or raw ID numbers."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

SCHEMA = "vn-audit/1"


class Layer(Enum):
    PKI = "pki"
    SIGNING = "signing"
    AUTHN = "authn"
    AUDIT = "audit"
    ADMIN = "admin"
    SERVER = "server"


class Outcome(Enum):
    SUCCESS = "success"
    FAILURE = "failure"


# Keys whose values must never be recorded, whatever the caller passes.
_SECRET_KEYS = re.compile(
    r"(^|[_-])(pass(word|phrase)?|secret|otp|pin|private(_key)?|key_pem|token)([_-]|$)", re.I
)
# A 12-digit run anywhere (also glued to letters, as in "cccd019099012345")…
_RAW_ID = re.compile(r"(?<![0-9])([0-9]{3})[0-9]{6}([0-9]{3})(?![0-9])")
# …except inside a hex token of 32+ characters: certificate serials and fingerprints.
_TOKEN = re.compile(r"[0-9A-Za-z]+")
_HEX_ID = re.compile(r"[0-9a-fA-F]{32,}")


def _mask_token(match: re.Match[str]) -> str:
    token = match.group(0)
    if _HEX_ID.fullmatch(token):
        return token
    return _RAW_ID.sub(r"\1******\2", token)


def scrub(value: Any, key: str = "") -> Any:
    """Remove secrets and mask 12-digit ID numbers anywhere inside an event's details."""
    if key and _SECRET_KEYS.search(key):
        return "[redacted]"
    if isinstance(value, str):
        return _TOKEN.sub(_mask_token, value)
    if isinstance(value, Mapping):
        return {str(k): scrub(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, Enum):
        return value.value
    return value


@dataclass(frozen=True)
class AuditEvent:
    time: dt.datetime
    layer: Layer
    action: str
    outcome: Outcome
    actor: str
    object: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)
    source: str = "cli"
    request_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "time": self.time.astimezone(dt.UTC).isoformat(),
            "layer": self.layer.value,
            "action": self.action,
            "outcome": self.outcome.value,
            "actor": scrub(self.actor),
            "object": scrub(self.object),
            "source": self.source,
            "request_id": self.request_id,
            "details": scrub(dict(self.details)),
        }
