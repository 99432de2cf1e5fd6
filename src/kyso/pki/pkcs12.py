"""PKCS#12 bundles for holders: AES-256-CBC with PBKDF2-HMAC-SHA-256 and a SHA-256 MAC
(never RC2 or 3DES), readable by OpenSSL 3 with its default provider and by NSS."""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import PrivateFormat, pkcs12
from cryptography.hazmat.primitives.serialization.pkcs12 import PBES

from kyso.config import check_new_passphrase
from kyso.errors import PkiError
from kyso.pki.keys import PrivateKey

KDF_ROUNDS = 100_000


def build_pkcs12(
    key: PrivateKey,
    certificate: x509.Certificate,
    chain: Sequence[x509.Certificate],
    passphrase: str,
    friendly_name: str,
) -> bytes:
    check_new_passphrase(passphrase, "PKCS#12 passphrase")
    encryption = (
        PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(KDF_ROUNDS)
        .key_cert_algorithm(PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(passphrase.encode("utf-8"))
    )
    return pkcs12.serialize_key_and_certificates(
        friendly_name.encode("utf-8"), key, certificate, list(chain), encryption
    )


def load_pkcs12(data: bytes, passphrase: str) -> pkcs12.PKCS12KeyAndCertificates:
    try:
        bundle = pkcs12.load_pkcs12(data, passphrase.encode("utf-8"))
    except ValueError:
        raise PkiError("cannot open the PKCS#12: wrong passphrase or not a PKCS#12 file") from None
    if bundle.key is None:
        raise PkiError("the PKCS#12 holds no private key")
    if bundle.cert is None:
        raise PkiError("the PKCS#12 holds no certificate")
    return bundle
