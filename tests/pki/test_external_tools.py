"""Acceptance tests judged by independent tools: pkilint, OpenSSL and NSS.

Every test writes kyso's output to files in ``tmp_path`` and asks a real binary about it:
``lint_pkix_cert`` / ``lint_etsi_cert`` / ``lint_crl`` (pkilint), ``openssl verify``,
``openssl pkcs12``, ``openssl x509`` and NSS's ``certutil`` / ``pk12util``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import unicodedata
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import BASE_URL, CITIZEN, PASSPHRASE, SEAL, STAFF, T0
from kyso.clock import FrozenClock
from kyso.config import load_settings
from kyso.context import Kyso, open_kyso
from kyso.pki.authority import (
    CertificateAuthority,
    init_ca,
    list_authorities,
    list_services,
)
from kyso.pki.crl import publish_crl
from kyso.pki.issuance import IssuedCertificate, issue
from kyso.pki.keys import KeyType, key_type_of, signature_hash
from kyso.pki.lifecycle import hold, release, revoke
from kyso.pki.pkcs12 import build_pkcs12
from kyso.pki.subjects import SubjectRequest

TOOLS = ("openssl", "certutil", "pk12util", "lint_pkix_cert", "lint_etsi_cert", "lint_crl")
_MISSING = [tool for tool in TOOLS if shutil.which(tool) is None]
if _MISSING:
    pytest.skip(f"external tools not installed: {', '.join(_MISSING)} "
                "(install openssl, libnss3-tools and pkilint)", allow_module_level=True)

P12_PASSPHRASE = "Bundle-Pass-2026!"
ORG = "UBND tỉnh Thái Nguyên"
PROVINCE = "Thái Nguyên"

# Every certificate kind a CA home holds right after `ca init`.
AUTHORITY_KINDS = {"root", "staff", "citizen", "services"}
SERVICE_KINDS = {"ocsp-staff", "ocsp-citizen", "ocsp-services", "tsa", "audit-signer"}
ISSUED_KINDS = {"staff-cert", "seal-cert", "citizen-cert"}


# --------------------------------------------------------------------------- helpers


def run(args: list[str], *, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a tool; stdout and stderr are decoded as UTF-8 (OpenSSL writes raw UTF-8)."""
    return subprocess.run(
        args, capture_output=True, encoding="utf-8", errors="replace", timeout=120,
        env=env, check=False,
    )


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def at(moment: dt.datetime) -> str:
    """``openssl verify -attime`` value: the frozen clock's moment, never the real time."""
    return str(int(moment.timestamp()))


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def pkix_findings(path: Path) -> list[str]:
    """Findings of ``lint_pkix_cert`` at WARNING or above, as readable strings."""
    proc = run(["lint_pkix_cert", "lint", "-s", "WARNING", "-f", "JSON", str(path)])
    try:
        results = json.loads(proc.stdout)["results"]
    except (ValueError, KeyError):
        return [f"unparsable output (exit {proc.returncode}): {proc.stdout!r} {proc.stderr!r}"]
    findings = [
        f"{r['validator']} @ {r['node_path']}: {f['code']} ({f['severity']})"
        for r in results for f in r["finding_descriptions"]
    ]
    if proc.returncode != len(findings):
        findings.append(f"exit code {proc.returncode} with {len(findings)} findings listed; "
                        f"stderr: {proc.stderr!r}")
    return findings


def issue_subscribers(
    kyso: Kyso, ca: CertificateAuthority, key_types: dict[str, KeyType] | None = None
) -> dict[str, IssuedCertificate]:
    """One staff, one seal and one citizen certificate, as an admin would issue them."""
    key_types = key_types or {}
    out = {}
    for profile, details in (("staff", STAFF), ("seal", SEAL), ("citizen", CITIZEN)):
        options = {"key_type": key_types[profile]} if profile in key_types else {}
        out[profile] = issue(kyso, ca, profile, SubjectRequest.of(**details), **options)
    return out


def lint_every_kind(kyso: Kyso, ca: CertificateAuthority, folder: Path,
                    key_types: dict[str, KeyType] | None = None) -> dict[str, list[str]]:
    """Write every certificate kind of a home to ``folder`` and lint each; ``{kind: findings}``."""
    folder.mkdir(parents=True, exist_ok=True)
    certs = {a.name: a.certificate for a in list_authorities(kyso)}
    certs.update({s.name: s.certificate for s in list_services(kyso)})
    for profile, issued in issue_subscribers(kyso, ca, key_types).items():
        certs[f"{profile}-cert"] = issued.record.certificate
    assert set(certs) == AUTHORITY_KINDS | SERVICE_KINDS | ISSUED_KINDS
    return {kind: pkix_findings(write(folder / f"{kind}.pem", pem(cert)))
            for kind, cert in sorted(certs.items())}


def openssl_verify(tmp_path: Path, ca: CertificateAuthority, cert: x509.Certificate,
                   crl: bytes | None, when: dt.datetime, name: str) -> str:
    """``openssl verify`` of a staff-CA certificate against the root, with or without a CRL;
    returns stdout + stderr."""
    root = write(tmp_path / "root.pem", pem(ca.certificate("root")))
    issuing = write(tmp_path / "issuing.pem", pem(ca.certificate("staff")))
    leaf = write(tmp_path / f"{name}.pem", pem(cert))
    args = ["openssl", "verify", "-attime", at(when), "-CAfile", str(root),
            "-untrusted", str(issuing)]
    if crl is not None:
        crl_file = write(tmp_path / f"{name}.crl.pem", crl)
        args += ["-crl_check", "-CRLfile", str(crl_file)]
    proc = run([*args, str(leaf)])
    output = proc.stdout + proc.stderr
    # Exit status and message must agree: 0 with ": OK", non-zero otherwise.
    assert (proc.returncode == 0) == output.rstrip().endswith(": OK"), output
    return output


def crl_pem(result_der: bytes) -> bytes:
    return x509.load_der_x509_crl(result_der).public_bytes(serialization.Encoding.PEM)


# --------------------------------------------------------------------------- 1. RFC 5280


@pytest.mark.external
def test_pkilint_pkix_every_certificate_kind_ec_p384(
    kyso: Kyso, ca: CertificateAuthority, tmp_path: Path
) -> None:
    findings = lint_every_kind(kyso, ca, tmp_path / "lint")
    assert findings == {kind: [] for kind in findings}


@pytest.mark.external
@pytest.mark.slow
def test_pkilint_pkix_every_certificate_kind_rsa_4096(tmp_path: Path) -> None:
    clock = FrozenClock(T0)
    kyso = open_kyso(load_settings(home=tmp_path / "rsa-home", environ={}), clock=clock,
                     actor="admin:test")
    try:
        init_ca(kyso, passphrase=PASSPHRASE, org=ORG, province="thai-nguyen",
                key_type=KeyType.RSA_4096, base_url=BASE_URL)
        ca = CertificateAuthority(kyso, PASSPHRASE)
        assert {key_type_of(a.certificate.public_key()) for a in list_authorities(kyso)} == {
            KeyType.RSA_4096}
        findings = lint_every_kind(
            kyso, ca, tmp_path / "lint",
            key_types={"staff": KeyType.RSA_2048, "seal": KeyType.RSA_3072,
                       "citizen": KeyType.RSA_2048},
        )
    finally:
        kyso.close()
    assert findings == {kind: [] for kind in findings}


# --------------------------------------------------------------------------- 2. ETSI


@pytest.mark.external
@pytest.mark.parametrize(
    ("profile", "etsi_type"),
    [
        ("staff", "NCP-NATURAL-PERSON-CERTIFICATE"),
        ("citizen", "NCP-NATURAL-PERSON-CERTIFICATE"),
        ("seal", "NCP-LEGAL-PERSON-CERTIFICATE"),
    ],
)
def test_pkilint_etsi_subscriber_certificates(
    kyso: Kyso, ca: CertificateAuthority, tmp_path: Path, profile: str, etsi_type: str
) -> None:
    details = {"staff": STAFF, "seal": SEAL, "citizen": CITIZEN}[profile]
    issued = issue(kyso, ca, profile, SubjectRequest.of(**details))
    path = write(tmp_path / f"{profile}.pem", issued.record.pem)
    proc = run(["lint_etsi_cert", "lint", "-t", etsi_type, "-s", "ERROR", str(path)])
    assert (proc.returncode, proc.stdout.strip()) == (0, ""), proc.stdout + proc.stderr


# --------------------------------------------------------------------------- 3. CRL


@pytest.mark.external
def test_pkilint_crl_with_revocations_and_hold(
    kyso: Kyso, ca: CertificateAuthority, clock: FrozenClock, tmp_path: Path
) -> None:
    # A CRL with nothing revoked must lint clean too (revokedCertificates is then omitted).
    empty = publish_crl(kyso, ca, "staff", tmp_path / "empty")
    assert len(x509.load_der_x509_crl(empty.der)) == 0

    certs = {
        who: issue(kyso, ca, "staff",
                   SubjectRequest.of(**{**STAFF, "email": f"{who}@thainguyen.gov.vn"}))
        for who in ("compromised", "moved", "suspended")
    }
    invalid_since = clock.now() - dt.timedelta(hours=6)
    revoke(kyso, certs["compromised"].record.serial, reason="keyCompromise",
           invalidity_date=invalid_since)
    revoke(kyso, certs["moved"].record.serial, reason="affiliationChanged")
    hold(kyso, certs["suspended"].record.serial)
    clock.advance(dt.timedelta(minutes=5))
    full = publish_crl(kyso, ca, "staff", tmp_path / "full")

    # The CRL really holds what this test claims to lint.
    crl = x509.load_der_x509_crl(full.der)
    entries = {}
    for who, issued in certs.items():
        entry = crl.get_revoked_certificate_by_serial_number(
            issued.record.certificate.serial_number)
        assert entry is not None, who
        entries[who] = entry
    reasons = {who: e.extensions.get_extension_for_class(x509.CRLReason).value.reason
               for who, e in entries.items()}
    assert reasons == {"compromised": x509.ReasonFlags.key_compromise,
                       "moved": x509.ReasonFlags.affiliation_changed,
                       "suspended": x509.ReasonFlags.certificate_hold}
    invalidity = entries["compromised"].extensions.get_extension_for_class(x509.InvalidityDate)
    assert invalidity.value.invalidity_date_utc == invalid_since

    for result in (empty, full):
        proc = run(["lint_crl", "lint", "-t", "CRL", "-p", "PKIX", "-s", "WARNING",
                    str(result.pem_path)])
        assert (proc.returncode, proc.stdout.strip()) == (0, ""), (
            f"CRL #{result.number}: {proc.stdout}{proc.stderr}")


# --------------------------------------------------------------------------- 4. openssl verify


@pytest.mark.external
def test_openssl_verify_good_and_revoked(
    kyso: Kyso, ca: CertificateAuthority, clock: FrozenClock, tmp_path: Path
) -> None:
    good = issue(kyso, ca, "staff", SubjectRequest.of(**STAFF))
    compromised = issue(kyso, ca, "staff",
                        SubjectRequest.of(**{**STAFF, "email": "lost@thainguyen.gov.vn"}))
    moved = issue(kyso, ca, "staff",
                  SubjectRequest.of(**{**STAFF, "email": "moved@thainguyen.gov.vn"}))
    revoke(kyso, compromised.record.serial, reason="keyCompromise",
           invalidity_date=clock.now() - dt.timedelta(hours=1))
    revoke(kyso, moved.record.serial, reason="affiliationChanged")
    result = publish_crl(kyso, ca, "staff", tmp_path / "crl")
    crl = result.pem_path.read_bytes()
    when = clock.now() + dt.timedelta(minutes=1)

    out = openssl_verify(tmp_path, ca, good.record.certificate, crl, when, "good")
    assert out.rstrip().endswith(": OK"), out
    for name, issued in (("compromised", compromised), ("moved", moved)):
        out = openssl_verify(tmp_path, ca, issued.record.certificate, crl, when, name)
        assert "certificate revoked" in out, (name, out)


@pytest.mark.external
def test_openssl_verify_hold_then_release(
    kyso: Kyso, ca: CertificateAuthority, clock: FrozenClock, tmp_path: Path
) -> None:
    held = issue(kyso, ca, "staff", SubjectRequest.of(**STAFF))
    cert = held.record.certificate
    hold(kyso, held.record.serial)
    on_hold = publish_crl(kyso, ca, "staff", tmp_path / "crl-1")
    out = openssl_verify(tmp_path, ca, cert, on_hold.pem_path.read_bytes(),
                         clock.now() + dt.timedelta(minutes=1), "held")
    assert "certificate revoked" in out, out

    clock.advance(dt.timedelta(hours=1))
    release(kyso, held.record.serial)
    released = publish_crl(kyso, ca, "staff", tmp_path / "crl-2")
    assert released.number == on_hold.number + 1
    out = openssl_verify(tmp_path, ca, cert, released.pem_path.read_bytes(),
                         clock.now() + dt.timedelta(minutes=1), "released")
    assert out.rstrip().endswith(": OK"), out


def _forge_staff_certificate(
    ca: CertificateAuthority, template: x509.Certificate, *, email: str,
    subject: x509.Name | None = None,
) -> x509.Certificate:
    """A copy of ``template`` with a new key, e-mail SAN and (optionally) subject, signed by
    the real staff CA key — bypassing kyso's own domain check."""
    issuer = ca.issuer("staff")
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject or template.subject)
        .issuer_name(template.issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(template.not_valid_before_utc)
        .not_valid_after(template.not_valid_after_utc)
    )
    for ext in template.extensions:
        value: x509.ExtensionType = ext.value
        if isinstance(value, x509.SubjectAlternativeName):
            value = x509.SubjectAlternativeName([x509.RFC822Name(email)])
        elif isinstance(value, x509.SubjectKeyIdentifier):
            value = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        builder = builder.add_extension(value, ext.critical)
    return builder.sign(issuer.key, signature_hash(issuer.key))


def _with_org(name: x509.Name, org: str) -> x509.Name:
    return x509.Name([
        x509.RelativeDistinguishedName([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)
            if a.oid == NameOID.ORGANIZATION_NAME else a
            for a in rdn
        ])
        for rdn in name.rdns
    ])


@pytest.mark.external
def test_openssl_enforces_staff_ca_name_constraints(
    kyso: Kyso, ca: CertificateAuthority, clock: FrozenClock, tmp_path: Path
) -> None:
    template = issue(kyso, ca, "staff", SubjectRequest.of(**STAFF)).record.certificate
    when = clock.now() + dt.timedelta(minutes=1)

    # Control: the hand-built copy inside the constraints verifies, so a failure below is the
    # constraint and nothing else.
    inside = _forge_staff_certificate(ca, template, email="khac.nv@sotttt.thainguyen.gov.vn")
    out = openssl_verify(tmp_path, ca, inside, None, when, "inside")
    assert out.rstrip().endswith(": OK"), out

    outside_email = _forge_staff_certificate(ca, template, email="an.nv@example.com")
    out = openssl_verify(tmp_path, ca, outside_email, None, when, "outside-email")
    assert "permitted subtree violation" in out, out

    outside_dir = _forge_staff_certificate(
        ca, template, email=STAFF["email"], subject=_with_org(template.subject, "UBND tỉnh Khác"))
    out = openssl_verify(tmp_path, ca, outside_dir, None, when, "outside-dirname")
    assert "permitted subtree violation" in out, out


# --------------------------------------------------------------------------- 5. PKCS#12


@pytest.fixture
def p12_file(kyso: Kyso, ca: CertificateAuthority, tmp_path: Path) -> tuple[Path, x509.Certificate]:
    issued = issue(kyso, ca, "staff", SubjectRequest.of(**STAFF))
    assert issued.private_key is not None
    data = build_pkcs12(issued.private_key, issued.record.certificate, issued.chain,
                        P12_PASSPHRASE, STAFF["name"])
    return write(tmp_path / "an.p12", data), issued.record.certificate


@pytest.mark.external
def test_openssl_reads_pkcs12_with_default_provider_only(
    p12_file: tuple[Path, x509.Certificate], tmp_path: Path
) -> None:
    path, _cert = p12_file
    # An empty config: no system openssl.cnf can switch the legacy provider on behind our back.
    conf = write(tmp_path / "openssl.cnf", b"")
    env = {**os.environ, "OPENSSL_CONF": str(conf)}
    proc = run(["openssl", "pkcs12", "-provider", "default", "-info", "-in", str(path),
                "-passin", f"pass:{P12_PASSPHRASE}", "-noout"], env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "MAC: sha256" in out, out
    assert "AES-256-CBC" in out, out
    assert "PBKDF2" in out, out
    assert "hmacWithSHA256" in out, out
    for weak in ("RC2", "3DES", "DES-EDE3", "pbeWithSHA1", "40-bit"):
        assert weak.lower() not in out.lower(), (weak, out)
    # Every encrypted part (certificate bags and the shrouded key bag) uses PBES2/AES-256.
    encrypted = [line for line in out.splitlines()
                 if line.startswith(("PKCS7 Encrypted data:", "Shrouded Keybag:"))]
    assert len(encrypted) == 2, out
    assert all("PBES2, PBKDF2, AES-256-CBC" in line for line in encrypted), out


@pytest.mark.external
def test_nss_imports_pkcs12(p12_file: tuple[Path, x509.Certificate], tmp_path: Path) -> None:
    path, cert = p12_file
    db = tmp_path / "nssdb"
    db.mkdir()
    nssdb = f"sql:{db}"
    proc = run(["certutil", "-N", "-d", nssdb, "--empty-password"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = run(["pk12util", "-i", str(path), "-d", nssdb, "-W", P12_PASSPHRASE])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PKCS12 IMPORT SUCCESSFUL" in proc.stdout + proc.stderr

    listing = run(["certutil", "-L", "-d", nssdb])
    assert listing.returncode == 0, listing.stdout + listing.stderr
    nickname = nfc(STAFF["name"])
    user_lines = [line for line in listing.stdout.splitlines() if line.startswith(nickname)]
    assert len(user_lines) == 1, listing.stdout
    assert user_lines[0].split()[-1] == "u,u,u", listing.stdout  # "u": NSS holds its key
    assert "Staff CA G1" in listing.stdout, listing.stdout
    assert "Root CA G1" in listing.stdout, listing.stdout

    exported = run(["certutil", "-L", "-d", nssdb, "-n", nickname, "-a"])
    assert exported.returncode == 0, exported.stdout + exported.stderr
    assert x509.load_pem_x509_certificate(exported.stdout.encode("ascii")) == cert
    keys = run(["certutil", "-K", "-d", nssdb])
    assert keys.returncode == 0, keys.stdout + keys.stderr
    assert nickname in keys.stdout, keys.stdout


# --------------------------------------------------------------------------- 6. UTF-8 subject


def _subject_line(text: str) -> str:
    """The ``Subject:`` line of ``openssl x509 -text``, with ``A = v`` spacing normalised."""
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith("Subject:")]
    assert len(lines) == 1, text
    return re.sub(r"\s*=\s*", "=", lines[0].removeprefix("Subject:").strip())


EXPECTED_SUBJECTS = {
    "staff": (
        f"C=VN, ST={PROVINCE}, O={ORG}, OU=Văn phòng UBND xã Phú Đình, title=Chuyên viên, "
        "SN=Nguyễn, GN=Văn An, CN=Nguyễn Văn An, serialNumber=IDCVN-019099012345, "
        "UID=CCCD:019099012345"
    ),
    "seal": (
        f"C=VN, ST={PROVINCE}, O={ORG}, CN=UBND xã Phú Đình, "
        "organizationIdentifier=NTRVN-4600100155, UID=MST:4600100155, UID=MNS:1234567"
    ),
    "citizen": (
        "C=VN, SN=Trần, GN=Thị Bình, CN=Trần Thị Bình, serialNumber=IDCVN-033301000123, "
        "UID=CCCD:033301000123"
    ),
}


@pytest.mark.external
@pytest.mark.parametrize("profile", sorted(EXPECTED_SUBJECTS))
def test_openssl_prints_vietnamese_subject_in_utf8(
    kyso: Kyso, ca: CertificateAuthority, tmp_path: Path, profile: str
) -> None:
    details = {"staff": STAFF, "seal": SEAL, "citizen": CITIZEN}[profile]
    issued = issue(kyso, ca, profile, SubjectRequest.of(**details))
    path = write(tmp_path / f"{profile}.pem", issued.record.pem)
    proc = run(["openssl", "x509", "-in", str(path), "-noout", "-text", "-nameopt", "utf8"])
    assert proc.returncode == 0, proc.stderr
    subject = _subject_line(proc.stdout)
    assert "\\" not in subject, subject  # no \C3\A1-style escapes
    assert subject == nfc(EXPECTED_SUBJECTS[profile])
    # The bytes OpenSSL printed are the certificate's own NFC text, not a re-encoding.
    for attr in issued.record.certificate.subject:
        assert str(attr.value) in subject
