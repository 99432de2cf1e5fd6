"""The JSON-lines audit sink and the scrubbing of event details."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
from pathlib import Path

import pytest

from kyso.audit import AuditEvent, JsonLinesAuditLog, Layer, MemoryAuditLog, Outcome
from kyso.audit.events import SCHEMA, scrub
from kyso.audit.pseudonym import Pseudonymizer
from kyso.errors import AuditError, ConfigError

T0 = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)
RAW_ID = "019099012345"


def event(action: str = "CERT_CREATION", **details: object) -> AuditEvent:
    return AuditEvent(time=T0, layer=Layer.PKI, action=action, outcome=Outcome.SUCCESS,
                      actor="admin:test", object="abc123", details=details)


@pytest.fixture
def log(tmp_path: Path) -> JsonLinesAuditLog:
    return JsonLinesAuditLog(tmp_path / "audit" / "audit.jsonl")


# --- the JSON-lines sink ----------------------------------------------------------------------

def test_each_event_is_one_json_line(log: JsonLinesAuditLog) -> None:
    log.record(event("CA_CREATION"))
    log.record(event("CERT_CREATION", profile="staff"))
    lines = log.path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["action"] == "CA_CREATION"
    assert second["details"] == {"profile": "staff"}
    assert log.path.read_bytes().endswith(b"\n")
    assert log.read() == [first, second]


def test_event_fields_follow_the_schema(log: JsonLinesAuditLog) -> None:
    log.record(AuditEvent(time=T0, layer=Layer.AUTHN, action="LOGIN", outcome=Outcome.FAILURE,
                          actor="citizen:psn:1", object="x", details={}, source="server",
                          request_id="req-1"))
    (data,) = log.read()
    assert data == {
        "schema": SCHEMA, "time": "2026-11-23T02:00:00+00:00", "layer": "authn",
        "action": "LOGIN", "outcome": "failure", "actor": "citizen:psn:1", "object": "x",
        "source": "server", "request_id": "req-1", "details": {},
    }


def test_event_time_is_written_in_utc(log: JsonLinesAuditLog) -> None:
    vietnam = dt.timezone(dt.timedelta(hours=7))
    log.record(AuditEvent(time=dt.datetime(2026, 11, 23, 9, 0, tzinfo=vietnam), layer=Layer.PKI,
                          action="X", outcome=Outcome.SUCCESS, actor="a"))
    assert log.read()[0]["time"] == "2026-11-23T02:00:00+00:00"


def test_vietnamese_text_is_written_as_utf8_not_escaped(log: JsonLinesAuditLog) -> None:
    log.record(event(common_name="Nguyễn Văn An"))
    raw = log.path.read_bytes()
    assert "Nguyễn Văn An".encode() in raw
    assert b"\\u" not in raw


def test_audit_file_is_created_0600_in_a_0700_directory(log: JsonLinesAuditLog) -> None:
    log.record(event())
    assert stat.S_IMODE(os.stat(log.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(log.path.parent).st_mode) == 0o700


def test_file_mode_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        sink = JsonLinesAuditLog(tmp_path / "open" / "audit.jsonl")
        sink.record(event())
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(sink.path).st_mode) == 0o600


def test_torn_last_line_is_not_merged_with_the_next_event(log: JsonLinesAuditLog) -> None:
    log.record(event("FIRST"))
    with log.path.open("ab") as fh:
        fh.write(b'{"schema": "vn-audit/1", "action": "TORN", "deta')  # crash mid-write
    log.record(event("AFTER"))
    lines = log.path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3
    assert json.loads(lines[0])["action"] == "FIRST"
    assert lines[1] == '{"schema": "vn-audit/1", "action": "TORN", "deta'
    assert json.loads(lines[2])["action"] == "AFTER"


def test_torn_line_at_the_start_of_the_file_is_kept_apart(log: JsonLinesAuditLog) -> None:
    log.path.parent.mkdir(parents=True)
    log.path.write_bytes(b"{")
    log.record(event("AFTER"))
    assert log.path.read_bytes().startswith(b"{\n{")
    assert json.loads(log.path.read_text(encoding="utf-8").splitlines()[1])["action"] == "AFTER"


def test_read_of_a_missing_log_is_empty(log: JsonLinesAuditLog) -> None:
    assert log.read() == []


def test_unwritable_log_raises_audit_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory", encoding="utf-8")
    with pytest.raises(AuditError, match="cannot write audit log"):
        JsonLinesAuditLog(blocker / "audit.jsonl").record(event())


def test_memory_log_keeps_events_in_order() -> None:
    sink = MemoryAuditLog()
    sink.record(event("A"))
    sink.record(event("B"))
    assert [e.action for e in sink.events] == ["A", "B"]


def test_raw_id_never_reaches_the_file(log: JsonLinesAuditLog) -> None:
    log.record(AuditEvent(time=T0, layer=Layer.PKI, action="CERT_CREATION",
                          outcome=Outcome.FAILURE, actor=f"citizen:{RAW_ID}",
                          object=f"CCCD:{RAW_ID}",
                          details={"reason": f"personal ID number {RAW_ID} is bad",
                                   "nested": {"ids": [RAW_ID, f"IDCVN-{RAW_ID}"]}}))
    text = log.path.read_text(encoding="utf-8")
    assert RAW_ID not in text
    assert "019******345" in text
    data = log.read()[0]
    assert data["actor"] == "citizen:019******345"
    assert data["object"] == "CCCD:019******345"


# --- scrub ------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (RAW_ID, "019******345"),
        (f"CCCD:{RAW_ID}", "CCCD:019******345"),
        (f"IDCVN-{RAW_ID}", "IDCVN-019******345"),
        (f"ids {RAW_ID} and 033301000123.", "ids 019******345 and 033******123."),
        (f"x{RAW_ID}y", "x019******345y"),
    ],
)
def test_scrub_masks_twelve_digit_ids(value: str, expected: str) -> None:
    assert scrub(value) == expected


@pytest.mark.parametrize(
    "value", ["01909901234", "0190990123456", "4600100155", "0100233488-001", "2026-11-23"]
)
def test_scrub_leaves_other_numbers_alone(value: str) -> None:
    assert scrub(value) == value


@pytest.mark.parametrize(
    "key",
    ["password", "passphrase", "ca_passphrase", "PASSWORD", "client_secret", "otp", "otp_code",
     "pin", "private_key", "key_pem", "access_token", "id_token", "pass"],
)
def test_scrub_redacts_values_under_secret_named_keys(key: str) -> None:
    out = scrub({key: "hunter2-very-secret", "profile": "staff"})
    assert out == {key: "[redacted]", "profile": "staff"}


def test_scrub_redacts_secret_keys_at_any_depth() -> None:
    out = scrub({"request": {"user": "an", "password": "x"},
                 "items": [{"token": "t", "n": 1}]})
    assert out == {"request": {"user": "an", "password": "[redacted]"},
                   "items": [{"token": "[redacted]", "n": 1}]}


def test_scrub_redacts_non_string_secrets_too() -> None:
    assert scrub({"pin": 1234, "private_key": b"\x00"}) == {"pin": "[redacted]",
                                                          "private_key": "[redacted]"}


def test_scrub_keeps_ordinary_keys() -> None:
    details = {"profile": "staff", "issuer": "staff", "serial": "abc", "crl_number": 3,
               "holder_hint": "019******345", "key_type": "ec-p256", "entries": 0}
    assert scrub(details) == details


def test_scrub_converts_datetimes_enums_and_tuples() -> None:
    vietnam = dt.timezone(dt.timedelta(hours=7))
    out = scrub({"when": dt.datetime(2026, 11, 23, 9, 0, tzinfo=vietnam),
                 "layer": Layer.PKI, "pair": ("a", RAW_ID)})
    assert out == {"when": "2026-11-23T02:00:00+00:00", "layer": "pki",
                   "pair": ["a", "019******345"]}


def test_event_details_are_scrubbed_in_to_dict() -> None:
    data = event(passphrase="s3cret-passphrase", reason=f"bad {RAW_ID}").to_dict()
    assert data["details"] == {"passphrase": "[redacted]", "reason": "bad 019******345"}
    assert "s3cret" not in json.dumps(data)


# --- pseudonyms -------------------------------------------------------------------------------

def test_pseudonym_is_stable_per_key_and_hides_the_id(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "pseudonym.key"
    first = Pseudonymizer.from_file(path)
    again = Pseudonymizer.from_file(path)
    assert first.pseudonym(RAW_ID) == again.pseudonym(RAW_ID)
    assert first.pseudonym(RAW_ID) != first.pseudonym("033301000123")
    assert first.pseudonym(RAW_ID).startswith("psn:")
    assert RAW_ID not in first.pseudonym(RAW_ID)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    other = Pseudonymizer.from_file(tmp_path / "other.key")
    assert other.pseudonym(RAW_ID) != first.pseudonym(RAW_ID)
    assert "key hidden" in repr(first)


def test_pseudonym_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pseudonym.key"
    path.write_bytes(b"k" * 32)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        Pseudonymizer.from_file(path)


def test_short_pseudonym_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="32 bytes"):
        Pseudonymizer(b"short")


def test_scrub_masks_ids_glued_to_letters_but_keeps_hex_serials_whole() -> None:
    from kyso.audit.events import scrub

    serial = "6c38f01812ff484000021600cec9eb332d0872dc"
    assert scrub(f"CSR UID cccd033301000123 for {serial}") == (
        f"CSR UID cccd033******123 for {serial}")
