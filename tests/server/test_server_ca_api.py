"""The CA administration API of ``kyso serve`` (/api/v1/certificates…): an admin with a level-2
token for the kyso-api audience carrying the ca-admin role issues from a CSR (checked by
``openssl``), reads, revokes, holds and releases; everyone else is refused as by the auditor
API; bad input is a 4xx naming the problem with nothing issued; and every call leaves exactly
one audit event with the admin's pseudonym."""

from __future__ import annotations

import datetime as dt
import subprocess
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from ca_api_support import API, issue, pem_text, revoke, staff_csr, staff_id
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from fastapi import FastAPI
from pki_server_support import OCSP_TYPE, ocsp_request
from server_support import (
    CLIENT_ID,
    ISSUER,
    KEY_PASSPHRASE,
    LEVEL1,
    OTHER_CLIENT,
    ApiClients,
    Browser,
    Citizen,
    TestClient,
    access_token,
    bearer,
    make_citizen,
    register_api_clients,
)

from conftest import BASE_URL, PASSPHRASE, T0, audit_events, audit_text
from kyso.authn.enrolment import lock_identity
from kyso.authn.oidc import Provider
from kyso.authn.registry import Level, LockGround
from kyso.authn.roles import Role, Roles
from kyso.cli import cli
from kyso.clock import FrozenClock
from kyso.context import Kyso
from kyso.pki.authority import CertificateAuthority, init_ca
from kyso.pki.issuance import get_record
from kyso.pki.keys import KeyType
from kyso.pki.lifecycle import REVOKE_REASONS
from kyso.server.app import create_app
from kyso.server.ca_models import (
    MAX_BODY_BYTES,
    ChangedBody,
    IssuedBody,
    RevokeReason,
    ShownBody,
)
from kyso.server.ca_routes import AUDIENCE
from kyso.store import schema

pytest_plugins = ("server_fixtures",)

ACTIONS = ("CERT_CREATION", "CERT_VIEW", "CERT_REVOKED", "CERT_STATUSCHANGE")


@pytest.fixture
def app(kyso: Kyso, ca: CertificateAuthority) -> FastAPI:
    """The app of a CA-admin node: started with the CA passphrase."""
    return create_app(kyso.settings, kyso=kyso, key_passphrase=KEY_PASSPHRASE, issuer=ISSUER,
                      ca_passphrase=PASSPHRASE)


@pytest.fixture
def clients(provider: Provider) -> ApiClients:
    return register_api_clients(provider, AUDIENCE, "Quản trị CA")


def login(browser: Browser, clock: FrozenClock, citizen: Citizen, secret: str,
          client_id: str = CLIENT_ID) -> str:
    """A login through the provider's pages, a TOTP step after the last one (codes are
    single-use); the access token."""
    return access_token(browser, citizen, secret, client_id=client_id, clock=clock)


@pytest.fixture
def admin(kyso: Kyso, level2: Citizen) -> Citizen:
    Roles(kyso).grant(level2.id_number, Role.CA_ADMIN)
    return level2


@pytest.fixture
def token(browser: Browser, clock: FrozenClock, admin: Citizen, clients: ApiClients) -> str:
    return login(browser, clock, admin, clients.api_secret)


@pytest.fixture
def issued(http: TestClient, token: str) -> dict[str, Any]:
    """A staff certificate issued through the API; its 201 body."""
    response = issue(http, token, {"csr": pem_text(staff_csr(1)), "profile": "staff"})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def events_of(kyso: Kyso, *actions: str) -> list[dict[str, Any]]:
    return [e for e in audit_events(kyso) if e["action"] in (actions or ACTIONS)]


def serials(kyso: Kyso) -> set[str]:
    with kyso.store.read() as conn:
        return set(conn.execute(sa.select(schema.certificates.c.serial)).scalars())


def refused(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    assert body["error"] == error
    assert "Traceback" not in response.text
    return body


def pem_file(path: Path, *certs: x509.Certificate | str) -> Path:
    path.write_text("".join(c if isinstance(c, str) else
                            c.public_bytes(serialization.Encoding.PEM).decode() for c in certs))
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60, check=False)


AT_T0 = str(int((T0 + dt.timedelta(hours=1)).timestamp()))  # openssl judges at the frozen time


# --- issuing ------------------------------------------------------------------------------------

@pytest.mark.external
def test_an_admin_issues_a_staff_certificate_from_a_csr_that_openssl_verifies(
        http: TestClient, kyso: Kyso, ca: CertificateAuthority, admin: Citizen, token: str,
        openssl: str, tmp_path: Path) -> None:
    csr = staff_csr(7)
    response = issue(http, token, {"csr": pem_text(csr), "profile": "staff",
                                   "validity_days": 365})

    assert response.status_code == 201, response.text
    body = IssuedBody.model_validate(response.json()).model_dump()
    serial = body["serial"]
    assert response.headers["location"] == f"{API}/{serial}"
    assert response.headers["cache-control"] == "no-store"
    cert = x509.load_pem_x509_certificate(body["certificate"].encode())
    assert format(cert.serial_number, "x") == serial
    assert cert.public_key() == csr.public_key()  # the holder keeps the key
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 365
    assert (body["profile"], body["issuer"], body["status"]) == ("staff", "staff", "valid")
    assert "IDCVN-019******007" in body["subject"]  # masked in the record…
    assert [x509.load_pem_x509_certificate(p.encode()) for p in body["chain"]] == \
        ca.chain("staff")
    assert get_record(kyso, serial)[0].der == cert.public_bytes(serialization.Encoding.DER)

    leaf = pem_file(tmp_path / "leaf.pem", body["certificate"])
    chain = pem_file(tmp_path / "chain.pem", *body["chain"][:-1])
    root = pem_file(tmp_path / "root.pem", body["chain"][-1])
    verified = run(openssl, "verify", "-attime", AT_T0, "-CAfile", str(root), "-untrusted",
                   str(chain), "-purpose", "smimesign", str(leaf))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"{leaf}: OK" in verified.stdout
    shown = run(openssl, "x509", "-in", str(leaf), "-noout", "-subject", "-nameopt", "RFC2253",
                "-ext", "keyUsage,extendedKeyUsage,subjectAltName")
    assert shown.returncode == 0, shown.stderr
    assert f"serialNumber=IDCVN-{staff_id(7)}" in shown.stdout  # …whole in the certificate
    assert "Digital Signature, Non Repudiation" in shown.stdout
    assert "email:staff7@thainguyen.gov.vn" in shown.stdout

    created = events_of(kyso, "CERT_CREATION")[-1]
    assert (created["outcome"], created["object"]) == ("success", serial)
    assert created["actor"] == kyso.pseudonyms.pseudonym(admin.id_number)
    assert created["request_id"] == response.headers["x-request-id"]
    assert created["source"] == "testclient"
    assert created["details"]["profile"] == "staff"


def test_subject_details_complete_the_csr_and_a_contradiction_is_refused(
        http: TestClient, token: str) -> None:
    csr = staff_csr(2, title="")  # the title comes from the request body instead
    response = issue(http, token, {"csr": pem_text(csr), "profile": "staff",
                                   "subject": {"title": "Phó Chủ tịch", "dob": "1999-04-02"}})
    assert response.status_code == 201, response.text
    assert "T=Phó Chủ tịch" in response.json()["subject"]

    clash = issue(http, token, {"csr": pem_text(staff_csr(3)), "profile": "staff",
                                "subject": {"email": "other@thainguyen.gov.vn"}})
    body = refused(clash, 422, "invalid_csr")
    assert "email differs" in body["error_description"]


def test_the_same_key_twice_is_a_409_and_nothing_more_is_stored(
        http: TestClient, kyso: Kyso, token: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    first = issue(http, token, {"csr": pem_text(staff_csr(4, key=key)), "profile": "staff"})
    assert first.status_code == 201, first.text
    before = serials(kyso)

    again = issue(http, token, {"csr": pem_text(staff_csr(4, key=key)), "profile": "staff"})
    body = refused(again, 409, "conflict")
    assert "already been certified" in body["error_description"]
    assert serials(kyso) == before


def test_the_record_is_what_kyso_cert_show_prints(http: TestClient, kyso: Kyso, token: str,
                                                  issued: dict[str, Any]) -> None:
    response = http.get(f"{API}/{issued['serial'].upper()}", headers=bearer(token))

    assert response.status_code == 200, response.text
    shown = ShownBody.model_validate(response.json()).model_dump()
    cli_out = CliRunner().invoke(cli, ["--home", str(kyso.settings.home), "--format", "json",
                                       "cert", "show", issued["serial"]])
    assert cli_out.exit_code == 0, cli_out.output
    assert response.json() == httpx.Response(200, content=cli_out.stdout).json()
    assert shown["pem"] == issued["certificate"]
    viewed = events_of(kyso, "CERT_VIEW")[-1]
    assert (viewed["outcome"], viewed["object"]) == ("success", issued["serial"])
    assert viewed["details"]["client_id"] == CLIENT_ID


# --- status changes -----------------------------------------------------------------------------

def ocsp_status(http: TestClient, cert_pem: str, ca: CertificateAuthority) -> ocsp.OCSPCertStatus:
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    answer = http.post("/ocsp/staff", content=ocsp_request(cert, ca.certificate("staff")),
                       headers=OCSP_TYPE)
    return ocsp.load_der_ocsp_response(answer.content).certificate_status


def test_revoke_answers_the_change_and_ocsp_says_revoked_at_once(
        http: TestClient, kyso: Kyso, ca: CertificateAuthority, admin: Citizen, token: str,
        issued: dict[str, Any], clock: FrozenClock) -> None:
    serial = issued["serial"]
    assert ocsp_status(http, issued["certificate"], ca) is ocsp.OCSPCertStatus.GOOD
    compromised = (clock.now() - dt.timedelta(hours=3)).astimezone(dt.timezone(dt.timedelta(
        hours=7)))

    response = revoke(http, token, serial, "keyCompromise",
                      compromised_at=compromised.isoformat())

    assert response.status_code == 200, response.text
    body = ChangedBody.model_validate(response.json()).model_dump()
    assert (body["old_status"], body["status"], body["revocation_reason"]) == (
        "valid", "revoked", "keyCompromise")
    assert dt.datetime.fromisoformat(body["invalidity_date"]) == compromised
    assert ocsp_status(http, issued["certificate"], ca) is ocsp.OCSPCertStatus.REVOKED
    event = events_of(kyso, "CERT_REVOKED")[-1]
    assert (event["outcome"], event["object"], event["actor"]) == (
        "success", serial, kyso.pseudonyms.pseudonym(admin.id_number))
    assert event["request_id"] == response.headers["x-request-id"]


def test_revoking_a_revoked_certificate_is_409_naming_its_status(
        http: TestClient, kyso: Kyso, token: str, issued: dict[str, Any]) -> None:
    serial = issued["serial"]
    assert revoke(http, token, serial, "superseded").status_code == 200
    before = len(events_of(kyso))

    again = refused(revoke(http, token, serial, "affiliationChanged"), 409, "conflict")
    assert again["certificate_status"] == "revoked"
    assert again["revocation_reason"] == "superseded"
    assert "is revoked" in again["error_description"]
    # RFC 5280 §5.3.1: a revoked certificate may still be moved to keyCompromise, once
    assert revoke(http, token, serial, "keyCompromise").status_code == 200
    twice = refused(revoke(http, token, serial, "keyCompromise"), 409, "conflict")
    assert "already revoked for keyCompromise" in twice["error_description"]
    assert [(e["action"], e["outcome"]) for e in events_of(kyso)[before:]] == [
        ("CERT_REVOKED", "failure"), ("CERT_REVOKED", "success"), ("CERT_REVOKED", "failure")]


def test_hold_and_release_and_the_changes_they_refuse(
        http: TestClient, token: str, issued: dict[str, Any]) -> None:
    serial, headers = issued["serial"], bearer(token)

    released_early = refused(http.post(f"{API}/{serial}/release", headers=headers), 409,
                             "conflict")
    assert released_early["certificate_status"] == "valid"
    held = http.post(f"{API}/{serial}/hold", headers=headers)
    assert (held.status_code, held.json()["status"], held.json()["old_status"]) == (
        200, "on_hold", "valid")
    assert refused(http.post(f"{API}/{serial}/hold", headers=headers), 409,
                   "conflict")["certificate_status"] == "on_hold"
    released = http.post(f"{API}/{serial}/release", headers=headers)
    assert (released.status_code, released.json()["status"]) == (200, "valid")
    assert revoke(http, token, serial, "cessationOfOperation").status_code == 200
    assert refused(http.post(f"{API}/{serial}/hold", headers=headers), 409,
                   "conflict")["certificate_status"] == "revoked"


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/abcdef0123", 404), ("POST", "/abcdef0123/revoke", 404),
    ("POST", "/abcdef0123/hold", 404), ("POST", "/abcdef0123/release", 404),
    ("GET", "/not-hex", 422), ("POST", "/zz/hold", 422), ("GET", "/" + "a" * 41, 422),
])
def test_unknown_or_malformed_serials_are_4xx(http: TestClient, kyso: Kyso, token: str,
                                              method: str, path: str, status: int) -> None:
    before = len(events_of(kyso))
    response = http.request(method, API + path, headers=bearer(token),
                            json={"reason": "superseded"} if path.endswith("revoke") else None)

    assert response.status_code == status, response.text
    assert response.json()["error"] in ("not_found", "invalid_request")
    if path.startswith("/abcdef"):  # a route of this API: one failure event
        assert [e["outcome"] for e in events_of(kyso)[before:]] == ["failure"]


@pytest.mark.parametrize(("body", "status", "needle"), [
    ({"reason": "certificateHold"}, 422, "reason"),
    ({"reason": "bogus"}, 422, "reason"),
    ({"reason": "KEYCOMPROMISE"}, 422, "reason"),
    ({"reason": 1}, 422, "reason"),
    ({"reason": "superseded", "compromised_at": "2026-11-20T08:00:00"}, 422, "compromised_at"),
    ({"reason": "superseded", "compromised_at": "2099-01-01T00:00:00+07:00"}, 422, "future"),
    ({"reason": "superseded", "compromised_at": "yesterday"}, 422, "compromised_at"),
    ({"reason": "superseded", "force": True}, 422, "force"),
])
def test_bad_revocation_requests_are_422_and_change_nothing(
        http: TestClient, kyso: Kyso, token: str, issued: dict[str, Any], body: dict[str, Any],
        status: int, needle: str) -> None:
    before = len(events_of(kyso))
    response = http.post(f"{API}/{issued['serial']}/revoke", json=body, headers=bearer(token))

    assert needle in refused(response, status, "invalid_request")["error_description"]
    assert get_record(kyso, issued["serial"])[0].status.value == "valid"
    assert [(e["action"], e["outcome"]) for e in events_of(kyso)[before:]] == [
        ("CERT_REVOKED", "failure")]


def test_the_reasons_offered_are_the_libraries(app: FastAPI) -> None:
    assert set(RevokeReason.__args__) == set(REVOKE_REASONS)


# --- who is refused -----------------------------------------------------------------------------

def test_no_token_is_401_with_a_bearer_challenge_and_nothing_is_issued(
        http: TestClient, kyso: Kyso) -> None:
    before = serials(kyso)
    response = issue(http, None, {"csr": pem_text(staff_csr()), "profile": "staff"})

    refused(response, 401, "invalid_request")
    assert response.headers["www-authenticate"] == 'Bearer realm="kyso-api"'
    assert serials(kyso) == before
    event = events_of(kyso)[-1]
    assert (event["action"], event["outcome"], event["actor"]) == (
        "CERT_CREATION", "failure", "anonymous")
    assert event["details"]["status"] == 401


@pytest.mark.parametrize("path", ["", "/zz/revoke", "/abc/revoke", "/abc/hold", "/abc/release"])
def test_the_token_is_checked_before_the_body_and_the_parameters(http: TestClient,
                                                                 path: str) -> None:
    response = http.post(API + path, content=b"not json", headers={"Content-Type": "text/plain"})
    refused(response, 401, "invalid_request")


@pytest.mark.parametrize("header", ["Bearer not.a.token", "Basic dXNlcjpwYXNz", "Bearer "])
def test_a_malformed_token_is_401_invalid_token(http: TestClient, header: str) -> None:
    response = http.post(API, json={}, headers={"Authorization": header})
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    refused(response, 401, "invalid_token")


def test_a_level2_citizen_without_the_role_is_403(
        http: TestClient, browser: Browser, clock: FrozenClock, kyso: Kyso, level2: Citizen,
        clients: ApiClients) -> None:
    access = login(browser, clock, level2, clients.api_secret)
    response = issue(http, access, {"csr": pem_text(staff_csr()), "profile": "staff"})

    refused(response, 403, "insufficient_scope")
    event = events_of(kyso)[-1]
    assert (event["action"], event["outcome"]) == ("CERT_CREATION", "failure")
    assert event["actor"] == kyso.pseudonyms.pseudonym(level2.id_number)  # not anonymous


def test_the_auditor_role_is_not_the_ca_admin_role(
        http: TestClient, browser: Browser, clock: FrozenClock, kyso: Kyso, level2: Citizen,
        clients: ApiClients) -> None:
    Roles(kyso).grant(level2.id_number, Role.AUDITOR)
    access = login(browser, clock, level2, clients.api_secret)
    refused(revoke(http, access, "abcdef0123", "superseded"), 403, "insufficient_scope")


def test_a_token_for_another_audience_is_401(
        http: TestClient, browser: Browser, clock: FrozenClock, admin: Citizen,
        clients: ApiClients) -> None:
    access = login(browser, clock, admin, clients.other_secret, OTHER_CLIENT)
    response = issue(http, access, {"csr": pem_text(staff_csr()), "profile": "staff"})
    assert "audience" in refused(response, 401, "invalid_token")["error_description"]


def test_a_level1_admin_is_asked_to_step_up(
        http: TestClient, browser: Browser, clock: FrozenClock, kyso: Kyso,
        clients: ApiClients) -> None:
    citizen = make_citizen(kyso, LEVEL1, Level.ONE)
    Roles(kyso).grant(citizen.id_number, Role.CA_ADMIN)
    access = login(browser, clock, citizen, clients.api_secret)

    response = issue(http, access, {"csr": pem_text(staff_csr()), "profile": "staff"})
    refused(response, 401, "insufficient_user_authentication")
    assert 'acr_values="urn:vn:vneid:loa:2"' in response.headers["www-authenticate"]


def test_revoking_the_role_refuses_a_token_minted_before(
        http: TestClient, kyso: Kyso, admin: Citizen, token: str, issued: dict[str, Any]) -> None:
    Roles(kyso).revoke(admin.id_number, Role.CA_ADMIN)

    response = revoke(http, token, issued["serial"], "superseded")
    assert "no longer holds" in refused(response, 403, "insufficient_scope")["error_description"]
    assert get_record(kyso, issued["serial"])[0].status.value == "valid"


def test_locking_the_account_refuses_its_token(http: TestClient, kyso: Kyso, admin: Citizen,
                                               token: str) -> None:
    before = serials(kyso)
    lock_identity(kyso, admin.id_number, LockGround.SECURITY)
    response = issue(http, token, {"csr": pem_text(staff_csr()), "profile": "staff"})
    assert "locked" in refused(response, 401, "invalid_token")["error_description"]
    assert serials(kyso) == before


def test_a_node_without_the_ca_passphrase_answers_503_after_the_token(
        kyso: Kyso, ca: CertificateAuthority, clock: FrozenClock, level2: Citizen) -> None:
    Roles(kyso).grant(level2.id_number, Role.CA_ADMIN)
    app = create_app(kyso.settings, kyso=kyso, key_passphrase=KEY_PASSPHRASE, issuer=ISSUER)
    with TestClient(app, base_url=ISSUER, follow_redirects=False) as http:
        secret = register_api_clients(app.state.provider, AUDIENCE, "Quản trị CA").api_secret
        refused(issue(http, None, {}), 401, "invalid_request")
        access = login(Browser(http, clock), clock, level2, secret)
        for response in (issue(http, access, {"csr": pem_text(staff_csr()), "profile": "staff"}),
                         revoke(http, access, "abcdef0123", "superseded"),
                         http.get(f"{API}/abcdef0123", headers=bearer(access))):
            body = refused(response, 503, "service_unavailable")
            assert "CA passphrase" in body["error_description"]
            assert response.headers["retry-after"] == "60"



def test_a_ca_created_after_start_up_is_used_without_a_restart(
        kyso: Kyso, clock: FrozenClock, level2: Citizen) -> None:
    Roles(kyso).grant(level2.id_number, Role.CA_ADMIN)
    app = create_app(kyso.settings, kyso=kyso, key_passphrase=KEY_PASSPHRASE, issuer=ISSUER,
                     ca_passphrase=PASSPHRASE)
    with TestClient(app, base_url=ISSUER, follow_redirects=False) as http:
        secret = register_api_clients(app.state.provider, AUDIENCE, "Quản trị CA").api_secret
        access = login(Browser(http, clock), clock, level2, secret)
        body = {"csr": pem_text(staff_csr(12)), "profile": "staff"}
        early = refused(issue(http, access, body), 503, "service_unavailable")
        assert "kyso ca init" in early["error_description"]

        init_ca(kyso, passphrase=PASSPHRASE, org="UBND tỉnh Thái Nguyên",
                province="thai-nguyen", key_type=KeyType.EC_P384, base_url=BASE_URL)
        assert issue(http, access, body).status_code == 201

# --- bad input ----------------------------------------------------------------------------------

def _tampered_pem() -> str:
    data = pem_text(staff_csr(5))
    csr = x509.load_pem_x509_csr(data.encode())
    der = csr.public_bytes(serialization.Encoding.DER)
    forged = der.replace("Nguyễn".encode(), "Nguyễm".encode())
    assert forged != der
    return x509.load_der_x509_csr(forged).public_bytes(serialization.Encoding.PEM).decode()


GOOD = pem_text(staff_csr(6))
BAD_BODIES: list[tuple[str, Any, int, str, str]] = [
    ("garbage CSR", {"csr": "hello", "profile": "staff"}, 422, "invalid_csr",
     "not a valid PEM or DER"),
    ("truncated CSR", {"csr": GOOD[: len(GOOD) // 2], "profile": "staff"}, 422, "invalid_csr",
     "not a valid PEM or DER"),
    ("a certificate, not a CSR", {"csr": GOOD.replace("CERTIFICATE REQUEST", "CERTIFICATE"),
                                  "profile": "staff"}, 422, "invalid_csr", "not a valid"),
    ("forged CSR", {"csr": _tampered_pem(), "profile": "staff"}, 422, "invalid_csr",
     "signature does not verify"),
    ("CSR asks for CA:TRUE", {"csr": pem_text(staff_csr(8, extensions=(
        x509.BasicConstraints(ca=True, path_length=None),))), "profile": "staff"}, 422,
     "invalid_csr", "CA:TRUE"),
    ("CSR without a required title", {"csr": pem_text(staff_csr(9, title="")),
                                      "profile": "staff"}, 422, "invalid_request", "title"),
    ("a bad ID number", {"csr": pem_text(staff_csr(10, id="999999999999")), "profile": "staff"},
     422, "invalid_request", "ID"),
    ("unknown profile", {"csr": GOOD, "profile": "president"}, 422, "invalid_request",
     "unknown profile 'president'"),
    ("a CA profile", {"csr": GOOD, "profile": "issuing-staff"}, 422, "invalid_request",
     "CA profile"),
    ("unknown CA", {"csr": GOOD, "profile": "staff", "issuer": "nope"}, 422, "invalid_request",
     "not nope"),
    ("another CA", {"csr": GOOD, "profile": "staff", "issuer": "citizen"}, 422,
     "invalid_request", "issued by staff"),
    ("too long a validity", {"csr": GOOD, "profile": "staff", "validity_days": 5000}, 422,
     "invalid_request", "maximum"),
    ("validity 0", {"csr": GOOD, "profile": "staff", "validity_days": 0}, 422, "invalid_request",
     "validity_days"),
    ("validity as text", {"csr": GOOD, "profile": "staff", "validity_days": "30"}, 422,
     "invalid_request", "validity_days"),
    ("validity as a boolean", {"csr": GOOD, "profile": "staff", "validity_days": True}, 422,
     "invalid_request", "validity_days"),
    ("profile as a number", {"csr": GOOD, "profile": 5}, 422, "invalid_request", "profile"),
    ("profile as a path", {"csr": GOOD, "profile": "../staff"}, 422, "invalid_request",
     "profile"),
    ("no CSR", {"profile": "staff"}, 422, "invalid_request", "body parameter csr"),
    ("CSR null", {"csr": None, "profile": "staff"}, 422, "invalid_request", "csr"),
    ("an unknown field", {"csr": GOOD, "profile": "staff", "key_type": "rsa-2048"}, 422,
     "invalid_request", "key_type"),
    ("an unknown subject field", {"csr": GOOD, "profile": "staff", "subject": {"ca": "yes"}},
     422, "invalid_request", "subject"),
    ("a list, not an object", [GOOD, "staff"], 422, "invalid_request", "body"),
]


@pytest.mark.parametrize(("case", "body", "status", "error", "needle"), BAD_BODIES,
                         ids=[c[0] for c in BAD_BODIES])
def test_bad_issue_requests_are_4xx_naming_the_problem_with_nothing_issued(
        http: TestClient, kyso: Kyso, token: str, case: str, body: Any, status: int, error: str,
        needle: str) -> None:
    before, events = serials(kyso), len(events_of(kyso))
    response = issue(http, token, body)

    answer = refused(response, status, error)
    assert needle in answer["error_description"], answer
    assert serials(kyso) == before
    # exactly one failure event, whether the route or the library refused
    assert [(e["action"], e["outcome"]) for e in events_of(kyso)[events:]] == [
        ("CERT_CREATION", "failure")]
    assert "999999999999" not in answer["error_description"]


@pytest.mark.parametrize(("content", "headers", "status", "error", "needle"), [
    (b"{not json", {"Content-Type": "application/json"}, 400, "invalid_request", "not valid JSON"),
    (b"", {"Content-Type": "application/json"}, 400, "invalid_request", "not valid JSON"),
    (b"\xff\xfe{}", {"Content-Type": "application/json"}, 400, "invalid_request", "JSON"),
    (b"{}", {"Content-Type": "text/plain"}, 415, "unsupported_media_type", "application/json"),
    (b"{}", {}, 415, "unsupported_media_type", "no Content-Type"),
    (b"{}", {"Content-Type": "application/json", "Content-Length": "x"}, 400, "invalid_request",
     "Content-Length"),
    (b"{" + b" " * MAX_BODY_BYTES + b"}", {"Content-Type": "application/json"}, 413,
     "payload_too_large", "64 KiB"),
])
def test_bodies_that_are_not_json_or_too_large_are_refused(
        http: TestClient, kyso: Kyso, token: str, content: bytes, headers: dict[str, str],
        status: int, error: str, needle: str) -> None:
    before = serials(kyso)
    response = http.post(API, content=content, headers={**bearer(token), **headers})

    assert needle in refused(response, status, error)["error_description"]
    assert serials(kyso) == before
    assert events_of(kyso)[-1]["details"]["status"] == status


def test_an_oversized_chunked_body_is_refused_while_it_streams(http: TestClient,
                                                               token: str) -> None:
    def chunks() -> Any:
        for _ in range(100):
            yield b" " * 4096  # 400 KiB, no Content-Length

    response = http.post(API, content=chunks(),
                         headers={**bearer(token), "Content-Type": "application/json"})
    refused(response, 413, "payload_too_large")


# --- what the log holds -------------------------------------------------------------------------

def test_every_call_leaves_one_event_and_no_secret(
        http: TestClient, kyso: Kyso, admin: Citizen, token: str) -> None:
    before = len(audit_events(kyso))
    created = issue(http, token, {"csr": pem_text(staff_csr(11)), "profile": "staff"})
    serial = created.json()["serial"]
    http.get(f"{API}/{serial}", headers=bearer(token))
    http.post(f"{API}/{serial}/hold", headers=bearer(token))
    http.post(f"{API}/{serial}/release", headers=bearer(token))
    revoke(http, token, serial, "superseded")
    revoke(http, token, serial, "superseded")  # 409
    issue(http, token, {"csr": "garbage", "profile": "staff"})  # 422
    issue(http, None, {"csr": "garbage", "profile": "staff"})  # 401

    events = audit_events(kyso)[before:]
    assert [(e["action"], e["outcome"]) for e in events] == [
        ("CERT_CREATION", "success"), ("CERT_VIEW", "success"),
        ("CERT_STATUSCHANGE", "success"), ("CERT_STATUSCHANGE", "success"),
        ("CERT_REVOKED", "success"), ("CERT_REVOKED", "failure"),
        ("CERT_CREATION", "failure"), ("CERT_CREATION", "failure")]
    pseudonym = kyso.pseudonyms.pseudonym(admin.id_number)
    assert Counter(e["actor"] for e in events) == {pseudonym: 7, "anonymous": 1}
    assert len({e["request_id"] for e in events}) == 8
    assert {e["object"] for e in events[:6]} == {serial}
    text = audit_text(kyso)
    assert token not in text
    assert admin.id_number not in text
    assert staff_id(11) not in text


def test_openapi_documents_the_routes_the_scheme_and_the_bodies(app: FastAPI) -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Duplicate Operation ID")
        spec = app.openapi()
    paths = {p: set(ops) for p, ops in spec["paths"].items() if p.startswith(API)}
    assert paths == {API: {"post"}, f"{API}/{{serial}}": {"get"},
                     f"{API}/{{serial}}/revoke": {"post"}, f"{API}/{{serial}}/hold": {"post"},
                     f"{API}/{{serial}}/release": {"post"}}
    scheme = spec["components"]["securitySchemes"]["caAdminToken"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    post = spec["paths"][API]["post"]
    assert post["tags"] == ["ca"]
    assert {"201", "401", "403", "409", "413", "415", "422", "503"} <= set(post["responses"])
    schema = post["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["csr", "profile"]
    assert schema["additionalProperties"] is False
    revoke_schema = spec["paths"][f"{API}/{{serial}}/revoke"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]
    assert set(revoke_schema["properties"]["reason"]["enum"]) == set(REVOKE_REASONS)
