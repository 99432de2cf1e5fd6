"""Several processes issuing into the same home at once: every certificate stored exactly once,
every one signed correctly, and nobody sees "database is locked"."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from cli_support import (
    audit_lines,
    ca_cert,
    cli_env,  # noqa: F401 - autouse fixture
    init_ca,
    kyso_argv,
    serials,
    subprocess_env,
    verifies,
)
from cryptography import x509

from conftest import ON_POSTGRES, PASSPHRASE

PROCESSES = 4
PER_PROCESS = 200
TIMEOUT = 150  # seconds; a hang must fail the test, not stall the suite

# One worker: open the home, unlock the CA, say "ready", wait for "go", issue PER_PROCESS EC P-256
# staff certificates through the library, and print what it did as JSON. Personal IDs are
# province 019, sex/century digit 0, year 99, then the worker number and a 5-digit counter.
WORKER = r"""
import json, os, sys, time, traceback
from pathlib import Path
from kyso.config import load_settings
from kyso.context import open_kyso
from kyso.pki.authority import CertificateAuthority
from kyso.pki.issuance import issue
from kyso.pki.keys import KeyType
from kyso.pki.subjects import SubjectRequest

home, worker, count, passphrase, sync = (sys.argv[1], int(sys.argv[2]), int(sys.argv[3]),
                                         sys.argv[4], Path(sys.argv[5]))
serials, errors = [], []
kyso = open_kyso(load_settings(home=home, database_url=os.environ.get("KYSO_DATABASE_URL"),
                               environ={}), actor=f"admin:worker{worker}")
try:
    ca = CertificateAuthority(kyso, passphrase)
    ca.issuer("staff")  # unlock before the start line
    (sync / f"ready-{worker}").touch()
    deadline = time.monotonic() + 60
    while not (sync / "go").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    for i in range(count):
        request = SubjectRequest.of(
            name="Nguyễn Văn An", id=f"019099{worker}{i:05d}", title="Chuyên viên",
            unit="Văn phòng UBND xã Phú Đình", email=f"w{worker}.{i}@thainguyen.gov.vn")
        try:
            issued = issue(kyso, ca, "staff", request, key_type=KeyType.EC_P256)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        else:
            serials.append(issued.record.serial)
except Exception:
    errors.append(traceback.format_exc())
finally:
    kyso.close()
print(json.dumps({"worker": worker, "serials": serials, "errors": errors}))
"""


def db_rows(home: Path) -> list[tuple[str, str, bytes]]:
    """Read straight from the database (SQLite file, or the test's PostgreSQL database)."""
    url = os.environ.get("KYSO_DATABASE_URL") if ON_POSTGRES else None
    if url is None:
        with contextlib.closing(sqlite3.connect(home / "kyso.db")) as conn:
            return list(conn.execute("SELECT serial, issuer, der FROM certificates"))
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return [(r[0], r[1], bytes(r[2])) for r in
                    conn.exec_driver_sql("SELECT serial, issuer, der FROM certificates")]
    finally:
        engine.dispose()


@pytest.mark.slow
def test_four_processes_issuing_200_certificates_each_into_one_home(home: Path,
                                                                    tmp_path: Path) -> None:
    init_ca(home)
    before = {serial for serial, _issuer, _der in db_rows(home)}
    events_before = len(audit_lines(home))
    sync = tmp_path / "sync"
    sync.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(home), str(n), str(PER_PROCESS), PASSPHRASE,
             str(sync)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env())
        for n in range(1, PROCESSES + 1)
    ]
    try:
        deadline = time.monotonic() + 60
        while len(list(sync.glob("ready-*"))) < PROCESSES and time.monotonic() < deadline:
            if any(p.poll() is not None for p in procs):
                break
            time.sleep(0.02)
        (sync / "go").touch()
        results = [p.communicate(timeout=TIMEOUT) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    reported: list[str] = []
    for proc, (out, err) in zip(procs, results, strict=True):
        assert "database is locked" not in err.lower()
        assert proc.returncode == 0, err
        data = json.loads(out.strip().splitlines()[-1])
        assert not any("locked" in e.lower() for e in data["errors"]), data["errors"][:3]
        assert data["errors"] == [], data["errors"][:3]
        assert len(data["serials"]) == PER_PROCESS
        reported += data["serials"]

    rows = [r for r in db_rows(home) if r[0] not in before]
    assert len(rows) == PROCESSES * PER_PROCESS
    assert len({serial for serial, _i, _d in rows}) == PROCESSES * PER_PROCESS
    assert {serial for serial, _i, _d in rows} == set(reported)
    assert len(serials(home)) == len(before) + PROCESSES * PER_PROCESS  # as `cert list` sees it

    issuers = {name: ca_cert(home, name) for name in ("staff", "citizen", "services")}
    for serial, issuer, der in rows:
        cert = x509.load_der_x509_certificate(der)
        assert format(cert.serial_number, "x") == serial
        assert verifies(cert, issuers[issuer]), f"{serial} does not verify against {issuer}"

    # Every audit line is whole JSON (no interleaving), with one event naming each certificate.
    new_events = audit_lines(home)[events_before:]
    created = [e for e in new_events
               if e["action"] == "CERT_CREATION" and e["outcome"] == "success"]
    assert not [e for e in new_events if e["outcome"] == "failure"]
    assert sorted(e["object"] for e in created) == sorted(reported)


@pytest.mark.slow
def test_concurrent_cli_issue_processes_all_succeed(home: Path) -> None:
    init_ca(home)
    before = serials(home)
    ids = ["019099000101", "019099000102", "019099000103", "019099000104"]
    procs = [
        subprocess.Popen(
            kyso_argv(home, "cert", "issue", "--profile", "staff", "--name", "Trần Văn Bốn",
                      "--id", pid, "--title", "Chuyên viên", "--unit", "Văn phòng",
                      "--email", f"u{pid[-3:]}@thainguyen.gov.vn", "--format", "json"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
            env=subprocess_env())
        for pid in ids
    ]
    try:
        results = [p.communicate(timeout=TIMEOUT) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    issued = []
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
        assert "Traceback" not in err
        assert "locked" not in err.lower()
        record = json.loads(out)
        issued.append(record["serial"])
        for path in record["files"].values():
            assert Path(path).is_file()
    assert len(set(issued)) == len(ids)
    assert serials(home) == before | set(issued)


def test_missing_ca_passphrase_without_a_terminal_exits_2_in_a_real_process(home: Path) -> None:
    """The console-script path end to end: stdin is not a TTY, no passphrase anywhere."""
    init_ca(home)
    env = subprocess_env()
    del env["KYSO_CA_PASSPHRASE"]
    proc = subprocess.run(
        kyso_argv(home, "cert", "issue", "--profile", "citizen", "--name", "Trần Thị Bình",
                  "--id", "033301000123"),
        stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "KYSO_CA_PASSPHRASE" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (home / "issued").exists() or not list((home / "issued").iterdir())
