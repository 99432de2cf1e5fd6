"""Export of stored audit events as JSON lines, OCSF and RFC 5424 syslog: every syslog line is
checked by a strict parser of the RFC 5424 ABNF, hostile values included; OCSF records carry
the required, typed fields; jsonl lines are the stored entries."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kyso.audit.entry import encode_entry
from kyso.audit.export import (
    FORMATS,
    OCSF_VERSION,
    SD_ID,
    export_lines,
    header_field,
    ocsf_line,
    param_value,
    to_jsonl,
    to_ocsf,
    to_syslog,
)
from kyso.errors import AuditError, UsageError

PREV = "9f" * 32


def _event(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "seq": 41, "prev": PREV, "schema": "vn-audit/1", "time": "2026-11-23T02:00:00+00:00",
        "layer": "authn", "action": "LOGIN", "outcome": "success", "actor": "pseud:ab12cd34",
        "object": "", "source": "203.0.113.7", "request_id": "8d0c5f0e-1b7e-4c3a-9a53-2f1e7f0d9b11",
        "details": {"acr": "2", "client": "dichvucong"},
    }
    event.update(changes)
    return event


# -- a strict RFC 5424 parser -----------------------------------------------------------------

_PRINTUS = r"[\x21-\x7e]"
_SD_NAME = r'[\x21\x23-\x3c\x3e-\x5c\x5e-\x7e]{1,32}'  # PRINTUSASCII except = SP ] "
_PARAM_VALUE = r'(?:[^"\\\]]|\\["\\\]])*'  # an escape is only ever \" \\ or \]
_SD_PARAM = rf'({_SD_NAME})="({_PARAM_VALUE})"'
_SD_ELEMENT = rf'\[{_SD_NAME}(?: {_SD_NAME}="{_PARAM_VALUE}")*\]'
_TIMESTAMP = r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2}))"
_LINE = re.compile(
    rf"<(\d{{1,3}})>1 (?:-|{_TIMESTAMP}) (-|{_PRINTUS}{{1,255}}) (-|{_PRINTUS}{{1,48}}) "
    rf"(-|{_PRINTUS}{{1,128}}) (-|{_PRINTUS}{{1,32}}) (-|(?:{_SD_ELEMENT})+)(?: (.*))?"
)
# Everything that str.splitlines() or a terminal would treat as a line break or disguise.
_BREAKERS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def parse_syslog(line: str) -> dict[str, Any]:
    """Parse one line strictly by the RFC 5424 ABNF; raise AssertionError when it is not one."""
    assert _BREAKERS.search(line) is None, f"line contains a control or line-breaking character: {line!r}"
    assert line.splitlines() == [line]
    line.encode("utf-8")  # valid UTF-8, no lone surrogates
    m = _LINE.fullmatch(line)
    assert m is not None, f"not an RFC 5424 line: {line!r}"
    pri, ts, host, app, procid, msgid, sd, msg = m.groups()
    assert 0 <= int(pri) <= 191
    assert str(int(pri)) == pri  # no leading zeros
    if ts:
        dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))  # a real date and time
    params: dict[str, str] = {}
    element = sd[1 : sd.index(" ")] if " " in sd else sd.strip("[]")
    for name, value in re.findall(_SD_PARAM, sd):
        params[name] = re.sub(r'\\(["\\\]])', r"\1", value)
    if msg is not None:
        assert msg.startswith("\ufeff"), "MSG is UTF-8 and must start with a BOM"
    return {"pri": int(pri), "timestamp": ts, "hostname": host, "app": app, "procid": procid,
            "msgid": msgid, "sd_id": element, "params": params, "msg": msg}


# -- syslog -----------------------------------------------------------------------------------


def test_a_login_becomes_an_authpriv_informational_line_with_structured_data() -> None:
    line = to_syslog(_event(), hostname="dichvucong.thainguyen.gov.vn")
    p = parse_syslog(line)
    assert p["pri"] == 10 * 8 + 6
    assert p["timestamp"] == "2026-11-23T02:00:00Z"
    assert (p["hostname"], p["app"], p["procid"], p["msgid"]) == (
        "dichvucong.thainguyen.gov.vn", "kyso", "-", "LOGIN")
    assert p["sd_id"] == SD_ID
    assert p["params"]["seq"] == "41"
    assert p["params"]["layer"] == "authn"
    assert p["params"]["outcome"] == "success"
    assert p["params"]["actor"] == "pseud:ab12cd34"
    assert p["params"]["request_id"] == "8d0c5f0e-1b7e-4c3a-9a53-2f1e7f0d9b11"
    assert json.loads(p["params"]["details"]) == {"acr": "2", "client": "dichvucong"}
    assert "object" not in p["params"]  # empty values are left out


@pytest.mark.parametrize(
    ("layer", "outcome", "pri"),
    [("authn", "failure", 84), ("audit", "failure", 108), ("audit", "success", 110),
     ("pki", "success", 134), ("signing", "failure", 132), ("server", "other", 133)],
)
def test_facility_follows_the_layer_and_severity_the_outcome(layer: str, outcome: str, pri: int) -> None:
    assert parse_syslog(to_syslog(_event(layer=layer, outcome=outcome), hostname="h"))["pri"] == pri


def test_the_timestamp_is_utc_with_z_and_keeps_microseconds() -> None:
    line = to_syslog(_event(time="2026-11-23T09:00:00.012300+07:00"), hostname="h")
    assert parse_syslog(line)["timestamp"] == "2026-11-23T02:00:00.012300Z"


def test_quotes_backslashes_and_brackets_are_escaped_and_read_back_unchanged() -> None:
    hostile = 'Nguyễn "Văn" An \\ [x] ]"] \\"'
    p = parse_syslog(to_syslog(_event(actor=hostile, object=hostile), hostname="h"))
    assert p["params"]["actor"] == hostile
    assert p["params"]["object"] == hostile


def test_a_newline_in_any_value_never_splits_the_line() -> None:
    evil = "a\nb\r\nc\x00d\x1be[31m\x85f\u2028g\u2029h\u202eI\x7f"
    event = _event(actor=evil, object=evil, source=evil, request_id=evil, action="LOGIN\nX",
                   details={"reason\n": evil})
    line = to_syslog(event, hostname="host\nname", app_name="ky\nso")
    p = parse_syslog(line)
    assert p["params"]["actor"].startswith("a#012b#015#012c#000d#033e[31m\ufffdf\ufffdg")
    assert p["hostname"] == "host_name"
    assert p["app"] == "ky_so"
    assert p["msgid"] == "LOGIN_X"


def test_header_fields_are_cut_to_their_rfc_lengths_and_nil_when_empty() -> None:
    long = "x" * 300
    p = parse_syslog(to_syslog(_event(action="A" * 40), hostname=long, app_name=long))
    assert len(p["hostname"]) == 255
    assert len(p["app"]) == 48
    assert len(p["msgid"]) == 32
    assert parse_syslog(to_syslog(_event(action=""), hostname="", app_name=""))["hostname"] == "-"
    assert header_field(" \t", 10) == "__"
    assert header_field("", 10) == "-"


def test_vietnamese_text_is_kept_as_utf8_after_the_bom() -> None:
    line = to_syslog(_event(actor="admin:Trần Thị Bình", object="Ủy ban nhân dân xã Phú Đình"),
                     hostname="h")
    p = parse_syslog(line)
    assert p["params"]["object"] == "Ủy ban nhân dân xã Phú Đình"
    assert "Trần Thị Bình" in p["msg"]
    assert line.encode("utf-8").count(b"\xef\xbb\xbf") == 1


def test_a_very_long_value_is_kept_whole() -> None:
    value = "Đ" * 100_000
    p = parse_syslog(to_syslog(_event(object=value), hostname="h"))
    assert p["params"]["object"] == value


def test_a_lone_surrogate_does_not_break_the_utf8_line() -> None:
    parse_syslog(to_syslog(_event(actor="x\ud800y"), hostname="h"))


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet=st.characters(), max_size=60),
    st.text(alphabet=st.characters(), max_size=60),
    st.text(max_size=40),
)
def test_any_values_give_a_strict_rfc5424_line(actor: str, obj: str, host: str) -> None:
    p = parse_syslog(to_syslog(_event(actor=actor, object=obj, details={obj: actor}), hostname=host))
    if actor and not _BREAKERS.search(actor):
        assert p["params"]["actor"] == actor


@given(st.text(alphabet=st.characters(blacklist_categories=["Cc", "Cs", "Zl", "Zp"])))
def test_param_escaping_round_trips_printable_text(text: str) -> None:
    text = _BREAKERS.sub("", text)
    escaped = param_value(text)
    assert re.fullmatch(_PARAM_VALUE, escaped)
    assert re.sub(r'\\(["\\\]])', r"\1", escaped) == text


# -- OCSF -------------------------------------------------------------------------------------

_REQUIRED_INT = ("class_uid", "category_uid", "activity_id", "type_uid", "time", "severity_id",
                 "status_id")


def _check_ocsf(record: dict[str, Any]) -> None:
    for key in _REQUIRED_INT:
        assert type(record[key]) is int, key
    assert record["type_uid"] == record["class_uid"] * 100 + record["activity_id"]
    assert record["category_uid"] == record["class_uid"] // 1000
    assert record["metadata"]["version"] == OCSF_VERSION
    assert record["metadata"]["product"]["name"] == "kyso"
    assert isinstance(record["metadata"]["product"]["vendor_name"], str)
    assert record["severity_id"] in (0, 1, 2, 3, 4, 5, 6, 99)
    assert record["status_id"] in (0, 1, 2, 99)
    assert isinstance(record["actor"]["user"], dict)
    assert record["src_endpoint"]


@pytest.mark.parametrize(
    ("action", "outcome", "activity", "status"),
    [("LOGIN", "success", 1, 1), ("LOGIN_ERROR", "failure", 1, 2), ("LOGOUT", "success", 2, 1),
     ("CODE_TO_TOKEN", "success", 3, 1), ("PERMISSION_TOKEN", "success", 4, 1),
     ("REFRESH_TOKEN_ERROR", "failure", 5, 2), ("USER_INFO_REQUEST", "success", 99, 1)],
)
def test_keycloak_login_events_are_ocsf_authentication(
    action: str, outcome: str, activity: int, status: int
) -> None:
    r = to_ocsf(_event(action=action, outcome=outcome))
    _check_ocsf(r)
    assert (r["class_uid"], r["category_uid"]) == (3002, 3)
    assert (r["activity_id"], r["status_id"]) == (activity, status)
    assert r["severity_id"] == (1 if status == 1 else 3)
    assert r["user"]["uid"] == "pseud:ab12cd34"
    assert r["metadata"]["event_code"] == action
    if activity == 99:
        assert r["activity_name"] == action


def test_an_ocsf_record_carries_time_in_ms_sequence_correlation_and_source_ip() -> None:
    r = to_ocsf(_event(time="2026-11-23T09:00:00.250+07:00"))
    assert r["time"] == int(dt.datetime(2026, 11, 23, 2, 0, 0, 250000, tzinfo=dt.UTC).timestamp() * 1000)
    assert r["metadata"]["uid"] == "41"
    assert r["metadata"]["sequence"] == 41
    assert r["metadata"]["correlation_uid"] == "8d0c5f0e-1b7e-4c3a-9a53-2f1e7f0d9b11"
    assert r["src_endpoint"] == {"ip": "203.0.113.7"}
    assert r["unmapped"]["details"] == {"acr": "2", "client": "dichvucong"}
    assert to_ocsf(_event(source="2001:db8::1"))["src_endpoint"] == {"ip": "2001:db8::1"}
    assert to_ocsf(_event(source="cli"))["src_endpoint"] == {"name": "cli"}


@pytest.mark.parametrize(
    ("layer", "action", "details", "class_uid", "activity"),
    [("authn", "UPDATE_PASSWORD", {}, 3001, 3), ("authn", "USER_DISABLED_BY_TEMPORARY_LOCKOUT", {}, 3001, 9),
     ("authn", "UPDATE_TOTP", {}, 3001, 10), ("pki", "CERT_CREATION", {}, 3004, 1),
     ("pki", "CERT_REVOKED", {}, 3004, 9), ("pki", "CRL_CREATION", {}, 3004, 1),
     ("pki", "CA_CREATION", {}, 3004, 1), ("pki", "CA_KEYACTIVATE", {}, 3004, 10),
     ("pki", "CERT_STATUSCHANGE", {"new_status": "on_hold"}, 3004, 12),
     ("pki", "CERT_STATUSCHANGE", {"new_status": "valid"}, 3004, 13),
     ("admin", "USER_DELETE", {}, 3004, 4), ("signing", "DOCUMENT_SIGNED", {}, 6003, 1),
     ("signing", "SIGNATURE_VERIFY", {}, 6003, 2), ("audit", "AUDIT_TORN_TAIL", {}, 1008, 99),
     ("audit", "SEGMENT_ROTATE", {}, 1008, 5), ("server", "SERVER_START", {}, 6002, 3),
     ("somewhere", "THING", {}, 6003, 99)],
)
def test_other_events_get_a_fitting_ocsf_class(
    layer: str, action: str, details: dict[str, Any], class_uid: int, activity: int
) -> None:
    r = to_ocsf(_event(layer=layer, action=action, details=details, object="serial:7A3F01",
                       actor="admin:alice", source="cli"))
    _check_ocsf(r)
    assert (r["class_uid"], r["activity_id"]) == (class_uid, activity)
    assert r["actor"]["user"] == {"uid": "admin:alice", "name": "alice", "type_id": 2, "type": "Admin"}
    if class_uid == 3004:
        assert r["entity"]["uid"] == "serial:7A3F01"
    if class_uid == 6003:
        assert r["api"]["operation"] == action
    if class_uid in (3001, 3002):
        assert r["user"]["uid"] == "admin:alice"


def test_an_ocsf_line_is_compact_sorted_json_and_failures_carry_the_reason() -> None:
    line = ocsf_line(_event(action="LOGIN_ERROR", outcome="failure", details={"reason": "sai mật khẩu"}))
    assert "\n" not in line
    record = json.loads(line)
    assert line == json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    assert record["status_detail"] == "sai mật khẩu"


def test_an_event_without_a_usable_time_is_refused_with_its_seq() -> None:
    for bad in (None, "yesterday", "2026-11-23T02:00:00"):
        with pytest.raises(AuditError, match="event 41"):
            to_ocsf(_event(time=bad))
        with pytest.raises(AuditError, match="event 41"):
            to_syslog(_event(time=bad), hostname="h")


# -- jsonl and the entry point ----------------------------------------------------------------


def test_a_jsonl_line_is_the_stored_entry_and_round_trips() -> None:
    event = _event(actor="admin:Trần Thị Bình", details={"note": "dòng 1\ndòng 2"})
    line = to_jsonl(event)
    rest = {k: v for k, v in event.items() if k not in ("seq", "prev")}
    assert line.encode("utf-8") == encode_entry(41, PREV, rest)
    assert "\n" not in line
    assert "Trần Thị Bình" in line
    assert json.loads(line) == event


def test_an_event_without_seq_is_written_as_sorted_compact_json() -> None:
    event = {"b": 1, "a": "ư"}
    assert to_jsonl(event) == '{"a":"ư","b":1}'


def test_export_lines_gives_one_line_per_event_in_each_format() -> None:
    events = [_event(seq=i, action=a) for i, a in enumerate(["LOGIN", "LOGOUT"])]
    assert FORMATS == ("jsonl", "ocsf", "syslog")
    for fmt in FORMATS:
        lines = list(export_lines(events, fmt, hostname="h"))
        assert len(lines) == 2
        assert all("\n" not in line for line in lines)
    assert [json.loads(x)["seq"] for x in export_lines(events, "jsonl", hostname="h")] == [0, 1]
    syslog = export_lines(events, "syslog", hostname="h")
    assert [parse_syslog(x)["params"]["seq"] for x in syslog] == ["0", "1"]


def test_an_unknown_format_is_refused_before_any_event_is_read() -> None:
    def never() -> Any:
        raise AssertionError("read")
        yield  # pragma: no cover

    with pytest.raises(UsageError, match="jsonl, ocsf, syslog"):
        export_lines(never(), "cef", hostname="h")
