"""Signing fixtures: staff, seal and citizen signers from the test CA, the home's services,
published CRLs and a verifier trusting the test root."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from conftest import CITIZEN, PASSPHRASE, SEAL, STAFF
from kyso.context import Kyso
from kyso.pki.authority import CertificateAuthority
from kyso.pki.crl import publish_crl
from kyso.pki.issuance import IssuedCertificate, issue
from kyso.pki.keys import KeyType
from kyso.pki.pkcs12 import build_pkcs12
from kyso.pki.subjects import SubjectRequest
from kyso.signing.sample import sample_pdf
from kyso.signing.services import LocalServices
from kyso.signing.setup import build_verifier
from kyso.signing.sign import PdfSigner
from kyso.signing.verify import PdfVerifier

P12_PASSPHRASE = "p12-passphrase-for-tests"


@dataclass(frozen=True)
class Holder:
    issued: IssuedCertificate
    signer: PdfSigner

    @property
    def certificate(self) -> x509.Certificate:
        return self.issued.record.certificate

    def p12(self) -> bytes:
        return build_pkcs12(self.issued.private_key, self.certificate, list(self.issued.chain),
                            P12_PASSPHRASE, "test")


def make_holder(kyso: Kyso, ca: CertificateAuthority, services: LocalServices, profile: str,
                fields: dict[str, str], key_type: KeyType = KeyType.EC_P256) -> Holder:
    issued = issue(kyso, ca, profile, SubjectRequest.of(**fields), key_type=key_type)
    assert issued.private_key is not None
    signer = PdfSigner.from_key(issued.private_key, issued.record.certificate,  # type: ignore[arg-type]
                                tuple(issued.chain), kyso.clock, services=services)
    return Holder(issued, signer)


@pytest.fixture
def services(kyso: Kyso, ca: CertificateAuthority) -> LocalServices:
    return LocalServices(kyso, PASSPHRASE)


@pytest.fixture
def staff(kyso: Kyso, ca: CertificateAuthority, services: LocalServices) -> Holder:
    return make_holder(kyso, ca, services, "staff", STAFF)


@pytest.fixture
def seal(kyso: Kyso, ca: CertificateAuthority, services: LocalServices) -> Holder:
    return make_holder(kyso, ca, services, "seal", SEAL)


@pytest.fixture
def citizen(kyso: Kyso, ca: CertificateAuthority, services: LocalServices) -> Holder:
    return make_holder(kyso, ca, services, "citizen", CITIZEN)


def publish_all_crls(kyso: Kyso, ca: CertificateAuthority) -> None:
    for name in ("root", "staff", "citizen", "services"):
        publish_crl(kyso, ca, name)


@pytest.fixture
def verifier(kyso: Kyso, ca: CertificateAuthority) -> PdfVerifier:
    """Trusts the test root; uses the CRLs published now (B-B and B-T need them offline)."""
    publish_all_crls(kyso, ca)
    return build_verifier(kyso.clock, kyso=kyso)


@pytest.fixture
def dossier() -> bytes:
    return sample_pdf(pages=2)


@pytest.fixture
def root_pem(tmp_path: Path, ca: CertificateAuthority) -> Path:
    path = tmp_path / "root.pem"
    path.write_bytes(ca.certificate("root").public_bytes(serialization.Encoding.PEM))
    return path


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120,
                          check=False)
