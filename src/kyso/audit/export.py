"""Stored audit events → the formats SIEMs read: JSON lines, OCSF, RFC 5424 syslog.

Pure functions over one stored event (the dict of an entry: ``seq``, ``prev``, ``schema``,
``time``, ``layer``, ``action``, ``outcome``, ``actor``, ``object``, ``source``,
``request_id``, ``details``). The details were scrubbed when the event was recorded; nothing
here adds data. Lines are returned without their newline and never contain one.

**jsonl** — the entry's canonical JSON line, byte for byte what the log stores (``seq`` and
``prev`` first, then sorted keys, no spaces, UTF-8), so a third party can hash exported lines
as Merkle leaves and check them against a checkpoint. An event without ``seq``/``prev`` is
written as sorted compact JSON.

**ocsf** — one OCSF 1.4.0 event per line (sorted compact JSON). Every record carries
``class_uid``, ``category_uid``, ``activity_id``, ``type_uid`` (= class_uid × 100 +
activity_id), ``time`` (epoch milliseconds), ``severity_id``, ``status_id`` (1 success,
2 failure, 0 otherwise), ``metadata`` (version, product, ``uid`` = seq as text, ``sequence``,
``correlation_uid`` = request_id, ``event_code`` = the Keycloak/EJBCA action name),
``actor.user``, ``src_endpoint`` (``ip`` when the source is an IP address, else ``name``),
``message`` and ``unmapped`` (layer, object, prev, details). Severity: success →
1 Informational, failure → 3 Medium. Class by layer and action (base name, ``_ERROR`` dropped):

=========  ============================  ==============================================
layer      class (category)              activity
=========  ============================  ==============================================
authn      Authentication 3002 (3 IAM)   LOGIN, CLIENT_LOGIN, IDENTITY_PROVIDER_LOGIN,
                                         IMPERSONATE → 1 Logon; LOGOUT → 2 Logoff;
                                         CODE_TO_TOKEN, TOKEN_EXCHANGE → 3 Authentication
                                         Ticket; PERMISSION_TOKEN → 4 Service Ticket
                                         Request; REFRESH_TOKEN → 5 Service Ticket Renew;
                                         other → 99 Other. ``user`` = the actor.
authn      Account Change 3001 (3 IAM)   REGISTER → 1 Create; UPDATE_PASSWORD → 3 Password
                                         Change; RESET_PASSWORD, SEND_RESET_PASSWORD →
                                         4 Password Reset; DELETE_ACCOUNT → 6 Delete;
                                         USER_DISABLED_BY_*_LOCKOUT → 9 Lock; UPDATE_TOTP,
                                         UPDATE_CREDENTIAL → 10 MFA Factor Enable;
                                         REMOVE_TOTP, REMOVE_CREDENTIAL → 11 MFA Factor
                                         Disable; UPDATE_PROFILE, UPDATE_EMAIL,
                                         VERIFY_EMAIL → 99 Other.
pki        Entity Management 3004 (3)    CA_CREATION, CERT_REQUEST, CERT_CREATION,
                                         CRL_CREATION → 1 Create; CA_EDITING → 3 Update;
                                         CERT_REVOKED → 9 Disable; CERT_STATUSCHANGE →
                                         12 Suspend (to on_hold), 13 Resume (to valid),
                                         else 3 Update; CA_KEYACTIVATE → 10 Activate;
                                         CA_KEYDEACTIVATE → 11 Deactivate. ``entity`` =
                                         the object (type CA, Certificate or CRL).
admin      Entity Management 3004 (3)    by the verb in the action (below).
signing    API Activity 6003 (6 App)     by the verb; ``api.operation`` = the action,
                                         ``resources`` = the object (the document).
audit      Event Log Activity 1008 (1)   CLEAR 1, DELETE/PURGE 2, EXPORT 3, ARCHIVE 4,
                                         ROTATE 5, START 6, STOP 7; else 99 (for example
                                         AUDIT_TORN_TAIL).
server     Application Lifecycle 6002    START 3, STOP/SHUTDOWN 4, RESTART 5, UPDATE 8.
=========  ============================  ==============================================

Verbs for Entity Management and API Activity: CREATE/CREATION/ADD/ISSUE/SIGN/SIGNED/IMPORT →
1 Create, READ/VIEW/GET/LIST/VERIFY/VALIDATE → 2 Read, UPDATE/EDIT/EDITING/CHANGE/RENEW →
3 Update, DELETE/DELETION/REMOVE/PURGE → 4 Delete, else 99 Other. An unknown layer is exported
as API Activity.

**syslog** — RFC 5424: ``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [kyso@32473 …] BOM
MSG``. Facility: authn → 10 authpriv, audit → 13 log audit, others → 16 local0 (one selector
routes the CA, signing, admin and server events). Severity: success → 6 informational,
failure → 4 warning, anything else → 5 notice. TIMESTAMP is the event time in UTC with ``Z``
and microseconds when not zero (the log stores UTC; +07:00 is for people, not SIEMs). Header
fields keep printable US-ASCII only (others become ``_``), are cut to the RFC lengths
(HOSTNAME 255, APP-NAME 48, PROCID 128, MSGID 32) and are ``-`` when empty; PROCID is ``-``
(the exporter's pid would mean nothing) and MSGID is the action. The structured data element
``kyso@32473`` (32473 is the documentation enterprise number, the arc of our policy OIDs)
carries seq, layer, action, outcome, actor, object, source, request_id and details (compact
JSON); empty values are left out. PARAM-VALUEs escape ``"``, ``\\`` and ``]`` (§6.3.3). Syslog
is a presentation format, so characters that could split or disguise a line are replaced in
values and MSG: C0 controls and DEL become rsyslog's ``#ooo`` octal escapes (``#012`` for a
newline), other controls, line and paragraph separators, bidirectional overrides and lone
surrogates become U+FFFD. Values are never cut (send over TCP/TLS with octet counting).
The lossless export is jsonl.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from kyso import __version__
from kyso.audit.entry import encode_entry
from kyso.errors import AuditError, UsageError

FORMATS = ("jsonl", "ocsf", "syslog")
OCSF_VERSION = "1.4.0"
SD_ID = "kyso@32473"
PRODUCT = {"name": "kyso", "vendor_name": "kyso", "version": __version__}

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_HEX64 = re.compile(r"[0-9a-f]{64}")


# -- common -----------------------------------------------------------------------------------


def _text(event: Mapping[str, Any], key: str) -> str:
    value = event.get(key)
    return "" if value is None else str(value)


def _time(event: Mapping[str, Any]) -> dt.datetime:
    raw = event.get("time")
    try:
        when = dt.datetime.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise AuditError(f"event {event.get('seq', '?')}: time {raw!r} is not an ISO 8601 time with offset")
    return when.astimezone(dt.UTC)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


# -- jsonl ------------------------------------------------------------------------------------


def to_jsonl(event: Mapping[str, Any]) -> str:
    """The event's canonical JSON line (the stored entry's bytes when it has seq and prev)."""
    seq, prev = event.get("seq"), event.get("prev")
    rest = {k: v for k, v in event.items() if k not in ("seq", "prev")}
    if isinstance(seq, int) and not isinstance(seq, bool) and isinstance(prev, str) and rest \
            and _HEX64.fullmatch(prev):
        return encode_entry(seq, prev, rest).decode("utf-8")
    return _json(dict(event))


# -- OCSF -------------------------------------------------------------------------------------

_CATEGORIES = {1: "System Activity", 3: "Identity & Access Management", 6: "Application Activity"}
_CLASSES: dict[int, tuple[str, dict[int, str]]] = {
    3001: ("Account Change", {1: "Create", 2: "Enable", 3: "Password Change", 4: "Password Reset",
                              5: "Disable", 6: "Delete", 9: "Lock", 10: "MFA Factor Enable",
                              11: "MFA Factor Disable"}),
    3002: ("Authentication", {1: "Logon", 2: "Logoff", 3: "Authentication Ticket",
                              4: "Service Ticket Request", 5: "Service Ticket Renew", 6: "Preauth"}),
    3004: ("Entity Management", {1: "Create", 2: "Read", 3: "Update", 4: "Delete", 8: "Enable",
                                 9: "Disable", 10: "Activate", 11: "Deactivate", 12: "Suspend",
                                 13: "Resume"}),
    6002: ("Application Lifecycle", {3: "Start", 4: "Stop", 5: "Restart", 8: "Update"}),
    6003: ("API Activity", {1: "Create", 2: "Read", 3: "Update", 4: "Delete"}),
    1008: ("Event Log Activity", {1: "Clear", 2: "Delete", 3: "Export", 4: "Archive", 5: "Rotate",
                                  6: "Start", 7: "Stop"}),
}
_AUTHENTICATION = {
    "LOGIN": 1, "CLIENT_LOGIN": 1, "IDENTITY_PROVIDER_LOGIN": 1, "IMPERSONATE": 1, "LOGOUT": 2,
    "CODE_TO_TOKEN": 3, "TOKEN_EXCHANGE": 3, "PERMISSION_TOKEN": 4, "REFRESH_TOKEN": 5,
}
_ACCOUNT_CHANGE = {
    "REGISTER": 1, "UPDATE_PASSWORD": 3, "RESET_PASSWORD": 4, "SEND_RESET_PASSWORD": 4,
    "DELETE_ACCOUNT": 6, "USER_DISABLED_BY_PERMANENT_LOCKOUT": 9,
    "USER_DISABLED_BY_TEMPORARY_LOCKOUT": 9, "UPDATE_TOTP": 10, "UPDATE_CREDENTIAL": 10,
    "REMOVE_TOTP": 11, "REMOVE_CREDENTIAL": 11, "UPDATE_PROFILE": 99, "UPDATE_EMAIL": 99,
    "VERIFY_EMAIL": 99,
}
_PKI = {
    "CA_CREATION": 1, "CERT_REQUEST": 1, "CERT_CREATION": 1, "CRL_CREATION": 1, "CA_EDITING": 3,
    "CERT_REVOKED": 9, "CA_KEYACTIVATE": 10, "CA_KEYDEACTIVATE": 11,
}
_CRUD_VERBS = {
    1: {"CREATE", "CREATION", "CREATED", "ADD", "ISSUE", "ISSUED", "SIGN", "SIGNED", "IMPORT"},
    2: {"READ", "VIEW", "GET", "LIST", "VERIFY", "VERIFIED", "VALIDATE", "VALIDATION"},
    3: {"UPDATE", "EDIT", "EDITING", "CHANGE", "STATUSCHANGE", "RENEW", "RENEWED"},
    4: {"DELETE", "DELETION", "REMOVE", "REMOVED", "PURGE"},
}
_LOG_VERBS = {1: {"CLEAR"}, 2: {"DELETE", "PURGE"}, 3: {"EXPORT"}, 4: {"ARCHIVE"},
              5: {"ROTATE", "ROTATION"}, 6: {"START"}, 7: {"STOP"}}
_APP_VERBS = {3: {"START", "STARTED", "STARTUP"}, 4: {"STOP", "STOPPED", "SHUTDOWN"},
              5: {"RESTART"}, 8: {"UPDATE", "UPGRADE"}}


def _by_verb(action: str, verbs: Mapping[int, set[str]]) -> int:
    words = set(action.split("_"))
    return next((activity for activity, names in verbs.items() if words & names), 99)


def _entity_type(action: str) -> str:
    return {"CA": "CA", "CERT": "Certificate", "CRL": "CRL"}.get(action.split("_")[0], "Object")


def _classify(layer: str, action: str, details: Mapping[str, Any]) -> tuple[int, int]:
    """(class_uid, activity_id) for an event; see the table in the module docstring."""
    base = action.removesuffix("_ERROR")
    if layer == "authn":
        if base in _ACCOUNT_CHANGE:
            return 3001, _ACCOUNT_CHANGE[base]
        return 3002, _AUTHENTICATION.get(base, 99)
    if layer == "pki":
        if base == "CERT_STATUSCHANGE":
            return 3004, {"on_hold": 12, "valid": 13}.get(str(details.get("new_status")), 3)
        return 3004, _PKI.get(base) or _by_verb(base, _CRUD_VERBS)
    if layer == "admin":
        return 3004, _by_verb(base, _CRUD_VERBS)
    if layer == "audit":
        return 1008, _by_verb(base, _LOG_VERBS)
    if layer == "server":
        return 6002, _by_verb(base, _APP_VERBS)
    return 6003, _by_verb(base, _CRUD_VERBS)


def _user(actor: str) -> dict[str, Any]:
    """OCSF user for a kyso actor: ``admin:NAME`` (Admin), ``pseud:…``/``psn:…`` (User),
    ``kyso:…``/``system:…`` (System)."""
    prefix, _, rest = actor.partition(":")
    if prefix == "admin" and rest:
        return {"uid": actor, "name": rest, "type_id": 2, "type": "Admin"}
    if prefix in ("pseud", "psn"):
        return {"uid": actor, "type_id": 1, "type": "User"}
    if prefix in ("kyso", "system", "service"):
        return {"uid": actor, "type_id": 3, "type": "System"}
    return {"uid": actor, "type_id": 0, "type": "Unknown"} if actor else {"type_id": 0, "type": "Unknown"}


def _endpoint(source: str) -> dict[str, str]:
    try:
        return {"ip": str(ipaddress.ip_address(source))}
    except ValueError:
        return {"name": source or "unknown"}


def to_ocsf(event: Mapping[str, Any]) -> dict[str, Any]:
    """The OCSF record of one event (see the module docstring for the mapping)."""
    layer, action, outcome = _text(event, "layer"), _text(event, "action"), _text(event, "outcome")
    actor, obj, request_id = _text(event, "actor"), _text(event, "object"), _text(event, "request_id")
    details = event.get("details")
    details = details if isinstance(details, Mapping) else {}
    class_uid, activity_id = _classify(layer, action, details)
    class_name, activities = _CLASSES[class_uid]
    category_uid = class_uid // 1000
    activity_name = activities.get(activity_id, action or "Other")
    status_id, status = {"success": (1, "Success"), "failure": (2, "Failure")}.get(outcome, (0, "Unknown"))
    severity_id, severity = {1: (1, "Informational"), 2: (3, "Medium")}.get(status_id, (0, "Unknown"))
    seq = event.get("seq")
    metadata: dict[str, Any] = {"version": OCSF_VERSION, "product": dict(PRODUCT),
                                "event_code": action, "original_time": _text(event, "time")}
    if seq is not None:
        metadata["uid"] = str(seq)
        if isinstance(seq, int) and not isinstance(seq, bool):
            metadata["sequence"] = seq
    if request_id:
        metadata["correlation_uid"] = request_id
    if event.get("schema"):
        metadata["log_name"] = _text(event, "schema")
    user = _user(actor)
    record: dict[str, Any] = {
        "class_uid": class_uid, "class_name": class_name,
        "category_uid": category_uid, "category_name": _CATEGORIES[category_uid],
        "activity_id": activity_id, "activity_name": activity_name,
        "type_uid": class_uid * 100 + activity_id, "type_name": f"{class_name}: {activity_name}",
        "time": (_time(event) - _EPOCH) // dt.timedelta(milliseconds=1),
        "severity_id": severity_id, "severity": severity,
        "status_id": status_id, "status": status,
        "metadata": metadata,
        "actor": {"user": user},
        "src_endpoint": _endpoint(_text(event, "source")),
        "message": " ".join(filter(None, [action, outcome, actor and f"by {actor}",
                                          obj and f"on {obj}"])),
        "unmapped": {"layer": layer, "object": obj, "prev": _text(event, "prev"),
                     "details": dict(details)},
    }
    reason = details.get("reason")
    if status_id == 2 and isinstance(reason, str):
        record["status_detail"] = reason
    if class_uid in (3001, 3002):
        record["user"] = dict(user)
    elif class_uid == 3004:
        record["entity"] = {"uid": obj, "name": obj, "type": _entity_type(action)} if obj \
            else {"name": layer or "kyso", "type": "Object"}
    elif class_uid == 6003:
        record["api"] = {"operation": action, "service": {"name": f"kyso {layer}".strip()}}
        if obj:
            record["resources"] = [{"uid": obj, "name": obj}]
    elif class_uid == 6002:
        record["app"] = dict(PRODUCT)
    elif class_uid == 1008:
        record["log_name"] = "kyso audit log"
        record["log_provider"] = "kyso"
    return record


def ocsf_line(event: Mapping[str, Any]) -> str:
    return _json(to_ocsf(event))


# -- RFC 5424 syslog --------------------------------------------------------------------------

FACILITIES = {"authn": 10, "audit": 13}  # authpriv, log audit; everything else local0
DEFAULT_FACILITY = 16
_SEVERITIES = {"success": 6, "failure": 4}  # informational, warning; else notice (5)
_BIDI = {*range(0x202A, 0x202F), *range(0x2066, 0x206A)}


def _safe_char(ch: str) -> str:
    """A character that cannot end or disguise a line: C0 and DEL as rsyslog's ``#ooo``,
    other controls, U+2028/U+2029, bidi overrides and lone surrogates as U+FFFD."""
    code = ord(ch)
    if code < 0x20 or code == 0x7F:
        return f"#{code:03o}"
    if 0x80 <= code <= 0x9F or code in (0x2028, 0x2029) or code in _BIDI or 0xD800 <= code <= 0xDFFF:
        return "\ufffd"
    return ch


def _clean(text: str) -> str:
    return "".join(_safe_char(ch) for ch in text)


def param_value(text: str) -> str:
    """RFC 5424 §6.3.3 PARAM-VALUE: ``"``, ``\\`` and ``]`` escaped, line breakers replaced."""
    return "".join("\\" + ch if ch in '"\\]' else _safe_char(ch) for ch in text)


def header_field(text: str, limit: int) -> str:
    """A header field: printable US-ASCII (others → ``_``), at most ``limit`` characters, and
    the NILVALUE ``-`` when empty."""
    value = "".join(ch if 33 <= ord(ch) <= 126 else "_" for ch in text)[:limit]
    return value or "-"


def _timestamp(when: dt.datetime) -> str:
    spec = "microseconds" if when.microsecond else "seconds"
    return when.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def to_syslog(event: Mapping[str, Any], *, hostname: str, app_name: str = "kyso") -> str:
    """One RFC 5424 line for the event (see the module docstring for the choices)."""
    layer, action, outcome = _text(event, "layer"), _text(event, "action"), _text(event, "outcome")
    actor, obj = _text(event, "actor"), _text(event, "object")
    pri = FACILITIES.get(layer, DEFAULT_FACILITY) * 8 + _SEVERITIES.get(outcome, 5)
    header = " ".join([
        f"<{pri}>1", _timestamp(_time(event)), header_field(hostname, 255),
        header_field(app_name, 48), "-", header_field(action, 32),
    ])
    details = event.get("details")
    params = [
        ("seq", _text(event, "seq")), ("layer", layer), ("action", action), ("outcome", outcome),
        ("actor", actor), ("object", obj), ("source", _text(event, "source")),
        ("request_id", _text(event, "request_id")),
        ("details", _json(details) if details else ""),
    ]
    sd = "[" + SD_ID + "".join(f' {k}="{param_value(v)}"' for k, v in params if v) + "]"
    summary = " ".join(filter(None, [layer, action, outcome, actor and f"by {actor}",
                                     obj and f"on {obj}"]))
    return f"{header} {sd} \ufeff{_clean(summary)}"


# -- the CLI entry ----------------------------------------------------------------------------


def export_lines(
    events: Iterable[Mapping[str, Any]], fmt: str, *, hostname: str, app_name: str = "kyso"
) -> Iterator[str]:
    """The lines of ``events`` in ``fmt`` (one of :data:`FORMATS`), without newlines. The
    format is checked at once; events are converted as they are read."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "jsonl":
        return (to_jsonl(e) for e in events)
    if fmt == "ocsf":
        return (ocsf_line(e) for e in events)
    return (to_syslog(e, hostname=hostname, app_name=app_name) for e in events)
