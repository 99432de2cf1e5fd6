"""Helpers of the security-level policy tests: a well-run deployment as :class:`Facts`, a home
prepared through the CLI, a fake SNTP server, and running ``kyso`` in-process."""

from __future__ import annotations

import datetime as dt
import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from conftest import BASE_URL, PASSPHRASE, T0
from kyso.cli import cli, main
from kyso.config import AuditSettings, AuthnSettings, BackupSettings, SecuritySettings
from kyso.policies.facts import (
    BackupFact,
    CheckpointFact,
    ClockFact,
    Facts,
    KeyFact,
    Verification,
)

# --- facts of a well-run level-3 deployment -----------------------------------------------------

KEYS = (
    KeyFact("root", "ca", "ec", 384, "sha384", T0 + dt.timedelta(days=7300), "/h/ca/root.key.pem",
            "ok"),
    KeyFact("staff", "ca", "rsa", 4096, "sha384", T0 + dt.timedelta(days=3650),
            "/h/ca/staff.key.pem", "ok"),
    KeyFact("audit-signer", "service", "ed25519", 256, "sha384", T0 + dt.timedelta(days=730),
            "/h/ca/audit-signer.key.pem", "ok"),
)


def good_facts(**changes: Any) -> Facts:
    """Every automatic level-3 check passes on these facts."""
    facts = Facts(
        now=T0,
        home="/h",
        security=SecuritySettings(ntp_server="ntp.example.vn"),
        audit=AuditSettings(),
        authn=AuthnSettings(),
        backup=BackupSettings(dir="/backup", offsite=True),
        ca_present=True,
        keys=KEYS,
        audit_files=3,
        audit_retention_days=92,
        verification=Verification(recorded=True, time=T0 - dt.timedelta(hours=2), ok=True,
                                  size=120),
        backups=BackupFact(dir="/backup", exists=True, files=2, newest="kyso-2026-11-23.tar.age",
                           newest_time=T0 - dt.timedelta(hours=6), inside_home=False,
                           same_device=False),
        clock=ClockFact(server="ntp.example.vn", offset_ms=12.5),
        pseudonym_key="ok",
        checkpoint=CheckpointFact(time=T0 - dt.timedelta(minutes=20), size=120, log_size=121),
    )
    return replace(facts, **changes)


def with_settings(facts: Facts, section: str, **changes: Any) -> Facts:
    """``facts`` with ``changes`` in one settings section (security, audit, authn, backup)."""
    return replace(facts, **{section: replace(getattr(facts, section), **changes)})


# --- the command line ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str


@pytest.fixture(autouse=True)
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Autouse in the modules that import it: the CA passphrase from the environment, no stray
    KYSO_* settings, outputs in a scratch folder."""
    for name in ("KYSO_HOME", "KYSO_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KYSO_CA_PASSPHRASE", PASSPHRASE)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)


def run(home: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--home", str(home), *args])


def run_json(home: Path, *args: str) -> Any:
    result = run(home, *args, "--format", "json")
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


def run_main(capsys: pytest.CaptureFixture[str], home: Path, *args: str) -> Outcome:
    """``kyso.cli.main`` as the console script runs it: exit code and output."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["--home", str(home), *args])
    out, err = capsys.readouterr()
    code = exc.value.code
    return Outcome(0 if code is None else int(code), out, err)


def init_home(home: Path) -> None:
    result = run(home, "ca", "init", "--org", "UBND tỉnh Thái Nguyên", "--province",
                 "thai-nguyen", "--key-type", "ec-p384", "--base-url", BASE_URL)
    assert result.exit_code == 0, result.output


def write_config(home: Path, text: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(text, encoding="utf-8")


def mark_verified(home: Path, *, ok: bool = True, hours_ago: float = 1.0) -> None:
    """What ``kyso audit verify`` leaves behind, in real time (the CLI runs on the system clock)."""
    when = dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours_ago)
    (home / "audit").mkdir(parents=True, exist_ok=True)
    (home / "audit" / "verified.json").write_text(json.dumps(
        {"time": when.astimezone(dt.timezone(dt.timedelta(hours=7))).isoformat(), "ok": ok,
         "size": 12}))


def well_run_home(home: Path, backup: Path, authn: str = "") -> None:
    """A home whose automatic level-3 checks all pass (clock and documents need evidence)."""
    init_home(home)
    backup.mkdir(parents=True, exist_ok=True)
    (backup / "kyso-backup.tar.age").write_bytes(b"age-encryption.org/v1\n" + b"x" * 64)
    write_config(home, f'[backup]\ndir = "{backup}"\noffsite = true\n' + authn)
    signed = run(home, "audit", "checkpoint")  # the hourly checkpoint a scheduler would sign
    assert signed.exit_code == 0, signed.output
    mark_verified(home)


def item(report: dict[str, Any], req_id: str) -> dict[str, Any]:
    return next(r for r in report["requirements"] if r["id"] == req_id)


# --- a fake SNTP server -------------------------------------------------------------------------

NTP_EPOCH = 2_208_988_800


def ntp_bytes(t: float) -> bytes:
    return struct.pack("!II", int(t) + NTP_EPOCH, int((t % 1) * 2**32))


Reply = Callable[[bytes], bytes | None]


def server_reply(ahead_seconds: float = 0.0, *, stratum: int = 2, mode: int = 4,
                 echo: bool = True) -> Reply:
    """An SNTP server whose clock is ``ahead_seconds`` ahead of ours."""
    def answer(request: bytes) -> bytes:
        now = time.time() + ahead_seconds
        head = bytes([(0 << 6) | (4 << 3) | mode, stratum, 6, 0xEC]) + bytes(20)
        originate = request[40:48] if echo else bytes(8)
        return head + originate + ntp_bytes(now) + ntp_bytes(now)
    return answer


@contextmanager
def sntp_server(reply: Reply) -> Iterator[str]:
    """A UDP server on 127.0.0.1 answering with ``reply(request)``; yields ``host:port``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(1024)
            except TimeoutError:
                continue
            except OSError:
                return
            answer = reply(data)
            if answer is not None:
                sock.sendto(answer, peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=2)
        sock.close()
