"""Building signers and verifiers from what a user has: a PKCS#12 file, a home with a CA,
trust-anchor files. The one place where signing meets the store and the file system."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from kyso.clock import Clock
from kyso.context import Kyso
from kyso.errors import KysoError, SignerCertificateError, SigningError
from kyso.pki.pkcs12 import load_pkcs12
from kyso.pki.serials import serial_hex
from kyso.signing.services import TrustServices
from kyso.signing.sign import PdfSigner
from kyso.signing.verify import (
    PdfVerifier,
    StoreLookup,
    StoreStatus,
    VerifyOptions,
    key_usage_problem,
)
from kyso.store import schema

MAX_P12_BYTES = 1 << 20


def load_signer(data: bytes, passphrase: str, clock: Clock, *,
                services: TrustServices | None = None, digest: str = "sha256") -> PdfSigner:
    """Unlock a PKCS#12 once and keep its key object for every document."""
    if len(data) > MAX_P12_BYTES:
        raise SigningError("the PKCS#12 file is larger than 1 MiB; it is not a signer's bundle")
    bundle = load_pkcs12(data, passphrase)
    key = bundle.key
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise SigningError("the PKCS#12 key is neither RSA nor EC; PDF signing needs one of them")
    assert bundle.cert is not None  # load_pkcs12 refuses a bundle without one
    cert = bundle.cert.certificate
    if key.public_key().public_numbers() != cert.public_key().public_numbers():  # type: ignore[union-attr]
        raise SigningError("the PKCS#12 key does not match its certificate")
    chain = tuple(c.certificate for c in bundle.additional_certs)
    return PdfSigner.from_key(key, cert, chain, clock, services=services, digest=digest)


def store_lookup(kyso: Kyso) -> StoreLookup:
    """The status this home's CA records for a certificate it issued (None for others)."""
    c = schema.certificates

    def lookup(cert: x509.Certificate) -> StoreStatus | None:
        with kyso.store.read() as conn:
            row = conn.execute(
                sa.select(c.c.status, c.c.revoked_at, c.c.der)
                .where(c.c.serial == serial_hex(cert.serial_number))
            ).mappings().first()
        if row is None or row["der"] != cert.public_bytes(serialization.Encoding.DER):
            return None
        return StoreStatus(row["status"], row["revoked_at"])

    return lookup


def check_signer(cert: x509.Certificate, now: dt.datetime, lookup: StoreLookup | None) -> None:
    """Circular 15/2025: signing software checks the signer's certificate before signing."""
    if now < cert.not_valid_before_utc:
        raise SignerCertificateError(
            f"the signer's certificate is not valid before {cert.not_valid_before_utc:%Y-%m-%d}")
    if now > cert.not_valid_after_utc:
        raise SignerCertificateError(
            f"the signer's certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}")
    problem = key_usage_problem(cert)
    if problem is not None:
        raise SignerCertificateError(f"the signer's certificate cannot sign: {problem}")
    status = lookup(cert) if lookup else None
    if status is not None and status.status == "revoked":
        raise SignerCertificateError("the signer's certificate is revoked")
    if status is not None and status.status == "on_hold":
        raise SignerCertificateError("the signer's certificate is on hold")


def read_certificates(paths: Sequence[Path]) -> tuple[x509.Certificate, ...]:
    out: list[x509.Certificate] = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise KysoError(f"cannot read trust anchor {path}: {exc.strerror}") from None
        try:
            out += (x509.load_pem_x509_certificates(data) if b"-----BEGIN" in data
                    else [x509.load_der_x509_certificate(data)])
        except ValueError:
            raise KysoError(f"{path} is not a PEM or DER certificate") from None
    return tuple(out)


def home_crls(kyso: Kyso) -> tuple[bytes, ...]:
    """The CRLs this home has published (signed, so they are evidence, not just state);
    :class:`KysoError` naming a file that is not a CRL."""
    folder = kyso.settings.crl_dir
    if not folder.is_dir():
        return ()
    crls = []
    for path in sorted(folder.glob("*.crl")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        try:
            x509.load_der_x509_crl(data)
        except ValueError:  # damaged (a truncated copy, a full disk): no verdict rests on it
            raise KysoError(f"the published CRL {path} is not a DER CRL ({len(data)} bytes): "
                            "publish it again with kyso crl publish") from None
        crls.append(data)
    return tuple(crls)


def build_verifier(clock: Clock, *, kyso: Kyso | None, trust: Sequence[Path] = (),
                   online: bool = False) -> PdfVerifier:
    """Trust anchors: ``trust`` files, else this home's root. The home also lends its published
    CRLs and its store's revocation state."""
    roots = read_certificates(trust)
    if not roots and kyso is not None:
        from kyso.pki.authority import list_authorities

        roots = tuple(a.certificate for a in list_authorities(kyso) if a.parent is None)
    if not roots:
        raise KysoError("no trust anchor: give --trust root.pem or use a home with a CA")
    options = VerifyOptions(
        trust_roots=roots, crls=home_crls(kyso) if kyso is not None else (), online=online,
        store=store_lookup(kyso) if kyso is not None else None)
    return PdfVerifier(options, clock)
