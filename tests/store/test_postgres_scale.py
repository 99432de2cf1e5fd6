"""Scale-out: several OS processes on one home and one PostgreSQL database issue, revoke, hold and
publish CRLs at the same time (what several `kyso serve` or CLI processes do). Afterwards no
serial is duplicated, no update is lost, the database agrees with the audit log, and the audit
log — one linear log shared through its flock — verifies. Runs only on PostgreSQL
(KYSO_TEST_DATABASE_URL; scripts/test starts one)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from conftest import FAST_KDF, ON_POSTGRES, PASSPHRASE, STAFF
from kyso.audit import read_events
from kyso.context import Kyso
from kyso.pki.authority import CertificateAuthority
from kyso.pki.issuance import issue
from kyso.pki.keys import KeyType
from kyso.pki.subjects import SubjectRequest
from kyso.store import schema

pytestmark = [pytest.mark.skipif(not ON_POSTGRES, reason="needs PostgreSQL (KYSO_TEST_DATABASE_URL)"),
              pytest.mark.slow]

PROCESSES = 4
PER_PROCESS = 20
REVOKE_EVERY = 5  # each process revokes every 5th certificate it issued
COMPROMISED = 3  # certificates every process tries to revoke for keyCompromise
CONTESTED = 4  # certificates half the processes try to hold and half to revoke
CRLS_PER_PROCESS = 2
TIMEOUT = 240

# One worker process: open the home on the shared database, unlock the CA, wait for "go", then
# interleave its own issuance and revocations with attempts on the shared certificates and CRL
# publications; report everything it did as JSON.
WORKER = r"""
import json, os, random, sys, time, traceback
from pathlib import Path
from kyso.config import load_settings
from kyso.context import open_kyso
from kyso.errors import RevocationError
from kyso.pki.authority import CertificateAuthority
from kyso.pki.crl import publish_crl
from kyso.pki.issuance import issue
from kyso.pki.keys import KeyType
from kyso.pki.lifecycle import hold, revoke
from kyso.pki.subjects import SubjectRequest

home, worker, per, every, sync = (sys.argv[1], int(sys.argv[2]), int(sys.argv[3]),
                                  int(sys.argv[4]), Path(sys.argv[5]))
compromised, contested, crls = json.loads(sys.argv[6]), json.loads(sys.argv[7]), int(sys.argv[8])
out = {"worker": worker, "issued": [], "revoked": [], "attempts": [], "crls": [], "errors": []}
kyso = open_kyso(load_settings(home=home), actor=f"admin:node{worker}")
try:
    ca = CertificateAuthority(kyso, os.environ["KYSO_CA_PASSPHRASE"])
    ca.issuer("staff")
    (sync / f"ready-{worker}").touch()
    deadline = time.monotonic() + 120
    while not (sync / "go").exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    rng = random.Random(worker)
    shared = ([("compromise", s) for s in compromised]
              + [("hold" if worker % 2 else "revoke", s) for s in contested])
    rng.shuffle(shared)
    steps = ["issue"] * per + ["shared"] * len(shared) + ["crl"] * crls
    rng.shuffle(steps)
    for step in steps:
        try:
            if step == "issue":
                n = len(out["issued"])
                request = SubjectRequest.of(
                    name="Nguyễn Văn An", id=f"019099{worker}{n:05d}", title="Chuyên viên",
                    unit="Văn phòng UBND xã Phú Đình", email=f"n{worker}.{n}@thainguyen.gov.vn")
                serial = issue(kyso, ca, "staff", request, key_type=KeyType.EC_P256).record.serial
                out["issued"].append(serial)
                if len(out["issued"]) % every == 0:
                    revoke(kyso, serial, reason="superseded")
                    out["revoked"].append(serial)
            elif step == "shared":
                kind, serial = shared.pop()
                try:
                    if kind == "compromise":
                        revoke(kyso, serial, reason="keyCompromise")
                    elif kind == "hold":
                        hold(kyso, serial)
                    else:
                        revoke(kyso, serial, reason="affiliationChanged")
                except RevocationError as exc:
                    out["attempts"].append([kind, serial, "refused", str(exc)])
                else:
                    out["attempts"].append([kind, serial, "done", ""])
            else:
                out["crls"].append(publish_crl(kyso, ca, "staff").number)
        except Exception:
            out["errors"].append(traceback.format_exc())
except Exception:
    out["errors"].append(traceback.format_exc())
finally:
    kyso.close()
print(json.dumps(out))
"""


def run_workers(home: Path, sync: Path, compromised: list[str], contested: list[str],
                env: dict[str, str]) -> list[dict[str, Any]]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(home), str(n), str(PER_PROCESS), str(REVOKE_EVERY),
             str(sync), json.dumps(compromised), json.dumps(contested), str(CRLS_PER_PROCESS)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
            env=env)
        for n in range(1, PROCESSES + 1)
    ]
    try:
        deadline = time.monotonic() + 120
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
    reports = []
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
        assert "Traceback" not in err, err
        report = json.loads(out.strip().splitlines()[-1])
        assert report["errors"] == [], report["errors"][:2]
        reports.append(report)
    return reports


def transitions_chain(pairs: list[tuple[str, str]], final: str) -> bool:
    """The (old, new) status changes, in any order, form one path from valid to ``final``."""
    status, left = "valid", list(pairs)
    while left:
        step = next((p for p in left if p[0] == status), None)
        if step is None:
            return False
        left.remove(step)
        status = step[1]
    return status == final


def test_processes_issuing_and_revoking_on_one_postgres_keep_store_and_audit_log_consistent(
        kyso: Kyso, ca: CertificateAuthority, database_url: str, tmp_path: Path) -> None:
    staff = SubjectRequest.of(name=STAFF["name"], id=STAFF["id"], title=STAFF["title"],
                              unit=STAFF["unit"], email=STAFF["email"])
    shared = [issue(kyso, ca, "staff", staff, key_type=KeyType.EC_P256).record.serial
              for _ in range(COMPROMISED + CONTESTED)]
    compromised, contested = shared[:COMPROMISED], shared[COMPROMISED:]
    c = schema.certificates
    with kyso.store.read() as conn:
        before = set(conn.execute(sa.select(c.c.serial)).scalars())
        crl_before = conn.execute(sa.select(schema.authorities.c.crl_number)
                                  .where(schema.authorities.c.name == "staff")).scalar_one()
    events_before = len(read_events(kyso.settings.audit_dir))

    env = {k: v for k, v in os.environ.items() if not k.startswith("KYSO_")}
    env.update(FAST_KDF, KYSO_DATABASE_URL=database_url, KYSO_CA_PASSPHRASE=PASSPHRASE,
               PYTHONWARNINGS="ignore")
    sync = tmp_path / "sync"
    sync.mkdir()
    reports = run_workers(kyso.settings.home, sync, compromised, contested, env)

    # No duplicate serials, nothing lost: the store holds exactly what the processes issued.
    issued = [s for r in reports for s in r["issued"]]
    assert len(issued) == PROCESSES * PER_PROCESS
    assert len(set(issued)) == len(issued)
    with kyso.store.read() as conn:
        rows = {r.serial: r for r in conn.execute(
            sa.select(c.c.serial, c.c.status, c.c.revocation_reason, c.c.spki_sha256))}
        compromised_keys = {r.spki_sha256: r.compromised_at for r in conn.execute(
            sa.select(schema.certified_keys))}
        crl_number = conn.execute(sa.select(schema.authorities.c.crl_number)
                                  .where(schema.authorities.c.name == "staff")).scalar_one()
    assert set(rows) - before == set(issued)

    # Every revocation a process made is in the store.
    revoked = [s for r in reports for s in r["revoked"]]
    assert len(revoked) == PROCESSES * (PER_PROCESS // REVOKE_EVERY)
    assert {(rows[s].status, rows[s].revocation_reason) for s in revoked} == {
        ("revoked", "superseded")}

    # Shared certificates: each keyCompromise revocation happened exactly once; the others
    # were refused with a clear reason, never a second success or an internal error.
    attempts = [(kind, serial, outcome, why) for r in reports for kind, serial, outcome, why
                in r["attempts"]]
    assert len(attempts) == PROCESSES * (COMPROMISED + CONTESTED)
    for serial in compromised:
        outcomes = Counter(o for _k, s, o, _w in attempts if s == serial)
        assert outcomes == {"done": 1, "refused": PROCESSES - 1}
        assert (rows[serial].status, rows[serial].revocation_reason) == ("revoked", "keyCompromise")
        assert compromised_keys[rows[serial].spki_sha256] is not None
    for _kind, _serial, outcome, why in attempts:
        if outcome == "refused":
            assert "cannot" in why or "already revoked" in why or "concurrently" in why, why

    # The audit log agrees with the store: one creation event per certificate, and for each
    # shared certificate the successful changes chain from valid to the stored status.
    events = read_events(kyso.settings.audit_dir)[events_before:]
    created = Counter(e["object"] for e in events
                      if e["action"] == "CERT_CREATION" and e["outcome"] == "success")
    assert created == Counter(issued)
    changes = [e for e in events if e["action"] in ("CERT_REVOKED", "CERT_STATUSCHANGE")]
    for serial in shared:
        done = [e for e in changes if e["object"] == serial and e["outcome"] == "success"]
        refused = [e for e in changes if e["object"] == serial and e["outcome"] == "failure"]
        reported = Counter(o for _k, s, o, _w in attempts if s == serial)
        assert len(done) == reported["done"]
        assert len(refused) == reported["refused"]
        pairs = [(e["details"]["old_status"], e["details"]["new_status"]) for e in done]
        assert transitions_chain(pairs, rows[serial].status), (serial, pairs, rows[serial])
    own = Counter(e["object"] for e in changes if e["outcome"] == "success"
                  and e["object"] not in shared)
    assert own == Counter(revoked)

    # CRL numbers handed out across processes never repeat and none is skipped.
    numbers = sorted(n for r in reports for n in r["crls"])
    assert numbers == list(range(crl_before + 1, crl_before + 1 + PROCESSES * CRLS_PER_PROCESS))
    assert crl_number == numbers[-1]

    # The one linear audit log verifies, as an auditor runs it.
    proc = subprocess.run(
        [sys.executable, "-m", "kyso", "--home", str(kyso.settings.home), "audit", "verify",
         "--format", "json"],
        capture_output=True, text=True, env=env, timeout=120, check=False, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
