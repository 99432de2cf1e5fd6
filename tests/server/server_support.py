"""Helpers shared by the e-ID server tests (imported by name; not a conftest): citizens with a
password and a TOTP credential, a registered client, the app under test, a scripted browser
that walks the login pages, and the tokens such a login gives (:func:`access_token`) for the
clients of a token-protected API (:func:`register_api_clients`)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
import secrets
import warnings
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pyotp

from kyso.authn.credentials import OtpCredentials
from kyso.authn.oidc import Provider
from kyso.authn.otp import TotpVerifier
from kyso.authn.passwords import PasswordHasher, hash_params
from kyso.authn.registry import Level, Person, Registry
from kyso.authn.sealing import SecretSealer
from kyso.authn.stores import SqlTotpStepStore
from kyso.clock import Clock, FrozenClock
from kyso.context import Kyso

with warnings.catch_warnings():
    # Starlette 1.x warns at import that it prefers the httpx2 fork; plain httpx works.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

KEY_PASSPHRASE = "token-key-passphrase-for-tests"
ISSUER = "https://testserver"
REDIRECT_URI = "https://rp.example.gov.vn/callback"
LOGOUT_URI = "https://rp.example.gov.vn/bye"
CLIENT_ID = "dichvucong"
OTHER_CLIENT = "hotich-portal"  # a relying party whose tokens are for its own audience only
PASSWORD = "Mat-khau-2026!xyz"
LEVEL2 = {"id_number": "033301000123", "full_name": "Trần Thị Bình", "birth_date": "2001-05-17",
          "sex": "female", "phone": "0912345678"}
LEVEL1 = {"id_number": "019099012345", "full_name": "Nguyễn Văn An", "birth_date": "1999-04-02",
          "sex": "male"}
CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


@dataclass(frozen=True)
class Citizen:
    subject: str
    id_number: str = field(repr=False)
    password: str = field(repr=False)
    totp_secret: str = field(repr=False)
    level: Level
    phone: str | None = None

    def code(self, at: dt.datetime) -> str:
        return pyotp.TOTP(self.totp_secret).at(at)


def make_citizen(kyso: Kyso, data: dict[str, str], level: Level, *, totp: bool = True,
                 password: str = PASSWORD) -> Citizen:
    """A citizen with a password, an active TOTP credential (confirmed one step in the past,
    so the current step's code still logs in) and the given level."""
    person = Person.of(**data)  # type: ignore[arg-type]
    identity = Registry(kyso.store, kyso.clock).create(
        person, password_hash=PasswordHasher(hash_params("test-fast")).hash(password), level=level,
        **({"officer": "officer:test", "evidence": {"chip": "checked (test)"}}
           if level is Level.TWO else {}))
    secret = ""
    if totp:
        creds = OtpCredentials(kyso.store, kyso.clock, SecretSealer.for_home(kyso.settings.home))
        enrolment = creds.begin_totp(identity.subject)
        earlier = FrozenClock(kyso.clock.now() - dt.timedelta(seconds=60))
        secret = enrolment.secret
        creds.confirm_totp(identity.subject, enrolment.credential_id,
                           pyotp.TOTP(secret).at(earlier.now()),
                           TotpVerifier(SqlTotpStepStore(kyso.store), earlier))
    return Citizen(identity.subject, person.id_number, password, secret, level, person.phone)


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(
        b"=").decode()
    return verifier, challenge


def authorize_params(challenge: str, **extra: str) -> dict[str, str]:
    params = {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI,
              "scope": "openid profile", "state": "st-" + secrets.token_hex(4),
              "nonce": "n-" + secrets.token_hex(4), "code_challenge": challenge,
              "code_challenge_method": "S256"}
    params.update(extra)
    return {k: v for k, v in params.items() if v != ""}


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found is not None, html
    return found.group(1)


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


@dataclass
class Browser:
    """A scripted browser on the app (cookies kept by the client)."""

    client: TestClient
    clock: Clock
    last: httpx.Response | None = None

    def authorize(self, params: dict[str, str]) -> httpx.Response:
        self.last = self.client.get("/authorize?" + urlencode(params))
        return self.last

    def post(self, path: str, data: dict[str, str]) -> httpx.Response:
        self.last = self.client.post(path, data=data)
        return self.last

    def password(self, citizen: Citizen, *, password: str | None = None) -> httpx.Response:
        assert self.last is not None
        return self.post("/login/password", {"csrf": csrf_of(self.last.text),
                                             "id_number": citizen.id_number,
                                             "password": password or citizen.password})

    def otp(self, citizen: Citizen, *, code: str | None = None,
            factor: str = "totp") -> httpx.Response:
        assert self.last is not None
        return self.post("/login/otp", {"csrf": csrf_of(self.last.text), "factor": factor,
                                        "code": code or citizen.code(self.clock.now())})

    def login(self, params: dict[str, str], citizen: Citizen) -> dict[str, str]:
        """authorize → password → TOTP; the query of the final redirect."""
        page = self.authorize(params)
        assert page.status_code == 200, page.text
        assert self.password(citizen).status_code == 200, self.last.text if self.last else ""
        done = self.otp(citizen)
        assert done.status_code == 303, done.text
        location = done.headers["location"]
        assert location.startswith(params["redirect_uri"] + "?")
        return query_of(location)


def exchange(client: TestClient, code: str, verifier: str, *, secret: str | None = None,
             **extra: str) -> httpx.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier, "client_id": CLIENT_ID}
    if secret is not None:
        data["client_secret"] = secret
    data.update(extra)
    return client.post("/token", data={k: v for k, v in data.items() if v != ""})


def bearer(token: str) -> dict[str, Any]:
    return {"Authorization": f"Bearer {token}"}


# --- tokens for the token-protected APIs (audit, CA administration, signing gateway) ---------


@dataclass(frozen=True)
class ApiClients:
    """The relying parties of an API's tests: :data:`CLIENT_ID`, whose tokens are for the API's
    audience, and :data:`OTHER_CLIENT`, whose tokens are for itself only."""

    api_secret: str = field(repr=False)
    other_secret: str = field(repr=False)


def register_api_clients(provider: Provider, audience: str, name: str) -> ApiClients:
    """Register both confidential clients (``name``: the API client's display name)."""
    api = provider.clients.add(CLIENT_ID, name, [REDIRECT_URI], audiences=[audience],
                               confidential=True)
    other = provider.clients.add(OTHER_CLIENT, "Hộ tịch", [REDIRECT_URI], confidential=True)
    assert api.secret is not None
    assert other.secret is not None
    return ApiClients(api.secret, other.secret)


def token_response(browser: Browser, citizen: Citizen, secret: str, *,
                   client_id: str = CLIENT_ID, clock: FrozenClock | None = None,
                   **params: str) -> dict[str, Any]:
    """``citizen`` logs in through the provider's pages (password, then TOTP) for
    ``client_id``, with more authorize ``params`` if given (a step-up's ``prompt``, ``max_age``,
    ``acr_values``); the token response. With ``clock``, it first moves one TOTP step, so that
    the same citizen can log in again (codes are single-use)."""
    if clock is not None:
        clock.advance(dt.timedelta(seconds=30))
    browser.client.cookies.clear()
    verifier, challenge = pkce_pair()
    result = browser.login(authorize_params(challenge, client_id=client_id, **params), citizen)
    response = exchange(browser.client, result["code"], verifier, secret=secret,
                        client_id=client_id)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def access_token(browser: Browser, citizen: Citizen, secret: str, *,
                 client_id: str = CLIENT_ID, clock: FrozenClock | None = None,
                 **params: str) -> str:
    """The access token of :func:`token_response`."""
    token: str = token_response(browser, citizen, secret, client_id=client_id, clock=clock,
                                **params)["access_token"]
    return token
