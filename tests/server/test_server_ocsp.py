"""The OCSP routes of ``kyso serve``: POST and GET (RFC 6960 A.1), statuses from the store,
nonces, reused signatures until the status changes, RFC 5019 caching headers, clear 4xx for
bad requests, 503 when the responders are off; and ``openssl ocsp`` against a live server."""

from __future__ import annotations

import base64
import datetime as dt
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from fastapi import FastAPI
from pki_server_support import (
    OCSP_TYPE,
    LivePki,
    get_path,
    issue_staff,
    kyso_cli,
    make_app,
    ocsp_request,
    run,
)
from server_support import ISSUER, TestClient

from conftest import FAST_KDF, T0, audit_events
from kyso.clock import FrozenClock
from kyso.config import load_settings
from kyso.context import Kyso, open_kyso
from kyso.errors import PassphraseError
from kyso.pki import issuance
from kyso.pki.authority import CertificateAuthority, list_services
from kyso.pki.lifecycle import hold, revoke
from kyso.pki.records import CertificateRecord
from kyso.pki.serials import serial_hex

pytest_plugins = ("pki_server_fixtures",)


def post(http: TestClient, der: bytes, ca: str = "staff") -> ocsp.OCSPResponse:
    answer = http.post(f"/ocsp/{ca}", content=der, headers=OCSP_TYPE)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/ocsp-response"
    return ocsp.load_der_ocsp_response(answer.content)


@pytest.fixture
def request_der(staff_cert: CertificateRecord, ca: CertificateAuthority) -> bytes:
    return ocsp_request(staff_cert.certificate, ca.certificate("staff"))


# --- statuses ----------------------------------------------------------------------------------

def test_post_answers_good_signed_by_the_delegated_responder(
    pki_http: TestClient, request_der: bytes, staff_cert: CertificateRecord,
    ca: CertificateAuthority, kyso: Kyso,
) -> None:
    response = post(pki_http, request_der)
    assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert response.serial_number == staff_cert.certificate.serial_number
    responder = next(s for s in list_services(kyso) if s.name == "ocsp-staff").certificate
    assert response.certificates == [responder]
    assert responder.issuer == ca.certificate("staff").subject


def test_revoked_answer_has_reason_and_time(
    pki_http: TestClient, request_der: bytes, staff_cert: CertificateRecord, kyso: Kyso,
    clock: FrozenClock,
) -> None:
    clock.advance(dt.timedelta(minutes=20))
    revoke(kyso, staff_cert.serial, reason="affiliationChanged")
    response = post(pki_http, request_der)
    assert response.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert response.revocation_reason is x509.ReasonFlags.affiliation_changed
    assert response.revocation_time_utc == T0 + dt.timedelta(minutes=20)


def test_hold_answers_revoked_certificate_hold(
    pki_http: TestClient, request_der: bytes, staff_cert: CertificateRecord, kyso: Kyso,
) -> None:
    hold(kyso, staff_cert.serial)
    response = post(pki_http, request_der)
    assert response.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert response.revocation_reason is x509.ReasonFlags.certificate_hold


def test_serial_never_issued_is_unknown(pki_http: TestClient, request_der: bytes) -> None:
    known = ocsp.load_der_ocsp_request(request_der)
    der = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        known.issuer_name_hash, known.issuer_key_hash, 0xDEADBEEF, known.hash_algorithm
    ).build().public_bytes(serialization.Encoding.DER)
    response = post(pki_http, der)
    assert response.certificate_status is ocsp.OCSPCertStatus.UNKNOWN
    assert response.serial_number == 0xDEADBEEF


def test_each_issuing_ca_has_its_responder(
    pki_http: TestClient, kyso: Kyso, ca: CertificateAuthority,
) -> None:
    from conftest import CITIZEN
    from kyso.pki.subjects import SubjectRequest

    citizen = issuance.issue(kyso, ca, "citizen", SubjectRequest.of(**CITIZEN)).record
    der = ocsp_request(citizen.certificate, ca.certificate("citizen"))
    assert post(pki_http, der, "citizen").certificate_status is ocsp.OCSPCertStatus.GOOD
    # the citizen certificate asked of the staff responder: another issuer, HTTP 200 unauthorized
    refused = pki_http.post("/ocsp/staff", content=der, headers=OCSP_TYPE)
    assert refused.status_code == 200
    assert ocsp.load_der_ocsp_response(refused.content).response_status \
        is ocsp.OCSPResponseStatus.UNAUTHORIZED
    assert "another issuer than the staff CA" in refused.headers["x-kyso-error"]


def test_sha256_certid_is_answered_in_kind(
    pki_http: TestClient, staff_cert: CertificateRecord, ca: CertificateAuthority,
) -> None:
    der = ocsp_request(staff_cert.certificate, ca.certificate("staff"), algorithm=hashes.SHA256())
    response = post(pki_http, der)
    assert isinstance(response.hash_algorithm, hashes.SHA256)
    assert response.issuer_key_hash == ocsp.load_der_ocsp_request(der).issuer_key_hash
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD


# --- GET, nonces and caching -------------------------------------------------------------------

def test_get_decodes_url_encoded_base64_with_slashes(
    pki_http: TestClient, staff_cert: CertificateRecord, ca: CertificateAuthority,
) -> None:
    # a nonce whose base64 holds '/', '+' and '=': sent raw, URL-encoded and URL-safe
    der = next(d for n in range(256)
               if (d := ocsp_request(staff_cert.certificate, ca.certificate("staff"),
                                     nonce=bytes([n]) * 7))
               and {"/", "+", "="} <= set(base64.b64encode(d).decode()))
    text = base64.b64encode(der).decode()
    for path in (f"/ocsp/staff/{text}", get_path("staff", der),
                 "/ocsp/staff/" + base64.urlsafe_b64encode(der).decode().rstrip("=")):
        answer = pki_http.get(path)
        assert answer.status_code == 200, (path, answer.headers)
        response = ocsp.load_der_ocsp_response(answer.content)
        assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
        assert response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce \
            == ocsp.load_der_ocsp_request(der).extensions.get_extension_for_class(
                x509.OCSPNonce).value.nonce
        assert answer.headers["cache-control"] == "no-store"  # a nonce answer is not cacheable
    assert quote(text, safe="") != text  # the encoded form really differed


def test_get_without_nonce_carries_rfc5019_cache_headers(
    pki_http: TestClient, request_der: bytes, clock: FrozenClock,
) -> None:
    clock.advance(dt.timedelta(minutes=10))
    first = pki_http.get(get_path("staff", request_der))
    assert first.status_code == 200
    assert first.headers["cache-control"] == \
        "max-age=3600, public, no-transform, must-revalidate"
    assert first.headers["last-modified"] == "Mon, 23 Nov 2026 02:10:00 GMT"
    assert first.headers["expires"] == "Mon, 23 Nov 2026 03:10:00 GMT"
    import hashlib
    assert first.headers["etag"] == f'"{hashlib.sha1(first.content).hexdigest()}"'  # noqa: S324
    clock.advance(dt.timedelta(minutes=15))
    again = pki_http.get(get_path("staff", request_der))
    assert again.content == first.content  # the same signed response, max-age shrinks
    assert again.headers["cache-control"].startswith("max-age=2700,")
    unchanged = pki_http.get(get_path("staff", request_der),
                             headers={"If-None-Match": first.headers["etag"]})
    assert unchanged.status_code == 304
    assert unchanged.content == b""


def test_post_answers_are_not_for_http_caches(pki_http: TestClient, request_der: bytes) -> None:
    answer = pki_http.post("/ocsp/staff", content=request_der, headers=OCSP_TYPE)
    assert answer.headers["cache-control"] == "no-store"
    assert "etag" not in answer.headers


def test_cached_answer_is_byte_identical_until_a_revocation(
    pki_http: TestClient, request_der: bytes, staff_cert: CertificateRecord,
    clock: FrozenClock, kyso: Kyso, database_url: str | None,
) -> None:
    first = pki_http.post("/ocsp/staff", content=request_der, headers=OCSP_TYPE).content
    clock.advance(dt.timedelta(minutes=5))
    assert pki_http.get(get_path("staff", request_der)).content == first
    assert pki_http.post("/ocsp/staff", content=request_der, headers=OCSP_TYPE).content == first
    # another process revokes it in the same store: the very next request says so
    other = open_kyso(load_settings(home=kyso.settings.home, database_url=database_url,
                                    environ=FAST_KDF), clock=clock, actor="admin:other")
    try:
        revoke(other, staff_cert.serial, reason="keyCompromise")
    finally:
        other.close()
    after = post(pki_http, request_der)
    assert after.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert after.revocation_reason is x509.ReasonFlags.key_compromise


def test_nonce_is_echoed_and_signed_fresh(
    pki_http: TestClient, staff_cert: CertificateRecord, ca: CertificateAuthority,
) -> None:
    for nonce in (b"\x01" * 16, b"\x02" * 32):
        der = ocsp_request(staff_cert.certificate, ca.certificate("staff"), nonce=nonce)
        response = post(pki_http, der)
        assert response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == nonce


def test_ocsp_requests_leave_no_audit_events(
    pki_http: TestClient, request_der: bytes, kyso: Kyso,
) -> None:
    before = len(audit_events(kyso))
    for _ in range(5):
        post(pki_http, request_der)
    pki_http.post("/ocsp/staff", content=b"garbage", headers=OCSP_TYPE)
    assert len(audit_events(kyso)) == before


# --- bad requests ------------------------------------------------------------------------------

def two_certificates(der: bytes) -> bytes:
    from asn1crypto import ocsp as asn1_ocsp

    single = asn1_ocsp.OCSPRequest.load(der)["tbs_request"]["request_list"][0]
    return bytes(asn1_ocsp.OCSPRequest({"tbs_request": {"request_list": [single, single]}}).dump())


@pytest.mark.parametrize("make", [lambda d: b"", lambda d: b"garbage", lambda d: d[:-3],
                                  two_certificates], ids=["empty", "garbage", "truncated",
                                                          "two-certificates"])
def test_malformed_requests_get_400_with_a_der_malformed_request(
    pki_http: TestClient, request_der: bytes, make: object,
) -> None:
    body = make(request_der)  # type: ignore[operator]
    answer = pki_http.post("/ocsp/staff", content=body, headers=OCSP_TYPE)
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/ocsp-response"
    assert ocsp.load_der_ocsp_response(answer.content).response_status \
        is ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    assert answer.headers["x-kyso-error"]
    via_get = pki_http.get(get_path("staff", body))
    assert via_get.status_code == 400
    assert via_get.content == answer.content


def test_get_path_that_is_not_base64_is_400(pki_http: TestClient) -> None:
    answer = pki_http.get("/ocsp/staff/not*base64!")
    assert answer.status_code == 400
    assert ocsp.load_der_ocsp_response(answer.content).response_status \
        is ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    assert "not a base64 DER OCSPRequest" in answer.headers["x-kyso-error"]


@pytest.mark.parametrize("name", ["root", "nope", "staff.crl", "x" * 300])
def test_unknown_ca_is_404(pki_http: TestClient, request_der: bytes, name: str) -> None:
    answer = pki_http.post(f"/ocsp/{name}", content=request_der, headers=OCSP_TYPE)
    assert answer.status_code == 404
    body = answer.json()
    assert body["error"] == "unknown_ca"
    assert "issuing CAs: staff, citizen, services" in body["error_description"]
    assert len(body["error_description"]) < 200
    assert pki_http.get(get_path(name, request_der)).status_code == 404


def test_oversized_bodies_are_refused(pki_http: TestClient) -> None:
    big = pki_http.post("/ocsp/staff", content=b"\x30" * (64 * 1024 + 1), headers=OCSP_TYPE)
    assert big.status_code == 413
    assert big.json() == {"error": "request_too_large",
                          "error_description": "the request body is larger than 65536 bytes"}
    long_path = pki_http.get("/ocsp/staff/" + "A" * 9000)
    assert long_path.status_code == 414
    assert long_path.json()["error"] == "request_too_large"


@pytest.mark.parametrize("content_type", [None, "application/octet-stream", "text/plain",
                                          "application/timestamp-query"])
def test_wrong_content_type_is_415(
    pki_http: TestClient, request_der: bytes, content_type: str | None,
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    answer = pki_http.post("/ocsp/staff", content=request_der, headers=headers)
    assert answer.status_code == 415
    assert "application/ocsp-request" in answer.json()["error_description"]


def test_content_type_parameters_are_accepted(pki_http: TestClient, request_der: bytes) -> None:
    answer = pki_http.post("/ocsp/staff", content=request_der,
                           headers={"Content-Type": "Application/OCSP-Request; charset=binary"})
    assert answer.status_code == 200


# --- the responders off, and back ---------------------------------------------------------------

def test_without_the_ca_passphrase_ocsp_is_503_and_crt_still_served(
    kyso: Kyso, ca: CertificateAuthority, request_der: bytes,
) -> None:
    with TestClient(make_app(kyso, ca_passphrase=None), base_url=ISSUER) as http:
        answer = http.post("/ocsp/staff", content=request_der, headers=OCSP_TYPE)
        assert answer.status_code == 503
        assert answer.json()["error"] == "ocsp_unavailable"
        assert "without the CA passphrase" in answer.json()["error_description"]
        assert http.get(get_path("staff", request_der)).status_code == 503
        crt = http.get("/crt/staff.crt")
        assert crt.status_code == 200
        assert x509.load_der_x509_certificate(crt.content) == ca.certificate("staff")


def test_without_a_ca_ocsp_is_503_naming_it(kyso: Kyso) -> None:
    with TestClient(make_app(kyso), base_url=ISSUER) as http:
        answer = http.post("/ocsp/staff", content=b"\x30\x00", headers=OCSP_TYPE)
        assert answer.status_code == 503
        assert "no CA has been created" in answer.json()["error_description"]
        crt = http.get("/crt/staff.crt")
        assert crt.status_code == 404
        assert "no CA has been created" in crt.json()["error_description"]


def test_a_wrong_ca_passphrase_stops_the_app(kyso: Kyso, ca: CertificateAuthority) -> None:
    with pytest.raises(PassphraseError, match="wrong CA passphrase"):
        make_app(kyso, ca_passphrase="not-the-passphrase")


def ocsp_service_serial(kyso: Kyso) -> str:
    cert = next(s for s in list_services(kyso) if s.name == "ocsp-staff").certificate
    return serial_hex(cert.serial_number)


def test_an_expired_responder_is_503_until_its_renewal_is_picked_up(
    pki_app: FastAPI, pki_http: TestClient, request_der: bytes, kyso: Kyso,
    ca: CertificateAuthority, clock: FrozenClock,
) -> None:
    old = ocsp_service_serial(kyso)
    not_after = next(s for s in list_services(kyso)
                     if s.name == "ocsp-staff").certificate.not_valid_after_utc
    clock.set(not_after + dt.timedelta(minutes=1))
    off = pki_http.post("/ocsp/staff", content=request_der, headers=OCSP_TYPE)
    assert off.status_code == 503
    assert "the ocsp-staff certificate is not valid now" in off.json()["error_description"]
    renewed = issuance.renew(kyso, ca, old)
    clock.advance(dt.timedelta(minutes=5))  # the next look for a renewed certificate
    response = post(pki_http, request_der)
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert response.certificates == [renewed.record.certificate]


def test_a_renewed_responder_certificate_replaces_the_old_one(
    pki_http: TestClient, request_der: bytes, kyso: Kyso, ca: CertificateAuthority,
    clock: FrozenClock,
) -> None:
    clock.advance(dt.timedelta(days=20))
    before = post(pki_http, request_der).certificates
    renewed = issuance.renew(kyso, ca, ocsp_service_serial(kyso)).record.certificate
    assert post(pki_http, request_der).certificates == before  # not looked for yet
    clock.advance(dt.timedelta(minutes=5))
    assert post(pki_http, request_der).certificates == [renewed]


# --- openssl against a live server -------------------------------------------------------------

def openssl_ocsp(openssl: str, live: LivePki, *extra: str) -> str:
    proc = run(openssl, "ocsp", "-issuer", str(live.files["staff"]), "-cert",
               str(live.files["leaf"]), "-url", f"{live.url}/ocsp/staff",
               "-CAfile", str(live.files["root"]), *extra)
    assert "Response verify OK" in proc.stderr, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.external
def test_openssl_ocsp_good_then_revoked_after_kyso_cert_revoke(
    openssl: str, live_pki: LivePki,
) -> None:
    leaf = str(live_pki.files["leaf"])
    assert f"{leaf}: good" in openssl_ocsp(openssl, live_pki)
    assert f"{leaf}: good" in openssl_ocsp(openssl, live_pki, "-no_nonce")
    assert f"{leaf}: good" in openssl_ocsp(openssl, live_pki, "-no_nonce")  # from the cache
    revoked = kyso_cli(live_pki.home, "cert", "revoke", live_pki.leaf.serial,
                       "--reason", "keyCompromise")
    assert revoked.returncode == 0, revoked.stderr
    for extra in ((), ("-no_nonce",)):
        out = openssl_ocsp(openssl, live_pki, *extra)
        assert f"{leaf}: revoked" in out
        assert "Reason: keyCompromise" in out


@pytest.mark.external
def test_openssl_ocsp_with_a_sha256_certid(openssl: str, live_pki: LivePki) -> None:
    for _ in range(2):  # signed, then from the cache
        proc = run(openssl, "ocsp", "-issuer", str(live_pki.files["staff"]), "-sha256", "-cert",
                   str(live_pki.files["leaf"]), "-no_nonce", "-url", f"{live_pki.url}/ocsp/staff",
                   "-CAfile", str(live_pki.files["root"]), "-resp_text")
        assert "Response verify OK" in proc.stderr, proc.stderr
        assert "Hash Algorithm: sha256" in proc.stdout
        assert f"{live_pki.files['leaf']}: good" in proc.stdout


@pytest.mark.external
def test_openssl_ocsp_unknown_serial_and_another_issuer(
    openssl: str, live_pki: LivePki,
) -> None:
    unknown = run(openssl, "ocsp", "-issuer", str(live_pki.files["staff"]), "-serial", "0x1234",
                  "-url", f"{live_pki.url}/ocsp/staff", "-CAfile", str(live_pki.files["root"]))
    assert "Response verify OK" in unknown.stderr, unknown.stderr
    assert "0x1234: unknown" in unknown.stdout
    other = issue_staff(live_pki.kyso, live_pki.ca, 7)
    assert other.issuer == "staff"
    wrong = run(openssl, "ocsp", "-issuer", str(live_pki.files["staff"]), "-cert",
                str(live_pki.files["leaf"]), "-url", f"{live_pki.url}/ocsp/citizen",
                "-CAfile", str(live_pki.files["root"]))
    assert "Responder Error: unauthorized (6)" in wrong.stdout + wrong.stderr
