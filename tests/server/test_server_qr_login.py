"""QR cross-device login through the HTTP app: the login page offers a QR code bound to the
login session, the level-2 app approves it at /device/qr/approve, and /login/qr/complete ends
the login like password + OTP (rotation, acr loa:2, amr swk+mfa, LOGIN event, code)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI
from server_support import (
    CLIENT_ID,
    ISSUER,
    LEVEL1,
    REDIRECT_URI,
    Browser,
    Citizen,
    TestClient,
    authorize_params,
    csrf_of,
    exchange,
    make_citizen,
    pkce_pair,
    query_of,
)

from conftest import audit_events, audit_text
from kyso.authn.devices import Device, Devices, login_message
from kyso.authn.lockout import Factor
from kyso.authn.oidc import Provider
from kyso.authn.registry import Level, LockGround, Registry
from kyso.clock import FrozenClock
from kyso.context import Kyso

pytest_plugins = ("server_fixtures",)

COOKIE = "__Host-kyso-session"
PAYLOAD = re.compile(r'id="qr-payload"[^>]*>vneid-qr:1:([^<]+):([A-Za-z0-9_-]+)</code>')
LEVEL2_OTHER = {"id_number": "001085001234", "full_name": "Lê Văn Cường",
                "birth_date": "1985-01-01", "sex": "male", "phone": "0987654321"}


@dataclass
class Phone:
    """A citizen's level-2 app: the bound device and its private key."""

    citizen: Citizen
    key: ec.EllipticCurvePrivateKey
    device: Device

    def signature(self, nonce: str, *, subject: str | None = None,
                  client_id: str = CLIENT_ID) -> str:
        message = login_message(nonce=nonce, subject=subject or self.citizen.subject,
                                client_id=client_id)
        raw = self.key.sign(message, ec.ECDSA(hashes.SHA256()))
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    def approve(self, http: TestClient, nonce: str, **overrides: str) -> httpx.Response:
        body = {"nonce": nonce, "device_id": self.device.id, "signature": self.signature(nonce)}
        body.update(overrides)
        return http.post("/device/qr/approve", json=body)


def bind_phone(kyso: Kyso, citizen: Citizen) -> Phone:
    key = ec.generate_private_key(ec.SECP256R1())
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    return Phone(citizen, key, Devices(kyso).bind_first(citizen.subject, spki, "phone"))


def start_qr(browser: Browser, params: dict[str, str]) -> str:
    """authorize → "log in with a QR code"; the nonce the QR page shows."""
    page = browser.authorize(params)
    assert page.status_code == 200, page.text
    shown = browser.post("/login/qr", {"csrf": csrf_of(page.text)})
    assert shown.status_code == 200, shown.text
    found = PAYLOAD.search(shown.text)
    assert found is not None, shown.text
    assert found.group(1) == ISSUER
    return found.group(2)


def complete(browser: Browser) -> httpx.Response:
    assert browser.last is not None
    return browser.post("/login/qr/complete", {"csrf": csrf_of(browser.last.text)})


def actions(kyso: Kyso) -> list[str]:
    return [e["action"] for e in audit_events(kyso)]


def last(kyso: Kyso, action: str) -> dict[str, Any]:
    return [e for e in audit_events(kyso) if e["action"] == action][-1]


@pytest.fixture
def phone(kyso: Kyso, level2: Citizen) -> Phone:
    return bind_phone(kyso, level2)


@pytest.fixture
def other_browser(app: FastAPI, clock: FrozenClock) -> Iterator[Browser]:
    with TestClient(app, base_url=ISSUER, follow_redirects=False) as client:
        yield Browser(client, clock)


# -- the whole flow -------------------------------------------------------------------------

def test_approved_qr_code_logs_in_with_level2_acr_and_swk_mfa_amr(
        browser: Browser, http: TestClient, phone: Phone, client_secret: str, kyso: Kyso,
        clock: FrozenClock) -> None:
    verifier, challenge = pkce_pair()
    params = authorize_params(challenge)
    nonce = start_qr(browser, params)
    old_cookie = browser.client.cookies.get(COOKIE)
    approved = phone.approve(http, nonce)
    assert approved.status_code == 200, approved.text
    assert approved.json() == {"status": "approved"}
    assert approved.headers["cache-control"] == "no-store"
    clock.advance(dt.timedelta(seconds=30))
    done = complete(browser)
    assert done.status_code == 303, done.text
    location = done.headers["location"]
    assert location.startswith(REDIRECT_URI + "?")
    result = query_of(location)
    assert result["state"] == params["state"]
    assert result["iss"] == ISSUER
    new_cookie = done.headers["set-cookie"].split(";")[0].split("=", 1)[1]
    assert new_cookie != old_cookie  # the session rotated

    response = exchange(http, result["code"], verifier, secret=client_secret)
    assert response.status_code == 200, response.text
    key = jwt.PyJWK.from_dict(http.get("/jwks").json()["keys"][0])
    claims = jwt.decode(response.json()["id_token"], key.key, algorithms=["ES256"],
                        audience=CLIENT_ID, issuer=ISSUER,
                        options={"verify_exp": False, "verify_iat": False})
    assert claims["sub"] == phone.citizen.subject
    assert claims["acr"] == "urn:vn:vneid:loa:2"
    assert claims["amr"] == ["swk", "mfa"]
    assert claims["auth_time"] == int(clock.now().timestamp())
    assert claims["nonce"] == params["nonce"]

    seen = actions(kyso)
    for action in ("QR_LOGIN_STARTED", "QR_LOGIN_APPROVED", "QR_LOGIN_COMPLETED", "LOGIN",
                   "AUTHORIZE", "CODE_TO_TOKEN"):
        assert action in seen
    login = last(kyso, "LOGIN")
    assert login["outcome"] == "success"
    assert login["object"] == phone.citizen.subject
    assert login["actor"].startswith("psn:")
    text = audit_text(kyso)
    assert phone.citizen.id_number not in text
    assert nonce not in text


def test_login_page_offers_the_qr_option_and_qr_page_shows_svg_payload_and_expiry(
        browser: Browser, client_secret: str) -> None:
    _, challenge = pkce_pair()
    page = browser.authorize(authorize_params(challenge))
    assert "Đăng nhập bằng mã QR / Log in with a QR code" in page.text
    assert 'action="/login/qr"' in page.text
    shown = browser.post("/login/qr", {"csrf": csrf_of(page.text)})
    assert shown.status_code == 200
    assert "<svg" in shown.text
    assert "<script" not in shown.text
    assert "vneid-qr:1:" in shown.text
    assert ">09:02:00</time>" in shown.text  # 02:00Z + 120 s, shown in Vietnam time
    assert 'datetime="2026-11-23T02:02:00+00:00"' in shown.text
    assert 'action="/login/qr/complete"' in shown.text
    assert shown.headers["cache-control"] == "no-store"


def test_new_code_replaces_the_previous_one_in_the_session(
        browser: Browser, http: TestClient, phone: Phone, client_secret: str) -> None:
    _, challenge = pkce_pair()
    first = start_qr(browser, authorize_params(challenge))
    assert browser.last is not None
    renewed = browser.post("/login/qr", {"csrf": csrf_of(browser.last.text)})
    found = PAYLOAD.search(renewed.text)
    assert found is not None
    second = found.group(2)
    assert second != first
    assert phone.approve(http, first).status_code == 200
    pending = complete(browser)  # the session waits for the second code, not the first
    assert pending.status_code == 200
    assert "Not approved" in pending.text or "chưa xác nhận" in pending.text


def test_cancel_goes_back_to_the_password_form_which_still_works(
        browser: Browser, level2: Citizen, client_secret: str) -> None:
    _, challenge = pkce_pair()
    start_qr(browser, authorize_params(challenge))
    assert browser.last is not None
    back = browser.post("/login/qr/cancel", {"csrf": csrf_of(browser.last.text)})
    assert back.status_code == 200
    assert 'action="/login/password"' in back.text
    assert browser.password(level2).status_code == 200
    done = browser.otp(level2)
    assert done.status_code == 303


# -- refusals at completion -----------------------------------------------------------------

def test_complete_before_approval_shows_the_qr_page_again_then_succeeds_once_approved(
        browser: Browser, http: TestClient, phone: Phone, client_secret: str) -> None:
    _, challenge = pkce_pair()
    nonce = start_qr(browser, authorize_params(challenge))
    pending = complete(browser)
    assert pending.status_code == 200
    assert 'id="message"' in pending.text
    assert "chưa xác nhận trên ứng dụng" in pending.text
    assert nonce in pending.text  # the same code is shown again
    assert phone.approve(http, nonce).status_code == 200
    assert complete(browser).status_code == 303


def test_a_code_approved_for_another_session_cannot_be_completed_in_this_one(
        browser: Browser, other_browser: Browser, http: TestClient, phone: Phone,
        client_secret: str) -> None:
    _, challenge = pkce_pair()
    victim_nonce = start_qr(browser, authorize_params(challenge))
    start_qr(other_browser, authorize_params(challenge))
    assert phone.approve(http, victim_nonce).status_code == 200
    assert other_browser.last is not None
    csrf = csrf_of(other_browser.last.text)
    stolen = other_browser.post("/login/qr/complete", {"csrf": csrf, "nonce": victim_nonce})
    assert stolen.status_code == 200  # still its own pending code: no redirect, no code
    assert "location" not in stolen.headers
    assert "chưa xác nhận trên ứng dụng" in stolen.text
    assert complete(browser).status_code == 303


def test_expired_code_cannot_be_approved_or_completed_and_returns_to_the_login_page(
        browser: Browser, http: TestClient, phone: Phone, client_secret: str, kyso: Kyso,
        clock: FrozenClock) -> None:
    _, challenge = pkce_pair()
    nonce = start_qr(browser, authorize_params(challenge))
    clock.advance(dt.timedelta(seconds=121))
    late = phone.approve(http, nonce)
    assert late.status_code == 400
    assert late.json()["error"] == "access_denied"
    assert last(kyso, "QR_LOGIN_ERROR")["details"]["reason"] == "expired"
    back = complete(browser)
    assert back.status_code == 401
    assert 'action="/login/password"' in back.text
    assert "Mã QR đã hết hạn" in back.text
    error = last(kyso, "LOGIN_ERROR")
    assert error["details"]["error"] == "expired_code"


def test_code_approved_in_time_but_completed_after_expiry_is_refused(
        browser: Browser, http: TestClient, phone: Phone, client_secret: str,
        clock: FrozenClock) -> None:
    _, challenge = pkce_pair()
    nonce = start_qr(browser, authorize_params(challenge))
    assert phone.approve(http, nonce).status_code == 200
    clock.advance(dt.timedelta(seconds=121))
    back = complete(browser)
    assert back.status_code == 401
    assert "Mã QR đã hết hạn" in back.text
    assert "location" not in back.headers


def test_completing_twice_is_refused_because_the_pre_login_session_is_gone(
        browser: Browser, http: TestClient, phone: Phone, client_secret: str) -> None:
    _, challenge = pkce_pair()
    nonce = start_qr(browser, authorize_params(challenge))
    assert phone.approve(http, nonce).status_code == 200
    assert browser.last is not None
    csrf = csrf_of(browser.last.text)
    old_cookie = browser.client.cookies.get(COOKIE)
    assert complete(browser).status_code == 303
    browser.client.cookies.set(COOKIE, old_cookie or "", domain="testserver")
    again = browser.post("/login/qr/complete", {"csrf": csrf})
    assert again.status_code == 400
    assert "location" not in again.headers


def test_account_locked_after_approval_cannot_complete_and_the_login_session_ends(
        browser: Browser, http: TestClient, phone: Phone, client_secret: str,
        kyso: Kyso) -> None:
    _, challenge = pkce_pair()
    nonce = start_qr(browser, authorize_params(challenge))
    assert phone.approve(http, nonce).status_code == 200
    Registry(kyso.store, kyso.clock).lock(phone.citizen.subject, LockGround.HOLDER_REQUEST,
                                          by="officer:test")
    refused = complete(browser)
    assert refused.status_code == 403
    assert "location" not in refused.headers
    assert last(kyso, "QR_LOGIN_ERROR")["details"]["reason"] == "account-locked"


def test_brute_force_locked_account_cannot_log_in_by_qr_either(
        browser: Browser, http: TestClient, phone: Phone, client_secret: str, kyso: Kyso,
        provider: Provider) -> None:
    _, challenge = pkce_pair()
    nonce = start_qr(browser, authorize_params(challenge))
    assert phone.approve(http, nonce).status_code == 200
    guard = provider.login.guard
    for _ in range(1000):
        if not guard.record_failure(phone.citizen.subject, Factor.PASSWORD).allowed:
            break
    assert not guard.check(phone.citizen.subject).allowed
    refused = complete(browser)
    assert refused.status_code == 403
    assert "location" not in refused.headers
    assert last(kyso, "LOGIN_ERROR")["details"]["error"] == "user_temporarily_disabled"
    assert "QR_LOGIN_COMPLETED" not in actions(kyso)


def test_complete_without_or_with_a_wrong_csrf_token_is_refused(
        browser: Browser, http: TestClient, phone: Phone, client_secret: str,
        kyso: Kyso) -> None:
    _, challenge = pkce_pair()
    nonce = start_qr(browser, authorize_params(challenge))
    assert phone.approve(http, nonce).status_code == 200
    page = browser.last
    assert page is not None
    missing = browser.client.post("/login/qr/complete", data={})
    assert missing.status_code in (400, 403)
    assert "location" not in missing.headers
    wrong = browser.client.post("/login/qr/complete", data={"csrf": "0" * 64})
    assert wrong.status_code == 403
    assert "location" not in wrong.headers
    assert last(kyso, "LOGIN_ERROR")["details"]["error"] == "invalid_csrf_token"
    assert "QR_LOGIN_COMPLETED" not in actions(kyso)
    browser.last = page
    assert complete(browser).status_code == 303  # the real page still works


def test_starting_a_qr_code_needs_the_csrf_token(browser: Browser, client_secret: str,
                                                 kyso: Kyso) -> None:
    _, challenge = pkce_pair()
    browser.authorize(authorize_params(challenge))
    refused = browser.client.post("/login/qr", data={"csrf": "f" * 64})
    assert refused.status_code == 403
    assert "QR_LOGIN_STARTED" not in actions(kyso)


# -- refusals at approval -------------------------------------------------------------------

def test_replayed_approval_is_refused_with_the_uniform_answer(
        browser: Browser, http: TestClient, phone: Phone, client_secret: str,
        kyso: Kyso) -> None:
    _, challenge = pkce_pair()
    nonce = start_qr(browser, authorize_params(challenge))
    body = {"nonce": nonce, "device_id": phone.device.id, "signature": phone.signature(nonce)}
    assert http.post("/device/qr/approve", json=body).status_code == 200
    replay = http.post("/device/qr/approve", json=body)
    assert replay.status_code == 400
    assert replay.json() == {"error": "access_denied",
                             "error_description": "the QR login code cannot be approved"}
    assert last(kyso, "QR_LOGIN_ERROR")["details"]["reason"] == "replayed"


def test_signature_by_a_device_of_another_account_is_refused(
        browser: Browser, http: TestClient, phone: Phone, client_secret: str,
        kyso: Kyso) -> None:
    intruder = bind_phone(kyso, make_citizen(kyso, LEVEL2_OTHER, Level.TWO, totp=False))
    _, challenge = pkce_pair()
    nonce = start_qr(browser, authorize_params(challenge))
    # the intruder's key signs for the victim's account, under the victim's device id
    forged = phone.approve(http, nonce, signature=intruder.signature(
        nonce, subject=phone.citizen.subject))
    assert forged.status_code == 400
    assert forged.json()["error"] == "access_denied"
    assert last(kyso, "QR_LOGIN_ERROR")["details"]["reason"] == "bad-signature"
    # the intruder's own device, claiming the victim's account in the signed message
    claimed = intruder.approve(http, nonce, signature=intruder.signature(
        nonce, subject=phone.citizen.subject))
    assert claimed.status_code == 400
    assert claimed.json() == forged.json()
    assert "chưa xác nhận trên ứng dụng" in complete(browser).text


def test_device_of_a_level1_account_cannot_approve(
        browser: Browser, http: TestClient, client_secret: str, kyso: Kyso) -> None:
    level1_phone = bind_phone(kyso, make_citizen(kyso, LEVEL1, Level.ONE, totp=False))
    _, challenge = pkce_pair()
    nonce = start_qr(browser, authorize_params(challenge))
    refused = level1_phone.approve(http, nonce)
    assert refused.status_code == 400
    assert refused.json()["error"] == "access_denied"
    assert last(kyso, "QR_LOGIN_ERROR")["details"]["reason"] == "level-1"
    assert "chưa xác nhận trên ứng dụng" in complete(browser).text


def test_unknown_nonce_and_bad_signature_get_the_same_answer(
        browser: Browser, http: TestClient, phone: Phone, client_secret: str) -> None:
    _, challenge = pkce_pair()
    nonce = start_qr(browser, authorize_params(challenge))
    unknown = phone.approve(http, "A" * 43)
    bad = phone.approve(http, nonce, signature=phone.signature("B" * 43))
    assert unknown.status_code == bad.status_code == 400
    assert unknown.json() == bad.json()


def _valid_body(phone: Phone, nonce: str) -> dict[str, str]:
    return {"nonce": nonce, "device_id": phone.device.id, "signature": phone.signature(nonce)}


@pytest.mark.parametrize(("content", "status"), [
    (b"not json", 400),
    (b"", 400),
    (b"[]", 400),
    (b'"text"', 400),
    (b"\xff\xfe{}", 400),
    (b"[" * 1900 + b"]" * 10, 400),
    (b'{"nonce": 1, "device_id": "dev-x", "signature": "AA"}', 400),
    (b'{"nonce": "abc", "device_id": ["dev-x"], "signature": "AA"}', 400),
    (b'{"nonce": "abc", "device_id": "dev-x", "signature": null}', 400),
    (b'{"nonce": "abc", "device_id": "dev-x"}', 400),
    (b'{"nonce": "abc", "device_id": "dev-x", "signature": "AA", "subject": "x"}', 400),
    (b'{"nonce": "abc", "nonce": "def", "device_id": "dev-x", "signature": "AA"}', 400),
    (b'{"nonce": "a b", "device_id": "dev-x", "signature": "AA"}', 400),
    (b'{"nonce": "abc", "device_id": "dev-x", "signature": "not base64!"}', 400),
    (b'{"nonce": "abc", "device_id": "dev-x", "signature": "' + b"A" * 200 + b'"}', 400),
    (b'{"nonce": "' + b"a" * 5000 + b'", "device_id": "d", "signature": "AA"}', 413),
])
def test_malformed_approval_bodies_get_a_4xx_json_error(http: TestClient, content: bytes,
                                                        status: int, kyso: Kyso) -> None:
    response = http.post("/device/qr/approve", content=content,
                         headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == "invalid_request"
    assert body["error_description"]
    event = last(kyso, "QR_LOGIN_ERROR")
    assert event["details"]["reason"] == "malformed_request"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "", "application/jsonx"])
def test_approval_with_a_wrong_content_type_is_refused_with_415(
        http: TestClient, phone: Phone, client_secret: str, browser: Browser,
        content_type: str) -> None:
    _, challenge = pkce_pair()
    nonce = start_qr(browser, authorize_params(challenge))
    headers = {"Content-Type": content_type} if content_type else {}
    response = http.post("/device/qr/approve", content=json.dumps(_valid_body(phone, nonce)),
                         headers=headers)
    assert response.status_code == 415
    assert response.json()["error"] == "invalid_request"
    assert "chưa xác nhận trên ứng dụng" in complete(browser).text


def test_a_wrong_typed_signature_of_good_base64_is_refused_not_crashed(
        browser: Browser, http: TestClient, phone: Phone, client_secret: str) -> None:
    _, challenge = pkce_pair()
    nonce = start_qr(browser, authorize_params(challenge))
    for signature in ("AA", "A" * 128, base64.urlsafe_b64encode(b"\x30" * 70).decode()):
        response = phone.approve(http, nonce, signature=signature)
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "access_denied"
