"""RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0) at the e-ID provider.

With a valid ``id_token_hint`` naming the browser's session (its ``sid``), the session ends at
once; otherwise the user confirms on a page whose form carries the CSRF token, so a third-party
site cannot log a citizen out. ``post_logout_redirect_uri`` is followed only when it is
registered, exactly, for the client the hint (or ``client_id``) names; anything else is an
error page, never a redirect. Every logout is one ``LOGOUT`` event.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kyso.audit import Outcome
from kyso.authn import tokens
from kyso.authn.oidc_flow import FlowResult, Step, first_value, session_lang
from kyso.authn.oidc_requests import OidcError, UnsafeRequestError, pick_lang, redirect_url, single
from kyso.authn.oidc_sessions import BrowserSession
from kyso.authn.oidc_tokens import NO_ORIGIN, Origin, peek_part

if TYPE_CHECKING:
    from kyso.authn.oidc import Provider

__all__ = ["confirm_logout", "end_session"]


def end_session(provider: Provider, params: Mapping[str, Sequence[str]], cookie: str | None, *,
                accept_language: str | None = None, origin: Origin = NO_ORIGIN) -> FlowResult:
    """RP-initiated logout (OIDC RP-Initiated Logout 1.0): with a valid ``id_token_hint``
    for this session, log out at once; otherwise ask the user to confirm."""
    lang = pick_lang(first_value(params, "ui_locales"), accept_language)
    try:
        hint = single(params, "id_token_hint", limit=tokens.MAX_TOKEN_BYTES)
        target = single(params, "post_logout_redirect_uri", limit=2000)
        state = single(params, "state", limit=1024)
        client_id = single(params, "client_id", limit=64)
        hinted = _hint(provider, hint) if hint else None
        if hinted is not None and client_id is not None and hinted[0] != client_id:
            raise UnsafeRequestError("invalid_request",
                                     "client_id does not match the id_token_hint")
        client = provider.clients.get(hinted[0] if hinted else client_id)
        if target is not None and (client is None or
                                   target not in client.post_logout_redirect_uris):
            raise UnsafeRequestError("invalid_request", "post_logout_redirect_uri is not "
                                                        "registered for this client")
    except OidcError as exc:
        return FlowResult(Step.ERROR, lang=lang, status=400, error=exc.error,
                          error_description=exc.description)
    session = provider.sessions.load(cookie)
    pending = {"redirect": target, "state": state,
               "client_id": client.client_id if client else None, "lang": lang}
    if session is None or cookie is None:
        return _logged_out(pending, lang)
    if hinted is not None and hinted[1] == session.sid:
        return _logout(provider, session, pending, origin)
    session = provider.sessions.save_data(session, {**session.data, "logout": pending})
    return FlowResult(Step.LOGOUT_CONFIRM, lang=lang,
                      csrf=provider.sessions.csrf_token(cookie, session))


def confirm_logout(provider: Provider, cookie: str | None, form: Mapping[str, Sequence[str]],
                   origin: Origin = NO_ORIGIN) -> FlowResult:
    session = provider.sessions.load(cookie)
    if session is None or cookie is None:
        return _logged_out({}, "vi")
    try:
        csrf = single(form, "csrf", limit=128)
    except OidcError:
        csrf = None
    if not provider.sessions.check_csrf(cookie, session, csrf):
        provider.record("LOGOUT_ERROR", Outcome.FAILURE, origin, subject=session.subject or "",
                     error="invalid_csrf_token")
        return FlowResult(Step.ERROR, lang=session_lang(session), status=403, message="csrf",
                          error="invalid_request")
    return _logout(provider, session, dict(session.data.get("logout") or {}), origin)


def _logout(provider: Provider, session: BrowserSession, pending: Mapping[str, Any],
            origin: Origin) -> FlowResult:
    provider.sessions.end(session)
    provider.record("LOGOUT", Outcome.SUCCESS, origin, subject=session.subject or "",
                 client_id=pending.get("client_id"))
    return _logged_out(pending, str(pending.get("lang") or "vi"))


def _logged_out(pending: Mapping[str, Any], lang: str) -> FlowResult:
    target = pending.get("redirect")
    if target:
        return FlowResult(Step.REDIRECT, lang=lang, clear_cookie=True,
                          location=redirect_url(str(target), {"state": pending.get("state")}))
    return FlowResult(Step.LOGGED_OUT, lang=lang, clear_cookie=True)


def _hint(provider: Provider, hint: str) -> tuple[str, str] | None:
    """(client_id, sid) of an ID token we signed, else None. Expiry is not checked: OIDC
    RP-Initiated Logout §2 accepts expired hints. :func:`kyso.authn.tokens.verify` cannot be
    used (it requires ``exp`` in the future and the access token for ``at_hash``), so the
    signature is checked here with the same key selection (``kid`` in our own key set, ES256,
    typ JWT) and python-jose key object."""
    header, payload = peek_part(hint, 0), peek_part(hint, 1)
    if header is None or payload is None or header.get("alg") != "ES256" or header.get(
            "typ") != tokens.TokenType.ID.value or not isinstance(header.get("kid"), str):
        return None
    key = provider.keys.verification_key(header["kid"], provider.kyso.now())
    if key is None:
        return None
    head, body, signature = hint.split(".")
    try:
        raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
        valid = len(raw) == 64 and tokens.prepared_key(key).verify(
            f"{head}.{body}".encode("ascii"), raw)
    except Exception:  # fail closed: any trouble means "no usable hint"
        return None
    audience, sid = payload.get("aud"), payload.get("sid")
    if not valid or payload.get("iss") != provider.issuer or not isinstance(audience, str):
        return None
    return audience, sid if isinstance(sid, str) else ""
