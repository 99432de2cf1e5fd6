"""`kyso serve` as an operator runs it: a real process (one, or several workers), its health and
readiness endpoints, its OpenAPI document, HTTPS from the home's tls/ folder, and clear refusals
for a wrong set-up."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from live_support import KYSO, ServeProcess, free_port, make_tls, start_serve

from conftest import FAST_KDF, PASSPHRASE
from kyso.pki.authority import CertificateAuthority

TOKEN_PASSPHRASE = "token-key-passphrase-for-serve"
pytestmark = pytest.mark.slow


def serve_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KYSO_")}
    env.update(FAST_KDF, KYSO_HOME=str(home), KYSO_TOKEN_KEY_PASSPHRASE=TOKEN_PASSPHRASE)
    env.update(extra)
    if "KYSO_DATABASE_URL" in os.environ:  # the PostgreSQL pass of the suite
        env["KYSO_DATABASE_URL"] = os.environ["KYSO_DATABASE_URL"]
    return env


@pytest.fixture
def start(ca: CertificateAuthority, home: Path, tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    """``kyso serve`` started (stopped at the end); with ``logged=True`` it writes into a log
    file that can be read while it runs."""
    started: list[ServeProcess] = []

    def run(*args: str, scheme: str = "http", logged: bool = False, **env: str) -> ServeProcess:
        port = free_port()
        running = start_serve(port, *args, env=serve_env(home, **env), scheme=scheme,
                              log=tmp_path / f"serve-{port}.log" if logged else None)
        started.append(running)
        return running

    yield run
    for running in started:
        running.stop()


@pytest.fixture
def start_logged(start) -> Callable[..., ServeProcess]:  # type: ignore[no-untyped-def]
    """``start`` with a log file and the CA passphrase."""
    return lambda *args: start(*args, logged=True, KYSO_CA_PASSPHRASE=PASSPHRASE)


def test_serve_answers_health_readiness_and_openapi_then_stops_cleanly(start) -> None:  # type: ignore[no-untyped-def]
    server = start(KYSO_CA_PASSPHRASE=PASSPHRASE)
    server.wait_ready()

    ready = httpx.get(f"{server.base}/ready")
    spec = httpx.get(f"{server.base}/openapi.json").json()
    code, err = server.stop()

    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"database": "ok", "audit_log": "ok"}}
    assert ready.headers["cache-control"] == "no-store"
    assert spec["info"]["title"] == "kyso"
    assert {"/health", "/ready", "/token"} <= set(spec["paths"])
    assert code in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after a graceful stop
    assert "Traceback" not in err
    assert '"path": "/ready"' in err  # one structured access-log line per request
    assert PASSPHRASE not in err
    assert TOKEN_PASSPHRASE not in err


def test_serve_without_ca_passphrase_says_ocsp_and_tsa_are_off(start) -> None:  # type: ignore[no-untyped-def]
    server = start()
    server.wait_ready()
    _, err = server.stop()

    assert "no CA passphrase" in err
    assert "503" in err


def test_serve_with_two_workers_shares_the_port(start) -> None:  # type: ignore[no-untyped-def]
    server = start("--workers", "2", KYSO_CA_PASSPHRASE=PASSPHRASE)
    server.wait_ready()

    answers = [httpx.get(f"{server.base}/ready").status_code for _ in range(20)]
    workers = children(server.proc.pid)
    _code, err = server.stop()

    assert answers == [200] * 20
    assert len(workers) >= 2, err
    assert "with 2 workers" in err
    assert "Traceback" not in err


def access_log_pids(output: str, path: str) -> Counter[int]:
    """How many requests for ``path`` each worker answered, from the access-log lines."""
    pids: Counter[int] = Counter()
    for line in output.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("event") == "request" and entry.get("path") == path:
                pids[entry["pid"]] += 1
    return pids


def get_on_each(port: int, connections: int) -> list[bytes]:
    """Open ``connections`` connections at once, then GET /health on each (kept open until all
    have answered): the burst a balancer opening its pool sends."""
    socks = [socket.create_connection(("127.0.0.1", port), timeout=30)
             for _ in range(connections)]
    try:
        for sock in socks:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        return [sock.recv(65536).split(b"\r\n", 1)[0] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def test_serve_with_two_workers_spreads_a_burst_of_connections_over_both(
        start_logged) -> None:  # type: ignore[no-untyped-def]
    server = start_logged("--workers", "2")
    server.wait_for("all 2 workers are ready")

    answers = get_on_each(server.port, 32)
    _code, output = server.stop()

    assert answers == [b"HTTP/1.1 200 OK"] * 32
    pids = access_log_pids(output, "/health")
    assert len(pids) == 2, output[-3000:]
    assert min(pids.values()) >= 4, pids  # an even spread; 32 on one worker before
    assert "Traceback" not in output


def test_serve_workers_log_json_lines_at_the_level_given(start_logged) -> None:  # type: ignore[no-untyped-def]
    quiet = start_logged("--workers", "2", "--log-level", "warning")
    loud = start_logged("--workers", "2")
    for server in (quiet, loud):
        server.wait_for("all 2 workers are ready")
        get_on_each(server.port, 8)

    _, quiet_output = quiet.stop()
    _, loud_output = loud.stop()

    assert "/health" not in quiet_output, quiet_output[-2000:]
    assert sum(access_log_pids(loud_output, "/health").values()) == 8, loud_output[-2000:]


def test_serve_replaces_a_worker_that_dies(start_logged) -> None:  # type: ignore[no-untyped-def]
    server = start_logged("--workers", "2")
    server.wait_for("all 2 workers are ready")
    get_on_each(server.port, 16)
    first = access_log_pids(server.logged(), "/health")
    victim = max(first, key=lambda pid: first[pid])
    os.kill(victim, signal.SIGKILL)
    server.wait_for("worker_replaced")

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:  # the new worker starts on the dead one's socket
        answered = access_log_pids(server.logged(), "/health")
        if len(set(answered) - set(first)) == 1:
            break
        get_on_each(server.port, 16)
        time.sleep(0.5)
    _code, output = server.stop()

    pids = access_log_pids(output, "/health")
    assert victim in pids, pids
    assert len(pids) == 3, pids  # both old workers, then the new one
    assert "Traceback" not in output


def test_serve_sighup_replaces_the_workers_one_by_one(start_logged) -> None:  # type: ignore[no-untyped-def]
    server = start_logged("--workers", "2")
    server.wait_for("all 2 workers are ready")
    get_on_each(server.port, 16)
    before = set(access_log_pids(server.logged(), "/health"))
    server.proc.send_signal(signal.SIGHUP)

    deadline, answers = time.monotonic() + 120, []
    while time.monotonic() < deadline:  # requests keep being answered during the restart
        answers += get_on_each(server.port, 4)
        served = set(access_log_pids(server.logged(), "/health"))
        if len(served - before) == 2 and not set(children(server.proc.pid)) & before:
            break
        time.sleep(0.3)
    after = children(server.proc.pid)
    code, output = server.stop()

    assert set(answers) == {b"HTTP/1.1 200 OK"}
    assert not set(after) & before, (before, after)  # both old workers are gone
    assert len(set(access_log_pids(output, "/health")) - before) == 2
    assert code in (0, -signal.SIGTERM)
    assert "Traceback" not in output


def children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True,
                           check=False).stdout.split()
    return [int(p) for p in found]


@pytest.mark.parametrize("reuse_port", [False, True])
def test_serve_with_workers_refuses_a_port_in_use(
        ca: CertificateAuthority, home: Path, reuse_port: bool) -> None:
    with socket.socket() as taken:
        if reuse_port:  # another server with SO_REUSEPORT would otherwise share the port
            taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([KYSO, "serve", "--port", str(port), "--workers", "2"],
                              env=serve_env(home), capture_output=True, text=True,
                              timeout=120, check=False)

    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "in use" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_tls_uses_the_certificate_in_the_home(start, home: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ca_file, cert, key = make_tls(tmp_path)
    (home / "tls").mkdir()
    shutil.copy(cert, home / "tls" / "server.crt.pem")
    shutil.copy(key, home / "tls" / "server.key.pem")
    server = start("--tls", scheme="https")
    trust = ssl.create_default_context(cafile=str(ca_file))
    server.wait_ready(verify=trust)

    answer = httpx.get(f"{server.base}/.well-known/openid-configuration", verify=trust)

    assert answer.json()["issuer"] == server.base


@pytest.mark.parametrize(("args", "message"), [
    (["--tls-cert", "{cert}"], "--tls-cert and --tls-key go together"),
    (["--tls"], "tls/server.crt.pem is missing"),
    (["--workers", "0"], "Invalid value for '--workers'"),
    (["--issuer", "ftp://x"], "--issuer must be an absolute http(s) URL"),
])
def test_serve_refuses_a_wrong_setup_with_a_usage_error(
        ca: CertificateAuthority, home: Path, tmp_path: Path, args: list[str],
        message: str) -> None:
    _, cert, _ = make_tls(tmp_path)
    args = [a.format(cert=cert) for a in args]

    done = subprocess.run([KYSO, "serve", "--port", str(free_port()), *args],
                          env=serve_env(home), capture_output=True, text=True, timeout=120,
                          check=False)

    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_with_a_wrong_token_key_passphrase_fails_once_and_clearly(
        ca: CertificateAuthority, home: Path) -> None:
    first = subprocess.run([KYSO, "serve", "--port", "1", "--workers", "2", "--issuer", "x"],
                           env=serve_env(home), capture_output=True, text=True, timeout=120,
                           check=False)
    assert first.returncode == 2  # the bad issuer: nothing was created yet
    runner = start_serve(free_port(), env=serve_env(home))
    runner.wait_ready()
    runner.stop()  # the key set now exists, encrypted with TOKEN_PASSPHRASE

    done = subprocess.run([KYSO, "serve", "--port", str(free_port()), "--workers", "2"],
                          env=serve_env(home, KYSO_TOKEN_KEY_PASSPHRASE="a-wrong-passphrase!"),
                          capture_output=True, text=True, timeout=120, check=False)

    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "a-wrong-passphrase!" not in done.stderr
    assert done.stderr.count("kyso: ") == 1, done.stderr


def test_ready_on_a_new_home_without_an_audit_log_yet(tmp_path: Path) -> None:
    from kyso.config import load_settings
    from kyso.context import open_kyso
    from kyso.server.health_routes import _checks

    kyso = open_kyso(load_settings(home=tmp_path / "new", environ=FAST_KDF))
    try:
        assert not kyso.settings.audit_dir.exists()
        assert _checks(kyso)["audit_log"] == "ok"
        kyso.settings.audit_dir.parent.chmod(0o500)
        if os.geteuid() != 0:  # root writes anyway
            assert _checks(kyso)["audit_log"].startswith("failed")
    finally:
        kyso.settings.audit_dir.parent.chmod(0o700)
        kyso.close()
