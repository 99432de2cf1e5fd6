"""The audit event (schema ``vn-audit/1``). Events never carry secrets or raw ID numbers."""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from kyso.errors import AuditError

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


# Keys whose values must never be recorded, whatever the caller passes (camelCase keys are
# split first: accessToken, privateKey, clientSecret).
_SECRET_KEYS = re.compile(
    r"(^|[_-])(pass(word|phrase|wd)?|pwd|secret|[th]?otp|pin|private(_key)?|key_pem|token|"
    r"api_key|authorization|cookie|credentials?)([_-]|$)", re.I
)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
REDACTED = "[redacted]"
# A 12-digit run anywhere (also glued to letters, as in "cccd019099012345")…
_RAW_ID = re.compile(r"(?<![0-9])([0-9]{3})[0-9]{6}([0-9]{3})(?![0-9])")
# …except inside a hex token of 32+ characters (certificate serials and fingerprints) or a
# UUID (request ids, whose last group may be all digits).
_TOKEN = re.compile(r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}|[0-9A-Za-z]+")
_HEX_ID = re.compile(r"[0-9a-fA-F]{32,}")
_TWELVE = re.compile(r"[0-9]{12}")
# Masking changes a run of exactly 12 digits. Without a "-" (no UUID can cut a longer run into
# tokens) a token's digit runs are the string's: text without such a run stays as it is.
_EXACTLY_TWELVE = re.compile(r"(?<![0-9])[0-9]{12}(?![0-9])")


def _mask_token(match: re.Match[str]) -> str:
    token = match.group(0)
    if "-" in token or _HEX_ID.fullmatch(token):
        return token
    return _RAW_ID.sub(r"\1******\2", token)


@functools.lru_cache(maxsize=4096)  # the same few keys come back in every event
def secret_key(key: str) -> bool:
    return bool(_SECRET_KEYS.search(key) or _SECRET_KEYS.search(_CAMEL.sub("_", key)))


@functools.lru_cache(maxsize=4096)
def _key(name: str) -> tuple[str, bool]:
    """A details key as written (masked), and whether its value is a secret."""
    return _text(name), secret_key(name)


def _text(value: str) -> str:
    # Most text holds no run of exactly 12 digits: one C-level search settles it.
    if _EXACTLY_TWELVE.search(value) or ("-" in value and _TWELVE.search(value)):
        return _TOKEN.sub(_mask_token, value)
    return value


def scrub(value: Any, key: str = "") -> Any:
    """Remove secrets and mask 12-digit ID numbers anywhere inside an event's details:
    values under secret-named keys, ID numbers in text, keys and 12-digit integers; bytes are
    replaced by their length (key material is bytes)."""
    if key and secret_key(key):
        return REDACTED
    kind = type(value)
    # Exact built-in types first (the common cases, without isinstance or ABC checks); each
    # gives what the general branches below give for it.
    if kind is str:
        return _text(value)
    if kind is dict:
        out: dict[str, Any] = {}
        for k, v in value.items():
            masked, secret = _key(k if type(k) is str else str(k))
            out[masked] = REDACTED if secret else _text(v) if type(v) is str else scrub(v)
        return out
    if kind is int:
        return _text(str(value)) if 10**11 <= abs(value) < 10**12 else value
    if kind is bool or kind is float or value is None:
        return value
    if kind is list or kind is tuple:
        return [scrub(v) for v in value]
    if isinstance(value, Enum):
        return scrub(value.value)
    if isinstance(value, bool | float) or value is None:
        return value
    if isinstance(value, int):
        return _text(str(int(value))) if 10**11 <= abs(value) < 10**12 else int(value)
    if isinstance(value, str):
        return _text(str(value))
    if isinstance(value, Mapping):
        return {_text(str(k)): scrub(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [scrub(v) for v in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    return _text(str(value))


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

    def __post_init__(self) -> None:
        if self.time.tzinfo is None or self.time.utcoffset() is None:
            raise AuditError("an audit event's time must carry its time zone")

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
