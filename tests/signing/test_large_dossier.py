"""The acceptance check for large dossiers: a 100 MB PDF signs and verifies with peak memory
under twice its size.

"Peak memory" is measured, not estimated: each case runs in a fresh Python process that
imports everything, builds its signer and verifier and does the same work once on a small
dossier, then resets the kernel's peak-RSS mark (``/proc/self/clear_refs``), reads its
resident size, and only then touches the large file. The figure is the peak resident size
during the work (``VmHWM``) minus the size before it; everything the work allocates or maps
counts, the input included. bench/pdf_large.py prints the same figures for every API and level.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from signing_support import P12_PASSPHRASE, publish_all_crls

from conftest import BASE_URL, FAST_KDF, PASSPHRASE, STAFF
from kyso.clock import SystemClock
from kyso.config import load_settings
from kyso.context import open_kyso
from kyso.pki.authority import CertificateAuthority, init_ca
from kyso.pki.issuance import issue
from kyso.pki.keys import KeyType
from kyso.pki.pkcs12 import build_pkcs12
from kyso.pki.subjects import SubjectRequest
from kyso.signing.sample import sample_pdf, write_sample_pdf

SIZE = 100 * 2**20
LIMIT = 2.0  # peak extra memory, in file sizes

# Runs in a fresh interpreter: argv[1] is a JSON spec. Prints one JSON line of figures.
CHILD = textwrap.dedent('''
    import gc, json, os, resource, sys
    from pathlib import Path

    spec = json.loads(sys.argv[1])

    def status(field):
        try:
            with open("/proc/self/status", encoding="ascii") as fh:
                for line in fh:
                    if line.startswith(field + ":"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return None

    def peak():
        hwm = status("VmHWM")
        if hwm is not None:
            return hwm
        ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # an upper bound
        return ru if sys.platform == "darwin" else ru * 1024

    def measured(work):
        gc.collect()
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
                fh.write("5")
        except OSError:
            pass
        before = status("VmRSS") or peak()
        result = work()
        return result, peak() - before

    if spec["api"] == "library":
        from kyso.clock import SystemClock
        from kyso.config import load_settings
        from kyso.context import open_kyso
        from kyso.signing.services import LocalServices
        from kyso.signing.setup import build_verifier, load_signer
        from kyso.signing.sign import Level, SignRequest

        kyso = open_kyso(load_settings(home=Path(spec["home"])), clock=SystemClock(),
                         actor="test")
        signer = load_signer(Path(spec["p12"]).read_bytes(), spec["p12_passphrase"],
                             SystemClock(), services=LocalServices(kyso, spec["passphrase"]))
        verifier = build_verifier(SystemClock(), kyso=kyso)
        request = SignRequest(level=Level(spec["level"]))

        def work(src, dst):
            signer.sign_file(Path(src), Path(dst), request)
            report = verifier.verify_file(Path(dst))
            return {"verdict": report.indication.value, "reasons": list(report.reasons),
                    "levels": [s.pades_level for s in report.signatures]}
    else:
        from kyso.cli import main

        def cli(*args):
            try:
                main(["--home", spec["home"], "--format", "json", *args])
            except SystemExit as exc:
                return int(exc.code or 0)
            return 0

        def work(src, dst):
            real = sys.stdout
            sys.stdout = open(os.devnull, "w", encoding="utf-8")
            try:
                signed = cli("pdf", "sign", src, "-o", dst, "--p12", spec["p12"],
                             "--level", spec["level"])
                verified = cli("pdf", "verify", dst)
            finally:
                sys.stdout.close()
                sys.stdout = real
            return {"sign_exit": signed, "verify_exit": verified}

    work(spec["small"], spec["small_out"])  # imports, caches, the event loop
    result, increase = measured(lambda: work(spec["input"], spec["output"]))
    print(json.dumps({"result": result, "increase": increase}))
''')


def available_memory() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A home (system clock, as the CLI uses) with a CA, a staff PKCS#12, published CRLs, and
    a 100 MB dossier next to a small one."""
    free = available_memory()
    if free is not None and free < 6 * SIZE:
        pytest.skip(f"only {free // 2**20} MiB of memory available")
    base = tmp_path_factory.mktemp("large")
    home = base / "home"
    kyso = open_kyso(load_settings(home=home, environ=FAST_KDF), clock=SystemClock(),
                     actor="admin:test")
    try:
        init_ca(kyso, passphrase=PASSPHRASE, org="UBND tỉnh Thái Nguyên",
                province="thai-nguyen", key_type=KeyType.EC_P384, base_url=BASE_URL)
        ca = CertificateAuthority(kyso, PASSPHRASE)
        issued = issue(kyso, ca, "staff", SubjectRequest.of(**STAFF), key_type=KeyType.EC_P256)
        assert issued.private_key is not None
        p12 = base / "staff.p12"
        p12.write_bytes(build_pkcs12(issued.private_key, issued.record.certificate,
                                     list(issued.chain), P12_PASSPHRASE, "test"))
        publish_all_crls(kyso, ca)
    finally:
        kyso.close()
    big, small = base / "ho-so-lon.pdf", base / "ho-so.pdf"
    write_sample_pdf(big, pages=2, title="Ho so lon", padding=SIZE)
    small.write_bytes(sample_pdf(pages=2))
    return {"base": base, "home": home, "p12": p12, "big": big, "small": small}


def same_start(path: Path, prefix: Path) -> bool:
    """Whether the file at ``path`` begins with the bytes of the file at ``prefix``."""
    with open(path, "rb") as a, open(prefix, "rb") as b:
        while block := b.read(1 << 20):
            if a.read(len(block)) != block:
                return False
    return True


def run_child(large: dict[str, Any], api: str, level: str) -> tuple[dict[str, Any], int, Path]:
    out = large["base"] / f"{api}-{level}"
    out.mkdir()
    spec = {"api": api, "level": level, "home": str(large["home"]), "p12": str(large["p12"]),
            "p12_passphrase": P12_PASSPHRASE, "passphrase": PASSPHRASE,
            "small": str(large["small"]), "small_out": str(out / "small-signed.pdf"),
            "input": str(large["big"]), "output": str(out / "signed.pdf")}
    env = {**os.environ, **FAST_KDF, "KYSO_CA_PASSPHRASE": PASSPHRASE,
           "KYSO_P12_PASSPHRASE": P12_PASSPHRASE}
    for name in ("KYSO_HOME", "KYSO_DATABASE_URL", "KYSO_PDF_PASSWORD"):
        env.pop(name, None)
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)], capture_output=True,
                          text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    return figures["result"], figures["increase"], out / "signed.pdf"


def test_a_100_mb_dossier_signs_and_verifies_in_under_twice_its_size(
        large: dict[str, Any]) -> None:
    """The library's file API at B-LT (signature, then a DSS appended in place)."""
    size = large["big"].stat().st_size
    assert size >= SIZE

    result, increase, signed = run_child(large, "library", "B-LT")

    assert result["verdict"] == "TOTAL-PASSED", result["reasons"]
    assert result["levels"] == ["B-LT"]
    assert signed.stat().st_size > size
    assert increase < LIMIT * size, f"peak RSS +{increase / 2**20:.1f} MiB for a " \
                                    f"{size / 2**20:.1f} MiB file"
    qpdf = shutil.which("qpdf")
    if qpdf:  # an independent parser accepts the signed file
        check = subprocess.run([qpdf, "--check", str(signed)], capture_output=True, text=True,
                               check=False, timeout=120)
        assert check.returncode == 0, check.stdout + check.stderr


def test_kyso_pdf_sign_and_verify_a_100_mb_dossier_in_under_twice_its_size(
        large: dict[str, Any]) -> None:
    """What users run: ``kyso pdf sign`` then ``kyso pdf verify``, in one fresh process."""
    size = large["big"].stat().st_size

    result, increase, signed = run_child(large, "cli", "B-LT")

    assert result == {"sign_exit": 0, "verify_exit": 0}
    assert same_start(signed, large["big"])  # an incremental update: the input's bytes stay
    assert increase < LIMIT * size, f"peak RSS +{increase / 2**20:.1f} MiB for a " \
                                    f"{size / 2**20:.1f} MiB file"
