"""Key rotation on a running provider: a rotation made on disk (``kyso id keys rotate`` calls
:func:`kyso.authn.key_store.rotate_key_set`, as here, with the server's clock) reaches the app without
a restart — /jwks lists both keys, a token issued before still passes /userinfo, new tokens carry
the new kid and PyJWT verifies them from /jwks; the verifiers the token-protected APIs built at
start-up follow it; a relying party caching /jwks refetches it for the new kid; a changed key
set that does not load leaves the provider signing with the keys it has."""

from __future__ import annotations

import datetime as dt
from typing import Any

import jwt
import pytest
from fastapi import FastAPI
from server_support import (
    CLIENT_ID,
    ISSUER,
    KEY_PASSPHRASE,
    Browser,
    Citizen,
    TestClient,
    bearer,
    token_response,
)
from structlog.testing import capture_logs

from kyso.authn.acr import ACR_LEVEL_2
from kyso.authn.key_store import KEYSET_FILE, Rotation, rotate_key_set, save_key_set
from kyso.authn.keys import KeySet
from kyso.authn.oidc import Provider
from kyso.authn.registry import Level
from kyso.authn.rp import TokenVerifier
from kyso.authn.rp_keys import RemoteJwks
from kyso.authn.tokens import TokenType, UnknownKeyError, issue
from kyso.clock import FrozenClock
from kyso.context import Kyso

pytest_plugins = ("server_fixtures",)

API = "kyso-api"


def rotate(kyso: Kyso, *, compromised: bool = False) -> Rotation:
    """What ``kyso id keys rotate [--compromised]`` does, with the server's (frozen) clock."""
    return rotate_key_set(kyso.settings.token_keys_dir, KEY_PASSPHRASE, kyso.clock,
                          compromised=compromised, iterations=kyso.settings.key_kdf_iterations)


def jwks_kids(http: TestClient) -> list[str]:
    response = http.get("/jwks")
    assert response.status_code == 200, response.text
    return [key["kid"] for key in response.json()["keys"]]


def kid_of(token: str) -> str:
    kid: str = jwt.get_unverified_header(token)["kid"]
    return kid


def pyjwt_claims(http: TestClient, token: str, audience: str) -> dict[str, Any]:
    """PyJWT, an independent verifier, with the key /jwks publishes for the token's kid (the
    times are checked by our own verifier against the frozen clock)."""
    key = jwt.PyJWKSet.from_dict(http.get("/jwks").json())[kid_of(token)]
    claims: dict[str, Any] = jwt.decode(token, key.key, algorithms=["ES256"], audience=audience,
                                        issuer=ISSUER, options={"verify_exp": False,
                                                                "verify_iat": False,
                                                                "verify_nbf": False})
    return claims


def signed_by(keys: KeySet, clock: FrozenClock, subject: str) -> str:
    """An access token signed with ``keys``' current key, as another node would sign it."""
    return issue(keys, typ=TokenType.ACCESS, issuer=ISSUER, subject=subject, audience=API,
                 lifetime=dt.timedelta(minutes=30), clock=clock,
                 claims={"acr": ACR_LEVEL_2, "amr": ["pwd", "otp"], "client_id": CLIENT_ID,
                         "scope": "openid"})


def test_rotation_on_disk_reaches_the_running_provider_without_a_restart(
        browser: Browser, http: TestClient, level2: Citizen, client_secret: str, kyso: Kyso,
        clock: FrozenClock) -> None:
    before = token_response(browser, level2, client_secret)
    old_kid = kid_of(before["access_token"])
    published = jwks_kids(http)
    cached = jwt.PyJWKSet.from_dict(http.get("/jwks").json())  # a relying party's copy, by PyJWT
    assert published[0] == old_kid
    assert len(published) == 2

    rotation = rotate(kyso)
    assert rotation.previous_kid == old_kid
    assert rotation.current_kid == published[1]
    clock.advance(dt.timedelta(seconds=1))  # the provider looks at its key set once a second
    assert jwks_kids(http) == [rotation.current_kid, rotation.next_kid, old_kid]

    info = http.get("/userinfo", headers=bearer(before["access_token"]))
    assert info.status_code == 200, info.text  # issued before the rotation: still valid
    assert info.json()["sub"] == level2.subject

    after = token_response(browser, level2, client_secret, clock=clock)
    assert kid_of(after["access_token"]) == kid_of(after["id_token"]) == rotation.current_kid
    assert http.get("/userinfo", headers=bearer(after["access_token"])).status_code == 200
    for token in (before["id_token"], after["id_token"]):
        assert pyjwt_claims(http, token, CLIENT_ID)["sub"] == level2.subject
    assert pyjwt_claims(http, after["access_token"], CLIENT_ID)["client_id"] == CLIENT_ID
    # The copy fetched before the rotation verifies the new key's tokens: it was the next key.
    assert jwt.decode(after["id_token"], cached[rotation.current_kid].key, algorithms=["ES256"],
                      audience=CLIENT_ID, issuer=ISSUER,
                      options={"verify_exp": False, "verify_iat": False})["sub"] == level2.subject


def test_verifiers_built_at_start_up_follow_the_rotation(
        app: FastAPI, provider: Provider, level2: Citizen, kyso: Kyso,
        clock: FrozenClock) -> None:
    """The audit API's verifier (as the CA API's and the signing gateway's) was built over the
    provider's keys when the app started; a token signed by the key another node has just
    rotated to passes it at once: the next key, which it holds, or after a rotation for a
    compromise a key it has never seen (an unknown kid makes the provider look at its key set),
    and then the tokens signed before are refused."""
    verifier: TokenVerifier = app.state.auditor_tokens
    old = signed_by(provider.keys.snapshot(), clock, level2.subject)
    rotation = rotate(kyso)  # the clock does not move: no periodic look is due
    new = signed_by(rotation.key_set, clock, level2.subject)
    assert verifier.verify(new, audience=API, min_level=Level.TWO).subject == level2.subject
    assert verifier.verify(old, audience=API, min_level=Level.TWO).subject == level2.subject

    rotation = rotate(kyso, compromised=True)
    new = signed_by(rotation.key_set, clock, level2.subject)
    assert verifier.verify(new, audience=API, min_level=Level.TWO).subject == level2.subject
    assert provider.keys.snapshot().current.kid == rotation.current_kid
    with pytest.raises(UnknownKeyError):
        verifier.verify(old, audience=API, min_level=Level.TWO)


@pytest.mark.parametrize("compromised", [False, True], ids=["next-key", "compromised"])
def test_a_relying_party_caching_jwks_holds_the_next_key_and_refetches_after_a_compromise(
        http: TestClient, provider: Provider, level2: Citizen, kyso: Kyso,
        clock: FrozenClock, compromised: bool) -> None:
    fetches: list[str] = []

    def fetch(url: str) -> bytes:
        fetches.append(url)
        return http.get("/jwks").content

    relying_party = TokenVerifier(ISSUER, RemoteJwks(ISSUER + "/jwks", clock, fetch=fetch),
                                  clock)
    old = signed_by(provider.keys.snapshot(), clock, level2.subject)
    assert relying_party.verify(old, audience=API).claims.kid == kid_of(old)
    rotation = rotate(kyso, compromised=compromised)
    clock.advance(dt.timedelta(seconds=1))
    new = signed_by(provider.keys.snapshot(), clock, level2.subject)
    assert kid_of(new) == rotation.current_kid
    if compromised:
        # Within a minute of its last fetch a relying party does not refetch (forged kids must
        # not hammer the issuer), so a key never published waits for that minute.
        with pytest.raises(UnknownKeyError):
            relying_party.verify(new, audience=API)
        clock.advance(dt.timedelta(minutes=1))
    assert relying_party.verify(new, audience=API).claims.kid == rotation.current_kid
    if compromised:  # the refetched JWKS no longer holds the old key
        with pytest.raises(UnknownKeyError):
            relying_party.verify(old, audience=API)
    else:
        assert relying_party.verify(old, audience=API).claims.kid == rotation.previous_kid
    assert len(fetches) == (2 if compromised else 1)  # the next key was there: no refetch


def test_a_changed_key_set_that_does_not_load_leaves_the_provider_as_it_was(
        browser: Browser, http: TestClient, level2: Citizen, client_secret: str,
        provider: Provider, kyso: Kyso, clock: FrozenClock, tmp_path: Any) -> None:
    keys = provider.keys.snapshot()
    elsewhere = tmp_path / "elsewhere"  # a rotation saved with another passphrase, copied in
    rotated = keys.rotate(clock)
    save_key_set(elsewhere, rotated, "another-token-key-passphrase", iterations=2000)
    directory = kyso.settings.token_keys_dir
    new_key = f"{rotated.next.kid}.key.pem"  # type: ignore[union-attr]  # the one new key
    (directory / new_key).write_bytes((elsewhere / new_key).read_bytes())
    (directory / KEYSET_FILE).write_bytes((elsewhere / KEYSET_FILE).read_bytes())
    with capture_logs() as logs:
        clock.advance(dt.timedelta(seconds=1))
        assert jwks_kids(http) == [k.kid for k in keys]
        response = token_response(browser, level2, client_secret, clock=clock)
    assert kid_of(response["access_token"]) == keys.current.kid
    assert http.get("/userinfo", headers=bearer(response["access_token"])).status_code == 200
    (warning,) = [e for e in logs if e["log_level"] == "warning"]
    assert warning["event"] == "token_keys_reload_failed"
    assert "wrong passphrase" in warning["reason"]
    assert KEY_PASSPHRASE not in str(logs)
