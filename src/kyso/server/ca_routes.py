"""CA administration over HTTP (``/api/v1/certificates…``), for tokens with the ca-admin role.

Every call needs ``Authorization: Bearer <access token>`` minted by this server's provider for
the audience :data:`AUDIENCE`, at level 2, carrying the ``ca-admin`` role (``kyso id role grant
--role ca-admin``); :func:`kyso.server.bearer.authenticate` checks it and asks the store whether
the provider still stands behind it, exactly as for the auditor API.

- ``POST /api/v1/certificates``: issue from a PKCS#10 request, as ``kyso cert issue --csr``
  does (:func:`kyso.pki.issuance.issue`: the same profile, subject and key checks, the same
  ``CERT_CREATION`` events, the record in the store); 201 with the certificate and its chain.
- ``GET /api/v1/certificates/{serial}``: the record, as ``kyso cert show --format json``.
- ``POST …/{serial}/revoke`` (``{"reason", "compromised_at"}``), ``…/hold``, ``…/release``:
  the status changes of :mod:`kyso.pki.lifecycle`, answered as ``kyso cert revoke --format
  json`` prints them; a change the certificate's status does not allow is a 409 naming it.

The routes are on only on a node started with the CA passphrase (``--ca-passphrase-file``);
without it they answer 503, like OCSP. Work runs in the thread pool, at most
:data:`MAX_CONCURRENT` calls at a time per process; a JSON body is at most
:data:`MAX_BODY_BYTES`.

Admins are audited as the library audits the CLI: the events of an issuance or a status change
carry the admin's pseudonym as actor, the client's address and the request id. A refused call
(no or bad token, no role, a body of the wrong shape, a CSR the profile refuses, an unknown
serial, a status conflict) is one failure event with the action of the operation asked for
(``CERT_CREATION``, ``CERT_REVOKED``, ``CERT_STATUSCHANGE``, ``CERT_VIEW``), never two; reading a
record records ``CERT_VIEW`` (it shows a personal ID number to the admin).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import anyio
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, Depends, FastAPI, Request, Security
from fastapi.responses import Response
from fastapi.security import HTTPBearer
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from kyso.audit import Layer, Outcome
from kyso.authn.registry import Level
from kyso.authn.roles import Role
from kyso.authn.rp import TokenVerifier
from kyso.context import Kyso
from kyso.errors import (
    AuditError,
    CertificateNotFoundError,
    CSRError,
    KysoError,
    RevocationError,
)
from kyso.pki import issuance, lifecycle
from kyso.pki.authority import CertificateAuthority
from kyso.pki.csr import load_csr
from kyso.pki.records import CertificateRecord
from kyso.pki.serials import parse_serial
from kyso.pki.subjects import SubjectRequest
from kyso.server.api import (
    ApiError,
    JsonApiRoute,
    client_host,
    error_responses,
    json_request_body,
    json_response,
    read_json,
    request_id,
)
from kyso.server.bearer import BearerPolicy, Caller, Refused, authenticate
from kyso.server.ca_models import (
    CHANGED,
    ERRORS,
    MAX_BODY_BYTES,
    RETRY,
    IssuedBody,
    IssueRequest,
    Refusal,
    RevokeRequest,
    SerialPath,
    ShownBody,
    refusal_of,
    unavailable,
)
from kyso.server.options import AppOptions

__all__ = ["AUDIENCE", "MAX_BODY_BYTES", "MAX_CONCURRENT", "MIN_LEVEL", "POLICY", "REALM",
           "CaAdmin", "router", "setup"]

AUDIENCE = "kyso-api"
REALM = "kyso-api"
MIN_LEVEL = Level.TWO
MAX_CONCURRENT = 4  # calls worked on at once per process; the others wait their turn
_CA_LOCKED = ("the server was started without the CA passphrase (--ca-passphrase-file or "
              "$KYSO_CA_PASSPHRASE), so CA administration is off on this node")

POLICY = BearerPolicy(audience=AUDIENCE, realm=REALM, min_level=MIN_LEVEL, role=Role.CA_ADMIN)

_bearer = HTTPBearer(auto_error=False, bearerFormat="JWT", scheme_name="caAdminToken",
                     description=f"An access token of this server's provider for the audience "
                                 f"{AUDIENCE}, level 2, with the ca-admin role.")
router = APIRouter(prefix="/api/v1/certificates", tags=["ca"], route_class=JsonApiRoute,
                   dependencies=[Security(_bearer)])


# --- the state of the routes --------------------------------------------------------------


class CaAdmin:
    """What the routes share (``app.state.ca_admin``): the token verifier, the CA unlocked on
    first use with the node's CA passphrase, and the concurrency limit."""

    def __init__(self, kyso: Kyso, passphrase: str | None, tokens: TokenVerifier) -> None:
        self.kyso, self.tokens = kyso, tokens
        self._passphrase = passphrase
        self._ca: CertificateAuthority | None = None
        self._lock = threading.Lock()
        self.slots = anyio.Semaphore(MAX_CONCURRENT)

    def check(self) -> str:
        """The CA passphrase, or 503: CA administration is off on this node."""
        if self._passphrase is None:
            raise Refusal(503, "service_unavailable", _CA_LOCKED, headers=RETRY)
        return self._passphrase

    def authority(self) -> CertificateAuthority:
        """The CA (built late if ``kyso ca init`` ran after start-up), or 503."""
        passphrase = self.check()
        with self._lock:
            if self._ca is None:
                try:
                    self._ca = CertificateAuthority(self.kyso, passphrase)
                except KysoError as exc:
                    raise unavailable(exc) from None
            return self._ca


def setup(app: FastAPI, options: AppOptions) -> None:
    """A token verifier over the provider's own keys; the CA is unlocked on first use."""
    kyso: Kyso = app.state.kyso
    with contextlib.suppress(KysoError):  # loaded once, shared by every request's context
        kyso.profiles.names()
    provider = app.state.provider
    app.state.ca_admin = CaAdmin(kyso, options.ca_passphrase,
                                 TokenVerifier(provider.issuer, provider.keys, kyso.clock))


# --- events -----------------------------------------------------------------------------------


def _note(request: Request, action: str, outcome: Outcome, actor: str, **details: Any) -> None:
    """One event of this API (a refusal, or a read); its object is the serial in the path."""
    kyso: Kyso = request.app.state.kyso
    serial = str(request.path_params.get("serial", ""))[:64]
    kyso.record(Layer.PKI, action, outcome, object=serial, actor=actor,
                source=client_host(request) or None, request_id=request_id(request), **details)


# --- who is asking ----------------------------------------------------------------------------


def _admin(action: str) -> Callable[[Request], Caller]:
    """The dependency of a route whose events have ``action``: the admin, or a refusal
    recorded and raised (run in the thread pool, before the parameters are checked). Later
    refusals of the request are recorded through ``request.state.api_refusal``."""

    def admin(request: Request) -> Caller:
        kyso: Kyso = request.app.state.kyso
        state: CaAdmin = request.app.state.ca_admin
        try:
            caller = authenticate(kyso, state.tokens, request.headers.getlist("authorization"),
                                  POLICY)
        except Refused as exc:
            with contextlib.suppress(AuditError):  # refused either way
                _note(request, action, Outcome.FAILURE, exc.actor, status=exc.status,
                      error=exc.error, reason=exc.description)
            raise

        def refused(status: int, error: str, description: str) -> None:
            with contextlib.suppress(AuditError):
                _note(request, action, Outcome.FAILURE, caller.actor, status=status, error=error,
                      reason=description, **caller.details)

        request.state.api_refusal = refused
        return caller

    return admin


IssueAdmin = Annotated[Caller, Depends(_admin("CERT_CREATION"))]
ViewAdmin = Annotated[Caller, Depends(_admin("CERT_VIEW"))]
RevokeAdmin = Annotated[Caller, Depends(_admin("CERT_REVOKED"))]
StatusAdmin = Annotated[Caller, Depends(_admin("CERT_STATUSCHANGE"))]


def _acting(kyso: Kyso, caller: Caller, request: Request) -> Kyso:
    """The app's context as this admin: the library's events carry the admin's pseudonym, the
    client's address and the request id (the store, the log and the profiles are shared)."""
    return kyso.acting(caller.actor, source=client_host(request) or None,
                       request_id=request_id(request))


# --- one call: body, work in the thread pool, answer ----------------------------------------

M = TypeVar("M", bound=BaseModel)
Operation = Callable[[Kyso, CaAdmin], Response]


async def _body(request: Request, model: type[M]) -> M:
    """The JSON body as ``model``; a refusal (400, 413, 415) is recorded here, a wrong shape
    (422) by the route class."""
    try:
        return await read_json(request, model, MAX_BODY_BYTES)
    except ApiError as exc:
        await run_in_threadpool(request.state.api_refusal, exc.status, exc.error,
                                exc.description)
        raise


def _serve(request: Request, caller: Caller, operation: Operation) -> Response:
    """In the thread pool: the operation as this admin; a refusal the library has not recorded
    is recorded here."""
    state: CaAdmin = request.app.state.ca_admin
    try:
        return operation(_acting(request.app.state.kyso, caller, request), state)
    except ApiError as exc:
        if not getattr(exc, "recorded", False):
            request.state.api_refusal(exc.status, exc.error, exc.description)
        raise


async def _run(request: Request, caller: Caller, operation: Operation) -> Response:
    state: CaAdmin = request.app.state.ca_admin
    async with state.slots:
        return await run_in_threadpool(_serve, request, caller, operation)


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _record(kyso: Kyso, serial: str) -> CertificateRecord:
    try:
        return issuance.get_record(kyso, serial)[0]
    except CertificateNotFoundError as exc:
        raise Refusal(404, "not_found", str(exc)) from None
    except KysoError as exc:
        raise unavailable(exc) from None


def _conflict(kyso: Kyso, serial: str, exc: RevocationError) -> Refusal:
    """409 naming the certificate's current status (read after the refusal)."""
    try:
        current = issuance.get_record(kyso, serial)[0]
    except KysoError:
        return Refusal(409, "conflict", str(exc), recorded=True)
    return Refusal(409, "conflict", str(exc), recorded=True,
                   certificate_status=current.status.value,
                   revocation_reason=(current.revocation_reason.value
                                      if current.revocation_reason else None))


# --- routes ---------------------------------------------------------------------------------

@router.post(
    "", status_code=201, summary="Issue a certificate from a CSR",
    description="What `kyso cert issue --csr` does: the profile decides the certificate; the "
                "CSR gives the key (its signature must verify) and the holder's details the "
                "profile takes; `subject` may add details a CSR cannot carry. The certificate "
                "is stored and `CERT_CREATION` recorded with the admin as actor. Nothing is "
                "issued when anything is refused.",
    openapi_extra=json_request_body(IssueRequest),
    responses={201: {"model": IssuedBody, "description": "Issued; `Location` names its record",
                     "headers": {"Location": {"schema": {"type": "string"},
                                              "description": "/api/v1/certificates/{serial}"}}},
               **error_responses(400, 401, 403, 409, 413, 415, 422, 503, described=ERRORS)})
async def issue_certificate(request: Request, admin: IssueAdmin) -> Response:
    body = await _body(request, IssueRequest)

    def work(kyso: Kyso, state: CaAdmin) -> Response:
        ca = state.authority()
        try:
            csr = load_csr(body.csr.encode("utf-8"))
        except CSRError as exc:
            raise Refusal(422, "invalid_csr", str(exc)) from None
        try:
            issued = issuance.issue(kyso, ca, body.profile, SubjectRequest.of(**(body.subject or {})),
                                    csr=csr, days=body.validity_days, issuer=body.issuer)
        except KysoError as exc:
            raise refusal_of(exc) from None
        record = issued.record
        return json_response({**record.to_dict(kyso.now()),
                              "certificate": record.pem.decode("ascii"),
                              "chain": [_pem(c) for c in issued.chain],
                              "warnings": list(issued.warnings)},
                             201, {"Location": f"{router.prefix}/{record.serial}"})

    return await _run(request, admin, work)


@router.get(
    "/{serial}", summary="One certificate's record",
    description="As `kyso cert show --format json`: subject (ID numbers masked), profile, "
                "issuer, validity, status with the revocation time and reason, and the PEM. "
                "Each read records `CERT_VIEW`.",
    responses={200: {"model": ShownBody, "description": "The record"},
               **error_responses(401, 403, 404, 422, 503, described=ERRORS)})
async def show_certificate(request: Request, admin: ViewAdmin, serial: SerialPath) -> Response:
    def work(kyso: Kyso, state: CaAdmin) -> Response:
        state.check()
        record = _record(kyso, parse_serial(serial))  # the path lets only hex through
        try:
            kyso.record(Layer.PKI, "CERT_VIEW", Outcome.SUCCESS, object=record.serial,
                        **admin.details)
        except AuditError as exc:
            raise Refusal(503, "audit_log_unavailable", f"this read cannot be recorded, so it "
                          f"is not served: {exc}", recorded=True, headers=RETRY) from None
        return json_response({**record.to_dict(kyso.now()), "pem": record.pem.decode("ascii")})

    return await _run(request, admin, work)


def _status_change(serial: str, change: Callable[[Kyso, str], lifecycle.StatusChange]
                   ) -> Operation:
    def work(kyso: Kyso, state: CaAdmin) -> Response:
        state.check()
        canonical = parse_serial(serial)
        try:
            done = change(kyso, canonical)
        except RevocationError as exc:
            raise _conflict(kyso, canonical, exc) from None
        except KysoError as exc:
            raise refusal_of(exc) from None
        return json_response({"old_status": done.old_status.value,
                              **done.record.to_dict(kyso.now())})

    return work


@router.post(
    "/{serial}/revoke", summary="Revoke a certificate (permanent)",
    description="As `kyso cert revoke`. keyCompromise also revokes the other certificates on "
                "the same key and bars the key; a certificate revoked for another reason may "
                "still be moved to keyCompromise (RFC 5280). Revoking again otherwise is a 409 "
                "naming the current status. Publish a CRL afterwards (OCSP answers at once).",
    openapi_extra=json_request_body(RevokeRequest),
    responses={**CHANGED, **error_responses(400, 401, 403, 404, 409, 413, 415, 422, 503,
                                              described=ERRORS)})
async def revoke_certificate(request: Request, admin: RevokeAdmin,
                             serial: SerialPath) -> Response:
    body = await _body(request, RevokeRequest)

    def revoke(kyso: Kyso, canonical: str) -> lifecycle.StatusChange:
        when = body.compromised_at
        if when is not None and when > kyso.now():
            raise Refusal(422, "invalid_request", "compromised_at is in the future")
        return lifecycle.revoke(kyso, canonical, reason=body.reason, invalidity_date=when)

    return await _run(request, admin, _status_change(serial, revoke))


@router.post(
    "/{serial}/hold", summary="Put a certificate on hold",
    description="As `kyso cert hold`: listed as certificateHold until released; only a valid "
                "certificate can be held (else 409).",
    responses={**CHANGED, **error_responses(401, 403, 404, 409, 422, 503, described=ERRORS)})
async def hold_certificate(request: Request, admin: StatusAdmin, serial: SerialPath) -> Response:
    return await _run(request, admin, _status_change(serial, lifecycle.hold))


@router.post(
    "/{serial}/release", summary="Release a held certificate",
    description="As `kyso cert release`: valid again; only a held certificate can be released "
                "(else 409).",
    responses={**CHANGED, **error_responses(401, 403, 404, 409, 422, 503, described=ERRORS)})
async def release_certificate(request: Request, admin: StatusAdmin,
                              serial: SerialPath) -> Response:
    return await _run(request, admin, _status_change(serial, lifecycle.release))
