"""The algorithms the signing gateway speaks, by their object identifiers (as CSC clients send
them): hash algorithms (SHA-256/384/512) and signature algorithms for the credential's key
(ECDSA with a SHA-2 hash, DER ``ECDSA-Sig-Value``; RSA PKCS#1 v1.5). Pure."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from enum import Enum

from cryptography.hazmat.primitives import hashes

from kyso.errors import GatewayRequestError
from kyso.pki.keys import KeyType

__all__ = [
    "HashAlgorithm",
    "SignatureScheme",
    "curve_oid",
    "decode_hashes",
    "hash_algorithm",
    "infer_hash_algorithm",
    "key_length",
    "scheme_for",
    "signature_algorithms",
]


class HashAlgorithm(Enum):
    """A digest the gateway signs: its name, OID and length in bytes."""

    SHA256 = ("sha256", "2.16.840.1.101.3.4.2.1", 32)
    SHA384 = ("sha384", "2.16.840.1.101.3.4.2.2", 48)
    SHA512 = ("sha512", "2.16.840.1.101.3.4.2.3", 64)

    def __init__(self, label: str, oid: str, size: int) -> None:
        self.label = label
        self.oid = oid
        self.size = size

    def primitive(self) -> hashes.HashAlgorithm:
        if self is HashAlgorithm.SHA256:
            return hashes.SHA256()
        if self is HashAlgorithm.SHA384:
            return hashes.SHA384()
        return hashes.SHA512()

    @classmethod
    def named(cls, label: str) -> HashAlgorithm:
        for algorithm in cls:
            if algorithm.label == label:
                return algorithm
        raise GatewayRequestError(f"unknown hash algorithm {label[:20]!r}")


_BY_OID = {a.oid: a for a in HashAlgorithm}
_BY_SIZE = {a.size: a for a in HashAlgorithm}

EC_PUBLIC_KEY = "1.2.840.10045.2.1"
RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
P256_CURVE = "1.2.840.10045.3.1.7"
P384_CURVE = "1.3.132.0.34"
# signature algorithm OID → (family, the hash it implies, or None when hashAlgorithmOID says)
_SIGNATURES: dict[str, tuple[str, HashAlgorithm | None]] = {
    "1.2.840.10045.4.3.2": ("ec", HashAlgorithm.SHA256),
    "1.2.840.10045.4.3.3": ("ec", HashAlgorithm.SHA384),
    "1.2.840.10045.4.3.4": ("ec", HashAlgorithm.SHA512),
    EC_PUBLIC_KEY: ("ec", None),
    "1.2.840.113549.1.1.11": ("rsa", HashAlgorithm.SHA256),
    "1.2.840.113549.1.1.12": ("rsa", HashAlgorithm.SHA384),
    "1.2.840.113549.1.1.13": ("rsa", HashAlgorithm.SHA512),
    RSA_ENCRYPTION: ("rsa", None),
}
_ASN1_NULL = b"\x05\x00"


@dataclass(frozen=True)
class SignatureScheme:
    """How one request's hashes are signed: the key family and the digest."""

    family: str  # ec (ECDSA, DER signature) or rsa (PKCS#1 v1.5)
    hash: HashAlgorithm
    sign_algo: str


def _family(key_type: KeyType) -> str:
    if key_type.is_rsa:
        return "rsa"
    if key_type in (KeyType.EC_P256, KeyType.EC_P384):
        return "ec"
    raise GatewayRequestError(f"keys of type {key_type.value} cannot sign through the gateway")


def signature_algorithms(key_type: KeyType) -> list[str]:
    """The ``key.algo`` list of ``credentials/info``: the OIDs this key signs with."""
    family = _family(key_type)
    return [oid for oid, (fam, _h) in _SIGNATURES.items() if fam == family]


def key_length(key_type: KeyType) -> int:
    return {KeyType.EC_P256: 256, KeyType.EC_P384: 384, KeyType.RSA_2048: 2048,
            KeyType.RSA_3072: 3072, KeyType.RSA_4096: 4096}[key_type]


def curve_oid(key_type: KeyType) -> str | None:
    return {KeyType.EC_P256: P256_CURVE, KeyType.EC_P384: P384_CURVE}.get(key_type)


def hash_algorithm(oid: str, parameter: str = "hashAlgorithmOID") -> HashAlgorithm:
    found = _BY_OID.get(oid)
    if found is None:
        raise GatewayRequestError(f"{parameter}: unsupported hash algorithm {oid[:64]!r}; use "
                                  + ", ".join(f"{a.oid} ({a.label})" for a in HashAlgorithm))
    return found


def infer_hash_algorithm(digests: list[bytes], oid: str | None) -> HashAlgorithm:
    """The hash algorithm of a request: the one named, else the one the length implies; every
    hash must have its length."""
    found = hash_algorithm(oid) if oid is not None else (
        _BY_SIZE.get(len(digests[0])) if digests else None)
    if found is None:
        raise GatewayRequestError("hashes: a hash must be 32, 48 or 64 bytes (SHA-256, "
                                  "SHA-384, SHA-512), or name hashAlgorithmOID")
    algorithm = found
    for index, digest in enumerate(digests):
        if len(digest) != algorithm.size:
            raise GatewayRequestError(f"hashes[{index}]: {len(digest)} bytes, but a "
                                      f"{algorithm.label} hash has {algorithm.size}")
    return algorithm


def decode_hashes(values: list[str], parameter: str = "hashes") -> list[bytes]:
    """Base64 hashes as CSC sends them (standard alphabet, padded); no duplicates."""
    out: list[bytes] = []
    for index, value in enumerate(values):
        try:
            digest = base64.b64decode(value.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raise GatewayRequestError(f"{parameter}[{index}]: not base64") from None
        if not digest:
            raise GatewayRequestError(f"{parameter}[{index}]: empty")
        out.append(digest)
    if len(set(out)) != len(out):
        raise GatewayRequestError(f"{parameter}: the same hash appears twice")
    return out


def scheme_for(key_type: KeyType, sign_algo: str, hash_oid: str | None,
               params: str | None = None) -> SignatureScheme:
    """The scheme of a ``signatures/signHash`` call: ``signAlgo`` must suit the key and agree
    with ``hashAlgorithmOID`` (which may be left out when ``signAlgo`` implies the hash)."""
    entry = _SIGNATURES.get(sign_algo)
    if entry is None:
        raise GatewayRequestError(f"signAlgo: unsupported signature algorithm {sign_algo[:64]!r}; "
                                  f"this credential signs with "
                                  f"{', '.join(signature_algorithms(key_type))}")
    family, implied = entry
    if family != _family(key_type):
        raise GatewayRequestError(f"signAlgo: {sign_algo} does not suit this credential's "
                                  f"{key_type.value} key")
    named = hash_algorithm(hash_oid) if hash_oid is not None else None
    if implied is not None and named is not None and implied is not named:
        raise GatewayRequestError(f"hashAlgorithmOID: {named.label} does not match signAlgo "
                                  f"{sign_algo} ({implied.label})")
    chosen = implied or named
    if chosen is None:
        raise GatewayRequestError(f"hashAlgorithmOID: required with signAlgo {sign_algo}")
    if params is not None:
        try:
            raw = base64.b64decode(params.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raise GatewayRequestError("signAlgoParams: not base64") from None
        if raw not in (b"", _ASN1_NULL):
            raise GatewayRequestError(f"signAlgoParams: {sign_algo} takes no parameters")
    return SignatureScheme(family, chosen, sign_algo)
