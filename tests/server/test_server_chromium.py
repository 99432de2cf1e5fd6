"""Headless Chromium (Debian's, driven by Playwright) logs in through the HTML pages with ID
number, password and TOTP and reaches the client's redirect URI with a code. A screenshot of
the login page is kept under build/test-artifacts/."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pyotp
import pytest
from live_support import LiveServer
from server_support import REDIRECT_URI, authorize_params, pkce_pair

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts"

pytestmark = [pytest.mark.external, pytest.mark.slow,
              pytest.mark.skipif(shutil.which("chromium") is None and not Path(CHROMIUM).exists(),
                                 reason="Debian's chromium is not installed (scripts/test "
                                        "installs it)")]

pytest_plugins = ("server_fixtures",)


def test_chromium_logs_in_with_password_and_totp_and_reaches_the_redirect(
        live_server: LiveServer) -> None:
    from playwright.sync_api import Route, sync_playwright

    _, challenge = pkce_pair()
    params = authorize_params(challenge)
    url = f"{live_server.issuer}/authorize?{urlencode(params)}"
    reached: list[str] = []

    def callback(route: Route) -> None:
        reached.append(route.request.url)
        route.fulfill(status=200, content_type="text/plain", body="client callback")

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    citizen = live_server.citizen
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            # The test server's certificate comes from a CA made in the test.
            context = browser.new_context(ignore_https_errors=True, locale="vi-VN")
            page = context.new_page()
            page.route(REDIRECT_URI + "*", callback)
            page.goto(url)
            assert "Số định danh cá nhân" in page.content()
            page.screenshot(path=str(ARTIFACTS / "login-page.png"), full_page=True)
            cookies = {c["name"]: c for c in context.cookies()}
            session = cookies["__Host-kyso-session"]
            assert session["secure"]
            assert session["httpOnly"]
            assert session["sameSite"] == "Lax"
            page.fill("#id_number", citizen.id_number)
            page.fill("#password", citizen.password)
            page.click("#login")
            page.wait_for_selector("#code")
            page.screenshot(path=str(ARTIFACTS / "otp-page.png"), full_page=True)
            page.fill("#code", pyotp.TOTP(citizen.totp_secret).at(time.time()))
            page.click("#confirm")
            page.wait_for_url(REDIRECT_URI + "*")
            after = {c["name"]: c["value"] for c in context.cookies()}
        finally:
            browser.close()
    assert len(reached) == 1
    query = {k: v[0] for k, v in parse_qs(urlsplit(reached[0]).query).items()}
    assert query["state"] == params["state"]
    assert query["code"]
    assert query["iss"] == live_server.issuer
    assert after["__Host-kyso-session"] != session["value"]  # rotated at login
    assert (ARTIFACTS / "login-page.png").stat().st_size > 0
