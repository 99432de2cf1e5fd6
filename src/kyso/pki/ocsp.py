"""RFC 6960 OCSP responder of one issuing CA, signed by its delegated responder: pure logic.

Requests are parsed with ``cryptography.x509.ocsp``. Responses are assembled as DER here,
because cryptography's builder stamps producedAt with the system time and kyso's times come
from the injectable clock; cryptography and OpenSSL both read them back in the tests.
:meth:`OcspResponder.respond` answers any bytes with a DER ``OCSPResponse`` and never raises.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import sqlalchemy as sa
from asn1crypto import algos, core, keys
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, OCSPExtensionOID

from kyso import der
from kyso.clock import UTC, Clock, vn_iso
from kyso.context import Kyso
from kyso.errors import PkiError
from kyso.pki.authority import list_authorities
from kyso.pki.keys import signature_hash
from kyso.pki.records import RevocationReason, Status
from kyso.pki.serials import serial_hex
from kyso.pki.services import ServiceKey, unlock_service
from kyso.store import schema

# Responses are computed from the live store, so they are short-lived (thisUpdate = now).
OCSP_VALIDITY = dt.timedelta(hours=1)
# RFC 8954 §2.1: a nonce of 0 or more than 32 octets is refused as malformedRequest.
MAX_NONCE = 32

_CERT_ID_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1, "sha224": hashes.SHA224, "sha256": hashes.SHA256,
    "sha384": hashes.SHA384, "sha512": hashes.SHA512,
}
_REASON_CODES = {  # CRLReason ENUMERATED values (RFC 5280 §5.3.1)
    RevocationReason.UNSPECIFIED: 0, RevocationReason.KEY_COMPROMISE: 1,
    RevocationReason.CA_COMPROMISE: 2, RevocationReason.AFFILIATION_CHANGED: 3,
    RevocationReason.SUPERSEDED: 4, RevocationReason.CESSATION_OF_OPERATION: 5,
    RevocationReason.CERTIFICATE_HOLD: 6, RevocationReason.PRIVILEGE_WITHDRAWN: 9,
}


class CertStatus(Enum):
    GOOD = "good"
    REVOKED = "revoked"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class SerialStatus:
    """What the responder says about one serial (on hold answers revoked/certificateHold)."""

    status: CertStatus
    revoked_at: dt.datetime | None = None
    reason: RevocationReason | None = None

    def __post_init__(self) -> None:
        if (self.status is CertStatus.REVOKED) != (self.revoked_at is not None):
            raise PkiError("a revocation time goes with status revoked, and only with it")
        if self.reason is not None and self.status is not CertStatus.REVOKED:
            raise PkiError("a revocation reason goes only with status revoked")

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "revoked_at": vn_iso(self.revoked_at) if self.revoked_at else None,
            "reason": self.reason.value if self.reason else None,
        }


def serial_status(kyso: Kyso, ca_name: str, serial: int) -> SerialStatus:
    """The status of ``serial`` among the certificates ``ca_name`` issued; expired
    certificates keep their status, serials the CA never issued are unknown."""
    c = schema.certificates
    with kyso.store.read() as conn:
        row = conn.execute(
            sa.select(c.c.status, c.c.revoked_at, c.c.revocation_reason)
            .where(c.c.serial == serial_hex(serial), c.c.issuer == ca_name)
        ).mappings().first()
    if row is None:
        return SerialStatus(CertStatus.UNKNOWN)
    status = Status(row["status"])
    if status is Status.VALID:
        return SerialStatus(CertStatus.GOOD)
    reason = (RevocationReason.CERTIFICATE_HOLD if status is Status.ON_HOLD
              else RevocationReason(row["revocation_reason"] or "unspecified"))
    return SerialStatus(CertStatus.REVOKED, row["revoked_at"], reason)


class StatusLookup:
    """:func:`serial_status` for the responder's hot path: one indexed ``SELECT status`` on the
    store's :class:`~kyso.store.engine.PointReader` (no pool, no transaction), so a busy
    responder spends microseconds, not a connection checkout, per request. A revoked or held
    certificate, rare and needing its time and reason, is read in full by
    :func:`serial_status`. Both see the latest committed status, whichever process wrote it."""

    def __init__(self, kyso: Kyso, ca_name: str) -> None:
        self._kyso = kyso
        self._ca_name = ca_name
        self._read = kyso.store.point_reader(
            "SELECT status FROM certificates WHERE serial = ? AND issuer = ?")

    def __call__(self, serial: int) -> SerialStatus:
        row = self._read(serial_hex(serial), self._ca_name)
        if row is None:
            return SerialStatus(CertStatus.UNKNOWN)
        if row[0] == Status.VALID.value:
            return SerialStatus(CertStatus.GOOD)
        return serial_status(self._kyso, self._ca_name, serial)


# --- DER, only what a response needs --------------------------------------------------------

def _time(moment: dt.datetime) -> bytes:
    """DER GeneralizedTime, UTC, whole seconds."""
    return der.tlv(0x18, moment.astimezone(UTC).strftime("%Y%m%d%H%M%SZ").encode("ascii"))


def _der(value: Any) -> bytes:
    return bytes(value.dump())


_ID_PKIX_OCSP_BASIC = _der(core.ObjectIdentifier("1.3.6.1.5.5.7.48.1.1"))
_ID_PKIX_OCSP_NONCE = _der(core.ObjectIdentifier(OCSPExtensionOID.NONCE.dotted_string))
_SUCCESSFUL = der.tlv(0x0A, b"\x00")


def _key_bits(certificate: x509.Certificate) -> bytes:
    """The subjectPublicKey BIT STRING contents (without the unused-bits octet)."""
    spki = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return bytes(keys.PublicKeyInfo.load(spki)["public_key"].contents[1:])


def _signature_algorithm(key: object) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return "sha384_ecdsa" if isinstance(key.curve, ec.SECP384R1) else "sha256_ecdsa"
    if isinstance(key, rsa.RSAPrivateKey):
        return "sha256_rsa"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    raise PkiError(f"a {type(key).__name__} cannot sign OCSP responses")


def _unsuccessful(status: ocsp.OCSPResponseStatus) -> bytes:
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(
        serialization.Encoding.DER)


class OcspResponder:
    """Answers for the certificates of one CA, signed by that CA's delegated responder."""

    def __init__(self, ca_name: str, ca_certificate: x509.Certificate, service: ServiceKey,
                 clock: Clock, *, validity: dt.timedelta = OCSP_VALIDITY) -> None:
        responder = service.certificate
        if responder.issuer != ca_certificate.subject:
            raise PkiError(f"the {service.name} certificate was not issued by the {ca_name} CA")
        try:
            responder.verify_directly_issued_by(ca_certificate)
        except (ValueError, TypeError, InvalidSignature):
            raise PkiError(f"the {service.name} certificate is not signed by the {ca_name} CA") \
                from None
        try:
            eku = responder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            eku = None
        if eku is None or ExtendedKeyUsageOID.OCSP_SIGNING not in eku:
            raise PkiError(f"the {service.name} certificate lacks the OCSPSigning key usage")
        if validity <= dt.timedelta(0):
            raise PkiError("the OCSP response validity must be positive")
        self.ca_name = ca_name
        self.ca_certificate = ca_certificate
        self.service = service
        self.clock = clock
        self.validity = validity
        self._key = service.key
        self._hash = signature_hash(service.key) or hashes.SHA256()  # unused for Ed25519
        self._not_before = responder.not_valid_before_utc
        self._not_after = responder.not_valid_after_utc
        name_der, key_bits = ca_certificate.subject.public_bytes(), _key_bits(ca_certificate)
        # Per CertID hash: (AlgorithmIdentifier DER, issuerNameHash, issuerKeyHash).
        self._issuer_ids = {
            name: (_der(algos.DigestAlgorithm({"algorithm": name})),
                   hashlib.new(name, name_der).digest(), hashlib.new(name, key_bits).digest())
            for name in _CERT_ID_HASHES
        }
        self._responder_id = der.tlv(0xA2, der.octets(hashlib.sha1(  # RFC 6960 KeyHash: SHA-1 by definition
            _key_bits(responder), usedforsecurity=False).digest()))
        self._signature_algorithm = _der(algos.SignedDigestAlgorithm(
            {"algorithm": _signature_algorithm(service.key)}))
        self._certs = der.tlv(0xA0, der.seq(responder.public_bytes(serialization.Encoding.DER)))

    def __repr__(self) -> str:
        return f"OcspResponder({self.ca_name}, {self.service.name})"

    def response_for(self, certificate_serial: int, status: SerialStatus, *,
                     nonce: bytes | None = None,
                     hash_algorithm: hashes.HashAlgorithm | None = None) -> bytes:
        """A successful, signed DER ``OCSPResponse`` about one certificate of this CA; the
        CertID uses ``hash_algorithm`` (SHA-1 by default, as most clients ask)."""
        algorithm = (hash_algorithm or hashes.SHA1()).name  # noqa: S303 - the usual CertID hash
        if algorithm not in self._issuer_ids:
            raise PkiError(f"CertID hash {algorithm} is not supported")
        if nonce is not None and not 0 < len(nonce) <= MAX_NONCE:
            raise PkiError(f"an OCSP nonce has 1 to {MAX_NONCE} octets, not {len(nonce)}")
        now = self.clock.now().astimezone(UTC)
        if not self._not_before <= now <= self._not_after:
            raise PkiError(f"the {self.service.name} certificate is not valid at "
                           f"{now:%Y-%m-%dT%H:%M:%SZ}")
        hash_id, name_hash, key_hash = self._issuer_ids[algorithm]
        single = der.seq(
            der.seq(hash_id, der.octets(name_hash), der.octets(key_hash), der.integer(certificate_serial)),
            _cert_status(status),
            _time(now),
            der.tlv(0xA0, _time(now + self.validity)),
        )
        extensions = b"" if nonce is None else der.tlv(0xA1, der.seq(
            der.seq(_ID_PKIX_OCSP_NONCE, der.octets(der.octets(nonce)))))
        tbs = der.seq(self._responder_id, _time(now), der.seq(single), extensions)
        basic = der.seq(tbs, self._signature_algorithm, der.tlv(0x03, b"\x00" + self._sign(tbs)),
                     self._certs)
        return der.seq(_SUCCESSFUL, der.tlv(0xA0, der.seq(_ID_PKIX_OCSP_BASIC, der.octets(basic))))

    def respond(self, request_der: bytes, lookup: Callable[[int], SerialStatus]) -> bytes:
        """A DER ``OCSPResponse`` for any input: malformedRequest for what does not parse
        (cryptography also refuses several certificates in one request, as many responders
        do), unauthorized for another issuer, internalError when the lookup or signing fails."""
        try:
            request = ocsp.load_der_ocsp_request(bytes(request_der))
            serial = request.serial_number
            name_hash, key_hash = request.issuer_name_hash, request.issuer_key_hash
            nonce = _nonce(request)
        except Exception:
            return _unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
        try:
            algorithm: hashes.HashAlgorithm | None = request.hash_algorithm
        except Exception:  # a CertID hash cryptography does not know: not one of ours
            algorithm = None
        ours = self._issuer_ids.get(algorithm.name) if algorithm is not None else None
        if ours is None or (name_hash, key_hash) != ours[1:]:
            return _unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)
        try:
            return self.response_for(serial, lookup(serial), nonce=nonce,
                                     hash_algorithm=algorithm)
        except Exception:  # store down, responder certificate expired, …: say so, no detail
            return _unsuccessful(ocsp.OCSPResponseStatus.INTERNAL_ERROR)

    def _sign(self, data: bytes) -> bytes:
        key = self._key
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return key.sign(data, ec.ECDSA(self._hash))
        if isinstance(key, rsa.RSAPrivateKey):
            return key.sign(data, padding.PKCS1v15(), self._hash)
        return key.sign(data)


def _nonce(request: ocsp.OCSPRequest) -> bytes | None:
    """The request's nonce (RFC 8954 lengths), refusing unknown critical extensions."""
    nonce = None
    for extension in request.extensions:
        if isinstance(extension.value, x509.OCSPNonce):
            nonce = extension.value.nonce
            if not 0 < len(nonce) <= MAX_NONCE:
                raise ValueError("nonce length")
        elif extension.critical:
            raise ValueError(f"unknown critical extension {extension.oid.dotted_string}")
    return nonce


def _cert_status(status: SerialStatus) -> bytes:
    if status.status is CertStatus.GOOD:
        return b"\x80\x00"  # [0] IMPLICIT NULL
    if status.status is CertStatus.UNKNOWN:
        return b"\x82\x00"  # [2] IMPLICIT NULL
    revoked_at, reason = status.revoked_at, b""
    if revoked_at is None:  # ruled out by SerialStatus itself
        raise PkiError("a revoked status needs its revocation time")
    if status.reason is not None and status.reason is not RevocationReason.UNSPECIFIED:
        # unspecified is left out, as on the CRL (RFC 5280 §5.3.1)
        reason = der.tlv(0xA0, der.tlv(0x0A, bytes((_REASON_CODES[status.reason],))))
    return der.tlv(0xA1, _time(revoked_at) + reason)  # [1] IMPLICIT RevokedInfo


def load_responder(kyso: Kyso, passphrase: str, ca_name: str) -> OcspResponder:
    """The delegated OCSP responder of ``ca_name`` with its key unlocked, on the home's clock."""
    authorities = {a.name: a for a in list_authorities(kyso)}
    info = authorities.get(ca_name)
    if info is None or info.parent is None:
        issuing = [a.name for a in authorities.values() if a.parent is not None]
        raise PkiError(f"no OCSP responder for CA {ca_name!r}; issuing CAs: {', '.join(issuing)}")
    service = unlock_service(kyso, passphrase, f"ocsp-{ca_name}")
    return OcspResponder(ca_name, info.certificate, service, kyso.clock)
