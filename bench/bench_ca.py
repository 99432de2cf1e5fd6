"""A throw-away CA and a staff signer for the PDF benches (one place, so both benches sign with
the same kind of certificate)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kyso.clock import SystemClock
from kyso.config import load_settings
from kyso.context import Kyso, open_kyso
from kyso.pki.authority import CertificateAuthority, init_ca
from kyso.pki.issuance import IssuedCertificate, issue
from kyso.pki.keys import KeyType
from kyso.pki.pkcs12 import build_pkcs12
from kyso.pki.subjects import SubjectRequest

PASS = "bench-ca-passphrase"
P12 = "bench-p12-passphrase"
STAFF = {"name": "Nguyễn Văn An", "id": "019099012345", "title": "Chuyên viên",
         "unit": "Văn phòng UBND xã Phú Đình", "email": "an.nv@thainguyen.gov.vn"}


@dataclass
class BenchSigner:
    kyso: Kyso
    ca: CertificateAuthority
    issued: IssuedCertificate
    p12: bytes  # the staff key and certificate, protected by P12


def staff_signer(tmp: Path, key: str) -> BenchSigner:
    """A CA in ``tmp/home`` (EC P-384, fast key derivation) and a staff certificate with a
    ``key`` (rsa-2048, ec-p256) key. The caller closes ``kyso``."""
    kyso = open_kyso(load_settings(home=tmp / "home", environ={"KYSO_KEY_KDF_ITERATIONS": "2000"}),
                     clock=SystemClock(), actor="bench")
    init_ca(kyso, passphrase=PASS, org="UBND tỉnh Thái Nguyên", province="thai-nguyen",
            key_type=KeyType.EC_P384, base_url="http://pki.thainguyen.gov.vn")
    ca = CertificateAuthority(kyso, PASS)
    issued = issue(kyso, ca, "staff", SubjectRequest.of(**STAFF), key_type=KeyType(key))
    assert issued.private_key is not None
    p12 = build_pkcs12(issued.private_key, issued.record.certificate, list(issued.chain), P12,
                       "bench")
    return BenchSigner(kyso, ca, issued, p12)
