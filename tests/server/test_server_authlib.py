"""Acceptance: an independent client — Authlib's OAuth 2 / OIDC client — completes discovery,
authorize (the login form posted over real HTTPS to a running server on loopback), token and
userinfo; PyJWT verifies the ID token against our JWKS."""

from __future__ import annotations

import base64
import hashlib
import time
import warnings
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pyotp
from authlib.common.security import generate_token
from live_support import LiveServer
from server_support import CLIENT_ID, REDIRECT_URI, csrf_of

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Authlib 1.9 warns that it prefers the httpx2 fork
    from authlib.integrations.httpx_client import OAuth2Client

pytest_plugins = ("server_fixtures",)


def test_authlib_client_completes_the_code_flow_and_pyjwt_verifies_the_id_token(
        live_server: LiveServer) -> None:
    tls = live_server.ssl_context()
    issuer = live_server.issuer
    meta = httpx.get(f"{issuer}/.well-known/openid-configuration", verify=tls).json()
    assert meta["issuer"] == issuer

    client = OAuth2Client(client_id=CLIENT_ID, client_secret=live_server.client_secret,
                          scope="openid profile", redirect_uri=REDIRECT_URI,
                          code_challenge_method="S256", verify=tls,
                          token_endpoint_auth_method="client_secret_basic")
    verifier = generate_token(48)
    nonce = generate_token(16)
    url, state = client.create_authorization_url(meta["authorization_endpoint"],
                                                 code_verifier=verifier, nonce=nonce,
                                                 acr_values="urn:vn:vneid:loa:2")

    citizen = live_server.citizen
    with httpx.Client(verify=tls, follow_redirects=False) as browser:
        page = browser.get(url)
        assert page.status_code == 200, page.text
        assert "Số định danh cá nhân" in page.text
        otp_page = browser.post(f"{issuer}/login/password", data={
            "csrf": csrf_of(page.text), "id_number": citizen.id_number,
            "password": citizen.password})
        assert otp_page.status_code == 200, otp_page.text
        done = browser.post(f"{issuer}/login/otp", data={
            "csrf": csrf_of(otp_page.text), "factor": "totp",
            "code": pyotp.TOTP(citizen.totp_secret).at(time.time())})
        assert done.status_code == 303, done.text
    location = done.headers["location"]
    assert location.startswith(REDIRECT_URI + "?")
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert query["state"] == state
    assert query["iss"] == issuer

    token = client.fetch_token(meta["token_endpoint"], authorization_response=location,
                               code_verifier=verifier, state=state)
    assert token["token_type"] == "Bearer"
    info = client.get(meta["userinfo_endpoint"])
    assert info.status_code == 200, info.text
    claims = info.json()
    assert claims["sub"] == citizen.subject
    assert claims["SoDinhDanh"] == citizen.id_number
    assert claims["LoaiTaiKhoan"] == 2
    client.close()

    jwks = httpx.get(meta["jwks_uri"], verify=tls).json()
    keys = jwt.PyJWKSet.from_dict(jwks)
    kid = jwt.get_unverified_header(token["id_token"])["kid"]
    id_token = jwt.decode(token["id_token"], keys[kid].key, algorithms=["ES256"],
                          audience=CLIENT_ID, issuer=issuer,
                          options={"require": ["exp", "iat", "iss", "aud", "sub"]})
    assert id_token["sub"] == citizen.subject
    assert id_token["nonce"] == nonce
    assert id_token["acr"] == "urn:vn:vneid:loa:2"
    assert "otp" in id_token["amr"]
    digest = hashlib.sha256(token["access_token"].encode()).digest()[:16]
    assert id_token["at_hash"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    access = jwt.decode(token["access_token"], keys[kid].key, algorithms=["ES256"],
                        audience=CLIENT_ID, issuer=issuer)
    assert jwt.get_unverified_header(token["access_token"])["typ"] == "at+jwt"
    assert access["client_id"] == CLIENT_ID
    assert access["exp"] - access["iat"] == 1800
