"""The OCSP responder: statuses from the store, signed responses cryptography and OpenSSL
accept, nonces, and the unsuccessful answers to requests it cannot serve."""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import SignatureAlgorithmOID

from conftest import CITIZEN, PASSPHRASE, STAFF, T0
from kyso.clock import FrozenClock
from kyso.context import Kyso
from kyso.errors import PkiError
from kyso.pki import issuance
from kyso.pki.authority import CertificateAuthority
from kyso.pki.lifecycle import hold, release, revoke
from kyso.pki.ocsp import (
    OCSP_VALIDITY,
    CertStatus,
    OcspResponder,
    SerialStatus,
    load_responder,
    serial_status,
)
from kyso.pki.records import CertificateRecord, RevocationReason
from kyso.pki.services import unlock_service
from kyso.pki.subjects import SubjectRequest

Lookup = Callable[[int], SerialStatus]


@pytest.fixture
def staff_cert(kyso: Kyso, ca: CertificateAuthority) -> CertificateRecord:
    return issuance.issue(kyso, ca, "staff", SubjectRequest.of(**STAFF)).record


@pytest.fixture
def citizen_cert(kyso: Kyso, ca: CertificateAuthority) -> CertificateRecord:
    return issuance.issue(kyso, ca, "citizen", SubjectRequest.of(**CITIZEN)).record


@pytest.fixture
def responder(kyso: Kyso, ca: CertificateAuthority) -> OcspResponder:
    return load_responder(kyso, PASSPHRASE, "staff")


@pytest.fixture
def lookup(kyso: Kyso) -> Lookup:
    return lambda serial: serial_status(kyso, "staff", serial)


def build_request(cert: x509.Certificate, issuer: x509.Certificate, *,
                  algorithm: hashes.HashAlgorithm | None = None,
                  nonce: bytes | None = None) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(
        cert, issuer, algorithm or hashes.SHA1())  # noqa: S303 - what clients send
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def status_of(kyso: Kyso, record: CertificateRecord) -> SerialStatus:
    return serial_status(kyso, record.issuer, record.certificate.serial_number)


# --- statuses from the store -------------------------------------------------------------------

def test_serial_status_follows_revocation_hold_and_release(
    kyso: Kyso, staff_cert: CertificateRecord, clock: FrozenClock
) -> None:
    assert status_of(kyso, staff_cert) == SerialStatus(CertStatus.GOOD)
    clock.advance(dt.timedelta(hours=2))
    hold(kyso, staff_cert.serial)
    assert status_of(kyso, staff_cert) == SerialStatus(
        CertStatus.REVOKED, T0 + dt.timedelta(hours=2), RevocationReason.CERTIFICATE_HOLD)
    release(kyso, staff_cert.serial)
    assert status_of(kyso, staff_cert) == SerialStatus(CertStatus.GOOD)
    clock.advance(dt.timedelta(hours=1))
    revoke(kyso, staff_cert.serial, reason="affiliationChanged")
    assert status_of(kyso, staff_cert) == SerialStatus(
        CertStatus.REVOKED, T0 + dt.timedelta(hours=3), RevocationReason.AFFILIATION_CHANGED)


def test_serials_never_issued_by_that_ca_are_unknown(
    kyso: Kyso, staff_cert: CertificateRecord, citizen_cert: CertificateRecord,
    ca: CertificateAuthority,
) -> None:
    assert serial_status(kyso, "staff", 0x1234) == SerialStatus(CertStatus.UNKNOWN)
    assert serial_status(kyso, "staff", citizen_cert.certificate.serial_number).status \
        is CertStatus.UNKNOWN
    assert serial_status(kyso, "citizen", citizen_cert.certificate.serial_number).status \
        is CertStatus.GOOD
    # CA certificates live in their own table, and no responder answers for the root
    assert serial_status(kyso, "root", ca.certificate("staff").serial_number).status \
        is CertStatus.UNKNOWN


def test_expired_certificates_keep_their_status(
    kyso: Kyso, staff_cert: CertificateRecord, citizen_cert: CertificateRecord,
    clock: FrozenClock,
) -> None:
    revoke(kyso, citizen_cert.serial, reason="superseded")
    clock.set(staff_cert.not_after + dt.timedelta(days=400))
    assert status_of(kyso, staff_cert).status is CertStatus.GOOD
    assert status_of(kyso, citizen_cert) == SerialStatus(
        CertStatus.REVOKED, T0, RevocationReason.SUPERSEDED)


def test_serial_status_is_consistent() -> None:
    with pytest.raises(PkiError, match="revocation time goes with status revoked"):
        SerialStatus(CertStatus.REVOKED)
    with pytest.raises(PkiError, match="revocation time goes with status revoked"):
        SerialStatus(CertStatus.GOOD, T0)
    with pytest.raises(PkiError, match="reason goes only with status revoked"):
        SerialStatus(CertStatus.UNKNOWN, reason=RevocationReason.SUPERSEDED)
    assert SerialStatus(CertStatus.REVOKED, T0, RevocationReason.KEY_COMPROMISE).to_dict() == {
        "status": "revoked", "revoked_at": "2026-11-23T09:00:00+07:00", "reason": "keyCompromise"}


# --- responses ---------------------------------------------------------------------------------

def test_good_response_is_signed_by_the_delegated_responder(
    responder: OcspResponder, staff_cert: CertificateRecord, ca: CertificateAuthority,
    kyso: Kyso,
) -> None:
    der = responder.response_for(staff_cert.certificate.serial_number, status_of(kyso, staff_cert))
    resp = ocsp.load_der_ocsp_response(der)
    expected = ocsp.load_der_ocsp_request(build_request(staff_cert.certificate,
                                                        ca.certificate("staff")))
    signer = responder.service.certificate
    assert resp.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert resp.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert resp.serial_number == staff_cert.certificate.serial_number
    assert isinstance(resp.hash_algorithm, hashes.SHA1)
    assert resp.issuer_name_hash == expected.issuer_name_hash
    assert resp.issuer_key_hash == expected.issuer_key_hash
    assert resp.produced_at_utc == resp.this_update_utc == T0
    assert resp.next_update_utc == T0 + OCSP_VALIDITY == T0 + dt.timedelta(hours=1)
    assert resp.revocation_time_utc is None
    assert resp.responder_name is None
    assert resp.responder_key_hash == x509.SubjectKeyIdentifier.from_public_key(
        signer.public_key()).digest  # RFC 6960 KeyHash: SHA-1 of the key bits
    assert resp.certificates == [signer]
    assert len(resp.extensions) == 0
    assert resp.signature_algorithm_oid == SignatureAlgorithmOID.ECDSA_WITH_SHA256
    public_key = signer.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    public_key.verify(resp.signature, resp.tbs_response_bytes, ec.ECDSA(hashes.SHA256()))
    assert resp.public_bytes(serialization.Encoding.DER) == der


def test_respond_echoes_nonce_and_certid_hash(
    responder: OcspResponder, lookup: Lookup, staff_cert: CertificateRecord,
    ca: CertificateAuthority,
) -> None:
    nonce = bytes(range(16))
    der = build_request(staff_cert.certificate, ca.certificate("staff"),
                        algorithm=hashes.SHA256(), nonce=nonce)
    resp = ocsp.load_der_ocsp_response(responder.respond(der, lookup))
    assert resp.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert isinstance(resp.hash_algorithm, hashes.SHA256)
    assert resp.issuer_key_hash == ocsp.load_der_ocsp_request(der).issuer_key_hash
    assert resp.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == nonce


def test_revoked_response_carries_time_and_reason(
    responder: OcspResponder, lookup: Lookup, staff_cert: CertificateRecord,
    ca: CertificateAuthority, kyso: Kyso, clock: FrozenClock,
) -> None:
    der = build_request(staff_cert.certificate, ca.certificate("staff"))
    clock.advance(dt.timedelta(minutes=30))
    revoke(kyso, staff_cert.serial, reason="keyCompromise")
    clock.advance(dt.timedelta(minutes=30))
    resp = ocsp.load_der_ocsp_response(responder.respond(der, lookup))
    assert resp.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert resp.revocation_time_utc == T0 + dt.timedelta(minutes=30)
    assert resp.revocation_reason is x509.ReasonFlags.key_compromise
    assert resp.this_update_utc == resp.produced_at_utc == T0 + dt.timedelta(hours=1)


def test_unspecified_reason_is_left_out(
    responder: OcspResponder, lookup: Lookup, staff_cert: CertificateRecord,
    ca: CertificateAuthority, kyso: Kyso,
) -> None:
    revoke(kyso, staff_cert.serial)
    der = build_request(staff_cert.certificate, ca.certificate("staff"))
    resp = ocsp.load_der_ocsp_response(responder.respond(der, lookup))
    assert resp.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert resp.revocation_reason is None


def test_hold_answers_revoked_certificate_hold_until_released(
    responder: OcspResponder, lookup: Lookup, staff_cert: CertificateRecord,
    ca: CertificateAuthority, kyso: Kyso,
) -> None:
    der = build_request(staff_cert.certificate, ca.certificate("staff"))
    hold(kyso, staff_cert.serial)
    held = ocsp.load_der_ocsp_response(responder.respond(der, lookup))
    assert held.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert held.revocation_reason is x509.ReasonFlags.certificate_hold
    release(kyso, staff_cert.serial)
    again = ocsp.load_der_ocsp_response(responder.respond(der, lookup))
    assert again.certificate_status is ocsp.OCSPCertStatus.GOOD


def test_unknown_serial_answers_unknown(
    responder: OcspResponder, lookup: Lookup, staff_cert: CertificateRecord,
    citizen_cert: CertificateRecord, ca: CertificateAuthority,
) -> None:
    # a citizen serial asked of the staff CA: the right issuer, a serial it never issued
    staff = ocsp.load_der_ocsp_request(build_request(staff_cert.certificate,
                                                     ca.certificate("staff")))
    der = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        staff.issuer_name_hash, staff.issuer_key_hash, citizen_cert.certificate.serial_number,
        staff.hash_algorithm).build().public_bytes(serialization.Encoding.DER)
    resp = ocsp.load_der_ocsp_response(responder.respond(der, lookup))
    assert resp.certificate_status is ocsp.OCSPCertStatus.UNKNOWN
    assert resp.serial_number == citizen_cert.certificate.serial_number


def test_another_issuer_is_unauthorized(
    responder: OcspResponder, lookup: Lookup, citizen_cert: CertificateRecord,
    ca: CertificateAuthority,
) -> None:
    for issuer in ("citizen", "root"):
        der = build_request(citizen_cert.certificate, ca.certificate(issuer))
        resp = ocsp.load_der_ocsp_response(responder.respond(der, lookup))
        assert resp.response_status is ocsp.OCSPResponseStatus.UNAUTHORIZED


def two_requests(staff_cert: CertificateRecord, ca: CertificateAuthority) -> bytes:
    one = asn1_ocsp.OCSPRequest.load(build_request(staff_cert.certificate,
                                                   ca.certificate("staff")))
    single = one["tbs_request"]["request_list"][0]
    return bytes(asn1_ocsp.OCSPRequest({"tbs_request": {
        "request_list": [single, single]}}).dump())


def critical_extension(staff_cert: CertificateRecord, ca: CertificateAuthority) -> bytes:
    one = asn1_ocsp.OCSPRequest.load(build_request(staff_cert.certificate,
                                                   ca.certificate("staff")))
    return bytes(asn1_ocsp.OCSPRequest({"tbs_request": {
        "request_list": [one["tbs_request"]["request_list"][0]],
        "request_extensions": [{"extn_id": "1.2.3.4", "critical": True, "extn_value": b"x"}],
    }}).dump())


@pytest.mark.parametrize("make", [
    lambda cert, ca: b"",
    lambda cert, ca: b"garbage",
    lambda cert, ca: build_request(cert.certificate, ca.certificate("staff"))[:-5],
    lambda cert, ca: cert.der,
    two_requests,
    critical_extension,
    lambda cert, ca: build_request(cert.certificate, ca.certificate("staff"), nonce=b"x" * 33),
], ids=["empty", "garbage", "truncated", "certificate", "two-requests", "critical-extension",
        "long-nonce"])
def test_malformed_requests(
    responder: OcspResponder, lookup: Lookup, staff_cert: CertificateRecord,
    ca: CertificateAuthority,
    make: Callable[[CertificateRecord, CertificateAuthority], bytes],
) -> None:
    resp = ocsp.load_der_ocsp_response(responder.respond(make(staff_cert, ca), lookup))
    assert resp.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_nonce_of_32_octets_is_accepted(
    responder: OcspResponder, lookup: Lookup, staff_cert: CertificateRecord,
    ca: CertificateAuthority,
) -> None:
    der = build_request(staff_cert.certificate, ca.certificate("staff"), nonce=b"n" * 32)
    resp = ocsp.load_der_ocsp_response(responder.respond(der, lookup))
    assert resp.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == b"n" * 32


def test_no_byte_flip_or_truncation_raises(
    responder: OcspResponder, lookup: Lookup, staff_cert: CertificateRecord,
    ca: CertificateAuthority,
) -> None:
    good = build_request(staff_cert.certificate, ca.certificate("staff"), nonce=b"n" * 16)
    for i in range(len(good)):
        for der in (good[:i], good[:i] + bytes([good[i] ^ 0xFF]) + good[i + 1:]):
            resp = ocsp.load_der_ocsp_response(responder.respond(der, lookup))
            assert resp.response_status in {ocsp.OCSPResponseStatus.SUCCESSFUL,
                                            ocsp.OCSPResponseStatus.MALFORMED_REQUEST,
                                            ocsp.OCSPResponseStatus.UNAUTHORIZED}


def test_failing_lookup_is_an_internal_error(
    responder: OcspResponder, staff_cert: CertificateRecord, ca: CertificateAuthority,
) -> None:
    def broken(serial: int) -> SerialStatus:
        raise RuntimeError("database is down")

    der = build_request(staff_cert.certificate, ca.certificate("staff"))
    resp = ocsp.load_der_ocsp_response(responder.respond(der, broken))
    assert resp.response_status is ocsp.OCSPResponseStatus.INTERNAL_ERROR


def test_times_follow_the_clock_and_the_responder_certificate_bounds_them(
    responder: OcspResponder, lookup: Lookup, staff_cert: CertificateRecord,
    ca: CertificateAuthority, clock: FrozenClock,
) -> None:
    der = build_request(staff_cert.certificate, ca.certificate("staff"))
    clock.advance(dt.timedelta(days=3, hours=4))
    resp = ocsp.load_der_ocsp_response(responder.respond(der, lookup))
    assert resp.produced_at_utc == resp.this_update_utc == T0 + dt.timedelta(days=3, hours=4)
    clock.advance(dt.timedelta(days=30))  # the responder certificate lives 30 days
    expired = ocsp.load_der_ocsp_response(responder.respond(der, lookup))
    assert expired.response_status is ocsp.OCSPResponseStatus.INTERNAL_ERROR
    with pytest.raises(PkiError, match="the ocsp-staff certificate is not valid at"):
        responder.response_for(1, SerialStatus(CertStatus.GOOD))


def test_response_for_checks_its_arguments(responder: OcspResponder) -> None:
    with pytest.raises(PkiError, match="nonce has 1 to 32 octets, not 0"):
        responder.response_for(1, SerialStatus(CertStatus.GOOD), nonce=b"")
    with pytest.raises(PkiError, match="CertID hash md5 is not supported"):
        responder.response_for(1, SerialStatus(CertStatus.GOOD), hash_algorithm=hashes.MD5())  # noqa: S303


def test_validity_is_configurable(
    kyso: Kyso, ca: CertificateAuthority, clock: FrozenClock
) -> None:
    service = unlock_service(kyso, PASSPHRASE, "ocsp-staff")
    day = OcspResponder("staff", ca.certificate("staff"), service, clock,
                        validity=dt.timedelta(days=1))
    resp = ocsp.load_der_ocsp_response(day.response_for(7, SerialStatus(CertStatus.UNKNOWN)))
    assert resp.next_update_utc == T0 + dt.timedelta(days=1)
    assert resp.certificate_status is ocsp.OCSPCertStatus.UNKNOWN
    with pytest.raises(PkiError, match="validity must be positive"):
        OcspResponder("staff", ca.certificate("staff"), service, clock, validity=dt.timedelta(0))


def test_responder_must_be_the_cas_own_ocsp_signer(
    kyso: Kyso, ca: CertificateAuthority, clock: FrozenClock
) -> None:
    staff_responder = unlock_service(kyso, PASSPHRASE, "ocsp-staff")
    with pytest.raises(PkiError, match="not issued by the citizen CA"):
        OcspResponder("citizen", ca.certificate("citizen"), staff_responder, clock)
    tsa = unlock_service(kyso, PASSPHRASE, "tsa")
    with pytest.raises(PkiError, match="lacks the OCSPSigning key usage"):
        OcspResponder("services", ca.certificate("services"), tsa, clock)


def test_load_responder_only_for_issuing_cas(kyso: Kyso, ca: CertificateAuthority) -> None:
    for name in ("staff", "citizen", "services"):
        assert load_responder(kyso, PASSPHRASE, name).service.name == f"ocsp-{name}"
    for name in ("root", "nope"):
        with pytest.raises(PkiError, match="issuing CAs: staff, citizen, services"):
            load_responder(kyso, PASSPHRASE, name)


# --- OpenSSL -----------------------------------------------------------------------------------

def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, encoding="utf-8", errors="replace",
                          timeout=60, check=False)


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def files(tmp_path: Path, ca: CertificateAuthority, staff_cert: CertificateRecord,
          citizen_cert: CertificateRecord) -> dict[str, Path]:
    paths = {name: tmp_path / f"{name}.pem" for name in ("staff", "citizen", "leaf", "person",
                                                          "roots")}
    paths["staff"].write_bytes(pem(ca.certificate("staff")))
    paths["citizen"].write_bytes(pem(ca.certificate("citizen")))
    paths["leaf"].write_bytes(staff_cert.pem)
    paths["person"].write_bytes(citizen_cert.pem)
    paths["roots"].write_bytes(pem(ca.certificate("staff")) + pem(ca.certificate("root")))
    paths["request"] = tmp_path / "req.der"
    paths["response"] = tmp_path / "resp.der"
    return paths


def check(openssl: str, files: dict[str, Path], clock: FrozenClock, *target: str,
          ) -> subprocess.CompletedProcess[str]:
    """``openssl ocsp`` reading our response: chain checked at the frozen time, and the
    thisUpdate/nextUpdate window not held against the real time."""
    return run(openssl, "ocsp", "-respin", str(files["response"]), *target,
               "-CAfile", str(files["roots"]), "-attime", str(int(clock.now().timestamp())),
               "-validity_period", str(100 * 365 * 86400))


@pytest.mark.external
def test_openssl_good_then_revoked_with_reason_and_time(
    openssl: str, files: dict[str, Path], responder: OcspResponder, lookup: Lookup,
    kyso: Kyso, staff_cert: CertificateRecord, clock: FrozenClock,
) -> None:
    target = ("-issuer", str(files["staff"]), "-cert", str(files["leaf"]), "-no_nonce")
    made = run(openssl, "ocsp", *target, "-reqout", str(files["request"]))
    assert made.returncode == 0, made.stderr
    files["response"].write_bytes(responder.respond(files["request"].read_bytes(), lookup))
    good = check(openssl, files, clock, *target)
    assert "Response verify OK" in good.stderr
    assert f"{files['leaf']}: good" in good.stdout
    assert "This Update: Nov 23 02:00:00 2026 GMT" in good.stdout
    assert "Next Update: Nov 23 03:00:00 2026 GMT" in good.stdout

    clock.advance(dt.timedelta(hours=1))
    revoke(kyso, staff_cert.serial, reason="superseded")
    files["response"].write_bytes(responder.respond(files["request"].read_bytes(), lookup))
    revoked = check(openssl, files, clock, *target)
    assert "Response verify OK" in revoked.stderr
    assert f"{files['leaf']}: revoked" in revoked.stdout
    assert "Reason: superseded" in revoked.stdout
    assert "Revocation Time: Nov 23 03:00:00 2026 GMT" in revoked.stdout


@pytest.mark.external
def test_openssl_sees_its_nonce_echoed(
    openssl: str, files: dict[str, Path], responder: OcspResponder, lookup: Lookup,
    clock: FrozenClock,
) -> None:
    made = run(openssl, "ocsp", "-issuer", str(files["staff"]), "-cert", str(files["leaf"]),
               "-reqout", str(files["request"]))
    assert made.returncode == 0, made.stderr
    request = files["request"].read_bytes()
    files["response"].write_bytes(responder.respond(request, lookup))
    # -reqin (without -cert, which would make a fresh request) so OpenSSL compares nonces
    checked = check(openssl, files, clock, "-reqin", str(files["request"]))
    assert "Response verify OK" in checked.stderr
    assert "Nonce Verify error" not in checked.stderr + checked.stdout
    assert checked.returncode == 0
    nonce = ocsp.load_der_ocsp_request(request).extensions.get_extension_for_class(x509.OCSPNonce)
    resp = ocsp.load_der_ocsp_response(files["response"].read_bytes())
    assert resp.extensions.get_extension_for_class(x509.OCSPNonce).value == nonce.value
    # and a response to another request's nonce is caught
    files["response"].write_bytes(responder.response_for(
        resp.serial_number, SerialStatus(CertStatus.GOOD), nonce=b"\x00" * 16))
    mismatch = check(openssl, files, clock, "-reqin", str(files["request"]))
    assert "Nonce Verify error" in mismatch.stderr + mismatch.stdout


@pytest.mark.external
def test_openssl_hold_is_revoked_certificate_hold(
    openssl: str, files: dict[str, Path], responder: OcspResponder, lookup: Lookup,
    kyso: Kyso, staff_cert: CertificateRecord, clock: FrozenClock,
) -> None:
    target = ("-issuer", str(files["staff"]), "-cert", str(files["leaf"]), "-no_nonce")
    run(openssl, "ocsp", *target, "-reqout", str(files["request"]))
    hold(kyso, staff_cert.serial)
    files["response"].write_bytes(responder.respond(files["request"].read_bytes(), lookup))
    checked = check(openssl, files, clock, *target)
    assert "Response verify OK" in checked.stderr
    assert f"{files['leaf']}: revoked" in checked.stdout
    assert "Reason: certificateHold" in checked.stdout


@pytest.mark.external
def test_openssl_unknown_serial(
    openssl: str, files: dict[str, Path], responder: OcspResponder, lookup: Lookup,
    clock: FrozenClock,
) -> None:
    target = ("-issuer", str(files["staff"]), "-serial", "0x1234", "-no_nonce")
    run(openssl, "ocsp", *target, "-reqout", str(files["request"]))
    files["response"].write_bytes(responder.respond(files["request"].read_bytes(), lookup))
    checked = check(openssl, files, clock, *target)
    assert "Response verify OK" in checked.stderr
    assert "0x1234: unknown" in checked.stdout


@pytest.mark.external
@pytest.mark.parametrize(("request_args", "error"), [
    (("-issuer", "citizen", "-cert", "person"), "Responder Error: unauthorized (6)"),
    (("-issuer", "staff", "-cert", "leaf", "-cert", "leaf"),
     "Responder Error: malformedrequest (1)"),
])
def test_openssl_reads_unsuccessful_responses(
    openssl: str, files: dict[str, Path], responder: OcspResponder, lookup: Lookup,
    request_args: tuple[str, ...], error: str,
) -> None:
    args = [str(files[a]) if a in files else a for a in request_args]
    made = run(openssl, "ocsp", *args, "-reqout", str(files["request"]))
    assert made.returncode == 0, made.stderr
    files["response"].write_bytes(responder.respond(files["request"].read_bytes(), lookup))
    shown = run(openssl, "ocsp", "-respin", str(files["response"]), "-resp_text")
    assert error in shown.stdout + shown.stderr


@pytest.mark.external
def test_openssl_reads_the_answer_to_garbage(
    openssl: str, files: dict[str, Path], responder: OcspResponder, lookup: Lookup,
) -> None:
    files["response"].write_bytes(responder.respond(b"\x30\x03garbage", lookup))
    shown = run(openssl, "ocsp", "-respin", str(files["response"]), "-resp_text")
    assert "Responder Error: malformedrequest (1)" in shown.stdout + shown.stderr
