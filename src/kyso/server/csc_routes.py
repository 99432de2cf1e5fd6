"""The citizen remote-signing gateway over HTTP (issue 7; docs/signing-gateway.md).

- ``POST /csc/v2/…`` and the same handlers at ``/csc/v1/…`` (pyHanko's ``CSCSigner`` default):
  ``info`` (no token), ``credentials/list``, ``credentials/info``, ``credentials/authorize``,
  ``signatures/signHash`` — the Cloud Signature Consortium API v2.0.0.2 subset real clients use;
- ``POST /api/v1/signing/credentials``: kyso's own enrolment (a new key and citizen
  certificate).

Callers present ``Authorization: Bearer <access token>`` minted by this server's provider for
the audience ``kyso-csc`` at level 2 (:mod:`kyso.server.bearer`); enrolment and authorization
also need the login behind it to be at most 120 s old (the citizen's step-up), and a token
authorizes once. Bodies are JSON objects of at most 64 KiB, parsed by the strict models of
:mod:`kyso.signing.gateway.wire`; errors are ``{"error", "error_description"}`` naming the
parameter. Each handler is one library call (:class:`kyso.signing.gateway.Gateway`) in the
thread pool. Enrolment, authorization and signHash are audited by the library; refusals that
never reach it (token, body) are recorded here under the same action names.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Security
from fastapi.responses import Response
from fastapi.security import HTTPBearer
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from kyso.audit import Layer, Outcome
from kyso.authn.acr import acr_for
from kyso.authn.oidc import Provider
from kyso.authn.registry import Level
from kyso.authn.rp import InsufficientLevelError, TokenVerifier
from kyso.context import Kyso
from kyso.errors import (
    ActivationError,
    AuditError,
    CANotInitialisedError,
    ConfigError,
    CredentialExistsError,
    CredentialSuspendedError,
    GatewayRequestError,
    InvalidSubjectError,
    KysoError,
    PkiError,
    StepUpRequiredError,
    StoreError,
    UnknownCredentialError,
)
from kyso.server.api import (
    JSON,
    ApiError,
    JsonApiRoute,
    client_host,
    error_responses,
    json_request_body,
    json_response,
    media_type,
    read_body,
    request_id,
    unsupported_media,
)
from kyso.server.bearer import BearerPolicy, Caller, Refused, authenticate
from kyso.server.options import AppOptions
from kyso.signing.gateway import AUDIENCE, FRESH_LOGIN, REALM, Gateway, Requester
from kyso.signing.gateway.algorithms import decode_hashes, infer_hash_algorithm
from kyso.signing.gateway.wire import (
    MAX_BODY,
    AuthorizeBody,
    AuthorizeReply,
    CredentialInfoBody,
    CredentialInfoReply,
    EnrolBody,
    EnrolReply,
    InfoBody,
    InfoReply,
    ListBody,
    ListReply,
    SignHashBody,
    SignHashReply,
    info_document,
    parse_body,
    peek_body,
)

__all__ = ["VERSIONS", "router", "setup"]

VERSIONS = ("v2", "v1")

_bearer = HTTPBearer(auto_error=False, bearerFormat="JWT", scheme_name="cscToken",
                     description=f"An access token of this server's provider for the audience "
                                 f"{AUDIENCE}, level 2; authorize and enrolment need a login at "
                                 f"most {FRESH_LOGIN} s old (step-up).")
router = APIRouter(tags=["signing gateway"], route_class=JsonApiRoute)

LEVEL2 = BearerPolicy(audience=AUDIENCE, realm=REALM, min_level=Level.TWO)
FRESH = BearerPolicy(audience=AUDIENCE, realm=REALM, min_level=Level.TWO, max_age=FRESH_LOGIN)


@dataclass(frozen=True)
class CscState:
    """What the routes share, on ``app.state.csc``."""

    gateway: Gateway
    tokens: TokenVerifier
    issuer: str


def setup(app: FastAPI, options: AppOptions) -> None:
    """A token verifier over the provider's own keys, and the gateway (which unlocks the citizen
    CA and the master secret with ``options.ca_passphrase`` on first use; without it, the
    routes that need keys answer 503)."""
    provider: Provider = app.state.provider
    kyso: Kyso = app.state.kyso
    app.state.csc = CscState(Gateway(kyso, options.ca_passphrase),
                             TokenVerifier(provider.issuer, provider.keys, kyso.clock),
                             provider.issuer)


# --- reading the request ----------------------------------------------------------------------


def _check_type(request: Request, raw: bytes) -> None:
    """A body (an empty one may come without) must be JSON: application/json or ``…+json``."""
    media = media_type(request)
    if raw.strip() and media != JSON and not media.endswith("+json"):
        raise unsupported_media(media, JSON)


def _requester(caller: Caller, request: Request) -> Requester:
    return Requester(subject=caller.subject, actor=caller.actor,
                     jti=caller.token.claims.jwt_id or "", client_id=caller.client_id,
                     level=caller.level, auth_time=caller.token.auth_time,
                     source=client_host(request) or None, request_id=request_id(request))


# --- from library errors to HTTP --------------------------------------------------------------


def _step_up(message: str) -> ApiError:
    challenge = InsufficientLevelError(message, required_acr=acr_for(Level.TWO),
                                       max_age=FRESH_LOGIN).www_authenticate
    return ApiError(401, "insufficient_user_authentication", message,
                    {"WWW-Authenticate": challenge})


def _http(exc: KysoError) -> ApiError:
    message = str(exc)
    if isinstance(exc, StepUpRequiredError):
        return _step_up(message)
    if isinstance(exc, CredentialExistsError):
        return ApiError(409, "conflict", message)
    if isinstance(exc, CredentialSuspendedError):
        return ApiError(403, "access_denied", message)
    if isinstance(exc, UnknownCredentialError | ActivationError | GatewayRequestError
                  | InvalidSubjectError):
        return ApiError(400, "invalid_request", message)
    if isinstance(exc, ConfigError | StoreError | CANotInitialisedError | PkiError | AuditError):
        return ApiError(503, "service_unavailable",
                        f"the signing gateway is not available: {message}",
                        {"Retry-After": "60"})
    return ApiError(400, "invalid_request", message)


# --- one call ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Operation:
    """One endpoint: who may call (``policy``; None: anyone), the body model, ``prepare``
    (body → the library call's arguments; checked here) and ``call`` (the library call, which
    audits itself). ``action``: the event under which refusals before the call are
    recorded (None: reads, not recorded)."""

    policy: BearerPolicy | None
    model: type[Any]
    prepare: Callable[[Any, Requester | None], Any]
    call: Callable[[CscState, Requester | None, Any], Response]
    action: str | None = None
    needs_keys: bool = False


def _serve(request: Request, op: _Operation, raw: bytes, early: ApiError | None) -> Response:
    """In the thread pool: authenticate, parse, call; refusals before the call recorded."""
    state: CscState = request.app.state.csc
    kyso: Kyso = request.app.state.kyso
    caller: Caller | None = None
    requester: Requester | None = None
    try:
        try:
            if op.policy is not None:
                caller = authenticate(kyso, state.tokens, request.headers.getlist("authorization"),
                                      op.policy)
                requester = _requester(caller, request)
            if early is not None:
                raise early
            _check_type(request, raw)
            body = parse_body(raw, op.model)
            if op.needs_keys and not state.gateway.has_keys:
                raise ApiError(503, "service_unavailable", "the server was started without the "
                               "CA passphrase, so the signing gateway cannot enrol or sign",
                               {"Retry-After": "60"})
            arguments = op.prepare(body, requester)
        except KysoError as exc:
            raise _http(exc) from None
    except ApiError as exc:
        if op.action is not None:
            _record_refusal(kyso, request, op.action, raw, exc, caller)
        raise
    try:
        return op.call(state, requester, arguments)
    except KysoError as exc:
        raise _http(exc) from None


def _record_refusal(kyso: Kyso, request: Request, action: str, raw: bytes, exc: ApiError,
                    caller: Caller | None) -> None:
    """One failure event under ``action``: the caller's pseudonym once the token verified (a
    login too weak or too old is still someone: :class:`Refused` carries it), else
    ``anonymous``."""
    peek = peek_body(raw)
    actor = (caller.actor if caller is not None
             else exc.actor if isinstance(exc, Refused) else "anonymous")
    extra: dict[str, Any] = {}
    if caller is not None:
        extra = {"jti": caller.token.claims.jwt_id or "", "client_id": caller.client_id}
    with contextlib.suppress(AuditError):  # refused either way
        kyso.record(Layer.SIGNING, action, Outcome.FAILURE, object=peek.credential_id,
                    actor=actor, source=client_host(request) or None,
                    request_id=request_id(request), status=exc.status, error=exc.error,
                    reason=exc.description, hashes=peek.hashes, **extra)


async def _handle(request: Request, op: _Operation) -> Response:
    early = None
    try:
        raw = await read_body(request, MAX_BODY)
    except ApiError as exc:
        raw, early = b"", exc
    return await run_in_threadpool(_serve, request, op, raw, early)


# --- the operations -----------------------------------------------------------------------------


def _info(state: CscState, _requester: Requester | None, _args: Any) -> Response:
    return json_response(info_document(state.issuer))


def _list_args(body: ListBody, requester: Requester | None) -> ListBody:
    assert requester is not None
    if body.userID is not None and body.userID != requester.subject:
        raise GatewayRequestError("userID: only the caller's own credentials can be listed "
                                  "(leave userID out)")
    return body


def _list(state: CscState, requester: Requester | None, body: ListBody) -> Response:
    assert requester is not None
    found = state.gateway.credentials(requester)
    if body.onlyValid:
        found = [c for c in found if c.key_enabled and c.cert_status.value == "valid"]
    found = found[:body.maxResults or len(found)]
    reply: dict[str, Any] = {"credentialIDs": [c.credential_id for c in found]}
    if body.credentialInfo:
        reply["credentialInfos"] = [
            {"credentialID": c.credential_id,
             **c.csc_info(certificates=body.certificates, cert_info=body.certInfo,
                          auth_info=body.authInfo)} for c in found]
    return json_response(reply)


def _credential_info(state: CscState, requester: Requester | None,
                     body: CredentialInfoBody) -> Response:
    assert requester is not None
    credential = state.gateway.credential(requester, body.credentialID)
    return json_response(credential.csc_info(certificates=body.certificates,
                                             cert_info=body.certInfo, auth_info=body.authInfo))


def _authorize_args(body: AuthorizeBody, _requester: Requester | None) -> dict[str, Any]:
    body.check_no_pin()
    hashes = decode_hashes(body.hash_values())
    algorithm = infer_hash_algorithm(hashes, body.hash_oid())
    return {"credential_id": body.credentialID, "hashes": hashes, "algorithm": algorithm,
            "num_signatures": body.numSignatures}


def _authorize(state: CscState, requester: Requester | None, args: dict[str, Any]) -> Response:
    assert requester is not None
    return json_response(state.gateway.authorize(requester, **args).to_dict())


def _sign_args(body: SignHashBody, _requester: Requester | None) -> dict[str, Any]:
    hashes = decode_hashes(body.hash_values())
    return {"credential_id": body.credentialID, "sad": body.SAD, "hashes": hashes,
            "sign_algo": body.signAlgo, "hash_oid": body.hash_oid(),
            "sign_algo_params": body.signAlgoParams}


def _sign(state: CscState, requester: Requester | None, args: dict[str, Any]) -> Response:
    assert requester is not None
    return json_response(state.gateway.sign_hash(requester, **args).to_dict())


def _enrol(state: CscState, requester: Requester | None, _args: Any) -> Response:
    assert requester is not None
    return json_response(state.gateway.enrol(requester).to_dict(), 201)


def _same(body: Any, _requester: Requester | None) -> Any:
    return body


_OPERATIONS = {
    "info": _Operation(None, InfoBody, _same, _info),
    "credentials/list": _Operation(LEVEL2, ListBody, _list_args, _list),
    "credentials/info": _Operation(LEVEL2, CredentialInfoBody, _same, _credential_info),
    "credentials/authorize": _Operation(FRESH, AuthorizeBody, _authorize_args, _authorize,
                                        action="CSC_AUTHORIZE", needs_keys=True),
    "signatures/signHash": _Operation(LEVEL2, SignHashBody, _sign_args, _sign,
                                      action="CSC_SIGN_HASH", needs_keys=True),
}
_ENROL = _Operation(FRESH, EnrolBody, _same, _enrol, action="CSC_CREDENTIAL_ENROL",
                    needs_keys=True)


# --- routes -------------------------------------------------------------------------------------


_DOCS: dict[str, tuple[str, str, type[BaseModel], type[BaseModel], bool, tuple[int, ...]]] = {
    # method: (summary, description, request model, reply model, body required, errors)
    "info": ("Service information", "Who this gateway is, its OAuth 2.0 issuer and methods "
             "(no token).", InfoBody, InfoReply, False, (400, 413, 415)),
    "credentials/list": ("The caller's credentials", "Identifiers (and, with credentialInfo, "
                         "details) of the caller's own enabled credentials.", ListBody,
                         ListReply, False, (400, 401, 403, 413, 415)),
    "credentials/info": ("One credential", "Key, certificate (single or chain without the "
                         "root), status, SCAL 2, multisign. Another citizen's credential "
                         "answers as an unknown one.", CredentialInfoBody, CredentialInfoReply,
                         True, (400, 401, 403, 413, 415)),
    "credentials/authorize": ("Approve hashes (SAD)", f"A fresh level-2 login (at most "
                              f"{FRESH_LOGIN} s; one authorization per token) approves "
                              "exactly these hashes: single-use signature activation data, "
                              "valid 300 s.", AuthorizeBody, AuthorizeReply, True,
                              (400, 401, 403, 413, 415, 503)),
    "signatures/signHash": ("Sign approved hashes", "Signs each hash with the credential's "
                            "key (ECDSA: DER signature; RSA: PKCS#1 v1.5), consuming the SAD.",
                            SignHashBody, SignHashReply, True, (400, 401, 403, 413, 415, 503)),
}
_ERRORS_MORE = {403: "The account is locked or the credential suspended, or no role",
                409: "The citizen already has an enabled credential",
                503: "No CA passphrase on this server, or the CA / store is not available"}


def _endpoint(op: _Operation) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        return await _handle(request, op)

    return endpoint


for _version in VERSIONS:
    for _method, _op in _OPERATIONS.items():
        _summary, _description, _request, _reply, _required, _statuses = _DOCS[_method]
        router.add_api_route(
            f"/csc/{_version}/{_method}", _endpoint(_op), methods=["POST"],
            operation_id=f"csc_{_version}_{_method.replace('/', '_')}",
            summary=f"{_summary} (CSC {_version})", description=_description
            + (" Same as v2; v1 field names (hash, hashAlgo) are accepted too."
               if _version == "v1" else ""),
            response_model=_reply, responses=error_responses(*_statuses, described=_ERRORS_MORE),
            dependencies=[] if _op.policy is None else [Security(_bearer)],
            openapi_extra=json_request_body(_request, required=_required))

router.add_api_route(
    "/api/v1/signing/credentials", _endpoint(_ENROL), methods=["POST"], status_code=201,
    operation_id="signing_enrol", summary="Enrol a signing credential",
    description=f"A new EC P-256 key held by the gateway and a citizen certificate from the "
                f"citizen CA, for a fresh level-2 login (at most {FRESH_LOGIN} s). At most one "
                "enabled credential per citizen (409 names it).",
    response_model=EnrolReply, responses={201: {"description": "The new credential"},
                                          **error_responses(400, 401, 403, 409, 413, 415, 503,
                                                            described=_ERRORS_MORE)},
    dependencies=[Security(_bearer)], openapi_extra=json_request_body(EnrolBody, required=False))
