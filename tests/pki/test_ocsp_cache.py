"""Reusing signed OCSP responses: a fresh status lookup on every request, the signature saved
only while that status holds, never for nonces, other issuers or broken requests."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from conftest import FAST_KDF, PASSPHRASE, STAFF, T0
from kyso.clock import FrozenClock
from kyso.config import load_settings
from kyso.context import Kyso, open_kyso
from kyso.errors import PkiError
from kyso.pki import issuance
from kyso.pki.authority import CertificateAuthority
from kyso.pki.lifecycle import hold, release, revoke
from kyso.pki.ocsp import CertStatus, SerialStatus, load_responder, serial_status
from kyso.pki.ocsp_cache import CachedResponse, CachingResponder, OcspCache
from kyso.pki.records import CertificateRecord
from kyso.pki.subjects import SubjectRequest


class CountingLookup:
    """The real store lookup, counted."""

    def __init__(self, kyso: Kyso, ca_name: str) -> None:
        self.kyso, self.ca_name, self.calls = kyso, ca_name, 0

    def __call__(self, serial: int) -> SerialStatus:
        self.calls += 1
        return serial_status(self.kyso, self.ca_name, serial)


@pytest.fixture
def staff_cert(kyso: Kyso, ca: CertificateAuthority) -> CertificateRecord:
    return issuance.issue(kyso, ca, "staff", SubjectRequest.of(**STAFF)).record


@pytest.fixture
def lookup(kyso: Kyso) -> CountingLookup:
    return CountingLookup(kyso, "staff")


@pytest.fixture
def cached(kyso: Kyso, ca: CertificateAuthority, lookup: CountingLookup) -> CachingResponder:
    return CachingResponder(load_responder(kyso, PASSPHRASE, "staff"), lookup, OcspCache())


def request_for(cert: x509.Certificate, issuer: x509.Certificate, *,
                algorithm: hashes.HashAlgorithm | None = None, nonce: bytes | None = None) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(
        cert, issuer, algorithm or hashes.SHA1())  # noqa: S303 - what clients send
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def status_of(der: bytes) -> ocsp.OCSPCertStatus:
    return ocsp.load_der_ocsp_response(der).certificate_status


@pytest.fixture
def request_der(staff_cert: CertificateRecord, ca: CertificateAuthority) -> bytes:
    return request_for(staff_cert.certificate, ca.certificate("staff"))


def test_second_request_gets_the_same_signed_bytes_after_a_fresh_lookup(
    cached: CachingResponder, request_der: bytes, lookup: CountingLookup, clock: FrozenClock,
) -> None:
    first = cached.answer(request_der)
    clock.advance(dt.timedelta(minutes=10))
    second = cached.answer(request_der)
    assert (first.from_cache, second.from_cache) == (False, True)
    assert second.der == first.der
    assert status_of(second.der) is ocsp.OCSPCertStatus.GOOD
    assert second.reusable
    assert second.this_update == T0
    assert second.next_update == T0 + dt.timedelta(hours=1)
    assert lookup.calls == 2  # the status is read for every request, cached or not
    assert second.to_dict() == {"response_status": "successful", "bytes": len(first.der),
                                "from_cache": True, "reusable": True,
                                "this_update": "2026-11-23T09:00:00+07:00",
                                "next_update": "2026-11-23T10:00:00+07:00"}


def test_revocation_is_answered_by_the_next_request(
    cached: CachingResponder, request_der: bytes, kyso: Kyso, staff_cert: CertificateRecord,
    clock: FrozenClock,
) -> None:
    good = cached.answer(request_der)
    clock.advance(dt.timedelta(minutes=1))
    revoke(kyso, staff_cert.serial, reason="keyCompromise")
    revoked = cached.answer(request_der)
    assert not revoked.from_cache
    assert revoked.der != good.der
    response = ocsp.load_der_ocsp_response(revoked.der)
    assert response.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert response.revocation_reason is x509.ReasonFlags.key_compromise
    assert cached.answer(request_der).der == revoked.der  # and that answer is reused in turn


def test_revocation_by_another_process_on_the_same_store_is_seen(
    cached: CachingResponder, request_der: bytes, kyso: Kyso, staff_cert: CertificateRecord,
    clock: FrozenClock, database_url: str | None,
) -> None:
    cached.answer(request_der)
    other = open_kyso(load_settings(home=kyso.settings.home, database_url=database_url,
                                    environ=FAST_KDF), clock=clock, actor="admin:other")
    try:
        revoke(other, staff_cert.serial, reason="superseded")
    finally:
        other.close()
    answer = cached.answer(request_der)
    assert not answer.from_cache
    assert status_of(answer.der) is ocsp.OCSPCertStatus.REVOKED


def test_hold_then_release_is_followed(
    cached: CachingResponder, request_der: bytes, kyso: Kyso, staff_cert: CertificateRecord,
) -> None:
    cached.answer(request_der)
    hold(kyso, staff_cert.serial)
    held = ocsp.load_der_ocsp_response(cached.answer(request_der).der)
    assert held.revocation_reason is x509.ReasonFlags.certificate_hold
    release(kyso, staff_cert.serial)
    assert status_of(cached.answer(request_der).der) is ocsp.OCSPCertStatus.GOOD


def test_nonce_requests_are_signed_every_time_and_never_stored(
    cached: CachingResponder, staff_cert: CertificateRecord, ca: CertificateAuthority,
) -> None:
    der = request_for(staff_cert.certificate, ca.certificate("staff"), nonce=b"n" * 16)
    answers = [cached.answer(der) for _ in range(2)]
    assert [a.from_cache or a.reusable for a in answers] == [False, False]
    for answer in answers:
        nonce = ocsp.load_der_ocsp_response(answer.der).extensions.get_extension_for_class(
            x509.OCSPNonce)
        assert nonce.value.nonce == b"n" * 16
    assert len(cached.cache) == 0


def test_sha1_and_sha256_certids_are_kept_apart(
    cached: CachingResponder, staff_cert: CertificateRecord, ca: CertificateAuthority,
) -> None:
    sha1 = request_for(staff_cert.certificate, ca.certificate("staff"))
    sha256 = request_for(staff_cert.certificate, ca.certificate("staff"), algorithm=hashes.SHA256())
    a, b = cached.answer(sha1), cached.answer(sha256)
    assert not b.from_cache
    assert len(cached.cache) == 2
    assert isinstance(ocsp.load_der_ocsp_response(b.der).hash_algorithm, hashes.SHA256)
    assert cached.answer(sha256).der == b.der
    assert cached.answer(sha1).der == a.der


def test_reuse_ends_after_half_the_validity(
    cached: CachingResponder, request_der: bytes, clock: FrozenClock,
) -> None:
    first = cached.answer(request_der)
    clock.advance(dt.timedelta(minutes=29, seconds=59))
    assert cached.answer(request_der).der == first.der
    clock.advance(dt.timedelta(seconds=1))
    later = cached.answer(request_der)
    assert not later.from_cache
    assert later.this_update == T0 + dt.timedelta(minutes=30)


def test_a_clock_set_back_is_not_answered_from_the_future(
    cached: CachingResponder, request_der: bytes, clock: FrozenClock,
) -> None:
    clock.advance(dt.timedelta(minutes=10))
    cached.answer(request_der)
    clock.set(T0 + dt.timedelta(minutes=5))
    again = cached.answer(request_der)
    assert not again.from_cache
    assert again.this_update == T0 + dt.timedelta(minutes=5)


def test_reuse_stops_when_the_responder_certificate_runs_out(
    cached: CachingResponder, request_der: bytes, clock: FrozenClock,
) -> None:
    not_after = cached.responder.service.certificate.not_valid_after_utc
    clock.set(not_after - dt.timedelta(minutes=1))
    assert cached.answer(request_der).response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    clock.set(not_after + dt.timedelta(seconds=1))
    expired = cached.answer(request_der)
    assert expired.response_status is ocsp.OCSPResponseStatus.INTERNAL_ERROR
    assert not expired.from_cache


def test_other_issuer_and_broken_requests_are_never_stored(
    cached: CachingResponder, request_der: bytes, staff_cert: CertificateRecord,
    ca: CertificateAuthority,
) -> None:
    # the same serial under another issuer's CertID: unauthorized, even once the right one is stored
    cached.answer(request_der)
    other = request_for(staff_cert.certificate, ca.certificate("citizen"))
    for _ in range(2):
        assert cached.answer(other).response_status is ocsp.OCSPResponseStatus.UNAUTHORIZED
    for broken in (b"", b"garbage", request_der[:-4]):
        assert cached.answer(broken).response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    assert len(cached.cache) == 1


def test_a_failing_lookup_is_an_internal_error_not_stored(
    kyso: Kyso, ca: CertificateAuthority, request_der: bytes,
) -> None:
    def broken(serial: int) -> SerialStatus:
        raise RuntimeError("database is down")

    cached = CachingResponder(load_responder(kyso, PASSPHRASE, "staff"), broken, OcspCache())
    answer = cached.answer(request_der)
    assert answer.response_status is ocsp.OCSPResponseStatus.INTERNAL_ERROR
    assert len(cached.cache) == 0


def test_unknown_serials_are_answered_and_reused(
    cached: CachingResponder, request_der: bytes, ca: CertificateAuthority,
) -> None:
    known = ocsp.load_der_ocsp_request(request_der)
    der = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        known.issuer_name_hash, known.issuer_key_hash, 0x1234, known.hash_algorithm
    ).build().public_bytes(serialization.Encoding.DER)
    first = cached.answer(der)
    assert status_of(first.der) is ocsp.OCSPCertStatus.UNKNOWN
    assert cached.answer(der).der == first.der


def test_cache_keeps_the_most_recently_used_entries() -> None:
    cache = OcspCache(max_entries=2)
    good = SerialStatus(CertStatus.GOOD)

    def entry(n: int) -> CachedResponse:
        return CachedResponse(bytes([n]), good, T0, T0 + dt.timedelta(hours=1),
                              T0 + dt.timedelta(minutes=30))

    cache.put("a", entry(1))
    cache.put("b", entry(2))
    assert cache.get("a", good, T0) is not None  # a is now the most recent
    cache.put("c", entry(3))
    assert cache.get("b", good, T0) is None
    assert [cache.get(k, good, T0).der for k in ("a", "c")] == [b"\x01", b"\x03"]  # type: ignore[union-attr]
    revoked = SerialStatus(CertStatus.REVOKED, T0)
    assert cache.get("a", revoked, T0) is None  # another status drops the entry
    assert len(cache) == 1
    cache.clear()
    assert len(cache) == 0


def test_threads_share_one_cache(
    cached: CachingResponder, request_der: bytes,
) -> None:
    results: list[bytes] = []
    first = cached.answer(request_der).der

    def worker() -> None:
        for _ in range(20):
            results.append(cached.answer(request_der).der)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [first] * 120


def test_arguments_are_checked(kyso: Kyso, ca: CertificateAuthority) -> None:
    with pytest.raises(PkiError, match="at least one response"):
        OcspCache(max_entries=0)
    responder = load_responder(kyso, PASSPHRASE, "staff")
    lookup: Callable[[int], SerialStatus] = lambda serial: SerialStatus(CertStatus.GOOD)  # noqa: E731
    for reuse in (dt.timedelta(0), responder.validity + dt.timedelta(seconds=1)):
        with pytest.raises(PkiError, match="no longer than its validity"):
            CachingResponder(responder, lookup, OcspCache(), reuse_for=reuse)
    assert "ocsp-staff" in repr(CachingResponder(responder, lookup, OcspCache()))
