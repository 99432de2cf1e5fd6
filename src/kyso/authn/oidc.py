"""The OpenID Connect provider of the e-ID: discovery, the authorization flow with its login
pages' logic, and RP-initiated logout. HTTP lives in :mod:`kyso.server.oidc_routes`; this module
returns :class:`FlowResult` values the routes render (a page, a redirect, an error page) and
never sees a socket.

The flow: ``authorize`` validates the request (:mod:`kyso.authn.oidc_requests`); a live
authenticated session that satisfies ``prompt``, ``max_age`` and an essential ``acr`` gets a
code at once; otherwise a login transaction starts in the (possibly new, anonymous) session:
ID number + password (:meth:`Provider.password`), then a TOTP or SMS code
(:meth:`Provider.otp`, :meth:`Provider.send_sms`). Every form carries a CSRF token (HMAC of the
session id under a per-session secret). A completed login *rotates* the session: the old id is
ended, a new cookie is set. The ``acr`` issued is the level the account really has
(:func:`kyso.authn.acr.acr_for`) — a level-1 account never obtains ``urn:vn:vneid:loa:2``,
whatever ``acr_values`` asked; an essential ``acr`` claim it cannot meet is refused with
``unmet_authentication_requirements``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from typing import Any

from kyso.audit import Outcome
from kyso.authn import oidc_logout
from kyso.authn.acr import SUPPORTED_ACR_VALUES, acr_for, level_of
from kyso.authn.key_ring import KeyRing
from kyso.authn.keys import KeySet
from kyso.authn.login import LoginService, SecondFactor
from kyso.authn.oidc_clients import SUPPORTED_SCOPES, Client, ClientRegistry
from kyso.authn.oidc_flow import FlowResult, Step, first_value, session_lang
from kyso.authn.oidc_introspect import INTROSPECTION_AUTH_METHODS, INTROSPECTION_PATH
from kyso.authn.oidc_requests import (
    LANGS,
    AuthorizeRequest,
    OidcError,
    RedirectError,
    UnsafeRequestError,
    parse_authorize,
    pick_lang,
    redirect_url,
    single,
)
from kyso.authn.oidc_sessions import BrowserSession, SessionStore
from kyso.authn.oidc_tokens import NO_ORIGIN, Grant, Origin, TokenService, record_authn
from kyso.authn.passwords import PasswordHasher, hash_params
from kyso.authn.registry import Level, Registry
from kyso.context import Kyso
from kyso.errors import AccountLockedError, AuthenticationFailedError, AuthnError, ThrottledError
from kyso.pki.identifiers import mask_id

__all__ = ["ENDPOINTS", "FlowResult", "Origin", "Provider", "Step"]

ENDPOINTS = {"authorization_endpoint": "/authorize", "token_endpoint": "/token",
             "userinfo_endpoint": "/userinfo", "jwks_uri": "/jwks",
             "end_session_endpoint": "/logout", "introspection_endpoint": INTROSPECTION_PATH}
CLAIMS_SUPPORTED = ("sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "azp",
                    "sid", "name", "preferred_username", "birthdate", "gender", "phone_number",
                    "phone_number_verified", "email", "email_verified", "SoDinhDanh", "HoVaTen",
                    "NgayThangNamSinh", "LoaiTaiKhoan")


class Provider:
    """The e-ID's OpenID Connect provider for one issuer."""

    def __init__(self, kyso: Kyso, keys: KeySet | KeyRing, issuer: str, *,
                 login: LoginService | None = None) -> None:
        self.kyso = kyso
        # A KeyRing from KeyRing.open follows rotations on disk; a bare KeySet never changes.
        self.keys = keys if isinstance(keys, KeyRing) else KeyRing(keys, kyso.clock)
        self.issuer = issuer.rstrip("/")
        authn = kyso.settings.authn
        self.login = login or LoginService(kyso)
        self.clients = ClientRegistry(kyso.store, kyso.clock,
                                      PasswordHasher(hash_params(authn.password_hash)))
        self.sessions = SessionStore(kyso.store, kyso.clock,
                                     idle=dt.timedelta(minutes=authn.session_idle_user_minutes),
                                     absolute=dt.timedelta(hours=authn.session_max_hours))
        self.tokens = TokenService(kyso, self.keys, self.issuer, self.clients)
        self.registry = Registry(kyso.store, kyso.clock)

    # -- metadata ---------------------------------------------------------------------

    def discovery(self) -> dict[str, Any]:
        """OpenID Provider Metadata (OIDC Discovery 1.0 §3, RFC 8414)."""
        meta: dict[str, Any] = {"issuer": self.issuer}
        meta.update({name: self.issuer + path for name, path in ENDPOINTS.items()})
        meta.update({
            "response_types_supported": ["code"], "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "userinfo_signing_alg_values_supported": ["none"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic",
                                                      "client_secret_post", "none"],
            "introspection_endpoint_auth_methods_supported": list(INTROSPECTION_AUTH_METHODS),
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": list(SUPPORTED_SCOPES),
            "claims_supported": list(CLAIMS_SUPPORTED),
            "acr_values_supported": list(SUPPORTED_ACR_VALUES),
            "prompt_values_supported": ["none", "login"],
            "claims_parameter_supported": True, "request_parameter_supported": False,
            "request_uri_parameter_supported": False,
            "authorization_response_iss_parameter_supported": True,
            "ui_locales_supported": list(LANGS), "claim_types_supported": ["normal"],
        })
        return meta

    def jwks(self) -> dict[str, Any]:
        """The keys that may verify now: the current one and those still in their window
        (after a rotation on disk, the new set once the ring has seen it)."""
        return self.keys.snapshot().pruned(self.kyso.clock).public_jwks()

    # -- authorize --------------------------------------------------------------------

    def authorize(self, params: Mapping[str, Sequence[str]], cookie: str | None, *,
                  accept_language: str | None = None, origin: Origin = NO_ORIGIN) -> FlowResult:
        """Answer an authorization request: a code, a login page, or an error."""
        lang = pick_lang(first_value(params, "ui_locales"), accept_language)
        try:
            request, client = parse_authorize(params, self.clients, accept_language)
        except UnsafeRequestError as exc:
            self.record("AUTHORIZE_ERROR", Outcome.FAILURE, origin, error=exc.error,
                         reason=exc.description, client_id=first_value(params, "client_id"))
            return FlowResult(Step.ERROR, lang=lang, status=400, error=exc.error,
                              error_description=exc.description)
        except RedirectError as exc:
            return self._error_redirect(exc, origin, client_id=first_value(params, "client_id"))
        session = self.sessions.load(cookie)
        if session is not None and session.authenticated and not self._needs_login(request,
                                                                                 session):
            assert cookie is not None
            return self._finish(request, client, session, origin)
        if "none" in request.prompt:
            return self._error_redirect(request.error(
                "login_required", "the user must log in"), origin, client_id=client.client_id)
        data = {"stage": Step.PASSWORD.value, "request": request.to_dict()}
        new_cookie = None
        if session is None or cookie is None:
            new_cookie, session = self.sessions.create(data)
            cookie = new_cookie
        else:
            session = self.sessions.save_data(session, data)
        return FlowResult(Step.PASSWORD, lang=request.lang, csrf=self.sessions.csrf_token(
            cookie, session), set_cookie=new_cookie, client_name=client.name)

    def _needs_login(self, request: AuthorizeRequest, session: BrowserSession) -> bool:
        """A session is reused only while its login is younger than ``max_age``: one exactly
        ``max_age`` old logs in again, so ``max_age=0`` always does (OIDC Core §3.1.2.1: it is
        equivalent to ``prompt=login``), even within the second of the last login."""
        if "login" in request.prompt:
            return True
        assert session.auth_time is not None
        if request.max_age is not None and (self.kyso.now() - session.auth_time) >= dt.timedelta(
                seconds=request.max_age):
            return True
        level = level_of(session.acr) or Level.ONE
        return bool(request.essential_levels) and level < min(request.essential_levels)

    def _finish(self, request: AuthorizeRequest, client: Client, session: BrowserSession,
                origin: Origin, set_cookie: str | None = None) -> FlowResult:
        """Issue the code for an authenticated session (or refuse an unmet acr)."""
        assert session.subject is not None
        assert session.auth_time is not None
        level = level_of(session.acr) or Level.ONE
        acr = acr_for(level)
        if request.essential_levels:
            met = [lv for lv in request.essential_levels if lv <= level]
            if not met:
                result = self._error_redirect(request.error(
                    "unmet_authentication_requirements",
                    "the account's level does not meet the essential acr"), origin,
                    client_id=client.client_id, subject=session.subject)
                return FlowResult(Step.REDIRECT, lang=request.lang, location=result.location,
                                  set_cookie=set_cookie)
            acr = acr_for(Level(max(met)))
        code = self.tokens.issue_code(Grant(
            client_id=client.client_id, subject=session.subject,
            redirect_uri=request.redirect_uri, scope=request.scope,
            code_challenge=request.code_challenge, acr=acr, amr=session.amr,
            auth_time=session.auth_time, nonce=request.nonce, session_hash=session.id_hash,
            claims=request.claims))
        self.record("AUTHORIZE", Outcome.SUCCESS, origin, subject=session.subject,
                     client_id=client.client_id, acr=acr, scope=" ".join(request.scope))
        location = redirect_url(request.redirect_uri,
                                {"code": code, "state": request.state, "iss": self.issuer})
        return FlowResult(Step.REDIRECT, lang=request.lang, location=location,
                          set_cookie=set_cookie)

    def _error_redirect(self, exc: RedirectError, origin: Origin, *, client_id: str | None,
                        subject: str = "") -> FlowResult:
        self.record("AUTHORIZE_ERROR", Outcome.FAILURE, origin, subject=subject,
                     error=exc.error, reason=exc.description, client_id=client_id)
        location = redirect_url(exc.redirect_uri, {
            "error": exc.error, "error_description": exc.description, "state": exc.state,
            "iss": self.issuer})
        return FlowResult(Step.REDIRECT, location=location, error=exc.error,
                          error_description=exc.description)

    # -- login forms ------------------------------------------------------------------

    def _form_session(self, cookie: str | None, form: Mapping[str, Sequence[str]],
                      stage: Step, origin: Origin) -> tuple[BrowserSession, str] | FlowResult:
        """The session a login form belongs to, or the error page to show."""
        lang = "vi"
        try:
            csrf = single(form, "csrf", limit=128)
            session = self.sessions.load(cookie)
            if session is not None:
                lang = str((session.data.get("request") or {}).get("lang", "vi"))
        except OidcError as exc:
            return FlowResult(Step.ERROR, lang=lang, status=400, error=exc.error,
                              error_description=exc.description)
        if session is None or cookie is None or "request" not in session.data:
            return FlowResult(Step.ERROR, lang=lang, status=400, message="session_expired",
                              error="invalid_request", clear_cookie=session is None)
        if not self.sessions.check_csrf(cookie, session, csrf):
            self.record("LOGIN_ERROR", Outcome.FAILURE, origin, error="invalid_csrf_token",
                         stage=stage.value)
            return FlowResult(Step.ERROR, lang=lang, status=403, message="csrf",
                              error="invalid_request")
        if session.data.get("stage") != stage.value:
            return FlowResult(Step.ERROR, lang=lang, status=400, message="out_of_order",
                              error="invalid_request")
        return session, cookie

    def _otp_page(self, cookie: str, session: BrowserSession, *, message: str = "",
                  selected: str = "", status: int = 200,
                  retry_after: int | None = None) -> FlowResult:
        factors = tuple(session.data.get("factors", ()))
        return FlowResult(Step.OTP, lang=session_lang(session), status=status,
                          retry_after=retry_after,
                          csrf=self.sessions.csrf_token(cookie, session), message=message,
                          factors=factors, selected=selected or factors[0],
                          id_hint=str(session.data.get("id_hint", "")))

    def _locked(self, session: BrowserSession) -> FlowResult:
        self.sessions.end(session)
        return FlowResult(Step.ERROR, lang=session_lang(session), status=403,
                          message="invalid_credentials", error="access_denied", clear_cookie=True)

    def password(self, cookie: str | None, form: Mapping[str, Sequence[str]],
                 origin: Origin = NO_ORIGIN) -> FlowResult:
        """The ID number + password form was posted."""
        found = self._form_session(cookie, form, Step.PASSWORD, origin)
        if isinstance(found, FlowResult):
            return found
        session, cookie = found
        request = AuthorizeRequest.from_dict(session.data["request"])
        try:
            id_number = single(form, "id_number", limit=64) or ""
            secret = single(form, "password", limit=1024) or ""
        except OidcError:
            id_number, secret = "", ""
        try:
            accepted = self.login.check_password(id_number.strip(), secret,
                                                 client_id=request.client_id,
                                                 source=origin.source,
                                                 request_id=origin.request_id)
        except AccountLockedError:
            return self._locked(session)
        except AuthenticationFailedError:
            return FlowResult(Step.PASSWORD, lang=request.lang, status=401,
                              csrf=self.sessions.csrf_token(cookie, session),
                              message="invalid_credentials")
        if not accepted.factors:
            return FlowResult(Step.ERROR, lang=request.lang, status=403,
                              message="no_second_factor", error="access_denied")
        session = self.sessions.save_data(session, {
            **session.data, "stage": Step.OTP.value, "subject": accepted.subject,
            "factors": [f.value for f in accepted.factors], "id_hint": mask_id(id_number)})
        return self._otp_page(cookie, session)

    def send_sms(self, cookie: str | None, form: Mapping[str, Sequence[str]],
                 origin: Origin = NO_ORIGIN) -> FlowResult:
        """"Send me a code by SMS" was pressed on the one-time code form."""
        found = self._form_session(cookie, form, Step.OTP, origin)
        if isinstance(found, FlowResult):
            return found
        session, cookie = found
        if SecondFactor.SMS.value not in session.data.get("factors", ()):
            return self._otp_page(cookie, session, message="sms_refused", status=400)
        try:
            self.login.send_sms(str(session.data["subject"]), source=origin.source,
                                request_id=origin.request_id)
        except AccountLockedError:
            return self._locked(session)
        except ThrottledError as exc:
            wait = math.ceil((exc.retry_at - self.kyso.now()).total_seconds())
            return self._otp_page(cookie, session, message="sms_refused", status=429,
                                  selected=SecondFactor.SMS.value, retry_after=max(1, wait))
        except AuthnError:  # no phone for SMS codes
            return self._otp_page(cookie, session, message="sms_refused", status=400,
                                  selected=SecondFactor.SMS.value)
        return self._otp_page(cookie, session, message="sms_sent",
                              selected=SecondFactor.SMS.value)

    def otp(self, cookie: str | None, form: Mapping[str, Sequence[str]],
            origin: Origin = NO_ORIGIN) -> FlowResult:
        """The one-time code form was posted: on success the session rotates and the
        authorization request is answered."""
        found = self._form_session(cookie, form, Step.OTP, origin)
        if isinstance(found, FlowResult):
            return found
        session, cookie = found
        request = AuthorizeRequest.from_dict(session.data["request"])
        factors = tuple(session.data.get("factors", ()))
        try:
            code = single(form, "code", limit=32) or ""
            factor = single(form, "factor", limit=16) or factors[0]
        except OidcError:
            return self._otp_page(cookie, session, message="invalid_credentials", status=400)
        if factor not in factors:
            return self._otp_page(cookie, session, message="invalid_credentials", status=400)
        try:
            result = self.login.check_otp(str(session.data["subject"]), code,
                                          SecondFactor(factor), client_id=request.client_id,
                                          source=origin.source, request_id=origin.request_id)
        except AccountLockedError:
            return self._locked(session)
        except AuthnError:
            return self._otp_page(cookie, session, message="invalid_credentials", status=401,
                                  selected=factor)
        new_cookie, new_session = self.sessions.rotate(
            session, subject=result.subject, auth_time=result.auth_time,
            acr=acr_for(result.level), amr=result.amr)
        client = self.clients.get(request.client_id)
        if client is None or not client.active:
            return FlowResult(Step.ERROR, lang=request.lang, status=400, error="invalid_client",
                              error_description="unknown or disabled client",
                              set_cookie=new_cookie)
        return self._finish(request, client, new_session, origin, set_cookie=new_cookie)

    # -- logout (kyso.authn.oidc_logout) ----------------------------------------------

    def end_session(self, params: Mapping[str, Sequence[str]], cookie: str | None, *,
                    accept_language: str | None = None, origin: Origin = NO_ORIGIN) -> FlowResult:
        """RP-initiated logout: see :func:`kyso.authn.oidc_logout.end_session`."""
        return oidc_logout.end_session(self, params, cookie, accept_language=accept_language,
                                       origin=origin)

    def confirm_logout(self, cookie: str | None, form: Mapping[str, Sequence[str]],
                       origin: Origin = NO_ORIGIN) -> FlowResult:
        return oidc_logout.confirm_logout(self, cookie, form, origin=origin)

    # -- audit ------------------------------------------------------------------------

    def record(self, action: str, outcome: Outcome, origin: Origin, *, subject: str = "",
                **details: Any) -> None:
        record_authn(self.kyso, self.registry, action, outcome, origin, subject=subject,
                     **details)
