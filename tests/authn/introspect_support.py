"""Helpers shared by the token introspection tests (tests/authn/test_oidc_introspect.py and the
online check in tests/authn/test_rp.py; imported by name): a provider with a level-2 citizen,
and real tokens minted through its own code path (authorization code → token exchange), without
the login pages."""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass, field
from typing import Any

import pytest

from kyso.authn.acr import ACR_LEVEL_2
from kyso.authn.oidc import Provider
from kyso.authn.oidc_tokens import Grant, TokenEndpointError, s256
from kyso.authn.passwords import PasswordHasher, hash_params
from kyso.authn.registry import Level, Person, Registry
from kyso.context import Kyso

ISSUER = "https://id.thainguyen.gov.vn"
REDIRECT = "https://rp.example.gov.vn/callback"
PORTAL = "dichvucong"  # the citizen portal: its tokens are for the civil-status API
API = "hotich-api"  # that API's audience; also the id of the API's own confidential client
OTHER = "thue-portal"  # a client whose tokens are for its own audience only
PUBLIC = "app-mobile"  # a public client
CITIZEN = {"id_number": "033301000123", "full_name": "Trần Thị Bình",
           "birth_date": "2001-05-17", "sex": "female", "phone": "0912345678"}


@dataclass(frozen=True)
class Clients:
    secrets: dict[str, str] = field(repr=False)

    def form(self, client_id: str, **params: str) -> dict[str, list[str]]:
        """A form as the server parses it, with client_secret_post credentials."""
        data = {"client_id": client_id, "client_secret": self.secrets[client_id], **params}
        return {k: [v] for k, v in data.items()}


def register_clients(provider: Provider) -> Clients:
    """PORTAL (confidential, audience API), API (confidential, audience itself), OTHER
    (confidential, audience itself) and PUBLIC (public)."""
    found: dict[str, str] = {}
    for client_id, audiences in ((PORTAL, [API]), (API, None), (OTHER, None)):
        new = provider.clients.add(client_id, client_id, [REDIRECT], audiences=audiences,
                                   confidential=True)
        assert new.secret is not None
        found[client_id] = new.secret
    provider.clients.add(PUBLIC, "Ứng dụng", [REDIRECT])
    return Clients(found)


def make_citizen(kyso: Kyso) -> str:
    """A level-2 citizen; the subject."""
    identity = Registry(kyso.store, kyso.clock).create(
        Person.of(**CITIZEN),  # type: ignore[arg-type]
        password_hash=PasswordHasher(hash_params("test-fast")).hash("Mat-khau-2026!xyz"),
        level=Level.TWO, officer="officer:test", evidence={"chip": "checked (test)"})
    return identity.subject


@dataclass(frozen=True)
class Minted:
    """A token response and what makes its code reusable (to revoke its tokens)."""

    response: dict[str, Any] = field(repr=False)
    code: str = field(repr=False)
    verifier: str = field(repr=False)

    @property
    def access_token(self) -> str:
        token: str = self.response["access_token"]
        return token

    @property
    def id_token(self) -> str:
        token: str = self.response["id_token"]
        return token


def _exchange_form(clients: Clients, client_id: str, code: str,
                   verifier: str) -> dict[str, list[str]]:
    return clients.form(client_id, grant_type="authorization_code", code=code,
                        redirect_uri=REDIRECT, code_verifier=verifier)


def mint(provider: Provider, clients: Clients, subject: str, client_id: str = PORTAL) -> Minted:
    """Tokens for ``subject`` issued to ``client_id`` by the provider's code exchange."""
    verifier = secrets.token_urlsafe(48)
    now = provider.kyso.now()
    code = provider.tokens.issue_code(Grant(
        client_id=client_id, subject=subject, redirect_uri=REDIRECT, scope=("openid", "profile"),
        code_challenge=s256(verifier), acr=ACR_LEVEL_2, amr=("pwd", "otp"),
        auth_time=now - dt.timedelta(seconds=20)))
    response = provider.tokens.exchange(_exchange_form(clients, client_id, code, verifier), None)
    return Minted(response, code, verifier)


def reuse_code(provider: Provider, clients: Clients, minted: Minted,
               client_id: str = PORTAL) -> None:
    """Present the minted code again: the provider revokes the tokens issued from it."""
    with pytest.raises(TokenEndpointError, match=r"already used.*revoked") as caught:
        provider.tokens.exchange(_exchange_form(clients, client_id, minted.code,
                                                minted.verifier), None)
    assert caught.value.error == "invalid_grant"
