"""How one event is stored: a log entry, one line of canonical JSON.

An entry is the event's JSON object with two fields in front: its sequence number and the
hex SHA-256 leaf hash of the entry before it (64 zeros for the first)::

    {"seq":41,"prev":"9f2c…","action":"CERT_CREATION","actor":"admin:an",…}

The rest of the object has sorted keys, no spaces, and UTF-8 text (JSON escapes every control
character, so an entry never contains a newline). The exact bytes of the line (without its
newline) are the RFC 9162 Merkle leaf; ``prev`` chains each entry to the one before, so a
verifier can name the first entry that was changed, removed, added or moved.

Because ``seq`` and ``prev`` always come first in the same shape, the verifier checks them with
one bytes comparison instead of parsing JSON; :func:`parse_entry` is the slow, complete reader.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from _json import make_encoder
from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import Any

from kyso.audit.events import SCHEMA, AuditEvent, Layer, Outcome, _text, scrub
from kyso.audit.merkle import leaf_hash
from kyso.errors import AuditError

GENESIS = "0" * 64
MAX_ENTRY_BYTES = 64 * 1024
_HEAD = re.compile(rb'\{"seq":(0|[1-9][0-9]{0,17}),"prev":"([0-9a-f]{64})",')


def encode_body(event: dict[str, Any]) -> bytes:
    """The event's canonical JSON object (sorted keys, no spaces, UTF-8)."""
    if "seq" in event or "prev" in event or not event:
        raise AuditError("an event must be a non-empty object without seq or prev fields")
    body = json.dumps(event, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    try:
        data = body.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: keep it, escaped, rather than lose the event
        data = json.dumps(event, ensure_ascii=True, sort_keys=True, separators=(",", ":")).encode()
    if len(data) > MAX_ENTRY_BYTES - 100:
        raise AuditError(f"audit event is too large ({len(data)} bytes; the limit is "
                         f"{MAX_ENTRY_BYTES - 100})")
    return data


def _unencodable(value: object) -> object:
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# json.dumps(..., ensure_ascii=False, sort_keys=True, separators=(",", ":")) builds this same C
# encoder on every call; built once, it is reused (no circular-reference markers: scrub()
# always returns a fresh tree).
_ENCODE = make_encoder(None, _unencodable, encode_basestring, None, ":", ",", True, False, True)
_UTC = dt.UTC
_SCHEMA_SOURCE = f',"schema":{encode_basestring(SCHEMA)},"source":'
_last_time: tuple[dt.datetime, str] = (dt.datetime.min.replace(tzinfo=_UTC), "")


def encode_event(event: AuditEvent) -> bytes:
    """``encode_body(event.to_dict())``, the same bytes, in about half the time: the fixed keys
    are laid out in their sorted order and only the details go through the JSON encoder.
    Events of unusual shape (fields of other types, a lone surrogate) take the general path."""
    action, source, request_id = event.action, event.source, event.request_id
    actor, obj, layer, outcome = event.actor, event.object, event.layer, event.outcome
    when = event.time
    if not (type(action) is str and type(source) is str and type(request_id) is str
            and type(actor) is str and type(obj) is str and type(layer) is Layer
            and type(outcome) is Outcome and type(when) is dt.datetime):
        return encode_body(event.to_dict())
    global _last_time
    last, iso = _last_time
    if when.tzinfo is not _UTC or when != last:  # the clock's UTC times, of one second each,
        iso = encode_basestring(when.astimezone(_UTC).isoformat())  # share their text
        if when.tzinfo is _UTC:
            _last_time = when, iso
    details = event.details
    enc = encode_basestring
    text = "".join((
        '{"action":', enc(action),
        ',"actor":', enc(_text(actor)),  # scrub() of a str
        ',"details":', "".join(_ENCODE(scrub(details if type(details) is dict else dict(details)), 0)),
        ',"layer":"', layer._value_,  # the members' values are plain ASCII words
        '","object":', enc(_text(obj)),
        ',"outcome":"', outcome._value_,
        '","request_id":', enc(request_id),
        _SCHEMA_SOURCE, enc(source),
        ',"time":', iso,
        "}",
    ))
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: the general path escapes it
        return encode_body(event.to_dict())
    if len(data) > MAX_ENTRY_BYTES - 100:
        raise AuditError(f"audit event is too large ({len(data)} bytes; the limit is "
                         f"{MAX_ENTRY_BYTES - 100})")
    return data


def join_entry(seq: int, prev: str, body: bytes) -> bytes:
    """The entry line: ``seq`` and ``prev`` in front of an encoded body (without newline)."""
    return b'{"seq":%d,"prev":"%s",' % (seq, prev.encode("ascii")) + body[1:]


def encode_entry(seq: int, prev: str, event: dict[str, Any]) -> bytes:
    """The canonical line for ``event`` at ``seq`` (without the newline)."""
    return join_entry(seq, prev, encode_body(event))


def entry_head(seq: int, prev: str) -> bytes:
    """The bytes every well-formed entry at ``seq`` after ``prev`` starts with."""
    return b'{"seq":%d,"prev":"%s",' % (seq, prev.encode("ascii"))


def peek(line: bytes) -> tuple[int, str] | None:
    """``(seq, prev)`` of a line that looks like an entry, else None (garbage)."""
    m = _HEAD.match(line)
    if m is None:
        return None
    return int(m.group(1)), m.group(2).decode("ascii")


@dataclass(frozen=True)
class Entry:
    seq: int
    prev: str
    line: bytes

    @property
    def leaf_hash(self) -> bytes:
        return leaf_hash(self.line)

    def event(self) -> dict[str, Any]:
        """The whole entry as a dict (seq and prev included)."""
        value = json.loads(self.line)
        if not isinstance(value, dict):
            raise AuditError(f"entry {self.seq} is not a JSON object")
        return value


def parse_entry(line: bytes) -> Entry:
    """A complete, checked reading of one line; raises AuditError naming what is wrong."""
    head = peek(line)
    if head is None:
        raise AuditError("not an audit entry (no seq/prev header)")
    try:
        value = json.loads(line)
    except (UnicodeDecodeError, ValueError):
        raise AuditError("not valid JSON") from None
    if not isinstance(value, dict):
        raise AuditError("not a JSON object")
    return Entry(head[0], head[1], line)
