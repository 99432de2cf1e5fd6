#!/usr/bin/env python3
"""`kyso serve` over HTTP, side by side with the same work done in-process, in one run.

A throw-away CA home (bench/bench_ca.py) is served by a real ``kyso serve`` process on loopback;
``wrk`` (Debian package ``wrk``) drives the load, so the client costs little of the 2 cores.

* **ocsp** — POST ``/ocsp/staff`` with one request without a nonce (what RFC 5019 clients send
  and what the responder caches), for ``--seconds`` at ``--concurrency``; next to it, the bare
  response-signing rate of ``OcspResponder.response_for`` in this process (no HTTP, no cache).
  Goal (issue 6): ≥ 2,000 responses/s over HTTP.
* **verify** — POST ``/api/v1/verify`` with a signed ~1 MB dossier, one request at a time,
  against ``PdfVerifier.verify`` on the same bytes in this process, one at a time, taking turns
  (``--rounds`` API rounds, each between two library rounds of ``--round-seconds``; the ratio is
  the median over the rounds, since the machine's load drifts by ±10 % within a run). Goal: the
  HTTP rate within 25 % of the library rate (ratio ≥ 0.75).
* **load** (``--load``) — the acceptance load test: ``--load-seconds`` (60) at concurrency 32
  against OCSP and then against verify (a typical signed dossier), counting every socket error,
  timeout and non-2xx answer, while the server's resident memory is sampled once a second.
  Pass: 0 errors and memory flat (the last third's median within 10 % of the first third's).

Run ``python3 bench/serve_http.py [--seconds 10] [--workers 2] [--rounds 5] [--load]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

sys.path.insert(0, str(Path(__file__).parent))
from bench_ca import PASS, staff_signer

from kyso.pki.authority import CA_NAMES
from kyso.pki.crl import publish_crl
from kyso.pki.ocsp import load_responder, serial_status
from kyso.signing.sample import sample_pdf
from kyso.signing.setup import build_verifier, load_signer
from kyso.signing.sign import SignRequest

TOKEN_PASS = "bench-token-passphrase"
WRK_SCRIPT = """
local f = assert(io.open(os.getenv("BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*all")
f:close()
wrk.headers["Content-Type"] = os.getenv("CTYPE")
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT {\\"requests\\": %d, \\"seconds\\": %f, \\"connect\\": %d, "
    .. "\\"read\\": %d, \\"write\\": %d, \\"status\\": %d, \\"timeout\\": %d, "
    .. "\\"p50_ms\\": %f, \\"p99_ms\\": %f}\\n", summary.requests, summary.duration / 1e6,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` and its children (the uvicorn workers), KiB."""
    total = 0
    for p in [pid, *children(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def wrk(url: str, body: Path, ctype: str, seconds: int, concurrency: int, script: Path,
        threads: int = 2) -> dict[str, float]:
    env = {**os.environ, "BODY": str(body), "CTYPE": ctype}
    done = subprocess.run(["wrk", f"-t{min(threads, concurrency)}", f"-c{concurrency}",
                           f"-d{seconds}s", "--timeout", "30s", "-s", str(script), url],
                          capture_output=True, text=True, env=env, check=True)
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("RESULT "))
    result: dict[str, float] = json.loads(line[len("RESULT "):])
    result["rate"] = result["requests"] / result["seconds"]
    result["errors"] = sum(result[k] for k in ("connect", "read", "write", "status", "timeout"))
    return result


class Server:
    def __init__(self, home: Path, workers: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("KYSO_")}
        env.update(KYSO_HOME=str(home), KYSO_TOKEN_KEY_PASSPHRASE=TOKEN_PASS,
                   KYSO_CA_PASSPHRASE=PASS, KYSO_KEY_KDF_ITERATIONS="2000")
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("kyso")), "serve", "--port", str(self.port),
             "--workers", str(workers), "--log-level", "warning"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if workers > 1:  # every worker, not the first one up: each has its own socket
            ready = threading.Timer(120, self.proc.kill)
            ready.start()
            seen = []
            for line in self.proc.stderr:  # type: ignore[union-attr]
                seen.append(line)
                if "workers are ready" in line:
                    break
            ready.cancel()
            if self.proc.poll() is not None:
                raise SystemExit(f"kyso serve exited: {''.join(seen)}")
            threading.Thread(target=self.proc.stderr.read, daemon=True).start()  # type: ignore[union-attr]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"kyso serve exited: {self.proc.stderr.read()}")  # type: ignore[union-attr]
            try:
                if httpx.get(f"{self.url}/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise SystemExit("kyso serve did not become ready")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def rate(work: object, seconds: float) -> float:
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        work()  # type: ignore[operator]
        count += 1
    return count / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5, help="verify: API rounds, each "
                        "between two library rounds")
    parser.add_argument("--round-seconds", type=int, default=4)
    parser.add_argument("--load", action="store_true")
    parser.add_argument("--load-seconds", type=int, default=60)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        bench = staff_signer(tmp, "ec-p256")
        kyso, ca = bench.kyso, bench.ca
        cert = bench.issued.record.certificate
        issuer = ca.certificate("staff")
        request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()  # noqa: S303
        (tmp / "ocsp.der").write_bytes(request.public_bytes(serialization.Encoding.DER))
        signer = load_signer(bench.p12, "bench-p12-passphrase", kyso.clock)
        big = signer.sign(sample_pdf(pages=2, padding=1_000_000), SignRequest()).data
        small = signer.sign(sample_pdf(pages=2), SignRequest()).data
        (tmp / "big.pdf").write_bytes(big)
        (tmp / "small.pdf").write_bytes(small)
        script = tmp / "post.lua"
        script.write_text(WRK_SCRIPT)

        for name in CA_NAMES:  # B-B verification offline needs the CRLs
            publish_crl(kyso, ca, name)
        # in-process peers
        responder = load_responder(kyso, PASS, "staff")
        status = serial_status(kyso, "staff", cert.serial_number)
        bare_sign = rate(lambda: responder.response_for(cert.serial_number, status), 3)
        verifier = build_verifier(kyso.clock, kyso=kyso)
        assert verifier.verify(big).indication.value == "TOTAL-PASSED"
        library = [rate(lambda: verifier.verify(big), args.round_seconds)]

        server = Server(tmp / "home", args.workers)
        try:
            answer = httpx.post(f"{server.url}/ocsp/staff", content=(tmp / "ocsp.der").read_bytes(),
                                headers={"Content-Type": "application/ocsp-request"})
            parsed = ocsp.load_der_ocsp_response(answer.content)
            assert parsed.certificate_status is ocsp.OCSPCertStatus.GOOD
            check = httpx.post(f"{server.url}/api/v1/verify", content=big, timeout=60,
                               headers={"Content-Type": "application/pdf"}).json()
            assert check["indication"] == "TOTAL-PASSED", check
            ocsp_http = wrk(f"{server.url}/ocsp/staff", tmp / "ocsp.der",
                            "application/ocsp-request", args.seconds, args.concurrency, script)
            # The library and the API take turns, so a drift in the machine's load touches both:
            # each API round is compared with the library rounds just before and after it.
            http: list[dict[str, float]] = []
            for _ in range(args.rounds):
                http.append(wrk(f"{server.url}/api/v1/verify", tmp / "big.pdf",
                                "application/pdf", args.round_seconds, 1, script, threads=1))
                library.append(rate(lambda: verifier.verify(big), args.round_seconds))
            load = run_load(server, tmp, script, args) if args.load else None
        finally:
            server.stop()
        kyso.close()

    print(f"# kyso serve over HTTP — {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"{args.workers} workers, wrk")
    print(f"ocsp   bare response signing (in-process)   {bare_sign:9.0f} /s")
    print(f"ocsp   POST /ocsp/staff, cached, c={args.concurrency:<3}     {ocsp_http['rate']:9.0f} /s"
          f"  p50 {ocsp_http['p50_ms']:.1f} ms  p99 {ocsp_http['p99_ms']:.1f} ms"
          f"  errors {ocsp_http['errors']:.0f}  → {ocsp_http['rate'] / bare_sign:.2f}× bare signing"
          f"  (goal ≥ 2000 /s: {'met' if ocsp_http['rate'] >= 2000 else 'NOT met'})")
    ratios = sorted(h["rate"] / ((library[i] + library[i + 1]) / 2) for i, h in enumerate(http))
    ratio = statistics.median(ratios)
    print(f"verify 1 MB dossier, library (in-process)  {statistics.median(library):9.2f} /s"
          f"  (median of {len(library)} rounds of {args.round_seconds} s: "
          f"{min(library):.1f}–{max(library):.1f})")
    print(f"verify POST /api/v1/verify, c=1             "
          f"{statistics.median(h['rate'] for h in http):9.2f} /s"
          f"  (p50 latency {statistics.median(h['p50_ms'] for h in http):.1f} ms)")
    print(f"verify API / library, per round             {ratio:9.2f}×  (median of {len(ratios)}: "
          f"{', '.join(f'{r:.2f}' for r in ratios)}; goal ≥ 0.75: "
          f"{'met' if ratio >= 0.75 else 'NOT met'})")
    ok = ocsp_http["errors"] == 0 and all(h["errors"] == 0 for h in http)
    if load is not None:
        ok = print_load(load) and ok
    return 0 if ok else 1


def run_load(server: Server, tmp: Path, script: Path, args: argparse.Namespace) -> dict:  # type: ignore[type-arg]
    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    def sample() -> None:
        start = time.monotonic()
        while not stop.wait(1.0):
            samples.append((time.monotonic() - start, rss_kib(server.proc.pid)))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        results = {
            "ocsp": wrk(f"{server.url}/ocsp/staff", tmp / "ocsp.der", "application/ocsp-request",
                        args.load_seconds, 32, script),
            "verify": wrk(f"{server.url}/api/v1/verify", tmp / "small.pdf", "application/pdf",
                          args.load_seconds, 32, script),
        }
    finally:
        stop.set()
        thread.join()
    return {"results": results, "samples": samples}


def print_load(load: dict) -> bool:  # type: ignore[type-arg]
    ok = True
    for name, r in load["results"].items():
        print(f"load   {name:6} c=32 {r['seconds']:.0f} s: {r['requests']:.0f} requests "
              f"({r['rate']:.0f} /s), errors {r['errors']:.0f} (connect {r['connect']:.0f}, "
              f"read {r['read']:.0f}, write {r['write']:.0f}, non-2xx {r['status']:.0f}, "
              f"timeout {r['timeout']:.0f}), p99 {r['p99_ms']:.0f} ms")
        ok = ok and r["errors"] == 0
    rss = [kib for _, kib in load["samples"]]
    third = max(1, len(rss) // 3)
    first, last = statistics.median(rss[:third]), statistics.median(rss[-third:])
    flat = last <= first * 1.10
    print(f"load   server RSS (all workers): first third median {first / 1024:.0f} MiB, last "
          f"third {last / 1024:.0f} MiB, max {max(rss) / 1024:.0f} MiB over {len(rss)} samples "
          f"→ {'flat' if flat else 'GROWING'}")
    return ok and flat


if __name__ == "__main__":
    raise SystemExit(main())
