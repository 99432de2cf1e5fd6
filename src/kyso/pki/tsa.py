"""RFC 3161 time-stamping authority (signing-certificate-v2 per RFC 5816): pure logic.

:meth:`TimeStampAuthority.respond` turns any bytes into a DER ``TimeStampResp``, granted or
rejected with the RFC 3161 failure bit and a status string; it never raises for bad input.
Requests are parsed with asn1crypto. Tokens are assembled from DER parts encoded once (the
certificates, signer identifier, ESSCertIDv2, TSA name): building them through asn1crypto
costs ~50 ms a token, this way a token costs one hash, one signature and a little DER.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from asn1crypto import algos, cms, tsp
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from kyso import der
from kyso.clock import UTC, Clock
from kyso.context import Kyso
from kyso.errors import PkiError
from kyso.pki.serials import new_serial
from kyso.pki.services import ServiceKey, unlock_service

TSA_POLICY_OID = "1.3.6.1.4.1.32473.704.1.4.1"
# Message-imprint algorithms we time-stamp, with their digest sizes (SHA-1 and MD5 are refused).
DIGEST_SIZES = {"sha256": 32, "sha384": 48, "sha512": 64}

_ID_SIGNED_DATA = "1.2.840.113549.1.7.2"
_ID_CT_TST_INFO = "1.2.840.113549.1.9.16.1.4"
_ID_CONTENT_TYPE = "1.2.840.113549.1.9.3"
_ID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"


class _Refusal(PkiError):
    """A request the TSA will not grant, with the RFC 3161 PKIFailureInfo bit to answer."""

    def __init__(self, fail_info: str, message: str) -> None:
        super().__init__(message)
        self.fail_info = fail_info


def _signature_scheme(key: object) -> tuple[str, str]:
    """(CMS digest algorithm, CMS signature algorithm) for the TSA key."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return ("sha384", "sha384_ecdsa") if isinstance(key.curve, ec.SECP384R1) \
            else ("sha256", "sha256_ecdsa")
    if isinstance(key, rsa.RSAPrivateKey):
        return "sha256", "sha256_rsa"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "sha512", "ed25519"  # RFC 8419: SHA-512 for the message digest
    raise PkiError(f"a {type(key).__name__} cannot sign time-stamp tokens")


def _accuracy(value: dt.timedelta) -> bytes:
    """The DER Accuracy for ``value``; empty for zero (the field is then left out)."""
    if value < dt.timedelta(0) or value >= dt.timedelta(days=1):
        raise PkiError("the TSA accuracy must be at least zero and under a day")
    millis, micros = divmod(value.microseconds, 1000)
    fields = {"seconds": value.seconds, "millis": millis, "micros": micros}
    present = {k: v for k, v in fields.items() if v}
    return bytes(tsp.Accuracy(present).dump()) if present else b""


class TimeStampAuthority:
    """Grants RFC 3161 time-stamp tokens with the TSA key, at the clock's time."""

    def __init__(self, service: ServiceKey, clock: Clock, *, policy: str = TSA_POLICY_OID,
                 accuracy: dt.timedelta = dt.timedelta(seconds=1)) -> None:
        self.service = service
        self.clock = clock
        self.policy = policy
        self._key = service.key
        self._digest, signature_algorithm = _signature_scheme(service.key)
        cert = service.certificate
        self._not_before, self._not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
        cert_der = cert.public_bytes(serialization.Encoding.DER)
        parsed = asn1_x509.Certificate.load(cert_der)
        issuer = asn1_x509.GeneralName(name="directory_name", value=parsed.issuer)

        # Everything below is the same in every token.
        self._policy = der.oid(policy)
        self._accuracy = _accuracy(accuracy)
        self._tsa = der.tlv(0xA0, bytes(asn1_x509.GeneralName(
            name="directory_name", value=parsed.subject).dump()))
        self._digest_algorithm = bytes(algos.DigestAlgorithm({"algorithm": self._digest}).dump())
        self._signature_algorithm = bytes(algos.SignedDigestAlgorithm(
            {"algorithm": signature_algorithm}).dump())
        self._sid = bytes(cms.IssuerAndSerialNumber(
            {"issuer": parsed.issuer, "serial_number": parsed.serial_number}).dump())
        self._content_type = der.seq(der.oid(_ID_CONTENT_TYPE), der.set_of([der.oid(_ID_CT_TST_INFO)]))
        self._signing_certificate = bytes(cms.CMSAttribute({
            "type": "signing_certificate_v2",
            "values": [{"certs": [{  # hashAlgorithm: the default, SHA-256
                "cert_hash": hashlib.sha256(cert_der).digest(),
                "issuer_serial": {"issuer": [issuer], "serial_number": parsed.serial_number},
            }]}],
        }).dump())
        # The TSA certificate and the CAs above it, without the self-signed root.
        chain = [c.public_bytes(serialization.Encoding.DER)
                 for c in service.chain if c.issuer != c.subject]
        self._certificates = der.tlv(0xA0, b"".join(sorted([cert_der, *chain])))
        self._imprint_algorithms = {
            name: bytes(algos.DigestAlgorithm({"algorithm": name}).dump()) for name in DIGEST_SIZES
        }

    def __repr__(self) -> str:
        return f"TimeStampAuthority({self.service.name}, policy={self.policy})"

    def respond(self, request_der: bytes) -> bytes:
        """A DER ``TimeStampResp`` for any input: granted, or rejected with the reason."""
        try:
            imprint, nonce, cert_req = self._read_request(request_der)
            token = self._token(imprint, nonce, cert_req)
        except _Refusal as exc:
            return _rejection(exc.fail_info, str(exc))
        except Exception:  # a TSA always answers; no internals go out
            return _rejection("system_failure", "the TSA could not create a token")
        return der.seq(der.seq(der.integer(0)), token)  # PKIStatusInfo: granted

    def timestamp_token(self, digest: bytes, hash_algorithm: str = "sha256",
                        nonce: int | None = None, *, include_certificates: bool = True) -> bytes:
        """The DER ``ContentInfo`` of a token over ``digest`` (for in-process signing)."""
        algorithm = hash_algorithm.lower().replace("-", "")
        _check_imprint(algorithm, digest)
        imprint = der.seq(self._imprint_algorithms[algorithm], der.tlv(0x04, digest))
        return self._token(imprint, nonce, include_certificates)

    def _read_request(self, der: bytes) -> tuple[bytes, int | None, bool]:
        """(DER messageImprint to echo, nonce, certReq) of a request this TSA grants."""
        if not der:
            raise _Refusal("bad_data_format", "empty time-stamp request")
        try:
            request = tsp.TimeStampReq.load(bytes(der), strict=True)
            _ = request.native  # parse every field now: lazy parsing would fail later
            version = request["version"].native
            imprint = request["message_imprint"]
            algorithm = imprint["hash_algorithm"]["algorithm"].native
            digest = imprint["hashed_message"].native
            policy = request["req_policy"].native
            nonce = request["nonce"].native
            cert_req = bool(request["cert_req"].native)
            extensions = request["extensions"].native
            imprint_der = bytes(imprint.dump())
        except Exception:
            raise _Refusal("bad_data_format", "not a DER RFC 3161 TimeStampReq") from None
        if version != "v1":
            raise _Refusal("bad_data_format", f"unsupported TimeStampReq version {version}")
        _check_imprint(algorithm, digest)
        if policy is not None and policy != self.policy:
            raise _Refusal("unaccepted_policy",
                           f"policy {policy} is not offered; this TSA grants {self.policy}")
        if extensions:
            raise _Refusal("unaccepted_extensions", "request extensions are not supported")
        return imprint_der, nonce, cert_req

    def _token(self, imprint: bytes, nonce: int | None, include_certificates: bool) -> bytes:
        now = self.clock.now().astimezone(UTC)
        if not self._not_before <= now <= self._not_after:
            raise _Refusal("time_not_available",
                           f"the TSA certificate is not valid at {now:%Y-%m-%dT%H:%M:%SZ}")
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # millisecond precision
        tst_info = der.seq(
            der.integer(1), self._policy, imprint, der.integer(new_serial()), der.generalized_time(now),
            self._accuracy,  # ordering: DEFAULT FALSE, so absent
            der.integer(nonce) if nonce is not None else b"",
            self._tsa,
        )
        message_digest = hashlib.new(self._digest, tst_info).digest()
        attributes = sorted([
            self._content_type,
            der.seq(der.oid(_ID_MESSAGE_DIGEST), der.set_of([der.tlv(0x04, message_digest)])),
            self._signing_certificate,
        ])
        signed_attributes = b"".join(attributes)
        signature = self._sign(der.tlv(0x31, signed_attributes))  # signed as an explicit SET OF
        signer_info = der.seq(
            der.integer(1), self._sid, self._digest_algorithm, der.tlv(0xA0, signed_attributes),
            self._signature_algorithm, der.tlv(0x04, signature),
        )
        signed_data = der.seq(
            der.integer(3),
            der.set_of([self._digest_algorithm]),
            der.seq(der.oid(_ID_CT_TST_INFO), der.tlv(0xA0, der.tlv(0x04, tst_info))),
            self._certificates if include_certificates else b"",
            der.set_of([signer_info]),
        )
        return der.seq(der.oid(_ID_SIGNED_DATA), der.tlv(0xA0, signed_data))

    def _sign(self, data: bytes) -> bytes:
        key = self._key
        if isinstance(key, ec.EllipticCurvePrivateKey):
            chosen = hashes.SHA384() if self._digest == "sha384" else hashes.SHA256()
            return key.sign(data, ec.ECDSA(chosen))
        if isinstance(key, rsa.RSAPrivateKey):
            return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        return key.sign(data)


def _check_imprint(algorithm: str, digest: bytes) -> None:
    size = DIGEST_SIZES.get(algorithm)
    if size is None:
        raise _Refusal("bad_alg", f"hash algorithm {algorithm} is not accepted; use "
                       f"{', '.join(DIGEST_SIZES)}")
    if not isinstance(digest, bytes) or len(digest) != size:
        got = len(digest) if isinstance(digest, bytes) else type(digest).__name__
        raise _Refusal("bad_data_format", f"a {algorithm} digest has {size} bytes, not {got}")


def _rejection(fail_info: str, message: str) -> bytes:
    """A ``TimeStampResp`` with only its status (asn1crypto wrongly requires the token)."""
    return der.seq(bytes(tsp.PKIStatusInfo({
        "status": "rejection", "status_string": [message], "fail_info": {fail_info},
    }).dump()))


def load_tsa(kyso: Kyso, passphrase: str) -> TimeStampAuthority:
    """The TSA of this CA home, with its key unlocked, on the home's clock."""
    return TimeStampAuthority(unlock_service(kyso, passphrase, "tsa"), kyso.clock)
