"""The signing gateway over HTTP (CSC API at /csc/v2 and /csc/v1, enrolment at
/api/v1/signing/credentials): who gets in (level-2 tokens for kyso-csc; a fresh step-up for
enrolment and authorize, once per token), what it answers, and each refusal the issue lists —
reused, foreign, expired or miscounted activation data, level 1, another audience, a locked
account (with the certificate on hold in OCSP until unlocked), another citizen's credential."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509 import ocsp
from csc_support import ECDSA_SHA256, Enrolled, authorize_body, digest, enrol, mint, post, refused, sign_body
from pki_server_support import OCSP_TYPE, ocsp_request
from server_support import ISSUER, OTHER_CLIENT, ApiClients, Browser, Citizen, TestClient

from conftest import audit_events, audit_text
from kyso.authn.enrolment import lock_identity, unlock_identity
from kyso.authn.registry import LockGround
from kyso.clock import FrozenClock
from kyso.context import Kyso
from kyso.pki.authority import CertificateAuthority
from kyso.pki.lifecycle import hold

pytest_plugins = ("server_fixtures", "csc_fixtures")

VERSIONS = ["v2", "v1"]


def approve(http: TestClient, token: str, credential_id: str, hashes: list[bytes],
            version: str = "v2") -> str:
    response = post(http, "credentials/authorize", authorize_body(credential_id, hashes), token,
                    version)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["expiresIn"] == 300
    sad: str = body["SAD"]
    return sad


def verify(enrolled: Enrolled, values: list[bytes], signatures: list[str]) -> None:
    public = x509.load_pem_x509_certificate(enrolled.certificate_pem.encode()).public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert len(signatures) == len(values)
    for value, signature in zip(values, signatures, strict=True):
        public.verify(base64.b64decode(signature), value, ec.ECDSA(Prehashed(hashes.SHA256())))


def events(kyso: Kyso, action: str) -> list[dict[str, Any]]:
    return [e for e in audit_events(kyso) if e["action"] == action]


# --- info, enrolment, list, info ---------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
def test_info_describes_the_gateway_without_a_token(csc_http: TestClient, version: str) -> None:
    response = post(csc_http, "info", {}, version=version)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["specs"] == "2.0.0.2"
    assert (body["name"], body["region"], body["lang"]) == ("kyso", "VN", "vi-VN")
    assert body["authType"] == ["oauth2code"]
    assert body["oauth2"] == body["oauth2Issuer"] == ISSUER
    assert body["methods"] == ["credentials/list", "credentials/info", "credentials/authorize",
                               "signatures/signHash"]
    assert body["logo"].startswith("data:image/svg+xml;base64,")


def test_enrolment_returns_a_citizen_certificate_for_a_key_only_the_gateway_holds(
        enrolled: Enrolled, ca: CertificateAuthority, kyso: Kyso, level2: Citizen) -> None:
    cert = x509.load_pem_x509_certificate(enrolled.certificate_pem.encode())
    chain = [x509.load_pem_x509_certificate(p.encode()) for p in enrolled.chain_pem]

    cert.verify_directly_issued_by(ca.certificate("citizen"))
    assert chain == [ca.certificate("citizen"), ca.certificate("root")]
    assert f"{cert.serial_number:x}" == enrolled.serial
    assert "CCCD:033301000123" in cert.subject.rfc4514_string()
    event = events(kyso, "CSC_CREDENTIAL_ENROL")[-1]
    assert (event["outcome"], event["object"]) == ("success", enrolled.credential_id)
    assert event["actor"] == kyso.pseudonyms.pseudonym(level2.id_number)
    assert event["details"]["jti"]
    assert "BEGIN" not in audit_text(kyso)  # no key, no certificate in the log


def test_a_second_enrolment_is_409_naming_the_credential(
        csc_http: TestClient, enrolled: Enrolled, token: str) -> None:
    description = refused(enrol(csc_http, token), 409, "conflict")

    assert enrolled.credential_id in description


def test_enrolment_needs_a_fresh_login(csc_http: TestClient, token: str,
                                       clock: FrozenClock) -> None:
    clock.advance(dt.timedelta(seconds=160))

    response = enrol(csc_http, token)

    refused(response, 401, "insufficient_user_authentication")
    assert 'max_age="120"' in response.headers["www-authenticate"]


def test_list_and_info_show_the_callers_credential_with_its_chain(
        csc_http: TestClient, enrolled: Enrolled, token: str, ca: CertificateAuthority) -> None:
    listed = post(csc_http, "credentials/list", {"credentialInfo": True, "certificates": "chain",
                                                  "certInfo": True}, token)
    info = post(csc_http, "credentials/info", {"credentialID": enrolled.credential_id,
                                               "certificates": "chain", "certInfo": True}, token)

    assert listed.status_code == 200, listed.text
    assert listed.json()["credentialIDs"] == [enrolled.credential_id]
    assert listed.json()["credentialInfos"][0]["credentialID"] == enrolled.credential_id
    assert info.status_code == 200, info.text
    body = info.json()
    assert body["key"] == {"status": "enabled", "algo": ["1.2.840.10045.4.3.2",
                                                         "1.2.840.10045.4.3.3",
                                                         "1.2.840.10045.4.3.4",
                                                         "1.2.840.10045.2.1"],
                           "len": 256, "curve": "1.2.840.10045.3.1.7"}
    assert (body["SCAL"], body["multisign"], body["authMode"]) == ("2", 10, "explicit")
    certs = [x509.load_der_x509_certificate(base64.b64decode(c))
             for c in body["cert"]["certificates"]]
    assert certs[1:] == [ca.certificate("citizen")]  # chain without the root
    assert body["cert"]["status"] == "valid"
    assert body["cert"]["serialNumber"] == enrolled.serial
    assert body["cert"]["validTo"].endswith("Z")
    assert len(body["cert"]["validTo"]) == 15
    single = post(csc_http, "credentials/info", {"credentialID": enrolled.credential_id}, token)
    assert len(single.json()["cert"]["certificates"]) == 1
    assert "serialNumber" not in single.json()["cert"]


def test_another_citizens_credential_is_indistinguishable_from_an_unknown_one(
        csc_http: TestClient, csc_browser: Browser, clock: FrozenClock, enrolled: Enrolled,
        clients: ApiClients, kyso: Kyso) -> None:
    from server_support import make_citizen

    from kyso.authn.registry import Level

    other = make_citizen(kyso, {"id_number": "001099012346", "full_name": "Lê Văn Cường",
                                "birth_date": "1999-01-01", "sex": "male"}, Level.TWO)
    theirs = mint(csc_browser, clock, other, clients.api_secret)
    unknown = "csc-" + "A" * 32
    answers = []
    for cid in (enrolled.credential_id, unknown):
        answers.append([
            post(csc_http, "credentials/info", {"credentialID": cid}, theirs),
            post(csc_http, "signatures/signHash", sign_body(cid, "x" * 43, [digest("a")]),
                 theirs)])
    fresh = mint(csc_browser, clock, other, clients.api_secret)
    answers[0].append(post(csc_http, "credentials/authorize",
                           authorize_body(enrolled.credential_id, [digest("a")]), fresh))
    fresh = mint(csc_browser, clock, other, clients.api_secret)
    answers[1].append(post(csc_http, "credentials/authorize",
                           authorize_body(unknown, [digest("a")]), fresh))

    for mine, random in zip(*answers, strict=True):
        assert (mine.status_code, mine.json()) == (random.status_code, random.json())
        assert mine.status_code == 400
        assert mine.json()["error_description"] == "credentialID: unknown credential"
    listed = post(csc_http, "credentials/list", {}, theirs)
    assert listed.json() == {"credentialIDs": []}


def test_a_user_id_other_than_the_callers_is_refused(csc_http: TestClient, token: str) -> None:
    description = refused(post(csc_http, "credentials/list", {"userID": "someone-else"}, token),
                          400, "invalid_request")

    assert description.startswith("userID:")


# --- authorize and signHash ---------------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
def test_approved_hashes_are_signed_and_the_signatures_verify(
        csc_http: TestClient, enrolled: Enrolled, token: str, version: str) -> None:
    values = [digest("đơn"), digest("phụ lục")]
    sad = approve(csc_http, token, enrolled.credential_id, values, version)
    body = sign_body(enrolled.credential_id, sad, values)
    if version == "v1":  # pyHanko's field names
        body["hash"], body["hashAlgo"] = body.pop("hashes"), body.pop("hashAlgorithmOID")

    response = post(csc_http, "signatures/signHash", {**body, "operationMode": "S",
                                                      "clientData": "hồ sơ 123"}, token, version)

    assert response.status_code == 200, response.text
    verify(enrolled, values, response.json()["signatures"])


def test_a_reused_sad_is_refused(csc_http: TestClient, enrolled: Enrolled, token: str) -> None:
    values = [digest("a")]
    sad = approve(csc_http, token, enrolled.credential_id, values)
    body = sign_body(enrolled.credential_id, sad, values)
    assert post(csc_http, "signatures/signHash", body, token).status_code == 200

    description = refused(post(csc_http, "signatures/signHash", body, token), 400,
                          "invalid_request")

    assert description == "SAD: already used; authorize again"


def test_a_sad_for_another_hash_is_refused(csc_http: TestClient, enrolled: Enrolled,
                                           token: str) -> None:
    sad = approve(csc_http, token, enrolled.credential_id, [digest("approved")])

    description = refused(post(csc_http, "signatures/signHash", sign_body(
        enrolled.credential_id, sad, [digest("swapped")]), token), 400, "invalid_request")

    assert description == "SAD: not authorized for these hashes"


def test_an_expired_sad_is_refused(csc_http: TestClient, enrolled: Enrolled, token: str,
                                   clock: FrozenClock) -> None:
    values = [digest("a")]
    sad = approve(csc_http, token, enrolled.credential_id, values)
    clock.advance(dt.timedelta(seconds=301))

    description = refused(post(csc_http, "signatures/signHash", sign_body(
        enrolled.credential_id, sad, values), token), 400, "invalid_request")

    assert description.startswith("SAD: expired")


def test_a_hash_count_different_from_the_authorized_one_is_refused(
        csc_http: TestClient, enrolled: Enrolled, token: str) -> None:
    values = [digest("a"), digest("b")]
    sad = approve(csc_http, token, enrolled.credential_id, values)

    description = refused(post(csc_http, "signatures/signHash", sign_body(
        enrolled.credential_id, sad, values[:1]), token), 400, "invalid_request")

    assert description == "SAD: authorized for 2 signature(s), but 1 hash(es) were given"


def test_a_stale_login_at_authorize_is_401_with_a_max_age_challenge(
        csc_http: TestClient, enrolled: Enrolled, token: str, clock: FrozenClock, kyso: Kyso,
        level2: Citizen) -> None:
    clock.advance(dt.timedelta(seconds=160))

    response = post(csc_http, "credentials/authorize",
                    authorize_body(enrolled.credential_id, [digest("a")]), token)

    refused(response, 401, "insufficient_user_authentication")
    challenge = response.headers["www-authenticate"]
    assert 'error="insufficient_user_authentication"' in challenge
    assert 'acr_values="urn:vn:vneid:loa:2"' in challenge
    assert 'max_age="120"' in challenge
    event = events(kyso, "CSC_AUTHORIZE")[-1]
    assert (event["outcome"], event["object"]) == ("failure", enrolled.credential_id)
    assert event["actor"] == kyso.pseudonyms.pseudonym(level2.id_number)  # the token was hers
    assert event["details"]["hashes"] == [digest("a").hex()]


def test_a_stale_login_may_still_sign_what_it_approved_while_fresh(
        csc_http: TestClient, enrolled: Enrolled, token: str, clock: FrozenClock) -> None:
    values = [digest("a")]
    sad = approve(csc_http, token, enrolled.credential_id, values)
    clock.advance(dt.timedelta(seconds=200))

    response = post(csc_http, "signatures/signHash",
                    sign_body(enrolled.credential_id, sad, values), token)

    assert response.status_code == 200, response.text


def test_a_token_used_twice_to_authorize_is_refused_asking_for_a_new_login(
        csc_http: TestClient, enrolled: Enrolled, token: str) -> None:
    approve(csc_http, token, enrolled.credential_id, [digest("a")])

    response = post(csc_http, "credentials/authorize",
                    authorize_body(enrolled.credential_id, [digest("b")]), token)

    description = refused(response, 401, "insufficient_user_authentication")
    assert "already authorized" in description
    assert 'max_age="120"' in response.headers["www-authenticate"]


def test_a_level1_token_is_refused_everywhere_with_a_level2_challenge(
        csc_http: TestClient, csc_browser: Browser, clock: FrozenClock, level1: Citizen,
        clients: ApiClients) -> None:
    weak = mint(csc_browser, clock, level1, clients.api_secret, step_up=False)

    for path, body in (("/api/v1/signing/credentials", {}),
                       ("credentials/list", {}),
                       ("credentials/authorize", authorize_body("csc-x", [digest("a")])),
                       ("signatures/signHash", sign_body("csc-x", "x", [digest("a")]))):
        response = post(csc_http, path, body, weak)
        refused(response, 401, "insufficient_user_authentication")
        assert 'acr_values="urn:vn:vneid:loa:2"' in response.headers["www-authenticate"]


def test_a_token_for_another_audience_is_401_invalid_token(
        csc_http: TestClient, csc_browser: Browser, clock: FrozenClock, level2: Citizen,
        clients: ApiClients, enrolled: Enrolled) -> None:
    foreign = mint(csc_browser, clock, level2, clients.other_secret, client_id=OTHER_CLIENT)

    for path, body in (("/api/v1/signing/credentials", {}),
                       ("credentials/list", {}),
                       ("credentials/authorize",
                        authorize_body(enrolled.credential_id, [digest("a")]))):
        response = post(csc_http, path, body, foreign)
        refused(response, 401, "invalid_token")
        assert 'realm="kyso-csc"' in response.headers["www-authenticate"]


@pytest.mark.parametrize("header", [None, "Bearer not.a.token", "Basic dXNlcjpwYXNz"])
def test_no_or_a_bad_token_is_401(csc_http: TestClient, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}

    response = csc_http.post("/csc/v2/credentials/list", json={}, headers=headers)

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


# --- lock → hold → unlock -----------------------------------------------------------------------

def ocsp_status(http: TestClient, enrolled: Enrolled, ca: CertificateAuthority
                ) -> ocsp.OCSPSingleResponse:
    cert = x509.load_pem_x509_certificate(enrolled.certificate_pem.encode())
    answer = http.post("/ocsp/citizen", content=ocsp_request(cert, ca.certificate("citizen")),
                       headers=OCSP_TYPE)
    assert answer.status_code == 200, answer.text
    response = ocsp.load_der_ocsp_response(answer.content)
    assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    return next(response.responses)


def test_a_locked_account_is_refused_its_certificate_is_on_hold_and_unlocking_restores(
        csc_http: TestClient, csc_browser: Browser, clock: FrozenClock, kyso: Kyso,
        level2: Citizen, clients: ApiClients, enrolled: Enrolled, token: str,
        ca: CertificateAuthority) -> None:
    values = [digest("a")]
    sad = approve(csc_http, token, enrolled.credential_id, values)
    before = ocsp_status(csc_http, enrolled, ca)

    lock_identity(kyso, level2.id_number, LockGround.HOLDER_REQUEST)
    signing = post(csc_http, "signatures/signHash", sign_body(enrolled.credential_id, sad,
                                                              values), token)
    held = ocsp_status(csc_http, enrolled, ca)
    unlock_identity(kyso, level2.id_number)
    after = ocsp_status(csc_http, enrolled, ca)
    again = mint(csc_browser, clock, level2, clients.api_secret)
    resumed = post(csc_http, "signatures/signHash", sign_body(enrolled.credential_id, sad,
                                                              values), again)

    assert before.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert "locked" in refused(signing, 401, "invalid_token")
    assert held.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert held.revocation_reason is x509.ReasonFlags.certificate_hold
    assert after.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert resumed.status_code == 200, resumed.text  # the SAD from before the lock was unused
    failure = events(kyso, "CSC_SIGN_HASH")[-2]
    assert (failure["outcome"], failure["object"]) == ("failure", enrolled.credential_id)
    assert failure["actor"] == kyso.pseudonyms.pseudonym(level2.id_number)
    assert failure["details"]["hashes"] == [values[0].hex()]


def test_authorize_for_a_locked_account_is_refused_and_audited(
        csc_http: TestClient, kyso: Kyso, level2: Citizen, enrolled: Enrolled,
        token: str) -> None:
    lock_identity(kyso, level2.id_number, LockGround.SECURITY)

    response = post(csc_http, "credentials/authorize",
                    authorize_body(enrolled.credential_id, [digest("a")]), token)

    assert "the account is locked" in refused(response, 401, "invalid_token")
    event = events(kyso, "CSC_AUTHORIZE")[-1]
    assert (event["outcome"], event["object"]) == ("failure", enrolled.credential_id)
    assert event["actor"] == kyso.pseudonyms.pseudonym(level2.id_number)
    assert event["details"]["hashes"] == [digest("a").hex()]


# --- the audit trail over HTTP ------------------------------------------------------------------

def test_each_http_authorization_and_signature_is_one_event_with_request_context(
        csc_http: TestClient, kyso: Kyso, level2: Citizen, enrolled: Enrolled,
        token: str) -> None:
    values = [digest("a")]
    sad = approve(csc_http, token, enrolled.credential_id, values)
    post(csc_http, "signatures/signHash", sign_body(enrolled.credential_id, sad, values), token)
    post(csc_http, "signatures/signHash", {"credentialID": enrolled.credential_id}, token)
    post(csc_http, "credentials/authorize", authorize_body(enrolled.credential_id, values))

    psn = kyso.pseudonyms.pseudonym(level2.id_number)
    authorizations = events(kyso, "CSC_AUTHORIZE")
    signatures = events(kyso, "CSC_SIGN_HASH")
    assert [(e["outcome"], e["actor"]) for e in authorizations] == [("success", psn),
                                                                    ("failure", "anonymous")]
    assert [(e["outcome"], e["actor"]) for e in signatures] == [("success", psn),
                                                                ("failure", psn)]
    for event in authorizations[:1] + signatures:
        assert event["object"] == enrolled.credential_id
        assert event["request_id"]
        assert event["details"]["client_id"] == "dichvucong"
    assert signatures[0]["details"]["hashes"] == [values[0].hex()]
    assert signatures[1]["details"]["reason"].startswith("SAD: Field required")
    text = audit_text(kyso)
    assert sad not in text
    assert token not in text
    assert level2.id_number not in text


def test_the_signatures_are_ecdsa_over_the_exact_hash(csc_http: TestClient, enrolled: Enrolled,
                                                      token: str) -> None:
    values = [digest("a")]
    sad = approve(csc_http, token, enrolled.credential_id, values)
    response = post(csc_http, "signatures/signHash",
                    sign_body(enrolled.credential_id, sad, values, signAlgo=ECDSA_SHA256), token)

    assert response.status_code == 200, response.text
    with pytest.raises(InvalidSignature):
        verify(enrolled, [digest("b")], response.json()["signatures"])


def test_a_certificate_an_administrator_put_on_hold_cannot_sign_403(
        csc_http: TestClient, kyso: Kyso, enrolled: Enrolled, token: str) -> None:
    hold(kyso, enrolled.serial)

    response = post(csc_http, "credentials/authorize",
                    authorize_body(enrolled.credential_id, [digest("a")]), token)
    info = post(csc_http, "credentials/info", {"credentialID": enrolled.credential_id}, token)

    assert "is on hold" in refused(response, 403, "access_denied")
    assert info.json()["cert"]["status"] == "suspended"
    assert info.json()["key"]["status"] == "enabled"  # the credential itself is not suspended
