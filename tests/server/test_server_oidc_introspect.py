"""POST /introspect (RFC 7662) over HTTP: tokens from a real login through the provider's pages;
an active token's claims, ``{"active": false}`` for anything else, the token endpoint's client
authentication and JSON errors, no-store answers; the discovery document names the endpoint;
and Authlib's OAuth 2 client, as an independent resource server, introspects over real HTTPS."""

from __future__ import annotations

import datetime as dt
import time
import warnings
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pyotp
import pytest
from authlib.common.security import generate_token
from live_support import LiveServer
from server_support import (
    CLIENT_ID,
    ISSUER,
    OTHER_CLIENT,
    REDIRECT_URI,
    Browser,
    Citizen,
    TestClient,
    authorize_params,
    csrf_of,
    exchange,
    pkce_pair,
    register_api_clients,
    token_response,
)

from conftest import audit_events
from kyso.authn.acr import ACR_LEVEL_2
from kyso.authn.oidc import Provider
from kyso.clock import FrozenClock
from kyso.context import Kyso

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Authlib 1.9 warns that it prefers the httpx2 fork
    from authlib.integrations.httpx_client import OAuth2Client

pytest_plugins = ("server_fixtures",)

PATH = "/introspect"
API = "hotich-api"  # the audience of CLIENT_ID's tokens, and the API's own client id
PUBLIC = "app-mobile"
NO_STORE = "no-store"


@dataclass(frozen=True)
class Parties:
    """CLIENT_ID (tokens for API), OTHER_CLIENT (tokens for itself), the API's confidential
    client, and a public client."""

    secrets: dict[str, str] = field(repr=False)


@pytest.fixture
def parties(provider: Provider) -> Parties:
    pair = register_api_clients(provider, API, "Cổng dịch vụ công tỉnh")
    api = provider.clients.add(API, "Hộ tịch API", [REDIRECT_URI], confidential=True)
    provider.clients.add(PUBLIC, "Ứng dụng", [REDIRECT_URI])
    assert api.secret is not None
    return Parties({CLIENT_ID: pair.api_secret, OTHER_CLIENT: pair.other_secret,
                    API: api.secret})


@pytest.fixture
def tokens(browser: Browser, level2: Citizen, parties: Parties) -> dict[str, Any]:
    return token_response(browser, level2, parties.secrets[CLIENT_ID])


def post(http: TestClient, parties: Parties, token: str, caller: str = API, *,
         basic: bool = True, **extra: str) -> httpx.Response:
    data = {"token": token, **extra}
    if basic:
        return http.post(PATH, data=data, auth=(caller, parties.secrets[caller]))
    return http.post(PATH, data={**data, "client_id": caller,
                                 "client_secret": parties.secrets[caller]})


def inactive(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.json() == {"active": False}
    assert response.headers["cache-control"] == NO_STORE


# --- answers ----------------------------------------------------------------------------------


@pytest.mark.parametrize("basic", [True, False], ids=["client_secret_basic",
                                                      "client_secret_post"])
def test_an_active_token_gets_its_claims(http: TestClient, parties: Parties,
                                         tokens: dict[str, Any], level2: Citizen,
                                         clock: FrozenClock, basic: bool) -> None:
    response = post(http, parties, tokens["access_token"], basic=basic,
                    token_type_hint="access_token")
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == NO_STORE
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    now = int(clock.now().timestamp())
    assert body == {"active": True, "scope": "openid profile", "client_id": CLIENT_ID,
                    "sub": level2.subject, "aud": [API], "iss": ISSUER, "exp": now + 1800,
                    "iat": now, "token_type": "Bearer", "acr": ACR_LEVEL_2,
                    "auth_time": body["auth_time"]}
    assert now - 60 <= body["auth_time"] <= now


def test_the_client_the_token_was_issued_to_may_introspect_it(
        http: TestClient, parties: Parties, tokens: dict[str, Any]) -> None:
    assert post(http, parties, tokens["access_token"], caller=CLIENT_ID).json()["active"]


def test_a_token_revoked_by_code_reuse_is_inactive(browser: Browser, http: TestClient,
                                                   level2: Citizen, parties: Parties) -> None:
    secret = parties.secrets[CLIENT_ID]
    verifier, challenge = pkce_pair()
    code = browser.login(authorize_params(challenge), level2)["code"]
    first = exchange(http, code, verifier, secret=secret)
    assert first.status_code == 200, first.text
    token = first.json()["access_token"]
    assert post(http, parties, token).json()["active"] is True
    again = exchange(http, code, verifier, secret=secret)
    assert again.json()["error"] == "invalid_grant"
    inactive(post(http, parties, token))


def test_an_expired_token_is_inactive(http: TestClient, parties: Parties,
                                      tokens: dict[str, Any], clock: FrozenClock) -> None:
    clock.advance(dt.timedelta(minutes=30))
    inactive(post(http, parties, tokens["access_token"]))


def test_an_id_token_is_inactive(http: TestClient, parties: Parties,
                                 tokens: dict[str, Any]) -> None:
    inactive(post(http, parties, tokens["id_token"], caller=CLIENT_ID,
                  token_type_hint="id_token"))


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", "%00"])
def test_garbage_is_inactive(http: TestClient, parties: Parties, token: str) -> None:
    inactive(post(http, parties, token))


def test_another_clients_token_for_another_audience_is_inactive(
        http: TestClient, parties: Parties, tokens: dict[str, Any]) -> None:
    # OTHER_CLIENT authenticates fine, but the token is for API, not for it.
    inactive(post(http, parties, tokens["access_token"], caller=OTHER_CLIENT))


def test_each_introspection_is_audited_with_the_client_as_actor(
        http: TestClient, parties: Parties, tokens: dict[str, Any], kyso: Kyso,
        level2: Citizen) -> None:
    post(http, parties, tokens["access_token"])
    event = [e for e in audit_events(kyso) if e["action"] == "INTROSPECT_TOKEN"][-1]
    assert event["actor"] == API
    assert event["object"] == kyso.pseudonyms.pseudonym(level2.id_number)
    assert event["request_id"]
    assert tokens["access_token"].split(".")[2] not in str(event)


# --- refusals: the token endpoint's JSON errors -----------------------------------------------


@pytest.mark.parametrize("case", ["no-auth", "wrong-basic", "wrong-post", "unknown", "public"])
def test_unauthenticated_or_public_callers_get_401_invalid_client(
        http: TestClient, parties: Parties, tokens: dict[str, Any], case: str) -> None:
    token = tokens["access_token"]
    kwargs: dict[str, Any] = {
        "no-auth": {"data": {"token": token}},
        "wrong-basic": {"data": {"token": token}, "auth": (API, "wrong")},
        "wrong-post": {"data": {"token": token, "client_id": API, "client_secret": "wrong"}},
        "unknown": {"data": {"token": token}, "auth": ("nobody", "x")},
        "public": {"data": {"token": token, "client_id": PUBLIC}},
    }[case]
    response = http.post(PATH, **kwargs)
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic")
    assert response.headers["cache-control"] == NO_STORE
    assert "active" not in response.json()


@pytest.mark.parametrize(("kwargs", "status"), [
    ({"content": b"token=a&token=b", "headers": {
        "Content-Type": "application/x-www-form-urlencoded"}}, 400),
    ({"content": b"token=a&token_type_hint=x&token_type_hint=y", "headers": {
        "Content-Type": "application/x-www-form-urlencoded"}}, 400),
    ({"data": {}}, 400),  # no token
    ({"json": {"token": "a"}}, 400),
    ({"content": b"token=a", "headers": {"Content-Type": "text/plain"}}, 400),
    ({"content": b"token=" + b"a" * 20000, "headers": {
        "Content-Type": "application/x-www-form-urlencoded"}}, 400),
    ({"content": b"token=%FF\xff", "headers": {
        "Content-Type": "application/x-www-form-urlencoded"}}, 400),
])
def test_malformed_requests_get_400_invalid_request(http: TestClient, parties: Parties,
                                                    kwargs: dict[str, Any], status: int) -> None:
    response = http.post(PATH, auth=(API, parties.secrets[API]), **kwargs)
    assert response.status_code == status, response.text
    assert response.json()["error"] == "invalid_request"
    assert response.json()["error_description"]
    assert response.headers["cache-control"] == NO_STORE
    assert "Traceback" not in response.text


def test_the_token_endpoint_answers_the_same_malformed_body_alike(
        http: TestClient, parties: Parties) -> None:
    for path in ("/token", PATH):
        response = http.post(path, content=b"{}", auth=(API, parties.secrets[API]),
                             headers={"Content-Type": "application/json"})
        assert (response.status_code, response.json()["error"]) == (400, "invalid_request")


def test_introspection_refuses_get(http: TestClient) -> None:
    assert http.get(PATH).status_code == 405


# --- metadata ---------------------------------------------------------------------------------


def test_discovery_names_the_introspection_endpoint(http: TestClient) -> None:
    """Needs the two lines in kyso.authn.oidc.Provider.discovery (see the W7 report)."""
    meta = http.get("/.well-known/openid-configuration").json()
    assert meta["introspection_endpoint"] == ISSUER + PATH
    assert meta["introspection_endpoint_auth_methods_supported"] == [
        "client_secret_basic", "client_secret_post"]


def test_the_openapi_document_describes_introspection(http: TestClient) -> None:
    operation = http.get("/openapi.json").json()["paths"][PATH]["post"]
    assert operation["summary"] == "Token introspection (RFC 7662)"
    assert operation["tags"] == ["oidc"]
    body = operation["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
    assert body["required"] == ["token"]
    assert {"200", "400", "401"} <= set(operation["responses"])


# --- an independent client --------------------------------------------------------------------


def test_authlib_introspects_over_https_and_sees_a_revocation(live_server: LiveServer) -> None:
    """Authlib's OAuth2Client.introspect_token (RFC 7662 client, client_secret_basic) against a
    running server; the live server's client has its own id as audience, so it may introspect
    its own tokens."""
    tls = live_server.ssl_context()
    issuer = live_server.issuer
    client = OAuth2Client(client_id=CLIENT_ID, client_secret=live_server.client_secret,
                          scope="openid profile", redirect_uri=REDIRECT_URI,
                          code_challenge_method="S256", verify=tls,
                          token_endpoint_auth_method="client_secret_basic")
    verifier = generate_token(48)
    url, state = client.create_authorization_url(issuer + "/authorize", code_verifier=verifier,
                                                 nonce=generate_token(16))
    citizen = live_server.citizen
    with httpx.Client(verify=tls, follow_redirects=False) as browser:
        page = browser.get(url)
        otp_page = browser.post(f"{issuer}/login/password", data={
            "csrf": csrf_of(page.text), "id_number": citizen.id_number,
            "password": citizen.password})
        done = browser.post(f"{issuer}/login/otp", data={
            "csrf": csrf_of(otp_page.text), "factor": "totp",
            "code": pyotp.TOTP(citizen.totp_secret).at(time.time())})
        assert done.status_code == 303, done.text
    location = done.headers["location"]
    code = parse_qs(urlsplit(location).query)["code"][0]
    token = client.fetch_token(issuer + "/token", authorization_response=location,
                               code_verifier=verifier, state=state)

    answer = client.introspect_token(issuer + PATH, token=token["access_token"],
                                     token_type_hint="access_token")
    assert answer.status_code == 200, answer.text
    claims = answer.json()
    assert claims["active"] is True
    assert (claims["sub"], claims["client_id"], claims["iss"]) == (
        citizen.subject, CLIENT_ID, issuer)

    with httpx.Client(verify=tls) as rp:  # the code again: its tokens are revoked
        reused = rp.post(issuer + "/token", auth=(CLIENT_ID, live_server.client_secret), data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier})
    assert reused.json()["error"] == "invalid_grant"
    after = client.introspect_token(issuer + PATH, token=token["access_token"])
    assert after.json() == {"active": False}
    client.close()
