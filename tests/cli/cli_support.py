"""Helpers shared by the ``kyso`` CLI tests (imported by the test modules; not a conftest, so it
cannot clash with ``tests/conftest.py``).

Two ways to run the command line in-process:

- :func:`run_ok` uses click's ``CliRunner`` against ``kyso.cli.cli`` for commands that must
  succeed, and asserts exit code 0;
- :func:`run_main` calls ``kyso.cli.main`` — the one place where errors become messages and exit
  codes — inside ``pytest.raises(SystemExit)`` and captures stdout / stderr with ``capsys``
  (from tests/main_support.py, which the signing CLI tests share; re-exported here).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from conftest import BASE_URL, CITIZEN, ON_POSTGRES, PASSPHRASE, SEAL, STAFF
from kyso.audit import read_events
from kyso.cli import cli
from main_support import Outcome as Outcome
from main_support import run_main as run_main

P12_PASSPHRASE = "holder-p12-passphrase"
ORG = "UBND tỉnh Thái Nguyên"
PROVINCE = "thai-nguyen"
CA_NAMES = ("root", "staff", "citizen", "services")
SERVICE_NAMES = ("ocsp-staff", "ocsp-citizen", "ocsp-services", "tsa", "audit-signer")
SERVICE_ISSUERS = {"ocsp-staff": "staff", "ocsp-citizen": "citizen", "ocsp-services": "services",
                   "tsa": "services", "audit-signer": "services"}
KNOWN_PROFILES = ("audit-signer", "citizen", "issuing-citizen", "issuing-services",
                  "issuing-staff", "ocsp", "root", "seal", "staff", "tsa")

# Command-line arguments for one certificate of each end-entity profile (test fixtures' people).
STAFF_ARGS = ("--profile", "staff", "--name", STAFF["name"], "--id", STAFF["id"],
              "--dob", STAFF["dob"], "--title", STAFF["title"], "--unit", STAFF["unit"],
              "--email", STAFF["email"])
SEAL_ARGS = ("--profile", "seal", "--name", SEAL["name"], "--tax-code", SEAL["tax_code"],
             "--budget-code", SEAL["budget_code"])
CITIZEN_ARGS = ("--profile", "citizen", "--name", CITIZEN["name"], "--id", CITIZEN["id"])
PROFILE_ARGS = {"staff": STAFF_ARGS, "seal": SEAL_ARGS, "citizen": CITIZEN_ARGS}
PROFILE_ISSUER = {"staff": "staff", "seal": "staff", "citizen": "citizen"}


@pytest.fixture(autouse=True)
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str | None) -> None:
    """Passphrases from the environment, no stray KYSO_* settings, outputs in a scratch cwd; the
    test's own database when the suite runs on PostgreSQL (conftest ``database_url``)."""
    for name in ("KYSO_HOME", "KYSO_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    if database_url is not None:
        monkeypatch.setenv("KYSO_DATABASE_URL", database_url)
    monkeypatch.setenv("KYSO_CA_PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("KYSO_P12_PASSPHRASE", P12_PASSPHRASE)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)


def run_ok(home: Path, *args: str) -> Result:
    """Run ``kyso --home HOME ARGS`` through CliRunner and insist that it succeeded."""
    result = CliRunner().invoke(cli, ["--home", str(home), *args])
    assert result.exit_code == 0, (
        f"kyso {' '.join(args)} exited {result.exit_code}\n{result.output}\n{result.exception!r}"
    )
    return result


def run_json(home: Path, *args: str) -> Any:
    return json.loads(run_ok(home, *args).stdout)


def assert_refused(outcome: Outcome, code: int, *needles: str) -> None:
    """A clear refusal: the exit code, an ``error:`` message naming the problem, no traceback,
    and not the catch-all for unexpected exceptions."""
    assert outcome.code == code, f"expected exit {code}, got {outcome.code}\n{outcome.text}"
    assert "Traceback" not in outcome.text, outcome.text
    assert "internal error" not in outcome.text, outcome.text
    assert outcome.err.strip(), "no message on stderr"
    for needle in needles:
        assert needle.lower() in outcome.err.lower(), f"{needle!r} not in {outcome.err!r}"


def init_ca(home: Path, *extra: str) -> Result:
    return run_ok(home, "ca", "init", "--org", ORG, "--province", PROVINCE,
                  "--key-type", "ec-p384", "--base-url", BASE_URL, *extra)


def ca_cert(home: Path, name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((home / "ca" / f"{name}.crt.pem").read_bytes())


def issue(home: Path, profile: str = "staff", *extra: str) -> dict[str, Any]:
    """Issue one certificate through the CLI; return its JSON record (with ``files``)."""
    return run_json(home, "cert", "issue", *PROFILE_ARGS[profile], *extra, "--format", "json")


def listed(home: Path, *filters: str) -> list[dict[str, Any]]:
    return run_json(home, "cert", "list", *filters, "--format", "json")


def serials(home: Path) -> set[str]:
    return {r["serial"] for r in listed(home)}


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (empty if the folder does not exist)."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def audit_lines(home: Path) -> list[dict[str, Any]]:
    return read_events(home / "audit")


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def verifies(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


# --- certificate signing requests -------------------------------------------------------------

def make_csr(key: Any = None, *, name: str = CITIZEN["name"], ca: bool = False,
             extra_attributes: tuple[x509.NameAttribute, ...] = ()) -> x509.CertificateSigningRequest:
    key = key or ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name), *extra_attributes]))
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None),
                                        critical=True)
    return builder.sign(key, hashes.SHA256())


def pem(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_bytes(serialization.Encoding.PEM)


def csr_with_bad_signature() -> bytes:
    """A well-formed DER CSR whose RSA signature no longer matches (last signature byte flipped)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = bytearray(make_csr(key).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01
    loaded = x509.load_der_x509_csr(bytes(der))  # still parses: only the signature is wrong
    assert not loaded.is_signature_valid
    return bytes(der)


def rsa_1024_csr() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return pem(make_csr(key))


# --- subprocesses -----------------------------------------------------------------------------

def subprocess_env(**extra: str) -> dict[str, str]:
    """A child's environment: no stray KYSO_* settings but the test's passphrases, fast KDF and,
    on PostgreSQL, the test's database (KYSO_DATABASE_URL, set by conftest ``database_url``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KYSO_")}
    if ON_POSTGRES and os.environ.get("KYSO_DATABASE_URL"):
        env["KYSO_DATABASE_URL"] = os.environ["KYSO_DATABASE_URL"]
    env.update({"KYSO_CA_PASSPHRASE": PASSPHRASE, "KYSO_P12_PASSPHRASE": P12_PASSPHRASE,
                "KYSO_KEY_KDF_ITERATIONS": "2000",
                "PYTHONWARNINGS": "ignore"})
    env.update(extra)
    return env


def kyso_argv(home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "kyso", "--home", str(home), *args]


def iter_pem_certs(data: bytes) -> Iterator[x509.Certificate]:
    yield from x509.load_pem_x509_certificates(data)
