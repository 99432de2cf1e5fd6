"""Each test is one attack on the provider, and the refusal the specs require."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest
from server_support import (
    CLIENT_ID,
    REDIRECT_URI,
    Browser,
    Citizen,
    TestClient,
    authorize_params,
    bearer,
    csrf_of,
    exchange,
    pkce_pair,
    query_of,
)

from conftest import audit_events
from kyso.authn.oidc import Provider
from kyso.clock import FrozenClock
from kyso.context import Kyso

COOKIE = "__Host-kyso-session"

pytest_plugins = ("server_fixtures",)


def _login_and_exchange(browser: Browser, http: TestClient, citizen: Citizen, secret: str,
                        **extra: str) -> tuple[dict[str, str], dict[str, str], str]:
    verifier, challenge = pkce_pair()
    result = browser.login(authorize_params(challenge, **extra), citizen)
    response = exchange(http, result["code"], verifier, secret=secret)
    assert response.status_code == 200, response.text
    return result, response.json(), verifier


def test_reused_code_is_refused_and_revokes_the_tokens_issued_from_it(
        browser: Browser, http: TestClient, level2: Citizen, client_secret: str,
        kyso: Kyso) -> None:
    result, tokens, verifier = _login_and_exchange(browser, http, level2, client_secret)
    assert http.get("/userinfo", headers=bearer(tokens["access_token"])).status_code == 200
    again = exchange(http, result["code"], verifier, secret=client_secret)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"
    refused = http.get("/userinfo", headers=bearer(tokens["access_token"]))
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_token"
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    errors = [e for e in audit_events(kyso) if e["action"] == "CODE_TO_TOKEN_ERROR"]
    assert errors[-1]["details"]["error"] == "invalid_grant"
    assert "revoked" in errors[-1]["details"]["reason"]


@pytest.mark.parametrize(("extra", "needle"), [
    ({"code_challenge": "", "code_challenge_method": ""}, "code_challenge"),
    ({"code_challenge_method": "plain"}, "S256"),
    ({"code_challenge_method": ""}, "S256"),
    ({"code_challenge": "short"}, "code_challenge"),
])
def test_authorize_without_s256_pkce_is_sent_back_as_invalid_request(
        browser: Browser, client_secret: str, extra: dict[str, str], needle: str) -> None:
    _, challenge = pkce_pair()
    params = authorize_params(challenge, **extra)
    response = browser.authorize(params)
    assert response.status_code == 302
    query = query_of(response.headers["location"])
    assert response.headers["location"].startswith(REDIRECT_URI + "?")
    assert query["error"] == "invalid_request"
    assert needle in query["error_description"]
    assert query["state"] == params["state"]


@pytest.mark.parametrize(("verifier", "error"), [
    ("", "invalid_request"),  # missing
    ("x" * 43, "invalid_grant"),  # wrong
    ("plain-verifier-equal-to-the-challenge", "invalid_grant"),
])
def test_token_request_with_missing_or_wrong_verifier_is_refused(
        browser: Browser, http: TestClient, level2: Citizen, client_secret: str,
        verifier: str, error: str) -> None:
    right, challenge = pkce_pair()
    result = browser.login(authorize_params(challenge), level2)
    response = exchange(http, result["code"], verifier or "", secret=client_secret)
    assert response.status_code == 400
    assert response.json()["error"] == error
    # the code was not burnt by the failed attempt: the real client still gets its tokens
    assert exchange(http, result["code"], right, secret=client_secret).status_code == 200


@pytest.mark.parametrize("uri", [
    REDIRECT_URI + "/", REDIRECT_URI + "x", REDIRECT_URI + "?next=evil",
    REDIRECT_URI.upper(), REDIRECT_URI.replace("https://", "http://"),
    REDIRECT_URI.replace("rp.example.gov.vn", "rp.example.gov.vn.evil.com"),
    REDIRECT_URI + "#frag", REDIRECT_URI.replace("callback", "Callback"),
    "https://RP.example.gov.vn/callback", "https://rp.example.gov.vn:443/callback",
])
def test_redirect_uri_is_compared_exactly_and_a_mismatch_is_never_followed(
        browser: Browser, client_secret: str, uri: str) -> None:
    _, challenge = pkce_pair()
    response = browser.authorize(authorize_params(challenge, redirect_uri=uri))
    assert response.status_code == 400
    assert "location" not in response.headers
    assert "invalid_request" in response.text
    assert "text/html" in response.headers["content-type"]


def test_token_request_with_another_redirect_uri_is_invalid_grant(
        browser: Browser, http: TestClient, level2: Citizen, client_secret: str) -> None:
    verifier, challenge = pkce_pair()
    result = browser.login(authorize_params(challenge), level2)
    response = exchange(http, result["code"], verifier, secret=client_secret,
                        redirect_uri=REDIRECT_URI + "/")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_login_post_without_csrf_token_is_refused(browser: Browser, level2: Citizen,
                                                   client_secret: str, kyso: Kyso) -> None:
    _, challenge = pkce_pair()
    browser.authorize(authorize_params(challenge))
    response = browser.post("/login/password", {"id_number": level2.id_number,
                                                "password": level2.password})
    assert response.status_code == 403
    assert not any(e["action"] == "LOGIN_PASSWORD" for e in audit_events(kyso))
    assert any(e["action"] == "LOGIN_ERROR" and e["details"]["error"] == "invalid_csrf_token"
               for e in audit_events(kyso))


def test_login_post_with_another_sessions_csrf_token_is_refused(
        app, browser: Browser, level2: Citizen, client_secret: str) -> None:  # type: ignore[no-untyped-def]
    _, challenge = pkce_pair()
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as attacker:
        attacker_page = attacker.get("/authorize", params=authorize_params(challenge))
        foreign = csrf_of(attacker_page.text)
    browser.authorize(authorize_params(challenge))
    response = browser.post("/login/password", {"csrf": foreign, "id_number": level2.id_number,
                                                "password": level2.password})
    assert response.status_code == 403


def test_pre_login_session_id_is_useless_after_login(
        app, browser: Browser, level2: Citizen, client_secret: str,  # type: ignore[no-untyped-def]
        provider: Provider) -> None:
    _, challenge = pkce_pair()
    params = authorize_params(challenge)
    planted = browser.authorize(params).cookies[COOKIE]  # the id an attacker could plant
    browser.password(level2)
    done = browser.otp(level2)
    assert done.status_code == 303
    assert "code" in query_of(done.headers["location"])
    fresh = done.cookies[COOKIE]
    assert fresh != planted
    assert provider.sessions.load(planted) is None
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as attacker:
        response = attacker.get("/authorize", params=authorize_params(challenge),
                                headers={"Cookie": f"{COOKIE}={planted}"})
    assert response.status_code == 200  # the login form again, not a code
    assert "location" not in response.headers
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as victim:
        sso = victim.get("/authorize", params=authorize_params(challenge),
                         headers={"Cookie": f"{COOKIE}={fresh}"})
    assert sso.status_code == 302
    assert "code" in query_of(sso.headers["location"])


def test_level1_account_asking_acr_values_level2_gets_level1_acr(
        browser: Browser, http: TestClient, level1: Citizen, client_secret: str) -> None:
    _, tokens, _ = _login_and_exchange(browser, http, level1, client_secret,
                                       acr_values="urn:vn:vneid:loa:2")
    payload = tokens["id_token"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["acr"] == "urn:vn:vneid:loa:1"


@pytest.mark.parametrize("value", ["urn:vn:vneid:loa:2", "http://eidas.europa.eu/LoA/substantial"])
def test_level1_account_with_essential_level2_acr_gets_unmet_authentication_requirements(
        browser: Browser, level1: Citizen, client_secret: str, value: str) -> None:
    _, challenge = pkce_pair()
    claims = json.dumps({"id_token": {"acr": {"essential": True, "values": [value]}}})
    params = authorize_params(challenge, claims=claims)
    browser.authorize(params)
    browser.password(level1)
    done = browser.otp(level1)
    assert done.status_code == 303
    query = query_of(done.headers["location"])
    assert query["error"] == "unmet_authentication_requirements"
    assert query["state"] == params["state"]
    assert "code" not in query


def test_id_token_presented_as_access_token_is_refused_by_userinfo(
        browser: Browser, http: TestClient, level2: Citizen, client_secret: str) -> None:
    _, tokens, _ = _login_and_exchange(browser, http, level2, client_secret)
    response = http.get("/userinfo", headers=bearer(tokens["id_token"]))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


def test_expired_code_is_invalid_grant(browser: Browser, http: TestClient, level2: Citizen,
                                       client_secret: str, clock: FrozenClock) -> None:
    verifier, challenge = pkce_pair()
    result = browser.login(authorize_params(challenge), level2)
    clock.advance(dt.timedelta(seconds=61))
    response = exchange(http, result["code"], verifier, secret=client_secret)
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_grant",
                               "error_description": "authorization code has expired"}


def test_max_age_forces_a_new_login_once_exceeded(browser: Browser, level2: Citizen,
                                                  client_secret: str, clock: FrozenClock) -> None:
    _, challenge = pkce_pair()
    browser.login(authorize_params(challenge), level2)
    clock.advance(dt.timedelta(minutes=2))
    within = browser.authorize(authorize_params(challenge, max_age="600"))
    assert within.status_code == 302
    assert "code" in query_of(within.headers["location"])
    beyond = browser.authorize(authorize_params(challenge, max_age="60"))
    assert beyond.status_code == 200
    assert 'name="password"' in beyond.text


def test_max_age_0_forces_a_new_login_even_in_the_same_second(
        browser: Browser, level2: Citizen, client_secret: str, clock: FrozenClock) -> None:
    # OIDC Core §3.1.2.1: max_age=0 is equivalent to prompt=login. The clock does not move:
    # no time at all has passed since the login, and the password is still asked for.
    _, challenge = pkce_pair()
    browser.login(authorize_params(challenge), level2)
    again = browser.authorize(authorize_params(challenge, max_age="0"))
    assert again.status_code == 200
    assert 'name="password"' in again.text


def test_max_age_reuses_a_session_only_while_its_login_is_younger_than_max_age(
        browser: Browser, level2: Citizen, client_secret: str, clock: FrozenClock) -> None:
    _, challenge = pkce_pair()
    browser.login(authorize_params(challenge), level2)
    clock.advance(dt.timedelta(seconds=59))
    younger = browser.authorize(authorize_params(challenge, max_age="60"))
    assert younger.status_code == 302
    assert "code" in query_of(younger.headers["location"])
    clock.advance(dt.timedelta(seconds=1))  # exactly max_age old: no longer fresh enough
    exact = browser.authorize(authorize_params(challenge, max_age="60"))
    assert exact.status_code == 200
    assert 'name="password"' in exact.text


def test_prompt_none_without_session_is_login_required(browser: Browser,
                                                        client_secret: str) -> None:
    _, challenge = pkce_pair()
    params = authorize_params(challenge, prompt="none")
    response = browser.authorize(params)
    assert response.status_code == 302
    query = query_of(response.headers["location"])
    assert query["error"] == "login_required"
    assert query["state"] == params["state"]


def test_wrong_password_and_wrong_code_get_the_same_uniform_message(
        browser: Browser, level2: Citizen, client_secret: str) -> None:
    _, challenge = pkce_pair()
    browser.authorize(authorize_params(challenge, ui_locales="en"))
    wrong = browser.password(level2, password="Not-the-password-1!")
    assert wrong.status_code == 401
    assert "invalid credentials" in wrong.text
    browser.clock.advance(dt.timedelta(seconds=5))  # type: ignore[attr-defined] # not a "quick" retry
    browser.password(level2)
    bad_code = browser.otp(level2, code="000000" if level2.code(browser.clock.now()) != "000000"
                           else "111111")
    assert bad_code.status_code == 401
    assert "invalid credentials" in bad_code.text


def test_confidential_client_without_its_secret_is_invalid_client(
        browser: Browser, http: TestClient, level2: Citizen, client_secret: str) -> None:
    verifier, challenge = pkce_pair()
    result = browser.login(authorize_params(challenge), level2)
    response = exchange(http, result["code"], verifier)  # no secret
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic")
    assert response.headers["cache-control"] == "no-store"
    assert exchange(http, result["code"], verifier, secret=client_secret,
                    client_id=CLIENT_ID).status_code == 200
