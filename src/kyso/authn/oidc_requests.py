"""Authorization requests: parsing and validation, with the error each flaw gets.

Order matters (RFC 6749 §4.1.2.1): until the client and its redirect URI are verified, a
flaw is shown to the user (:class:`UnsafeRequestError`: never redirect to an unverified URI);
after that, the flaw is sent back to the client (:class:`RedirectError`, with ``state``).
Every parameter appears at most once (RFC 6749 §3.1), has a size limit, and an empty value
counts as absent. Only the authorization code flow with PKCE S256 is served.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from kyso.authn.acr import level_of
from kyso.authn.oidc_clients import Client, ClientRegistry
from kyso.authn.registry import Level
from kyso.errors import AuthnError

__all__ = [
    "LANGS",
    "AuthorizeRequest",
    "OidcError",
    "RedirectError",
    "UnsafeRequestError",
    "parse_authorize",
    "pick_lang",
    "redirect_url",
    "single",
]

LANGS = ("vi", "en")
PROMPTS = frozenset({"none", "login", "consent", "select_account"})
_LIMITS = {"client_id": 64, "redirect_uri": 2000, "response_type": 64, "scope": 512,
           "state": 1024, "nonce": 512, "code_challenge": 128, "code_challenge_method": 16,
           "acr_values": 1024, "claims": 4096, "max_age": 10, "prompt": 64, "ui_locales": 128,
           "login_hint": 256, "response_mode": 32, "display": 32, "id_token_hint": 8192,
           "request": 8192, "request_uri": 2000}
_CHALLENGE = re.compile(r"[A-Za-z0-9._~-]{43,128}")


class OidcError(AuthnError):
    """A protocol error: ``error`` is the RFC 6749 / OIDC code, the message its description
    (safe to show; never a secret or a submitted value)."""

    def __init__(self, error: str, description: str, *, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


class UnsafeRequestError(OidcError):
    """A flaw found before the client and redirect URI were verified: shown, not redirected."""


class RedirectError(OidcError):
    """A flaw sent back to the verified redirect URI (``error``, ``error_description``,
    ``state``, ``iss``)."""

    def __init__(self, error: str, description: str, *, redirect_uri: str,
                 state: str | None) -> None:
        super().__init__(error, description)
        self.redirect_uri = redirect_uri
        self.state = state


def single(params: Mapping[str, Sequence[str]], name: str, *, limit: int | None = None,
           unsafe: bool = False, redirect: tuple[str, str | None] | None = None) -> str | None:
    """The one value of parameter ``name`` (None if absent or empty); repeated or oversized
    values raise :class:`UnsafeRequestError` (``unsafe``), :class:`RedirectError`
    (``redirect`` given) or :class:`OidcError`."""
    values = params.get(name, ())
    maximum = limit or _LIMITS.get(name, 2000)
    problem = None
    if len(values) > 1:
        problem = f"parameter {name} is repeated"
    elif values and len(values[0]) > maximum:
        problem = f"parameter {name} is longer than {maximum} characters"
    if problem is not None:
        if unsafe:
            raise UnsafeRequestError("invalid_request", problem)
        if redirect is not None:
            raise RedirectError("invalid_request", problem, redirect_uri=redirect[0],
                                state=redirect[1])
        raise OidcError("invalid_request", problem)
    return values[0] if values and values[0] else None


def pick_lang(ui_locales: str | None, accept_language: str | None = None) -> str:
    """``vi`` (default) or ``en``: the first supported of ``ui_locales``, else of
    Accept-Language."""
    for source in (ui_locales or "", (accept_language or "")[:256]):
        for tag in re.split(r"[\s,]+", source):
            base = tag.split(";")[0].strip().lower().split("-")[0]
            if base in LANGS:
                return base
    return "vi"


def redirect_url(redirect_uri: str, params: Mapping[str, str | None]) -> str:
    """``redirect_uri`` with ``params`` added to its query (RFC 6749 §4.1.2)."""
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{query}"


@dataclass(frozen=True)
class AuthorizeRequest:
    """A validated authorization request."""

    client_id: str
    redirect_uri: str
    scope: tuple[str, ...]
    state: str | None
    nonce: str | None = field(repr=False)
    code_challenge: str = field(repr=False)
    acr_values: tuple[str, ...] = ()
    essential_levels: tuple[int, ...] = ()  # acceptable levels of an essential acr claim
    claims: str | None = None  # the ``claims`` parameter, as JSON text
    max_age: int | None = None
    prompt: tuple[str, ...] = ()
    lang: str = "vi"

    @property
    def requested_level(self) -> Level | None:
        """The highest level named in ``acr_values`` (a wish, not a requirement)."""
        levels = [lv for lv in (level_of(v) for v in self.acr_values) if lv is not None]
        return max(levels) if levels else None

    def to_dict(self) -> dict[str, Any]:
        return {"client_id": self.client_id, "redirect_uri": self.redirect_uri,
                "scope": list(self.scope), "state": self.state, "nonce": self.nonce,
                "code_challenge": self.code_challenge, "acr_values": list(self.acr_values),
                "essential_levels": list(self.essential_levels), "claims": self.claims,
                "max_age": self.max_age, "prompt": list(self.prompt), "lang": self.lang}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuthorizeRequest:
        return cls(client_id=data["client_id"], redirect_uri=data["redirect_uri"],
                   scope=tuple(data["scope"]), state=data["state"], nonce=data["nonce"],
                   code_challenge=data["code_challenge"], acr_values=tuple(data["acr_values"]),
                   essential_levels=tuple(data["essential_levels"]), claims=data["claims"],
                   max_age=data["max_age"], prompt=tuple(data["prompt"]), lang=data["lang"])

    def error(self, error: str, description: str) -> RedirectError:
        return RedirectError(error, description, redirect_uri=self.redirect_uri,
                             state=self.state)


def _essential_acr(claims_text: str, fail: Any) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """(acceptable levels of an essential acr claim, voluntary acr values) from ``claims``."""
    try:
        claims = json.loads(claims_text)
    except (ValueError, RecursionError):
        raise fail("invalid_request", "parameter claims is not JSON") from None
    if not isinstance(claims, dict) or not all(
            isinstance(claims.get(k, {}), dict | None) for k in ("id_token", "userinfo")):
        raise fail("invalid_request", "parameter claims must be a JSON object of objects")
    essential: set[int] = set()
    voluntary: list[str] = []
    for member in ("id_token", "userinfo"):
        acr = (claims.get(member) or {}).get("acr")
        if acr is None:
            continue
        if not isinstance(acr, dict):
            raise fail("invalid_request", "the acr claim request must be an object or null")
        values = acr.get("values", [acr["value"]] if "value" in acr else [])
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise fail("invalid_request", "acr values must be strings")
        if acr.get("essential") is True:
            levels = {int(lv) for lv in (level_of(v) for v in values) if lv is not None}
            if not levels:
                raise fail("unmet_authentication_requirements",
                           "none of the essential acr values is supported")
            essential = levels if not essential else essential & levels
            if not essential:
                raise fail("unmet_authentication_requirements",
                           "the essential acr requests contradict each other")
        else:
            voluntary.extend(values)
    return tuple(sorted(essential)), tuple(voluntary)


def parse_authorize(params: Mapping[str, Sequence[str]], clients: ClientRegistry,
                    accept_language: str | None = None) -> tuple[AuthorizeRequest, Client]:
    """Validate an authorization request (query or form parameters, every value listed)."""
    client_id = single(params, "client_id", unsafe=True)
    redirect_uri = single(params, "redirect_uri", unsafe=True)
    if client_id is None:
        raise UnsafeRequestError("invalid_request", "parameter client_id is missing")
    client = clients.get(client_id)
    if client is None or not client.active:
        raise UnsafeRequestError("invalid_client", "unknown or disabled client")
    if redirect_uri is None:
        raise UnsafeRequestError("invalid_request", "parameter redirect_uri is missing")
    if redirect_uri not in client.redirect_uris:  # exact string comparison
        raise UnsafeRequestError("invalid_request",
                                 "redirect_uri is not registered for this client")

    # The state goes back with every later error, so it is checked first.
    state_values = params.get("state", ())
    state = state_values[0] if len(state_values) == 1 and state_values[0] else None
    target = (redirect_uri, state if state is None or len(state) <= _LIMITS["state"] else None)
    single(params, "state", redirect=target)

    def get(name: str) -> str | None:
        return single(params, name, redirect=target)

    def fail(error: str, description: str) -> RedirectError:
        return RedirectError(error, description, redirect_uri=redirect_uri, state=state)

    for name in _LIMITS:
        get(name)  # repeated or oversized anywhere is invalid_request
    if get("request") is not None:
        raise fail("request_not_supported", "request objects are not supported")
    if get("request_uri") is not None:
        raise fail("request_uri_not_supported", "request_uri is not supported")
    response_type = get("response_type")
    if response_type is None:
        raise fail("invalid_request", "parameter response_type is missing")
    if response_type != "code":
        raise fail("unsupported_response_type", "only response_type=code is supported")
    if get("response_mode") not in (None, "query"):
        raise fail("invalid_request", "only response_mode=query is supported")
    scope_text = get("scope")
    scopes = tuple(dict.fromkeys((scope_text or "").split()))
    if "openid" not in scopes:
        raise fail("invalid_scope", "scope must include openid")
    refused = [s for s in scopes if s not in client.scopes]
    if refused:
        raise fail("invalid_scope", "a requested scope is not allowed for this client")
    challenge = get("code_challenge")
    method = get("code_challenge_method")
    if challenge is None:
        raise fail("invalid_request", "PKCE is required: parameter code_challenge is missing")
    if method != "S256":
        raise fail("invalid_request", "code_challenge_method must be S256 (plain is refused)")
    if not _CHALLENGE.fullmatch(challenge) or len(challenge) != 43:
        raise fail("invalid_request", "code_challenge is not a base64url SHA-256 value")
    max_age_text = get("max_age")
    max_age = None
    if max_age_text is not None:
        if not (max_age_text.isascii() and max_age_text.isdigit()):
            raise fail("invalid_request", "max_age must be a whole number of seconds")
        max_age = int(max_age_text)
    prompt = tuple((get("prompt") or "").split())
    if any(p not in PROMPTS for p in prompt):
        raise fail("invalid_request", "prompt has an unknown value")
    if "none" in prompt and len(prompt) > 1:
        raise fail("invalid_request", "prompt=none cannot be combined with other values")
    essential: tuple[int, ...] = ()
    acr_values = tuple((get("acr_values") or "").split())
    claims = get("claims")
    if claims is not None:
        essential, voluntary = _essential_acr(claims, fail)
        acr_values = acr_values + voluntary
    request = AuthorizeRequest(
        client_id=client.client_id, redirect_uri=redirect_uri, scope=scopes, state=state,
        nonce=get("nonce"), code_challenge=challenge, acr_values=acr_values,
        essential_levels=essential, claims=claims, max_age=max_age, prompt=prompt,
        lang=pick_lang(get("ui_locales"), accept_language))
    return request, client
