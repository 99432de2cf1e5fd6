"""Helpers of the signing-gateway HTTP tests (imported by name): the gateway's OIDC clients,
access tokens minted through the real provider's login pages (a fresh step-up, a plain login,
level 1, another audience), enrolment over HTTP, and CSC request builders."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

import httpx
from server_support import (
    CLIENT_ID,
    ApiClients,
    Browser,
    Citizen,
    TestClient,
    access_token,
    bearer,
    register_api_clients,
)

from kyso.authn.acr import ACR_LEVEL_2
from kyso.authn.oidc import Provider
from kyso.clock import FrozenClock
from kyso.signing.gateway import AUDIENCE

SHA256 = "2.16.840.1.101.3.4.2.1"
ECDSA_SHA256 = "1.2.840.10045.4.3.2"
STEP_UP = {"prompt": "login", "max_age": "0", "acr_values": ACR_LEVEL_2}


def register_clients(provider: Provider) -> ApiClients:
    """The gateway's client (:data:`CLIENT_ID`, audience kyso-csc) and another relying party."""
    return register_api_clients(provider, AUDIENCE, "Ứng dụng ký số")


def mint(browser: Browser, clock: FrozenClock, citizen: Citizen, secret: str, *,
         client_id: str = CLIENT_ID, step_up: bool = True) -> str:
    """Log ``citizen`` in through the provider's pages (with ``prompt=login max_age=0
    acr_values=level 2`` unless ``step_up`` is False); the access token. The clock first moves
    one TOTP step, so the same citizen can log in again (codes are single-use)."""
    return access_token(browser, citizen, secret, client_id=client_id, clock=clock,
                        **(STEP_UP if step_up else {}))


def digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def post(http: TestClient, path: str, body: Any = None, token: str | None = None,
         version: str = "v2") -> httpx.Response:
    """``POST /csc/<version>/<path>`` (or an absolute ``/api/…`` path) with a JSON body."""
    url = path if path.startswith("/") else f"/csc/{version}/{path}"
    return http.post(url, json=body, headers=bearer(token) if token else {})


def authorize_body(credential_id: str, hashes: list[bytes], **extra: Any) -> dict[str, Any]:
    return {"credentialID": credential_id, "numSignatures": len(hashes),
            "hashes": [b64(h) for h in hashes], "hashAlgorithmOID": SHA256, **extra}


def sign_body(credential_id: str, sad: str, hashes: list[bytes], **extra: Any) -> dict[str, Any]:
    return {"credentialID": credential_id, "SAD": sad, "hashes": [b64(h) for h in hashes],
            "hashAlgorithmOID": SHA256, "signAlgo": ECDSA_SHA256, **extra}


def refused(response: httpx.Response, status: int, error: str) -> str:
    """Assert a JSON refusal; its ``error_description``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error"] == error, body
    assert "Traceback" not in response.text
    description: str = body["error_description"]
    return description


@dataclass(frozen=True)
class Enrolled:
    credential_id: str
    serial: str
    certificate_pem: str
    chain_pem: list[str]


def enrol(http: TestClient, token: str) -> httpx.Response:
    return post(http, "/api/v1/signing/credentials", {}, token)


def enrol_citizen(http: TestClient, browser: Browser, clock: FrozenClock, citizen: Citizen,
                  clients: ApiClients) -> Enrolled:
    """``citizen`` enrolled over HTTP with a fresh step-up."""
    response = enrol(http, mint(browser, clock, citizen, clients.api_secret))
    assert response.status_code == 201, response.text
    body = response.json()
    return Enrolled(body["credentialID"], body["serialNumber"], body["certificate"],
                    body["chain"])
