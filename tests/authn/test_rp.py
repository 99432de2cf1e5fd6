"""The relying-party helper (kyso.authn.rp, rp_keys): every known token attack refused through the
verifier a backend service uses, the level taken only from acr, JWKS sources (document, file,
URL with rotation), and the FastAPI dependency's RFC 6750 / RFC 9470 answers."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import http.server
import json
import socket
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import introspect_support
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from fastapi import Depends, FastAPI

from conftest import audit_events, audit_text
from kyso.authn.acr import ACR_LEVEL_1, ACR_LEVEL_2, EIDAS_SUBSTANTIAL
from kyso.authn.keys import KeySet, public_jwk
from kyso.authn.oidc import Provider
from kyso.authn.registry import Level
from kyso.authn.rp import (
    InsufficientLevelError,
    IntrospectionClient,
    IntrospectionError,
    RelyingParty,
    TokenVerifier,
    VerifiedToken,
    require_token,
)
from kyso.authn.rp_keys import JwksError, PublicKeySet, RemoteJwks, check_jwks_url
from kyso.authn.tokens import MAX_TOKEN_BYTES, TokenType, UnknownKeyError, issue
from kyso.clock import FrozenClock
from kyso.context import Kyso
from kyso.errors import TokenError
from kyso.server.app import create_app

with warnings.catch_warnings():  # starlette asks for httpx2; httpx is what the venv has
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

T0 = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)
ISSUER = "https://id.thainguyen.gov.vn"
API = "hotich-api"
CLIENT = "dichvucong-portal"
SUBJECT = "u-Qm9uZ1RoYW5oTmdvYw"
ID_NUMBER = "019099012345"


# --- helpers ------------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def part(value: Any) -> str:
    return b64(value if isinstance(value, bytes) else json.dumps(value).encode("utf-8"))


def es_sign(key: ec.EllipticCurvePrivateKey, header: Any, payload: Any) -> str:
    signing_input = f"{part(header)}.{part(payload)}"
    r, s = decode_dss_signature(key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256())))
    return f"{signing_input}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def hs_sign(secret: bytes, header: Any, payload: Any) -> str:
    signing_input = f"{part(header)}.{part(payload)}"
    return f"{signing_input}.{b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"


@pytest.fixture
def keys(clock: FrozenClock) -> KeySet:
    return KeySet.create(clock)


@pytest.fixture
def rp(keys: KeySet, clock: FrozenClock) -> TokenVerifier:
    return TokenVerifier(ISSUER, keys, clock)


def access(keys: KeySet, clock: FrozenClock, *, acr: Any = ACR_LEVEL_2,
           lifetime: dt.timedelta = dt.timedelta(minutes=30), **extra: Any) -> str:
    claims = {"client_id": CLIENT, "scope": "openid hotich", "acr": acr, "amr": ["pwd", "otp"],
              "auth_time": int(clock.now().timestamp()), **extra}
    return issue(keys, typ=TokenType.ACCESS, issuer=ISSUER, subject=SUBJECT,
                 audience=[API, "other-api"], lifetime=lifetime, clock=clock,
                 claims={k: v for k, v in claims.items() if v is not ...})


def payload(**changes: Any) -> dict[str, Any]:
    now = int(T0.timestamp())
    base: dict[str, Any] = {"iss": ISSUER, "sub": SUBJECT, "aud": [API], "iat": now, "nbf": now,
                            "exp": now + 600, "jti": "j-1", "client_id": CLIENT,
                            "scope": "openid", "acr": ACR_LEVEL_2, "auth_time": now}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


def forged(keys: KeySet, body: dict[str, Any] | None = None, **head: Any) -> str:
    """Signed with our own key: only the content is wrong."""
    header = {"alg": "ES256", "typ": "at+jwt", "kid": keys.current.kid, **head}
    return es_sign(keys.current.private_key, {k: v for k, v in header.items() if v is not ...},
                   payload() if body is None else body)


# --- what a good token gives ----------------------------------------------------------------


def test_level2_access_token_gives_subject_level_and_factors(rp: TokenVerifier, keys: KeySet,
                                                             clock: FrozenClock) -> None:
    result = rp.verify(access(keys, clock), audience=API, min_level=Level.TWO)
    assert isinstance(result, VerifiedToken)
    assert (result.subject, result.level, result.acr) == (SUBJECT, Level.TWO, ACR_LEVEL_2)
    assert result.amr == ("pwd", "otp")
    assert result.auth_time == T0
    assert result.audience == (API, "other-api")
    assert (result.client_id, result.scope) == (CLIENT, ("openid", "hotich"))
    assert result.expires_at == T0 + dt.timedelta(minutes=30)
    assert result.claims.get("sub") == SUBJECT
    assert result.claims.get("scope") == "openid hotich"
    data = result.to_dict()
    assert data["level"] == 2
    assert data["token_type"] == "access"
    assert json.loads(json.dumps(data)) == data
    assert SUBJECT not in repr(result)


def test_relying_party_is_the_same_verifier() -> None:
    assert RelyingParty is TokenVerifier


def test_eidas_substantial_alias_counts_as_level_2(rp: TokenVerifier, keys: KeySet,
                                                   clock: FrozenClock) -> None:
    result = rp.verify(access(keys, clock, acr=EIDAS_SUBSTANTIAL), audience=API, min_level=2)
    assert result.level is Level.TWO


def test_id_token_verifies_as_id_token_for_its_client(rp: TokenVerifier, keys: KeySet,
                                                      clock: FrozenClock) -> None:
    token = issue(keys, typ=TokenType.ID, issuer=ISSUER, subject=SUBJECT, audience=CLIENT,
                  lifetime=dt.timedelta(minutes=5), clock=clock, claims={"acr": ACR_LEVEL_1})
    result = rp.verify(token, audience=CLIENT, token_type="JWT")
    assert result.level is Level.ONE
    assert result.client_id is None


def test_id_token_with_at_hash_verifies_only_with_its_access_token(
        rp: TokenVerifier, keys: KeySet, clock: FrozenClock) -> None:
    at = access(keys, clock)
    at_hash = b64(hashlib.sha256(at.encode()).digest()[:16])
    token = issue(keys, typ=TokenType.ID, issuer=ISSUER, subject=SUBJECT, audience=CLIENT,
                  lifetime=dt.timedelta(minutes=5), clock=clock,
                  claims={"acr": ACR_LEVEL_2, "at_hash": at_hash, "azp": CLIENT})
    assert rp.verify(token, audience=CLIENT, token_type="JWT", access_token=at).level == 2
    with pytest.raises(TokenError, match="at_hash"):
        rp.verify(token, audience=CLIENT, token_type="JWT")
    with pytest.raises(TokenError, match="at_hash"):
        rp.verify(token, audience=CLIENT, token_type="JWT", access_token=access(keys, clock))


def test_token_of_a_rotated_out_key_still_verifies_until_it_expires(
        keys: KeySet, clock: FrozenClock) -> None:
    token = access(keys, clock)
    clock.advance(dt.timedelta(minutes=1))
    rotated = keys.rotate(clock)
    assert TokenVerifier(ISSUER, rotated, clock).verify(token, audience=API).level is Level.TWO


# --- level and freshness: only from the token ------------------------------------------------


def test_level1_token_for_level2_api_asks_for_step_up(rp: TokenVerifier, keys: KeySet,
                                                      clock: FrozenClock) -> None:
    with pytest.raises(InsufficientLevelError, match="level 1; level 2 is required") as exc:
        rp.verify(access(keys, clock, acr=ACR_LEVEL_1), audience=API, min_level=Level.TWO)
    assert exc.value.required_acr == ACR_LEVEL_2
    assert isinstance(exc.value, TokenError)
    assert 'error="insufficient_user_authentication"' in exc.value.www_authenticate
    assert f'acr_values="{ACR_LEVEL_2}"' in exc.value.www_authenticate


@pytest.mark.parametrize("acr", ["urn:vn:vneid:loa:3", "2", "", 2, None, ["urn:vn:vneid:loa:2"]])
def test_unknown_or_malformed_acr_is_refused_never_defaulted(rp: TokenVerifier, keys: KeySet,
                                                             clock: FrozenClock, acr: Any) -> None:
    with pytest.raises(TokenError, match="acr") as exc:
        rp.verify(access(keys, clock, acr=acr), audience=API)
    assert not isinstance(exc.value, InsufficientLevelError)


def test_token_without_acr_is_refused(rp: TokenVerifier, keys: KeySet, clock: FrozenClock) -> None:
    with pytest.raises(TokenError, match="no acr"):
        rp.verify(access(keys, clock, acr=...), audience=API)


def test_old_login_fails_max_age_with_a_step_up_challenge(rp: TokenVerifier, keys: KeySet,
                                                          clock: FrozenClock) -> None:
    token = access(keys, clock)
    clock.advance(dt.timedelta(minutes=10))
    assert rp.verify(token, audience=API, max_age=900).level is Level.TWO
    with pytest.raises(InsufficientLevelError, match="older than 300 s") as exc:
        rp.verify(token, audience=API, max_age=300)
    assert 'max_age="300"' in exc.value.www_authenticate


def test_max_age_without_auth_time_is_refused(rp: TokenVerifier, keys: KeySet,
                                              clock: FrozenClock) -> None:
    with pytest.raises(InsufficientLevelError, match="no auth_time"):
        rp.verify(access(keys, clock, auth_time=...), audience=API, max_age=300)


@pytest.mark.parametrize(("claim", "value", "message"), [
    ("amr", "pwd", "amr"), ("amr", [1], "amr"), ("scope", ["openid"], "scope"),
    ("client_id", 7, "client_id"), ("client_id", ..., "client_id"), ("auth_time", "yesterday",
                                                                        "auth_time"),
    ("auth_time", int(T0.timestamp()) + 3600, "auth_time is after"),
])
def test_registered_claims_of_the_wrong_type_are_refused(rp: TokenVerifier, keys: KeySet,
                                                         claim: str, value: Any,
                                                         message: str) -> None:
    with pytest.raises(TokenError, match=message):
        rp.verify(forged(keys, payload(**{claim: value})), audience=API)


# --- attacks --------------------------------------------------------------------------------


@pytest.mark.parametrize(("token_of", "message"), [
    (lambda k: f"{part({'alg': 'none', 'typ': 'at+jwt'})}.{part(payload())}.", "alg none"),
    (lambda k: hs_sign(k.current.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        {"alg": "HS256", "typ": "at+jwt", "kid": k.current.kid}, payload()), "HS256"),
    (lambda k: hs_sign(b"", {"alg": "HS256", "typ": "at+jwt"}, payload()), "HS256"),
    (lambda k: forged(k, kid="a" * 43), "unknown or retired key"),
    (lambda k: forged(k, jku="https://evil.example/jwks"), "jku"),
    (lambda k: forged(k, jwk=public_jwk(ec.generate_private_key(ec.SECP256R1()).public_key())),
     "jwk"),
    (lambda k: forged(k, payload(exp=int(T0.timestamp()) - 60)), "expired"),
    (lambda k: forged(k, payload(nbf=int(T0.timestamp()) + 600)), "not valid yet"),
    (lambda k: forged(k, payload(aud=["another-api"])), "audience"),
    (lambda k: forged(k, payload(iss="https://evil.example")), "issuer"),
    (lambda k: forged(k, payload(exp=...)), "no exp"),
    (lambda k: forged(k, typ="JWT"), "token type"),
    (lambda k: forged(k, typ=...), "token type"),
])
def test_forged_and_wrong_tokens_are_refused(rp: TokenVerifier, keys: KeySet, token_of: Any,
                                             message: str) -> None:
    token = token_of(keys)
    with pytest.raises(TokenError, match=message) as exc:
        rp.verify(token, audience=API)
    assert token not in str(exc.value)


def test_id_token_used_as_access_token_is_refused(rp: TokenVerifier, keys: KeySet,
                                                  clock: FrozenClock) -> None:
    id_token = issue(keys, typ=TokenType.ID, issuer=ISSUER, subject=SUBJECT, audience=API,
                     lifetime=dt.timedelta(minutes=5), clock=clock, claims={"acr": ACR_LEVEL_2})
    with pytest.raises(TokenError, match="token type is 'JWT', expected 'at\\+jwt'"):
        rp.verify(id_token, audience=API)


def test_token_signed_by_another_key_with_our_kid_is_refused(rp: TokenVerifier,
                                                             keys: KeySet) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    token = es_sign(other, {"alg": "ES256", "typ": "at+jwt", "kid": keys.current.kid}, payload())
    with pytest.raises(TokenError, match="signature does not verify"):
        rp.verify(token, audience=API)


@pytest.mark.parametrize("token", [
    "", "garbage", "a.b", "a.b.c.d", "....", "é.é.é", "eyJhbGciOiJFUzI1NiJ9.e30.",
    "x" * (MAX_TOKEN_BYTES + 1), "\x00.\x00.\x00",
])
def test_garbage_and_oversized_tokens_are_refused(rp: TokenVerifier, token: str) -> None:
    with pytest.raises(TokenError):
        rp.verify(token, audience=API)


@pytest.mark.parametrize("cut", [1, 10, 40, 100])
def test_truncated_tokens_are_refused(rp: TokenVerifier, keys: KeySet, clock: FrozenClock,
                                      cut: int) -> None:
    with pytest.raises(TokenError):
        rp.verify(access(keys, clock)[:-cut], audience=API)


@pytest.mark.parametrize("token", [None, b"abc.def.ghi", 42])
def test_non_string_tokens_are_refused(rp: TokenVerifier, token: Any) -> None:
    with pytest.raises(TokenError, match="string"):
        rp.verify(token, audience=API)


# --- JWKS -----------------------------------------------------------------------------------


def test_verifier_from_jwks_document_and_file(keys: KeySet, clock: FrozenClock,
                                              tmp_path: Any) -> None:
    token = access(keys, clock)
    jwks = keys.public_jwks()
    assert TokenVerifier.from_jwks(ISSUER, jwks, clock).verify(token, audience=API).level == 2
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks))
    assert TokenVerifier.from_jwks_file(ISSUER, path, clock).verify(token, audience=API).level == 2


def _jwk(key: Any) -> dict[str, Any]:
    numbers = key.public_numbers()
    size = (key.curve.key_size + 7) // 8
    return {"kty": "EC", "crv": {256: "P-256", 384: "P-384"}[key.curve.key_size],
            "x": b64(numbers.x.to_bytes(size, "big")), "y": b64(numbers.y.to_bytes(size, "big")),
            "kid": "k1"}


def _good() -> dict[str, Any]:
    return public_jwk(ec.generate_private_key(ec.SECP256R1()).public_key())


@pytest.mark.parametrize(("jwks", "message"), [
    ({"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "r"}]}, "key type RSA refused"),
    ({"keys": [_good(), {"kty": "oct", "k": "c2VjcmV0"}]}, "key 1: key type oct refused"),
    ({"keys": [_jwk(ec.generate_private_key(ec.SECP384R1()).public_key())]}, "curve P-384"),
    ({"keys": [{**_good(), "d": "AAAA"}]}, "private key material"),
    ({"keys": [{**_good(), "kid": "not-the-thumbprint"}]}, "thumbprint"),
    ({"keys": [{**_good(), "alg": "RS256"}]}, "only ES256"),
    ({"keys": [{**_good(), "use": "enc"}]}, "use"),
    ({"keys": [{**_good(), "x": b64(b"\x01" * 32)}]}, "not on the P-256 curve"),
    ({"keys": [{**_good(), "x": "short"}]}, "coordinate"),
    ({"keys": []}, "no keys"),
    ({"keys": "nope"}, "no keys"),
    ([], "not a JSON object"),
    ('{"keys": [', "not valid JSON"),
    ('{"keys": [], "keys": []}', "not valid JSON"),
    ("x" * 70_000, "larger than"),
])
def test_jwks_with_anything_but_p256_es256_public_keys_is_refused(jwks: Any,
                                                                  message: str) -> None:
    with pytest.raises(JwksError, match=message):
        PublicKeySet.from_jwks(jwks)


def test_jwks_naming_a_key_twice_is_refused() -> None:
    key = _good()
    with pytest.raises(JwksError, match="twice"):
        PublicKeySet.from_jwks({"keys": [key, dict(key)]})


def test_rsa_key_is_refused_even_with_a_valid_thumbprint_shape() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    n = key.public_numbers().n
    with pytest.raises(JwksError, match="RSA"):
        PublicKeySet.from_jwks({"keys": [{"kty": "RSA", "n": b64(n.to_bytes(256, "big")),
                                          "e": "AQAB", "kid": "x" * 43}]})


@pytest.mark.parametrize("url", ["http://id.thainguyen.gov.vn/jwks", "http://10.0.0.5/jwks",
                                 "ftp://id.thainguyen.gov.vn/jwks", "file:///etc/passwd",
                                 "https://user:pw@id.example/jwks", "jwks.json", "https://"])
def test_jwks_url_must_be_https_or_loopback_http(url: str, clock: FrozenClock) -> None:
    with pytest.raises(JwksError):
        TokenVerifier.from_jwks_url(ISSUER, url, clock)


@pytest.mark.parametrize("url", ["https://id.thainguyen.gov.vn/jwks", "http://127.0.0.1:8080/jwks",
                                 "http://localhost/jwks", "http://[::1]:9000/jwks"])
def test_https_and_loopback_http_jwks_urls_are_accepted(url: str) -> None:
    assert check_jwks_url(url) == url


class FakeIssuer:
    """A JWKS endpoint that counts its fetches; its key set can be rotated."""

    def __init__(self, keys: KeySet) -> None:
        self.keys = keys
        self.fetches = 0

    def __call__(self, url: str) -> bytes:
        self.fetches += 1
        return json.dumps(self.keys.public_jwks()).encode()


def test_remote_jwks_refetches_once_for_a_rotated_key(keys: KeySet, clock: FrozenClock) -> None:
    issuer = FakeIssuer(keys)
    rp = TokenVerifier(ISSUER, RemoteJwks("https://id.example/jwks", clock, fetch=issuer), clock)
    assert rp.verify(access(keys, clock), audience=API).level == 2
    assert rp.verify(access(keys, clock), audience=API).level == 2
    assert issuer.fetches == 1  # cached

    clock.advance(dt.timedelta(minutes=2))
    issuer.keys = keys.rotate(clock, compromised=True)  # a key the JWKS never held
    assert rp.verify(access(issuer.keys, clock), audience=API).level == 2
    assert issuer.fetches == 2  # the unknown kid caused exactly one refetch


def test_a_rotation_seconds_after_a_fetch_needs_no_refetch(keys: KeySet,
                                                            clock: FrozenClock) -> None:
    """The key that signs after a rotation was published as the next key: a relying party
    that fetched the JWKS just before (too recently to refetch) verifies its tokens at once."""
    issuer = FakeIssuer(keys)
    rp = TokenVerifier(ISSUER, RemoteJwks("https://id.example/jwks", clock, fetch=issuer), clock)
    assert rp.verify(access(keys, clock), audience=API).level == 2
    clock.advance(dt.timedelta(seconds=5))
    issuer.keys = keys.rotate(clock)
    assert rp.verify(access(issuer.keys, clock), audience=API).level == 2
    assert issuer.fetches == 1
    clock.advance(dt.timedelta(seconds=5))
    issuer.keys = issuer.keys.rotate(clock, compromised=True)  # a key never published: refused
    # until the relying party may refetch
    with pytest.raises(UnknownKeyError):
        rp.verify(access(issuer.keys, clock), audience=API)


def test_unknown_kids_refetch_at_most_once_a_minute(keys: KeySet, clock: FrozenClock) -> None:
    issuer = FakeIssuer(keys)
    rp = TokenVerifier(ISSUER, RemoteJwks("https://id.example/jwks", clock, fetch=issuer), clock)
    rp.verify(access(keys, clock), audience=API)
    clock.advance(dt.timedelta(minutes=5))
    for _ in range(20):
        with pytest.raises(UnknownKeyError):
            rp.verify(forged(keys, payload(iat=int(clock.now().timestamp())), kid="b" * 43),
                      audience=API)
    assert issuer.fetches == 2
    clock.advance(dt.timedelta(seconds=61))
    with pytest.raises(UnknownKeyError):
        rp.verify(forged(keys, kid="b" * 43), audience=API)
    assert issuer.fetches == 3


def test_a_failing_jwks_endpoint_is_a_token_error(clock: FrozenClock, keys: KeySet) -> None:
    def down(url: str) -> bytes:
        raise JwksError("JWKS could not be fetched: connection refused")

    rp = TokenVerifier(ISSUER, RemoteJwks("https://id.example/jwks", clock, fetch=down), clock)
    with pytest.raises(TokenError, match="could not be fetched"):
        rp.verify(access(keys, clock), audience=API)


@pytest.fixture
def jwks_server(keys: KeySet) -> Iterator[tuple[str, list[str]]]:
    """A real HTTP JWKS endpoint on loopback; /big serves an oversized body, /moved redirects."""
    seen: list[str] = []
    body = json.dumps(keys.public_jwks()).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            if self.path == "/moved":
                self.send_response(302)
                self.send_header("Location", "http://127.0.0.1:1/jwks")
                self.end_headers()
                return
            data = b" " * 70_000 if self.path == "/big" else body
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_jwks_fetched_over_loopback_http(jwks_server: tuple[str, list[str]], keys: KeySet,
                                         clock: FrozenClock) -> None:
    base, seen = jwks_server
    rp = TokenVerifier.from_jwks_url(ISSUER, f"{base}/jwks", clock)
    assert rp.verify(access(keys, clock), audience=API).level == 2
    assert seen == ["/jwks"]


@pytest.mark.parametrize(("path", "message"), [("/big", "larger than"), ("/moved", "HTTP 302")])
def test_oversized_or_redirected_jwks_is_refused(jwks_server: tuple[str, list[str]],
                                                 keys: KeySet, clock: FrozenClock, path: str,
                                                 message: str) -> None:
    base, _ = jwks_server
    rp = TokenVerifier.from_jwks_url(ISSUER, f"{base}{path}", clock)
    with pytest.raises(JwksError, match=message):
        rp.verify(access(keys, clock), audience=API)


# --- audit ----------------------------------------------------------------------------------


def test_decisions_are_audited_with_a_pseudonym_never_the_subject(kyso: Kyso,
                                                                  keys: KeySet) -> None:
    rp = TokenVerifier(ISSUER, keys, kyso.clock, audit=kyso)
    clock = kyso.clock
    assert isinstance(clock, FrozenClock)
    token = issue(keys, typ=TokenType.ACCESS, issuer=ISSUER, subject=ID_NUMBER, audience=API,
                  lifetime=dt.timedelta(minutes=30), clock=clock,
                  claims={"client_id": CLIENT, "acr": ACR_LEVEL_1})
    rp.verify(token, audience=API)
    with pytest.raises(InsufficientLevelError):
        rp.verify(token, audience=API, min_level=Level.TWO)
    events = [e for e in audit_events(kyso) if e["action"].startswith("VERIFY_TOKEN")]
    assert [(e["action"], e["outcome"]) for e in events] == [
        ("VERIFY_TOKEN", "success"), ("VERIFY_TOKEN_ERROR", "failure")]
    # a local check is not the provider's RFC 7662 introspection, which has its own events
    assert not [e for e in audit_events(kyso) if e["action"].startswith("INTROSPECT")]
    assert (events[0]["actor"], events[0]["object"]) == (kyso.pseudonyms.pseudonym(ID_NUMBER), API)
    text = audit_text(kyso)
    assert ID_NUMBER not in text
    assert token.split(".")[2] not in text


# --- FastAPI dependency ---------------------------------------------------------------------


@pytest.fixture
def api(rp: TokenVerifier) -> TestClient:
    app = FastAPI()

    records_dep = Depends(require_token(rp, audience=API))
    level2_dep = Depends(require_token(rp, audience=API, min_level=Level.TWO))

    @app.get("/records")
    def records(token: VerifiedToken = records_dep) -> dict[str, Any]:
        return {"sub": token.subject, "level": int(token.level)}

    @app.get("/birth-certificate")
    def birth(token: VerifiedToken = level2_dep) -> dict[str, Any]:
        return {"sub": token.subject}

    return TestClient(app, raise_server_exceptions=False)


def test_dependency_passes_a_valid_token(api: TestClient, keys: KeySet,
                                         clock: FrozenClock) -> None:
    for scheme in ("Bearer", "bearer", "BEARER"):
        response = api.get("/birth-certificate",
                           headers={"Authorization": f"{scheme} {access(keys, clock)}"})
        assert response.status_code == 200, response.text
        assert response.json() == {"sub": SUBJECT}


def test_dependency_without_token_answers_401_bearer(api: TestClient) -> None:
    response = api.get("/records")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer a b",
                                    "Bearer garbage.token.here", "Token abc", "Bearer " + "A" * 9000])
def test_dependency_refuses_bad_headers_with_invalid_token(api: TestClient, header: str) -> None:
    response = api.get("/records", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    assert "Traceback" not in response.text


def test_dependency_never_echoes_a_refused_token(api: TestClient, keys: KeySet) -> None:
    token = forged(keys, payload(aud=["elsewhere"]))
    response = api.get("/records", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert "audience" in response.json()["detail"]
    assert token not in response.text
    assert token not in response.headers["www-authenticate"]
    assert token.split(".")[1] not in response.text


def test_dependency_refuses_two_authorization_headers(api: TestClient, keys: KeySet,
                                                      clock: FrozenClock) -> None:
    token = access(keys, clock)
    response = api.get("/records", headers=[("Authorization", f"Bearer {token}"),
                                            ("Authorization", f"Bearer {token}")])
    assert response.status_code == 401
    assert "more than one" in response.json()["detail"]


def test_dependency_answers_level1_token_with_rfc9470_step_up(api: TestClient, keys: KeySet,
                                                              clock: FrozenClock) -> None:
    token = access(keys, clock, acr=ACR_LEVEL_1)
    assert api.get("/records", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    response = api.get("/birth-certificate", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer error="insufficient_user_authentication"')
    assert f'acr_values="{ACR_LEVEL_2}"' in challenge


# --- online revocation check: IntrospectionClient (RFC 7662) ------------------------------------


@pytest.fixture
def provider_http(kyso: Kyso, keys: KeySet) -> Iterator[TestClient]:
    """The provider's own HTTP app (POST /introspect) on the test client."""
    app = create_app(kyso.settings, kyso=kyso, keys=keys, issuer=ISSUER)
    with TestClient(app, base_url=ISSUER) as client:
        yield client


@pytest.fixture
def rp_provider(provider_http: TestClient) -> Provider:
    provider: Provider = provider_http.app.state.provider  # type: ignore[attr-defined]
    return provider


@pytest.fixture
def parties(rp_provider: Provider) -> introspect_support.Clients:
    return introspect_support.register_clients(rp_provider)


@pytest.fixture
def minted(rp_provider: Provider, parties: introspect_support.Clients,
           kyso: Kyso) -> introspect_support.Minted:
    return introspect_support.mint(rp_provider, parties, introspect_support.make_citizen(kyso))


def online(keys: KeySet, clock: FrozenClock, http: TestClient, secret: str,
           client_id: str = introspect_support.API) -> TokenVerifier:
    return TokenVerifier(ISSUER, keys, clock, introspection=IntrospectionClient(
        ISSUER + "/introspect", client_id, secret, http=http))


def test_offline_verification_stays_the_default_and_cannot_see_a_revocation(
        provider_http: TestClient, rp_provider: Provider, parties: introspect_support.Clients,
        minted: introspect_support.Minted, rp: TokenVerifier) -> None:
    assert rp.introspection is None
    introspect_support.reuse_code(rp_provider, parties, minted)
    assert rp.verify(minted.access_token, audience=introspect_support.API).level == 2


def test_introspection_refuses_a_token_revoked_by_code_reuse(
        provider_http: TestClient, rp_provider: Provider, parties: introspect_support.Clients,
        minted: introspect_support.Minted, keys: KeySet, clock: FrozenClock) -> None:
    verifier = online(keys, clock, provider_http, parties.secrets[introspect_support.API])
    token = verifier.verify(minted.access_token, audience=introspect_support.API,
                            min_level=Level.TWO)
    assert token.client_id == introspect_support.PORTAL
    introspect_support.reuse_code(rp_provider, parties, minted)
    with pytest.raises(TokenError, match="no longer active") as caught:
        verifier.verify(minted.access_token, audience=introspect_support.API)
    assert not isinstance(caught.value, IntrospectionError)


def test_id_tokens_are_verified_offline_only(
        provider_http: TestClient, minted: introspect_support.Minted, keys: KeySet,
        clock: FrozenClock) -> None:
    # A wrong secret would make any introspection fail: none happens for an ID token.
    verifier = online(keys, clock, provider_http, "not-the-secret")
    token = verifier.verify(minted.id_token, audience=introspect_support.PORTAL,
                            token_type=TokenType.ID, access_token=minted.access_token)
    assert token.token_type is TokenType.ID


def test_refused_client_credentials_are_a_clear_introspection_error(
        provider_http: TestClient, minted: introspect_support.Minted, keys: KeySet,
        clock: FrozenClock) -> None:
    verifier = online(keys, clock, provider_http, "not-the-secret")
    with pytest.raises(IntrospectionError, match="refused this service's client credentials"):
        verifier.verify(minted.access_token, audience=introspect_support.API)


def test_client_ids_and_secrets_are_form_encoded_for_basic(
        provider_http: TestClient, rp_provider: Provider, minted: introspect_support.Minted, keys: KeySet,
        clock: FrozenClock) -> None:
    new = rp_provider.clients.add("svc:records", "Records", [introspect_support.REDIRECT],
                                  audiences=[introspect_support.API], confidential=True)
    assert new.secret is not None
    verifier = online(keys, clock, provider_http, new.secret, client_id="svc:records")
    assert verifier.verify(minted.access_token, audience=introspect_support.API).level == 2


def test_the_client_secret_stays_out_of_repr() -> None:
    client = IntrospectionClient("https://id.example/introspect", "svc", "s3cr3t-value")
    assert "s3cr3t" not in repr(client)


@pytest.mark.parametrize(("url", "message"), [
    ("http://id.thainguyen.gov.vn/introspect", "plain http"),
    ("http://10.0.0.5/introspect", "plain http"),
    ("ftp://id.example/introspect", "https"),
    ("https://user:pw@id.example/introspect", "user info"),
    ("introspect", "https"),
    ("https://id.example:99999/introspect", "not a valid URL"),
    ("", "at most 2048"),
])
def test_the_introspection_url_must_be_https_or_loopback_http(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        IntrospectionClient(url, "svc", "secret")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"client_id": ""}, "client_id"), ({"client_secret": ""}, "confidential"),
    ({"timeout": 0}, "timeout"), ({"timeout": True}, "timeout"), ({"timeout": 500}, "timeout"),
])
def test_introspection_client_settings_are_checked(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"url": "http://127.0.0.1:1/introspect", "client_id": "svc",
                            "client_secret": "secret", **kwargs}
    with pytest.raises(ValueError, match=message):
        IntrospectionClient(**args)


def test_introspection_must_be_an_introspection_client(keys: KeySet, clock: FrozenClock) -> None:
    with pytest.raises(TypeError, match="IntrospectionClient"):
        TokenVerifier(ISSUER, keys, clock, introspection="https://id.example/introspect")  # type: ignore[arg-type]


@pytest.fixture
def odd_endpoint() -> Iterator[str]:
    """A loopback HTTP server answering POSTs the way a broken endpoint might."""
    answers: dict[str, tuple[int, bytes]] = {
        "/not-json": (200, b"hello"),
        "/no-active": (200, b'{"scope": "openid"}'),
        "/string-active": (200, b'{"active": "true"}'),
        "/big": (200, b'{"active": false, "pad": "' + b"x" * 70_000 + b'"}'),
        "/moved": (302, b""),
        "/broken": (500, b'{"error": "server_error"}'),
        "/someone-else": (200, json.dumps({"active": True, "sub": "u-other",
                                           "client_id": CLIENT}).encode()),
    }

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status, body = answers.get(self.path, (404, b""))
            self.send_response(status)
            if status == 302:
                self.send_header("Location", "/no-active")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("path", "error", "message"), [
    ("/not-json", IntrospectionError, "not an RFC 7662 response"),
    ("/no-active", IntrospectionError, "not an RFC 7662 response"),
    ("/string-active", IntrospectionError, "not an RFC 7662 response"),
    ("/big", IntrospectionError, "larger than"),
    ("/moved", IntrospectionError, "HTTP 302"),
    ("/broken", IntrospectionError, r"HTTP 500 \(server_error\)"),
    ("/nowhere", IntrospectionError, "HTTP 404"),
    ("/someone-else", TokenError, "about another token"),
])
def test_an_unusable_answer_refuses_the_token_with_a_clear_error(
        odd_endpoint: str, keys: KeySet, clock: FrozenClock, path: str, error: type[Exception],
        message: str) -> None:
    with IntrospectionClient(odd_endpoint + path, "svc", "secret", timeout=5) as client:
        verifier = TokenVerifier(ISSUER, keys, clock, introspection=client)
        with pytest.raises(error, match=message):
            verifier.verify(access(keys, clock), audience=API)


def test_a_silent_endpoint_times_out(keys: KeySet, clock: FrozenClock) -> None:
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/introspect"
        with IntrospectionClient(url, "svc", "secret", timeout=0.3) as client:
            verifier = TokenVerifier(ISSUER, keys, clock, introspection=client)
            with pytest.raises(IntrospectionError, match=r"timed out after 0\.3 s"):
                verifier.verify(access(keys, clock), audience=API)


def test_an_unreachable_endpoint_is_an_introspection_error(keys: KeySet,
                                                          clock: FrozenClock) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with IntrospectionClient(f"http://127.0.0.1:{port}/introspect", "svc", "s") as client, \
            pytest.raises(IntrospectionError, match="failed: ConnectError"):
        TokenVerifier(ISSUER, keys, clock, introspection=client).verify(
            access(keys, clock), audience=API)


def test_the_dependency_answers_503_when_the_provider_cannot_be_asked(
        keys: KeySet, clock: FrozenClock) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = IntrospectionClient(f"http://127.0.0.1:{port}/introspect", "svc", "s")
    verifier = TokenVerifier(ISSUER, keys, clock, introspection=client)
    app = FastAPI()
    records_dep = Depends(require_token(verifier, audience=API))

    @app.get("/records")
    def records(token: VerifiedToken = records_dep) -> dict[str, Any]:
        return {"sub": token.subject}

    with TestClient(app, raise_server_exceptions=False) as api:
        response = api.get("/records", headers={"Authorization": f"Bearer {access(keys, clock)}"})
    client.close()
    assert response.status_code == 503
    assert "token introspection" in response.json()["detail"]
    assert response.headers["retry-after"] == "5"


def test_the_dependency_answers_401_for_a_revoked_token(
        provider_http: TestClient, rp_provider: Provider, parties: introspect_support.Clients,
        minted: introspect_support.Minted, keys: KeySet, clock: FrozenClock) -> None:
    verifier = online(keys, clock, provider_http, parties.secrets[introspect_support.API])
    app = FastAPI()
    records_dep = Depends(require_token(verifier, audience=introspect_support.API))

    @app.get("/records")
    def records(token: VerifiedToken = records_dep) -> dict[str, Any]:
        return {"level": int(token.level)}

    with TestClient(app, raise_server_exceptions=False) as api:
        headers = {"Authorization": f"Bearer {minted.access_token}"}
        assert api.get("/records", headers=headers).json() == {"level": 2}
        introspect_support.reuse_code(rp_provider, parties, minted)
        response = api.get("/records", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
