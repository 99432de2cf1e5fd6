"""Client registration: exact redirect URIs, validation, secrets stored as hashes only."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import sqlalchemy as sa

from kyso.authn.oidc_clients import ClientRegistry, hash_client_secret, validate_redirect_uri
from kyso.authn.passwords import PasswordHasher, hash_params
from kyso.context import Kyso
from kyso.errors import AuthenticationFailedError, AuthnError
from kyso.store.schema import oidc_clients


@pytest.fixture
def registry(kyso: Kyso) -> ClientRegistry:
    return ClientRegistry(kyso.store, kyso.clock, PasswordHasher(hash_params("test-fast")))


@pytest.mark.parametrize("uri", [
    "https://rp.example.gov.vn/cb", "https://rp.example.gov.vn:8443/cb?x=1",
    "http://127.0.0.1:9000/cb", "http://localhost/cb", "http://[::1]:8080/cb",
])
def test_acceptable_redirect_uris_are_kept_unchanged(uri: str) -> None:
    assert validate_redirect_uri(uri) == uri


@pytest.mark.parametrize("uri", [
    "", "rp.example/cb", "/cb", "ftp://rp.example/cb", "javascript:alert(1)",
    "http://rp.example.gov.vn/cb", "https://rp.example/cb#frag", "https://user@rp.example/cb",
    "https://rp.example/c b", "https://rp.example/cb\n", "https://rp.exämple/cb",
    "https:///cb", "https://rp.example:99999/cb", "https://" + "a" * 2100, 42, None,
])
def test_unacceptable_redirect_uris_are_refused(uri: object) -> None:
    with pytest.raises(AuthnError):
        validate_redirect_uri(uri)


def test_confidential_client_secret_is_shown_once_and_stored_hashed(
        registry: ClientRegistry, kyso: Kyso) -> None:
    new = registry.add("rp-1", "Cổng DVC", ["https://rp.example/cb"], confidential=True)
    assert new.secret
    assert new.client.confidential
    assert new.secret not in repr(new)
    with kyso.store.read() as conn:
        stored = conn.execute(sa.select(oidc_clients.c.secret_hash)).scalar()
    assert stored == hash_client_secret(new.secret)
    assert stored == "sha256:" + hashlib.sha256(new.secret.encode()).hexdigest()
    assert new.secret not in stored
    registry.authenticate(new.client, new.secret)
    with pytest.raises(AuthenticationFailedError):
        registry.authenticate(new.client, new.secret + "x")
    with pytest.raises(AuthenticationFailedError):
        registry.authenticate(new.client, None)


class CountingHasher(PasswordHasher):
    def __init__(self) -> None:
        super().__init__(hash_params("test-fast"))
        self.verifications = 0

    def verify(self, stored: str | None, password: str) -> Any:
        self.verifications += 1
        return super().verify(stored, password)


def stored_hash(kyso: Kyso, client_id: str) -> str:
    with kyso.store.read() as conn:
        value = conn.execute(sa.select(oidc_clients.c.secret_hash).where(
            oidc_clients.c.client_id == client_id)).scalar()
    assert isinstance(value, str)
    return value


def test_a_client_secret_is_checked_without_argon2(kyso: Kyso) -> None:
    hasher = CountingHasher()
    registry = ClientRegistry(kyso.store, kyso.clock, hasher)
    new = registry.add("rp-1", "Cổng DVC", ["https://rp.example/cb"], confidential=True)
    assert new.secret is not None
    for _ in range(3):
        registry.authenticate(new.client, new.secret)
    with pytest.raises(AuthenticationFailedError):
        registry.authenticate(new.client, "garbage")
    assert hasher.verifications == 0


def test_a_secret_hashed_with_argon2_before_still_works_and_its_hash_becomes_the_digest(
        kyso: Kyso) -> None:
    hasher = CountingHasher()
    registry = ClientRegistry(kyso.store, kyso.clock, hasher)
    new = registry.add("rp-1", "Cổng DVC", ["https://rp.example/cb"], confidential=True)
    assert new.secret is not None
    legacy = hasher.hash(new.secret)
    kyso.store.write(lambda conn: conn.execute(sa.update(oidc_clients).values(secret_hash=legacy)))

    with pytest.raises(AuthenticationFailedError):
        registry.authenticate(new.client, new.secret + "x")
    assert stored_hash(kyso, "rp-1") == legacy  # a wrong secret changes nothing
    registry.authenticate(new.client, new.secret)
    assert stored_hash(kyso, "rp-1") == hash_client_secret(new.secret)
    assert hasher.verifications == 2
    registry.authenticate(new.client, new.secret)
    assert hasher.verifications == 2
    with pytest.raises(AuthenticationFailedError):
        registry.authenticate(new.client, new.secret + "x")


@pytest.mark.parametrize("secret", [
    "", "x" * 513, "\ud800", "\x00" * 43, "mật khẩu", "sha256:", None,
])
def test_hostile_client_secrets_are_refused(registry: ClientRegistry, secret: str | None) -> None:
    new = registry.add("rp-1", "Cổng DVC", ["https://rp.example/cb"], confidential=True)
    with pytest.raises(AuthenticationFailedError):
        registry.authenticate(new.client, secret)


def test_the_digest_of_another_secret_is_not_a_secret(registry: ClientRegistry, kyso: Kyso) -> None:
    new = registry.add("rp-1", "Cổng DVC", ["https://rp.example/cb"], confidential=True)
    with pytest.raises(AuthenticationFailedError):
        registry.authenticate(new.client, stored_hash(kyso, "rp-1"))


def test_public_client_has_no_secret_and_may_not_present_one(registry: ClientRegistry) -> None:
    new = registry.add("spa", "SPA", ["http://127.0.0.1:5173/cb"])
    assert new.secret is None
    assert not new.client.confidential
    registry.authenticate(new.client, None)
    with pytest.raises(AuthenticationFailedError):
        registry.authenticate(new.client, "anything")


def test_audiences_default_to_the_client_id(registry: ClientRegistry) -> None:
    assert registry.add("rp-2", "RP", ["https://rp/cb"]).client.audiences == ("rp-2",)
    assert registry.add("rp-3", "RP", ["https://rp/cb"],
                        audiences=["https://api.example"]).client.audiences == (
        "https://api.example",)


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"client_id": "bad id"}, "client id"),
    ({"client_id": ""}, "client id"),
    ({"name": "  "}, "name"),
    ({"redirect_uris": []}, "at least one"),
    ({"scopes": "profile"}, "openid"),
    ({"scopes": "openid admin"}, "scopes"),
])
def test_bad_registrations_are_refused_with_a_named_reason(
        registry: ClientRegistry, kwargs: dict[str, object], needle: str) -> None:
    args: dict[str, object] = {"client_id": "rp-x", "name": "RP",
                               "redirect_uris": ["https://rp/cb"]}
    args.update(kwargs)
    with pytest.raises(AuthnError, match=needle):
        registry.add(**args)  # type: ignore[arg-type]


def test_a_client_id_is_registered_once(registry: ClientRegistry) -> None:
    registry.add("rp-1", "RP", ["https://rp/cb"])
    with pytest.raises(AuthnError, match="already registered"):
        registry.add("rp-1", "RP again", ["https://rp/cb2"])
    assert [c.name for c in registry.list()] == ["RP"]


@pytest.mark.parametrize("value", [None, 3, "", "x" * 65, "nobody", "../etc"])
def test_get_returns_none_for_anything_not_registered(registry: ClientRegistry,
                                                       value: object) -> None:
    assert registry.get(value) is None
