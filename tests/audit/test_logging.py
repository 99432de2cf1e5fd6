"""The structlog configuration: secrets never reach the output, ID numbers are masked or
pseudonymised, tracebacks carry no local variables, times are UTC, context variables arrive,
and configuring twice changes nothing."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from kyso.audit.logging import REDACTED, configure_logging
from kyso.audit.pseudonym import Pseudonymizer
from kyso.errors import ConfigError

ID = "019099012345"
SECRETS = {
    "password": "Mật-khẩu-bí-mật-1",
    "otp": "482913",
    "private_key": "-----BEGIN PRIVATE KEY-----MIIEvQ",
    "token": "eyJhbGciOiJSUzI1NiJ9.payload.sig",
    "access_token": "ya29.a0AfH6SM",
    "passphrase": "Thai-Nguyen-CA-2026!",
    "pin": "4711",
    "client_secret": "s3cr3t-client",
}


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def _untimed(stream: io.StringIO) -> str:
    """The output without its timestamps, whose digits may contain a short secret by chance
    (``…01:29:01.224711Z`` holds the PIN ``4711``)."""
    return re.sub(r"\d{4}-\d\d-\d\dT[0-9:.]+(Z|[+-]\d\d:\d\d)", "<time>", stream.getvalue())


def _log(**kwargs: Any) -> tuple[io.StringIO, Any]:
    stream = io.StringIO()
    configure_logging(stream=stream, **kwargs)
    return stream, structlog.get_logger("test")


def test_secret_fields_never_appear_in_json_output() -> None:
    stream, log = _log()
    log.info("login", **SECRETS, nested={"login": {"password": "nested-pw"}, "pins": ["x"]})
    out = _untimed(stream)
    for value in [*SECRETS.values(), "nested-pw"]:
        assert value not in out
    (line,) = _lines(stream)
    assert line["password"] == REDACTED
    assert line["nested"]["login"]["password"] == REDACTED


def test_secret_fields_never_appear_in_console_output() -> None:
    stream, log = _log(json=False)
    log.warning("login failed", **SECRETS)
    out = _untimed(stream)
    assert "login failed" in out
    for value in SECRETS.values():
        assert value not in out


def test_a_raw_id_number_in_a_message_or_value_is_masked() -> None:
    stream, log = _log()
    log.info(f"lookup of {ID} failed", holder=f"cccd{ID}", note=[f"id {ID}"], code=ID)
    out = stream.getvalue()
    assert ID not in out
    (line,) = _lines(stream)
    assert line["event"] == "lookup of 019******345 failed"
    assert line["code"] == "019******345"


def test_an_id_key_gets_the_masked_hint_and_the_keyed_pseudonym() -> None:
    pseudonyms = Pseudonymizer(b"k" * 32)
    stream, log = _log(pseudonymizer=pseudonyms)
    log.info("enrolled", citizen_id=ID, person={"personal_id": f" {ID} "}, cmnd="123456789")
    out = stream.getvalue()
    assert ID not in out
    assert "123456789" not in out
    (line,) = _lines(stream)
    assert line["citizen_id"] == {"pseudonym": pseudonyms.pseudonym(ID), "hint": "019******345"}
    assert line["person"]["personal_id"]["pseudonym"] == pseudonyms.pseudonym(ID)
    assert line["cmnd"]["hint"] == "123***789"


def test_without_a_pseudonymizer_an_id_key_gets_only_the_hint() -> None:
    stream, log = _log()
    log.info("enrolled", citizen_id=ID)
    assert _lines(stream)[0]["citizen_id"] == "019******345"


def _fails_with_a_secret_local() -> None:
    pin = "PIN-770123"  # noqa: F841  (the local variable the traceback must not show)
    key_material = b"\x30\x82\x04\xbd-private-key-fragment"  # noqa: F841
    raise ValueError("signing failed")


@pytest.mark.parametrize("as_json", [True, False])
def test_an_exception_traceback_leaves_local_variables_out(as_json: bool) -> None:
    stream, log = _log(json=as_json)
    try:
        _fails_with_a_secret_local()
    except ValueError:
        log.exception("sign error")
    out = stream.getvalue()
    assert "signing failed" in out
    assert "_fails_with_a_secret_local" in out  # the traceback itself is there…
    assert "PIN-770123" not in out  # …without its locals
    assert "private-key-fragment" not in out
    if as_json:
        (line,) = _lines(stream)
        frames = line["exception"][0]["frames"]
        assert all("locals" not in frame for frame in frames)


def test_an_id_number_in_an_exception_message_is_masked() -> None:
    stream, log = _log()
    try:
        raise LookupError(f"no holder {ID}")
    except LookupError:
        log.exception("lookup")
    assert ID not in stream.getvalue()
    assert "019******345" in stream.getvalue()


def test_timestamps_are_utc() -> None:
    stream, log = _log()
    log.info("tick")
    stamp = _lines(stream)[0]["timestamp"]
    assert stamp.endswith(("Z", "+00:00"))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)", stamp)


def test_configuring_twice_does_not_duplicate_output() -> None:
    stream = io.StringIO()
    configure_logging(stream=stream)
    log = structlog.get_logger("early")  # bound before the second call
    configure_logging(stream=stream)
    log.info("once")
    structlog.get_logger().info("twice")
    assert [line["event"] for line in _lines(stream)] == ["once", "twice"]


def test_the_last_configuration_wins_for_level_and_stream() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging(stream=first)
    log = structlog.get_logger()
    log.info("before")  # a logger already used keeps no stale configuration
    configure_logging(stream=second, level="warning")
    log.info("hidden")
    log.warning("shown")
    assert [line["event"] for line in _lines(first)] == ["before"]
    assert [line["event"] for line in _lines(second)] == ["shown"]
    assert _lines(second)[0]["level"] == "warning"


def test_context_variables_appear_in_every_line() -> None:
    stream, log = _log()
    structlog.contextvars.bind_contextvars(request_id="8d0c5f0e-1b7e-4c3a-9a53-446655440000")
    log.info("a")
    log.info("b", request_id_seen=True)
    lines = _lines(stream)
    # a UUID whose last group is 12 digits is an id, not a citizen's number
    assert [line["request_id"] for line in lines] == ["8d0c5f0e-1b7e-4c3a-9a53-446655440000"] * 2


def test_bytes_and_dataclasses_are_logged_without_their_secrets() -> None:
    @dataclasses.dataclass
    class Login:
        user: str
        password: str
        hidden: str = dataclasses.field(default="not-in-repr", repr=False)

    stream, log = _log()
    log.info("attempt", login=Login("an.nv", "hunter2-Đ"), blob=b"\x00" * 48)
    out = stream.getvalue()
    assert "hunter2" not in out
    assert "not-in-repr" not in out
    (line,) = _lines(stream)
    assert line["login"] == {"user": "an.nv", "password": REDACTED}
    assert line["blob"] == "<48 bytes>"


def test_json_lines_stay_single_lines_and_keep_vietnamese() -> None:
    stream, log = _log()
    log.info("nhật ký\nsecond\u2028third", who="Nguyễn Văn An")
    out = stream.getvalue()
    assert out.count("\n") == 1
    assert "\u2028" not in out
    assert "Nguyễn Văn An" in out
    assert _lines(stream)[0]["event"] == "nhật ký\nsecond\u2028third"


def test_an_unknown_level_is_refused() -> None:
    with pytest.raises(ConfigError, match="log level"):
        configure_logging(level="verbose")


def test_processes_sharing_stderr_never_interleave_their_lines(tmp_path: Path) -> None:
    """Each line is one write (``kyso serve --workers N``: the workers share the parent's
    stderr, which Python leaves unbuffered; a line and its newline used to be two writes)."""
    script = ("import structlog, sys\n"
              "from kyso.audit.logging import configure_logging\n"
              "configure_logging(level='info', json=True, stream=sys.stderr)\n"
              "log = structlog.get_logger('test')\n"
              "for i in range(2000):\n"
              "    log.info('request', worker=sys.argv[1], n=i, path='/health')\n")
    out = tmp_path / "shared.log"
    with out.open("wb") as shared:
        workers = [subprocess.Popen([sys.executable, "-c", script, name], stderr=shared)
                   for name in ("a", "b", "c")]
        assert [w.wait(timeout=120) for w in workers] == [0, 0, 0]

    lines = out.read_text().splitlines()
    assert len(lines) == 6000
    entries = [json.loads(line) for line in lines]  # no two lines run together
    assert {(e["worker"], e["n"]) for e in entries} == {
        (w, n) for w in ("a", "b", "c") for n in range(2000)}
