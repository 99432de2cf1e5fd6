"""The real signing gateway for the client tests (``test_csc_client``, ``test_pdf_cli_remote``),
with its fixture ``live_gateway`` (import it by name): ``kyso serve``'s app
served by uvicorn over plain HTTP on a free loopback port, on the real clock, with a CA whose
base URL is that server (so the OCSP, CRL, issuer and TSA addresses inside the certificates
point at it), the CA passphrase (the gateway can enrol and sign), a portal registered for its
own audience and the gateway's (``kyso-csc``), and level-2 / level-1 citizens with a password
and a TOTP app.

The citizen logs in through the provider's own pages (authorize → password → one-time code →
code → token), driven in-process by a Starlette TestClient on the same app: the provider's
session cookie is a ``__Host-`` Secure cookie, which an HTTP client sends back over HTTPS only,
and the TestClient speaks "https" to the app without a socket. Every other call — the CSC
client's, ``kyso pdf sign --remote``'s, ``--online``'s — goes over the real socket."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from cryptography.hazmat.primitives import serialization
from fastapi import FastAPI

from conftest import PASSPHRASE
from kyso.authn.acr import ACR_LEVEL_2
from kyso.authn.credentials import OtpCredentials
from kyso.authn.passwords import PasswordHasher, hash_params
from kyso.authn.registry import Level, Person, Registry
from kyso.authn.sealing import SecretSealer
from kyso.context import Kyso
from kyso.demo_steps import Phone
from kyso.demo_web import loopback_tls_files
from kyso.pki.authority import CertificateAuthority
from kyso.server.app import create_app
from kyso.signing.csc_client import CscClient, EnrolledCredential
from kyso.signing.gateway import AUDIENCE
from loopback_support import loopback_socket, server_home, serving

with warnings.catch_warnings():
    # Starlette 1.x warns at import that it prefers the httpx2 fork; plain httpx works.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

KEY_PASSPHRASE = "token-key-passphrase-for-tests"
PORTAL = "dichvucong"
OTHER = "hotich"  # a client whose tokens are for itself only
REDIRECT_URI = "https://dichvucong.thainguyen.gov.vn/callback"
PASSWORD = "Mat-khau-2026!xyz"
BINH = {"id_number": "033301000123", "full_name": "Trần Thị Bình", "birth_date": "2001-05-17",
        "sex": "female"}
CUONG = {"id_number": "001099004567", "full_name": "Lê Văn Cường", "birth_date": "1999-01-02",
         "sex": "male"}
DUNG = {"id_number": "019199012345", "full_name": "Phạm Thị Dung", "birth_date": "1999-04-02",
        "sex": "female"}
CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


@dataclass
class Citizen:
    id_number: str = field(repr=False)
    phone: Phone = field(repr=False)
    level: Level


@dataclass
class LiveGateway:
    """The running server: its URL, home, CA, the root certificate file, the portal's secrets
    and the in-process browser."""

    url: str
    kyso: Kyso
    ca: CertificateAuthority
    root: Path
    app: FastAPI = field(repr=False)
    browser: TestClient = field(repr=False)
    secrets: dict[str, str] = field(repr=False)

    @property
    def home(self) -> Path:
        return self.kyso.settings.home

    def citizen(self, data: dict[str, str], level: Level = Level.TWO) -> Citizen:
        """A citizen with a password and a confirmed TOTP app (its first code used)."""
        person = Person.of(**data)  # type: ignore[arg-type]
        identity = Registry(self.kyso.store, self.kyso.clock).create(
            person, password_hash=PasswordHasher(hash_params("test-fast")).hash(PASSWORD),
            level=level, **({"officer": "officer:test", "evidence": {"chip": "checked (test)"}}
                            if level is Level.TWO else {}))
        credentials = OtpCredentials(self.kyso.store, self.kyso.clock,
                                     SecretSealer.for_home(self.home))
        enrolment = credentials.begin_totp(identity.subject)
        phone = Phone(enrolment.secret, self.kyso.clock)
        provider = self.app.state.provider
        credentials.confirm_totp(identity.subject, enrolment.credential_id, phone.code(),
                                 provider.login.totp)
        return Citizen(person.id_number, phone, level)

    def login(self, citizen: Citizen, client_id: str = PORTAL, *, step_up: bool = False) -> str:
        """The citizen logs in through the provider's pages for ``client_id``; the access
        token (``step_up``: ``prompt=login max_age=0 acr_values=level 2``, as a portal asks
        before a signature)."""
        b = self.browser
        b.cookies.clear()
        params = {"response_type": "code", "client_id": client_id,
                  "redirect_uri": REDIRECT_URI, "scope": "openid profile", "state": "st",
                  "nonce": "n", "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
                  "code_challenge_method": "S256"}
        if step_up:
            params.update(prompt="login", max_age="0", acr_values=ACR_LEVEL_2)
        page = b.get("/authorize?" + urlencode(params))
        assert page.status_code == 200, page.text
        page = b.post("/login/password", data={"csrf": _csrf(page.text),
                                                "id_number": citizen.id_number,
                                                "password": PASSWORD})
        assert page.status_code == 200, page.text
        done = b.post("/login/otp", data={"csrf": _csrf(page.text), "factor": "totp",
                                          "code": citizen.phone.code()})
        assert done.status_code == 303, done.text
        code = parse_qs(urlsplit(done.headers["location"]).query)["code"][0]
        token = b.post("/token", data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
            "code_verifier": "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            "client_id": client_id, "client_secret": self.secrets[client_id]})
        assert token.status_code == 200, token.text
        access: str = token.json()["access_token"]
        return access

    def client(self, token: str) -> CscClient:
        return CscClient(self.url, token, timeout=30)

    def enrol(self, citizen: Citizen) -> EnrolledCredential:
        """Her signing credential, enrolled with a fresh level-2 login."""
        return self.client(self.login(citizen)).enrol()


def _csrf(html: str) -> str:
    found = CSRF.search(html)
    assert found is not None, html
    return found.group(1)


@pytest.fixture
def live_gateway(tmp_path: Path, database_url: str | None) -> Iterator[LiveGateway]:
    with loopback_socket() as sock:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        with server_home(tmp_path / "gateway-home", database_url, ca_base_url=url) as kyso:
            ca = CertificateAuthority(kyso, PASSPHRASE)
            root = tmp_path / "root.pem"
            root.write_bytes(ca.certificate("root").public_bytes(serialization.Encoding.PEM))
            app = create_app(kyso.settings, kyso=kyso, key_passphrase=KEY_PASSPHRASE,
                             issuer=url, ca_passphrase=PASSPHRASE)
            clients = app.state.provider.clients
            secrets: dict[str, Any] = {
                PORTAL: clients.add(PORTAL, "Cổng dịch vụ công", [REDIRECT_URI],
                                    confidential=True, audiences=[PORTAL, AUDIENCE]).secret,
                OTHER: clients.add(OTHER, "Hộ tịch", [REDIRECT_URI], confidential=True).secret}
            with serving(app, sock), TestClient(app, base_url=url.replace("http:", "https:"),
                                                follow_redirects=False) as browser:
                yield LiveGateway(url, kyso, ca, root, app, browser, secrets)


@dataclass(frozen=True)
class TlsGateway:
    """The same app also served over HTTPS, with the demo's throw-away TLS CA."""

    url: str
    ca_file: Path


@pytest.fixture
def tls_gateway(live_gateway: LiveGateway, tmp_path: Path) -> Iterator[TlsGateway]:
    folder = tmp_path / "tls"
    folder.mkdir()
    ca_file, cert_file, key_file = loopback_tls_files(folder)
    with loopback_socket() as sock, serving(live_gateway.app, sock, ssl_certfile=str(cert_file),
                                            ssl_keyfile=str(key_file)):
        yield TlsGateway(f"https://127.0.0.1:{sock.getsockname()[1]}", ca_file)
