"""Token introspection logic (kyso.authn.oidc_introspect, RFC 7662): an active access token gets
its claims, anything else — revoked by code reuse, expired, an ID token, garbage, a token meant
for another audience, a locked account, a disabled client — gets ``{"active": false}`` and
nothing more; callers authenticate as confidential clients exactly as at the token endpoint;
one audit event per introspection, never the token."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import pytest
from introspect_support import (
    API,
    CITIZEN,
    ISSUER,
    OTHER,
    PORTAL,
    PUBLIC,
    Clients,
    Minted,
    make_citizen,
    mint,
    register_clients,
    reuse_code,
)

from conftest import audit_events, audit_text
from kyso.authn.acr import ACR_LEVEL_2
from kyso.authn.keys import KeySet
from kyso.authn.oidc import Provider
from kyso.authn.oidc_clients import ClientStatus
from kyso.authn.oidc_introspect import INTROSPECTION_PATH, Introspection, introspect
from kyso.authn.oidc_tokens import ACCESS_TOKEN_LIFETIME, Origin, TokenEndpointError
from kyso.authn.registry import LockGround, Registry
from kyso.authn.tokens import MAX_TOKEN_BYTES, TokenType, issue
from kyso.clock import FrozenClock
from kyso.context import Kyso


@pytest.fixture
def keys(clock: FrozenClock) -> KeySet:
    return KeySet.create(clock)


@pytest.fixture
def provider(kyso: Kyso, keys: KeySet) -> Provider:
    return Provider(kyso, keys, ISSUER)


@pytest.fixture
def clients(provider: Provider) -> Clients:
    return register_clients(provider)


@pytest.fixture
def subject(kyso: Kyso) -> str:
    return make_citizen(kyso)


@pytest.fixture
def minted(provider: Provider, clients: Clients, subject: str) -> Minted:
    return mint(provider, clients, subject)


def ask(provider: Provider, clients: Clients, token: str, caller: str = API,
        **params: str) -> Introspection:
    return introspect(provider.tokens, clients.form(caller, token=token, **params), None)


def refused(provider: Provider, form: dict[str, list[str]],
            authorization: str | None = None) -> TokenEndpointError:
    with pytest.raises(TokenEndpointError) as caught:
        introspect(provider.tokens, form, authorization)
    return caught.value


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def b64(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


# --- active tokens ----------------------------------------------------------------------------


def test_an_active_access_token_gets_its_claims(provider: Provider, clients: Clients,
                                                minted: Minted, subject: str,
                                                clock: FrozenClock) -> None:
    answer = ask(provider, clients, minted.access_token)
    now = int(clock.now().timestamp())
    assert answer.active
    assert answer.to_dict() == {
        "active": True, "scope": "openid profile", "client_id": PORTAL, "sub": subject,
        "aud": [API], "iss": ISSUER, "exp": now + int(ACCESS_TOKEN_LIFETIME.total_seconds()),
        "iat": now, "token_type": "Bearer", "acr": ACR_LEVEL_2, "auth_time": now - 20}


def test_the_client_the_token_was_issued_to_may_introspect_it(
        provider: Provider, clients: Clients, minted: Minted) -> None:
    # PORTAL's registered audiences are [API]: its own tokens name them.
    assert ask(provider, clients, minted.access_token, caller=PORTAL).active


def test_client_secret_basic_authenticates_like_at_the_token_endpoint(
        provider: Provider, clients: Clients, minted: Minted) -> None:
    answer = introspect(provider.tokens, {"token": [minted.access_token]},
                        basic(API, clients.secrets[API]))
    assert answer.active


def test_the_token_type_hint_changes_nothing(provider: Provider, clients: Clients,
                                            minted: Minted) -> None:
    for hint in ("access_token", "refresh_token", "something_else"):
        assert ask(provider, clients, minted.access_token, token_type_hint=hint).active
    assert not ask(provider, clients, minted.id_token, token_type_hint="id_token").active


def test_the_path_is_introspect() -> None:
    assert INTROSPECTION_PATH == "/introspect"


# --- inactive: {"active": false} and nothing else ----------------------------------------------


def test_a_token_revoked_by_code_reuse_is_inactive(provider: Provider, clients: Clients,
                                                   minted: Minted) -> None:
    assert ask(provider, clients, minted.access_token).active
    reuse_code(provider, clients, minted)
    answer = ask(provider, clients, minted.access_token)
    assert answer.to_dict() == {"active": False}
    assert "revoked" in answer.reason  # for the audit log only


def test_an_expired_token_is_inactive_without_leeway(provider: Provider, clients: Clients,
                                                     minted: Minted, clock: FrozenClock) -> None:
    clock.advance(ACCESS_TOKEN_LIFETIME - dt.timedelta(seconds=1))
    assert ask(provider, clients, minted.access_token).active
    clock.advance(dt.timedelta(seconds=1))  # exactly at exp: no 30 s leeway here
    assert ask(provider, clients, minted.access_token).to_dict() == {"active": False}


def test_expiry_follows_the_injected_clock(provider: Provider, clients: Clients,
                                           minted: Minted, clock: FrozenClock) -> None:
    later = FrozenClock(clock.now() + ACCESS_TOKEN_LIFETIME)
    form = clients.form(API, token=minted.access_token)
    assert not introspect(provider.tokens, form, None, clock=later).active
    assert introspect(provider.tokens, form, None).active  # the context's clock: still live


def test_an_id_token_is_not_an_active_access_token(provider: Provider, clients: Clients,
                                                   minted: Minted) -> None:
    # The ID token's audience is PORTAL, so PORTAL is the one that could ask.
    answer = ask(provider, clients, minted.id_token, caller=PORTAL)
    assert answer.to_dict() == {"active": False}
    assert "type" in answer.reason


@pytest.mark.parametrize("token", [
    "not-a-jwt", "a.b.c", "....", "x" * MAX_TOKEN_BYTES,
    b64({"alg": "none", "typ": "at+jwt"}) + "." + b64({"aud": API, "client_id": PORTAL}) + ".",
    b64({"alg": "HS256", "typ": "at+jwt"}) + "." + b64({"aud": [API, {"x": 1}]}) + ".c2ln",
    "é.é.é",
])
def test_garbage_is_inactive(provider: Provider, clients: Clients, token: str) -> None:
    assert ask(provider, clients, token).to_dict() == {"active": False}


def test_a_token_signed_by_another_key_is_inactive(provider: Provider, clients: Clients,
                                                   subject: str, clock: FrozenClock) -> None:
    forged = issue(KeySet.create(clock), typ=TokenType.ACCESS, issuer=ISSUER, subject=subject,
                   audience=[API], lifetime=dt.timedelta(minutes=5), clock=clock,
                   claims={"client_id": PORTAL, "acr": ACR_LEVEL_2, "scope": "openid"})
    assert not ask(provider, clients, forged).active


def test_a_validly_signed_token_the_provider_never_recorded_is_inactive(
        provider: Provider, clients: Clients, keys: KeySet, subject: str,
        clock: FrozenClock) -> None:
    unrecorded = issue(keys, typ=TokenType.ACCESS, issuer=ISSUER,
                       subject=subject, audience=[API], lifetime=dt.timedelta(minutes=5),
                       clock=clock, claims={"client_id": PORTAL, "acr": ACR_LEVEL_2})
    answer = ask(provider, clients, unrecorded)
    assert not answer.active
    assert "unknown to this provider" in answer.reason


def test_another_audiences_client_learns_nothing(provider: Provider, clients: Clients,
                                                 minted: Minted, subject: str) -> None:
    # PORTAL's token is for API; OTHER's audiences are [OTHER]: not its business.
    answer = ask(provider, clients, minted.access_token, caller=OTHER)
    assert answer.to_dict() == {"active": False}
    # …and the API's client cannot read OTHER's tokens either.
    theirs = mint(provider, clients, subject, client_id=OTHER)
    assert not ask(provider, clients, theirs.access_token, caller=API).active
    assert ask(provider, clients, theirs.access_token, caller=OTHER).active


def test_a_locked_account_makes_its_tokens_inactive(kyso: Kyso, provider: Provider,
                                                    clients: Clients, minted: Minted,
                                                    subject: str) -> None:
    Registry(kyso.store, kyso.clock).lock(subject, LockGround.HOLDER_REQUEST, by="officer:test")
    assert not ask(provider, clients, minted.access_token).active


def test_a_disabled_client_makes_its_tokens_inactive(provider: Provider, clients: Clients,
                                                     minted: Minted) -> None:
    provider.clients.set_status(PORTAL, ClientStatus.DISABLED)
    assert not ask(provider, clients, minted.access_token).active


# --- refused requests: the token endpoint's errors ---------------------------------------------


def test_a_wrong_or_missing_secret_is_invalid_client(provider: Provider, clients: Clients,
                                                     minted: Minted) -> None:
    token = [minted.access_token]
    cases = [
        {"token": token, "client_id": [API], "client_secret": ["wrong"]},
        {"token": token, "client_id": [API]},
        {"token": token},
        {"token": token, "client_id": ["nobody"], "client_secret": ["x"]},
    ]
    for form in cases:
        error = refused(provider, form)
        assert (error.error, error.status) == ("invalid_client", 401)
    error = refused(provider, {"token": token}, basic(API, "wrong"))
    assert (error.error, error.status) == ("invalid_client", 401)
    error = refused(provider, {"token": token}, "Bearer " + minted.access_token)
    assert error.error == "invalid_client"


def test_a_public_client_is_refused(provider: Provider, minted: Minted) -> None:
    error = refused(provider, {"token": [minted.access_token], "client_id": [PUBLIC]})
    assert (error.error, error.status) == ("invalid_client", 401)
    assert "confidential" in error.description


def test_a_disabled_caller_is_refused(provider: Provider, clients: Clients,
                                      minted: Minted) -> None:
    provider.clients.set_status(API, ClientStatus.DISABLED)
    assert refused(provider, clients.form(API, token=minted.access_token)).error == \
        "invalid_client"


@pytest.mark.parametrize("change", ["repeat-token", "repeat-hint", "repeat-client", "no-token",
                                    "empty-token", "huge-token", "huge-hint"])
def test_malformed_requests_are_invalid_request(provider: Provider, clients: Clients,
                                                minted: Minted, change: str) -> None:
    form = clients.form(API, token=minted.access_token)
    if change == "repeat-token":
        form["token"] = [minted.access_token, minted.access_token]
    elif change == "repeat-hint":
        form["token_type_hint"] = ["access_token", "access_token"]
    elif change == "repeat-client":
        form["client_id"] = [API, API]
    elif change == "no-token":
        del form["token"]
    elif change == "empty-token":
        form["token"] = [""]
    elif change == "huge-token":
        form["token"] = ["a" * (MAX_TOKEN_BYTES + 1)]
    else:
        form["token_type_hint"] = ["x" * 65]
    error = refused(provider, form)
    assert (error.error, error.status) == ("invalid_request", 400)
    assert minted.access_token not in error.description


# --- audit ------------------------------------------------------------------------------------


def test_each_introspection_is_one_event_with_the_client_and_a_pseudonym(
        kyso: Kyso, provider: Provider, clients: Clients, minted: Minted) -> None:
    before = len(audit_events(kyso))
    origin = Origin(source="10.0.0.7", request_id="req-1")
    introspect(provider.tokens, clients.form(API, token=minted.access_token), None, origin)
    introspect(provider.tokens, clients.form(OTHER, token=minted.access_token), None)
    with pytest.raises(TokenEndpointError):
        introspect(provider.tokens, {"token": [minted.access_token], "client_id": [API],
                                     "client_secret": ["wrong"]}, None)
    events = audit_events(kyso)[before:]
    assert [(e["action"], e["outcome"]) for e in events] == [
        ("INTROSPECT_TOKEN", "success"), ("INTROSPECT_TOKEN_ERROR", "failure"),
        ("INTROSPECT_TOKEN_ERROR", "failure")]
    pseudonym = kyso.pseudonyms.pseudonym(CITIZEN["id_number"])
    assert (events[0]["actor"], events[0]["object"]) == (API, pseudonym)
    assert (events[0]["source"], events[0]["request_id"]) == ("10.0.0.7", "req-1")
    assert events[1]["actor"] == OTHER
    assert events[1]["details"]["error"] == "inactive_token"
    assert "audience" in events[1]["details"]["reason"]
    assert events[2]["actor"] == "anonymous"
    assert events[2]["details"]["error"] == "invalid_client"
    text = audit_text(kyso)
    for part in minted.access_token.split("."):
        assert part not in text
    assert CITIZEN["id_number"] not in text
    assert clients.secrets[API] not in text
