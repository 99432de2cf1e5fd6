"""The auditor's read API of ``kyso serve`` (/api/v1/audit/…): who gets in (a level-2 access
token for the kyso-api audience carrying the auditor role, still backed by the provider) and
how everyone else is refused (RFC 6750 / RFC 9470 challenges), what it answers (events paged as
``kyso audit show`` gives them, the latest checkpoint, proof bundles that verify offline, the
``kyso audit verify`` report), bad parameters, and that every call is itself audited."""

from __future__ import annotations

import datetime as dt
import warnings
from typing import Any

import httpx
import jwt
import pytest
from cryptography import x509
from fastapi import FastAPI
from server_support import (
    CLIENT_ID,
    ISSUER,
    LEVEL1,
    OTHER_CLIENT,
    ApiClients,
    Browser,
    Citizen,
    TestClient,
    authorize_params,
    bearer,
    exchange,
    make_citizen,
    pkce_pair,
    register_api_clients,
    token_response,
)

from conftest import PASSPHRASE, audit_events, audit_text
from kyso.audit.proofs import parse_bundle, verify_bundle
from kyso.audit.segments import Layout, list_segments
from kyso.audit.signer import create_checkpoint, verify_with_store
from kyso.authn.enrolment import lock_identity
from kyso.authn.oidc import Provider
from kyso.authn.registry import Level, LockGround
from kyso.authn.roles import Role, Roles
from kyso.clock import FrozenClock
from kyso.context import Kyso
from kyso.errors import ProofError
from kyso.pki.authority import CertificateAuthority, list_authorities, list_services
from kyso.server.audit_routes import AUDIENCE, MAX_PAGE

pytest_plugins = ("server_fixtures",)


@pytest.fixture
def clients(provider: Provider) -> ApiClients:
    return register_api_clients(provider, AUDIENCE, "Kiểm toán viên")


@pytest.fixture
def auditor(kyso: Kyso, level2: Citizen) -> Citizen:
    Roles(kyso).grant(level2.id_number, Role.AUDITOR)
    return level2


def tokens_for(browser: Browser, clock: FrozenClock, citizen: Citizen, secret: str,
               client_id: str = CLIENT_ID) -> dict[str, Any]:
    """A login through the provider's pages, a TOTP step after the last one (codes are
    single-use); the token response."""
    return token_response(browser, citizen, secret, client_id=client_id, clock=clock)


@pytest.fixture
def token(browser: Browser, clock: FrozenClock, auditor: Citizen, clients: ApiClients) -> str:
    access: str = tokens_for(browser, clock, auditor, clients.api_secret)["access_token"]
    return access


@pytest.fixture
def checkpointed(kyso: Kyso, ca: CertificateAuthority) -> int:
    """A signed checkpoint of the log as it is now; its tree size."""
    return create_checkpoint(kyso, PASSPHRASE).checkpoint.size


def get(http: TestClient, path: str, token: str | None = None, **params: Any) -> httpx.Response:
    return http.get(path, params=params, headers=bearer(token) if token else {})


def refused(response: httpx.Response, status: int, error: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == error
    challenge: str = response.headers.get("www-authenticate", "")
    return challenge


def claims_of(jwt_text: str, http: TestClient, audience: str) -> dict[str, Any]:
    """Decoded by PyJWT with the provider's published JWKS (an independent verifier)."""
    key = jwt.PyJWK.from_dict(http.get("/jwks").json()["keys"][0])
    decoded: dict[str, Any] = jwt.decode(jwt_text, key.key, algorithms=["ES256"],
                                         audience=audience, issuer=ISSUER,
                                         options={"verify_exp": False, "verify_iat": False})
    return decoded


def audit_signer(kyso: Kyso) -> x509.Certificate:
    return {s.name: s for s in list_services(kyso)}["audit-signer"].certificate


def root(kyso: Kyso) -> x509.Certificate:
    return next(a.certificate for a in list_authorities(kyso) if a.parent is None)


def reads(kyso: Kyso) -> list[dict[str, Any]]:
    return [e for e in audit_events(kyso) if e["action"] == "AUDIT_READ"]


# --- roles in tokens --------------------------------------------------------------------------

def test_an_auditor_gets_roles_in_the_access_token_but_not_in_the_id_token(
        http: TestClient, browser: Browser, clock: FrozenClock, auditor: Citizen,
        clients: ApiClients) -> None:
    body = tokens_for(browser, clock, auditor, clients.api_secret)

    access = claims_of(body["access_token"], http, AUDIENCE)
    assert access["roles"] == ["auditor"]
    assert access["realm_access"] == {"roles": ["auditor"]}
    id_token = claims_of(body["id_token"], http, CLIENT_ID)
    assert "roles" not in id_token
    assert "realm_access" not in id_token


def test_a_citizen_without_roles_gets_no_roles_claim(
        http: TestClient, browser: Browser, clock: FrozenClock, level2: Citizen,
        clients: ApiClients) -> None:
    access = claims_of(tokens_for(browser, clock, level2, clients.api_secret)["access_token"],
                       http, AUDIENCE)
    assert "roles" not in access
    assert "realm_access" not in access


def test_roles_are_sorted_and_current_at_minting(
        http: TestClient, browser: Browser, clock: FrozenClock, kyso: Kyso, auditor: Citizen,
        clients: ApiClients) -> None:
    Roles(kyso).grant(auditor.id_number, Role.CA_ADMIN)
    both = claims_of(tokens_for(browser, clock, auditor, clients.api_secret)["access_token"],
                     http, AUDIENCE)
    assert both["roles"] == ["auditor", "ca-admin"]

    Roles(kyso).revoke(auditor.id_number, Role.AUDITOR)
    after = claims_of(tokens_for(browser, clock, auditor, clients.api_secret)["access_token"],
                      http, AUDIENCE)
    assert after["roles"] == ["ca-admin"]


# --- who is refused ---------------------------------------------------------------------------

def test_no_token_is_401_with_a_bearer_challenge_and_is_recorded(http: TestClient,
                                                                 kyso: Kyso) -> None:
    challenge = refused(get(http, "/api/v1/audit/events"), 401, "invalid_request")

    assert challenge == 'Bearer realm="kyso-api"'
    event = reads(kyso)[-1]
    assert (event["outcome"], event["actor"], event["object"]) == ("failure", "anonymous",
                                                                   "events")


@pytest.mark.parametrize("path", ["/api/v1/audit/events?limit=0", "/api/v1/audit/proof/x",
                                  "/api/v1/audit/consistency", "/api/v1/audit/verify"])
def test_the_token_is_checked_before_the_parameters(http: TestClient, kyso: Kyso,
                                                    path: str) -> None:
    refused(http.get(path), 401, "invalid_request")
    assert reads(kyso)[-1]["outcome"] == "failure"


@pytest.mark.parametrize("header", ["Bearer not.a.token", "Basic dXNlcjpwYXNz", "Bearer "])
def test_a_malformed_token_is_401_invalid_token(http: TestClient, header: str) -> None:
    response = http.get("/api/v1/audit/events", headers={"Authorization": header})
    challenge = refused(response, 401, "invalid_token")
    assert 'error="invalid_token"' in challenge


def test_a_level2_citizen_without_the_role_is_403_insufficient_scope(
        http: TestClient, browser: Browser, clock: FrozenClock, kyso: Kyso, level2: Citizen,
        clients: ApiClients) -> None:
    access = tokens_for(browser, clock, level2, clients.api_secret)["access_token"]

    challenge = refused(get(http, "/api/v1/audit/events", access), 403, "insufficient_scope")
    assert 'error="insufficient_scope"' in challenge
    event = reads(kyso)[-1]
    assert event["outcome"] == "failure"
    assert event["actor"] == kyso.pseudonyms.pseudonym(level2.id_number)  # not anonymous


def test_a_token_for_another_audience_is_401(
        http: TestClient, browser: Browser, clock: FrozenClock, auditor: Citizen,
        clients: ApiClients) -> None:
    other = tokens_for(browser, clock, auditor, clients.other_secret, OTHER_CLIENT)
    assert claims_of(other["access_token"], http, OTHER_CLIENT)["roles"] == ["auditor"]

    response = get(http, "/api/v1/audit/events", other["access_token"])
    challenge = refused(response, 401, "invalid_token")
    assert "audience" in response.json()["error_description"]
    assert 'error="invalid_token"' in challenge


def test_the_id_token_is_not_an_access_token(http: TestClient, browser: Browser,
                                             clock: FrozenClock, auditor: Citizen,
                                             clients: ApiClients) -> None:
    id_token = tokens_for(browser, clock, auditor, clients.api_secret)["id_token"]
    refused(get(http, "/api/v1/audit/events", id_token), 401, "invalid_token")


def test_a_level1_auditor_is_asked_to_step_up(
        http: TestClient, browser: Browser, clock: FrozenClock, kyso: Kyso,
        clients: ApiClients) -> None:
    citizen = make_citizen(kyso, LEVEL1, Level.ONE)
    Roles(kyso).grant(citizen.id_number, Role.AUDITOR)
    access = tokens_for(browser, clock, citizen, clients.api_secret)["access_token"]

    challenge = refused(get(http, "/api/v1/audit/events", access), 401,
                        "insufficient_user_authentication")
    assert 'acr_values="urn:vn:vneid:loa:2"' in challenge


def test_revoking_the_role_refuses_a_token_minted_before(
        http: TestClient, kyso: Kyso, auditor: Citizen, token: str) -> None:
    assert get(http, "/api/v1/audit/events", token).status_code == 200

    Roles(kyso).revoke(auditor.id_number, Role.AUDITOR)
    response = get(http, "/api/v1/audit/events", token)
    refused(response, 403, "insufficient_scope")
    assert "no longer holds" in response.json()["error_description"]


def test_locking_the_account_refuses_its_token(http: TestClient, kyso: Kyso, auditor: Citizen,
                                               token: str) -> None:
    lock_identity(kyso, auditor.id_number, LockGround.SECURITY)
    response = get(http, "/api/v1/audit/events", token)
    refused(response, 401, "invalid_token")
    assert "locked" in response.json()["error_description"]


def test_a_token_revoked_by_code_reuse_is_refused(
        http: TestClient, browser: Browser, clock: FrozenClock, auditor: Citizen,
        clients: ApiClients) -> None:
    clock.advance(dt.timedelta(seconds=30))
    verifier, challenge = pkce_pair()
    code = browser.login(authorize_params(challenge), auditor)["code"]
    first = exchange(http, code, verifier, secret=clients.api_secret).json()
    assert get(http, "/api/v1/audit/events", first["access_token"]).status_code == 200

    again = exchange(http, code, verifier, secret=clients.api_secret)  # the code replayed
    assert again.status_code == 400
    response = get(http, "/api/v1/audit/events", first["access_token"])
    refused(response, 401, "invalid_token")
    assert "revoked" in response.json()["error_description"]


def test_an_expired_token_is_refused(http: TestClient, clock: FrozenClock, token: str) -> None:
    clock.advance(dt.timedelta(minutes=31))
    refused(get(http, "/api/v1/audit/events", token), 401, "invalid_token")


# --- what an auditor reads --------------------------------------------------------------------

def test_an_auditor_reads_events_as_audit_show_gives_them(http: TestClient, kyso: Kyso,
                                                          token: str) -> None:
    response = get(http, "/api/v1/audit/events", token, limit=MAX_PAGE)

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["next"] is None
    assert body["events"] == audit_events(kyso)[: len(body["events"])]
    assert [e["seq"] for e in body["events"]] == list(range(len(body["events"])))


def test_events_page_through_the_log_with_next_and_after(http: TestClient, kyso: Kyso,
                                                         token: str) -> None:
    everything = get(http, "/api/v1/audit/events", token, limit=MAX_PAGE).json()["events"]
    seen: list[dict[str, Any]] = []
    after: int | None = None
    for _ in range(100):
        params = {"limit": 3} if after is None else {"limit": 3, "after": after}
        page = get(http, "/api/v1/audit/events", token, **params).json()
        assert len(page["events"]) <= 3
        seen += page["events"]
        after = page["next"]
        if after is None:
            break
    # the log grew by one AUDIT_READ per call meanwhile; the pages still form one sequence
    assert seen[: len(everything)] == everything
    assert [e["seq"] for e in seen] == list(range(len(seen)))


def test_events_filter_by_layer_action_outcome_and_time(http: TestClient, kyso: Kyso,
                                                        token: str) -> None:
    logins = get(http, "/api/v1/audit/events", token, layer="authn", action="login",
                 outcome="success").json()["events"]
    assert logins
    assert {(e["layer"], e["action"], e["outcome"]) for e in logins} == {
        ("authn", "LOGIN", "success")}
    future = get(http, "/api/v1/audit/events", token, since="2030-01-01").json()
    assert future == {"events": [], "next": None}
    recent = get(http, "/api/v1/audit/events", token, since="1h").json()["events"]
    assert recent


@pytest.mark.parametrize(("params", "status", "needle"), [
    ({"limit": MAX_PAGE + 1}, 422, "limit"),
    ({"limit": 0}, 422, "limit"),
    ({"after": -1}, 422, "after"),
    ({"after": "x"}, 422, "after"),
    ({"layer": "kernel"}, 422, "layer"),
    ({"outcome": "maybe"}, 422, "outcome"),
    ({"since": "yesterday-ish"}, 400, "since"),
    ({"until": "2026-13-45"}, 400, "until"),
    ({"action": ["A"] * 21}, 400, "action"),
])
def test_bad_event_parameters_are_4xx_naming_them(http: TestClient, token: str,
                                                  params: dict[str, Any], status: int,
                                                  needle: str) -> None:
    response = get(http, "/api/v1/audit/events", token, **params)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == "invalid_request"
    assert needle in body["error_description"]


def test_the_checkpoint_is_the_latest_signed_note(http: TestClient, kyso: Kyso, token: str,
                                                  checkpointed: int) -> None:
    response = get(http, "/api/v1/audit/checkpoint", token)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    stored = Layout(kyso.settings.audit_dir).checkpoints / f"{checkpointed:012d}.note"
    assert response.text == stored.read_text(encoding="utf-8")
    assert response.text.splitlines()[1] == str(checkpointed)


def test_without_a_checkpoint_the_checkpoint_and_proofs_are_404(http: TestClient,
                                                                token: str) -> None:
    refused(get(http, "/api/v1/audit/checkpoint", token), 404, "not_found")
    refused(get(http, "/api/v1/audit/proof/0", token), 404, "not_found")


def test_an_inclusion_proof_verifies_offline_through_the_root(
        http: TestClient, kyso: Kyso, token: str, checkpointed: int) -> None:
    seq = checkpointed - 2
    response = get(http, f"/api/v1/audit/proof/{seq}", token)

    assert response.status_code == 200, response.text
    bundle = parse_bundle(response.content)
    result = verify_bundle(bundle, roots=[root(kyso)])  # only the root CA is trusted
    assert (result.kind, result.seq, result.tree_size) == ("inclusion", seq, checkpointed)
    assert result.entry == audit_events(kyso)[seq]
    assert verify_bundle(bundle, audit_signer(kyso)).seq == seq

    forged = dict(bundle, entry=bundle["entry"].replace('"success"', '"failure"'))
    if forged["entry"] != bundle["entry"]:
        with pytest.raises(ProofError):
            verify_bundle(forged, audit_signer(kyso))


def test_a_proof_of_an_entry_no_checkpoint_covers_yet_is_404(
        http: TestClient, token: str, checkpointed: int) -> None:
    response = get(http, f"/api/v1/audit/proof/{checkpointed + 5}", token)
    refused(response, 404, "not_found")
    assert "checkpoint" in response.json()["error_description"]


def test_a_consistency_proof_between_two_checkpoints_verifies_offline(
        http: TestClient, kyso: Kyso, token: str, checkpointed: int) -> None:
    assert get(http, "/api/v1/audit/events", token).status_code == 200  # the log grows
    newer = create_checkpoint(kyso, PASSPHRASE).checkpoint.size

    response = get(http, "/api/v1/audit/consistency", token, old=checkpointed)
    assert response.status_code == 200, response.text
    result = verify_bundle(parse_bundle(response.content), roots=[root(kyso)])
    assert (result.kind, result.old_size, result.tree_size) == ("consistency", checkpointed,
                                                                newer)
    explicit = get(http, "/api/v1/audit/consistency", token, old=checkpointed, new=newer)
    assert explicit.json() == response.json()


@pytest.mark.parametrize(("params", "status", "needle"), [
    ({"old": "../../etc/passwd"}, 422, "old"),
    ({"old": "latest", "new": "/tmp/x.note"}, 422, "new"),
    ({"old": "1" * 19}, 422, "old"),
    ({}, 422, "old"),
    ({"old": "999999"}, 404, "999999"),
])
def test_bad_consistency_parameters_are_4xx_naming_them(
        http: TestClient, token: str, checkpointed: int, params: dict[str, Any], status: int,
        needle: str) -> None:
    response = get(http, "/api/v1/audit/consistency", token, **params)
    assert response.status_code == status, response.text
    assert needle in response.json()["error_description"]


def test_consistency_from_a_newer_to_an_older_checkpoint_is_400(
        http: TestClient, kyso: Kyso, token: str, checkpointed: int) -> None:
    assert get(http, "/api/v1/audit/events", token).status_code == 200
    newer = create_checkpoint(kyso, PASSPHRASE).checkpoint.size
    response = get(http, "/api/v1/audit/consistency", token, old=newer, new=checkpointed)
    refused(response, 400, "invalid_request")
    assert "newer" in response.json()["error_description"]


@pytest.mark.parametrize("seq", ["-1", "x", "1e3"])
def test_a_bad_proof_seq_is_422(http: TestClient, token: str, seq: str) -> None:
    refused(get(http, f"/api/v1/audit/proof/{seq}", token), 422, "invalid_request")


def test_verify_reports_pass_per_check_like_audit_verify(http: TestClient, kyso: Kyso,
                                                         token: str, checkpointed: int) -> None:
    response = get(http, "/api/v1/audit/verify", token)

    assert response.status_code == 200, response.text
    report = response.json()
    assert report["result"] == "PASS"
    expected = verify_with_store(kyso).to_dict()  # one more entry now: this call's event
    assert [c["name"] for c in report["checks"]] == [c["name"] for c in expected["checks"]]
    assert {c["status"] for c in report["checks"]} <= {"PASS", "SKIP", "WARN"}
    assert report["tree_size"] == expected["tree_size"] - 1


def test_an_entry_changed_in_place_fails_verify_and_its_proofs_are_409(
        http: TestClient, kyso: Kyso, token: str, checkpointed: int) -> None:
    segment = list_segments(Layout(kyso.settings.audit_dir))[0][0].path
    data = segment.read_bytes()
    second = data.index(b"\n") + 1  # entry 1, same length: the appender does not notice
    at = data.index(b'"outcome":"success"', second)
    segment.write_bytes(data[:at] + b'"outcome":"failure"' + data[at + 19:])

    report = get(http, "/api/v1/audit/verify", token).json()
    assert report["result"] == "FAIL"
    assert report["findings"][0]["seq"] == 1
    response = get(http, "/api/v1/audit/proof/1", token)
    refused(response, 409, "conflict")
    assert "kyso audit verify" in response.json()["error_description"]


def test_reads_are_not_served_unaudited_when_the_log_refuses_appends(
        http: TestClient, kyso: Kyso, token: str) -> None:
    segment = list_segments(Layout(kyso.settings.audit_dir))[0][-1].path
    segment.write_bytes(segment.read_bytes()[:-40])  # truncated behind the head file's back

    response = get(http, "/api/v1/audit/events", token)
    refused(response, 503, "audit_log_unavailable")
    assert "not served" in response.json()["error_description"]
    assert "events" not in response.json()


# --- auditors are audited ------------------------------------------------------------------

def test_every_call_records_audit_read_with_the_auditors_pseudonym(
        http: TestClient, kyso: Kyso, auditor: Citizen, token: str, checkpointed: int) -> None:
    before = len(reads(kyso))
    get(http, "/api/v1/audit/events", token, layer="pki", limit=5)
    get(http, "/api/v1/audit/checkpoint", token)
    get(http, f"/api/v1/audit/proof/{checkpointed - 1}", token)
    get(http, "/api/v1/audit/consistency", token, old=checkpointed)
    get(http, "/api/v1/audit/verify", token)
    get(http, "/api/v1/audit/events", token, limit=0)  # 422: recorded as a failure
    get(http, "/api/v1/audit/events", token, since="nonsense")  # 400: recorded as a failure

    events = reads(kyso)[before:]
    assert [e["object"] for e in events] == [
        "events", "checkpoint", f"proof/{checkpointed - 1}", "consistency", "verify", "events",
        "events"]
    pseudonym = kyso.pseudonyms.pseudonym(auditor.id_number)
    logins = [e for e in audit_events(kyso) if e["action"] == "LOGIN"]
    assert logins[-1]["actor"] == pseudonym  # the same person as in their login events
    assert {e["actor"] for e in events} == {pseudonym}
    assert {e["layer"] for e in events} == {"audit"}
    assert [e["outcome"] for e in events] == ["success"] * 5 + ["failure"] * 2
    assert events[0]["details"]["filters"] == {"layer": ["pki"]}
    assert events[0]["details"]["client_id"] == CLIENT_ID
    assert events[3]["details"]["old_size"] == checkpointed
    assert [e["details"]["status"] for e in events[-2:]] == [422, 400]
    assert "limit" in events[-2]["details"]["reason"]
    text = audit_text(kyso)
    assert token not in text
    assert auditor.id_number not in text


def test_openapi_documents_the_bearer_scheme_and_the_parameters(app: FastAPI) -> None:
    with warnings.catch_warnings():  # oidc_routes' duplicate operation ids (see verify tests)
        warnings.filterwarnings("ignore", "Duplicate Operation ID")
        spec = app.openapi()
    paths = {p for p in spec["paths"] if p.startswith("/api/v1/audit/")}
    assert paths == {"/api/v1/audit/events", "/api/v1/audit/checkpoint",
                     "/api/v1/audit/proof/{seq}", "/api/v1/audit/consistency",
                     "/api/v1/audit/verify"}
    scheme = spec["components"]["securitySchemes"]["auditorToken"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    events = spec["paths"]["/api/v1/audit/events"]["get"]
    assert {"401", "403", "400"} <= set(events["responses"])
    limit = next(p for p in events["parameters"] if p["name"] == "limit")
    assert limit["schema"]["maximum"] == MAX_PAGE
