"""A client of a Cloud Signature Consortium API v2 signing gateway (kyso's own, issue 7, or any
that speaks the subset): the key stays with the gateway; kyso builds the CMS itself and asks
the gateway to sign the hash of its signed attributes.

:class:`CscClient` makes the calls (``info``, ``credentials/list``, ``credentials/info``,
``credentials/authorize``, ``signatures/signHash``, and kyso's own enrolment
``POST /api/v1/signing/credentials``) with the standard library only, as
:mod:`kyso.signing.http_services` does: ``https``, or ``http`` to a loopback address only (a
bearer token never crosses a network in clear), a timeout, no redirects followed, answers of at
most :data:`MAX_ANSWER` bytes. Every answer is parsed strictly — a JSON object with the fields
and types the contract names, strict base64, certificates that chain, as many signatures as
hashes, each verified with the credential's certificate — so a broken or hostile gateway makes
signing fail with the URL and the problem named (a :class:`~kyso.errors.SigningError`), never a
traceback and never a signed file with a bad signature in it.

:class:`RemoteKey` is the gateway-held key as a :class:`~kyso.signing.cms.DigestSigner`: each
signature is one ``credentials/authorize`` with the digest (the gateway answers with signature
activation data, SAD, bound to it) and one ``signatures/signHash``. :func:`remote_signer` builds
a :class:`~kyso.signing.sign.PdfSigner` on it. The access token (level 2, audience
``kyso-csc``, from a fresh login for ``authorize``) and the SAD never appear in an error
message or a ``repr``.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
import ssl
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from kyso.clock import Clock
from kyso.errors import SigningError
from kyso.signing.cms import DIGESTS, CmsSigner, PublicKey, chain_without_root, check_digest
from kyso.signing.csc_answers import (
    MAX_ANSWER,
    MAX_CERTIFICATES,
    Answer,
    Authorization,
    Credential,
    EnrolledCredential,
    GatewayInfo,
    RemoteSignature,
    b64_value,
    certificates,
    chained,
    clean,
    json_object,
    pem_certificates,
    refusal,
)
from kyso.signing.services import TrustServices
from kyso.signing.sign import PdfSigner

__all__ = ["API_VERSION", "MAX_ANSWER", "Authorization", "Credential", "CscClient",
           "EnrolledCredential", "GatewayInfo", "RemoteKey", "RemoteSignature",
           "check_service_url", "check_token", "remote_signer", "sign_algorithm"]

API_VERSION = "v2"
TIMEOUT = 30.0
MAX_TOKEN = 8192
MAX_SAD = 4096
MAX_SIGNATURE = 1024  # DER ECDSA P-521 is 139 bytes, RSA-4096 512
NEEDED_METHODS = ("credentials/info", "credentials/authorize", "signatures/signHash")
_LOOPBACK_NAMES = {"localhost"}
_JWT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_SIGN_ALGORITHMS = {  # (key type, digest) → signature algorithm OID
    ("ec", "sha256"): "1.2.840.10045.4.3.2", ("ec", "sha384"): "1.2.840.10045.4.3.3",
    ("ec", "sha512"): "1.2.840.10045.4.3.4", ("rsa", "sha256"): "1.2.840.113549.1.1.11",
    ("rsa", "sha384"): "1.2.840.113549.1.1.12", ("rsa", "sha512"): "1.2.840.113549.1.1.13",
}
_RSA_ENCRYPTION = "1.2.840.113549.1.1.1"  # CSC: with hashAlgorithmOID, means PKCS#1 v1.5


# --- inputs --------------------------------------------------------------------------------------

def _loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_service_url(url: str) -> str:
    """The gateway's base URL (what precedes ``/csc/v2/…``), normalised without a trailing
    ``/`` or ``/csc/v1|v2``; SigningError unless it is ``https``, or ``http`` on a loopback
    address, without user information, query or fragment."""
    if not isinstance(url, str) or not url or len(url) > 2000 or not url.isprintable():
        raise SigningError("the gateway URL must be an http(s) URL of at most 2000 characters")
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise SigningError(f"{url}: not a valid URL") from None
    if parts.scheme not in ("https", "http") or not host:
        raise SigningError(f"{url}: the gateway URL must be https://… (http:// on loopback only)")
    if parts.scheme == "http" and not _loopback(host):
        raise SigningError(f"{url}: the access token would travel in clear; use https (http "
                           "is allowed to 127.0.0.1, [::1] and localhost only)")
    if "@" in parts.netloc or parts.query or parts.fragment:
        raise SigningError(f"{url}: the gateway URL must not carry user information, a query "
                           "or a fragment")
    base = url.rstrip("/")
    for suffix in ("/csc/v2", "/csc/v1"):
        base = base.removesuffix(suffix)
    return base


def check_token(token: str) -> str:
    """``token`` stripped, if it looks like a JWT access token; SigningError otherwise (the
    message never repeats it)."""
    token = token.strip() if isinstance(token, str) else ""
    if not token:
        raise SigningError("the access token is empty")
    if len(token) > MAX_TOKEN or not _JWT.fullmatch(token):
        raise SigningError("the access token is not a JWT (three base64url parts separated by "
                           f"dots, at most {MAX_TOKEN} characters)")
    return token


# --- the client ----------------------------------------------------------------------------------

class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect would carry the bearer token elsewhere: it is an error


class CscClient:
    """Calls to one gateway with one access token (see the module docstring)."""

    def __init__(self, service_url: str, token: str, *, tls: ssl.SSLContext | None = None,
                 timeout: float = TIMEOUT, api_version: str = API_VERSION) -> None:
        self.base = check_service_url(service_url)
        self._token = check_token(token)
        self.api_version = api_version
        self.timeout = timeout
        handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
        if _loopback(urlsplit(self.base).hostname or ""):
            handlers.append(urllib.request.ProxyHandler({}))  # never via a proxy to loopback
        if urlsplit(self.base).scheme == "https":
            handlers.append(urllib.request.HTTPSHandler(context=tls or ssl.create_default_context()))
        self._opener = urllib.request.build_opener(*handlers)

    def __repr__(self) -> str:
        return f"CscClient({self.base!r})"

    # --- transport ----------------------------------------------------------------------------

    def url(self, method: str) -> str:
        return f"{self.base}/csc/{self.api_version}/{method}"

    def post(self, url: str, body: dict[str, Any] | None, *, token: bool = True,
             expect: int = 200) -> Answer:
        """POST ``body`` as JSON to ``url``; the answer as a JSON object (SigningError naming
        ``url`` and the problem otherwise: refusal, no connection, oversize, not JSON)."""
        headers = {"Content-Type": "application/json", "Accept": "application/json",
                   "User-Agent": "kyso-csc-client"}
        if token:
            headers["Authorization"] = f"Bearer {self._token}"
        data = json.dumps(body if body is not None else {}).encode("utf-8")
        request = urllib.request.Request(url, data=data, headers=headers, method="POST")  # noqa: S310 - scheme checked
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                status = response.status
                answer = response.read(MAX_ANSWER + 1)
        except urllib.error.HTTPError as exc:
            with exc:
                try:
                    said = exc.read(MAX_ANSWER + 1)
                except (OSError, ValueError):
                    said = b""
                raise refusal(url, exc.code, said,
                                    exc.headers.get("WWW-Authenticate")) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise SigningError(f"{url}: cannot reach the signing gateway ({clean(reason)})"
                               ) from None
        if len(answer) > MAX_ANSWER:
            raise SigningError(f"{url}: the answer is larger than {MAX_ANSWER // 2**10} KiB")
        if status != expect:
            raise SigningError(f"{url}: the gateway answered HTTP {status}, not {expect}")
        return Answer(json_object(answer, url), url)

    # --- the calls ----------------------------------------------------------------------------

    def info(self) -> GatewayInfo:
        """``info`` (no token): the gateway's specs and methods; SigningError unless it speaks
        CSC v2 and offers the methods signing needs."""
        a = self.post(self.url("info"), {}, token=False)
        specs = a.text("specs", limit=40) or ""
        methods = a.texts("methods")
        if not specs.startswith("2."):
            raise a.fail(f"the gateway speaks CSC {specs!r}, not 2.x")
        missing = [m for m in NEEDED_METHODS if m not in methods]
        if missing:
            raise a.fail(f"the gateway does not offer {', '.join(missing)}")
        return GatewayInfo(specs=specs, name=a.text("name", limit=200) or "", methods=methods,
                           auth_types=a.texts("authType", required=False),
                           oauth2=a.text("oauth2", required=False))

    def list_credentials(self) -> tuple[str, ...]:
        """``credentials/list``: the caller's credential ids."""
        a = self.post(self.url("credentials/list"), {})
        ids = a.texts("credentialIDs", limit=1000)
        if any(not i or len(i) > 200 for i in ids):
            raise a.fail("'credentialIDs' holds an empty or over-long id")
        return ids

    def credential_info(self, credential_id: str) -> Credential:
        """``credentials/info`` with the chain (``certificates: chain``)."""
        a = self.post(self.url("credentials/info"),
                      {"credentialID": credential_id, "certificates": "chain", "certInfo": True})
        key, cert = a.object("key"), a.object("cert")
        key_status = key.text("status", limit=40) or ""
        algorithms = key.texts("algo")
        length = key.integer("len", 1, 16384) or 0
        cert_status = cert.text("status", required=False, limit=40) or "valid"
        certs = certificates(cert.get("certificates", list), cert.where)
        return Credential(
            credential_id=credential_id, key_status=key_status, key_algorithms=algorithms,
            key_length=length, certificate_status=cert_status,
            certificate=certs[0], chain=certs[1:],
            description=a.text("description", required=False, limit=500) or "",
            multisign=a.integer("multisign", 1, 10_000, required=False) or 1)

    def authorize(self, credential_id: str, digests: Sequence[bytes], digest_name: str,
                  description: str | None = None) -> Authorization:
        """``credentials/authorize`` for exactly ``digests``: the SAD bound to them."""
        name = check_digest(digest_name)
        body: dict[str, Any] = {
            "credentialID": credential_id, "numSignatures": len(digests),
            "hashes": [base64.b64encode(d).decode("ascii") for d in digests],
            "hashAlgorithmOID": DIGESTS[name][0]}
        if description:
            body["description"] = description
        a = self.post(self.url("credentials/authorize"), body)
        sad = a.text("SAD", limit=MAX_SAD) or ""
        if not sad:
            raise a.fail("the SAD is empty")
        return Authorization(sad, a.integer("expiresIn", 1, 86_400, required=False))

    def sign_hash(self, credential_id: str, authorization: Authorization,
                  digests: Sequence[bytes], digest_name: str, sign_algorithm: str
                  ) -> tuple[bytes, ...]:
        """``signatures/signHash``: one raw signature per digest, in their order."""
        name = check_digest(digest_name)
        a = self.post(self.url("signatures/signHash"), {
            "credentialID": credential_id, "SAD": authorization.sad,
            "hashes": [base64.b64encode(d).decode("ascii") for d in digests],
            "hashAlgorithmOID": DIGESTS[name][0], "signAlgo": sign_algorithm,
            "operationMode": "S"})
        values = a.get("signatures", list)
        if len(values) != len(digests):
            raise a.fail(f"the gateway returned {len(values)} signature(s) for "
                         f"{len(digests)} hash(es)")
        return tuple(b64_value(v, f"signature {i + 1}", a.where, MAX_SIGNATURE)
                     for i, v in enumerate(values))

    def enrol(self) -> EnrolledCredential:
        """kyso's enrolment: the gateway generates a key and has a citizen certificate issued
        for the token's subject (a fresh level-2 login)."""
        url = f"{self.base}/api/v1/signing/credentials"
        a = self.post(url, {}, expect=201)
        credential_id = a.text("credentialID", limit=200) or ""
        if not credential_id:
            raise a.fail("the credential id is empty")
        leaf = pem_certificates(a.get("certificate", str), "'certificate'", url)
        chain = [c for i, v in enumerate(a.get("chain", list))
                 for c in pem_certificates(v, f"chain entry {i + 1}", url)]
        if len(leaf) != 1 or len(chain) > MAX_CERTIFICATES:
            raise a.fail("the answer must carry one certificate and a short chain")
        certs = chained([*leaf, *chain_without_root(chain)], url)
        serial = a.text("serialNumber", limit=80) or ""
        if serial.lower().lstrip("0") != f"{certs[0].serial_number:x}":
            raise a.fail("'serialNumber' is not the certificate's serial number")
        return EnrolledCredential(credential_id, certs[0], serial, certs[1:])


# --- the gateway-held key ------------------------------------------------------------------------

def _verify(public: PublicKey, signature: bytes, digest: bytes, digest_name: str) -> bool:
    algorithm = Prehashed(DIGESTS[digest_name][1]())
    try:
        if isinstance(public, rsa.RSAPublicKey):
            public.verify(signature, digest, padding.PKCS1v15(), algorithm)
        else:
            public.verify(signature, digest, ec.ECDSA(algorithm))
    except (InvalidSignature, ValueError):
        return False
    return True


def sign_algorithm(public: PublicKey, digest_name: str) -> str:
    """The CSC ``signAlgo`` (a signature algorithm OID) for this key and digest."""
    kind = "rsa" if isinstance(public, rsa.RSAPublicKey) else "ec"
    return _SIGN_ALGORITHMS[(kind, check_digest(digest_name))]


class RemoteKey:
    """A credential's key, held by the gateway, as a :class:`~kyso.signing.cms.DigestSigner`:
    ``sign_digest`` authorizes the digest (SAD) and has the gateway sign it, then checks the
    signature against the credential's certificate. ``signatures`` lists what was signed."""

    def __init__(self, client: CscClient, credential: Credential,
                 description: str | None = None) -> None:
        self.client = client
        self.credential = credential
        self.description = description
        self.signatures: list[RemoteSignature] = []

    def __repr__(self) -> str:
        return f"RemoteKey({self.client.base!r}, {self.credential.credential_id!r})"

    def public_key(self) -> PublicKey:
        public = self.credential.certificate.public_key()
        assert isinstance(public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)  # chained() checked it
        return public

    def sign_digest(self, digest: bytes, digest_name: str) -> bytes:
        name = check_digest(digest_name)
        public = self.public_key()
        algo = sign_algorithm(public, name)
        offered = self.credential.key_algorithms
        if algo not in offered and not (isinstance(public, rsa.RSAPublicKey)
                                        and _RSA_ENCRYPTION in offered):
            raise SigningError(f"{self.client.url('credentials/info')}: the credential's key "
                               f"does not offer {algo} (it offers {', '.join(offered) or 'none'})")
        cid = self.credential.credential_id
        authorization = self.client.authorize(cid, [digest], name, self.description)
        (signature,) = self.client.sign_hash(cid, authorization, [digest], name, algo)
        if not _verify(public, signature, digest, name):
            raise SigningError(f"{self.client.url('signatures/signHash')}: the gateway's signature "
                               "does not verify with the credential's certificate")
        self.signatures.append(RemoteSignature(cid, digest.hex(), name, algo,
                                               authorization.expires_in))
        return signature


def remote_signer(client: CscClient, credential_id: str, clock: Clock, *,
                  services: TrustServices | None = None, digest: str = "sha256",
                  description: str | None = None) -> PdfSigner:
    """A :class:`~kyso.signing.sign.PdfSigner` whose key is the gateway's credential
    ``credential_id``: its certificate and chain come from ``credentials/info``; the key must
    be enabled and the certificate valid."""
    if not isinstance(credential_id, str) or not credential_id or len(credential_id) > 200 \
            or not credential_id.isprintable():
        raise SigningError("the credential id must be 1-200 printable characters")
    credential = client.credential_info(credential_id)
    where = client.url("credentials/info")
    if credential.key_status != "enabled":
        raise SigningError(f"{where}: the credential's key is {clean(credential.key_status, 40)}")
    if credential.certificate_status != "valid":
        raise SigningError(f"{where}: the credential's certificate is "
                           f"{clean(credential.certificate_status, 40)}")
    key = RemoteKey(client, credential, description)
    cms = CmsSigner(key, credential.certificate, chain_without_root(credential.chain),
                    check_digest(digest))
    return PdfSigner(cms, clock, services)

