"""The trust services a signature needs beyond the signer's key: timestamps (B-T, B-LTA) and
revocation data (B-LT). :class:`LocalServices` runs them in-process from this home's CA (the
CLI's case); ``kyso serve`` offers the same over HTTP.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Protocol

from cryptography import x509

from kyso.context import Kyso
from kyso.errors import PkiError, SigningError
from kyso.pki.authority import CertificateAuthority, list_authorities
from kyso.pki.crl import publish_crl
from kyso.pki.ocsp import OcspResponder, load_responder, serial_status
from kyso.pki.tsa import TimeStampAuthority, load_tsa

CRL_MIN_REMAINING = dt.timedelta(hours=1)


@dataclass(frozen=True)
class RevocationData:
    """What B-LT embeds in the DSS: certificates, OCSP responses and CRLs (DER)."""

    certificates: tuple[x509.Certificate, ...] = ()
    ocsp_responses: tuple[bytes, ...] = ()
    crls: tuple[bytes, ...] = ()

    def __add__(self, other: RevocationData) -> RevocationData:
        def merged(a: tuple, b: tuple) -> tuple:  # type: ignore[type-arg]
            return tuple(dict.fromkeys(a + b))
        return RevocationData(merged(self.certificates, other.certificates),
                              merged(self.ocsp_responses, other.ocsp_responses),
                              merged(self.crls, other.crls))


class TrustServices(Protocol):
    def timestamp_token(self, digest: bytes, hash_algorithm: str) -> bytes:
        """A DER RFC 3161 TimeStampToken over ``digest``."""

    def timestamp_response(self, request: bytes) -> bytes:
        """A DER TimeStampResp to a DER TimeStampReq."""

    def tsa_chain(self) -> tuple[x509.Certificate, ...]:
        """The TSA certificate, then its issuers up to the root."""

    def revocation(self, chain: tuple[x509.Certificate, ...]) -> RevocationData:
        """Current revocation data for every non-root certificate of ``chain``."""


@dataclass
class LocalServices:
    """This home's TSA, OCSP responders and CRLs, unlocked with the CA passphrase."""

    kyso: Kyso
    passphrase: str = field(repr=False)
    _tsa: TimeStampAuthority | None = field(default=None, init=False, repr=False)
    _responders: dict[str, OcspResponder] = field(default_factory=dict, init=False, repr=False)
    _crls: dict[str, bytes] = field(default_factory=dict, init=False, repr=False)

    def _authority(self) -> TimeStampAuthority:
        if self._tsa is None:
            self._tsa = load_tsa(self.kyso, self.passphrase)
        return self._tsa

    def timestamp_token(self, digest: bytes, hash_algorithm: str) -> bytes:
        try:
            token = self._authority().timestamp_token(digest, hash_algorithm)
        except PkiError as exc:
            raise SigningError(f"timestamping failed: {exc}") from None
        return token

    def timestamp_response(self, request: bytes) -> bytes:
        return self._authority().respond(request)

    def tsa_chain(self) -> tuple[x509.Certificate, ...]:
        service = self._authority().service
        return (service.certificate, *service.chain)

    def _ca_names(self) -> dict[bytes, str]:
        return {a.certificate.subject.public_bytes(): a.name for a in list_authorities(self.kyso)}

    def _ocsp(self, ca_name: str, cert: x509.Certificate) -> tuple[bytes, x509.Certificate]:
        responder = self._responders.get(ca_name)
        if responder is None:
            responder = self._responders[ca_name] = load_responder(self.kyso, self.passphrase,
                                                                   ca_name)
        status = serial_status(self.kyso, ca_name, cert.serial_number)
        der = responder.response_for(cert.serial_number, status)
        return der, responder.service.certificate

    def _crl(self, ca_name: str) -> bytes:
        """The CA's published CRL; a fresh one is published when none has an hour left."""
        if ca_name in self._crls:
            return self._crls[ca_name]
        path = self.kyso.settings.crl_dir / f"{ca_name}.crl"
        der = None
        if path.is_file():
            crl = x509.load_der_x509_crl(path.read_bytes())
            next_update = crl.next_update_utc
            if next_update is not None and next_update - self.kyso.now() > CRL_MIN_REMAINING:
                der = path.read_bytes()
        if der is None:
            der = publish_crl(self.kyso, CertificateAuthority(self.kyso, self.passphrase),
                              ca_name).der
        self._crls[ca_name] = der
        return der

    def revocation(self, chain: tuple[x509.Certificate, ...]) -> RevocationData:
        names = self._ca_names()
        certs: list[x509.Certificate] = list(chain)
        ocsps: list[bytes] = []
        crls: list[bytes] = []
        for cert in chain:
            if cert.issuer == cert.subject:
                continue  # a trust anchor is not checked for revocation
            ca_name = names.get(cert.issuer.public_bytes())
            if ca_name is None:
                raise SigningError(f"no revocation data for {cert.subject.rfc4514_string()}: "
                                   "its issuer is not a CA of this home")
            if ca_name == "root":
                crls.append(self._crl("root"))
            else:
                der, responder = self._ocsp(ca_name, cert)
                ocsps.append(der)
                certs.append(responder)
        return RevocationData(tuple(certs), tuple(ocsps), tuple(crls))
