"""Malformed protocol requests get the OAuth 2 / OIDC error responses the specs define — an
HTML page before the client is verified, a redirect after, JSON at the token endpoint — and
never a 500 or a traceback."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from server_support import (
    CLIENT_ID,
    REDIRECT_URI,
    TestClient,
    authorize_params,
    bearer,
    pkce_pair,
    query_of,
)

from kyso.authn.oidc import Provider

pytest_plugins = ("server_fixtures",)


def _no_leak(text: str) -> None:
    assert "Traceback" not in text
    assert 'File "' not in text


def _authorize(http: TestClient, pairs: list[tuple[str, str]]) -> object:
    return http.get("/authorize?" + urlencode(pairs))


def _pairs(**extra: str) -> list[tuple[str, str]]:
    _, challenge = pkce_pair()
    return list(authorize_params(challenge, state="s1", **extra).items())


# --- authorize: before the client and redirect URI are verified: an HTML page ----------------

@pytest.mark.parametrize("pairs", [
    [("client_id", CLIENT_ID)],  # no redirect_uri
    [("redirect_uri", REDIRECT_URI)],  # no client_id
    [("client_id", "nobody"), ("redirect_uri", REDIRECT_URI)],
    [("client_id", "x" * 500), ("redirect_uri", REDIRECT_URI)],
    [("client_id", CLIENT_ID), ("client_id", CLIENT_ID), ("redirect_uri", REDIRECT_URI)],
    [("client_id", CLIENT_ID), ("redirect_uri", REDIRECT_URI), ("redirect_uri", REDIRECT_URI)],
    [("client_id", CLIENT_ID), ("redirect_uri", REDIRECT_URI + "/" * 3000)],
    [("client_id", "\x00\u202e"), ("redirect_uri", "javascript:alert(1)")],
    [],
])
def test_unverifiable_authorize_requests_get_an_error_page_not_a_redirect(
        http: TestClient, client_secret: str, pairs: list[tuple[str, str]]) -> None:
    response = http.get("/authorize?" + urlencode(pairs))
    assert response.status_code == 400
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    assert "invalid_" in response.text
    _no_leak(response.text)


@pytest.mark.parametrize("raw", [
    "client_id=%FF%FE&redirect_uri=x",  # not UTF-8
    "client_id=" + "a" * 9000,  # oversized query
    "&".join(f"p{i}=1" for i in range(200)),  # too many parameters
])
def test_unreadable_query_strings_get_an_error_page(http: TestClient, client_secret: str,
                                                    raw: str) -> None:
    response = http.get("/authorize?" + raw)
    assert response.status_code == 400
    assert "location" not in response.headers
    _no_leak(response.text)


def test_html_error_page_escapes_what_it_shows(http: TestClient, client_secret: str) -> None:
    response = http.get("/authorize?" + urlencode({"client_id": "<script>alert(1)</script>",
                                                   "redirect_uri": REDIRECT_URI}))
    assert response.status_code == 400
    assert "<script>alert" not in response.text


# --- authorize: after verification: redirect with error and state ----------------------------

@pytest.mark.parametrize(("pairs", "error"), [
    (_pairs(response_type=""), "invalid_request"),
    (_pairs(response_type="token"), "unsupported_response_type"),
    (_pairs(response_type="code id_token"), "unsupported_response_type"),
    (_pairs(scope="profile"), "invalid_scope"),
    (_pairs(scope="openid admin"), "invalid_scope"),
    ([*_pairs(), ("scope", "openid")], "invalid_request"),  # repeated
    ([*_pairs(), ("nonce", "again")], "invalid_request"),
    (_pairs(nonce="n" * 600), "invalid_request"),
    (_pairs(max_age="-1"), "invalid_request"),
    (_pairs(max_age="soon"), "invalid_request"),
    (_pairs(prompt="none login"), "invalid_request"),
    (_pairs(prompt="sideways"), "invalid_request"),
    (_pairs(claims="{not json"), "invalid_request"),
    (_pairs(claims="[1, 2]"), "invalid_request"),
    (_pairs(claims='{"id_token": {"acr": {"essential": true, "values": ["urn:x"]}}}'),
     "unmet_authentication_requirements"),
    (_pairs(request="eyJhbGciOiJub25lIn0.e30."), "request_not_supported"),
    (_pairs(request_uri="https://evil.example/req"), "request_uri_not_supported"),
    (_pairs(response_mode="fragment"), "invalid_request"),
])
def test_flawed_authorize_requests_are_sent_back_with_error_and_state(
        http: TestClient, client_secret: str, pairs: list[tuple[str, str]], error: str) -> None:
    response = http.get("/authorize?" + urlencode(pairs))
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI + "?")
    query = query_of(location)
    assert query["error"] == error
    assert query["error_description"]
    assert query["state"] == "s1"
    assert "code" not in query


def test_oversized_state_is_not_echoed(http: TestClient, client_secret: str) -> None:
    pairs = [(k, v) for k, v in _pairs() if k != "state"] + [("state", "s" * 5000)]
    response = http.get("/authorize?" + urlencode(pairs))
    assert response.status_code == 302
    query = query_of(response.headers["location"])
    assert query["error"] == "invalid_request"
    assert "state" not in query


# --- login forms ------------------------------------------------------------------------------

@pytest.mark.parametrize(("headers", "body"), [
    ({"Content-Type": "application/json"}, b'{"id_number": "1"}'),
    ({"Content-Type": "multipart/form-data; boundary=x"}, b"--x--"),
    ({"Content-Type": "application/x-www-form-urlencoded"}, b"id_number=" + b"1" * 70000),
    ({"Content-Type": "application/x-www-form-urlencoded"}, b"id_number=%FF\xff"),
    ({}, b""),
])
@pytest.mark.parametrize("path", ["/login/password", "/login/otp", "/login/sms"])
def test_malformed_login_posts_get_an_error_page(http: TestClient, client_secret: str,
                                                 path: str, headers: dict[str, str],
                                                 body: bytes) -> None:
    response = http.post(path, content=body, headers=headers)
    assert 400 <= response.status_code < 500
    assert response.headers["content-type"].startswith("text/html")
    _no_leak(response.text)


def test_login_post_without_any_session_says_the_session_expired(http: TestClient) -> None:
    response = http.post("/login/password", data={"csrf": "0" * 64, "id_number": "1",
                                                  "password": "x"})
    assert response.status_code == 400
    assert "hết hạn" in response.text


# --- token endpoint: JSON errors (RFC 6749 §5.2) ----------------------------------------------

@pytest.mark.parametrize(("kwargs", "status", "error"), [
    ({"json": {"grant_type": "authorization_code"}}, 400, "invalid_request"),
    ({"content": b"grant_type=authorization_code", "headers": {"Content-Type": "text/plain"}},
     400, "invalid_request"),
    ({"content": b"code=" + b"a" * 20000,
      "headers": {"Content-Type": "application/x-www-form-urlencoded"}}, 400, "invalid_request"),
    ({"data": {"grant_type": "authorization_code", "code": "x"}}, 401, "invalid_client"),
    ({"data": {"grant_type": "authorization_code", "client_id": "nobody", "code": "x"}}, 401,
     "invalid_client"),
    ({"data": {"grant_type": "authorization_code", "client_id": CLIENT_ID,
               "client_secret": "wrong", "code": "x"}}, 401, "invalid_client"),
    ({"content": b"grant_type=authorization_code&grant_type=authorization_code",
      "headers": {"Content-Type": "application/x-www-form-urlencoded"}}, 400, "invalid_request"),
    ({"data": {"code": "x"}, "headers": {"Authorization": "Basic !!!"}}, 401, "invalid_client"),
    ({"data": {"code": "x"}, "headers": {"Authorization": "Negotiate abc"}}, 401,
     "invalid_client"),
    ({"data": {"code": "x", "client_secret": "s"},
      "headers": {"Authorization": "Basic ZGljaHZ1Y29uZzp4"}}, 400, "invalid_request"),
])
def test_malformed_token_requests_get_rfc6749_json_errors(
        http: TestClient, client_secret: str, kwargs: dict[str, object], status: int,
        error: str) -> None:
    response = http.post("/token", **kwargs)  # type: ignore[arg-type]
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    assert response.headers["cache-control"] == "no-store"
    if error == "invalid_client":
        assert response.headers["www-authenticate"].startswith("Basic")


@pytest.mark.parametrize(("data", "error"), [
    ({"grant_type": "password", "username": "a", "password": "b"}, "unsupported_grant_type"),
    ({"grant_type": "refresh_token", "refresh_token": "x"}, "unsupported_grant_type"),
    ({}, "invalid_request"),
    ({"grant_type": "authorization_code"}, "invalid_request"),
    ({"grant_type": "authorization_code", "code": "nope", "redirect_uri": REDIRECT_URI,
      "code_verifier": "v" * 43}, "invalid_grant"),
    ({"grant_type": "authorization_code", "code": "nope", "redirect_uri": REDIRECT_URI,
      "code_verifier": "v" * 200}, "invalid_request"),
])
def test_authenticated_but_flawed_token_requests(http: TestClient, client_secret: str,
                                                 data: dict[str, str], error: str) -> None:
    response = http.post("/token", data=data, auth=(CLIENT_ID, client_secret))
    assert response.status_code == 400, response.text
    assert response.json()["error"] == error


def test_token_endpoint_refuses_get(http: TestClient) -> None:
    assert http.get("/token").status_code == 405


# --- userinfo (RFC 6750) ---------------------------------------------------------------------

@pytest.mark.parametrize(("headers", "error"), [
    ({}, "invalid_request"),
    ({"Authorization": "Basic abc"}, "invalid_request"),
    ({"Authorization": "Bearer"}, "invalid_request"),
    ({"Authorization": "Bearer not-a-jwt"}, "invalid_token"),
    ({"Authorization": "Bearer a.b.c"}, "invalid_token"),
    ({"Authorization": "Bearer " + "A" * 20000}, "invalid_token"),
    ({"Authorization": "Bearer eyJhbGciOiJub25lIn0.eyJjbGllbnRfaWQiOiJkaWNodnVjb25nIn0."},
     "invalid_token"),
])
def test_userinfo_without_a_valid_bearer_token_is_401(http: TestClient, client_secret: str,
                                                      headers: dict[str, str], error: str) -> None:
    response = http.get("/userinfo", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == error
    assert response.headers["www-authenticate"].startswith("Bearer")


# --- logout ----------------------------------------------------------------------------------

def test_logout_to_an_unregistered_uri_is_an_error_page(http: TestClient,
                                                        client_secret: str) -> None:
    response = http.get("/logout", params={"client_id": CLIENT_ID,
                                           "post_logout_redirect_uri": "https://evil.example/"})
    assert response.status_code == 400
    assert "location" not in response.headers


def test_logout_without_session_to_a_registered_uri_redirects_with_state(
        http: TestClient, client_secret: str) -> None:
    response = http.get("/logout", params={"client_id": CLIENT_ID, "state": "bye1",
                                           "post_logout_redirect_uri":
                                               "https://rp.example.gov.vn/bye"})
    assert response.status_code == 302
    assert query_of(response.headers["location"]) == {"state": "bye1"}


# --- the catch-all ---------------------------------------------------------------------------

def test_unexpected_exception_is_a_server_error_without_traceback(
        http: TestClient, provider: Provider, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom() -> dict[str, object]:
        raise RuntimeError("secret detail 019099012345")

    monkeypatch.setattr(provider, "discovery", boom)
    response = http.get("/.well-known/openid-configuration")
    assert response.status_code == 500
    assert response.json() == {"error": "server_error", "error_description": "internal error"}
    assert "secret detail" not in response.text
    assert response.headers["x-request-id"]
    assert bearer("x")
