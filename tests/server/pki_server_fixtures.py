"""The fixtures of the PKI route tests, loaded as a plugin
(``pytest_plugins = ("pki_server_fixtures",)``): the app with the CA passphrase under a
TestClient, a staff certificate, and a live plain-HTTP server whose CA was created with the
server's own URL as base URL, so the addresses inside its certificates point at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from pki_server_support import LivePki, issue_staff, make_app, pem
from server_support import ISSUER, TestClient

from conftest import PASSPHRASE
from kyso.context import Kyso
from kyso.pki.authority import CertificateAuthority
from kyso.pki.records import CertificateRecord
from loopback_support import loopback_socket, server_home, serving


@pytest.fixture
def pki_app(kyso: Kyso, ca: CertificateAuthority) -> FastAPI:
    return make_app(kyso)


@pytest.fixture
def pki_http(pki_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(pki_app, base_url=ISSUER, follow_redirects=False) as client:
        yield client


@pytest.fixture
def staff_cert(kyso: Kyso, ca: CertificateAuthority) -> CertificateRecord:
    return issue_staff(kyso, ca)


@pytest.fixture
def live_pki(tmp_path: Path, database_url: str | None) -> Iterator[LivePki]:
    """uvicorn over plain HTTP on a free loopback port, on the real clock; the CA's base URL
    is that server's URL."""
    with loopback_socket() as sock:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        with server_home(tmp_path / "home", database_url, ca_base_url=url) as kyso:
            ca = CertificateAuthority(kyso, PASSPHRASE)
            leaf = issue_staff(kyso, ca)
            files = {name: tmp_path / f"{name}.pem"
                     for name in ("root", "staff", "services", "leaf")}
            for name in ("root", "staff", "services"):
                files[name].write_bytes(pem(ca.certificate(name)))
            files["leaf"].write_bytes(leaf.pem)
            with serving(make_app(kyso), sock):
                yield LivePki(url, kyso, ca, leaf, files)
