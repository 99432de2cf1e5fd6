"""The e-ID service's token signing keys: ES256 (EC P-256) keys named by their RFC 7638
thumbprint, a rotating key set and its public JWKS (RFC 7517).

A :class:`KeySet` holds one *current* key, which signs every new token, the *next* key, which
signs nothing yet, and the *previous* keys, which only verify: a key retired at ``t`` signed no
token after ``t``, and no token lives longer than ``max_token_lifetime``, so it is kept until
``t + max_token_lifetime`` (plus the largest clock-skew leeway a verifier may allow) and then
dropped. The next key is published in the JWKS from the moment it is made, and a rotation makes
it current: a relying party that cached the JWKS since the last rotation already holds the key
that signs after this one (as Auth0's and Okta's "next" signing keys). A rotation after a
compromise makes two keys nobody has seen and drops every other key at once. Nothing here imports
python-jose; :mod:`kyso.authn.tokens` signs and verifies with these keys.

This module is the in-memory model only: :mod:`kyso.authn.key_store` stores a key set
(encrypted key files, the index, rotation on disk) and :mod:`kyso.authn.key_ring` keeps a
running provider's set in step with its directory.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from kyso.clock import Clock

ALGORITHM = "ES256"
CURVE = "P-256"
DEFAULT_MAX_TOKEN_LIFETIME = dt.timedelta(hours=1)
LONGEST_TOKEN_LIFETIME = dt.timedelta(hours=24)  # NIST SP 800-63B-4: a session lasts ≤ 24 h
MAX_LEEWAY = dt.timedelta(seconds=60)  # the largest clock skew a verifier may allow
_COORDINATE_BYTES = 32


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _coordinates(public_key: ec.EllipticCurvePublicKey) -> tuple[str, str]:
    numbers = public_key.public_numbers()
    # RFC 7518 §6.2.1.2: x and y are the full 32 octets, leading zeros kept.
    return (b64url(numbers.x.to_bytes(_COORDINATE_BYTES, "big")),
            b64url(numbers.y.to_bytes(_COORDINATE_BYTES, "big")))


def _require_p256(key: object) -> None:
    if not isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) or not isinstance(
            key.curve, ec.SECP256R1):
        raise ValueError(f"ES256 needs an EC P-256 key, not {type(key).__name__}")


def jwk_thumbprint(public_key: ec.EllipticCurvePublicKey) -> str:
    """The RFC 7638 JWK thumbprint: base64url SHA-256 of the required members (crv, kty, x, y)
    in lexicographic order, without whitespace."""
    _require_p256(public_key)
    x, y = _coordinates(public_key)
    canonical = json.dumps({"crv": CURVE, "kty": "EC", "x": x, "y": y},
                           separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode("ascii")).digest())


def public_jwk(public_key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    """The RFC 7517 JWK of a P-256 verification key: public members only."""
    x, y = _coordinates(public_key)
    return {"kty": "EC", "crv": CURVE, "x": x, "y": y, "kid": jwk_thumbprint(public_key),
            "use": "sig", "alg": ALGORITHM}


def _aware(moment: dt.datetime, what: str) -> None:
    if moment.tzinfo is None:
        raise ValueError(f"{what} must be timezone-aware")


@dataclass(frozen=True, eq=False)
class SigningKey:
    """One ES256 key. ``kid`` is its RFC 7638 thumbprint; ``retired_at`` is set once a newer
    key has taken over signing (from then on it only verifies)."""

    private_key: ec.EllipticCurvePrivateKey = field(repr=False)
    created_at: dt.datetime
    retired_at: dt.datetime | None = None
    kid: str = field(init=False)

    def __post_init__(self) -> None:
        _require_p256(self.private_key)
        _aware(self.created_at, "created_at")
        if self.retired_at is not None:
            _aware(self.retired_at, "retired_at")
            if self.retired_at < self.created_at:
                raise ValueError("a key cannot be retired before it was created")
        object.__setattr__(self, "kid", jwk_thumbprint(self.private_key.public_key()))

    @classmethod
    def generate(cls, clock: Clock) -> SigningKey:
        return cls(ec.generate_private_key(ec.SECP256R1()), created_at=clock.now())

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.private_key.public_key()

    def public_jwk(self) -> dict[str, str]:
        return public_jwk(self.public_key)

    def retire(self, at: dt.datetime) -> SigningKey:
        return replace(self, retired_at=at)

    def verifies_until(self, max_token_lifetime: dt.timedelta) -> dt.datetime | None:
        """When the last token this key may have signed expires; ``None`` while it signs."""
        return None if self.retired_at is None else self.retired_at + max_token_lifetime

    def to_dict(self) -> dict[str, Any]:
        return {"kid": self.kid, "alg": ALGORITHM, "created_at": self.created_at.isoformat(),
                "retired_at": self.retired_at.isoformat() if self.retired_at else None}


@dataclass(frozen=True, eq=False)
class KeySet:
    """The current signing key, the next one (published, signs after the next rotation; None in
    a set stored before kyso made next keys) and the retired keys still needed to verify."""

    current: SigningKey
    previous: tuple[SigningKey, ...] = ()
    max_token_lifetime: dt.timedelta = DEFAULT_MAX_TOKEN_LIFETIME
    next: SigningKey | None = None

    def __post_init__(self) -> None:
        if not dt.timedelta(0) < self.max_token_lifetime <= LONGEST_TOKEN_LIFETIME:
            raise ValueError(f"max_token_lifetime must be positive and at most "
                             f"{LONGEST_TOKEN_LIFETIME}")
        if self.current.retired_at is not None:
            raise ValueError("the current signing key is retired")
        if self.next is not None and self.next.retired_at is not None:
            raise ValueError("the next signing key is retired")
        if any(key.retired_at is None for key in self.previous):
            raise ValueError("a previous key must have a retirement time")
        kids = [key.kid for key in self]
        if len(set(kids)) != len(kids):
            raise ValueError("a key appears twice in the key set")

    @classmethod
    def create(cls, clock: Clock, *,
               max_token_lifetime: dt.timedelta = DEFAULT_MAX_TOKEN_LIFETIME) -> KeySet:
        return cls(SigningKey.generate(clock), max_token_lifetime=max_token_lifetime,
                   next=SigningKey.generate(clock))

    def __iter__(self) -> Iterator[SigningKey]:
        """Current first (a careless relying party that takes the JWKS's first key takes the
        signing one), then next, then the previous keys."""
        yield self.current
        if self.next is not None:
            yield self.next
        yield from self.previous

    def __len__(self) -> int:
        return 1 + (self.next is not None) + len(self.previous)

    def rotate(self, clock: Clock, *, compromised: bool = False) -> KeySet:
        """A new key set whose next key (published since the last rotation) signs from now on,
        with a new next key; the old current key verifies the tokens it signed until they
        expire. Keys past their window are dropped. ``compromised`` (someone else may hold
        the keys): a new key signs, and every other key is dropped at once, so no token signed
        before verifies any more."""
        if compromised:
            return KeySet(SigningKey.generate(clock), (), self.max_token_lifetime,
                          next=SigningKey.generate(clock))
        now = clock.now()
        retired = (self.current.retire(now), *self.previous)
        signer = self.next if self.next is not None else SigningKey.generate(clock)
        return KeySet(signer, tuple(k for k in retired if self._usable(k, now)),
                      self.max_token_lifetime, next=SigningKey.generate(clock))

    def pruned(self, clock: Clock) -> KeySet:
        """This key set without the retired keys no token can need any more."""
        now = clock.now()
        return replace(self, previous=tuple(k for k in self.previous if self._usable(k, now)))

    def _usable(self, key: SigningKey, now: dt.datetime, leeway: dt.timedelta = MAX_LEEWAY) -> bool:
        until = key.verifies_until(self.max_token_lifetime)
        return until is None or now < until + leeway

    def verification_key(self, kid: str, now: dt.datetime,
                         leeway: dt.timedelta = MAX_LEEWAY) -> SigningKey | None:
        """The key named ``kid`` if it may still verify at ``now``, else ``None``. The next key
        verifies too: a token signed with it comes from a node that has already rotated."""
        for key in self:
            if key.kid == kid:
                return key if self._usable(key, now, leeway) else None
        return None

    def public_jwks(self) -> dict[str, list[dict[str, str]]]:
        """The RFC 7517 JWK Set served at the jwks_uri: every key that may verify, the next key
        included, public members only."""
        return {"keys": [key.public_jwk() for key in self]}

    def to_dict(self) -> dict[str, Any]:
        return {"current": self.current.kid, "next": self.next.kid if self.next else None,
                "keys": [key.to_dict() for key in self],
                "max_token_lifetime_seconds": int(self.max_token_lifetime.total_seconds())}
