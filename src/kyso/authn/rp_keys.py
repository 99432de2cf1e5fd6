"""Where a relying party gets the issuer's public keys: a local key set, a JWKS (RFC 7517)
document or file, or a JWKS URL fetched over HTTPS.

Only what kyso issues is accepted in a JWKS: EC P-256 keys for ES256 whose ``kid`` is their
RFC 7638 thumbprint, public members only. Anything else (RSA, other curves, symmetric keys,
private key material, a wrong kid, duplicates) refuses the whole document with a
:class:`JwksError` naming the key and the problem: a relying party must not half-trust an
issuer's key set.

A :class:`RemoteJwks` fetches with ``urllib`` (timeout, size limit, no redirects, ``https`` or
``http`` to a loopback address only), keeps the keys for ``cache_for`` and, when a token names a
kid it does not know, refetches at most once per ``refetch_after`` (one minute): the standard
behaviour during key rotation, without letting forged kids hammer the issuer.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric import ec

from kyso.authn.keys import (
    ALGORITHM,
    CURVE,
    LONGEST_TOKEN_LIFETIME,
    MAX_LEEWAY,
    KeySet,
    b64url,
    jwk_thumbprint,
)
from kyso.authn.tokens import VerificationKeys
from kyso.clock import Clock
from kyso.errors import TokenError

MAX_JWKS_BYTES = 64 * 1024
MAX_JWKS_KEYS = 32
DEFAULT_TIMEOUT = 5.0
DEFAULT_CACHE_FOR = dt.timedelta(hours=1)
DEFAULT_REFETCH_AFTER = dt.timedelta(minutes=1)
_COORDINATE_BYTES = 32
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "k", "oth")
_KNOWN_KTY = frozenset({"EC", "RSA", "oct", "OKP"})
_KNOWN_CRV = frozenset({"P-256", "P-384", "P-521", "secp256k1", "Ed25519", "Ed448", "X25519"})


class JwksError(TokenError):
    """A JWKS could not be fetched, read or trusted; the message names the key and the rule."""


@dataclass(frozen=True, eq=False)
class PublicKey:
    """One ES256 verification key without its private half. ``created_at`` / ``retired_at`` are
    known for a local key set, unknown (None) for a JWKS."""

    kid: str
    public_key: ec.EllipticCurvePublicKey = field(repr=False)
    created_at: dt.datetime | None = None
    retired_at: dt.datetime | None = None


@dataclass(frozen=True, eq=False)
class PublicKeySet:
    """Public verification keys by kid; satisfies :class:`kyso.authn.tokens.VerificationKeys`.

    ``max_token_lifetime`` bounds ``exp - iat``: a local key set's own maximum, else
    :data:`~kyso.authn.keys.LONGEST_TOKEN_LIFETIME` (24 h)."""

    keys: tuple[PublicKey, ...]
    max_token_lifetime: dt.timedelta = LONGEST_TOKEN_LIFETIME
    _by_kid: Mapping[str, PublicKey] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        by_kid = {key.kid: key for key in self.keys}
        if len(by_kid) != len(self.keys):
            raise JwksError("a key appears twice in the key set")
        object.__setattr__(self, "_by_kid", by_kid)

    @classmethod
    def from_key_set(cls, key_set: KeySet) -> PublicKeySet:
        """The public half of the provider's own key set, with its key times and lifetime."""
        return cls(tuple(PublicKey(k.kid, k.public_key, k.created_at, k.retired_at)
                         for k in key_set), key_set.max_token_lifetime)

    @classmethod
    def from_jwks(cls, jwks: Mapping[str, Any] | str | bytes, *,
                  max_token_lifetime: dt.timedelta = LONGEST_TOKEN_LIFETIME) -> PublicKeySet:
        """Parse and check a JWK Set (see the module docstring); :class:`JwksError` if any key
        in it is not an ES256 P-256 public key named by its thumbprint."""
        document = _document(jwks) if isinstance(jwks, str | bytes) else jwks
        if not isinstance(document, Mapping):
            raise JwksError("JWKS is not a JSON object")
        entries = document.get("keys")
        if not isinstance(entries, list) or not entries:
            raise JwksError("JWKS has no keys (a non-empty \"keys\" array is required)")
        if len(entries) > MAX_JWKS_KEYS:
            raise JwksError(f"JWKS has {len(entries)} keys; at most {MAX_JWKS_KEYS} are accepted")
        keys = tuple(_public_key(entry, n) for n, entry in enumerate(entries))
        if len({k.kid for k in keys}) != len(keys):
            raise JwksError("JWKS names the same key (kid) twice")
        return cls(keys, max_token_lifetime)

    @classmethod
    def from_file(cls, path: Path, *,
                  max_token_lifetime: dt.timedelta = LONGEST_TOKEN_LIFETIME) -> PublicKeySet:
        try:
            with path.open("rb") as fh:
                data = fh.read(MAX_JWKS_BYTES + 1)
        except OSError as exc:
            raise JwksError(f"JWKS file {path} cannot be read: {exc.strerror or exc}") from None
        if len(data) > MAX_JWKS_BYTES:
            raise JwksError(f"JWKS file {path} is larger than {MAX_JWKS_BYTES} bytes")
        try:
            return cls.from_jwks(data, max_token_lifetime=max_token_lifetime)
        except JwksError as exc:
            raise JwksError(f"{path}: {exc}") from None

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(self._by_kid)

    def verification_key(self, kid: str, now: dt.datetime,
                         leeway: dt.timedelta = MAX_LEEWAY) -> PublicKey | None:
        key = self._by_kid.get(kid)
        if key is None:
            return None
        if key.retired_at is not None and now >= key.retired_at + self.max_token_lifetime + leeway:
            return None
        return key


def _document(data: str | bytes) -> Any:
    if len(data) > MAX_JWKS_BYTES:
        raise JwksError(f"JWKS is larger than {MAX_JWKS_BYTES} bytes")
    try:
        return json.loads(data, object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise JwksError("JWKS is not valid JSON") from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate member name")
    return result


def _coordinate(value: object, where: str, name: str) -> int:
    if not isinstance(value, str) or len(value) != 43:
        raise JwksError(f"{where}: {name} is not a 32-byte base64url coordinate")
    try:
        raw = base64.urlsafe_b64decode(value + "=")
    except ValueError:
        raise JwksError(f"{where}: {name} is not base64url") from None
    if len(raw) != _COORDINATE_BYTES or b64url(raw) != value:
        raise JwksError(f"{where}: {name} is not a canonical 32-byte base64url coordinate")
    return int.from_bytes(raw, "big")


def _public_key(entry: object, n: int) -> PublicKey:
    where = f"JWKS key {n}"
    if not isinstance(entry, Mapping):
        raise JwksError(f"{where} is not a JSON object")
    kty = entry.get("kty")
    if kty != "EC":
        named = f" {kty}" if kty in _KNOWN_KTY else ""
        raise JwksError(f"{where}: key type{named} refused: only EC P-256 keys (ES256)")
    crv = entry.get("crv")
    if crv != CURVE:
        named = f" {crv}" if crv in _KNOWN_CRV else ""
        raise JwksError(f"{where}: curve{named} refused: only P-256 (ES256)")
    private = [name for name in _PRIVATE_MEMBERS if name in entry]
    if private:
        raise JwksError(f"{where} holds private key material ({', '.join(private)}); a JWKS "
                        f"must publish public keys only")
    alg = entry.get("alg", ALGORITHM)
    if alg != ALGORITHM:
        raise JwksError(f"{where}: algorithm refused: only ES256")
    if entry.get("use", "sig") != "sig":
        raise JwksError(f"{where}: use is not \"sig\"")
    ops = entry.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        raise JwksError(f"{where}: key_ops does not allow \"verify\"")
    x, y = _coordinate(entry.get("x"), where, "x"), _coordinate(entry.get("y"), where, "y")
    try:
        public = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
    except ValueError:
        raise JwksError(f"{where}: the point is not on the P-256 curve") from None
    kid = entry.get("kid")
    if not isinstance(kid, str) or not kid:
        raise JwksError(f"{where} has no kid")
    if kid != jwk_thumbprint(public):
        raise JwksError(f"{where}: kid is not the key's RFC 7638 thumbprint")
    return PublicKey(kid, public)


# --- key sources ------------------------------------------------------------------------------


class KeySource(Protocol):
    """What a verifier asks for keys: the current set, and a refreshed one after an unknown kid
    (None when no refresh is possible or allowed yet)."""

    def keys(self) -> VerificationKeys: ...

    def refresh(self) -> VerificationKeys | None: ...


@dataclass(frozen=True)
class StaticKeys:
    """Keys known in advance: a local key set or a JWKS file; never refreshed."""

    key_set: VerificationKeys

    def keys(self) -> VerificationKeys:
        return self.key_set

    def refresh(self) -> VerificationKeys | None:
        return None


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_jwks_url(url: str) -> str:
    """``https``, or ``http`` to a loopback address (a sidecar or a test server); no user
    info, no fragment. :class:`JwksError` otherwise."""
    return check_service_url(url, "JWKS URL", JwksError)


def check_service_url(url: object, what: str, error: type[Exception], clear: str = "") -> str:
    """``url`` if it is an absolute ``https`` URL, or ``http`` to a loopback address, of at
    most 2048 characters, without user info or fragment; else ``error`` naming ``what`` (and
    ``clear``: what would travel in clear over plain http)."""
    if not isinstance(url, str) or not 0 < len(url) <= 2048:
        raise error(f"{what} must be a non-empty URL of at most 2048 characters")
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise error(f"{what} is not a valid URL") from None
    if parts.scheme not in ("https", "http") or not host:
        raise error(f"{what} must be an absolute https URL")
    if parts.scheme == "http" and not is_loopback(host):
        raise error(f"{what} over plain http is refused except to a loopback address"
                    f"{clear}; use https")
    if parts.username is not None or parts.password is not None or parts.fragment:
        raise error(f"{what} must not carry user info or a fragment")
    return url


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx is then an HTTPError: keys come from the configured URL only


def fetch_url(url: str, timeout: float = DEFAULT_TIMEOUT, limit: int = MAX_JWKS_BYTES) -> bytes:
    """GET ``url`` (checked by :func:`check_jwks_url`): at most ``limit`` bytes, no redirects,
    :class:`JwksError` on any failure."""
    check_jwks_url(url)
    handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
    if is_loopback(urllib.parse.urlsplit(url).hostname):
        handlers.append(urllib.request.ProxyHandler({}))  # a local issuer never goes via a proxy
    opener = urllib.request.build_opener(*handlers)
    request = urllib.request.Request(url, headers={  # noqa: S310 - scheme checked above
        "Accept": "application/json",
        "User-Agent": "kyso-rp"})
    try:
        with opener.open(request, timeout=timeout) as response:
            data: bytes = response.read(limit + 1)
    except urllib.error.HTTPError as exc:
        raise JwksError(f"JWKS could not be fetched: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or type(exc).__name__
        raise JwksError(f"JWKS could not be fetched: {reason}") from None
    if len(data) > limit:
        raise JwksError(f"JWKS is larger than {limit} bytes")
    return data


class RemoteJwks:
    """A JWKS URL, fetched on first use and cached; thread-safe.

    ``keys()`` refetches when the cache is older than ``cache_for`` (if that fails, the cached
    keys stay in use until a fetch succeeds); ``refresh()`` — after a token named an unknown kid
    — refetches only if the last fetch is at least ``refetch_after`` old, else returns None."""

    def __init__(self, url: str, clock: Clock, *, timeout: float = DEFAULT_TIMEOUT,
                 cache_for: dt.timedelta = DEFAULT_CACHE_FOR,
                 refetch_after: dt.timedelta = DEFAULT_REFETCH_AFTER,
                 max_token_lifetime: dt.timedelta = LONGEST_TOKEN_LIFETIME,
                 fetch: Callable[[str], bytes] | None = None) -> None:
        self.url = check_jwks_url(url)
        self._clock = clock
        self._cache_for = cache_for
        self._refetch_after = refetch_after
        self._max_lifetime = max_token_lifetime
        self._fetch = fetch or (lambda u: fetch_url(u, timeout))
        self._lock = threading.Lock()
        self._keys: PublicKeySet | None = None
        self._fetched_at: dt.datetime | None = None
        self.fetches = 0  # how many fetches were attempted (for tests and monitoring)

    def _load(self, now: dt.datetime) -> PublicKeySet:
        self.fetches += 1
        self._fetched_at = now
        keys = PublicKeySet.from_jwks(self._fetch(self.url), max_token_lifetime=self._max_lifetime)
        self._keys = keys
        return keys

    def keys(self) -> VerificationKeys:
        with self._lock:
            now = self._clock.now()
            if self._keys is None:
                return self._load(now)
            if self._fetched_at is not None and now - self._fetched_at >= self._cache_for:
                try:
                    return self._load(now)
                except JwksError:
                    return self._keys
            return self._keys

    def refresh(self) -> VerificationKeys | None:
        with self._lock:
            now = self._clock.now()
            if self._fetched_at is not None and now - self._fetched_at < self._refetch_after:
                return None
            return self._load(now)
