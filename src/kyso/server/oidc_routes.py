"""HTTP routes of the OpenID Connect provider: parse, one library call (in the thread pool:
the store and argon2 block), render. Protocol errors follow the specs: before the client and
redirect URI are verified an HTML error page, afterwards a redirect with ``error`` (RFC 6749
§4.1.2.1); the token endpoint answers JSON (§5.2; 401 + ``WWW-Authenticate`` for
``invalid_client``), userinfo RFC 6750 §3.1; token responses are ``Cache-Control: no-store``.
Token introspection (RFC 7662, :mod:`kyso.authn.oidc_introspect`) authenticates its callers and
answers its errors exactly as the token endpoint does.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from kyso.authn import oidc_introspect, oidc_qr
from kyso.authn.oidc import ENDPOINTS, Provider
from kyso.authn.oidc_flow import FlowResult
from kyso.authn.oidc_requests import OidcError, pick_lang
from kyso.authn.oidc_tokens import BearerError, Origin, TokenEndpointError
from kyso.authn.tokens import MAX_TOKEN_BYTES
from kyso.server.api import error_responses
from kyso.server.forms import (
    FORM_TYPE,
    MAX_FORM,
    BadRequestError,
    Params,
    form_params,
    query_params,
)
from kyso.server.options import AppOptions
from kyso.server.pages import COOKIE, error_page, render

router = APIRouter()


def setup(app: FastAPI, options: AppOptions) -> None:
    """Nothing to prepare: ``create_app`` builds the :class:`Provider` (it needs the token keys
    and the SMS outbox) and keeps it on ``app.state.provider``."""
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
MAX_TOKEN_FORM = 16 * 1024


def provider_of(request: Request) -> Provider:
    provider: Provider = request.app.state.provider
    return provider


def origin_of(request: Request) -> Origin:
    client = request.client
    return Origin(source=client.host if client else "",
                  request_id=str(request.scope.get("state", {}).get("request_id", "")))


def _cookie(request: Request) -> str | None:
    return request.cookies.get(COOKIE)


def _lang(request: Request, params: Params | None = None) -> str:
    locales = (params or {}).get("ui_locales", [""])[0][:128]
    return pick_lang(locales, request.headers.get("accept-language"))


def _bad_request_page(request: Request, exc: BadRequestError) -> Response:
    return error_page(_lang(request), 400, "invalid_request", str(exc))


# -- metadata -----------------------------------------------------------------------------

@router.get("/.well-known/openid-configuration")
async def discovery(request: Request) -> Response:
    return JSONResponse(provider_of(request).discovery(),
                        headers={"Cache-Control": "public, max-age=3600"})


@router.get(ENDPOINTS["jwks_uri"])
async def jwks(request: Request) -> Response:
    return JSONResponse(provider_of(request).jwks(),
                        headers={"Cache-Control": "public, max-age=600"})


# -- authorization and login pages --------------------------------------------------------

@router.get(ENDPOINTS["authorization_endpoint"], operation_id="authorize_get")
@router.post(ENDPOINTS["authorization_endpoint"], operation_id="authorize_post")
async def authorize(request: Request) -> Response:
    try:
        params = query_params(request) if request.method == "GET" else await form_params(request)
    except BadRequestError as exc:
        return _bad_request_page(request, exc)
    result: FlowResult = await run_in_threadpool(
        provider_of(request).authorize, params, _cookie(request),
        accept_language=request.headers.get("accept-language"), origin=origin_of(request))
    return render(result, after_post=request.method == "POST")


async def _login_step(request: Request, step: str) -> Response:
    try:
        form = await form_params(request, limit=MAX_FORM)
    except BadRequestError as exc:
        return _bad_request_page(request, exc)
    provider = provider_of(request)
    actions: dict[str, Callable[[str | None, Params, Origin], FlowResult]] = {
        "password": provider.password, "otp": provider.otp, "sms": provider.send_sms,
        "qr": partial(oidc_qr.start, provider), "qr_complete": partial(oidc_qr.complete, provider),
        "qr_cancel": partial(oidc_qr.cancel, provider)}
    action = actions[step]
    result: FlowResult = await run_in_threadpool(action, _cookie(request), form,
                                                 origin_of(request))
    return render(result, after_post=True)


@router.post("/login/password")
async def login_password(request: Request) -> Response:
    return await _login_step(request, "password")


@router.post("/login/otp")
async def login_otp(request: Request) -> Response:
    return await _login_step(request, "otp")


@router.post("/login/sms")
async def login_sms(request: Request) -> Response:
    return await _login_step(request, "sms")


# -- QR cross-device login (kyso.authn.oidc_qr) -------------------------------------------

@router.post("/login/qr")
async def login_qr(request: Request) -> Response:
    return await _login_step(request, "qr")


@router.post("/login/qr/complete")
async def login_qr_complete(request: Request) -> Response:
    return await _login_step(request, "qr_complete")


@router.post("/login/qr/cancel")
async def login_qr_cancel(request: Request) -> Response:
    return await _login_step(request, "qr_cancel")


async def _json_body(request: Request, limit: int) -> bytes:
    """The body of a JSON request, at most ``limit`` bytes (:class:`OidcError` otherwise)."""
    oidc_qr.check_media_type(request.headers.get("content-type"))
    too_large = OidcError("invalid_request", f"the body is larger than {limit} bytes",
                          status=413)
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise too_large
    return bytes(body)


@router.post("/device/qr/approve")
async def device_qr_approve(request: Request) -> Response:
    """The level-2 app approves a QR login code: JSON ``nonce``, ``device_id``, ``signature``
    (base64url) → 200 ``{"status": "approved"}`` or a 4xx JSON error."""
    provider = provider_of(request)
    answer: oidc_qr.ApprovalAnswer
    try:
        body = await _json_body(request, oidc_qr.MAX_APPROVAL_BYTES)
    except OidcError as exc:
        answer = await run_in_threadpool(oidc_qr.refuse, provider, exc, origin_of(request))
    else:
        answer = await run_in_threadpool(oidc_qr.approve, provider, body, origin_of(request))
    return JSONResponse(dict(answer.body), status_code=answer.status, headers=NO_STORE)


# -- token and userinfo -------------------------------------------------------------------

def _token_error(exc: TokenEndpointError | BadRequestError) -> Response:
    if isinstance(exc, BadRequestError):
        error, description, status = "invalid_request", str(exc), 400
    else:
        error, description, status = exc.error, exc.description, exc.status
    headers = dict(NO_STORE)
    if error == "invalid_client":
        headers["WWW-Authenticate"] = 'Basic realm="kyso", charset="UTF-8"'
    return JSONResponse({"error": error, "error_description": description}, status_code=status,
                        headers=headers)


@router.post(ENDPOINTS["token_endpoint"])
async def token(request: Request) -> Response:
    try:
        form = await form_params(request, limit=MAX_TOKEN_FORM)
    except BadRequestError as exc:
        return _token_error(exc)
    try:
        body: dict[str, Any] = await run_in_threadpool(
            provider_of(request).tokens.exchange, form, request.headers.get("authorization"),
            origin_of(request))
    except TokenEndpointError as exc:
        return _token_error(exc)
    return JSONResponse(body, headers=NO_STORE)


_INTROSPECTION_BODY = {"requestBody": {"required": True, "content": {FORM_TYPE: {"schema": {
    "type": "object", "required": ["token"],
    "properties": {
        "token": {"type": "string", "maxLength": MAX_TOKEN_BYTES,
                  "description": "The access token to check"},
        "token_type_hint": {"type": "string", "maxLength": oidc_introspect.MAX_HINT,
                            "description": "access_token (kyso issues no other kind)"},
        "client_id": {"type": "string", "description": "client_secret_post: the client id"},
        "client_secret": {"type": "string",
                          "description": "client_secret_post: the client secret"}}}}}}}


@router.post(
    oidc_introspect.INTROSPECTION_PATH, tags=["oidc"], summary="Token introspection (RFC 7662)",
    description="Whether an access token is still active (not expired, revoked, or issued to a "
                "disabled client or a locked account), for a confidential client authenticated "
                "as at the token endpoint (HTTP Basic or client_id + client_secret in the form). "
                "A token that is not active, or is meant for another audience, gets "
                '`{"active": false}` and nothing else.',
    openapi_extra=_INTROSPECTION_BODY,
    responses={200: {"description": '`{"active": false}`, or `active: true` with scope, '
                                    "client_id, sub, aud, iss, exp, iat, token_type, acr and "
                                    "auth_time"},
               **error_responses(400, 401, described={
                   400: "invalid_request: a parameter missing, repeated or too long; a body "
                        "that is not form-encoded or over the size limit",
                   401: "invalid_client: no or wrong client authentication, an unknown or "
                        "disabled client, or a public client (WWW-Authenticate: Basic)"})})
async def introspect(request: Request) -> Response:
    try:
        form = await form_params(request, limit=MAX_TOKEN_FORM)
    except BadRequestError as exc:
        return _token_error(exc)
    try:
        answer: oidc_introspect.Introspection = await run_in_threadpool(
            oidc_introspect.introspect, provider_of(request).tokens, form,
            request.headers.get("authorization"), origin_of(request))
    except TokenEndpointError as exc:
        return _token_error(exc)
    return JSONResponse(answer.to_dict(), headers=NO_STORE)


@router.get(ENDPOINTS["userinfo_endpoint"], operation_id="userinfo_get")
@router.post(ENDPOINTS["userinfo_endpoint"], operation_id="userinfo_post")
async def userinfo(request: Request) -> Response:
    try:
        claims: dict[str, Any] = await run_in_threadpool(
            provider_of(request).tokens.userinfo, request.headers.get("authorization"),
            origin_of(request))
    except BearerError as exc:
        challenge = 'Bearer realm="kyso"'
        if exc.error != "invalid_request" or request.headers.get("authorization"):
            challenge += f', error="{exc.error}"'
        return JSONResponse({"error": exc.error, "error_description": exc.description},
                            status_code=exc.status,
                            headers={**NO_STORE, "WWW-Authenticate": challenge})
    return JSONResponse(claims, headers=NO_STORE)


# -- logout -------------------------------------------------------------------------------

@router.get(ENDPOINTS["end_session_endpoint"], operation_id="end_session_get")
@router.post(ENDPOINTS["end_session_endpoint"], operation_id="end_session_post")
async def logout(request: Request) -> Response:
    try:
        params = query_params(request) if request.method == "GET" else await form_params(request)
    except BadRequestError as exc:
        return _bad_request_page(request, exc)
    provider = provider_of(request)
    result: FlowResult
    if request.method == "POST" and "csrf" in params:
        result = await run_in_threadpool(provider.confirm_logout, _cookie(request), params,
                                         origin_of(request))
    else:
        result = await run_in_threadpool(
            provider.end_session, params, _cookie(request),
            accept_language=request.headers.get("accept-language"), origin=origin_of(request))
    return render(result, after_post=request.method == "POST")
