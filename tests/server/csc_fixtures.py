"""The fixtures of the signing-gateway HTTP tests, loaded as a plugin
(``pytest_plugins = ("server_fixtures", "csc_fixtures")``): the whole app with the CA
passphrase under a TestClient, a browser on it, the gateway's OIDC clients, an enrolled
citizen and a fresh step-up token."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from csc_support import Enrolled, enrol_citizen, mint, register_clients
from fastapi import FastAPI
from pki_server_support import make_app
from server_support import ISSUER, ApiClients, Browser, Citizen, TestClient

from kyso.clock import FrozenClock
from kyso.context import Kyso
from kyso.pki.authority import CertificateAuthority


@pytest.fixture
def csc_app(kyso: Kyso, ca: CertificateAuthority) -> FastAPI:
    """The whole app, with the CA passphrase (the gateway and the OCSP responders are on)."""
    return make_app(kyso)


@pytest.fixture
def csc_http(csc_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(csc_app, base_url=ISSUER, follow_redirects=False) as client:
        yield client


@pytest.fixture
def csc_browser(csc_http: TestClient, clock: FrozenClock) -> Browser:
    return Browser(csc_http, clock)


@pytest.fixture
def clients(csc_app: FastAPI) -> ApiClients:
    return register_clients(csc_app.state.provider)


@pytest.fixture
def enrolled(csc_http: TestClient, csc_browser: Browser, clock: FrozenClock, level2: Citizen,
             clients: ApiClients) -> Enrolled:
    return enrol_citizen(csc_http, csc_browser, clock, level2, clients)


@pytest.fixture
def token(csc_browser: Browser, clock: FrozenClock, level2: Citizen, clients: ApiClients) -> str:
    """A fresh step-up of the enrolled citizen (``enrolled`` first, if both are used)."""
    return mint(csc_browser, clock, level2, clients.api_secret)
