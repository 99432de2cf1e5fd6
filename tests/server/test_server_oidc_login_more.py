"""More of the login flow over HTTP: SMS codes (the ID token's ``amr``, the resend throttle),
locks ending the login session, single sign-on, logout (with and without id_token_hint)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import jwt
from server_support import (
    CLIENT_ID,
    ISSUER,
    LOGOUT_URI,
    Browser,
    Citizen,
    TestClient,
    authorize_params,
    csrf_of,
    exchange,
    pkce_pair,
    query_of,
)

from conftest import audit_events, audit_text
from kyso.authn.lockout import Factor
from kyso.authn.oidc import Provider
from kyso.authn.stores import SqlSmsOutbox
from kyso.clock import FrozenClock
from kyso.context import Kyso

COOKIE = "__Host-kyso-session"

pytest_plugins = ("server_fixtures",)


def id_token_claims(http: TestClient, id_token: str) -> dict[str, Any]:
    """The ID token's claims, checked by PyJWT against the provider's JWKS."""
    key = jwt.PyJWK.from_dict(http.get("/jwks").json()["keys"][0])
    claims: dict[str, Any] = jwt.decode(
        id_token, key.key, algorithms=["ES256"], audience=CLIENT_ID, issuer=ISSUER,
        options={"verify_exp": False, "verify_iat": False})  # the frozen clock is in the past
    return claims


def test_sms_code_completes_the_login_with_amr_sms(browser: Browser, http: TestClient,
                                                    level2: Citizen, client_secret: str,
                                                    kyso: Kyso, clock: FrozenClock) -> None:
    verifier, challenge = pkce_pair()
    browser.authorize(authorize_params(challenge))
    otp_page = browser.password(level2)
    assert 'id="send-sms"' in otp_page.text
    sent = browser.post("/login/sms", {"csrf": csrf_of(otp_page.text)})
    assert sent.status_code == 200
    assert "SMS" in sent.text
    assert level2.phone is not None
    code = SqlSmsOutbox(kyso.store).last_code(level2.phone)
    assert code is not None
    done = browser.otp(level2, code=code, factor="sms")
    assert done.status_code == 303, done.text
    logged_in_at = int(clock.now().timestamp())
    clock.advance(dt.timedelta(seconds=5))  # auth_time is the login's time, not the exchange's
    tokens = exchange(http, query_of(done.headers["location"])["code"], verifier,
                      secret=client_secret).json()
    claims = id_token_claims(http, tokens["id_token"])
    assert claims["amr"] == ["pwd", "sms", "mfa"]  # RFC 8176
    assert claims["auth_time"] == logged_in_at
    assert claims["iat"] == logged_in_at + 5
    assert claims["acr"] == "urn:vn:vneid:loa:2"
    assert claims["sub"] == level2.subject
    info = http.get("/userinfo", headers={"Authorization": "Bearer " + tokens["access_token"]})
    assert info.status_code == 200
    assert code not in audit_text(kyso)


def test_a_second_sms_within_the_resend_interval_is_refused_and_the_first_code_works(
        browser: Browser, http: TestClient, level2: Citizen, client_secret: str, kyso: Kyso,
        provider: Provider, clock: FrozenClock) -> None:
    verifier, challenge = pkce_pair()
    browser.authorize(authorize_params(challenge))
    otp_page = browser.password(level2)
    first = browser.post("/login/sms", {"csrf": csrf_of(otp_page.text)})
    assert first.status_code == 200
    assert level2.phone is not None
    outbox = SqlSmsOutbox(kyso.store)
    code = outbox.last_code(level2.phone)
    assert code is not None
    clock.advance(dt.timedelta(seconds=30))  # within the 60 s resend interval
    second = browser.post("/login/sms", {"csrf": csrf_of(first.text)})
    assert second.status_code == 429
    assert second.headers["retry-after"] == "30"  # the rest of the 60 s resend interval
    assert "Không thể gửi SMS lúc này. Vui lòng thử lại sau." in second.text  # uniform…
    assert "+07:00" not in second.text  # …without the throttle's details
    assert 'name="code"' in second.text  # the code form stays, for the code already sent
    assert len(outbox.messages(level2.phone)) == 1
    assert dict(provider.login.guard.failures(level2.subject)) == {
        Factor.PASSWORD: 0, Factor.TOTP: 0, Factor.SMS: 0}
    sends = [(e["outcome"], e["details"].get("error")) for e in audit_events(kyso)
             if e["action"] == "SEND_SMS_CODE"]
    assert sends == [("success", None), ("failure", "too_many_codes")]

    done = browser.otp(level2, code=code, factor="sms")
    assert done.status_code == 303, done.text
    tokens = exchange(http, query_of(done.headers["location"])["code"], verifier,
                      secret=client_secret).json()
    assert id_token_claims(http, tokens["id_token"])["amr"] == ["pwd", "sms", "mfa"]


def test_a_lock_during_login_ends_the_login_session(browser: Browser, level2: Citizen,
                                                    client_secret: str) -> None:
    _, challenge = pkce_pair()
    browser.authorize(authorize_params(challenge))
    statuses = []
    for _ in range(2):  # two failures within a second: Keycloak's quick-login lock
        page = browser.last
        assert page is not None
        response = browser.password(level2, password="Wrong-password-1!")
        statuses.append(response.status_code)
        if response.status_code == 403:
            break
    assert statuses[-1] == 403
    assert browser.last is not None
    assert browser.last.headers["set-cookie"].startswith(COOKIE + '=""')  # cookie cleared
    again = browser.post("/login/password", {"csrf": "0" * 64, "id_number": level2.id_number,
                                             "password": level2.password})
    assert again.status_code == 400  # the session is gone


def test_existing_session_gets_a_code_without_a_new_login_and_prompt_login_forces_one(
        browser: Browser, level2: Citizen, client_secret: str, kyso: Kyso) -> None:
    _, challenge = pkce_pair()
    browser.login(authorize_params(challenge), level2)
    logins = sum(e["action"] == "LOGIN" for e in audit_events(kyso))
    sso = browser.authorize(authorize_params(challenge))
    assert sso.status_code == 302
    assert "code" in query_of(sso.headers["location"])
    none = browser.authorize(authorize_params(challenge, prompt="none"))
    assert "code" in query_of(none.headers["location"])
    forced = browser.authorize(authorize_params(challenge, prompt="login"))
    assert forced.status_code == 200
    assert sum(e["action"] == "LOGIN" for e in audit_events(kyso)) == logins


def test_idle_session_needs_a_new_login(browser: Browser, level2: Citizen, client_secret: str,
                                        clock: FrozenClock) -> None:
    _, challenge = pkce_pair()
    browser.login(authorize_params(challenge), level2)
    clock.advance(dt.timedelta(minutes=16))  # [authn] session_idle_user_minutes = 15
    again = browser.authorize(authorize_params(challenge, prompt="none"))
    assert query_of(again.headers["location"])["error"] == "login_required"


def test_logout_with_id_token_hint_ends_the_session_and_redirects_with_state(
        browser: Browser, http: TestClient, level2: Citizen, client_secret: str,
        provider: Provider, kyso: Kyso) -> None:
    verifier, challenge = pkce_pair()
    result = browser.login(authorize_params(challenge), level2)
    cookie = browser.last.cookies[COOKIE] if browser.last else ""
    tokens = exchange(http, result["code"], verifier, secret=client_secret).json()
    response = browser.client.get("/logout", params={
        "id_token_hint": tokens["id_token"], "post_logout_redirect_uri": LOGOUT_URI,
        "state": "bye"})
    assert response.status_code == 302
    assert response.headers["location"] == LOGOUT_URI + "?state=bye"
    assert provider.sessions.load(cookie) is None
    assert any(e["action"] == "LOGOUT" and e["object"] == level2.subject
               for e in audit_events(kyso))


def test_logout_without_hint_asks_for_confirmation_with_csrf(
        browser: Browser, level2: Citizen, client_secret: str, provider: Provider) -> None:
    _, challenge = pkce_pair()
    browser.login(authorize_params(challenge), level2)
    cookie = browser.last.cookies[COOKIE] if browser.last else ""
    page = browser.client.get("/logout")
    assert page.status_code == 200
    assert provider.sessions.load(cookie) is not None  # a link alone logs no one out
    forged = browser.post("/logout", {"csrf": "0" * 64})
    assert forged.status_code == 403
    assert provider.sessions.load(cookie) is not None
    done = browser.post("/logout", {"csrf": csrf_of(page.text)})
    assert done.status_code == 200
    assert provider.sessions.load(cookie) is None
