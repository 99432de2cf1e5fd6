"""Key types, generation, and private keys encrypted at rest (PKCS#8 + passphrase, 0600)."""

from __future__ import annotations

import base64
import binascii
import hashlib
from enum import Enum
from pathlib import Path
from typing import TypeAlias

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from kyso.errors import KeyFileError, KeyPolicyError, PassphraseError
from kyso.files import atomic_write
from kyso.pki.pkcs8 import DEFAULT_ITERATIONS, encrypt_pkcs8

PrivateKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey: TypeAlias = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


class KeyType(Enum):
    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"
    RSA_4096 = "rsa-4096"
    EC_P256 = "ec-p256"
    EC_P384 = "ec-p384"
    ED25519 = "ed25519"

    @classmethod
    def parse(cls, value: str) -> KeyType:
        try:
            return cls(value.strip().lower())
        except ValueError:
            allowed = ", ".join(k.value for k in cls)
            raise KeyPolicyError(f"unknown key type {value!r}; use one of {allowed}") from None

    @property
    def is_rsa(self) -> bool:
        return self.value.startswith("rsa-")


_CURVES = {KeyType.EC_P256: ec.SECP256R1, KeyType.EC_P384: ec.SECP384R1}
_RSA_BITS = {KeyType.RSA_2048: 2048, KeyType.RSA_3072: 3072, KeyType.RSA_4096: 4096}


def generate_key(key_type: KeyType) -> PrivateKey:
    if key_type in _RSA_BITS:
        return rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS[key_type])
    if key_type in _CURVES:
        return ec.generate_private_key(_CURVES[key_type]())
    return ed25519.Ed25519PrivateKey.generate()


def key_type_of(public_key: object) -> KeyType:
    """The :class:`KeyType` of a public key; anything else (RSA-1024, P-521, DSA…) is refused."""
    if isinstance(public_key, rsa.RSAPublicKey):
        bits = public_key.key_size
        for kt, size in _RSA_BITS.items():
            if size == bits:
                return kt
        raise KeyPolicyError(f"RSA key of {bits} bits is not allowed (2048, 3072 or 4096)")
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        for kt, curve in _CURVES.items():
            if isinstance(public_key.curve, curve):
                return kt
        raise KeyPolicyError(f"elliptic curve {public_key.curve.name} is not allowed (P-256, P-384)")
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return KeyType.ED25519
    raise KeyPolicyError(f"key algorithm {type(public_key).__name__} is not allowed")


def signature_hash(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384 | None:
    """The digest a CA key signs with: SHA-384 for P-384, none for Ed25519, else SHA-256."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP384R1):
        return hashes.SHA384()
    return hashes.SHA256()


def as_public_key(key: object) -> PublicKey:
    """Narrow a key from a certificate or CSR to the types kyso accepts (else refuse it)."""
    key_type_of(key)
    assert isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey)
    return key


def as_private_key(key: object) -> PrivateKey:
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        raise KeyFileError(f"unsupported private key type {type(key).__name__}")
    key_type_of(key.public_key())
    return key


def spki_sha256(public_key: CertificatePublicKeyTypes) -> str:
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def save_private_key(path: Path, key: PrivateKey, passphrase: str,
                     iterations: int = DEFAULT_ITERATIONS) -> None:
    """Encrypted PKCS#8 (PBES2, PBKDF2-HMAC-SHA-256 × ``iterations``, AES-256-CBC), 0600."""
    atomic_write(path, encrypt_pkcs8(key, passphrase, iterations), mode=0o600, exclusive=True)


def _intact_container(pem: bytes) -> bool:
    """Is this a whole, well-formed ENCRYPTED PRIVATE KEY block (armour, base64, DER length)?"""
    begin, end = b"-----BEGIN ENCRYPTED PRIVATE KEY-----", b"-----END ENCRYPTED PRIVATE KEY-----"
    start, stop = pem.find(begin), pem.find(end)
    if start < 0 or stop < start:
        return False
    try:
        der = base64.b64decode(b"".join(pem[start + len(begin):stop].split()), validate=True)
    except (ValueError, binascii.Error):
        return False
    if len(der) < 2 or der[0] != 0x30:
        return False
    first = der[1]
    if first < 0x80:
        return 2 + first == len(der)
    count = first & 0x7F
    if count == 0 or count > 4 or len(der) < 2 + count:
        return False
    return 2 + count + int.from_bytes(der[2:2 + count], "big") == len(der)


def load_private_key(path: Path, passphrase: str) -> PrivateKey:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"key file {path} is missing") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from None
    if b"ENCRYPTED PRIVATE KEY" not in data:
        raise KeyFileError(f"key file {path} is not an encrypted PKCS#8 key")
    try:
        key = serialization.load_pem_private_key(data, passphrase.encode("utf-8"))
    except (ValueError, TypeError):
        # PBES2 uses AES-CBC without a MAC: a wrong passphrase usually breaks the padding, but
        # about 1 time in 256 the padding survives and the garbage fails to parse instead. So
        # whenever the encrypted container itself is intact, the passphrase is what is wrong.
        if _intact_container(data):
            raise PassphraseError(f"wrong passphrase for {path.name}") from None
        raise KeyFileError(f"key file {path} is corrupted") from None
    except UnsupportedAlgorithm:
        raise KeyFileError(f"key file {path} uses an unsupported algorithm") from None
    try:
        return as_private_key(key)
    except (KeyFileError, KeyPolicyError):
        raise KeyFileError(f"key file {path} holds an unsupported key type") from None
