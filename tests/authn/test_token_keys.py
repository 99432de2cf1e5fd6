"""Token signing keys in memory: RFC 7638 kids, the public JWKS, rotation windows and the
rules a key set keeps. Storage is tested in test_key_store, the live key set in test_key_ring."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from kyso.authn.keys import KeySet, SigningKey, jwk_thumbprint
from kyso.authn.tokens import TokenType, issue, verify
from kyso.clock import FrozenClock

T0 = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)

# RFC 7638 §3.1: the example RSA key and its thumbprint.
RFC7638_KEY = {
    "kty": "RSA", "e": "AQAB", "alg": "RS256", "kid": "2011-04-29",
    "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP"
         "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2Q"
         "vzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh"
         "6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
}
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def rfc7638(jwk: dict[str, Any]) -> str:
    """RFC 7638 §3 computed from the JWK alone: required members only, sorted, no spaces."""
    required = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "oct": ("k", "kty"),
                "OKP": ("crv", "kty", "x")}[jwk["kty"]]
    text = "{" + ",".join(f'"{m}":"{jwk[m]}"' for m in required) + "}"
    return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


def test_hand_thumbprint_matches_the_rfc_7638_example() -> None:
    assert rfc7638(RFC7638_KEY) == RFC7638_THUMBPRINT


def test_kid_is_the_rfc_7638_thumbprint_of_the_public_jwk(clock: FrozenClock) -> None:
    key = SigningKey.generate(clock)
    jwk = key.public_jwk()
    assert key.kid == jwk["kid"] == rfc7638(jwk) == jwk_thumbprint(key.public_key)


def test_jwks_holds_only_public_members_that_rebuild_the_key(clock: FrozenClock) -> None:
    keys = KeySet.create(clock).rotate(clock)
    jwks = json.loads(json.dumps(keys.public_jwks()))
    assert list(jwks) == ["keys"]
    assert [jwk["kid"] for jwk in jwks["keys"]] == [  # the signing key first
        keys.current.kid, keys.next.kid, keys.previous[0].kid]  # type: ignore[union-attr]
    for jwk, key in zip(jwks["keys"], keys, strict=True):
        assert set(jwk) == {"kty", "crv", "x", "y", "kid", "use", "alg"}
        assert (jwk["kty"], jwk["crv"], jwk["use"], jwk["alg"]) == ("EC", "P-256", "sig", "ES256")
        rebuilt = ec.EllipticCurvePublicNumbers(int.from_bytes(unb64(jwk["x"]), "big"),
                                                int.from_bytes(unb64(jwk["y"]), "big"),
                                                ec.SECP256R1()).public_key()
        assert rebuilt == key.public_key
    private = keys.current.private_key.private_numbers().private_value.to_bytes(32, "big")
    assert base64.urlsafe_b64encode(private).rstrip(b"=").decode() not in json.dumps(jwks)


def test_coordinates_keep_leading_zero_octets(clock: FrozenClock) -> None:
    scalar = 1
    while ec.derive_private_key(scalar, ec.SECP256R1()).public_key().public_numbers().x >= 2**248:
        scalar += 1
    key = SigningKey(ec.derive_private_key(scalar, ec.SECP256R1()), created_at=T0)
    jwk = key.public_jwk()
    assert len(unb64(jwk["x"])) == len(unb64(jwk["y"])) == 32
    assert unb64(jwk["x"])[0] == 0
    assert key.kid == rfc7638(jwk)


def test_signing_key_refuses_other_curves_and_naive_times() -> None:
    with pytest.raises(ValueError, match="P-256"):
        SigningKey(ec.generate_private_key(ec.SECP384R1()), created_at=T0)
    with pytest.raises(ValueError, match="timezone-aware"):
        SigningKey(ec.generate_private_key(ec.SECP256R1()), created_at=T0.replace(tzinfo=None))
    with pytest.raises(ValueError, match="retired before it was created"):
        SigningKey(ec.generate_private_key(ec.SECP256R1()), created_at=T0,
                   retired_at=T0 - dt.timedelta(seconds=1))


def test_signing_key_repr_shows_no_private_key(clock: FrozenClock) -> None:
    key = SigningKey.generate(clock)
    assert "private" not in repr(key)
    assert key.kid in repr(key)


def test_rotate_returns_a_new_set_and_leaves_the_old_one_alone(clock: FrozenClock) -> None:
    keys = KeySet.create(clock)
    clock.advance(dt.timedelta(days=1))
    rotated = keys.rotate(clock)
    assert keys.previous == ()
    assert keys.current.retired_at is None
    assert keys.next is not None
    assert rotated.next is not None
    assert rotated.current is keys.next  # published since the set was made, signs from now on
    assert rotated.next.created_at == clock.now()
    assert rotated.next.kid not in {k.kid for k in keys}
    (old,) = rotated.previous
    assert (old.kid, old.retired_at) == (keys.current.kid, clock.now())


def test_a_rotation_for_a_compromise_makes_two_new_keys_and_drops_every_other(
        clock: FrozenClock) -> None:
    keys = KeySet.create(clock).rotate(clock)
    clock.advance(dt.timedelta(minutes=5))
    rotated = keys.rotate(clock, compromised=True)
    assert rotated.current.created_at == clock.now()
    assert rotated.previous == ()
    assert len(rotated) == 2
    assert not {k.kid for k in rotated} & {k.kid for k in keys}
    for key in keys:
        assert rotated.verification_key(key.kid, clock.now()) is None
    assert keys.next is not None
    assert keys.next.kid not in {k.kid for k in rotated}


def test_the_next_key_is_published_and_verifies_but_never_signs(clock: FrozenClock) -> None:
    keys = KeySet.create(clock)
    assert keys.next is not None
    assert keys.next.kid in {jwk["kid"] for jwk in keys.public_jwks()["keys"]}
    assert keys.verification_key(keys.next.kid, T0) is keys.next  # a node that rotated first
    assert keys.to_dict()["next"] == keys.next.kid
    token = issue(keys, typ=TokenType.ID, issuer="iss", subject="s", audience="rp",
                  lifetime=dt.timedelta(minutes=5), clock=clock)
    assert verify(token, keys, typ=TokenType.ID, issuer="iss", audience="rp",
                  clock=clock).kid == keys.current.kid


def test_retired_key_verifies_until_its_last_token_expires(clock: FrozenClock) -> None:
    keys = KeySet.create(clock, max_token_lifetime=dt.timedelta(minutes=30))
    rotated = keys.rotate(clock)
    old = keys.current.kid
    assert rotated.verification_key(old, T0 + dt.timedelta(minutes=30, seconds=59)) is not None
    assert rotated.verification_key(old, T0 + dt.timedelta(minutes=31)) is None
    assert rotated.verification_key(old, T0 + dt.timedelta(minutes=30),
                                     leeway=dt.timedelta(0)) is None
    assert rotated.verification_key(rotated.current.kid, T0 + dt.timedelta(days=400)) is not None
    assert rotated.verification_key("no-such-kid", T0) is None


def test_rotation_and_pruning_drop_keys_past_their_window(clock: FrozenClock) -> None:
    keys = KeySet.create(clock).rotate(clock)
    clock.advance(dt.timedelta(minutes=30))
    keys = keys.rotate(clock)
    assert len(keys) == 4  # current, next, two retirees
    clock.advance(dt.timedelta(minutes=31, seconds=1))  # the first retiree's window is over
    assert len(keys.pruned(clock)) == 3
    assert len(keys.rotate(clock)) == 4  # current, next + the two still in their window


def test_key_set_refuses_inconsistent_contents(clock: FrozenClock) -> None:
    key = SigningKey.generate(clock)
    with pytest.raises(ValueError, match="current signing key is retired"):
        KeySet(key.retire(T0))
    with pytest.raises(ValueError, match="retirement time"):
        KeySet(key, (SigningKey.generate(clock),))
    with pytest.raises(ValueError, match="twice"):
        KeySet(key, (key.retire(T0),))
    with pytest.raises(ValueError, match="max_token_lifetime"):
        KeySet(key, max_token_lifetime=dt.timedelta(hours=25))
    with pytest.raises(ValueError, match="next signing key is retired"):
        KeySet(key, next=SigningKey.generate(clock).retire(T0))
    with pytest.raises(ValueError, match="twice"):
        KeySet(key, next=key)
