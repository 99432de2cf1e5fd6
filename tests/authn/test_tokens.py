"""ES256 ID and access tokens: round trips, rotation, every known JWT attack refused with a
TokenError that leaks nothing, and PyJWT as an independent second verifier.

Forged and malformed tokens are built by hand (cryptography, hmac), never with python-jose,
which refuses to make most of them.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import importlib.util
import json
from collections.abc import Callable
from typing import Any

import jose.backends
import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from jose import jwt as jose_jwt
from jose.backends.ecdsa_backend import ECDSAECKey

import kyso.authn.tokens as tokens_module
from kyso.authn.keys import KeySet, public_jwk
from kyso.authn.tokens import MAX_TOKEN_BYTES, Claims, TokenType, issue, verify
from kyso.clock import FrozenClock
from kyso.errors import TokenError

T0 = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)
ISSUER = "https://vneid.thainguyen.gov.vn/realms/citizen"
AUDIENCE = "dichvucong-thainguyen"
ID_NUMBER = "019099012345"  # a 12-digit citizen ID number used as sub
LIFETIME = dt.timedelta(minutes=30)


# --- helpers ------------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def part(value: Any) -> str:
    return b64(value if isinstance(value, bytes) else json.dumps(value).encode("utf-8"))


def es_sign(key: ec.EllipticCurvePrivateKey, header: Any, payload: Any) -> str:
    """A compact JWS signed by hand with any EC key (raw r || s as RFC 7518 §3.4 says)."""
    signing_input = f"{part(header)}.{part(payload)}"
    digest = {256: hashes.SHA256(), 384: hashes.SHA384(), 521: hashes.SHA512()}[key.curve.key_size]
    r, s = decode_dss_signature(key.sign(signing_input.encode("ascii"), ec.ECDSA(digest)))
    size = (key.curve.key_size + 7) // 8
    return f"{signing_input}.{b64(r.to_bytes(size, 'big') + s.to_bytes(size, 'big'))}"


def hs_sign(secret: bytes, header: Any, payload: Any) -> str:
    signing_input = f"{part(header)}.{part(payload)}"
    mac = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def rs_sign(key: rsa.RSAPrivateKey, header: Any, payload: Any) -> str:
    signing_input = f"{part(header)}.{part(payload)}"
    sig = key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64(sig)}"


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture
def keys(clock: FrozenClock) -> KeySet:
    return KeySet.create(clock)


def header(keys: KeySet, typ: str = "JWT", **extra: Any) -> dict[str, Any]:
    return {"alg": "ES256", "kid": keys.current.kid, "typ": typ, **extra}


def claims(**changes: Any) -> dict[str, Any]:
    now = int(T0.timestamp())
    base: dict[str, Any] = {"iss": ISSUER, "sub": ID_NUMBER, "aud": AUDIENCE, "iat": now,
                            "exp": now + 600, "acr": "2"}
    base.update(changes)
    return {name: value for name, value in base.items() if value is not ...}


def ours(keys: KeySet, payload: Any = None, **head: Any) -> str:
    """Signed with our own current key: only the content is wrong."""
    return es_sign(keys.current.private_key, header(keys, **head),
                   claims() if payload is None else payload)


def check(token: str, keys: KeySet, clock: FrozenClock, typ: TokenType = TokenType.ID,
          **options: Any) -> Claims:
    return verify(token, keys, typ=typ, issuer=ISSUER, audience=AUDIENCE, clock=clock, **options)


def id_token(keys: KeySet, clock: FrozenClock, **extra: Any) -> str:
    return issue(keys, typ=TokenType.ID, issuer=ISSUER, subject=ID_NUMBER, audience=AUDIENCE,
                 lifetime=LIFETIME, clock=clock, claims={"acr": "2", **extra})


def access_token(keys: KeySet, clock: FrozenClock) -> str:
    return issue(keys, typ="at+jwt", issuer=ISSUER, subject=ID_NUMBER, audience=AUDIENCE,
                 lifetime=LIFETIME, clock=clock, claims={"client_id": AUDIENCE, "scope": "openid"})


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    head, body, _sig = token.split(".")
    return json.loads(unb64(head)), json.loads(unb64(body))


# --- round trips --------------------------------------------------------------------------


def test_id_token_round_trip_returns_the_verified_claims(keys: KeySet, clock: FrozenClock) -> None:
    token = id_token(keys, clock, nonce="n-0S6_WzA2Mj")
    got = check(token, keys, clock)
    assert (got.typ, got.kid, got.issuer, got.subject, got.audience) == (
        TokenType.ID, keys.current.kid, ISSUER, ID_NUMBER, (AUDIENCE,))
    assert (got.issued_at, got.expires_at) == (T0, T0 + LIFETIME)
    assert got.not_before is None
    assert got.jwt_id is None
    assert got.extra == {"acr": "2", "nonce": "n-0S6_WzA2Mj"}
    assert got.get("acr") == "2"
    assert got.to_dict()["sub"] == ID_NUMBER


def test_access_token_round_trip_has_nbf_and_a_unique_jti(keys: KeySet, clock: FrozenClock) -> None:
    first, second = access_token(keys, clock), access_token(keys, clock)
    got = check(first, keys, clock, typ=TokenType.ACCESS)
    assert got.typ is TokenType.ACCESS
    assert got.not_before == T0
    assert got.jwt_id
    assert got.jwt_id != check(second, keys, clock, typ=TokenType.ACCESS).jwt_id
    assert got.extra == {"client_id": AUDIENCE, "scope": "openid"}


def test_issued_header_is_exactly_alg_kid_typ(keys: KeySet, clock: FrozenClock) -> None:
    assert unverified(id_token(keys, clock))[0] == {"alg": "ES256", "kid": keys.current.kid,
                                                    "typ": "JWT"}
    assert unverified(access_token(keys, clock))[0]["typ"] == "at+jwt"


def test_audience_list_containing_ours_is_accepted(keys: KeySet, clock: FrozenClock) -> None:
    token = issue(keys, typ=TokenType.ID, issuer=ISSUER, subject=ID_NUMBER,
                  audience=["other-rp", AUDIENCE], lifetime=LIFETIME, clock=clock)
    assert check(token, keys, clock).audience == ("other-rp", AUDIENCE)
    assert check(token, keys, clock).to_dict()["aud"] == ["other-rp", AUDIENCE]


def test_claims_are_read_only_and_repr_hides_the_subject(keys: KeySet, clock: FrozenClock) -> None:
    got = check(id_token(keys, clock, amr=["pwd", "otp"]), keys, clock)
    assert got.extra["amr"] == ("pwd", "otp")
    with pytest.raises(TypeError):
        got.extra["acr"] = "1"  # type: ignore[index]
    assert ID_NUMBER not in repr(got)


@pytest.mark.parametrize("kind", [TokenType.ID, TokenType.ACCESS])
def test_pyjwt_verifies_our_tokens_with_our_published_jwks(keys: KeySet, clock: FrozenClock,
                                                           kind: TokenType) -> None:
    token = id_token(keys, clock) if kind is TokenType.ID else access_token(keys, clock)
    kid = pyjwt.get_unverified_header(token)["kid"]
    jwks = json.loads(json.dumps(keys.public_jwks()))  # as served over HTTP
    jwk = next(k for k in jwks["keys"] if k["kid"] == kid)
    # PyJWT reads the wall clock, so its time checks are off; ours ran against the frozen one.
    decoded = pyjwt.decode(token, key=pyjwt.PyJWK(jwk), algorithms=["ES256"], audience=AUDIENCE,
                           issuer=ISSUER, options={"verify_exp": False, "verify_iat": False,
                                                   "verify_nbf": False,
                                                   "require": ["exp", "iat", "iss", "aud", "sub"]})
    assert decoded == check(token, keys, clock, typ=kind).to_dict()
    assert pyjwt.get_unverified_header(token)["typ"] == kind.value


def test_pyjwt_rejects_a_tampered_token_as_well(keys: KeySet, clock: FrozenClock) -> None:
    head, _body, sig = id_token(keys, clock).split(".")
    forged = f"{head}.{part(claims(sub='079203000001'))}.{sig}"
    with pytest.raises(pyjwt.InvalidSignatureError):
        pyjwt.decode(forged, key=pyjwt.PyJWK(keys.current.public_jwk()), algorithms=["ES256"],
                     audience=AUDIENCE, options={"verify_exp": False, "verify_iat": False})
    with pytest.raises(TokenError, match="signature does not verify"):
        check(forged, keys, clock)


def test_at_hash_binds_an_id_token_to_its_access_token(keys: KeySet, clock: FrozenClock) -> None:
    access = access_token(keys, clock)
    at_hash = b64(hashlib.sha256(access.encode("ascii")).digest()[:16])
    token = id_token(keys, clock, at_hash=at_hash)
    assert check(token, keys, clock, access_token=access).extra["at_hash"] == at_hash
    with pytest.raises(TokenError, match="at_hash does not match"):
        check(token, keys, clock)
    with pytest.raises(TokenError, match="at_hash does not match"):
        check(token, keys, clock, access_token=access_token(keys, clock))


# --- rotation -----------------------------------------------------------------------------


def test_old_key_verifies_its_tokens_after_rotation_until_they_expire(
        keys: KeySet, clock: FrozenClock) -> None:
    old_token = id_token(keys, clock)
    clock.advance(dt.timedelta(minutes=10))
    rotated = keys.rotate(clock)
    new_token = id_token(rotated, clock)
    assert unverified(new_token)[0]["kid"] == rotated.current.kid != keys.current.kid
    assert check(old_token, rotated, clock).kid == keys.current.kid
    clock.advance(dt.timedelta(minutes=19))  # the old token still has a minute to live
    assert check(old_token, rotated, clock).subject == ID_NUMBER
    clock.advance(dt.timedelta(minutes=1))
    with pytest.raises(TokenError, match="expired"):
        check(old_token, rotated, clock, leeway=dt.timedelta(0))
    assert check(new_token, rotated, clock).kid == rotated.current.kid


def test_retired_key_is_refused_once_its_window_has_passed(keys: KeySet, clock: FrozenClock) -> None:
    old_token = id_token(keys, clock)
    rotated = keys.rotate(clock)
    clock.advance(keys.max_token_lifetime + dt.timedelta(seconds=61))
    with pytest.raises(TokenError, match="unknown or retired key"):
        check(old_token, rotated, clock)
    assert keys.current.kid not in {k["kid"] for k in rotated.rotate(clock).public_jwks()["keys"]}


def test_token_dated_after_its_key_was_retired_is_refused(keys: KeySet, clock: FrozenClock) -> None:
    rotated = keys.rotate(clock)
    clock.advance(dt.timedelta(minutes=5))
    late = claims(iat=int(clock.now().timestamp()), exp=int(clock.now().timestamp()) + 60)
    with pytest.raises(TokenError, match="after its signing key was retired"):
        check(es_sign(keys.current.private_key, header(keys), late), rotated, clock)


def test_token_dated_before_its_key_existed_is_refused(keys: KeySet, clock: FrozenClock) -> None:
    early = int((T0 - dt.timedelta(minutes=20)).timestamp())
    with pytest.raises(TokenError, match="before its signing key existed"):
        check(ours(keys, claims(iat=early, exp=early + 3000)), keys, clock)


def test_unknown_kid_is_refused(keys: KeySet, clock: FrozenClock) -> None:
    other = KeySet.create(clock)
    with pytest.raises(TokenError, match="unknown or retired key"):
        check(id_token(other, clock), keys, clock)


# --- attacks ------------------------------------------------------------------------------


def pem_and_der(keys: KeySet) -> list[bytes]:
    public = keys.current.public_key
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return [public.public_bytes(serialization.Encoding.PEM, spki),
            public.public_bytes(serialization.Encoding.DER, spki),
            public.public_bytes(serialization.Encoding.X962,
                                serialization.PublicFormat.UncompressedPoint),
            json.dumps(keys.current.public_jwk()).encode("ascii")]


def test_hs256_forged_with_our_public_key_as_hmac_secret_is_refused(
        keys: KeySet, clock: FrozenClock) -> None:
    for secret in pem_and_der(keys):
        for alg in ("HS256", "hs256", "HS512"):
            forged = hs_sign(secret, {"alg": alg, "kid": keys.current.kid, "typ": "JWT"}, claims())
            with pytest.raises(TokenError, match=r"symmetric algorithm .* refused"):
                check(forged, keys, clock)


@pytest.mark.parametrize("signature", ["hmac", "empty"])
def test_hs256_with_an_empty_key_is_refused(keys: KeySet, clock: FrozenClock,
                                            signature: str) -> None:
    """The "empty key" forgery: HMAC-SHA-256 under the empty secret (or no signature at all),
    naming our kid. Bare python-jose given an empty key accepts it; our verify never does."""
    forged = hs_sign(b"", {"alg": "HS256", "kid": keys.current.kid, "typ": "JWT"}, claims())
    if signature == "empty":
        forged = forged.rsplit(".", 1)[0] + "."
    else:
        accepted = jose_jwt.decode(forged, "", algorithms=["HS256"], options={
            "verify_exp": False, "verify_iat": False, "verify_aud": False})
        assert accepted["sub"] == ID_NUMBER
    with pytest.raises(TokenError, match="symmetric algorithm HS256 refused"):
        check(forged, keys, clock)


@pytest.mark.parametrize("signature", ["", "AA", b64(bytes(64))])
@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_unsigned_alg_none_token_is_refused(keys: KeySet, clock: FrozenClock, alg: str,
                                            signature: str) -> None:
    token = f"{part({'alg': alg, 'kid': keys.current.kid, 'typ': 'JWT'})}.{part(claims())}.{signature}"
    with pytest.raises(TokenError, match=r"alg none"):
        check(token, keys, clock)


def test_es384_and_es512_tokens_are_refused(keys: KeySet, clock: FrozenClock) -> None:
    for curve, alg in ((ec.SECP384R1(), "ES384"), (ec.SECP521R1(), "ES512")):
        token = es_sign(ec.generate_private_key(curve), {**header(keys), "alg": alg}, claims())
        with pytest.raises(TokenError, match=f"algorithm {alg} refused"):
            check(token, keys, clock)


def test_rs256_token_is_refused(keys: KeySet, clock: FrozenClock) -> None:
    token = rs_sign(rsa.generate_private_key(public_exponent=65537, key_size=2048),
                    {**header(keys), "alg": "RS256"}, claims())
    with pytest.raises(TokenError, match="algorithm RS256 refused"):
        check(token, keys, clock)


@pytest.mark.parametrize("alg", [None, 256, ["ES256"], "ES256 ", "es256", "EdDSA", "x" * 300])
def test_missing_or_odd_alg_is_refused(keys: KeySet, clock: FrozenClock, alg: Any) -> None:
    head = {**header(keys), "alg": alg} if alg is not None else {"kid": keys.current.kid,
                                                                  "typ": "JWT"}
    with pytest.raises(TokenError, match=r"alg|algorithm"):
        check(es_sign(keys.current.private_key, head, claims()), keys, clock)


_NO_KID = object()


@pytest.mark.parametrize("kid", [_NO_KID, "", 5, None, "x" * 300, ["kid"], {"kid": "x"}],
                         ids=["missing", "empty", "number", "null", "300 chars", "list", "object"])
def test_missing_empty_or_odd_kid_is_refused(keys: KeySet, clock: FrozenClock, kid: Any) -> None:
    """Signed with our own current key: only the kid is wrong, and nothing falls back to
    "the only key" or "the current key"."""
    assert check(ours(keys), keys, clock).kid == keys.current.kid  # the same token, our kid
    head = {name: value for name, value in header(keys).items() if name != "kid"}
    if kid is not _NO_KID:
        head["kid"] = kid
    with pytest.raises(TokenError, match=r"has no kid|unknown or retired key") as refused:
        check(es_sign(keys.current.private_key, head, claims()), keys, clock)
    assert "xxxxxxxx" not in str(refused.value)


@pytest.mark.parametrize("name", ["jwk", "jku", "x5u", "x5c", "crit"])
@pytest.mark.parametrize("kid_is_ours", [True, False])
def test_embedded_key_headers_are_refused(keys: KeySet, clock: FrozenClock, name: str,
                                          kid_is_ours: bool) -> None:
    attacker = ec.generate_private_key(ec.SECP256R1())
    jwk = public_jwk(attacker.public_key())
    value = {"jwk": jwk, "jku": "https://attacker.example/jwks.json",
             "x5u": "https://attacker.example/cert.pem", "x5c": ["MIIB"], "crit": ["exp"]}[name]
    head = {"alg": "ES256", "typ": "JWT", "kid": keys.current.kid if kid_is_ours else jwk["kid"],
            name: value}
    with pytest.raises(TokenError, match=f"header parameter {name} refused"):
        check(es_sign(attacker, head, claims()), keys, clock)


def test_unexpected_header_parameter_is_refused(keys: KeySet, clock: FrozenClock) -> None:
    with pytest.raises(TokenError, match="unexpected parameter"):
        check(ours(keys, cty="JWT"), keys, clock)


def test_id_token_is_refused_as_access_token_and_vice_versa(keys: KeySet, clock: FrozenClock) -> None:
    with pytest.raises(TokenError, match="token type is 'JWT', expected 'at\\+jwt'"):
        check(id_token(keys, clock), keys, clock, typ=TokenType.ACCESS)
    with pytest.raises(TokenError, match="token type is 'at\\+jwt', expected 'JWT'"):
        check(access_token(keys, clock), keys, clock, typ=TokenType.ID)


@pytest.mark.parametrize("typ", [None, "jwt", "application/at+jwt", "JWS", "", 1])
def test_missing_or_inexact_typ_is_refused(keys: KeySet, clock: FrozenClock, typ: Any) -> None:
    head = {"alg": "ES256", "kid": keys.current.kid} | ({} if typ is None else {"typ": typ})
    with pytest.raises(TokenError, match="token type is missing or unknown"):
        check(es_sign(keys.current.private_key, head, claims()), keys, clock)


@pytest.mark.parametrize("name", ["exp", "iat", "iss", "aud", "sub"])
def test_token_without_a_required_claim_is_refused(keys: KeySet, clock: FrozenClock,
                                                   name: str) -> None:
    with pytest.raises(TokenError, match=f"no {name} claim"):
        check(ours(keys, claims(**{name: ...})), keys, clock)


def test_access_token_without_jti_is_refused(keys: KeySet, clock: FrozenClock) -> None:
    with pytest.raises(TokenError, match="no jti claim"):
        check(ours(keys, claims(), typ="at+jwt"), keys, clock, typ=TokenType.ACCESS)


def test_expired_token_is_refused_and_leeway_is_bounded(keys: KeySet, clock: FrozenClock) -> None:
    token = id_token(keys, clock)
    clock.advance(LIFETIME + dt.timedelta(seconds=20))
    assert check(token, keys, clock, leeway=dt.timedelta(seconds=30)).subject == ID_NUMBER
    with pytest.raises(TokenError, match="token has expired"):
        check(token, keys, clock, leeway=dt.timedelta(0))
    with pytest.raises(ValueError, match="leeway"):
        check(token, keys, clock, leeway=dt.timedelta(seconds=61))


def test_token_issued_in_the_future_is_refused(keys: KeySet, clock: FrozenClock) -> None:
    token = id_token(keys, FrozenClock(T0 + dt.timedelta(seconds=90)))
    with pytest.raises(TokenError, match="issued in the future"):
        check(token, keys, clock)
    now = int(T0.timestamp())
    with pytest.raises(TokenError, match="issued in the future"):
        check(ours(keys, claims(iat=now + 61, exp=now + 600)), keys, clock,
              leeway=dt.timedelta(seconds=60))


def test_token_not_valid_yet_is_refused(keys: KeySet, clock: FrozenClock) -> None:
    now = int(T0.timestamp())
    with pytest.raises(TokenError, match=r"not valid yet \(nbf\)"):
        check(ours(keys, claims(nbf=now + 120)), keys, clock)


def test_token_living_longer_than_the_maximum_is_refused(keys: KeySet, clock: FrozenClock) -> None:
    now = int(T0.timestamp())
    with pytest.raises(TokenError, match="lifetime exceeds"):
        check(ours(keys, claims(exp=now + 3601)), keys, clock)
    with pytest.raises(TokenError, match="expires before it was issued"):
        check(ours(keys, claims(exp=now, iat=now + 10)), keys, clock)


@pytest.mark.parametrize("aud", ["other-rp", ["other-rp", "third-rp"], [], "", AUDIENCE.upper()])
def test_token_for_another_audience_is_refused(keys: KeySet, clock: FrozenClock, aud: Any) -> None:
    with pytest.raises(TokenError, match=r"audience|aud"):
        check(ours(keys, claims(aud=aud)), keys, clock)


@pytest.mark.parametrize("aud", [1, {"aud": AUDIENCE}, [AUDIENCE, 1], None])
def test_malformed_audience_is_refused(keys: KeySet, clock: FrozenClock, aud: Any) -> None:
    with pytest.raises(TokenError):
        check(ours(keys, claims(aud=aud)), keys, clock)


@pytest.mark.parametrize("iss", ["https://attacker.example", ISSUER + "/", "", None, [ISSUER]])
def test_token_from_another_issuer_is_refused(keys: KeySet, clock: FrozenClock, iss: Any) -> None:
    with pytest.raises(TokenError, match="issuer"):
        check(ours(keys, claims(iss=iss)), keys, clock)


@pytest.mark.parametrize("sub", ["", 19099012345, None, [ID_NUMBER]])
def test_malformed_subject_is_refused(keys: KeySet, clock: FrozenClock, sub: Any) -> None:
    with pytest.raises(TokenError):
        check(ours(keys, claims(sub=sub)), keys, clock)


def test_signature_by_another_es256_key_claiming_our_kid_is_refused(
        keys: KeySet, clock: FrozenClock) -> None:
    attacker = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(TokenError, match="signature does not verify"):
        check(es_sign(attacker, header(keys), claims()), keys, clock)


def test_oversized_token_is_refused_before_parsing(keys: KeySet, clock: FrozenClock) -> None:
    big = ours(keys, claims(pad="x" * MAX_TOKEN_BYTES))
    with pytest.raises(TokenError, match="larger than 8192 bytes"):
        check(big, keys, clock)
    with pytest.raises(TokenError, match="larger than"):
        check("." * (10 * MAX_TOKEN_BYTES), keys, clock)
    with pytest.raises(ValueError, match="over the 8192 limit"):
        id_token(keys, clock, pad="x" * MAX_TOKEN_BYTES)


def garbage(keys: KeySet) -> dict[str, Any]:
    good = ours(keys)
    head, body, sig = good.split(".")
    sign = keys.current.private_key
    return {
        "empty": "",
        "one part": "abc",
        "two parts": f"{head}.{body}",
        "four parts": f"{good}.{sig}",
        "five parts (JWE)": f"{head}.{body}.{sig}.{sig}.{sig}",
        "not base64": f"{head}.{body}!.{sig}",
        "padding": f"{head}=.{body}.{sig}",
        "whitespace": f"{head}.{body}.{sig}\n",
        "non-ascii": f"{head}.{body}.{sig}é",
        "standard base64 alphabet": f"{head}.{body.replace('-', '+').replace('_', '/')}+.{sig}",
        "non-canonical signature": f"{head}.{body}.{sig[:-1]}{'B' if sig[-1] == 'A' else 'A'}",
        "short signature": f"{head}.{body}.{b64(bytes(63))}",
        "DER signature": f"{head}.{body}.{b64(bytes(72))}",
        "empty header": f".{body}.{sig}",
        "non-JSON header": f"{b64(b'not json')}.{body}.{sig}",
        "non-UTF-8 header": f"{b64(bytes([0xff, 0xfe]))}.{body}.{sig}",
        "header is a list": f"{part(['ES256', keys.current.kid])}.{body}.{sig}",
        "header is a string": f"{part('ES256')}.{body}.{sig}",
        "header with duplicate alg": (
            b64(b'{"alg":"none","alg":"ES256","kid":"' + keys.current.kid.encode() + b'","typ":"JWT"}')
            + f".{body}.{sig}"),
        "deeply nested header": f"{b64(b'[' * 2000 + b']' * 2000)}.{body}.{sig}",
        "payload is a list": es_sign(sign, header(keys), [claims()]),
        "payload not JSON": es_sign(sign, header(keys), b"exp=1"),
        "payload with NaN": es_sign(sign, header(keys), b'{"exp":NaN}'),
        "exp overflows to infinity": es_sign(sign, header(keys), json.dumps(claims()).replace(
            '"exp": ', '"exp": 1e400, "x": ').encode()),
        "exp with 5000 digits": es_sign(sign, header(keys),
                                        b'{"exp":' + b"9" * 5000 + b"}"),
        "exp 10**30": ours(keys, claims(exp=10**30)),
        "exp 1e308": ours(keys, claims(exp=1e308)),
        "negative iat": ours(keys, claims(iat=-1)),
        "iat true": ours(keys, claims(iat=True)),
        "iat a string": ours(keys, claims(iat="1795399200")),
        "iat a list": ours(keys, claims(iat=[1795399200])),
        "nbf a string": ours(keys, claims(nbf="now")),
        "jti a number": ours(keys, claims(jti=7)),
    }


@pytest.mark.parametrize("case", list(garbage(KeySet.create(FrozenClock(T0)))))
def test_garbage_is_refused_with_a_token_error(keys: KeySet, clock: FrozenClock, case: str) -> None:
    with pytest.raises(TokenError):
        check(garbage(keys)[case], keys, clock)


def test_non_string_token_is_refused(keys: KeySet, clock: FrozenClock) -> None:
    with pytest.raises(TokenError, match="must be a string"):
        check(id_token(keys, clock).encode("ascii"), keys, clock)  # type: ignore[arg-type]


# --- errors leak nothing ------------------------------------------------------------------


def test_errors_never_contain_the_token_or_the_id_number(keys: KeySet, clock: FrozenClock) -> None:
    head, _body, sig = id_token(keys, clock).split(".")
    attacker = ec.generate_private_key(ec.SECP256R1())
    bad = {
        **garbage(keys),
        "expired": ours(keys, claims(exp=int(T0.timestamp()) - 3600, iat=int(T0.timestamp()) - 4000)),
        "wrong audience": ours(keys, claims(aud=ID_NUMBER)),
        "wrong issuer": ours(keys, claims(iss=ID_NUMBER)),
        "sub not a string": ours(keys, claims(sub=int(ID_NUMBER))),
        "tampered": f"{head}.{part(claims(acr='3'))}.{sig}",
        "another key": es_sign(attacker, header(keys), claims()),
        "kid is the ID number": ours(keys, kid=ID_NUMBER),
        "typ is the ID number": ours(keys, typ=ID_NUMBER),
        "alg is the ID number": es_sign(keys.current.private_key,
                                        {**header(keys), "alg": ID_NUMBER}, claims()),
        "header names the ID number": ours(keys, **{ID_NUMBER: 1}),
        "wrong type": access_token(keys, clock),
    }
    for case, token in bad.items():
        with pytest.raises(TokenError) as caught:
            check(token, keys, clock)
        message = str(caught.value)
        assert ID_NUMBER not in message, case
        assert all(piece not in message for piece in token.split(".") if len(piece) > 3), case
        error = caught.value  # no chained python-jose exception shows up in a traceback
        assert error.__cause__ is None
        assert (error.__context__ is None or error.__suppress_context__)


# --- issuing misuse and the backend guard ---------------------------------------------------


@pytest.mark.parametrize("name", ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"])
def test_issue_refuses_to_let_callers_set_registered_claims(keys: KeySet, clock: FrozenClock,
                                                            name: str) -> None:
    with pytest.raises(ValueError, match=f"claims {name} are set by issue"):
        id_token(keys, clock, **{name: 1})


@pytest.mark.parametrize("change", [
    {"typ": "JWS"}, {"typ": "none"}, {"issuer": ""}, {"subject": ""}, {"audience": []},
    {"audience": [""]}, {"lifetime": dt.timedelta(hours=2)}, {"lifetime": dt.timedelta(0)},
    {"claims": {"when": T0}}, {"claims": {"x": float("nan")}},
])
def test_issue_refuses_bad_arguments(keys: KeySet, clock: FrozenClock, change: dict[str, Any]) -> None:
    arguments: dict[str, Any] = {"typ": TokenType.ID, "issuer": ISSUER, "subject": ID_NUMBER,
                                 "audience": AUDIENCE, "lifetime": LIFETIME, "clock": clock}
    with pytest.raises(ValueError, match=r"typ|issuer|subject|audience|lifetime|JSON"):
        issue(keys, **(arguments | change))


def test_module_refuses_to_load_on_the_ecdsa_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jose.backends, "ECKey", ECDSAECKey)
    spec = importlib.util.spec_from_file_location("kyso_tokens_copy", tokens_module.__file__)
    assert spec is not None
    assert spec.loader is not None
    copy = importlib.util.module_from_spec(spec)
    load: Callable[[], None] = lambda: spec.loader.exec_module(copy)  # type: ignore[union-attr]  # noqa: E731
    with pytest.raises(ImportError, match="cryptography backend"):
        load()


# --- public keys only (relying parties) -------------------------------------------------------


def test_public_key_set_from_jwks_verifies_like_the_key_set(keys: KeySet,
                                                            clock: FrozenClock) -> None:
    from kyso.authn.rp_keys import PublicKeySet

    token = access_token(keys, clock)
    public = PublicKeySet.from_jwks(json.dumps(keys.public_jwks()))
    assert all(not hasattr(k, "private_key") for k in public.keys)
    ours_claims = verify(token, keys, typ="at+jwt", issuer=ISSUER, audience=AUDIENCE, clock=clock)
    theirs = verify(token, public, typ="at+jwt", issuer=ISSUER, audience=AUDIENCE, clock=clock)
    assert theirs.to_dict() == ours_claims.to_dict()
    clock.advance(LIFETIME + dt.timedelta(minutes=1))
    with pytest.raises(TokenError, match="expired"):
        verify(token, public, typ="at+jwt", issuer=ISSUER, audience=AUDIENCE, clock=clock)


def test_unknown_kid_is_an_unknown_key_error(keys: KeySet, clock: FrozenClock) -> None:
    token = id_token(KeySet.create(clock), clock)
    with pytest.raises(tokens_module.UnknownKeyError, match="unknown or retired key") as exc:
        check(token, keys, clock)
    assert isinstance(exc.value, TokenError)


def test_prepared_jose_key_is_built_once_per_key(keys: KeySet) -> None:
    first = tokens_module.prepared_key(keys.current)
    assert tokens_module.prepared_key(keys.current) is first
    assert tokens_module.prepared_key(KeySet.create(FrozenClock(T0)).current) is not first


@pytest.mark.parametrize("unused_bits", [1, 2, 8, 15])
def test_signature_spelt_with_unused_bits_set_is_refused(keys: KeySet, clock: FrozenClock,
                                                         unused_bits: int) -> None:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    head, body, sig = id_token(keys, clock).split(".")
    assert len(sig) == 86  # 64 bytes: the last character carries 4 unused bits
    variant = sig[:-1] + alphabet[alphabet.index(sig[-1]) | unused_bits]
    assert unb64(variant) == unb64(sig)  # the same bytes, spelt another way
    with pytest.raises(TokenError, match="not canonical base64url"):
        check(f"{head}.{body}.{variant}", keys, clock)
