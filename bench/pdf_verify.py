#!/usr/bin/env python3
"""PDF verification speed: kyso's reusable verifier against stock pyHanko and pdfsig, same files.

A temporary home and CA are created, one staff certificate is issued (RSA-2048 by default),
the CRLs are published, and ``--files`` distinct dossiers (different title and padding) are
signed by ``kyso.signing.setup.load_signer`` at ``--level`` and written to a folder. Then, in
one process, the files are split into ``--rounds`` chunks and each chunk is verified by

* **stock**: what a pyHanko user writes per file, as its documentation shows:
  ``PdfFileReader(open(f, "rb"))``, then for each ``reader.embedded_signatures``
  ``validate_pdf_signature(sig, ValidationContext(trust_roots=[root], crls=[...],
  allow_fetching=False))``, a new ``ValidationContext`` per file. It runs in a spawned worker
  process, because kyso's verifier replaces two pyHanko/asn1crypto hot spots process-wide
  (``kyso.signing.speedups``) and stock must stay stock;
* **kyso**: ``kyso.signing.setup.build_verifier`` once, then ``PdfVerifier.verify`` per file;
* **pdfsig** (poppler, when installed): one subprocess per file with an NSS database trusting
  the root (``-nssdir``, ``-no-ocsp``), on ``--pdfsig-files`` of the files only (it is slow).

The order of the contenders rotates every round, so that machine noise hits all of them. Each
contender's verdict on the first file is checked before timing. The verdict compares median
per-round rates: kyso must verify at least 3× as many files per second as stock pyHanko.
``--profile`` instead runs cProfile on the kyso contender over up to 300 files and prints the
top entries (``--profile-sort``, ``--profile-top``).
Run ``python3 bench/pdf_verify.py [--files N] [--rounds N]``.
Timing only; the temporary home is deleted at the end.
"""

from __future__ import annotations

import argparse
import cProfile
import multiprocessing
import os
import platform
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

from bench_ca import P12, PASS, staff_signer
from cryptography.hazmat.primitives import serialization
from pyhanko.keys import load_cert_from_pemder
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from kyso.clock import SystemClock
from kyso.pki.authority import CA_NAMES
from kyso.pki.crl import publish_crl
from kyso.signing.sample import sample_pdf
from kyso.signing.services import LocalServices
from kyso.signing.setup import build_verifier, load_signer
from kyso.signing.sign import Level, SignRequest

TARGET = 3.0
PROFILE_FILES = 300


def pdfsig_env() -> dict[str, str]:
    """No proxy: pdfsig must not reach for the network."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["LC_ALL"] = "C.UTF-8"
    return env


def make_nssdb(folder: Path, root_pem: Path) -> str | None:
    """An NSS database trusting the root only; None (with a note) if certutil fails."""
    folder.mkdir()
    db = f"sql:{folder}"
    for args in (("-N", "-d", db, "--empty-password"),
                 ("-A", "-d", db, "-n", "kyso bench root", "-t", "CT,C,C", "-i", str(root_pem))):
        proc = subprocess.run(["certutil", *args], capture_output=True, text=True, check=False,
                              timeout=60)
        if proc.returncode != 0:
            print(f"certutil failed: {proc.stdout}{proc.stderr}", file=sys.stderr)
            return None
    return db


def _stock_process(conn: Connection, root_pem: str, crls: list[bytes]) -> None:
    """The stock contender, in a process where kyso never patched pyHanko: what a pyHanko
    user writes per file (the root and CRLs read once, a new ValidationContext per file)."""
    from pyhanko.pdf_utils import generic

    # proof that nothing of kyso's leaked into this process
    assert generic.read_hex_string_from_stream.__module__ == "pyhanko.pdf_utils.generic"
    root = load_cert_from_pemder(root_pem)  # type: ignore[no-untyped-call]

    def verify(path: Path) -> bool:
        ok = True
        with path.open("rb") as fh:
            reader = PdfFileReader(fh)
            for sig in reader.embedded_signatures:
                context = ValidationContext(trust_roots=[root], crls=crls, allow_fetching=False)
                status = validate_pdf_signature(sig, context)
                ok = ok and status.intact and status.valid and status.trusted \
                    and status.bottom_line
        return ok

    while (paths := conn.recv()) is not None:
        start = time.perf_counter()
        failures = sum(not verify(Path(p)) for p in paths)
        conn.send((time.perf_counter() - start, failures))


class StockWorker:
    """Runs chunks of files through :func:`_stock_process` in a spawned process."""

    def __init__(self, root_pem: Path, crls: list[bytes]) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._proc = context.Process(target=_stock_process, args=(child, str(root_pem), crls))
        self._proc.start()

    def run(self, paths: list[Path]) -> tuple[float, int]:
        self._conn.send([str(p) for p in paths])
        elapsed, failures = self._conn.recv()
        return float(elapsed), int(failures)

    def close(self) -> None:
        self._conn.send(None)
        self._proc.join(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pdfsig-files", type=int, default=100)
    parser.add_argument("--key", choices=["rsa-2048", "ec-p256"], default="rsa-2048")
    parser.add_argument("--level", choices=["B-B", "B-T", "B-LT"], default="B-B")
    parser.add_argument("--profile", action="store_true",
                        help=f"cProfile the kyso verifier over up to {PROFILE_FILES} files")
    parser.add_argument("--profile-sort", default="cumulative",
                        help="pstats sort key for --profile (cumulative, tottime, …)")
    parser.add_argument("--profile-top", type=int, default=25)
    args = parser.parse_args()
    if args.files < 1 or not 1 <= args.rounds <= args.files:
        parser.error("need --files ≥ 1 and 1 ≤ --rounds ≤ --files")
    count = min(args.files, PROFILE_FILES) if args.profile else args.files
    level = Level(args.level)
    with tempfile.TemporaryDirectory() as tmp:
        setup = staff_signer(Path(tmp), args.key)
        kyso, ca, p12 = setup.kyso, setup.ca, setup.p12
        root_pem = Path(tmp) / "root.pem"
        root_pem.write_bytes(ca.certificate("root").public_bytes(serialization.Encoding.PEM))
        crls = [publish_crl(kyso, ca, name).der for name in CA_NAMES]

        signer = load_signer(p12, P12, SystemClock(), services=LocalServices(kyso, PASS))
        request = SignRequest(level=level)
        folder = Path(tmp) / "dossiers"
        folder.mkdir()
        files: list[Path] = []
        start = time.perf_counter()
        for i in range(count):
            pdf = sample_pdf(pages=1 + i % 3, title=f"Ho so so {i + 1:04d}: de nghi cap ban sao",
                             padding=(i * 389) % 4096)
            path = folder / f"dossier-{i + 1:04d}.pdf"
            path.write_bytes(signer.sign(pdf, request).data)
            files.append(path)
        sign_seconds = time.perf_counter() - start
        sizes = [p.stat().st_size for p in files]

        verifier = build_verifier(SystemClock(), kyso=kyso)

        def kyso_verify(path: Path) -> bool:
            return verifier.verify(path.read_bytes(), str(path)).passed

        if args.profile:
            report = verifier.verify(files[0].read_bytes(), str(files[0]))
            if not report.passed:
                print(f"kyso does not pass its own file: {report.reasons}", file=sys.stderr)
                return 1
            profiler = cProfile.Profile()
            start = time.perf_counter()
            profiler.enable()
            for path in files:
                verifier.verify(path.read_bytes(), str(path))
            profiler.disable()
            elapsed = time.perf_counter() - start
            kyso.close()
            print(f"kyso verifier under cProfile: {len(files)} files, level {args.level}, "
                  f"key {args.key}, {1000 * elapsed / len(files):.2f} ms/file (profiled)")
            stats = pstats.Stats(profiler).sort_stats(args.profile_sort)
            stats.print_stats(args.profile_top)
            if os.environ.get("PROFILE_CALLEES"):
                stats.print_callees(os.environ["PROFILE_CALLEES"])
            return 0

        # stock runs in its own process: kyso's verifier speeds up pyHanko's hex-string reader
        # and asn1crypto's name comparison for the whole process (kyso.signing.speedups),
        # which would make "stock" not stock any more
        stock = StockWorker(root_pem, crls)

        db = make_nssdb(Path(tmp) / "nssdb", root_pem) if shutil.which("pdfsig") else None
        pdfsig_note = "" if db else ("pdfsig not installed (poppler-utils)"
                                     if not shutil.which("pdfsig") else "no NSS database")

        def pdfsig_verify(path: Path) -> bool:
            proc = subprocess.run(["pdfsig", "-nssdir", str(db), "-no-ocsp", str(path)],
                                  capture_output=True, text=True, check=False, timeout=120,
                                  env=pdfsig_env())
            return (proc.returncode == 0 and "Signature is Valid." in proc.stdout
                    and "Certificate is Trusted." in proc.stdout)

        def timed(verify: Callable[[Path], bool]) -> Callable[[list[Path]], tuple[float, int]]:
            def run(paths: list[Path]) -> tuple[float, int]:
                start = time.perf_counter()
                failures = sum(not verify(path) for path in paths)
                return time.perf_counter() - start, failures
            return run

        contenders: dict[str, Callable[[list[Path]], tuple[float, int]]] = {
            "stock": stock.run, "kyso": timed(kyso_verify)}
        if db:
            contenders["pdfsig"] = timed(pdfsig_verify)
        for name, run in contenders.items():
            if run(files[:1])[1]:
                print(f"{name} does not pass a signed dossier ({files[0].name})", file=sys.stderr)
                stock.close()
                return 1

        chunks = [files[r * len(files) // args.rounds:(r + 1) * len(files) // args.rounds]
                  for r in range(args.rounds)]
        sample = min(args.pdfsig_files, len(files))
        per_round = [sample * (r + 1) // args.rounds - sample * r // args.rounds
                     for r in range(args.rounds)]
        rates: dict[str, list[float]] = {name: [] for name in contenders}
        timed_files = dict.fromkeys(contenders, 0)
        failed = dict.fromkeys(contenders, 0)
        names = list(contenders)
        for r, chunk in enumerate(chunks):
            for name in names[r % len(names):] + names[:r % len(names)]:
                todo = chunk[:per_round[r]] if name == "pdfsig" else chunk
                if not todo:
                    continue
                elapsed, failures = contenders[name](todo)
                failed[name] += failures
                rates[name].append(len(todo) / elapsed)
                timed_files[name] += len(todo)
        stock.close()
        kyso.close()
    med = {k: statistics.median(v) for k, v in rates.items() if v}
    ratio = med["kyso"] / med["stock"]
    print(f"machine: {platform.machine()}, Python {platform.python_version()}, key {args.key}, "
          f"level {args.level}, {len(files)} dossiers of {min(sizes) // 1024}-"
          f"{max(sizes) // 1024} KiB (signed in {sign_seconds:.1f} s), {args.rounds} rounds")
    for k in ("stock", "kyso", "pdfsig"):
        if k in med:
            print(f"  {k:6}  {med[k]:8.1f} files/s   {1000 / med[k]:7.2f} ms/file   "
                  f"({timed_files[k]} files, {failed[k]} not passed)")
    if pdfsig_note:
        print(f"  pdfsig  skipped: {pdfsig_note}")
    print(f"  ratio kyso/stock:  {ratio:.1f}×")
    if "pdfsig" in med:
        print(f"  ratio kyso/pdfsig: {med['kyso'] / med['pdfsig']:.1f}×  "
              f"(pdfsig: one process per file)")
    verdict = "PASS" if ratio >= TARGET else "FAIL"
    print(f"kyso verifies {ratio:.1f}× faster than stock pyHanko (target {TARGET:.0f}×): {verdict}")
    return 0 if ratio >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
