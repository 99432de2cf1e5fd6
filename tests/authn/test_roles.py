"""Roles of e-ID identities (kyso.authn.roles): grant, revoke and list (idempotent, audited,
never the raw ID number), the roles a relying party reads from a token (kyso.authn.rp: ``roles``
and Keycloak's ``realm_access.roles``, ``role=`` and the FastAPI dependency's 403), and
check_holder, which refuses a token the provider no longer stands behind."""

from __future__ import annotations

import datetime as dt
import threading
import warnings
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import Depends, FastAPI

from conftest import T0, audit_events, audit_text
from kyso.authn.acr import ACR_LEVEL_2
from kyso.authn.keys import KeySet
from kyso.authn.registry import Level, LockGround, Person, Registry
from kyso.authn.roles import Role, Roles, check_holder, parse_role, roles_of
from kyso.authn.rp import InsufficientRoleError, TokenVerifier, VerifiedToken, require_token
from kyso.authn.tokens import TokenType, issue
from kyso.clock import FrozenClock
from kyso.context import Kyso
from kyso.errors import AuthnError, IdentityError, InvalidIdentifierError, TokenError
from kyso.store.schema import identity_roles, oidc_clients, oidc_tokens

with warnings.catch_warnings():  # starlette asks for httpx2; httpx is what the venv has
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

AN = {"id_number": "019099012345", "full_name": "Nguyễn Văn An", "birth_date": "1999-04-02",
      "sex": "male"}
BINH = {"id_number": "033301000123", "full_name": "Trần Thị Bình", "birth_date": "2001-05-17",
        "sex": "female"}
NOBODY = "001085001234"  # a valid ID number without an account
ISSUER = "https://id.thainguyen.gov.vn"
API = "kyso-api"
CLIENT = "kiem-toan"


@pytest.fixture
def an(kyso: Kyso) -> str:
    """An's subject (a level-2 account)."""
    return Registry(kyso.store, kyso.clock).create(Person.of(**AN), password_hash=None,
                                                   level=Level.TWO).subject


@pytest.fixture
def binh(kyso: Kyso) -> str:
    return Registry(kyso.store, kyso.clock).create(Person.of(**BINH), password_hash=None,
                                                   level=Level.TWO).subject


def role_events(kyso: Kyso) -> list[dict[str, Any]]:
    return [e for e in audit_events(kyso) if e["action"] in ("ROLE_GRANT", "ROLE_REVOKE")]


# --- grant, revoke, list ------------------------------------------------------------------------

def test_grant_gives_the_role_and_records_who_and_when(kyso: Kyso, an: str) -> None:
    change = Roles(kyso).grant(AN["id_number"], Role.AUDITOR)

    assert (change.changed, change.granted, change.roles) == (True, True, ("auditor",))
    assert roles_of(kyso.store, an) == ("auditor",)
    [grant] = Roles(kyso).list()
    assert (grant.subject, grant.role, grant.id_hint) == (an, "auditor", "019******345")
    assert (grant.granted_by, grant.granted_at) == ("admin:test", T0)
    assert change.to_dict() == {"id_number": "019******345", "subject": an, "role": "auditor",
                                "action": "grant", "changed": True, "roles": ["auditor"]}


def test_granting_twice_is_idempotent_and_says_so(kyso: Kyso, an: str,
                                                  clock: FrozenClock) -> None:
    roles = Roles(kyso)
    roles.grant(AN["id_number"], "auditor")
    clock.advance(dt.timedelta(hours=1))
    again = roles.grant(AN["id_number"], "auditor")

    assert again.changed is False
    assert [g.granted_at for g in roles.list()] == [T0]  # the first grant stands
    events = role_events(kyso)
    assert [(e["action"], e["outcome"], e["details"]["changed"]) for e in events] == [
        ("ROLE_GRANT", "success", True), ("ROLE_GRANT", "success", False)]


def test_revoke_takes_the_role_and_revoking_again_changes_nothing(kyso: Kyso, an: str) -> None:
    roles = Roles(kyso)
    roles.grant(AN["id_number"], Role.AUDITOR)
    roles.grant(AN["id_number"], Role.CA_ADMIN)

    first = roles.revoke(AN["id_number"], Role.AUDITOR)
    second = roles.revoke(AN["id_number"], Role.AUDITOR)

    assert (first.changed, first.roles) == (True, ("ca-admin",))
    assert (second.changed, second.granted) == (False, False)
    assert roles_of(kyso.store, an) == ("ca-admin",)
    assert [e["action"] for e in role_events(kyso)] == ["ROLE_GRANT", "ROLE_GRANT",
                                                        "ROLE_REVOKE", "ROLE_REVOKE"]


def test_roles_of_are_sorted_and_empty_for_an_identity_without_roles(kyso: Kyso, an: str,
                                                                     binh: str) -> None:
    roles = Roles(kyso)
    roles.grant(AN["id_number"], Role.CA_ADMIN)
    roles.grant(AN["id_number"], Role.AUDITOR)

    assert roles_of(kyso.store, an) == ("auditor", "ca-admin")
    assert roles_of(kyso.store, binh) == ()


def test_list_filters_by_account(kyso: Kyso, an: str, binh: str) -> None:
    roles = Roles(kyso)
    roles.grant(AN["id_number"], Role.AUDITOR)
    roles.grant(BINH["id_number"], Role.CA_ADMIN)

    assert [(g.id_hint, g.role) for g in roles.list()] == [("019******345", "auditor"),
                                                           ("033******123", "ca-admin")]
    assert [g.subject for g in roles.list(BINH["id_number"])] == [binh]


def test_an_unknown_identity_is_a_clear_error_recorded_with_the_masked_number(
        kyso: Kyso) -> None:
    with pytest.raises(IdentityError, match=r"no e-ID account for 001\*\*\*\*\*\*234") as info:
        Roles(kyso).grant(NOBODY, Role.AUDITOR)

    assert NOBODY not in str(info.value)
    [event] = role_events(kyso)
    assert (event["action"], event["outcome"]) == ("ROLE_GRANT", "failure")
    assert event["details"]["id_hint"] == "001******234"
    assert event["object"] == kyso.pseudonyms.pseudonym(NOBODY)
    with pytest.raises(IdentityError):
        Roles(kyso).list(NOBODY)


@pytest.mark.parametrize("bad", ["12345", "01909901234x", "", "019099012345678"])
def test_a_malformed_id_number_is_refused_before_anything_is_written(kyso: Kyso,
                                                                     bad: str) -> None:
    with pytest.raises(InvalidIdentifierError):
        Roles(kyso).grant(bad, Role.AUDITOR)
    assert role_events(kyso) == []


@pytest.mark.parametrize("bad", ["admin", "AUDITOR", "", "auditor "])
def test_an_unknown_role_names_the_known_ones(kyso: Kyso, an: str, bad: str) -> None:
    with pytest.raises(AuthnError, match="auditor, ca-admin"):
        Roles(kyso).grant(AN["id_number"], bad)
    with pytest.raises(AuthnError):
        parse_role(bad)
    assert roles_of(kyso.store, an) == ()


def test_role_events_carry_the_pseudonym_and_never_the_raw_id(kyso: Kyso, an: str) -> None:
    Roles(kyso).grant(AN["id_number"], Role.AUDITOR, by="admin:lan")
    Roles(kyso).revoke(AN["id_number"], Role.AUDITOR)

    grant, revoke = role_events(kyso)
    assert grant["object"] == kyso.pseudonyms.pseudonym(AN["id_number"])
    assert (grant["actor"], revoke["actor"]) == ("admin:lan", "admin:test")
    assert grant["details"] == {"id_hint": "019******345", "role": "auditor", "changed": True,
                                "roles": ["auditor"]}
    assert revoke["details"]["roles"] == []
    assert AN["id_number"] not in audit_text(kyso)


def test_concurrent_grants_of_one_role_leave_one_row(kyso: Kyso, an: str) -> None:
    results: list[bool] = []
    errors: list[BaseException] = []

    def grant() -> None:
        try:
            results.append(Roles(kyso).grant(AN["id_number"], Role.AUDITOR).changed)
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=grant) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert sorted(results) == [False] * 5 + [True]
    with kyso.store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(identity_roles)).scalar() == 1


# --- roles in tokens, as a relying party reads them ---------------------------------------------

@pytest.fixture
def keys(clock: FrozenClock) -> KeySet:
    return KeySet.create(clock)


@pytest.fixture
def rp(keys: KeySet, clock: FrozenClock) -> TokenVerifier:
    return TokenVerifier(ISSUER, keys, clock)


def access(keys: KeySet, clock: FrozenClock, subject: str = "u-an", **extra: Any) -> str:
    claims = {"client_id": CLIENT, "scope": "openid", "acr": ACR_LEVEL_2,
              "auth_time": int(clock.now().timestamp()), **extra}
    return issue(keys, typ=TokenType.ACCESS, issuer=ISSUER, subject=subject, audience=[API],
                 lifetime=dt.timedelta(minutes=30), clock=clock, claims=claims)


@pytest.mark.parametrize(("extra", "roles"), [
    ({}, frozenset()),
    ({"roles": ["auditor"]}, {"auditor"}),
    ({"realm_access": {"roles": ["auditor", "offline_access"]}}, {"auditor", "offline_access"}),
    ({"roles": ["ca-admin"], "realm_access": {"roles": ["auditor"]}}, {"auditor", "ca-admin"}),
    ({"roles": []}, frozenset()),
])
def test_a_verified_token_gives_its_roles(rp: TokenVerifier, keys: KeySet, clock: FrozenClock,
                                          extra: dict[str, Any], roles: set[str]) -> None:
    result = rp.verify(access(keys, clock, **extra), audience=API)
    assert result.roles == roles
    assert result.to_dict()["roles"] == sorted(roles)


@pytest.mark.parametrize("extra", [
    {"roles": "auditor"}, {"roles": [1]}, {"roles": [""]}, {"roles": {"auditor": True}},
    {"realm_access": ["auditor"]}, {"realm_access": {"roles": "auditor"}},
])
def test_a_malformed_roles_claim_is_refused(rp: TokenVerifier, keys: KeySet, clock: FrozenClock,
                                            extra: dict[str, Any]) -> None:
    with pytest.raises(TokenError, match=r"roles|realm_access"):
        rp.verify(access(keys, clock, **extra), audience=API)


def test_verify_with_a_role_refuses_a_token_without_it(rp: TokenVerifier, keys: KeySet,
                                                       clock: FrozenClock) -> None:
    assert rp.verify(access(keys, clock, roles=["auditor"]), audience=API,
                     role="auditor").has_role("auditor")
    with pytest.raises(InsufficientRoleError, match="auditor") as info:
        rp.verify(access(keys, clock, roles=["ca-admin"]), audience=API, role="auditor")
    assert info.value.www_authenticate.startswith('Bearer error="insufficient_scope"')


def test_the_dependency_answers_a_missing_role_with_403_insufficient_scope(
        rp: TokenVerifier, keys: KeySet, clock: FrozenClock) -> None:
    app = FastAPI()
    auditor_dep = Depends(require_token(rp, audience=API, role="auditor"))

    @app.get("/audit")
    def audit(token: VerifiedToken = auditor_dep) -> dict[str, Any]:
        return {"roles": sorted(token.roles)}

    client = TestClient(app, raise_server_exceptions=False)
    ok = client.get("/audit", headers={"Authorization": f"Bearer {access(keys, clock, roles=['auditor'])}"})
    assert ok.status_code == 200
    assert ok.json() == {"roles": ["auditor"]}
    no_role = client.get("/audit", headers={"Authorization": f"Bearer {access(keys, clock)}"})
    assert no_role.status_code == 403
    assert no_role.headers["www-authenticate"].startswith('Bearer error="insufficient_scope"')
    bad = client.get("/audit", headers={"Authorization": "Bearer not.a.token"})
    assert bad.status_code == 401
    assert bad.headers["www-authenticate"].startswith('Bearer error="invalid_token"')


# --- check_holder: does the provider still stand behind the token? -----------------------------

@pytest.fixture
def recorded(kyso: Kyso, keys: KeySet, clock: FrozenClock, rp: TokenVerifier,
             an: str) -> VerifiedToken:
    """An auditor's access token as the token endpoint would record it."""
    Roles(kyso).grant(AN["id_number"], Role.AUDITOR)
    token = rp.verify(access(keys, clock, subject=an, roles=["auditor"]), audience=API)
    now = clock.now()

    def work(conn: sa.Connection) -> None:
        conn.execute(sa.insert(oidc_clients).values(
            client_id=CLIENT, name="Kiểm toán", secret_hash=None, redirect_uris="[]",
            post_logout_redirect_uris="[]", scopes="openid", audiences='["kyso-api"]',
            status="active", created_at=now))
        conn.execute(sa.insert(oidc_tokens).values(
            jti=token.claims.jwt_id, kind="access", code_hash=None, client_id=CLIENT,
            subject=an, issued_at=now, expires_at=now + dt.timedelta(minutes=30),
            revoked_at=None))

    kyso.store.write(work)
    return token


def test_check_holder_accepts_a_recorded_token_whose_holder_has_the_role(
        kyso: Kyso, recorded: VerifiedToken) -> None:
    check_holder(kyso.store, recorded, Role.AUDITOR)  # no exception


def test_check_holder_refuses_a_token_the_provider_never_recorded(
        kyso: Kyso, keys: KeySet, clock: FrozenClock, rp: TokenVerifier, an: str) -> None:
    Roles(kyso).grant(AN["id_number"], Role.AUDITOR)
    token = rp.verify(access(keys, clock, subject=an, roles=["auditor"]), audience=API)
    with pytest.raises(TokenError, match="unknown to this provider"):
        check_holder(kyso.store, token, Role.AUDITOR)


@pytest.mark.parametrize(("change", "error", "needle"), [
    ("revoke-role", InsufficientRoleError, "no longer holds the auditor role"),
    ("revoke-token", TokenError, "revoked"),
    ("disable-client", TokenError, "disabled"),
    ("lock-account", TokenError, "locked"),
])
def test_check_holder_refuses_what_changed_since_minting(
        kyso: Kyso, recorded: VerifiedToken, change: str, error: type[Exception],
        needle: str) -> None:
    now = kyso.now()
    if change == "revoke-role":
        Roles(kyso).revoke(AN["id_number"], Role.AUDITOR)
    elif change == "revoke-token":
        kyso.store.write(lambda conn: conn.execute(sa.update(oidc_tokens).values(revoked_at=now)))
    elif change == "disable-client":
        kyso.store.write(lambda conn: conn.execute(sa.update(oidc_clients).values(
            status="disabled")))
    else:
        Registry(kyso.store, kyso.clock).lock(recorded.subject, LockGround.SECURITY, by="test")

    with pytest.raises(error, match=needle):
        check_holder(kyso.store, recorded, Role.AUDITOR)
