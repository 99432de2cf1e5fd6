"""The relying-party helper: how a backend service checks an e-ID token before it serves.

A :class:`TokenVerifier` (alias :class:`RelyingParty`) is built once per service with the issuer
URL, where the issuer's public keys come from (the home's own :class:`~kyso.authn.keys.KeySet`,
a JWKS document or file, or the issuer's JWKS URL — :mod:`kyso.authn.rp_keys`) and a clock. Its
:meth:`~TokenVerifier.verify` runs the hardened :func:`kyso.authn.tokens.verify` (signature by
kid, ES256 only, explicit ``typ``, required claims, expiry against the clock) and then what a
relying party must check itself (domain §3: ``acr_values`` can be edited in the URL):

- the level comes **only** from the token's ``acr`` (:func:`kyso.authn.acr.level_of`); a token
  without one, or with an ``acr`` we do not know, is refused — never given a default level;
- a level below ``min_level``, or an ``auth_time`` older than ``max_age``, raises
  :class:`InsufficientLevelError`, which carries the ``acr`` to ask for so that an API can
  answer with an RFC 9470 step-up challenge;
- access tokens (RFC 9068) must carry ``client_id``; ``amr``, ``scope`` and ``auth_time`` must
  have their registered types when present;
- the roles (``roles``, and Keycloak's ``realm_access.roles``) must be lists of strings; with
  ``role=``, a token without that role raises :class:`InsufficientRoleError`.

Offline verification cannot see a revocation (a reused authorization code revokes the tokens
issued from it; a client can be disabled, an account locked). A service that must honour one at
once gives the verifier an :class:`IntrospectionClient` (``introspection=``): after every offline
check passed, an access token is also sent to the provider's RFC 7662 endpoint, and refused
unless it is still active there for the same subject and client. The endpoint's failure
(timeout, network, HTTP error, refused credentials, an answer that is not RFC 7662) is an
:class:`IntrospectionError`: the token is refused, never accepted unchecked. Without
``introspection`` nothing changes: no network, the offline path only.

:func:`require_token` wraps a verifier as a FastAPI dependency: ``Authorization: Bearer …``
(exactly one header, scheme case-insensitive) → :class:`VerifiedToken`; anything wrong → 401
with ``WWW-Authenticate: Bearer error="invalid_token"`` or, for too low a level,
``error="insufficient_user_authentication", acr_values="…"``; a valid token without the
required role → 403 with ``error="insufficient_scope"`` (RFC 6750 §3.1). Neither the token nor a
traceback is ever echoed.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from kyso.authn.acr import acr_for, level_of
from kyso.authn.keys import MAX_LEEWAY, KeySet
from kyso.authn.registry import Level
from kyso.authn.rp_keys import (
    KeySource,
    PublicKeySet,
    RemoteJwks,
    StaticKeys,
    check_service_url,
)
from kyso.authn.tokens import (
    DEFAULT_LEEWAY,
    MAX_TOKEN_BYTES,
    Claims,
    TokenType,
    UnknownKeyError,
    VerificationKeys,
    verify,
)
from kyso.clock import Clock
from kyso.errors import TokenError

if TYPE_CHECKING:
    import httpx
    from starlette.requests import Request

    from kyso.context import Kyso

__all__ = [
    "InsufficientLevelError",
    "InsufficientRoleError",
    "IntrospectionClient",
    "IntrospectionError",
    "RelyingParty",
    "TokenVerifier",
    "VerifiedToken",
    "invalid_token_challenge",
    "require_token",
]

_LATEST_TIME = 253_402_300_800  # 10000-01-01T00:00:00Z
_BEARER = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr] +([A-Za-z0-9\-._~+/]+=*) *")


class InsufficientLevelError(TokenError):
    """A valid token whose authentication is not strong enough (level) or not fresh enough
    (``max_age``). ``required_acr`` is what to ask the provider for (RFC 9470 step-up)."""

    def __init__(self, message: str, *, required_acr: str, max_age: int | None = None) -> None:
        super().__init__(message)
        self.required_acr = required_acr
        self.max_age = max_age

    @property
    def www_authenticate(self) -> str:
        """The RFC 9470 §3 challenge an API answers with."""
        value = (f'Bearer error="insufficient_user_authentication", '
                 f'error_description="{_quoted(str(self))}", acr_values="{self.required_acr}"')
        if self.max_age is not None:
            value += f', max_age="{self.max_age}"'
        return value


class InsufficientRoleError(TokenError):
    """A valid token that does not carry the role an API needs (RFC 6750 ``insufficient_scope``:
    HTTP 403, logging in again does not help; an administrator must grant the role)."""

    def __init__(self, message: str, *, role: str) -> None:
        super().__init__(message)
        self.role = role

    @property
    def www_authenticate(self) -> str:
        return (f'Bearer error="insufficient_scope", '
                f'error_description="{_quoted(str(self))}"')


def invalid_token_challenge(error: TokenError, realm: str | None = None) -> str:
    """The RFC 6750 §3 ``WWW-Authenticate`` value for a refused token."""
    head = f'Bearer realm="{_quoted(realm)}", ' if realm else "Bearer "
    return f'{head}error="invalid_token", error_description="{_quoted(str(error))}"'


def _quoted(text: str) -> str:
    return text.replace("\\", "").replace('"', "'")


@dataclass(frozen=True)
class VerifiedToken:
    """What a relying party may rely on after :meth:`TokenVerifier.verify`. ``subject`` and the
    raw claims stay out of ``repr`` (the subject may be a citizen's ID number)."""

    token_type: TokenType
    issuer: str
    subject: str = field(repr=False)
    level: Level
    acr: str
    amr: tuple[str, ...]
    auth_time: dt.datetime | None
    audience: tuple[str, ...]
    client_id: str | None
    scope: tuple[str, ...]
    expires_at: dt.datetime
    claims: Claims = field(repr=False)  # every claim: .get(name), .to_dict()
    roles: frozenset[str] = frozenset()  # ``roles`` and ``realm_access.roles``

    def has_role(self, role: str) -> bool:
        return role in self.roles

    def to_dict(self) -> dict[str, Any]:
        return {
            "token_type": "access" if self.token_type is TokenType.ACCESS else "id",
            "issuer": self.issuer,
            "subject": self.subject,
            "level": int(self.level),
            "acr": self.acr,
            "amr": list(self.amr),
            "auth_time": self.auth_time.isoformat() if self.auth_time else None,
            "audience": list(self.audience),
            "client_id": self.client_id,
            "scope": list(self.scope),
            "expires_at": self.expires_at.isoformat(),
            "roles": sorted(self.roles),
        }


class IntrospectionError(TokenError):
    """The provider's introspection endpoint gave no usable answer, so the token's status is
    unknown and it is refused (fail closed); :func:`require_token` answers 503."""


MAX_INTROSPECTION_BYTES = 64 * 1024
DEFAULT_INTROSPECTION_TIMEOUT = 5.0


def _check_introspection_url(url: object) -> str:
    return check_service_url(url, "introspection URL", ValueError,
                             ": the client secret would travel in clear")


class IntrospectionClient:
    """A backend service's client of the provider's token introspection endpoint (RFC 7662),
    authenticated as a confidential client with HTTP Basic (``client_secret_basic``).

    ``url``: the endpoint (``introspection_endpoint`` of the discovery document), https — or
    http to a loopback address. ``timeout``: seconds to connect, and then between bytes of the
    answer. ``http``: an :class:`httpx.Client` to send through (a shared connection pool, a
    test client), whose own timeout settings then apply; by default one is made on first use
    and closed by :meth:`close`. Redirects are not followed."""

    def __init__(self, url: str, client_id: str, client_secret: str, *,
                 timeout: float = DEFAULT_INTROSPECTION_TIMEOUT,
                 http: httpx.Client | None = None) -> None:
        self.url = _check_introspection_url(url)
        if not isinstance(client_id, str) or not client_id:
            raise ValueError("client_id must be a non-empty string")
        if not isinstance(client_secret, str) or not client_secret:
            raise ValueError("client_secret must be a non-empty string (introspection is for "
                             "confidential clients)")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not (
                0 < timeout <= 120):
            raise ValueError("timeout must be between 0 and 120 seconds")
        self.client_id = client_id
        self.timeout = float(timeout)
        pair = f"{urllib.parse.quote(client_id, safe='')}:{urllib.parse.quote(client_secret, safe='')}"
        # RFC 6749 §2.3.1: both form-encoded, then Basic.
        self._authorization = "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")
        self._http = http
        self._owned = http is None

    def __repr__(self) -> str:
        return f"IntrospectionClient(url={self.url!r}, client_id={self.client_id!r})"

    def _client(self) -> httpx.Client:
        if self._http is None:
            import httpx

            self._http = httpx.Client(timeout=self.timeout, follow_redirects=False)
        return self._http

    def close(self) -> None:
        """Close the HTTP client this object made (not one it was given)."""
        if self._owned and self._http is not None:
            self._http.close()
            self._http = None

    def __enter__(self) -> IntrospectionClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def introspect(self, token: str, *,
                   token_type_hint: str | None = "access_token",  # noqa: S107 - a type name
                   ) -> dict[str, Any]:
        """The endpoint's answer: a JSON object whose ``active`` is a boolean;
        :class:`IntrospectionError` naming the problem otherwise."""
        import httpx

        where = urllib.parse.urlsplit(self.url).netloc
        form = {"token": token}
        if token_type_hint:
            form["token_type_hint"] = token_type_hint
        try:
            response = self._client().post(
                self.url, data=form, follow_redirects=False,
                headers={"Authorization": self._authorization, "Accept": "application/json"})
        except httpx.TimeoutException:
            raise IntrospectionError(f"token introspection at {where} timed out after "
                                     f"{self.timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise IntrospectionError(f"token introspection at {where} failed: "
                                     f"{type(exc).__name__}") from None
        body = response.content
        if len(body) > MAX_INTROSPECTION_BYTES:
            raise IntrospectionError(f"token introspection at {where}: the answer is larger "
                                     f"than {MAX_INTROSPECTION_BYTES} bytes")
        try:
            answer = json.loads(body)
        except (ValueError, RecursionError):
            answer = None
        error = answer.get("error") if isinstance(answer, dict) else None
        code = error[:64] if isinstance(error, str) else ""
        if response.status_code == 401 or code == "invalid_client":
            raise IntrospectionError(f"token introspection at {where} refused this service's "
                                     f"client credentials (invalid_client): check the client "
                                     f"id and secret, and that the client is confidential")
        if response.status_code != 200:
            raise IntrospectionError(f"token introspection at {where} answered HTTP "
                                     f"{response.status_code}" + (f" ({code})" if code else ""))
        if not isinstance(answer, dict) or not isinstance(answer.get("active"), bool):
            raise IntrospectionError(f"token introspection at {where} answered something that "
                                     f"is not an RFC 7662 response")
        return answer

    def check(self, token: str, verified: VerifiedToken) -> None:
        """That the provider still holds ``token`` (already verified offline as ``verified``)
        active for the same subject and client; :class:`TokenError` (not active, or an answer
        about someone else) or :class:`IntrospectionError` otherwise."""
        answer = self.introspect(token)
        if answer["active"] is not True:
            raise TokenError("the provider reports the token is no longer active (revoked, "
                             "expired, or its client or account disabled)")
        if answer.get("sub") != verified.subject or answer.get("client_id") != verified.client_id:
            raise TokenError("the provider's introspection answer is about another token")


def _max_age(max_age: dt.timedelta | int | None) -> dt.timedelta | None:
    if isinstance(max_age, bool) or not isinstance(max_age, int | dt.timedelta | None):
        raise ValueError("max_age must be a number of seconds or a timedelta")
    if isinstance(max_age, int):
        max_age = dt.timedelta(seconds=max_age)
    if max_age is not None and max_age < dt.timedelta(0):
        raise ValueError("max_age must not be negative")
    return max_age


def _numeric_date(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            0 <= value < _LATEST_TIME):
        raise TokenError(f"claim {name} is not a valid NumericDate")
    return float(value)


def _strings(value: object, name: str) -> tuple[str, ...]:
    if isinstance(value, tuple) and all(isinstance(v, str) and v for v in value):
        return value
    raise TokenError(f"claim {name} is not a list of strings")


def _roles(extra: Mapping[str, Any]) -> frozenset[str]:
    """The roles a token carries: ``roles`` (kyso) and ``realm_access.roles`` (Keycloak)."""
    found: set[str] = set()
    if "roles" in extra:
        found.update(_strings(extra["roles"], "roles"))
    if "realm_access" in extra:
        realm = extra["realm_access"]
        if not isinstance(realm, Mapping):
            raise TokenError("claim realm_access is not an object")
        if "roles" in realm:
            found.update(_strings(realm["roles"], "realm_access.roles"))
    return frozenset(found)


def _source(keys: KeySet | VerificationKeys | KeySource) -> KeySource:
    if isinstance(keys, KeySet):
        return StaticKeys(PublicKeySet.from_key_set(keys))
    if isinstance(keys, PublicKeySet):
        return StaticKeys(keys)
    if callable(getattr(keys, "refresh", None)) and callable(getattr(keys, "keys", None)):
        return cast(KeySource, keys)
    if callable(getattr(keys, "verification_key", None)):
        return StaticKeys(cast(VerificationKeys, keys))
    raise TypeError("keys must be a KeySet, a PublicKeySet or a key source")


class TokenVerifier:
    """Verifies tokens of one issuer for a relying party (see the module docstring).

    ``audit``, when given, records one ``VERIFY_TOKEN`` / ``VERIFY_TOKEN_ERROR`` event per
    decision (object: the audience; actor: the subject's pseudonym; never the token or the
    subject). Those are this relying party's own checks; ``INTROSPECT_TOKEN`` is the provider
    answering its RFC 7662 endpoint (:mod:`kyso.authn.oidc_introspect`).
    ``introspection``, when given, also asks the provider online whether an access token is
    still active, once every offline check passed (ID tokens are not introspected)."""

    def __init__(self, issuer: str, keys: KeySet | VerificationKeys | KeySource, clock: Clock, *,
                 leeway: dt.timedelta = DEFAULT_LEEWAY, audit: Kyso | None = None,
                 introspection: IntrospectionClient | None = None) -> None:
        if not isinstance(issuer, str) or not issuer:
            raise ValueError("issuer must be a non-empty string")
        if not dt.timedelta(0) <= leeway <= MAX_LEEWAY:
            raise ValueError(f"leeway must be between 0 and {MAX_LEEWAY}")
        self.issuer = issuer
        self._source = _source(keys)
        self._clock = clock
        self._leeway = leeway
        self._audit = audit
        if introspection is not None and not isinstance(introspection, IntrospectionClient):
            raise TypeError("introspection must be an IntrospectionClient")
        self.introspection = introspection

    @classmethod
    def from_jwks(cls, issuer: str, jwks: Mapping[str, Any] | str | bytes, clock: Clock,
                  **options: Any) -> TokenVerifier:
        return cls(issuer, PublicKeySet.from_jwks(jwks), clock, **options)

    @classmethod
    def from_jwks_file(cls, issuer: str, path: Path, clock: Clock,
                       **options: Any) -> TokenVerifier:
        return cls(issuer, PublicKeySet.from_file(path), clock, **options)

    @classmethod
    def from_jwks_url(cls, issuer: str, url: str, clock: Clock, *, timeout: float = 5.0,
                      **options: Any) -> TokenVerifier:
        """Keys fetched from ``url`` on first use (https, or http to loopback only)."""
        return cls(issuer, RemoteJwks(url, clock, timeout=timeout), clock, **options)

    def verify(self, token: str, *, audience: str, min_level: Level = Level.ONE,
               token_type: TokenType | str = TokenType.ACCESS,
               max_age: dt.timedelta | int | None = None,
               access_token: str | None = None, role: str | None = None) -> VerifiedToken:
        """The verified token, or :class:`TokenError` naming the first problem
        (:class:`InsufficientLevelError` when only the level or freshness falls short,
        :class:`InsufficientRoleError` when the token lacks ``role``; with ``introspection``,
        :class:`IntrospectionError` when the provider could not be asked). An ID token carrying
        ``at_hash`` verifies only with the ``access_token`` it came with."""
        try:
            result = self._verify(token, audience, Level(min_level), TokenType(token_type),
                                  max_age, access_token)
            if role is not None and not result.has_role(role):
                raise InsufficientRoleError(f"the token does not carry the {role} role",
                                            role=role)
            if self.introspection is not None and result.token_type is TokenType.ACCESS:
                self.introspection.check(token, result)
        except TokenError as exc:
            self._record(None, exc, audience)
            raise
        self._record(result, None, audience)
        return result

    def _claims(self, token: str, audience: str, token_type: TokenType,
                access_token: str | None) -> Claims:
        keys = self._source.keys()
        try:
            return verify(token, keys, typ=token_type, issuer=self.issuer, audience=audience,
                          clock=self._clock, leeway=self._leeway, access_token=access_token)
        except UnknownKeyError:
            fresh = self._source.refresh()  # key rotation: at most once a minute
            if fresh is None:
                raise
        return verify(token, fresh, typ=token_type, issuer=self.issuer, audience=audience,
                      clock=self._clock, leeway=self._leeway, access_token=access_token)

    def _verify(self, token: str, audience: str, min_level: Level, token_type: TokenType,
                max_age: dt.timedelta | int | None, access_token: str | None) -> VerifiedToken:
        _max_age(max_age)  # a programming error, before any token work
        claims = self._claims(token, audience, token_type, access_token)
        extra = claims.extra

        acr = extra.get("acr")
        if acr is None:
            raise TokenError("token has no acr claim: its level is unknown")
        level = level_of(acr)
        if level is None:
            raise TokenError("token acr is not a known level of assurance")
        assert isinstance(acr, str)
        amr = _strings(extra["amr"], "amr") if "amr" in extra else ()
        scope_claim = extra.get("scope", "")
        if not isinstance(scope_claim, str):
            raise TokenError("claim scope is not a space-separated string")
        client_id = extra.get("client_id")
        if client_id is not None and (not isinstance(client_id, str) or not client_id):
            raise TokenError("claim client_id is not a non-empty string")
        if token_type is TokenType.ACCESS and client_id is None:
            raise TokenError("access token has no client_id claim (RFC 9068)")
        roles = _roles(extra)
        auth_time: dt.datetime | None = None
        skew = self._leeway
        if "auth_time" in extra:
            auth_time = dt.datetime.fromtimestamp(_numeric_date(extra["auth_time"], "auth_time"),
                                                  dt.UTC)
            if auth_time > claims.issued_at + skew:
                raise TokenError("token auth_time is after the token was issued")

        result = VerifiedToken(token_type=token_type, issuer=claims.issuer,
                               subject=claims.subject, level=level, acr=acr, amr=amr,
                               auth_time=auth_time, audience=claims.audience,
                               client_id=client_id, scope=tuple(scope_claim.split()),
                               expires_at=claims.expires_at, claims=claims, roles=roles)
        self.require(result, min_level=min_level, max_age=max_age)
        return result

    def require(self, token: VerifiedToken, *, min_level: Level = Level.ONE,
                max_age: dt.timedelta | int | None = None) -> None:
        """That a verified token's level is at least ``min_level`` and its login at most
        ``max_age`` old; :class:`InsufficientLevelError` (with the step-up to ask for)
        otherwise. :meth:`verify` calls it; a caller that wants to know *who* fell short
        verifies at level 1 first, then asks this."""
        max_age = _max_age(max_age)
        level = token.level
        if level < min_level:
            raise InsufficientLevelError(
                f"token is level {int(level)}; level {int(min_level)} is required",
                required_acr=acr_for(min_level))
        if max_age is not None:
            seconds = int(max_age.total_seconds())
            if token.auth_time is None:
                raise InsufficientLevelError("token has no auth_time; a recent login is required",
                                             required_acr=acr_for(max(level, min_level)),
                                             max_age=seconds)
            if self._clock.now() - token.auth_time > max_age + self._leeway:
                raise InsufficientLevelError(
                    f"the login is older than {seconds} s; a recent login is required",
                    required_acr=acr_for(max(level, min_level)), max_age=seconds)

    def _record(self, result: VerifiedToken | None, error: TokenError | None,
                audience: str) -> None:
        if self._audit is None:
            return
        from kyso.audit import Layer, Outcome

        if result is not None:
            self._audit.record(Layer.AUTHN, "VERIFY_TOKEN", Outcome.SUCCESS,
                               object=audience,
                               actor=self._audit.pseudonyms.pseudonym(result.subject),
                               level=int(result.level), token_type=result.to_dict()["token_type"],
                               client_id=result.client_id or "")
        else:
            self._audit.record(Layer.AUTHN, "VERIFY_TOKEN_ERROR", Outcome.FAILURE,
                               object=audience, reason=str(error),
                               error=type(error).__name__)


RelyingParty = TokenVerifier


# --- FastAPI ------------------------------------------------------------------------------------


def bearer_token(values: list[str]) -> str:
    """The token of exactly one ``Authorization: Bearer …`` header (RFC 6750 §2.1); TokenError
    otherwise."""
    if not values:
        raise TokenError("no bearer token: send Authorization: Bearer <token>")
    if len(values) > 1:
        raise TokenError("more than one Authorization header")
    value = values[0]
    if len(value) > MAX_TOKEN_BYTES + 32:
        raise TokenError(f"token is larger than {MAX_TOKEN_BYTES} bytes")
    match = _BEARER.fullmatch(value)
    if match is None:
        raise TokenError("the Authorization header is not 'Bearer <token>'")
    return match.group(1)


def require_token(verifier: TokenVerifier, *, audience: str, min_level: Level = Level.ONE,
                  max_age: dt.timedelta | int | None = None,
                  token_type: TokenType | str = TokenType.ACCESS,
                  role: str | None = None) -> Callable[..., VerifiedToken]:
    """A FastAPI dependency: ``token: VerifiedToken = Depends(require_token(rp, audience=…,
    min_level=Level.TWO, role="auditor"))``. Refusals are 401 with an RFC 6750 / RFC 9470
    ``WWW-Authenticate`` challenge, or 403 ``insufficient_scope`` for a valid token without
    ``role``, or 503 when the verifier's introspection endpoint could not be asked; the body
    names the problem, never the token."""
    from fastapi import HTTPException
    from starlette.requests import Request as RuntimeRequest

    level = Level(min_level)
    kind = TokenType(token_type)

    def dependency(request: Request) -> VerifiedToken:
        headers = request.headers.getlist("authorization")
        if not headers:  # RFC 6750 §3.1: no credentials, no error code
            raise HTTPException(401, detail="a bearer token is required",
                                headers={"WWW-Authenticate": "Bearer"})
        try:
            token = bearer_token(headers)
            return verifier.verify(token, audience=audience, min_level=level, token_type=kind,
                                   max_age=max_age, role=role)
        except InsufficientRoleError as exc:
            raise HTTPException(403, detail=str(exc),
                                headers={"WWW-Authenticate": exc.www_authenticate}) from None
        except InsufficientLevelError as exc:
            raise HTTPException(401, detail=str(exc),
                                headers={"WWW-Authenticate": exc.www_authenticate}) from None
        except IntrospectionError as exc:  # the provider is unreachable: not the caller's fault
            raise HTTPException(503, detail=str(exc), headers={"Retry-After": "5"}) from None
        except TokenError as exc:
            raise HTTPException(401, detail=str(exc), headers={
                "WWW-Authenticate": invalid_token_challenge(exc)}) from None

    # FastAPI reads the parameter's type to inject the request; with postponed annotations
    # the name "Request" would not resolve in this module's globals.
    dependency.__annotations__["request"] = RuntimeRequest
    return dependency
