"""The whole authorization code flow through the HTTP app: login pages, code, tokens (their
claims, ``acr`` for eIDAS ``acr_values``), userinfo, discovery, JWKS, logout."""

from __future__ import annotations

import datetime as dt
from typing import Any

import jwt
import pytest
from server_support import (
    CLIENT_ID,
    ISSUER,
    Browser,
    Citizen,
    TestClient,
    authorize_params,
    bearer,
    exchange,
    pkce_pair,
)

from conftest import audit_events, audit_text
from kyso.clock import FrozenClock
from kyso.context import Kyso

pytest_plugins = ("server_fixtures",)


def id_token_claims(http: TestClient, id_token: str) -> dict[str, Any]:
    """The ID token's claims, checked by PyJWT against the provider's JWKS."""
    key = jwt.PyJWK.from_dict(http.get("/jwks").json()["keys"][0])
    claims: dict[str, Any] = jwt.decode(
        id_token, key.key, algorithms=["ES256"], audience=CLIENT_ID, issuer=ISSUER,
        options={"verify_exp": False, "verify_iat": False})  # the frozen clock is in the past
    return claims


def test_level2_citizen_logs_in_and_gets_tokens_and_broker_userinfo(
        browser: Browser, http: TestClient, level2: Citizen, client_secret: str,
        kyso: Kyso, clock: FrozenClock) -> None:
    verifier, challenge = pkce_pair()
    params = authorize_params(challenge)
    result = browser.login(params, level2)
    logged_in_at = int(clock.now().timestamp())
    clock.advance(dt.timedelta(seconds=3))  # auth_time stays the login's time
    assert result["state"] == params["state"]
    assert result["iss"] == ISSUER
    response = exchange(http, result["code"], verifier, secret=client_secret)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 1800
    claims = id_token_claims(http, body["id_token"])
    assert claims["sub"] == level2.subject
    assert claims["acr"] == "urn:vn:vneid:loa:2"
    assert claims["amr"] == ["pwd", "otp", "mfa"]
    assert claims["nonce"] == params["nonce"]
    assert claims["azp"] == CLIENT_ID
    assert claims["sid"]
    assert claims["auth_time"] == logged_in_at
    assert claims["iat"] == logged_in_at + 3
    info = http.get("/userinfo", headers=bearer(body["access_token"]))
    assert info.status_code == 200, info.text
    data = info.json()
    assert data["sub"] == level2.subject
    # Scope profile: the standard claims (OIDC Core §5.1) from userinfo, as the code flow gives
    # them (§5.4), and the national broker's shape.
    assert data["name"] == "Trần Thị Bình"
    assert data["birthdate"] == "2001-05-17"
    assert data["gender"] == "female"
    assert data["SoDinhDanh"] == level2.id_number
    assert data["HoVaTen"] == "Trần Thị Bình"
    assert data["NgayThangNamSinh"] == "20010517"
    assert data["LoaiTaiKhoan"] == 2
    actions = [e["action"] for e in audit_events(kyso)]
    for action in ("LOGIN_PASSWORD", "LOGIN", "AUTHORIZE", "CODE_TO_TOKEN", "USERINFO_REQUEST"):
        assert action in actions
    text = audit_text(kyso)
    assert level2.id_number not in text
    assert level2.password not in text
    assert body["access_token"] not in text


@pytest.mark.parametrize("acr_values", ["http://eidas.europa.eu/LoA/substantial",
                                        "http://eidas.europa.eu/LoA/high"])
def test_an_eidas_acr_value_gives_a_level2_account_the_vneid_level2_acr(
        browser: Browser, http: TestClient, level2: Citizen, client_secret: str,
        acr_values: str) -> None:
    verifier, challenge = pkce_pair()
    result = browser.login(authorize_params(challenge, acr_values=acr_values), level2)
    response = exchange(http, result["code"], verifier, secret=client_secret)
    assert response.status_code == 200, response.text
    claims = id_token_claims(http, response.json()["id_token"])
    assert claims["acr"] == "urn:vn:vneid:loa:2"  # kyso issues its own values, never the alias
    assert claims["amr"] == ["pwd", "otp", "mfa"]


def test_discovery_names_the_endpoints_and_s256_only(http: TestClient) -> None:
    meta = http.get("/.well-known/openid-configuration").json()
    assert meta["issuer"] == ISSUER
    assert meta["token_endpoint"] == ISSUER + "/token"
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert "urn:vn:vneid:loa:2" in meta["acr_values_supported"]


@pytest.mark.parametrize(("header", "lang_text"), [("vi", "Số định danh cá nhân"),
                                                   ("en", "Personal identification number")])
def test_login_page_speaks_vietnamese_by_default_and_english_on_request(
        browser: Browser, client_secret: str, header: str, lang_text: str) -> None:
    _, challenge = pkce_pair()
    page = browser.authorize(authorize_params(challenge, ui_locales=header))
    assert page.status_code == 200
    assert lang_text in page.text
    cookie = page.headers["set-cookie"]
    assert cookie.startswith("__Host-kyso-session=")
    for attribute in ("HttpOnly", "Path=/", "SameSite=lax", "Secure"):
        assert attribute.lower() in cookie.lower()
    assert "domain" not in cookie.lower()
