"""QR cross-device login inside the OpenID Connect login flow (over :mod:`kyso.authn.qr_login`).

The browser side, during ``/authorize`` (the session's stage stays ``password``, so the citizen
can always go back to the password form):

- :func:`start` (the login page's "log in with a QR code" button, CSRF-checked) opens a
  :class:`~kyso.authn.qr_login.QrLogin` code for the authorization request's client and keeps
  its nonce in *this* session's data; a new press replaces the code.
- :func:`complete` ("I approved it in the app", CSRF-checked) completes the nonce of this
  session only — a nonce is never taken from the form, so a code approved for another browser
  cannot be completed here. Pending: the QR page again; expired: the login page. Approved: the
  login ends exactly like the password + OTP path — ``LOGIN`` event, session rotation,
  ``acr`` = the account's real level (QR approval exists only for level 2: ``loa:2``),
  ``auth_time`` = now, and the authorization response.
- :func:`cancel` drops the code and shows the login page.

``amr`` is :data:`QR_AMR` = ``["swk", "mfa"]`` (RFC 8176): the server verified a proof of
possession of the bound device's key and has no key attestation, so "swk", not "hwk"; the
level-2 app releases that key only after its own passcode or biometric check (VNeID
activation), which makes it a multi-factor cryptographic authenticator (SP 800-63B) — "mfa" —
but the server never sees that second factor, so no "pin"/"user" is claimed.

The device side: :func:`approve` reads the app's JSON (``nonce``, ``device_id``, ``signature``
base64url) and calls :meth:`~kyso.authn.qr_login.QrLogin.approve`. Malformed requests get a
precise ``invalid_request``; every refusal of a well-formed one gets the same
``access_denied`` answer (the library's ``QR_LOGIN_ERROR`` event holds the reason), so the
endpoint tells nobody whether a nonce, device or account exists.

A citizen under a brute-force lock cannot log in by QR either (as in Keycloak, a temporarily
disabled user cannot log in at all); a QR login does not reset the password / OTP failure
counters, since it did not check those factors.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kyso.audit import Outcome
from kyso.authn.acr import acr_for
from kyso.authn.devices.records import check_token
from kyso.authn.oidc_flow import FlowResult, Step, session_lang
from kyso.authn.oidc_requests import AuthorizeRequest, OidcError
from kyso.authn.oidc_sessions import BrowserSession
from kyso.authn.oidc_tokens import NO_ORIGIN, Origin
from kyso.authn.qr_login import PAYLOAD_PREFIX, QrLogin, QrState
from kyso.errors import AccountLockedError, AuthnError, IdentityError

if TYPE_CHECKING:
    from kyso.authn.oidc import Provider

__all__ = ["JSON_TYPE", "MAX_APPROVAL_BYTES", "QR_AMR", "Approval", "ApprovalAnswer", "approve",
           "cancel", "check_media_type", "complete", "parse_approval", "refuse", "start"]

QR_AMR = ("swk", "mfa")
JSON_TYPE = "application/json"
MAX_APPROVAL_BYTES = 2048  # nonce 43 + device id ~20 + signature <= 96 base64url characters
_FIELDS = frozenset({"nonce", "device_id", "signature"})
_B64URL = re.compile(r"[A-Za-z0-9_-]{1,128}={0,2}")
_NONCE_KEY = "qr_nonce"
_REFUSED = "the QR login code cannot be approved"


# -- the browser ------------------------------------------------------------------------------

def _qr(provider: Provider) -> QrLogin:
    return QrLogin(provider.kyso, issuer=provider.issuer)


def _client_name(provider: Provider, request: AuthorizeRequest) -> str:
    client = provider.clients.get(request.client_id)
    return client.name if client is not None else ""


def _login_page(provider: Provider, cookie: str, session: BrowserSession, *, message: str,
                status: int = 200) -> FlowResult:
    """Back to the ID number + password form, without a QR code."""
    data = {k: v for k, v in session.data.items() if k != _NONCE_KEY}
    session = provider.sessions.save_data(session, data)
    request = AuthorizeRequest.from_dict(session.data["request"])
    return FlowResult(Step.PASSWORD, lang=request.lang, status=status, message=message,
                      csrf=provider.sessions.csrf_token(cookie, session),
                      client_name=_client_name(provider, request))


def _qr_page(provider: Provider, cookie: str, session: BrowserSession, nonce: str,
             expires: dt.datetime, *, message: str = "") -> FlowResult:
    request = AuthorizeRequest.from_dict(session.data["request"])
    return FlowResult(Step.QR, lang=request.lang, message=message,
                      csrf=provider.sessions.csrf_token(cookie, session),
                      client_name=_client_name(provider, request),
                      qr_payload=f"{PAYLOAD_PREFIX}{provider.issuer}:{nonce}", qr_expires=expires)


def _session(provider: Provider, cookie: str | None, form: Mapping[str, Sequence[str]],
             origin: Origin) -> tuple[BrowserSession, str] | FlowResult:
    return provider._form_session(cookie, form, Step.PASSWORD, origin)


def start(provider: Provider, cookie: str | None, form: Mapping[str, Sequence[str]],
          origin: Origin = NO_ORIGIN) -> FlowResult:
    """"Log in with a QR code" was pressed: a fresh code bound to this login session."""
    found = _session(provider, cookie, form, origin)
    if isinstance(found, FlowResult):
        return found
    session, cookie = found
    request = AuthorizeRequest.from_dict(session.data["request"])
    try:
        challenge = _qr(provider).start(client_id=request.client_id)
    except AuthnError:
        return FlowResult(Step.ERROR, lang=request.lang, status=400, message="qr_failed",
                          error="invalid_request")
    session = provider.sessions.save_data(session, {**session.data, _NONCE_KEY: challenge.nonce})
    return _qr_page(provider, cookie, session, challenge.nonce, challenge.expires_at)


def cancel(provider: Provider, cookie: str | None, form: Mapping[str, Sequence[str]],
           origin: Origin = NO_ORIGIN) -> FlowResult:
    """"Use my password instead": the code is forgotten by this session."""
    found = _session(provider, cookie, form, origin)
    if isinstance(found, FlowResult):
        return found
    session, cookie = found
    return _login_page(provider, cookie, session, message="")


def complete(provider: Provider, cookie: str | None, form: Mapping[str, Sequence[str]],
             origin: Origin = NO_ORIGIN) -> FlowResult:
    """"I approved it in the app" was pressed: finish the login if this session's code was
    approved (exactly once)."""
    found = _session(provider, cookie, form, origin)
    if isinstance(found, FlowResult):
        return found
    session, cookie = found
    request = AuthorizeRequest.from_dict(session.data["request"])
    nonce = session.data.get(_NONCE_KEY)
    if not isinstance(nonce, str):
        return FlowResult(Step.ERROR, lang=session_lang(session), status=400,
                          message="out_of_order", error="invalid_request")
    qr = _qr(provider)
    try:
        status = qr.poll(nonce)
    except AuthnError:
        return _login_page(provider, cookie, session, message="qr_failed", status=401)
    if status.state is QrState.PENDING:
        return _qr_page(provider, cookie, session, nonce, status.expires_at,
                        message="qr_pending")
    if status.state is not QrState.APPROVED or status.subject is None:
        provider.record("LOGIN_ERROR", Outcome.FAILURE, origin, error="expired_code",
                        auth_method="qr", client_id=request.client_id)
        return _login_page(provider, cookie, session, message="qr_expired", status=401)
    subject = status.subject
    try:
        identity = provider.registry.by_subject(subject)
    except IdentityError:
        return _login_page(provider, cookie, session, message="qr_failed", status=401)
    decision = provider.login.guard.check(subject)
    if not decision.allowed:
        provider.record("LOGIN_ERROR", Outcome.FAILURE, origin, subject=subject,
                        error="user_disabled" if decision.permanent
                        else "user_temporarily_disabled",
                        auth_method="qr", client_id=request.client_id)
        return provider._locked(session)
    try:
        subject = qr.complete(nonce)
    except AccountLockedError:
        return provider._locked(session)
    except AuthnError:  # the library recorded QR_LOGIN_ERROR with the reason
        return _login_page(provider, cookie, session, message="qr_failed", status=401)
    auth_time = provider.kyso.now()
    provider.record("LOGIN", Outcome.SUCCESS, origin, subject=subject, amr=list(QR_AMR),
                    level=int(identity.level), auth_method="qr", id_hint=identity.masked_id,
                    client_id=request.client_id)
    new_cookie, new_session = provider.sessions.rotate(
        session, subject=subject, auth_time=auth_time, acr=acr_for(identity.level), amr=QR_AMR)
    client = provider.clients.get(request.client_id)
    if client is None or not client.active:
        return FlowResult(Step.ERROR, lang=request.lang, status=400, error="invalid_client",
                          error_description="unknown or disabled client", set_cookie=new_cookie)
    return provider._finish(request, client, new_session, origin, set_cookie=new_cookie)


# -- the device -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Approval:
    """A parsed approval request of the app."""

    nonce: str = field(repr=False)
    device_id: str
    signature: bytes = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"device_id": self.device_id}


@dataclass(frozen=True)
class ApprovalAnswer:
    """The HTTP answer to the app: ``status`` and a JSON ``body``."""

    status: int
    body: Mapping[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "body": dict(self.body)}


def _invalid(description: str, status: int = 400) -> OidcError:
    return OidcError("invalid_request", description, status=status)


def check_media_type(content_type: str | None) -> None:
    """:class:`OidcError` (415) unless the body is declared ``application/json``."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media != JSON_TYPE:
        raise _invalid(f"the body must be {JSON_TYPE}", 415)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise _invalid("a member is repeated in the JSON object")
    return dict(pairs)


def _signature(text: str) -> bytes:
    if not _B64URL.fullmatch(text):
        raise _invalid("signature must be base64url (at most 128 characters)")
    raw = text.rstrip("=")
    try:
        return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except (binascii.Error, ValueError):
        raise _invalid("signature must be base64url (at most 128 characters)") from None


def parse_approval(body: bytes) -> Approval:
    """The app's JSON ``{"nonce", "device_id", "signature"}`` (strings; signature base64url of
    the raw ``r || s`` or DER ECDSA signature); :class:`OidcError` naming what is wrong."""
    if len(body) > MAX_APPROVAL_BYTES:
        raise _invalid(f"the body is larger than {MAX_APPROVAL_BYTES} bytes", 413)
    try:
        data = json.loads(body.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _invalid("the body is not a JSON object") from None
    if not isinstance(data, dict):
        raise _invalid("the body must be a JSON object")
    missing = sorted(_FIELDS - data.keys())
    unknown = sorted(data.keys() - _FIELDS)
    if missing:
        raise _invalid("missing member(s): " + ", ".join(missing))
    if unknown:
        raise _invalid(f"unknown member(s) ({len(unknown)}); expected nonce, device_id, signature")
    for name in sorted(_FIELDS):
        if not isinstance(data[name], str):
            raise _invalid(f"{name} must be a string")
    try:
        nonce = check_token(data["nonce"], "nonce")
        device_id = check_token(data["device_id"], "device id")
    except AuthnError as exc:
        raise _invalid(str(exc)) from None
    return Approval(nonce=nonce, device_id=device_id, signature=_signature(data["signature"]))


def refuse(provider: Provider, exc: OidcError, origin: Origin = NO_ORIGIN) -> ApprovalAnswer:
    """The answer to an approval request that could not be read; one QR_LOGIN_ERROR event."""
    provider.record("QR_LOGIN_ERROR", Outcome.FAILURE, origin, step="approve",
                    reason="malformed_request", error=exc.error, status=exc.status)
    return ApprovalAnswer(exc.status, {"error": exc.error, "error_description": exc.description})


def approve(provider: Provider, body: bytes, origin: Origin = NO_ORIGIN) -> ApprovalAnswer:
    """The app approves a QR login code: 200 ``{"status": "approved"}``, else 4xx."""
    try:
        approval = parse_approval(body)
    except OidcError as exc:
        return refuse(provider, exc, origin)
    try:
        _qr(provider).approve(approval.nonce, approval.device_id, approval.signature)
    except AuthnError:  # the library recorded QR_LOGIN_ERROR with the reason
        return ApprovalAnswer(400, {"error": "access_denied", "error_description": _REFUSED})
    return ApprovalAnswer(200, {"status": "approved"})
