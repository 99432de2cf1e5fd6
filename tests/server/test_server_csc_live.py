"""Acceptance (issue 7): pyHanko's own CSC client — ``CSCSigner`` with a small
``CSCAuthorizationManager`` that calls ``credentials/authorize`` with the hashes, as pyHanko's
documentation shows — signs a PDF through a running gateway (uvicorn on loopback: HTTPS for
the e-ID login and the CSC API, plain HTTP for the OCSP and CRL URLs inside the certificates),
and ``kyso pdf verify`` trusting only the root says TOTAL-PASSED."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from csc_support import register_clients
from live_support import make_tls
from pki_server_support import kyso_cli
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign.fields import SigSeedSubFilter
from pyhanko.sign.general import SigningError
from pyhanko.sign.signers import PdfSignatureMetadata, PdfSigner
from pyhanko.sign.signers.csc_signer import (
    CSCAuthorizationInfo,
    CSCAuthorizationManager,
    CSCCredentialInfo,
    CSCServiceSessionInfo,
    CSCSigner,
    fetch_certs_in_csc_credential,
)
from server_support import (
    KEY_PASSPHRASE,
    LEVEL2,
    Browser,
    Citizen,
    authorize_params,
    exchange,
    make_citizen,
    pkce_pair,
)

from conftest import PASSPHRASE, audit_events
from kyso.authn.acr import ACR_LEVEL_2
from kyso.authn.registry import Level
from kyso.clock import SystemClock
from kyso.context import Kyso
from kyso.pki.authority import CertificateAuthority
from kyso.server.app import create_app
from kyso.signing.sample import sample_pdf
from loopback_support import loopback_socket, server_home, serving

pytest_plugins = ("server_fixtures",)


@dataclass(frozen=True)
class LiveGateway:
    issuer: str  # https: the provider and the gateway
    pki_url: str  # http: the CA's base URL (OCSP, CRL, CA certificates)
    tls_ca: Path
    root_pem: Path
    citizen: Citizen
    secret: str = field(repr=False)
    kyso: Kyso = field(repr=False)

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.tls_ca))


@pytest.fixture
def live_gateway(tmp_path: Path, database_url: str | None) -> Iterator[LiveGateway]:
    tls_ca, cert_file, key_file = make_tls(tmp_path)
    with loopback_socket() as tls_sock, loopback_socket() as plain_sock:
        issuer = f"https://127.0.0.1:{tls_sock.getsockname()[1]}"
        pki_url = f"http://127.0.0.1:{plain_sock.getsockname()[1]}"
        with server_home(tmp_path / "home", database_url, ca_base_url=pki_url) as kyso:
            root = tmp_path / "root.pem"
            root.write_bytes(CertificateAuthority(kyso, PASSPHRASE).certificate("root")
                             .public_bytes(serialization.Encoding.PEM))
            citizen = make_citizen(kyso, LEVEL2, Level.TWO)
            app = create_app(kyso.settings, kyso=kyso, key_passphrase=KEY_PASSPHRASE,
                             issuer=issuer, ca_passphrase=PASSPHRASE)
            clients = register_clients(app.state.provider)
            with serving(app, plain_sock), serving(app, tls_sock, ssl_certfile=str(cert_file),
                                                   ssl_keyfile=str(key_file)):
                yield LiveGateway(issuer, pki_url, tls_ca, root, citizen, clients.api_secret,
                                  kyso)


def step_up(live: LiveGateway) -> str:
    """The citizen's fresh level-2 login over HTTPS (password + TOTP on the provider's pages,
    ``prompt=login max_age=0``); the access token for the gateway."""
    with httpx.Client(base_url=live.issuer, verify=live.ssl_context(),
                      follow_redirects=False, timeout=30) as client:
        browser = Browser(client, SystemClock())  # type: ignore[arg-type]
        verifier, challenge = pkce_pair()
        result = browser.login(authorize_params(challenge, prompt="login", max_age="0",
                                                acr_values=ACR_LEVEL_2), live.citizen)
        response = exchange(client, result["code"], verifier,  # type: ignore[arg-type]
                            secret=live.secret)
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def enrol_over_https(live: LiveGateway, token: str) -> str:
    """The citizen's credential, enrolled at the gateway with her fresh login; its id."""
    enrolled = httpx.post(f"{live.issuer}/api/v1/signing/credentials", json={},
                          headers={"Authorization": f"Bearer {token}"},
                          verify=live.ssl_context(), timeout=30)
    assert enrolled.status_code == 201, enrolled.text
    credential_id: str = enrolled.json()["credentialID"]
    return credential_id


class StepUpAuthorization(CSCAuthorizationManager):
    """Calls ``credentials/authorize`` with the hashes pyHanko is about to sign (SCAL 2)."""

    def __init__(self, session_info: CSCServiceSessionInfo, credential: CSCCredentialInfo,
                 session: aiohttp.ClientSession) -> None:
        super().__init__(session_info, credential)
        self.session = session
        self.answers: list[tuple[int, dict[str, Any]]] = []

    async def authorize_signature(self, hash_b64s: list[str]) -> CSCAuthorizationInfo:
        body = self.format_csc_auth_request(hash_b64s=hash_b64s)
        async with self.session.post(self.csc_session_info.endpoint_url("credentials/authorize"),
                                     headers=self.auth_headers, json=body) as response:
            answer = await response.json()
            self.answers.append((response.status, answer))
            if response.status != 200:
                raise SigningError(f"authorize answered {response.status}")
            return self.parse_csc_auth_response(answer)


async def sign_with_pyhanko(live: LiveGateway, token: str, credential_id: str, source: Path,
                            output: Path, manager_out: list[StepUpAuthorization] | None = None
                            ) -> CSCCredentialInfo:
    connector = aiohttp.TCPConnector(ssl=live.ssl_context())
    async with aiohttp.ClientSession(connector=connector) as session:
        info = CSCServiceSessionInfo(live.issuer, credential_id, oauth_token=token, api_ver="v1")
        credential = await fetch_certs_in_csc_credential(session, info)
        manager = StepUpAuthorization(info, credential, session)
        if manager_out is not None:
            manager_out.append(manager)
        signer = CSCSigner(session, manager)
        meta = PdfSignatureMetadata(field_name="CongDan", subfilter=SigSeedSubFilter.PADES,
                                    md_algorithm="sha256", reason="Đơn đề nghị cấp giấy khai sinh")
        with source.open("rb") as inf, output.open("wb") as outf:
            await PdfSigner(meta, signer=signer).async_sign_pdf(
                IncrementalPdfFileWriter(inf), output=outf)
        return credential


def test_pyhankos_csc_signer_signs_through_the_running_gateway_and_kyso_verifies_it(
        live_gateway: LiveGateway, tmp_path: Path) -> None:
    live = live_gateway
    token = step_up(live)
    credential_id = enrol_over_https(live, token)
    source, signed = tmp_path / "don.pdf", tmp_path / "don-ky.pdf"
    source.write_bytes(sample_pdf(pages=1))

    managers: list[StepUpAuthorization] = []
    credential = asyncio.run(sign_with_pyhanko(live, token, credential_id, source, signed,
                                               managers))
    done = kyso_cli(tmp_path / "verifier-home", "--format", "json", "pdf", "verify", str(signed),
                    "--trust", str(live.root_pem), "--online")

    assert [status for status, _answer in managers[0].answers] == [200]
    assert credential.hash_pinning_required  # SCAL 2
    assert credential.max_batch_size == 10
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["indication"] == "TOTAL-PASSED", report
    [signature] = report["signatures"]
    assert signature["revocation"]["status"] == "good", signature
    assert "Trần Thị Bình" in json.dumps(signature, ensure_ascii=False)
    actions = [(e["action"], e["outcome"]) for e in audit_events(live.kyso)
               if e["layer"] == "signing"]
    assert actions == [("CSC_CREDENTIAL_ENROL", "success"), ("CSC_AUTHORIZE", "success"),
                       ("CSC_SIGN_HASH", "success")]
    [sign_event] = [e for e in audit_events(live.kyso) if e["action"] == "CSC_SIGN_HASH"]
    [authorize_event] = [e for e in audit_events(live.kyso) if e["action"] == "CSC_AUTHORIZE"]
    assert sign_event["details"]["hashes"] == authorize_event["details"]["hashes"]
    assert sign_event["object"] == credential_id


def test_pyhankos_client_is_refused_a_second_approval_with_the_same_login(
        live_gateway: LiveGateway, tmp_path: Path) -> None:
    live = live_gateway
    token = step_up(live)
    credential_id = enrol_over_https(live, token)
    source = tmp_path / "don.pdf"
    source.write_bytes(sample_pdf(pages=1))
    asyncio.run(sign_with_pyhanko(live, token, credential_id, source, tmp_path / "first.pdf"))

    managers: list[StepUpAuthorization] = []
    with pytest.raises(SigningError):
        asyncio.run(sign_with_pyhanko(live, token, credential_id, source,
                                      tmp_path / "second.pdf", managers))

    [(status, answer)] = managers[0].answers
    assert status == 401
    assert answer["error"] == "insufficient_user_authentication"
    assert "already authorized" in answer["error_description"]
