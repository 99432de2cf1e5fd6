"""Scale-out through the HTTP API: two real ``kyso serve`` processes (two nodes behind one
issuer URL) on one home and one PostgreSQL database, driven over HTTPS from several client
threads at once: certificates issued from CSRs on both nodes while others are revoked — some
on the node that did not issue them — and races where both nodes revoke the same certificate
for keyCompromise. Afterwards: no duplicate serial, every certificate stored once, every
revocation that was answered 200 is in the database and OCSP on either node says revoked (as
``openssl ocsp`` reads the answer), each race has exactly one winner, and the one audit log
verifies with one CERT_CREATION per certificate and one CERT_REVOKED per revocation.

Runs only on PostgreSQL (KYSO_TEST_DATABASE_URL; scripts/test starts one)."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from ca_api_support import API, pem_text, staff_csr
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from live_support import KYSO, ServeProcess, free_port, make_tls, start_serve
from server_support import (
    CLIENT_ID,
    LEVEL2,
    REDIRECT_URI,
    Browser,
    access_token,
    bearer,
    make_citizen,
)

from conftest import FAST_KDF, ON_POSTGRES, PASSPHRASE
from kyso.audit import read_events
from kyso.authn.oidc import Provider
from kyso.authn.registry import Level
from kyso.authn.roles import Role, Roles
from kyso.clock import SystemClock
from kyso.config import load_settings
from kyso.context import Kyso, open_kyso
from kyso.pki.authority import CertificateAuthority, init_ca
from kyso.pki.keys import KeyType
from kyso.server.app import load_or_create_keys
from kyso.server.ca_routes import AUDIENCE
from kyso.store import schema

pytestmark = [pytest.mark.skipif(not ON_POSTGRES, reason="needs PostgreSQL (KYSO_TEST_DATABASE_URL)"),
              pytest.mark.slow, pytest.mark.external]

TOKEN_PASSPHRASE = "token-key-passphrase-for-two-nodes"
FIRST = 20  # issued before the revocations start
MORE = 24  # issued while the revocations run
REVOKED = 10  # of the first ones, revoked while the others are issued
RACES = 3  # of the first ones, revoked for keyCompromise by both nodes at once
CLIENT_THREADS = 6
REASONS = ("superseded", "affiliationChanged", "cessationOfOperation", "privilegeWithdrawn",
           "keyCompromise")


@dataclass
class Cluster:
    """Two nodes on one home and one database, and what the clients need to reach them."""

    kyso: Kyso
    ca: CertificateAuthority
    nodes: list[ServeProcess]
    trust: ssl.SSLContext
    token: str = field(repr=False)
    admin_pseudonym: str
    _local: threading.local = field(default_factory=threading.local)
    _opened: list[httpx.Client] = field(default_factory=list)

    def client(self, node: int) -> httpx.Client:
        """This thread's connection to ``node`` (an httpx client is not shared across threads)."""
        clients: dict[int, httpx.Client] = self._local.__dict__.setdefault("clients", {})
        if node not in clients:
            clients[node] = httpx.Client(base_url=self.nodes[node].base, verify=self.trust,
                                         timeout=120, headers=bearer(self.token))
            self._opened.append(clients[node])  # list.append is atomic
        return clients[node]

    def close(self) -> None:
        while self._opened:
            self._opened.pop().close()


@dataclass(frozen=True)
class Call:
    kind: str  # issue, revoke, race
    node: int
    status: int
    body: dict[str, Any]
    request_id: str
    serial: str = ""


@pytest.fixture
def cluster(tmp_path: Path, database_url: str) -> Iterator[Cluster]:
    """A CA (on the real clock, so the nodes' certificates chain up at once), an admin with the
    ca-admin role and a client for kyso-api, the token keys, and two ``kyso serve --tls``
    nodes sharing the issuer URL of the first (as behind a load balancer)."""
    home = tmp_path / "home"
    kyso = open_kyso(load_settings(home=home, database_url=database_url, environ=FAST_KDF),
                     clock=SystemClock(), actor="admin:test")
    nodes: list[ServeProcess] = []
    try:
        init_ca(kyso, passphrase=PASSPHRASE, org="UBND tỉnh Thái Nguyên", province="thai-nguyen",
                key_type=KeyType.EC_P384, base_url="http://pki.thainguyen.gov.vn")
        ca = CertificateAuthority(kyso, PASSPHRASE)
        ports = [free_port(), free_port()]
        issuer = f"https://127.0.0.1:{ports[0]}"
        keys = load_or_create_keys(kyso.settings, kyso.clock, TOKEN_PASSPHRASE)  # one key set
        client = Provider(kyso, keys, issuer).clients.add(
            CLIENT_ID, "Quản trị CA", [REDIRECT_URI], audiences=[AUDIENCE], confidential=True)
        assert client.secret is not None
        admin = make_citizen(kyso, LEVEL2, Level.TWO)
        Roles(kyso).grant(admin.id_number, Role.CA_ADMIN)

        ca_file, cert, key = make_tls(tmp_path)
        trust = ssl.create_default_context(cafile=str(ca_file))
        secrets = tmp_path / "secrets"
        secrets.mkdir(mode=0o700)
        (secrets / "token.pass").write_text(TOKEN_PASSPHRASE + "\n")
        (secrets / "ca.pass").write_text(PASSPHRASE + "\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("KYSO_")}
        env.update(FAST_KDF, KYSO_HOME=str(home), KYSO_DATABASE_URL=database_url,
                   PYTHONWARNINGS="ignore")
        for n, port in enumerate(ports):
            nodes.append(start_serve(
                port, "--issuer", issuer, "--tls-cert", str(cert), "--tls-key", str(key),
                "--key-passphrase-file", str(secrets / "token.pass"),
                "--ca-passphrase-file", str(secrets / "ca.pass"),
                env=env, scheme="https", log=tmp_path / f"node{n + 1}.log"))
        for node in nodes:
            node.wait_ready(trust, path="/ready", within=120)

        with httpx.Client(base_url=nodes[0].base, verify=trust, timeout=60) as http:
            token = access_token(Browser(http, kyso.clock), admin, client.secret)
        running = Cluster(kyso, ca, nodes, trust, token, kyso.pseudonyms.pseudonym(admin.id_number))
        try:
            yield running
        finally:
            running.close()
    finally:
        for node in nodes:
            node.stop()
        kyso.close()


def run_together(jobs: list[Callable[[], Call]], threads: int) -> list[Call]:
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return [f.result() for f in [pool.submit(job) for job in jobs]]


def issue_job(cluster: Cluster, n: int) -> Callable[[], Call]:
    csr = staff_csr(100 + n)  # each on its own key

    def job() -> Call:
        node = n % 2
        answer = cluster.client(node).post(API, json={"csr": pem_text(csr), "profile": "staff"})
        body = answer.json()
        if answer.status_code == 201:
            cert = x509.load_pem_x509_certificate(body["certificate"].encode())
            assert cert.public_key() == csr.public_key()
        return Call("issue", node, answer.status_code, body, answer.headers["x-request-id"],
                    body.get("serial", ""))

    return job


def revoke_job(cluster: Cluster, kind: str, node: int, serial: str, reason: str,
               barrier: threading.Barrier | None = None) -> Callable[[], Call]:
    def job() -> Call:
        http = cluster.client(node)
        if barrier is not None:
            barrier.wait(timeout=60)
        answer = http.post(f"{API}/{serial}/revoke", json={"reason": reason})
        return Call(kind, node, answer.status_code, answer.json(), answer.headers["x-request-id"],
                    serial)

    return job


def ocsp_says(openssl: str, cluster: Cluster, node: int, leaf: Path, tmp: Path) -> str:
    """Ask ``node``'s OCSP responder about ``leaf``: openssl writes the request (with a nonce),
    the request goes over HTTPS, openssl reads the answer to that request (signature, delegated
    responder, nonce); the ``Cert Status`` it prints."""
    files = {name: tmp / f"{name}.pem" for name in ("staff", "root")}
    for name, path in files.items():
        if not path.exists():
            path.write_bytes(cluster.ca.certificate(name).public_bytes(serialization.Encoding.PEM))
    request, response = tmp / f"{leaf.stem}-{node}.req", tmp / f"{leaf.stem}-{node}.resp"
    made = subprocess.run([openssl, "ocsp", "-issuer", str(files["staff"]), "-cert", str(leaf),
                           "-reqout", str(request)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert made.returncode == 0, made.stderr
    answer = cluster.client(node).post("/ocsp/staff", content=request.read_bytes(),
                                       headers={"Content-Type": "application/ocsp-request"})
    assert answer.status_code == 200
    response.write_bytes(answer.content)
    read = subprocess.run([openssl, "ocsp", "-reqin", str(request), "-respin", str(response),
                           "-CAfile", str(files["root"]), "-verify_other", str(files["staff"]),
                           "-resp_text"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert "Response verify OK" in read.stderr, read.stdout + read.stderr
    serial = format(x509.load_pem_x509_certificate(leaf.read_bytes()).serial_number, "X")
    assert f"Serial Number: {serial}" in read.stdout, read.stdout
    statuses = [line.split(":", 1)[1].strip() for line in read.stdout.splitlines()
                if line.strip().startswith("Cert Status:")]
    assert len(statuses) == 1, read.stdout
    return statuses[0]


def test_two_serve_nodes_on_one_postgres_issue_and_revoke_concurrently_without_losing_anything(
        cluster: Cluster, openssl: str, tmp_path: Path) -> None:
    kyso = cluster.kyso
    c = schema.certificates
    with kyso.store.read() as conn:
        before = set(conn.execute(sa.select(c.c.serial)).scalars())
    events_before = len(read_events(kyso.settings.audit_dir))

    # 1. Both nodes issue at once.
    first = run_together([issue_job(cluster, n) for n in range(FIRST)], CLIENT_THREADS)
    assert [call.status for call in first] == [201] * FIRST, [c.body for c in first
                                                              if c.status != 201][:2]

    # 2. Issue more while revoking some of the first: half of the revocations on the node that
    #    did not issue the certificate; and races, both nodes revoking one certificate at once.
    victims, raced = first[:REVOKED], first[REVOKED:REVOKED + RACES]
    jobs = [issue_job(cluster, FIRST + n) for n in range(MORE)]
    for i, call in enumerate(victims):
        node = call.node if i % 2 else 1 - call.node
        jobs.insert(2 * i + 1, revoke_job(cluster, "revoke", node, call.serial,
                                          REASONS[i % len(REASONS)]))
    race_jobs = []
    for call in raced:
        barrier = threading.Barrier(2)
        race_jobs += [revoke_job(cluster, "race", node, call.serial, "keyCompromise", barrier)
                      for node in (0, 1)]
    with ThreadPoolExecutor(max_workers=len(race_jobs)) as racers:
        racing = [racers.submit(job) for job in race_jobs]
        second = run_together(jobs, CLIENT_THREADS)
        races = [f.result() for f in racing]

    issues = first + [call for call in second if call.kind == "issue"]
    revokes = [call for call in second if call.kind == "revoke"]
    assert [call.status for call in issues] == [201] * (FIRST + MORE)
    assert Counter(call.node for call in issues) == {0: (FIRST + MORE) // 2,
                                                     1: (FIRST + MORE) // 2}
    assert [call.status for call in revokes] == [200] * REVOKED, [c.body for c in revokes]
    assert sum(call.node != issued.node for call, issued in zip(revokes, victims, strict=True)) \
        == REVOKED // 2

    # Each race has exactly one winner; the loser is told the certificate is revoked.
    for call in raced:
        pair = sorted((r for r in races if r.serial == call.serial), key=lambda r: r.status)
        assert [r.status for r in pair] == [200, 409], [r.body for r in pair]
        assert {r.node for r in pair} == {0, 1}
        assert pair[1].body["error"] == "conflict"
        assert pair[1].body["certificate_status"] == "revoked"
        assert pair[1].body["revocation_reason"] == "keyCompromise"

    # 3. No duplicate serials; the database holds each issued certificate exactly once.
    serials = [call.serial for call in issues]
    assert len(set(serials)) == len(serials) == FIRST + MORE
    with kyso.store.read() as conn:
        rows = conn.execute(sa.select(c.c.serial, c.c.status, c.c.revocation_reason,
                                      c.c.spki_sha256)).all()
        compromised = {r.spki_sha256: r.compromised_at for r in conn.execute(
            sa.select(schema.certified_keys))}
    stored = Counter(r.serial for r in rows)
    assert {s for s in stored if s not in before} == set(serials)
    assert all(stored[s] == 1 for s in serials)

    # 4. No lost update: every revocation answered 200 is in the database.
    state = {r.serial: r for r in rows}
    for call in revokes:
        assert (state[call.serial].status, state[call.serial].revocation_reason) == (
            "revoked", call.body["revocation_reason"])
    for call in raced:
        assert (state[call.serial].status, state[call.serial].revocation_reason) == (
            "revoked", "keyCompromise")
        assert compromised[state[call.serial].spki_sha256] is not None
    untouched = [call.serial for call in issues[REVOKED + RACES:]]
    assert {state[s].status for s in untouched} == {"valid"}

    # 5. OCSP on either node says revoked for them (and good for one never revoked).
    pems = tmp_path / "pems"
    pems.mkdir()
    for i, call in enumerate(victims + raced):
        leaf = pems / f"{call.serial}.pem"
        leaf.write_text(call.body["certificate"])
        assert ocsp_says(openssl, cluster, i % 2, leaf, pems) == "revoked"
    good = pems / "good.pem"
    good.write_text(issues[-1].body["certificate"])
    assert [ocsp_says(openssl, cluster, node, good, pems) for node in (0, 1)] == ["good"] * 2

    # 6. The nodes stop cleanly; the one audit log verifies and agrees with the answers.
    cluster.close()
    for node in cluster.nodes:
        code, log = node.stop()
        assert code in (0, -signal.SIGTERM)
        assert "Traceback" not in log
        assert '"status": 500' not in log
        assert PASSPHRASE not in log
        assert TOKEN_PASSPHRASE not in log
    env = {k: v for k, v in os.environ.items() if not k.startswith("KYSO_")}
    env.update(FAST_KDF, KYSO_DATABASE_URL=kyso.settings.database_url, PYTHONWARNINGS="ignore")
    verified = subprocess.run([KYSO, "--home", str(kyso.settings.home), "audit", "verify"],
                              capture_output=True, text=True, env=env, timeout=300, check=False,
                              stdin=subprocess.DEVNULL)
    assert verified.returncode == 0, verified.stdout + verified.stderr

    events = read_events(kyso.settings.audit_dir)[events_before:]
    assert [e["seq"] for e in events] == list(range(events_before,
                                                    events_before + len(events)))
    created = [e for e in events if e["action"] == "CERT_CREATION" and e["outcome"] == "success"]
    assert Counter(e["object"] for e in created) == Counter(serials)
    assert {e["request_id"]: e["object"] for e in created} == {
        call.request_id: call.serial for call in issues}  # each event from its own request
    revoked = [e for e in events if e["action"] == "CERT_REVOKED"]
    won = [e for e in revoked if e["outcome"] == "success"]
    assert Counter(e["object"] for e in won) == Counter(
        [call.serial for call in revokes] + [call.serial for call in raced])
    lost = [e for e in revoked if e["outcome"] == "failure"]
    assert Counter(e["object"] for e in lost) == Counter(call.serial for call in raced)
    assert {e["actor"] for e in created + revoked} == {cluster.admin_pseudonym}
    assert not [e for e in events if e["action"] == "CERT_CREATION" and e["outcome"] == "failure"]
