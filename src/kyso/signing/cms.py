"""Detached CMS SignedData for PAdES (ETSI EN 319 142-1 baseline), built from a loaded key.

:class:`CmsSigner` keeps the unlocked key object and every constant piece of the structure
pre-encoded (certificates, signer identifier, ESS signing-certificate-v2 attribute), so each
signature costs one hash, one private-key operation and a few byte joins. The signed
attributes are exactly what PAdES B-B asks for: content-type, message-digest and
signing-certificate-v2 (no signing-time attribute; the time goes into the PDF's ``/M``).

The key is either a local private key (:data:`SigningKey`, signed in-process) or a
:class:`DigestSigner`: a key held elsewhere (a remote signing service) that signs the digest of
the signed attributes, e.g. :class:`kyso.signing.csc_client.RemoteKey`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from kyso import der
from kyso.errors import SigningError

ID_DATA = "1.2.840.113549.1.7.1"
ID_SIGNED_DATA = "1.2.840.113549.1.7.2"
ID_CONTENT_TYPE = "1.2.840.113549.1.9.3"
ID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
ID_SIGNING_CERTIFICATE_V2 = "1.2.840.113549.1.9.16.2.47"
ID_TIMESTAMP_TOKEN = "1.2.840.113549.1.9.16.2.14"  # noqa: S105 - an OID

DIGESTS: dict[str, tuple[str, type[hashes.HashAlgorithm]]] = {
    "sha256": ("2.16.840.1.101.3.4.2.1", hashes.SHA256),
    "sha384": ("2.16.840.1.101.3.4.2.2", hashes.SHA384),
    "sha512": ("2.16.840.1.101.3.4.2.3", hashes.SHA512),
}
_RSA_SIG = {"sha256": "1.2.840.113549.1.1.11", "sha384": "1.2.840.113549.1.1.12",
            "sha512": "1.2.840.113549.1.1.13"}
_ECDSA_SIG = {"sha256": "1.2.840.10045.4.3.2", "sha384": "1.2.840.10045.4.3.3",
              "sha512": "1.2.840.10045.4.3.4"}

SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
# Given the signature value's digest, return a DER TimeStampToken (a CMS ContentInfo).
TimestampFn = Callable[[bytes, str], bytes]


@runtime_checkable
class DigestSigner(Protocol):
    """A key held elsewhere that signs a digest. ``sign_digest`` returns the raw signature
    value of the CMS: a DER ECDSA-Sig-Value for EC keys, PKCS#1 v1.5 for RSA keys;
    ``digest_name`` is one of :data:`DIGESTS`. ``public_key`` gives the signature's algorithm
    and size."""

    def public_key(self) -> PublicKey: ...

    def sign_digest(self, digest: bytes, digest_name: str) -> bytes: ...


def digest_algorithm_id(name: str) -> bytes:
    return der.seq(der.oid(DIGESTS[name][0]))


def check_digest(name: str) -> str:
    name = name.lower().replace("-", "")
    if name not in DIGESTS:
        raise SigningError(f"unsupported digest {name!r}; use one of {', '.join(DIGESTS)}")
    return name


@dataclass(frozen=True)
class CmsSigner:
    """An unlocked signing key (or a :class:`DigestSigner`) with its certificate and chain
    (issuer first)."""

    key: SigningKey | DigestSigner = field(repr=False)
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()
    digest: str = "sha256"
    _parts: dict[str, bytes] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        local = isinstance(self.key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
        if not local and not isinstance(self.key, DigestSigner):
            raise SigningError("only RSA and EC signing keys are supported for PDF signatures")
        public = self.key.public_key()
        if not isinstance(public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise SigningError("only RSA and EC signing keys are supported for PDF signatures")
        check_digest(self.digest)
        cert_der = self.certificate.public_bytes(serialization.Encoding.DER)
        issuer = self.certificate.issuer.public_bytes()
        serial = der.integer(self.certificate.serial_number)
        ess = der.seq(der.seq(der.seq(
            der.octets(hashlib.sha256(cert_der).digest()),  # hashAlgorithm: sha256 (default)
            der.seq(der.seq(der.context(4, issuer)), serial),
        )))
        certs = [cert_der, *(c.public_bytes(serialization.Encoding.DER) for c in self.chain)]
        is_rsa = isinstance(public, rsa.RSAPublicKey)
        sig_oid = (_RSA_SIG if is_rsa else _ECDSA_SIG)[self.digest]
        self._parts.update(
            sid=der.seq(issuer, serial),
            ess=der.seq(der.oid(ID_SIGNING_CERTIFICATE_V2), der.set_of([ess])),
            content_type=der.seq(der.oid(ID_CONTENT_TYPE), der.set_of([der.oid(ID_DATA)])),
            certificates=der.context(0, b"".join(sorted(set(certs)))),
            sig_alg=der.seq(der.oid(sig_oid), der.NULL) if is_rsa else der.seq(der.oid(sig_oid)),
            digest_alg=digest_algorithm_id(self.digest),
        )

    @property
    def hash_algorithm(self) -> hashes.HashAlgorithm:
        return DIGESTS[self.digest][1]()

    def max_signature_size(self) -> int:
        public = self.key.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            return (public.key_size + 7) // 8
        assert isinstance(public, ec.EllipticCurvePublicKey)
        order_bytes = (public.curve.key_size + 7) // 8
        return 2 * (order_bytes + 3) + 3  # SEQUENCE of two INTEGERs, each with a sign byte

    def sign_raw(self, data: bytes) -> bytes:
        key = self.key
        if isinstance(key, rsa.RSAPrivateKey):
            return key.sign(data, padding.PKCS1v15(), self.hash_algorithm)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return key.sign(data, ec.ECDSA(self.hash_algorithm))
        return key.sign_digest(hashlib.new(self.digest, data).digest(), self.digest)

    def signed_data(self, document_digest: bytes, *, timestamp: TimestampFn | None = None,
                    placeholder: bool = False) -> bytes:
        """The DER ContentInfo of a detached SignedData over ``document_digest``.

        ``timestamp`` adds a signature timestamp (PAdES B-T); ``placeholder`` produces a
        structure of the largest possible size without using the key (for space reservation).
        """
        p = self._parts
        attrs = der.set_of([
            p["content_type"],
            der.seq(der.oid(ID_MESSAGE_DIGEST), der.set_of([der.octets(document_digest)])),
            p["ess"],
        ])
        signature = (b"\x00" * self.max_signature_size() if placeholder
                     else self.sign_raw(attrs))
        signer_info = [der.integer(1), p["sid"], p["digest_alg"], b"\xa0" + attrs[1:],
                       p["sig_alg"], der.octets(signature)]
        if timestamp is not None:
            token = timestamp(hashlib.new(self.digest, signature).digest(), self.digest)
            signer_info.append(der.context(1, der.seq(
                der.oid(ID_TIMESTAMP_TOKEN), der.set_of([token]))))
        signed = der.seq(
            der.integer(1), der.set_of([p["digest_alg"]]), der.seq(der.oid(ID_DATA)),
            p["certificates"], der.set_of([der.seq(*signer_info)]),
        )
        return der.seq(der.oid(ID_SIGNED_DATA), der.context(0, signed))


def chain_without_root(chain: Sequence[x509.Certificate]) -> tuple[x509.Certificate, ...]:
    """Drop self-issued certificates: a verifier must bring its own trust anchor."""
    return tuple(c for c in chain if c.issuer != c.subject)
