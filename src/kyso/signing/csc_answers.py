"""The strict reading of a CSC v2 signing gateway's answers for :mod:`kyso.signing.csc_client`:
the results (:class:`GatewayInfo`, :class:`Credential`, :class:`Authorization`,
:class:`EnrolledCredential`, :class:`RemoteSignature`), a JSON object answer read member by
member (:class:`Answer`: the fields and types the contract names, nothing lenient), strict
base64, certificates that must chain with the signer first, and a refusal's own words
(:func:`refusal`). Every problem is a :class:`~kyso.errors.SigningError` naming the URL and
what is wrong; a gateway's text is shown only cleaned and bounded (:func:`clean`)."""

from __future__ import annotations

import base64
import binascii
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from kyso.errors import SigningError

__all__ = ["MAX_ANSWER", "MAX_CERTIFICATES", "Answer", "Authorization", "Credential",
           "EnrolledCredential", "GatewayInfo", "RemoteSignature", "b64_value", "certificates",
           "chained", "clean", "json_object", "pem_certificates", "refusal"]

MAX_ANSWER = 2**20  # a credential's chain is a few KiB; anything near this is not an answer
MAX_CERTIFICATES = 8


def clean(text: object, limit: int = 300) -> str:
    """A gateway's own words, safe to show: printable, one line, bounded."""
    value = "".join(c if c.isprintable() else " " for c in str(text))
    return value if len(value) <= limit else value[:limit] + "…"


# --- results -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GatewayInfo:
    """The answer of ``info``."""

    specs: str
    name: str
    methods: tuple[str, ...]
    auth_types: tuple[str, ...]
    oauth2: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"specs": self.specs, "name": self.name, "methods": list(self.methods),
                "authType": list(self.auth_types), "oauth2": self.oauth2}


@dataclass(frozen=True)
class Credential:
    """The answer of ``credentials/info``: the key's state and algorithms, the certificate
    (signer first, then its issuers without the root), checked to chain."""

    credential_id: str
    key_status: str
    key_algorithms: tuple[str, ...]
    key_length: int
    certificate_status: str
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    description: str = ""
    multisign: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {"credential_id": self.credential_id, "key_status": self.key_status,
                "key_algorithms": list(self.key_algorithms), "key_length": self.key_length,
                "certificate_status": self.certificate_status,
                "serial": f"{self.certificate.serial_number:x}",
                "subject": self.certificate.subject.rfc4514_string(),
                "chain": [c.subject.rfc4514_string() for c in self.chain],
                "description": self.description, "multisign": self.multisign}


@dataclass(frozen=True)
class Authorization:
    """The answer of ``credentials/authorize``: the SAD (secret, never shown) and its life."""

    sad: str = field(repr=False)
    expires_in: int | None = None


@dataclass(frozen=True)
class EnrolledCredential:
    """The answer of kyso's enrolment (``POST /api/v1/signing/credentials``)."""

    credential_id: str
    certificate: x509.Certificate
    serial: str
    chain: tuple[x509.Certificate, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"credential_id": self.credential_id, "serial": self.serial,
                "subject": self.certificate.subject.rfc4514_string(),
                "chain": [c.subject.rfc4514_string() for c in self.chain]}


@dataclass(frozen=True)
class RemoteSignature:
    """One signature the gateway made: the digest it signed (hex) and how long its SAD was
    valid. No secret."""

    credential_id: str
    digest: str
    digest_name: str
    sign_algorithm: str
    expires_in: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"credential_id": self.credential_id, "digest": self.digest,
                "digest_name": self.digest_name, "sign_algorithm": self.sign_algorithm,
                "sad_expires_in": self.expires_in}


# --- the answers, read strictly --------------------------------------------------------------------

def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate member {key!r}")
        out[key] = value
    return out


def json_object(data: bytes, where: str) -> dict[str, Any]:
    try:
        value = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise SigningError(f"{where}: the answer is not JSON ({clean(exc, 120)})") from None
    if not isinstance(value, dict):
        raise SigningError(f"{where}: the answer is not a JSON object")
    return value


class Answer:
    """Typed access to a JSON object answer; every miss names the URL and the member."""

    def __init__(self, data: dict[str, Any], where: str) -> None:
        self.data = data
        self.where = where

    def fail(self, problem: str) -> SigningError:
        return SigningError(f"{self.where}: {problem}")

    def get(self, name: str, kind: type | tuple[type, ...], *, required: bool = True) -> Any:
        value = self.data.get(name)
        if value is None and not required:
            return None
        if value is None:
            raise self.fail(f"the answer has no {name!r}")
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise self.fail(f"{name!r} in the answer has the wrong type "
                            f"({type(value).__name__})")
        return value

    def text(self, name: str, *, required: bool = True, limit: int = 2000) -> str | None:
        value = self.get(name, str, required=required)
        if value is not None and (len(value) > limit or not value.isprintable()):
            raise self.fail(f"{name!r} in the answer is not a short printable string")
        return value  # type: ignore[no-any-return]

    def texts(self, name: str, *, required: bool = True, limit: int = 100) -> tuple[str, ...]:
        value = self.get(name, list, required=required)
        if value is None:
            return ()
        if len(value) > limit or not all(isinstance(v, str) and v.isprintable() for v in value):
            raise self.fail(f"{name!r} in the answer is not a list of strings")
        return tuple(value)

    def object(self, name: str) -> Answer:
        return Answer(self.get(name, dict), f"{self.where} ({name})")

    def integer(self, name: str, low: int, high: int, *, required: bool = True) -> int | None:
        value = self.get(name, int, required=required)
        if value is not None and not low <= value <= high:
            raise self.fail(f"{name!r} in the answer is out of range ({value})")
        return value  # type: ignore[no-any-return]


def b64_value(value: object, what: str, where: str, limit: int) -> bytes:
    if not isinstance(value, str) or len(value) > limit * 4 // 3 + 4:
        raise SigningError(f"{where}: {what} is not a base64 string of at most {limit} bytes")
    try:
        data = base64.b64decode(value.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise SigningError(f"{where}: {what} is not valid base64") from None
    if not data:
        raise SigningError(f"{where}: {what} is empty")
    return data


def certificates(values: Sequence[object], where: str) -> tuple[x509.Certificate, ...]:
    """Base64 DER certificates, signer first; each must be issued by the next one."""
    if not values or len(values) > MAX_CERTIFICATES:
        raise SigningError(f"{where}: the answer must carry 1-{MAX_CERTIFICATES} certificates")
    certs = []
    for i, value in enumerate(values):
        der = b64_value(value, f"certificate {i + 1}", where, 64 * 1024)
        try:
            certs.append(x509.load_der_x509_certificate(der))
        except ValueError:
            raise SigningError(f"{where}: certificate {i + 1} is not a DER X.509 certificate"
                               ) from None
    return chained(certs, where)


def chained(certs: list[x509.Certificate], where: str) -> tuple[x509.Certificate, ...]:
    for i, (cert, issuer) in enumerate(itertools.pairwise(certs)):
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            raise SigningError(f"{where}: certificate {i + 1} ({cert.subject.rfc4514_string()}) "
                               f"is not issued by the next one") from None
    try:
        basic = certs[0].extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        basic = None
    if basic is not None and basic.ca:
        raise SigningError(f"{where}: the first certificate is a CA's, not the signer's")
    if not isinstance(certs[0].public_key(), rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise SigningError(f"{where}: the signer's key is neither RSA nor EC")
    return tuple(certs)


def pem_certificates(value: object, what: str, where: str) -> list[x509.Certificate]:
    if not isinstance(value, str) or len(value) > 64 * 1024:
        raise SigningError(f"{where}: {what} is not a PEM string")
    try:
        found = x509.load_pem_x509_certificates(value.encode("ascii"))
    except (UnicodeEncodeError, ValueError):
        raise SigningError(f"{where}: {what} is not a PEM certificate") from None
    return found



# --- a refusal -----------------------------------------------------------------------------------

def refusal(url: str, status: int, body: bytes, challenge: str | None) -> SigningError:
    """A gateway's HTTP error as a SigningError naming ``url``, the status and the gateway's own
    ``error`` / ``error_description`` (cleaned, bounded); for a 401, what to do about it."""
    if 300 <= status < 400:
        return SigningError(f"{url}: the gateway answered a redirect (HTTP {status}); "
                            "it is not followed")
    error = description = None
    if len(body) <= MAX_ANSWER:
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            data = None
        if isinstance(data, dict):
            error, description = data.get("error"), data.get("error_description")
    said = ": ".join(clean(v, 80 if v is error else 300) for v in (error, description)
                     if isinstance(v, str) and v)
    if status >= 500:
        what = f"the signing gateway failed (HTTP {status})"
    else:
        what = f"the signing gateway refused (HTTP {status})"
    hint = ""
    if status == 401:
        hint = (" — the access token was not accepted: log in again (a fresh level-2 login "
                "for audience kyso-csc) and retry")
        if not said and challenge:
            said = clean(challenge, 300)
    return SigningError(f"{url}: {what}" + (f": {said}" if said else "") + hint)
