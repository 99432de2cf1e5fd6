"""Token introspection (RFC 7662): whether the provider still stands behind an access token.

A relying party that verifies access tokens offline (:class:`kyso.authn.rp.TokenVerifier`)
cannot see a revocation: a reused authorization code revokes the tokens issued from it
(:mod:`kyso.authn.oidc_tokens`), a client can be disabled, an account locked. The introspection
endpoint answers that question online, for confidential clients only.

The request (``POST /introspect``, form-encoded): ``token`` (required, at most
:data:`~kyso.authn.tokens.MAX_TOKEN_BYTES`), ``token_type_hint`` (optional; kyso issues only
access tokens, so the hint changes nothing), and client authentication exactly as at the token
endpoint (``client_secret_basic`` or ``client_secret_post``: the same code,
:meth:`TokenService.authenticate_client <kyso.authn.oidc_tokens.TokenService>`). A parameter given twice or
too long, or no ``token``, is ``invalid_request`` (400); a missing or wrong secret, an unknown or
disabled client, and any *public* client are ``invalid_client`` (401). These are
:class:`~kyso.authn.oidc_tokens.TokenEndpointError`, answered like the token endpoint's.

The answer is ``{"active": false}`` — never why — for anything that is not a live access token
of this provider meant for the caller: garbage, a bad signature, another issuer, an ID token,
an expired token (no leeway: the provider's clock is the reference), a token the provider never
recorded or has revoked, a token of a disabled client or of a locked or deleted account, and a
token meant for another audience. The audience rule: the token's ``aud`` must contain the
caller's client id or one of the caller's registered audiences (``oidc_clients.audiences``, the
audiences of the tokens issued to the caller). So a resource server registered as a confidential
client learns about the tokens meant for it, a client about its own tokens, and nobody about
tokens meant for someone else's API (RFC 7662 §2.2 and §4: the server may answer differently to
different protected resources; this denies token scanning across APIs). An active token gets
``active``, ``scope``, ``client_id``, ``sub``, ``aud``, ``iss``, ``exp``, ``iat``, ``token_type``
(``Bearer``), ``acr`` and ``auth_time`` when the token has one.

Every introspection is one audit event: ``INTROSPECT_TOKEN`` (success: the token is active) or
``INTROSPECT_TOKEN_ERROR`` (failure: refused, or inactive with the reason — for the auditor
only), actor the authenticated client id (``anonymous`` before authentication), object the
token subject's pseudonym once the token's signature verified. Never the token.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kyso.audit import Layer, Outcome
from kyso.authn.oidc_clients import Client
from kyso.authn.oidc_requests import OidcError, single
from kyso.authn.oidc_tokens import NO_ORIGIN, Origin, TokenEndpointError, TokenService, peek_claim
from kyso.authn.roles import check_holder
from kyso.authn.rp import TokenVerifier, VerifiedToken
from kyso.authn.tokens import MAX_TOKEN_BYTES, TokenType
from kyso.clock import Clock
from kyso.errors import IdentityError, TokenError

__all__ = [
    "INTROSPECTION_AUTH_METHODS",
    "INTROSPECTION_PATH",
    "MAX_HINT",
    "Introspection",
    "introspect",
]

INTROSPECTION_PATH = "/introspect"
INTROSPECTION_AUTH_METHODS = ("client_secret_basic", "client_secret_post")
MAX_HINT = 64
# None: the token endpoint's limits (kyso.authn.oidc_requests).
_LIMITS: dict[str, int | None] = {"token": MAX_TOKEN_BYTES, "token_type_hint": MAX_HINT,
                                  "client_id": None, "client_secret": None}


@dataclass(frozen=True)
class Introspection:
    """The introspection response. ``reason`` says why a token is inactive: for the audit
    event only, never for the caller."""

    active: bool
    claims: Mapping[str, Any] = field(default_factory=dict, repr=False)
    reason: str = field(default="", repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"active": True, **self.claims} if self.active else {"active": False}


def introspect(service: TokenService, form: Mapping[str, Sequence[str]],
               authorization: str | None, origin: Origin = NO_ORIGIN, *,
               clock: Clock | None = None) -> Introspection:
    """The introspection response for a form-encoded request, or
    :class:`~kyso.authn.oidc_tokens.TokenEndpointError` when the request is refused (400
    ``invalid_request``, 401 ``invalid_client``). ``clock`` (default: the context's) decides
    expiry. One audit event either way."""
    clock = clock or service.kyso.clock
    actor = ""
    try:
        for name, limit in _LIMITS.items():
            single(form, name, limit=limit)  # repeated or oversized → invalid_request
        client = service.authenticate_client(form, authorization)
        actor = client.client_id
        if not client.confidential:
            raise TokenEndpointError("invalid_client", "token introspection is for confidential "
                                                       "clients: a public client cannot use it")
        token = single(form, "token", limit=MAX_TOKEN_BYTES)
        if token is None:
            raise TokenEndpointError("invalid_request", "parameter token is missing")
    except OidcError as exc:
        _record(service, "INTROSPECT_TOKEN_ERROR", Outcome.FAILURE, origin, actor=actor,
                error=exc.error, reason=exc.description)
        if isinstance(exc, TokenEndpointError):
            raise
        raise TokenEndpointError(exc.error, exc.description) from None
    result, subject = _inspect(service, client, token, clock)
    if result.active:
        _record(service, "INTROSPECT_TOKEN", Outcome.SUCCESS, origin, actor=actor,
                subject=subject, active=True, token_client_id=result.claims.get("client_id"))
    else:
        _record(service, "INTROSPECT_TOKEN_ERROR", Outcome.FAILURE, origin, actor=actor,
                subject=subject, active=False, error="inactive_token", reason=result.reason)
    return result


def _audience(token: str, client: Client) -> str:
    """Which of the caller's names to verify the token's ``aud`` against: the first that the
    (still unverified) token names, else the client id — verification then refuses it."""
    aud = peek_claim(token, "aud")
    listed = aud if isinstance(aud, list) else [aud]
    named = {a for a in listed if isinstance(a, str)}
    return next((a for a in (client.client_id, *client.audiences) if a in named),
                client.client_id)


def _inspect(service: TokenService, client: Client, token: str,
             clock: Clock) -> tuple[Introspection, str]:
    """(the answer, the verified subject or "")."""
    verifier = TokenVerifier(service.issuer, service.keys, clock, leeway=dt.timedelta(0))
    try:
        verified = verifier.verify(token, audience=_audience(token, client),
                                   token_type=TokenType.ACCESS)
    except TokenError as exc:
        return Introspection(False, reason=str(exc)), ""
    try:
        check_holder(service.kyso.store, verified, None)  # recorded, not revoked, client, account
    except TokenError as exc:
        return Introspection(False, reason=str(exc)), verified.subject
    return Introspection(True, _claims(verified)), verified.subject


def _claims(token: VerifiedToken) -> dict[str, Any]:
    claims = token.claims
    answer: dict[str, Any] = {
        "scope": " ".join(token.scope), "client_id": token.client_id, "sub": token.subject,
        "aud": list(token.audience), "iss": token.issuer,
        "exp": int(claims.expires_at.timestamp()), "iat": int(claims.issued_at.timestamp()),
        "token_type": "Bearer", "acr": token.acr}
    if token.auth_time is not None:
        answer["auth_time"] = int(token.auth_time.timestamp())
    return answer


def _record(service: TokenService, action: str, outcome: Outcome, origin: Origin, *,
            actor: str, subject: str = "", **details: Any) -> None:
    """One event: the client as actor, the subject's pseudonym as object (never the token)."""
    pseudonym = ""
    if subject:
        try:
            pseudonym = service.kyso.pseudonyms.pseudonym(
                service.registry.by_subject(subject).id_number)
        except IdentityError:
            pseudonym = "unknown"
    service.kyso.record(Layer.AUTHN, action, outcome, object=pseudonym,
                        actor=actor or "anonymous", source=origin.source or None,
                        request_id=origin.request_id,
                        **{k: (v[:256] if isinstance(v, str) else v)
                           for k, v in details.items() if v is not None})
