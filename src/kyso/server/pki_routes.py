"""OCSP responders (RFC 6960), CRL and CA certificate distribution, RFC 3161 TSA, at the URLs
the certificate profiles write into every certificate (``{base_url}/ocsp/{issuer}``,
``/crl/{issuer}.crl``, ``/crt/{issuer}.crt``).

- ``POST /ocsp/<ca>`` (``application/ocsp-request``) and ``GET /ocsp/<ca>/<base64 DER>``
  (RFC 6960 appendix A.1) answer ``application/ocsp-response``: HTTP 200 for successful and
  ``unauthorized`` (another issuer) answers, 400 with the DER ``malformedRequest`` answer and
  the reason in ``X-Kyso-Error`` for what does not parse, 503 with ``internalError`` when the
  store or the responder certificate fails. Every request reads the status from the store;
  signed responses are reused while that status holds (:mod:`kyso.pki.ocsp_cache`). GET
  answers to requests without a nonce carry RFC 5019 §6 caching headers.
- ``POST /tsa`` (``application/timestamp-query``) answers ``application/timestamp-reply``.
- ``GET /crl/<ca>.crl``: the published CRL while it is current, else a new one (with the CA
  passphrase); ``GET /crt/<ca>.crt``: the CA certificate (DER).

The responders and the TSA are unlocked at start-up with the CA passphrase (a wrong one stops
the start); without a CA or a passphrase their routes answer 503 and say why. A responder
certificate lives 30 days: the server picks up a renewed one by itself (checked every few
minutes, and at once when the one in use runs out).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.utils
import hashlib
from dataclasses import dataclass
from typing import Annotated, Any

from asn1crypto import cms, tsp
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from fastapi import APIRouter, FastAPI, Path, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from kyso import der
from kyso.audit import Layer, Outcome
from kyso.clock import UTC
from kyso.pki.ocsp_cache import OcspAnswer
from kyso.pki.serials import serial_hex
from kyso.server.options import AppOptions
from kyso.server.pki_state import ISSUING_CAS, NO_STORE, PkiState, Problem, ServedCrl

router = APIRouter(tags=["pki"])

MAX_REQUEST_BYTES = 64 * 1024  # OCSP and time-stamp requests are a few hundred bytes
MAX_GET_PATH = 8 * 1024  # a base64 OCSP request in a URL (servers refuse far longer lines)
OCSP_REQUEST, OCSP_RESPONSE = "application/ocsp-request", "application/ocsp-response"
TSA_QUERY, TSA_REPLY = "application/timestamp-query", "application/timestamp-reply"
PKIX_CRL, PKIX_CERT = "application/pkix-crl", "application/pkix-cert"
ERROR_HEADER = "X-Kyso-Error"
_MALFORMED = ("not a DER OCSPRequest (RFC 6960) for exactly one certificate, or its nonce is not "
              "1 to 32 octets, or it carries an unknown critical extension")
_MALFORMED_DER = ocsp.OCSPResponseBuilder.build_unsuccessful(
    ocsp.OCSPResponseStatus.MALFORMED_REQUEST).public_bytes(Encoding.DER)
_OCSP_HTTP = {ocsp.OCSPResponseStatus.SUCCESSFUL: 200, ocsp.OCSPResponseStatus.UNAUTHORIZED: 200,
              ocsp.OCSPResponseStatus.MALFORMED_REQUEST: 400}
IssuingCa = Annotated[str, Path(description="An issuing CA: staff, citizen or services",
                                examples=list(ISSUING_CAS))]
AnyCa = Annotated[str, Path(description="A CA: root, staff, citizen or services",
                            examples=["root", *ISSUING_CAS])]
# An OCSP request for serial 0x1234 of an issuer no CA here has (answered: unauthorized).
_EXAMPLE_REQUEST = ("MEMwQTA/MD0wOzAJBgUrDgMCGgUABBQAAAAAAAAAAAAAAAAAAAAAAAAAAAQUAAAAAAAAAAAAAAAAAAAAAAAA"
                    "AAACAhI0")
_BINARY = {"schema": {"type": "string", "format": "binary"}}
_ERROR_JSON = {"application/json": {"schema": {"type": "object", "properties": {
    "error": {"type": "string"}, "error_description": {"type": "string"}}}}}


def setup(app: FastAPI, options: AppOptions) -> None:
    """Unlock the OCSP responders and the TSA with ``options.ca_passphrase`` (a wrong
    passphrase raises; a missing CA or service certificate only turns its routes off)."""
    state = PkiState(app.state.kyso, options.ca_passphrase)
    state.start()
    app.state.pki = state


def _state(request: Request) -> PkiState:
    state: PkiState = request.app.state.pki
    return state


# --- request plumbing -------------------------------------------------------------------------

def _check_type(request: Request, expected: str, rfc: str) -> None:
    given = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if given != expected:
        shown = f"Content-Type {given[:64]!r}" if given else "no Content-Type"
        raise Problem(415, "unsupported_media_type",
                      f"{shown}: send the request as Content-Type: {expected} ({rfc})")


async def _body(request: Request) -> bytes:
    """The request body, refused with 413 as soon as it passes MAX_REQUEST_BYTES."""
    too_big = Problem(413, "request_too_large", f"the request body is larger than "
                      f"{MAX_REQUEST_BYTES} bytes")
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > MAX_REQUEST_BYTES:
        raise too_big
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_REQUEST_BYTES:
            raise too_big
    return bytes(body)


def _http_date(moment: dt.datetime) -> str:
    return email.utils.format_datetime(moment.astimezone(UTC), usegmt=True)


def _cache_headers(now: dt.datetime, this_update: dt.datetime, next_update: dt.datetime,
                   etag: str) -> dict[str, str]:
    """RFC 5019 §6.2: cacheable until nextUpdate, validated by ETag / Last-Modified."""
    max_age = max(0, int((next_update - now).total_seconds()))
    return {"Cache-Control": f"max-age={max_age}, public, no-transform, must-revalidate",
            "Last-Modified": _http_date(this_update), "Expires": _http_date(next_update),
            "ETag": etag}


def _not_modified(request: Request, etag: str) -> bool:
    wanted = request.headers.get("if-none-match", "")
    return any(tag.strip().removeprefix("W/") in (etag, "*") for tag in wanted.split(","))


def _binary(request: Request, body: bytes, media_type: str, headers: dict[str, str],
            status: int = 200) -> Response:
    if status == 200 and "ETag" in headers and _not_modified(request, headers["ETag"]):
        return Response(status_code=304, headers=headers)
    return Response(body, status_code=status, media_type=media_type, headers=headers)


def _request_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


def _docs(ok: str, media_type: str, **errors: str) -> dict[int | str, dict[str, Any]]:
    responses: dict[int | str, dict[str, Any]] = {200: {"description": ok,
                                                        "content": {media_type: _BINARY}}}
    for code, text in errors.items():
        status = int(code.removeprefix("s"))
        responses[status] = {"description": text}
        if status != 304:
            responses[status]["content"] = ({media_type: _BINARY} if text.startswith("DER")
                                            else _ERROR_JSON)
    return responses


# --- OCSP -------------------------------------------------------------------------------------

_OCSP_ERRORS = {
    "s400": "DER malformedRequest OCSPResponse (the reason in X-Kyso-Error)",
    "s404": "No OCSP responder for that CA", "s503": "The responder is off or cannot answer now",
}


async def _ocsp(request: Request, ca: str, request_der: bytes, *, via_get: bool) -> Response:
    state = _state(request)

    def work() -> OcspAnswer:
        return state.responder(ca).answer(request_der)

    answer = await run_in_threadpool(work)
    status = _OCSP_HTTP.get(answer.response_status, 503)
    headers = dict(NO_STORE)
    if answer.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST:
        headers[ERROR_HEADER] = "empty OCSP request" if not request_der else _MALFORMED
    elif answer.response_status is ocsp.OCSPResponseStatus.UNAUTHORIZED:
        headers[ERROR_HEADER] = f"the request names a certificate of another issuer than the {ca} CA"
    elif status == 503:
        headers.update({ERROR_HEADER: "the responder cannot answer now (store or responder "
                        "certificate); try again later", "Retry-After": "60"})
    elif via_get and answer.reusable and answer.this_update and answer.next_update:
        etag = f'"{hashlib.sha1(answer.der, usedforsecurity=False).hexdigest()}"'  # RFC 5019 §6.2
        headers = _cache_headers(state.kyso.now(), answer.this_update, answer.next_update, etag)
    return _binary(request, answer.der, OCSP_RESPONSE, headers, status)


def _known_responder(ca: str) -> None:
    if ca not in ISSUING_CAS:
        raise Problem(404, "unknown_ca", f"no OCSP responder for CA {ca[:64]!r}; issuing CAs: "
                      f"{', '.join(ISSUING_CAS)}")


@router.post(
    "/ocsp/{ca}", response_class=Response, summary="OCSP responder of an issuing CA (POST)",
    description="RFC 6960 OCSP request for one certificate of the CA (staff, citizen or "
                "services), answered by the CA's delegated responder: good, revoked (time and "
                "reason) or unknown; a nonce is echoed. unauthorized (HTTP 200) for another "
                "issuer's certificate.",
    openapi_extra={"requestBody": {"required": True, "content": {OCSP_REQUEST: _BINARY}}},
    responses=_docs("DER OCSPResponse (successful or unauthorized)", OCSP_RESPONSE,
                    s413="The body is larger than 64 KiB",
                    s415="The Content-Type is not application/ocsp-request", **_OCSP_ERRORS))
async def ocsp_post(ca: IssuingCa, request: Request) -> Response:
    try:
        _known_responder(ca)
        _check_type(request, OCSP_REQUEST, "RFC 6960 appendix A.1")
        body = await _body(request)
        return await _ocsp(request, ca, body, via_get=False)
    except Problem as problem:
        return problem.response()


@router.get(
    "/ocsp/{ca}/{encoded:path}", response_class=Response,
    summary="OCSP responder of an issuing CA (GET)",
    description="RFC 6960 appendix A.1: the DER OCSPRequest, base64 then URL-encoded, as the "
                "rest of the path. Answers to requests without a nonce are cacheable (RFC 5019 "
                "§6: Cache-Control max-age up to nextUpdate, Last-Modified, Expires, ETag).",
    responses=_docs("DER OCSPResponse (successful or unauthorized)", OCSP_RESPONSE,
                    s304="Not modified (If-None-Match)", s414="The encoded request is too long",
                    **_OCSP_ERRORS))
async def ocsp_get(
    ca: IssuingCa, request: Request,
    encoded: Annotated[str, Path(description="The DER OCSPRequest in base64, URL-encoded",
                                 examples=[_EXAMPLE_REQUEST])],
) -> Response:
    try:
        _known_responder(ca)
        text = encoded.strip().replace("-", "+").replace("_", "/")  # also the URL-safe alphabet
        if len(text) > MAX_GET_PATH:
            raise Problem(414, "request_too_large", f"the encoded request is longer than "
                          f"{MAX_GET_PATH} characters; POST it")
        try:
            request_der = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            return Response(_MALFORMED_DER, status_code=400, media_type=OCSP_RESPONSE, headers={
                **NO_STORE, ERROR_HEADER: "the path after /ocsp/<ca>/ is not a base64 DER "
                                          "OCSPRequest (RFC 6960 A.1)"})
        return await _ocsp(request, ca, request_der, via_get=True)
    except Problem as problem:
        return problem.response()


# --- TSA --------------------------------------------------------------------------------------

# RFC 3161 §3.4 carries every TimeStampResp in an HTTP 200; clients (openssl ts, pyHanko) read
# the PKIStatus inside and take another HTTP status for a transport failure. So a request
# that parses but is refused (hash algorithm, policy, extensions) is a 200 rejection; only
# what is not a request at all is a 400, and a TSA that cannot work now a 503.
_TSA_HTTP = {"bad_data_format": 400, "time_not_available": 503, "system_failure": 503}


@dataclass(frozen=True)
class _TsaAnswer:
    der: bytes
    status: str
    fail_info: frozenset[str]
    message: str
    serial: int | None = None
    hash_algorithm: str = ""


def _read_reply(reply: bytes) -> _TsaAnswer:
    """The PKIStatusInfo of a TimeStampResp (and, if granted, the token's serial and imprint
    algorithm for the audit event)."""
    contents = der.contents_of(reply)
    info = tsp.PKIStatusInfo.load(contents)
    status = str(info["status"].native)
    fail_info = frozenset(info["fail_info"].native or ())
    message = "; ".join(info["status_string"].native or ())
    if status not in ("granted", "granted_with_mods"):
        return _TsaAnswer(reply, status, fail_info, message)
    token = cms.ContentInfo.load(contents[len(info.dump()):])
    tst = token["content"]["encap_content_info"]["content"].parsed
    return _TsaAnswer(reply, status, fail_info, message, int(tst["serial_number"].native),
                      str(tst["message_imprint"]["hash_algorithm"]["algorithm"].native))


@router.post(
    "/tsa", response_class=Response, summary="RFC 3161 time-stamping authority",
    description="A DER TimeStampReq (SHA-256, SHA-384 or SHA-512 imprint; nonce and certReq "
                "honoured) answered with a TimeStampResp: a token under the TSA policy with "
                "1 s accuracy, or a rejection naming the problem (badAlg for other hash "
                "algorithms, unacceptedPolicy, …; HTTP 200 as RFC 3161 clients expect).",
    openapi_extra={"requestBody": {"required": True, "content": {TSA_QUERY: _BINARY}}},
    responses=_docs("DER TimeStampResp: granted, or rejected with the RFC 3161 failure info",
                    TSA_REPLY, s400="DER TimeStampResp rejection badDataFormat (not a request)",
                    s413="The body is larger than 64 KiB",
                    s415="The Content-Type is not application/timestamp-query",
                    s503="The TSA is off or cannot work now"))
async def tsa(request: Request) -> Response:
    state = _state(request)
    try:
        _check_type(request, TSA_QUERY, "RFC 3161 §3.4")
        body = await _body(request)
    except Problem as problem:
        return problem.response()
    client = request.client.host if request.client else ""

    def work() -> _TsaAnswer:
        answer = _read_reply(state.time_stamp_authority().respond(body))
        if answer.serial is not None:  # the TSA library records nothing itself
            state.kyso.record(Layer.PKI, "TIMESTAMP_CREATION", Outcome.SUCCESS,
                              object=serial_hex(answer.serial), source=client or None,
                              request_id=_request_id(request),
                              hash_algorithm=answer.hash_algorithm)
        return answer

    try:
        answer = await run_in_threadpool(work)
    except Problem as problem:
        return problem.response()
    status = max((_TSA_HTTP.get(bit, 200) for bit in answer.fail_info), default=200)
    headers = dict(NO_STORE)
    if answer.message:
        headers[ERROR_HEADER] = answer.message.encode("ascii", "replace").decode("ascii")[:300]
    return Response(answer.der, status_code=status, media_type=TSA_REPLY, headers=headers)


# --- CRL and CA certificates ------------------------------------------------------------------

@router.head("/crl/{ca}.crl", include_in_schema=False)
@router.get(
    "/crl/{ca}.crl", response_class=Response,
    summary="The CRL of a CA (the CRL distribution point in its certificates)",
    description="The DER CRL, cacheable until its nextUpdate. A CRL older than the 24-hour "
                "publication interval is replaced by a new one when the server holds the CA "
                "passphrase.",
    responses=_docs("DER CertificateList", PKIX_CRL, s304="Not modified (If-None-Match)",
                    s404="Unknown CA", s503="No valid CRL and none can be published now"))
async def crl(ca: AnyCa, request: Request) -> Response:
    state = _state(request)

    def work() -> ServedCrl:
        return state.crls.current(state.authority(ca))

    try:
        found = await run_in_threadpool(work)
    except Problem as problem:
        return problem.response()
    headers = _cache_headers(state.kyso.now(), found.this_update, found.next_update, found.etag)
    return _binary(request, found.der, PKIX_CRL, headers)


@router.head("/crt/{ca}.crt", include_in_schema=False)
@router.get(
    "/crt/{ca}.crt", response_class=Response,
    summary="A CA certificate (the caIssuers address in the certificates it issued)",
    responses=_docs("DER Certificate", PKIX_CERT, s304="Not modified (If-None-Match)",
                    s404="Unknown CA"))
async def crt(ca: AnyCa, request: Request) -> Response:
    state = _state(request)
    try:
        info = await run_in_threadpool(state.authority, ca)
    except Problem as problem:
        return problem.response()
    body = info.certificate.public_bytes(Encoding.DER)
    headers = {"Cache-Control": "max-age=86400, public, no-transform",
               "ETag": f'"{hashlib.sha256(body).hexdigest()}"'}
    return _binary(request, body, PKIX_CERT, headers)

