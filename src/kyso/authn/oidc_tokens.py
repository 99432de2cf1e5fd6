"""Authorization codes and the tokens made from them: the token and userinfo endpoints.

Codes (``oidc_codes``) are 256 random bits stored as their SHA-256, live 60 s, are bound to the
client, the exact redirect URI and a PKCE S256 challenge (RFC 7636; ``plain`` is refused), and
are used once: the exchange signs the tokens first, then in one transaction consumes the code
with ``UPDATE … WHERE used_at IS NULL`` and records the tokens. A code presented again revokes
every token issued from it (RFC 6749 §4.1.2, RFC 9700 §4.2.4) — and userinfo refuses revoked
access tokens.

Access tokens follow RFC 9068 (``typ`` at+jwt, 30 minutes as VNeID's; ``aud`` = the client's
registered audiences) and carry the subject's current roles (:mod:`kyso.authn.roles`) as
``roles`` and Keycloak's ``realm_access.roles`` — an identity without roles gets neither, and
ID tokens never do; ID tokens carry ``azp``, ``nonce``, ``acr``, ``amr``, ``auth_time``,
``sid`` and ``at_hash``. Errors are :class:`TokenEndpointError` (RFC 6749 §5.2) and
:class:`BearerError` (RFC 6750 §3.1).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from kyso.audit import Layer, Outcome
from kyso.authn import tokens
from kyso.authn.key_ring import KeyRing
from kyso.authn.keys import KeySet, b64url
from kyso.authn.oidc_clients import Client, ClientRegistry
from kyso.authn.oidc_requests import OidcError, single
from kyso.authn.registry import Identity, Registry
from kyso.authn.roles import roles_of
from kyso.context import Kyso
from kyso.errors import AuthenticationFailedError, IdentityError, TokenError
from kyso.store.schema import oidc_codes, oidc_sessions, oidc_tokens

__all__ = [
    "ACCESS_TOKEN_LIFETIME",
    "CODE_LIFETIME",
    "ID_TOKEN_LIFETIME",
    "NO_ORIGIN",
    "BearerError",
    "Grant",
    "Origin",
    "TokenEndpointError",
    "TokenService",
    "peek_claim",
    "peek_part",
    "userinfo_claims",
]

CODE_LIFETIME = dt.timedelta(seconds=60)
ACCESS_TOKEN_LIFETIME = dt.timedelta(minutes=30)
ID_TOKEN_LIFETIME = dt.timedelta(minutes=10)
_TOKEN_PARAMS = ("grant_type", "code", "redirect_uri", "code_verifier", "client_id",
                 "client_secret", "scope")
_VERIFIER_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("ascii", "replace")).hexdigest()


def s256(verifier: str) -> str:
    """The PKCE S256 challenge of ``verifier`` (RFC 7636 §4.2)."""
    return b64url(hashlib.sha256(verifier.encode("ascii")).digest())


@dataclass(frozen=True)
class Origin:
    """Where a request came from, for audit events."""

    source: str = ""
    request_id: str = ""


NO_ORIGIN = Origin()


class TokenEndpointError(OidcError):
    """A token endpoint error (JSON body; 401 + WWW-Authenticate for invalid_client)."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(error, description, status=401 if error == "invalid_client" else 400)


class BearerError(OidcError):
    """A refused bearer token at userinfo (401 + ``WWW-Authenticate: Bearer``)."""

    def __init__(self, error: str, description: str) -> None:
        # A missing token is 401 too: the client must authenticate (RFC 6750 §3.1).
        super().__init__(error, description, status=401)


@dataclass(frozen=True)
class Grant:
    """What an authorization code stands for."""

    client_id: str
    subject: str
    redirect_uri: str
    scope: tuple[str, ...]
    code_challenge: str = field(repr=False)
    acr: str
    amr: tuple[str, ...]
    auth_time: dt.datetime
    nonce: str | None = field(default=None, repr=False)
    session_hash: str | None = field(default=None, repr=False)
    claims: str | None = None


def userinfo_claims(identity: Identity, scope: Sequence[str]) -> dict[str, Any]:
    """Standard OIDC claims plus the national broker's shape (SoDinhDanh, HoVaTen,
    NgayThangNamSinh as YYYYMMDD, LoaiTaiKhoan = the account level) for scope ``profile``."""
    person = identity.person
    claims: dict[str, Any] = {"sub": identity.subject}
    if "profile" in scope:
        claims.update(
            name=person.full_name, preferred_username=person.id_number,
            birthdate=person.birth_date.isoformat(), gender=person.sex.value,
            SoDinhDanh=person.id_number, HoVaTen=person.full_name,
            NgayThangNamSinh=person.birth_date.strftime("%Y%m%d"),
            LoaiTaiKhoan=int(identity.level))
    if "phone" in scope and person.phone:
        claims.update(phone_number=person.phone, phone_number_verified=True)
    if "email" in scope and person.email:
        claims.update(email=person.email, email_verified=False)
    return claims


def _basic_credentials(authorization: str) -> tuple[str, str]:
    """(client_id, secret) of an HTTP Basic header (RFC 6749 §2.3.1: form-encoded parts)."""
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        raise TokenEndpointError("invalid_client", "unsupported client authentication scheme")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise TokenEndpointError("invalid_client", "malformed Basic credentials") from None
    user, sep, password = decoded.partition(":")
    if not sep:
        raise TokenEndpointError("invalid_client", "malformed Basic credentials")
    return unquote_plus(user), unquote_plus(password)


def peek_part(token: str, index: int) -> dict[str, Any] | None:
    """The unverified header (0) or payload (1) of a compact JWS, or None."""
    parts = token.split(".") if isinstance(token, str) and token.isascii() else []
    if len(parts) != 3 or len(parts[index]) > tokens.MAX_TOKEN_BYTES:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(parts[index] + "=" * (-len(parts[index]) % 4)))
    except (ValueError, binascii.Error, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def peek_claim(token: str, name: str) -> Any:
    """An unverified claim, only to choose what to verify the token against (the client and
    its audience); the token is verified before anything it says is used."""
    payload = peek_part(token, 1)
    return payload.get(name) if payload is not None else None


class TokenService:
    """Issue codes; exchange them for tokens; answer userinfo."""

    def __init__(self, kyso: Kyso, keys: KeySet | KeyRing, issuer: str,
                 clients: ClientRegistry) -> None:
        self.kyso = kyso
        self.keys = keys if isinstance(keys, KeyRing) else KeyRing(keys, kyso.clock)
        self.issuer = issuer
        self.clients = clients
        self.registry = Registry(kyso.store, kyso.clock)

    # -- codes ------------------------------------------------------------------------

    def issue_code(self, grant: Grant) -> str:
        code = secrets.token_urlsafe(32)
        now = self.kyso.now()
        row = {"code_hash": _sha256(code), "client_id": grant.client_id, "subject": grant.subject,
               "session_hash": grant.session_hash, "redirect_uri": grant.redirect_uri,
               "scope": " ".join(grant.scope), "nonce": grant.nonce,
               "code_challenge": grant.code_challenge, "acr": grant.acr,
               "amr": json.dumps(list(grant.amr)),
               "auth_time": grant.auth_time, "claims": grant.claims, "created_at": now,
               "expires_at": now + CODE_LIFETIME, "used_at": None}
        self.kyso.store.write(lambda conn: conn.execute(sa.insert(oidc_codes).values(**row)))
        return code

    # -- token endpoint ---------------------------------------------------------------

    def exchange(self, form: Mapping[str, Sequence[str]], authorization: str | None,
                 origin: Origin = NO_ORIGIN) -> dict[str, Any]:
        """The token response for an authorization code grant, or TokenEndpointError.
        Every outcome is one CODE_TO_TOKEN / CODE_TO_TOKEN_ERROR event."""
        client_id = ""
        try:
            for name in _TOKEN_PARAMS:
                single(form, name)  # repeated → invalid_request
            client = self.authenticate_client(form, authorization)
            client_id = client.client_id
            response, subject = self._exchange(client, form)
        except TokenEndpointError as exc:
            self._record("CODE_TO_TOKEN_ERROR", Outcome.FAILURE, origin, client_id=client_id,
                         error=exc.error, reason=exc.description)
            raise
        except OidcError as exc:
            self._record("CODE_TO_TOKEN_ERROR", Outcome.FAILURE, origin, client_id=client_id,
                         error=exc.error, reason=exc.description)
            raise TokenEndpointError(exc.error, exc.description) from None
        self._record("CODE_TO_TOKEN", Outcome.SUCCESS, origin, subject=subject,
                     client_id=client_id, scope=response["scope"])
        return response

    def authenticate_client(self, form: Mapping[str, Sequence[str]], authorization: str | None
                            ) -> Client:
        """The client a token or introspection request authenticates as (Basic or the body's
        ``client_id``/``client_secret``); :class:`TokenEndpointError` ``invalid_client`` if none."""
        body_id, body_secret = single(form, "client_id"), single(form, "client_secret")
        if authorization:
            if body_secret is not None:
                raise TokenEndpointError("invalid_request",
                                         "use one client authentication method, not two")
            client_id, secret = _basic_credentials(authorization)
            if body_id is not None and body_id != client_id:
                raise TokenEndpointError("invalid_client", "client_id does not match the "
                                                           "authenticated client")
        else:
            if body_id is None:
                raise TokenEndpointError("invalid_client", "client authentication is missing")
            client_id, secret = body_id, body_secret or ""
        client = self.clients.get(client_id)
        if client is None or not client.active:
            raise TokenEndpointError("invalid_client", "unknown or disabled client")
        try:
            self.clients.authenticate(client, secret or None)
        except AuthenticationFailedError:
            raise TokenEndpointError("invalid_client", "client authentication failed") from None
        return client

    def _exchange(self, client: Client, form: Mapping[str, Sequence[str]]
                  ) -> tuple[dict[str, Any], str]:
        grant_type = single(form, "grant_type")
        if grant_type is None:
            raise TokenEndpointError("invalid_request", "parameter grant_type is missing")
        if grant_type != "authorization_code":
            raise TokenEndpointError("unsupported_grant_type",
                                     "only the authorization_code grant is supported")
        code, redirect_uri = single(form, "code"), single(form, "redirect_uri")
        verifier = single(form, "code_verifier", limit=128)
        if code is None:
            raise TokenEndpointError("invalid_request", "parameter code is missing")
        if redirect_uri is None:
            raise TokenEndpointError("invalid_request", "parameter redirect_uri is missing")
        if verifier is None:
            raise TokenEndpointError("invalid_request",
                                     "PKCE is required: parameter code_verifier is missing")
        code_hash = _sha256(code)
        now = self.kyso.now()
        with self.kyso.store.read() as conn:
            row = conn.execute(sa.select(oidc_codes).where(oidc_codes.c.code_hash == code_hash)
                               ).mappings().first()
        if row is None:
            raise TokenEndpointError("invalid_grant", "unknown authorization code")
        if row["used_at"] is not None:
            revoked = self._revoke_from(code_hash, now)
            raise TokenEndpointError("invalid_grant", f"authorization code already used; "
                                                      f"{revoked} token(s) issued from it revoked")
        if row["client_id"] != client.client_id:
            raise TokenEndpointError("invalid_grant", "the code was issued to another client")
        if now >= row["expires_at"]:
            raise TokenEndpointError("invalid_grant", "authorization code has expired")
        if row["redirect_uri"] != redirect_uri:
            raise TokenEndpointError("invalid_grant", "redirect_uri differs from the "
                                                      "authorization request")
        if not (43 <= len(verifier) <= 128 and set(verifier) <= _VERIFIER_CHARS) or \
                not secrets.compare_digest(s256(verifier), row["code_challenge"]):
            raise TokenEndpointError("invalid_grant", "PKCE code_verifier does not match")

        scope = str(row["scope"])
        common = {"acr": row["acr"], "amr": json.loads(row["amr"]),
                  "auth_time": int(row["auth_time"].timestamp())}
        access_claims: dict[str, Any] = {**common, "client_id": client.client_id, "scope": scope}
        roles = roles_of(self.kyso.store, row["subject"])
        if roles:
            access_claims.update(roles=list(roles), realm_access={"roles": list(roles)})
        keys = self.keys.snapshot()  # both tokens signed by one key, even across a rotation
        access = tokens.issue(keys, typ=tokens.TokenType.ACCESS, issuer=self.issuer,
                              subject=row["subject"], audience=list(client.audiences),
                              lifetime=ACCESS_TOKEN_LIFETIME, clock=self.kyso.clock,
                              claims=access_claims)
        jti = tokens.verify(access, keys, typ=tokens.TokenType.ACCESS, issuer=self.issuer,
                            audience=client.audiences[0], clock=self.kyso.clock).jwt_id
        id_claims: dict[str, Any] = {**common, "azp": client.client_id,
                                     "at_hash": b64url(hashlib.sha256(access.encode()).digest()[:16])}
        sid = self._sid(row["session_hash"])
        if sid:
            id_claims["sid"] = sid
        if row["nonce"] is not None:
            id_claims["nonce"] = row["nonce"]
        id_token = tokens.issue(keys, typ=tokens.TokenType.ID, issuer=self.issuer,
                                subject=row["subject"], audience=client.client_id,
                                lifetime=ID_TOKEN_LIFETIME, clock=self.kyso.clock,
                                claims=id_claims)
        records = [{"jti": jti, "kind": "access", "code_hash": code_hash,
                    "client_id": client.client_id, "subject": row["subject"], "issued_at": now,
                    "expires_at": now + ACCESS_TOKEN_LIFETIME, "revoked_at": None},
                   {"jti": _sha256(id_token), "kind": "id", "code_hash": code_hash,
                    "client_id": client.client_id, "subject": row["subject"], "issued_at": now,
                    "expires_at": now + ID_TOKEN_LIFETIME, "revoked_at": None}]

        def work(conn: Connection) -> bool:
            used = conn.execute(sa.update(oidc_codes).where(
                oidc_codes.c.code_hash == code_hash, oidc_codes.c.used_at.is_(None)
            ).values(used_at=now)).rowcount
            if used != 1:
                return False
            conn.execute(sa.insert(oidc_tokens), records)
            return True

        if not self.kyso.store.write(work):  # a concurrent exchange won: that is a reuse
            revoked = self._revoke_from(code_hash, now)
            raise TokenEndpointError("invalid_grant", f"authorization code already used; "
                                                      f"{revoked} token(s) issued from it revoked")
        response = {"access_token": access, "token_type": "Bearer",
                    "expires_in": int(ACCESS_TOKEN_LIFETIME.total_seconds()),
                    "id_token": id_token, "scope": scope}
        return response, str(row["subject"])

    def _sid(self, session_hash: str | None) -> str | None:
        if session_hash is None:
            return None
        with self.kyso.store.read() as conn:
            data = conn.execute(sa.select(oidc_sessions.c.data).where(
                oidc_sessions.c.id_hash == session_hash)).scalar()
        sid = json.loads(data).get("sid") if data else None
        return sid if isinstance(sid, str) and sid else None

    def _revoke_from(self, code_hash: str, now: dt.datetime) -> int:
        t = oidc_tokens.c
        return int(self.kyso.store.write(lambda conn: conn.execute(sa.update(oidc_tokens).where(
            t.code_hash == code_hash, t.revoked_at.is_(None)).values(revoked_at=now)).rowcount))

    # -- userinfo ---------------------------------------------------------------------

    def userinfo(self, authorization: str | None, origin: Origin = NO_ORIGIN) -> dict[str, Any]:
        """The claims of a valid, unrevoked access token; BearerError otherwise. One
        USERINFO_REQUEST / USERINFO_REQUEST_ERROR event."""
        try:
            claims, identity = self._userinfo(authorization)
        except BearerError as exc:
            self._record("USERINFO_REQUEST_ERROR", Outcome.FAILURE, origin, error=exc.error,
                         reason=exc.description)
            raise
        self._record("USERINFO_REQUEST", Outcome.SUCCESS, origin, subject=identity.subject,
                     client_id=claims.get("client_id"))
        return userinfo_claims(identity, str(claims.get("scope", "")).split())

    def _userinfo(self, authorization: str | None) -> tuple[tokens.Claims, Identity]:
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise BearerError("invalid_request", "a bearer access token is required")
        client = self.clients.get(peek_claim(token, "client_id"))
        if client is None or not client.active:
            raise BearerError("invalid_token", "the access token is not valid")
        try:
            claims = tokens.verify(token, self.keys, typ=tokens.TokenType.ACCESS,
                                   issuer=self.issuer, audience=client.audiences[0],
                                   clock=self.kyso.clock)
        except TokenError as exc:
            raise BearerError("invalid_token", f"the access token is not valid: {exc}") from None
        if claims.get("client_id") != client.client_id:
            raise BearerError("invalid_token", "the access token is not valid")
        t = oidc_tokens.c
        with self.kyso.store.read() as conn:
            row = conn.execute(sa.select(t.kind, t.revoked_at).where(
                t.jti == claims.jwt_id)).first()
        if row is None or row.kind != "access":
            raise BearerError("invalid_token", "the access token is unknown to this provider")
        if row.revoked_at is not None:
            raise BearerError("invalid_token", "the access token has been revoked")
        try:
            identity = self.registry.by_subject(claims.subject)
        except IdentityError:
            raise BearerError("invalid_token", "the account no longer exists") from None
        if identity.locked:
            raise BearerError("invalid_token", "the account is locked")
        return claims, identity

    # -- audit ------------------------------------------------------------------------

    def _record(self, action: str, outcome: Outcome, origin: Origin, *, subject: str = "",
                **details: Any) -> None:
        record_authn(self.kyso, self.registry, action, outcome, origin, subject=subject,
                     **details)


def record_authn(kyso: Kyso, registry: Registry, action: str, outcome: Outcome, origin: Origin,
                 *, subject: str = "", **details: Any) -> None:
    """One provider event: the citizen's pseudonym as actor ("anonymous" before login,
    "unknown" for a vanished subject), the request's source and id, text details capped."""
    actor = "anonymous"
    if subject:
        try:
            actor = kyso.pseudonyms.pseudonym(registry.by_subject(subject).id_number)
        except IdentityError:
            actor = "unknown"
    kyso.record(Layer.AUTHN, action, outcome, object=subject, actor=actor,
                source=origin.source or None, request_id=origin.request_id,
                **{k: (v[:256] if isinstance(v, str) else v)
                   for k, v in details.items() if v is not None})
