"""OpenID Connect relying parties (``oidc_clients``): registration with exact redirect URIs,
lookup, and client authentication at the token endpoint.

Redirect URIs are compared as exact strings (RFC 9700 §4.1.3: no prefix match, no
normalisation). At registration each must be absolute, ``https`` — or ``http`` on a loopback
host only (RFC 8252 §7.3) — without a fragment (RFC 6749 §3.1.2) or user information.
Confidential clients get a random secret shown once; only its SHA-256 digest is stored
(:func:`hash_client_secret`). The secret holds 256 random bits: there is nothing to guess, so a
slow password hash would protect nothing and only cost every token and introspection request
about 25 ms of argon2, a lever for anyone sending garbage secrets. Digests are compared in
constant time. A client registered before (argon2id hash) still authenticates, and its hash is
replaced by the digest at its first success.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from kyso.authn.lockout import INVALID_CREDENTIALS
from kyso.authn.passwords import PasswordHasher
from kyso.clock import Clock, vn_iso
from kyso.errors import AuthenticationFailedError, AuthnError
from kyso.store import Store
from kyso.store.schema import oidc_clients

__all__ = [
    "DEFAULT_SCOPES",
    "SUPPORTED_SCOPES",
    "Client",
    "ClientRegistry",
    "ClientStatus",
    "NewClient",
    "hash_client_secret",
    "validate_redirect_uri",
]

SUPPORTED_SCOPES = ("openid", "profile", "phone", "email")
DEFAULT_SCOPES = "openid profile"
MAX_URI = 2000
MAX_URIS = 20
_CLIENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
_LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}
DIGEST_PREFIX = "sha256:"
MAX_SECRET = 512  # characters; ours have 43


def hash_client_secret(secret: str) -> str:
    """How a client secret is stored: ``sha256:`` and the hex digest of its UTF-8 bytes."""
    return DIGEST_PREFIX + hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()


class ClientStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"


def validate_redirect_uri(uri: object, what: str = "redirect URI") -> str:
    """``uri`` unchanged if it is acceptable as a registered redirect URI, else AuthnError."""
    if not isinstance(uri, str) or not uri or len(uri) > MAX_URI:
        raise AuthnError(f"{what} must be a URI of 1-{MAX_URI} characters")
    if not uri.isascii() or any(c.isspace() or ord(c) < 0x21 or c in '"<>\\^`{|}' for c in uri):
        raise AuthnError(f"{what} must be ASCII without spaces or control characters "
                         f"(percent-encode anything else)")
    parts = urlsplit(uri)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise AuthnError(f"{what} must be an absolute https:// URI (http:// only on loopback)")
    if "#" in uri:
        raise AuthnError(f"{what} must not contain a fragment (#)")
    if "@" in parts.netloc:
        raise AuthnError(f"{what} must not contain user information (user@host)")
    try:
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise AuthnError(f"{what} has an invalid port") from None
    if not host:
        raise AuthnError(f"{what} has no host")
    if parts.scheme == "http" and host not in _LOOPBACK:
        raise AuthnError(f"{what} must use https (http is allowed on 127.0.0.1, [::1] and "
                         f"localhost only)")
    return uri


@dataclass(frozen=True)
class Client:
    """A registered relying party (without its secret hash)."""

    client_id: str
    name: str
    confidential: bool
    redirect_uris: tuple[str, ...]
    post_logout_redirect_uris: tuple[str, ...]
    scopes: tuple[str, ...]
    audiences: tuple[str, ...]
    status: ClientStatus
    created_at: dt.datetime

    @property
    def active(self) -> bool:
        return self.status is ClientStatus.ACTIVE

    def to_dict(self) -> dict[str, Any]:
        return {"client_id": self.client_id, "name": self.name,
                "type": "confidential" if self.confidential else "public",
                "redirect_uris": list(self.redirect_uris),
                "post_logout_redirect_uris": list(self.post_logout_redirect_uris),
                "scopes": list(self.scopes), "audiences": list(self.audiences),
                "status": self.status.value, "created_at": vn_iso(self.created_at)}


@dataclass(frozen=True)
class NewClient:
    """A client just registered; ``secret`` (confidential clients) is shown once."""

    client: Client
    secret: str | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        data = self.client.to_dict()
        if self.secret is not None:
            data["client_secret"] = self.secret
        return data


def _list(text: str) -> tuple[str, ...]:
    value = json.loads(text)
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _client(row: RowMapping) -> Client:
    return Client(client_id=row["client_id"], name=row["name"],
                  confidential=row["secret_hash"] is not None,
                  redirect_uris=_list(row["redirect_uris"]),
                  post_logout_redirect_uris=_list(row["post_logout_redirect_uris"]),
                  scopes=tuple(row["scopes"].split()), audiences=_list(row["audiences"]),
                  status=ClientStatus(row["status"]), created_at=row["created_at"])


def _unique(values: list[str], what: str) -> list[str]:
    if len(values) > MAX_URIS:
        raise AuthnError(f"at most {MAX_URIS} {what}s per client")
    return list(dict.fromkeys(values))


class ClientRegistry:
    """Register, read and authenticate OpenID Connect clients."""

    def __init__(self, store: Store, clock: Clock, hasher: PasswordHasher) -> None:
        self._store = store
        self._clock = clock
        self._hasher = hasher

    def add(self, client_id: str, name: str, redirect_uris: list[str], *,
            post_logout_redirect_uris: list[str] | None = None,
            audiences: list[str] | None = None, scopes: str = DEFAULT_SCOPES,
            confidential: bool = False) -> NewClient:
        """Register a client; AuthnError naming the first bad value (or a taken client id)."""
        if not isinstance(client_id, str) or not _CLIENT_ID.fullmatch(client_id):
            raise AuthnError("client id must be 1-64 characters: letters, digits, . _ : -, "
                             "starting with a letter or digit")
        label = " ".join(str(name).split())
        if not label or len(label) > 200:
            raise AuthnError("client name must be 1-200 characters")
        uris = _unique([validate_redirect_uri(u) for u in redirect_uris], "redirect URI")
        if not uris:
            raise AuthnError("a client needs at least one redirect URI")
        logout = _unique([validate_redirect_uri(u, "post-logout redirect URI")
                          for u in post_logout_redirect_uris or []], "post-logout redirect URI")
        auds = _unique(list(audiences or [client_id]), "audience")
        if not all(isinstance(a, str) and 0 < len(a) <= 200 and a.isprintable() for a in auds):
            raise AuthnError("each audience must be 1-200 printable characters")
        scope_list = list(dict.fromkeys(str(scopes).split()))
        unknown = [s for s in scope_list if s not in SUPPORTED_SCOPES]
        if unknown or "openid" not in scope_list:
            raise AuthnError(f"scopes must include openid and be among "
                             f"{', '.join(SUPPORTED_SCOPES)}")
        secret = secrets.token_urlsafe(32) if confidential else None
        row = {"client_id": client_id, "name": label,
               "secret_hash": hash_client_secret(secret) if secret is not None else None,
               "redirect_uris": json.dumps(uris), "post_logout_redirect_uris": json.dumps(logout),
               "scopes": " ".join(scope_list), "audiences": json.dumps(auds),
               "status": ClientStatus.ACTIVE.value, "created_at": self._clock.now()}

        def work(conn: Connection) -> None:
            taken = conn.execute(sa.select(oidc_clients.c.client_id).where(
                oidc_clients.c.client_id == client_id)).first()
            if taken is not None:
                raise AuthnError(f"client id {client_id!r} is already registered")
            conn.execute(sa.insert(oidc_clients).values(**row))

        try:
            self._store.write(work)
        except sa.exc.IntegrityError:
            raise AuthnError(f"client id {client_id!r} is already registered") from None
        found = self.get(client_id)
        assert found is not None
        return NewClient(found, secret)

    def get(self, client_id: object) -> Client | None:
        """The client, or None for anything that is not a registered client id."""
        if not isinstance(client_id, str) or not _CLIENT_ID.fullmatch(client_id):
            return None
        with self._store.read() as conn:
            row = conn.execute(sa.select(oidc_clients).where(
                oidc_clients.c.client_id == client_id)).mappings().first()
        return _client(row) if row is not None else None

    def list(self) -> tuple[Client, ...]:
        with self._store.read() as conn:
            rows = conn.execute(sa.select(oidc_clients).order_by(oidc_clients.c.client_id)
                                ).mappings().all()
        return tuple(_client(r) for r in rows)

    def set_status(self, client_id: str, status: ClientStatus) -> Client:
        changed = self._store.write(lambda conn: conn.execute(sa.update(oidc_clients).where(
            oidc_clients.c.client_id == client_id).values(status=status.value)).rowcount)
        if changed != 1:
            raise AuthnError(f"no client {client_id!r}")
        found = self.get(client_id)
        assert found is not None
        return found

    def authenticate(self, client: Client, secret: str | None) -> None:
        """Check a confidential client's secret (AuthenticationFailedError); a public client
        must not present one."""
        if not client.confidential:
            if secret:
                raise AuthenticationFailedError("this client is public: it has no secret")
            return
        if not secret or len(secret) > MAX_SECRET:  # refused before any database read
            raise AuthenticationFailedError(INVALID_CREDENTIALS)
        with self._store.read() as conn:
            stored = conn.execute(sa.select(oidc_clients.c.secret_hash).where(
                oidc_clients.c.client_id == client.client_id)).scalar()
        if stored is None:
            raise AuthenticationFailedError(INVALID_CREDENTIALS)
        if stored.startswith(DIGEST_PREFIX):
            if not hmac.compare_digest(stored.encode("ascii", "replace"),
                                       hash_client_secret(secret).encode("ascii")):
                raise AuthenticationFailedError(INVALID_CREDENTIALS)
            return
        self._hasher.verify(stored, secret)  # registered before: argon2id; raises on a mismatch
        self._store.write(lambda conn: conn.execute(sa.update(oidc_clients).where(
            oidc_clients.c.client_id == client.client_id,
            oidc_clients.c.secret_hash == stored).values(secret_hash=hash_client_secret(secret))))
