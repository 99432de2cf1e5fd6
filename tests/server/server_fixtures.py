"""The fixtures of the e-ID server tests, loaded by the test modules as a plugin
(``pytest_plugins = ("server_fixtures",)``) so that the tests can name them as parameters
without importing them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from live_support import LiveServer, make_tls
from server_support import (
    CLIENT_ID,
    ISSUER,
    KEY_PASSPHRASE,
    LEVEL1,
    LEVEL2,
    LOGOUT_URI,
    REDIRECT_URI,
    Browser,
    Citizen,
    TestClient,
    make_citizen,
)

from kyso.authn.oidc import Provider
from kyso.authn.registry import Level
from kyso.clock import FrozenClock
from kyso.context import Kyso
from kyso.server.app import create_app
from loopback_support import loopback_socket, server_home, serving


@pytest.fixture
def app(kyso: Kyso) -> FastAPI:
    return create_app(kyso.settings, kyso=kyso, key_passphrase=KEY_PASSPHRASE, issuer=ISSUER)


@pytest.fixture
def provider(app: FastAPI) -> Provider:
    found: Provider = app.state.provider
    return found


@pytest.fixture
def client_secret(provider: Provider) -> str:
    """Register the confidential test client; its secret."""
    new = provider.clients.add(CLIENT_ID, "Cổng dịch vụ công tỉnh", [REDIRECT_URI],
                               post_logout_redirect_uris=[LOGOUT_URI],
                               scopes="openid profile phone", confidential=True)
    assert new.secret is not None
    return new.secret


@pytest.fixture
def http(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url=ISSUER, follow_redirects=False) as client:
        yield client


@pytest.fixture
def browser(http: TestClient, clock: FrozenClock) -> Browser:
    return Browser(http, clock)


@pytest.fixture
def level2(kyso: Kyso) -> Citizen:
    return make_citizen(kyso, LEVEL2, Level.TWO)


@pytest.fixture
def level1(kyso: Kyso) -> Citizen:
    return make_citizen(kyso, LEVEL1, Level.ONE)



@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    ca_file, cert_file, key_file = make_tls(tmp_path)
    with loopback_socket() as sock, server_home(tmp_path / "home") as kyso:
        issuer = f"https://127.0.0.1:{sock.getsockname()[1]}"
        citizen = make_citizen(kyso, LEVEL2, Level.TWO)
        app = create_app(kyso.settings, kyso=kyso, key_passphrase=KEY_PASSPHRASE, issuer=issuer)
        provider: Provider = app.state.provider
        new = provider.clients.add(CLIENT_ID, "Cổng dịch vụ công tỉnh", [REDIRECT_URI],
                                   post_logout_redirect_uris=[LOGOUT_URI], confidential=True)
        assert new.secret is not None
        with serving(app, sock, ssl_certfile=str(cert_file), ssl_keyfile=str(key_file)):
            yield LiveServer(issuer, ca_file, citizen, new.secret)
