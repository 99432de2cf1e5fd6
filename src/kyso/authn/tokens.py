"""ID and access tokens: ES256 JWTs signed and verified through a hardened python-jose.

This is the only module that imports python-jose. python-jose 3.5.0 (measured, docs/domain §3)
accepts an HS256 token forged with the public key when ``algorithms`` is omitted, accepts
tokens without ``exp`` or without ``aud`` even when an audience is given, ignores ``kid``,
never checks ``typ``, and silently falls back to the pure-Python ``ecdsa`` backend. So before
python-jose sees a token, :func:`verify` checks it itself:

- at most :data:`MAX_TOKEN_BYTES`, exactly three canonical base64url parts, a 64-byte
  signature, header and payload JSON objects without duplicate names or non-finite numbers;
- the header holds only ``alg``, ``typ`` and ``kid``: ``alg`` is ES256 (never ``none`` or
  HS*), ``typ`` is exactly ``JWT`` (ID token) or ``at+jwt`` (access token, RFC 9068), and the
  key is chosen by ``kid`` from our own :class:`~kyso.authn.keys.KeySet` — embedded keys and key
  URLs (``jwk``, ``jku``, ``x5u``, ``x5c``) and ``crit`` are refused;

then the signature is checked with that one public key by python-jose's cryptography-backed
ES256 key object (prepared once per key and cached), and the claims are checked here against
the injected clock: ``exp``, ``iat``, ``iss``, ``aud``, ``sub`` (and ``jti`` for access tokens)
are required, ``at_hash`` must match. python-jose's ``jwt.decode`` is not called: it would parse
the token a second time and repeat, more loosely (``datetime.now``, optional ``exp``/``aud``),
checks that are all made here; dropping it doubled the verification rate (bench/token_verify.py).

The keys come from a :class:`~kyso.authn.keys.KeySet` (the provider's own, private keys) or
from anything with the same ``verification_key`` method over public keys only
(:class:`VerificationKeys`, e.g. :class:`kyso.authn.rp_keys.PublicKeySet` built from a JWKS).

Every refusal is a :class:`~kyso.errors.TokenError` whose message names the problem and never
echoes the token or a claim value (the subject is a citizen's ID number).
"""

from __future__ import annotations

import binascii
import datetime as dt
import hashlib
import json
import math
import re
import secrets
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric import ec
from jose import jwt as jose_jwt
from jose.backends import ECKey as _JoseECKey
from jose.backends.cryptography_backend import CryptographyECKey

from kyso.authn.keys import ALGORITHM, MAX_LEEWAY, KeySet, b64url
from kyso.clock import Clock
from kyso.errors import TokenError

# Fail at import, not at the first token, if python-jose would use the ``ecdsa`` package
# (CVE-2024-23342, no fix planned) instead of cryptography.
if _JoseECKey is not CryptographyECKey:
    raise ImportError("python-jose is not using the cryptography backend; refusing to load")

MAX_TOKEN_BYTES = 8 * 1024
DEFAULT_LEEWAY = dt.timedelta(seconds=30)
_SIGNATURE_BYTES = 64  # ES256: r || s, 32 octets each (RFC 7518 §3.4)
_LATEST_TIME = 253_402_300_800  # 10000-01-01T00:00:00Z: later NumericDates are nonsense
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_ANY_LAST = frozenset(_B64_ALPHABET)
# The last character of a 2- or 3-character final group carries 4 or 2 unused bits: zero.
_CANONICAL_LAST = {2: frozenset(_B64_ALPHABET[::16]), 3: frozenset(_B64_ALPHABET[::4])}
_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_HEADER_NAMES = frozenset({"alg", "typ", "kid"})
_EMBEDDED_KEY_HEADERS = ("jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256", "crit")
_KNOWN_ALGORITHMS = frozenset({"none", "HS256", "HS384", "HS512", "RS256", "RS384", "RS512",
                               "PS256", "PS384", "PS512", "ES384", "ES512", "ES256K", "EdDSA"})
_REGISTERED = frozenset({"iss", "sub", "aud", "exp", "iat", "nbf", "jti"})
_REQUIRED_ID = ("exp", "iat", "iss", "aud", "sub")
_REQUIRED_ACCESS = (*_REQUIRED_ID, "jti")


class UnknownKeyError(TokenError):
    """The token names a key (``kid``) the key set does not hold, or no longer trusts. A relying
    party with a remote JWKS may refetch it once (key rotation) and try again."""


class VerificationKey(Protocol):
    """One verification key: :class:`~kyso.authn.keys.SigningKey` or a public-only key."""

    @property
    def kid(self) -> str: ...

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey: ...

    @property
    def created_at(self) -> dt.datetime | None: ...

    @property
    def retired_at(self) -> dt.datetime | None: ...


class VerificationKeys(Protocol):
    """What :func:`verify` needs from a key set: the key of a ``kid`` usable at ``now``, and the
    longest lifetime a token of this issuer may have."""

    @property
    def max_token_lifetime(self) -> dt.timedelta: ...

    def verification_key(self, kid: str, now: dt.datetime,
                         leeway: dt.timedelta = MAX_LEEWAY) -> VerificationKey | None: ...


class TokenType(StrEnum):
    """The ``typ`` header, one per token kind (RFC 8725 §3.11 explicit typing)."""

    ID = "JWT"  # OpenID Connect ID token
    ACCESS = "at+jwt"  # RFC 9068 access token


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


def _moment(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


@dataclass(frozen=True)
class Claims:
    """A verified token's claims. ``subject`` (a citizen's ID number) and the other claims are
    left out of ``repr``; :meth:`to_dict` returns the full claim set and is not for logs."""

    typ: TokenType
    kid: str
    issuer: str
    subject: str = field(repr=False)
    audience: tuple[str, ...]
    issued_at: dt.datetime
    expires_at: dt.datetime
    not_before: dt.datetime | None
    jwt_id: str | None
    extra: Mapping[str, Any] = field(repr=False)  # every other claim, read-only

    def get(self, name: str, default: Any = None) -> Any:
        return self.to_dict().get(name, default)

    def to_dict(self) -> dict[str, Any]:
        claims: dict[str, Any] = _thaw(self.extra)
        claims.update(iss=self.issuer, sub=self.subject,
                      aud=self.audience[0] if len(self.audience) == 1 else list(self.audience),
                      iat=int(self.issued_at.timestamp()), exp=int(self.expires_at.timestamp()))
        if self.not_before is not None:
            claims["nbf"] = int(self.not_before.timestamp())
        if self.jwt_id is not None:
            claims["jti"] = self.jwt_id
        return claims


# --- issuing --------------------------------------------------------------------------------


def _token_type(typ: TokenType | str) -> TokenType:
    try:
        return TokenType(typ)
    except ValueError:
        raise ValueError("typ must be 'JWT' (ID token) or 'at+jwt' (access token)") from None


def issue(keys: KeySet, *, typ: TokenType | str, issuer: str, subject: str,
          audience: str | Sequence[str], lifetime: dt.timedelta, clock: Clock,
          claims: Mapping[str, Any] | None = None) -> str:
    """Sign a token with the key set's current key: header ``{alg: ES256, kid, typ}``; ``iat``
    and ``exp`` from the clock; access tokens also get ``nbf`` and a random ``jti``.

    ``claims`` adds other claims (``acr``, ``nonce``, ``client_id``…); the registered ones are
    set here and may not be passed. Misuse (bad ``typ``, empty names, a lifetime beyond the key
    set's maximum, claims that are not JSON or a token over :data:`MAX_TOKEN_BYTES`) raises
    ValueError."""
    kind = _token_type(typ)
    if not isinstance(issuer, str) or not issuer:
        raise ValueError("issuer must be a non-empty string")
    if not isinstance(subject, str) or not subject:
        raise ValueError("subject must be a non-empty string")
    audiences = [audience] if isinstance(audience, str) else list(audience)
    if not audiences or not all(isinstance(a, str) and a for a in audiences):
        raise ValueError("audience must be a non-empty string or list of non-empty strings")
    if not dt.timedelta(seconds=1) <= lifetime <= keys.max_token_lifetime:
        raise ValueError(f"lifetime must be between 1 s and the key set's maximum "
                         f"({keys.max_token_lifetime})")
    extra = dict(claims or {})
    reserved = sorted(_REGISTERED & extra.keys())
    if reserved:
        raise ValueError(f"claims {', '.join(reserved)} are set by issue(), not by the caller")
    now = int(clock.now().timestamp())
    payload: dict[str, Any] = {**extra, "iss": issuer, "sub": subject,
                               "aud": audiences[0] if len(audiences) == 1 else audiences,
                               "iat": now, "exp": now + int(lifetime.total_seconds())}
    if kind is TokenType.ACCESS:
        payload["nbf"] = now
        payload["jti"] = secrets.token_urlsafe(16)
    try:
        json.dumps(payload, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"claims must be plain JSON values: {exc}") from None
    signer = keys.current
    token: str = jose_jwt.encode(payload, CryptographyECKey(signer.private_key, ALGORITHM),
                                 algorithm=ALGORITHM, headers={"kid": signer.kid, "typ": kind.value})
    if len(token) > MAX_TOKEN_BYTES:
        raise ValueError(f"the token would be {len(token)} bytes, over the {MAX_TOKEN_BYTES} limit")
    return token


# --- verifying ------------------------------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate member name")
    return result


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def _not_a_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# Built once: json.loads(..., hooks) would build a new decoder for every part of every token.
_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_float=_finite,
                            parse_constant=_not_a_constant)


def _b64url_part(part: str, what: str) -> bytes:
    if not _B64URL.fullmatch(part) or len(part) % 4 == 1:
        raise TokenError(f"token {what} is not base64url")
    # Unused trailing bits set: the same bytes spelt another way (RFC 4648 §3.5).
    if part[-1] not in _CANONICAL_LAST.get(len(part) % 4, _ANY_LAST):
        raise TokenError(f"token {what} is not canonical base64url")
    try:
        return binascii.a2b_base64(part.encode("ascii").translate(_TO_STANDARD)
                                   + b"=" * (-len(part) % 4))
    except binascii.Error:
        raise TokenError(f"token {what} is not base64url") from None


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = _DECODER.decode(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise TokenError(f"token {what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise TokenError(f"token {what} is not a JSON object")
    return value


def _check_header(header: Mapping[str, Any], expected: TokenType) -> str:
    embedded = [name for name in _EMBEDDED_KEY_HEADERS if name in header]
    if embedded:
        raise TokenError(f"token header parameter {', '.join(embedded)} refused: keys come only "
                         f"from our own key set")
    if not header.keys() <= _HEADER_NAMES:
        raise TokenError(f"token header has {len(header.keys() - _HEADER_NAMES)} unexpected "
                         f"parameter(s); only alg, typ and kid are allowed")
    alg = header.get("alg")
    if alg != ALGORITHM:
        if not isinstance(alg, str):
            raise TokenError("token header has no algorithm (alg)")
        if alg.lower() == "none":
            raise TokenError("unsigned token (alg none) refused")
        if alg.upper().startswith("HS"):
            raise TokenError(f"symmetric algorithm {alg if alg in _KNOWN_ALGORITHMS else 'HS*'} "
                             f"refused: only ES256")
        named = f" {alg}" if alg in _KNOWN_ALGORITHMS else ""
        raise TokenError(f"algorithm{named} refused: only ES256")
    typ = header.get("typ")
    if typ != expected.value:
        named = f" is {typ!r}" if typ in tuple(TokenType) else " is missing or unknown"
        raise TokenError(f"token type{named}, expected {expected.value!r}")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise TokenError("token header has no kid")
    return kid


def _numeric_date(claims: Mapping[str, Any], name: str) -> float:
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            0 <= value < _LATEST_TIME):
        raise TokenError(f"claim {name} is not a valid NumericDate")
    return float(value)


_PREPARED: weakref.WeakKeyDictionary[Any, CryptographyECKey] = weakref.WeakKeyDictionary()


def prepared_key(key: VerificationKey) -> CryptographyECKey:
    """python-jose's ES256 key object for ``key``, built once per key object and cached (a
    retired or dropped key leaves the cache with its key object)."""
    try:
        return _PREPARED[key]
    except KeyError:
        pass
    public = key.public_key
    if not isinstance(public, ec.EllipticCurvePublicKey) or not isinstance(public.curve,
                                                                          ec.SECP256R1):
        raise TokenError("the verification key is not an EC P-256 key")
    prepared = CryptographyECKey(public, ALGORITHM)
    _PREPARED[key] = prepared
    return prepared


def verify(token: str, keys: KeySet | VerificationKeys, *, typ: TokenType | str, issuer: str,
           audience: str, clock: Clock, leeway: dt.timedelta = DEFAULT_LEEWAY,
           access_token: str | None = None) -> Claims:
    """Verify a token of kind ``typ`` issued by ``issuer`` for ``audience`` with a key from
    ``keys`` (a :class:`KeySet`, or public keys only); raise :class:`TokenError` naming the
    first problem found (:class:`UnknownKeyError` for a ``kid`` not in ``keys``).

    ``leeway`` (at most 60 s) absorbs clock skew for ``exp``, ``iat`` and ``nbf``. An ID token
    carrying ``at_hash`` verifies only together with its ``access_token``."""
    expected = _token_type(typ)
    if not dt.timedelta(0) <= leeway <= MAX_LEEWAY:
        raise ValueError(f"leeway must be between 0 and {MAX_LEEWAY}")
    if not isinstance(issuer, str) or not issuer or not isinstance(audience, str) or not audience:
        raise ValueError("issuer and audience must be non-empty strings")
    now = clock.now()

    # 1. Shape, before any parser sees it.
    if not isinstance(token, str):
        raise TokenError("token must be a string")
    if len(token) > MAX_TOKEN_BYTES:
        raise TokenError(f"token is larger than {MAX_TOKEN_BYTES} bytes")
    if not token.isascii():
        raise TokenError("token is not ASCII")
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError(f"token is not a compact JWS: {len(parts)} part(s) instead of 3")
    header = _json_object(_b64url_part(parts[0], "header"), "header")

    # 2. Header, and the one key that may have signed it.
    kid = _check_header(header, expected)
    payload_bytes = _b64url_part(parts[1], "payload")
    signature = _b64url_part(parts[2], "signature")
    if len(signature) != _SIGNATURE_BYTES:
        raise TokenError("token signature is not a 64-byte ES256 signature")
    key = keys.verification_key(kid, now, leeway)
    if key is None:
        raise UnknownKeyError("token is signed with an unknown or retired key (kid)")

    # 3. The signature, with that key only (python-jose's cryptography-backed ES256 key).
    try:
        valid = prepared_key(key).verify(f"{parts[0]}.{parts[1]}".encode("ascii"), signature)
    except Exception:  # fail closed: anything the backend trips over is a refusal
        valid = False
    if not valid:
        raise TokenError("token signature does not verify")

    # 4. The claims, only once the signature holds.
    claims = _json_object(payload_bytes, "payload")
    verified = _check_claims(claims, expected, kid, key, keys.max_token_lifetime, issuer,
                             audience, now, leeway)
    if "at_hash" in claims and (access_token is None or claims["at_hash"] != b64url(
            hashlib.sha256(access_token.encode("ascii", "replace")).digest()[:16])):
        raise TokenError("token at_hash does not match the access token it came with")
    return verified


def _check_claims(claims: dict[str, Any], expected: TokenType, kid: str, key: VerificationKey,
                  max_lifetime: dt.timedelta, issuer: str, audience: str, now: dt.datetime,
                  leeway: dt.timedelta) -> Claims:
    required = _REQUIRED_ACCESS if expected is TokenType.ACCESS else _REQUIRED_ID
    for name in required:
        if name not in claims:
            raise TokenError(f"token has no {name} claim")
    exp, iat = _numeric_date(claims, "exp"), _numeric_date(claims, "iat")
    nbf = _numeric_date(claims, "nbf") if "nbf" in claims else None
    if claims["iss"] != issuer:
        raise TokenError("token issuer is not the expected issuer")
    aud = claims["aud"]
    audiences = (aud,) if isinstance(aud, str) else tuple(aud) if isinstance(aud, list) else ()
    if not audiences or not all(isinstance(a, str) for a in audiences):
        raise TokenError("claim aud is not a string or a list of strings")
    if audience not in audiences:
        raise TokenError("token is not meant for this audience")
    sub = claims["sub"]
    if not isinstance(sub, str) or not sub:
        raise TokenError("claim sub is not a non-empty string")
    jti = claims.get("jti")
    if jti is not None and (not isinstance(jti, str) or not jti):
        raise TokenError("claim jti is not a non-empty string")

    t, skew = now.timestamp(), leeway.total_seconds()
    if t >= exp + skew:
        raise TokenError("token has expired")
    if iat > t + skew:
        raise TokenError("token is issued in the future (iat)")
    if nbf is not None and nbf > t + skew:
        raise TokenError("token is not valid yet (nbf)")
    if exp <= iat:
        raise TokenError("token expires before it was issued")
    if exp - iat > max_lifetime.total_seconds():
        raise TokenError("token lifetime exceeds the maximum this issuer grants")
    created, retired = key.created_at, key.retired_at
    if created is not None and iat < created.timestamp() - skew:
        raise TokenError("token claims to be issued before its signing key existed")
    if retired is not None and iat > retired.timestamp() + skew:
        raise TokenError("token is issued after its signing key was retired")

    extra = {name: value for name, value in claims.items() if name not in _REGISTERED}
    return Claims(typ=expected, kid=kid, issuer=issuer, subject=sub, audience=audiences,
                  issued_at=_moment(iat), expires_at=_moment(exp),
                  not_before=None if nbf is None else _moment(nbf), jwt_id=jti,
                  extra=_freeze(extra))
