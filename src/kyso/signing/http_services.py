"""Trust services over the network, found where a relying party finds them: OCSP and CRLs at the
URLs inside the certificates (AIA ``id-ad-ocsp``, CRL distribution points), missing issuer
certificates at the AIA ``caIssuers`` URL, timestamps from an RFC 3161 TSA URL.

:class:`HttpServices` is the network twin of :class:`~kyso.signing.services.LocalServices`:
``kyso pdf sign --online`` signs B-T/B-LT/B-LTA with it on a machine that holds the signer's
PKCS#12 and no CA key, against a running ``kyso serve`` (or any standard CA). Everything
fetched is checked before it is embedded — an OCSP response must answer for this certificate,
echo our nonce and be signed by the issuer or its delegated responder; a CRL must be signed by
the issuer and current; a timestamp must cover our digest and echo our nonce — so a wrong or
hostile server makes signing fail with the URL named, never a file with useless validation data.
"""

from __future__ import annotations

import secrets
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from asn1crypto import algos, tsp
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from kyso.clock import Clock
from kyso.errors import SigningError
from kyso.pki.chains import signed_by
from kyso.signing.services import RevocationData

TIMEOUT = 15.0
MAX_RESPONSE = 16 * 2**20  # a large CRL; anything bigger is refused
_HASHES = {"sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}
Fetch = Callable[[str, bytes | None, str | None], bytes]


def http_fetch(url: str, body: bytes | None = None, content_type: str | None = None) -> bytes:
    """GET (``body`` None) or POST ``url``; the response body, at most :data:`MAX_RESPONSE`."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise SigningError(f"{url}: only http and https URLs are fetched")
    request = urllib.request.Request(url, data=body, method="GET" if body is None else "POST")  # noqa: S310 - scheme checked above
    if content_type:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310
            data: bytes = response.read(MAX_RESPONSE + 1)
    except urllib.error.HTTPError as exc:
        raise SigningError(f"{url}: the server answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SigningError(f"{url}: cannot fetch ({reason})") from None
    if len(data) > MAX_RESPONSE:
        raise SigningError(f"{url}: the answer is larger than {MAX_RESPONSE // 2**20} MiB")
    return data


def _urls(cert: x509.Certificate, method: x509.ObjectIdentifier) -> list[str]:
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return []
    return [str(d.access_location.value) for d in aia
            if d.access_method == method and isinstance(d.access_location,
                                                        x509.UniformResourceIdentifier)]


def _crl_urls(cert: x509.Certificate) -> list[str]:
    try:
        points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return []
    return [str(name.value) for point in points for name in (point.full_name or ())
            if isinstance(name, x509.UniformResourceIdentifier)]


def _name(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()


@dataclass
class HttpServices:
    """:class:`~kyso.signing.services.TrustServices` over HTTP (see the module docstring)."""

    tsa_url: str | None
    clock: Clock
    fetch: Fetch = field(default=http_fetch, repr=False)
    _tsa_certs: tuple[x509.Certificate, ...] = field(default=(), init=False, repr=False)

    # --- timestamps -------------------------------------------------------------------------

    def timestamp_response(self, request: bytes) -> bytes:
        if not self.tsa_url:
            raise SigningError("no TSA URL: give --tsa-url")
        return self.fetch(self.tsa_url, request, "application/timestamp-query")

    def timestamp_token(self, digest: bytes, hash_algorithm: str) -> bytes:
        algorithm = hash_algorithm.lower().replace("-", "")
        if algorithm not in _HASHES:
            raise SigningError(f"timestamps over {hash_algorithm} are not supported")
        nonce = secrets.randbits(63)
        imprint = tsp.MessageImprint({
            "hash_algorithm": algos.DigestAlgorithm({"algorithm": algorithm}),
            "hashed_message": digest})
        request = tsp.TimeStampReq({"version": 1, "message_imprint": imprint, "nonce": nonce,
                                    "cert_req": True})
        answer = self.timestamp_response(request.dump())
        where = self.tsa_url
        try:
            response = tsp.TimeStampResp.load(answer)
            status = response["status"]["status"].native
            token = response["time_stamp_token"]
            info = token["content"]["encap_content_info"]["content"].parsed if status in (
                "granted", "granted_with_mods") else None
        except Exception:  # asn1crypto raises many types on bad DER
            raise SigningError(f"{where}: the answer is not an RFC 3161 TimeStampResp") from None
        if info is None:
            text = " ".join(response["status"]["status_string"].native or ())
            raise SigningError(f"{where}: the TSA refused: {status} {text}".rstrip())
        if info["message_imprint"].dump() != imprint.dump():
            raise SigningError(f"{where}: the timestamp does not cover our digest")
        if info["nonce"].native != nonce:
            raise SigningError(f"{where}: the timestamp does not echo our nonce")
        self._tsa_certs = tuple(
            x509.load_der_x509_certificate(c.chosen.dump())
            for c in token["content"]["certificates"] or ()
            if c.name == "certificate")
        return bytes(token.dump())

    def tsa_chain(self) -> tuple[x509.Certificate, ...]:
        """The TSA certificate, then its issuers (from its last token, completed over AIA)."""
        if not self._tsa_certs:
            self.timestamp_token(bytes(32), "sha256")  # a probe: the token carries the chain
        certs = list(self._tsa_certs)
        signers = [c for c in certs if _has_eku(c, ExtendedKeyUsageOID.TIME_STAMPING)]
        if not signers:
            raise SigningError(f"{self.tsa_url}: the token carries no TSA certificate")
        return self._chain(signers[0], certs)

    # --- revocation -------------------------------------------------------------------------

    def revocation(self, chain: tuple[x509.Certificate, ...]) -> RevocationData:
        certs: list[x509.Certificate] = list(chain)
        ocsps: list[bytes] = []
        crls: list[bytes] = []
        full = self._chain(chain[0], list(chain)) if chain else ()
        for cert in full:
            if cert.issuer == cert.subject:
                continue  # a trust anchor is not checked for revocation
            issuer = self._issuer(cert, full)
            if issuer not in certs:
                certs.append(issuer)
            if _urls(cert, AuthorityInformationAccessOID.OCSP):
                response, responder = self._ocsp(cert, issuer)
                ocsps.append(response)
                if responder is not None and responder not in certs:
                    certs.append(responder)
            elif _crl_urls(cert):
                crls.append(self._crl(cert, issuer))
            else:
                raise SigningError(f"no revocation data for {_name(cert)}: it names neither an "
                                   "OCSP responder nor a CRL distribution point")
        return RevocationData(tuple(certs), tuple(ocsps), tuple(crls))

    def _chain(self, leaf: x509.Certificate, known: list[x509.Certificate]
               ) -> tuple[x509.Certificate, ...]:
        chain = [leaf]
        while chain[-1].issuer != chain[-1].subject and len(chain) < 8:
            chain.append(self._issuer(chain[-1], known))
        return tuple(chain)

    def _issuer(self, cert: x509.Certificate, known: list[x509.Certificate] | tuple[
            x509.Certificate, ...]) -> x509.Certificate:
        for candidate in known:
            if candidate.subject == cert.issuer and signed_by(cert, candidate):
                return candidate
        for url in _urls(cert, AuthorityInformationAccessOID.CA_ISSUERS):
            data = self.fetch(url, None, None)
            try:
                found = (x509.load_der_x509_certificate(data) if not data.startswith(b"-----")
                         else x509.load_pem_x509_certificate(data))
            except ValueError:
                raise SigningError(f"{url}: not a certificate") from None
            if found.subject == cert.issuer and signed_by(cert, found):
                return found
            raise SigningError(f"{url}: that certificate did not issue {_name(cert)}")
        raise SigningError(f"the issuer of {_name(cert)} is unknown and its certificate names "
                           "no caIssuers URL")

    def _ocsp(self, cert: x509.Certificate, issuer: x509.Certificate
              ) -> tuple[bytes, x509.Certificate | None]:
        url = _urls(cert, AuthorityInformationAccessOID.OCSP)[0]
        nonce = secrets.token_bytes(16)
        request = (ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1())  # noqa: S303 - the CertID hash every responder knows
                   .add_extension(x509.OCSPNonce(nonce), critical=False).build())
        answer = self.fetch(url.rstrip("/"), request.public_bytes(serialization.Encoding.DER),
                            "application/ocsp-request")
        try:
            response = ocsp.load_der_ocsp_response(answer)
        except ValueError:
            raise SigningError(f"{url}: the answer is not an OCSP response") from None
        if response.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
            raise SigningError(f"{url}: the responder said {response.response_status.name}")
        if response.serial_number != cert.serial_number or response.issuer_key_hash != \
                request.issuer_key_hash:
            raise SigningError(f"{url}: the response is about another certificate")
        echoed = [e.value.nonce for e in response.extensions if isinstance(e.value, x509.OCSPNonce)]
        if echoed != [nonce]:
            raise SigningError(f"{url}: the response does not echo our nonce")
        now = self.clock.now()
        if response.next_update_utc is not None and response.next_update_utc < now:
            raise SigningError(f"{url}: the response is out of date")
        responder = self._responder(response, issuer, url)
        if response.certificate_status is ocsp.OCSPCertStatus.REVOKED:
            raise SigningError(f"{_name(cert)} is revoked ({url})")
        if response.certificate_status is ocsp.OCSPCertStatus.UNKNOWN:
            raise SigningError(f"{url}: the responder does not know {_name(cert)}")
        return answer, responder

    @staticmethod
    def _responder(response: ocsp.OCSPResponse, issuer: x509.Certificate, url: str
                   ) -> x509.Certificate | None:
        """The delegated responder certificate (None when the issuer signed), checked."""
        signer, delegated = issuer, None
        for candidate in response.certificates:
            if (signed_by(candidate, issuer)
                    and _has_eku(candidate, ExtendedKeyUsageOID.OCSP_SIGNING)):
                signer, delegated = candidate, candidate
                break
        try:
            _verify(signer.public_key(), response.signature, response.tbs_response_bytes,
                    response.signature_hash_algorithm)
        except (InvalidSignature, TypeError):
            raise SigningError(f"{url}: the response is not signed by the issuer or its "
                               "delegated responder") from None
        return delegated

    def _crl(self, cert: x509.Certificate, issuer: x509.Certificate) -> bytes:
        errors = []
        for url in _crl_urls(cert):
            try:
                data = self.fetch(url, None, None)
            except SigningError as exc:
                errors.append(str(exc))
                continue
            try:
                crl = x509.load_der_x509_crl(data)
            except ValueError:
                errors.append(f"{url}: not a DER CRL")
                continue
            if crl.issuer != issuer.subject or not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
                errors.append(f"{url}: the CRL is not signed by {_name(issuer)}")
                continue
            if crl.next_update_utc is not None and crl.next_update_utc < self.clock.now():
                errors.append(f"{url}: the CRL is out of date")
                continue
            if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
                raise SigningError(f"{_name(cert)} is revoked ({url})")
            return data
        raise SigningError("; ".join(errors))


def _has_eku(cert: x509.Certificate, usage: x509.ObjectIdentifier) -> bool:
    try:
        return usage in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False


def _verify(key: object, signature: bytes, data: bytes,
            algorithm: hashes.HashAlgorithm | None) -> None:
    """Raise InvalidSignature unless ``key`` signed ``data`` (EC, RSA PKCS#1 v1.5, Ed25519)."""
    if isinstance(key, ec.EllipticCurvePublicKey) and algorithm is not None:
        key.verify(signature, data, ec.ECDSA(algorithm))
    elif isinstance(key, rsa.RSAPublicKey) and algorithm is not None:
        key.verify(signature, data, padding.PKCS1v15(), algorithm)
    elif isinstance(key, ed25519.Ed25519PublicKey):
        key.verify(signature, data)
    else:
        raise InvalidSignature
