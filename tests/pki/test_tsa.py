"""The RFC 3161 TSA: token contents, CMS structure and signature, rejections, and OpenSSL's
and pyHanko's verdicts on what it produces."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import subprocess
from pathlib import Path
from typing import Any, ClassVar

import pytest
from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from conftest import PASSPHRASE, T0
from kyso.clock import FrozenClock
from kyso.context import Kyso
from kyso.errors import PkiError
from kyso.pki.authority import CertificateAuthority, chain_pem
from kyso.pki.builder import build_certificate
from kyso.pki.keys import KeyType, PrivateKey, generate_key
from kyso.pki.serials import new_serial
from kyso.pki.services import ServiceKey, unlock_service
from kyso.pki.tsa import TSA_POLICY_OID, TimeStampAuthority, load_tsa

DIGEST = hashlib.sha256(b"don-dang-ky-khai-sinh.pdf").digest()


class Response(core.Sequence):  # type: ignore[misc]
    """TimeStampResp with its token OPTIONAL, as RFC 3161 has it (asn1crypto requires it)."""

    _fields: ClassVar[list[tuple[Any, ...]]] = [("status", tsp.PKIStatusInfo),
               ("time_stamp_token", cms.ContentInfo, {"optional": True})]


@pytest.fixture
def tsa(kyso: Kyso, ca: CertificateAuthority) -> TimeStampAuthority:
    return load_tsa(kyso, PASSPHRASE)


def request(digest: bytes = DIGEST, algorithm: str = "sha256", **fields: Any) -> bytes:
    values = {"version": "v1", "message_imprint": {
        "hash_algorithm": {"algorithm": algorithm}, "hashed_message": digest}, "cert_req": True}
    return bytes(tsp.TimeStampReq({**values, **fields}).dump())


def parse(response: bytes) -> tuple[str, set[str], list[str], Any]:
    """(status, failure bits, status strings, token or None)."""
    resp = Response.load(response, strict=True)
    status = resp["status"]
    token = resp["time_stamp_token"]
    return (status["status"].native, set(status["fail_info"].native or ()),
            list(status["status_string"].native or ()), None if token.native is None else token)


def tst_info(token: Any) -> dict[str, Any]:
    return dict(token["content"]["encap_content_info"]["content"].parsed.native)


def granted(tsa: TimeStampAuthority, der: bytes) -> Any:
    status, fail, strings, token = parse(tsa.respond(der))
    assert (status, fail, strings) == ("granted", set(), [])
    return token


def attributes(token: Any) -> dict[str, Any]:
    signer = token["content"]["signer_infos"][0]
    return {a["type"].native: a["values"][0] for a in signer["signed_attrs"]}


def verify_signature(token: Any, certificate: x509.Certificate) -> None:
    """Check the CMS signature over the signed attributes with cryptography (raises if bad)."""
    signer = token["content"]["signer_infos"][0]
    signed = signer["signed_attrs"].untag().dump(force=True)
    signature = signer["signature"].native
    algorithm = signer["signature_algorithm"]["algorithm"].native
    key = certificate.public_key()
    chosen = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384()}
    if isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(signature, signed, ec.ECDSA(chosen[algorithm.split("_")[0]]))
    elif isinstance(key, rsa.RSAPublicKey):
        key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
    else:
        assert isinstance(key, ed25519.Ed25519PublicKey)
        key.verify(signature, signed)


def der_of(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


# --- the token ---------------------------------------------------------------------------------

def test_token_carries_policy_imprint_time_accuracy_nonce_and_name(
    tsa: TimeStampAuthority, clock: FrozenClock
) -> None:
    token = cms.ContentInfo.load(tsa.timestamp_token(DIGEST, "sha256", nonce=4242))
    info = tst_info(token)
    assert info["version"] == "v1"
    assert info["policy"] == TSA_POLICY_OID == "1.3.6.1.4.1.32473.704.1.4.1"
    assert info["message_imprint"] == {"hash_algorithm": {"algorithm": "sha256", "parameters": None},
                                       "hashed_message": DIGEST}
    assert info["gen_time"] == T0 == clock.now()
    assert info["accuracy"] == {"seconds": 1, "millis": None, "micros": None}
    assert info["ordering"] is False
    assert info["nonce"] == 4242
    assert info["tsa"] == asn1_x509.GeneralName(
        name="directory_name",
        value=asn1_x509.Name.load(tsa.service.certificate.subject.public_bytes())).native
    assert info["extensions"] is None
    assert 0 < info["serial_number"] < 2**160


def test_each_token_has_a_new_serial(tsa: TimeStampAuthority) -> None:
    serials = {tst_info(cms.ContentInfo.load(tsa.timestamp_token(DIGEST)))["serial_number"]
               for _ in range(20)}
    assert len(serials) == 20


def test_gen_time_follows_the_clock_to_the_millisecond(
    tsa: TimeStampAuthority, clock: FrozenClock
) -> None:
    clock.set(T0 + dt.timedelta(hours=5, microseconds=123_456))
    der = tsa.timestamp_token(DIGEST)
    assert tst_info(cms.ContentInfo.load(der))["gen_time"] == T0 + dt.timedelta(hours=5, milliseconds=123)
    assert b"20261123070000.123Z" in der
    clock.set(T0 + dt.timedelta(seconds=1, microseconds=500_000))
    assert b"20261123020001.5Z" in tsa.timestamp_token(DIGEST)  # DER: no trailing zeros
    clock.set(T0)
    assert b"20261123020000Z" in tsa.timestamp_token(DIGEST)  # and no fraction when whole


def test_token_is_der_signed_data_v3_with_the_rfc_5816_attributes(
    tsa: TimeStampAuthority,
) -> None:
    der = tsa.timestamp_token(DIGEST)
    token = cms.ContentInfo.load(der, strict=True)
    assert token.dump(force=True) == der  # asn1crypto re-encodes it to the same bytes: DER
    signed = token["content"]
    assert token["content_type"].native == "signed_data"
    assert signed["version"].native == "v3"
    assert signed["encap_content_info"]["content_type"].native == "tst_info"
    assert [a["algorithm"].native for a in signed["digest_algorithms"]] == ["sha256"]
    signer = signed["signer_infos"][0]
    assert len(signed["signer_infos"]) == 1
    assert signer["version"].native == "v1"
    assert signer["sid"].chosen["serial_number"].native == tsa.service.certificate.serial_number
    assert signer["signature_algorithm"]["algorithm"].native == "sha256_ecdsa"  # P-256 TSA key

    attrs = attributes(token)
    assert set(attrs) == {"content_type", "message_digest", "signing_certificate_v2"}
    assert attrs["content_type"].native == "tst_info"
    content = signed["encap_content_info"]["content"].contents
    assert attrs["message_digest"].native == hashlib.sha256(content).digest()
    ess = attrs["signing_certificate_v2"]["certs"][0]
    tsa_der = der_of(tsa.service.certificate)
    assert ess["hash_algorithm"]["algorithm"].native == "sha256"
    assert ess["cert_hash"].native == hashlib.sha256(tsa_der).digest()
    assert ess["issuer_serial"]["serial_number"].native == tsa.service.certificate.serial_number
    assert ess["issuer_serial"]["issuer"][0].chosen.native == \
        asn1_x509.Name.load(tsa.service.certificate.issuer.public_bytes()).native
    verify_signature(token, tsa.service.certificate)


def test_token_includes_tsa_certificate_and_intermediate_not_root(
    tsa: TimeStampAuthority, ca: CertificateAuthority
) -> None:
    token = cms.ContentInfo.load(tsa.timestamp_token(DIGEST))
    included = {c.chosen.dump() for c in token["content"]["certificates"]}
    assert included == {der_of(tsa.service.certificate), der_of(ca.certificate("services"))}
    bare = cms.ContentInfo.load(tsa.timestamp_token(DIGEST, include_certificates=False))
    assert bare["content"]["certificates"].native is None


def test_tampered_token_fails_signature_check(tsa: TimeStampAuthority) -> None:
    token = cms.ContentInfo.load(tsa.timestamp_token(DIGEST))
    signer = token["content"]["signer_infos"][0]
    signature = bytearray(signer["signature"].native)
    signature[-1] ^= 1
    signer["signature"] = bytes(signature)
    with pytest.raises(InvalidSignature):
        verify_signature(cms.ContentInfo.load(token.dump(force=True)), tsa.service.certificate)


def test_pyhanko_validates_the_token(tsa: TimeStampAuthority, ca: CertificateAuthority,
                                     clock: FrozenClock) -> None:
    from pyhanko.sign.validation.generic_cms import validate_tst_signed_data
    from pyhanko_certvalidator import ValidationContext

    token = cms.ContentInfo.load(tsa.timestamp_token(DIGEST))
    context = ValidationContext(
        trust_roots=[asn1_x509.Certificate.load(der_of(ca.certificate("root")))],
        moment=clock.now(), allow_fetching=False, revocation_mode="soft-fail")
    status = asyncio.run(validate_tst_signed_data(token["content"], context, lambda _alg: DIGEST))
    assert (status["intact"], status["valid"], status["timestamp"]) == (True, True, T0)
    wrong = asyncio.run(validate_tst_signed_data(token["content"], context, lambda _alg: b"x" * 32))
    assert wrong["intact"] is False


@pytest.mark.parametrize(("key_type", "digest", "signature"), [
    (KeyType.EC_P384, "sha384", "sha384_ecdsa"),
    (KeyType.RSA_2048, "sha256", "sha256_rsa"),
    (KeyType.ED25519, "sha512", "ed25519"),
])
def test_other_tsa_key_types_sign_with_matching_algorithms(
    kyso: Kyso, ca: CertificateAuthority, clock: FrozenClock, key_type: KeyType, digest: str,
    signature: str,
) -> None:
    authority = TimeStampAuthority(service_with_key(kyso, ca, generate_key(key_type)), clock)
    token = cms.ContentInfo.load(authority.timestamp_token(DIGEST))
    signer = token["content"]["signer_infos"][0]
    assert signer["digest_algorithm"]["algorithm"].native == digest
    assert signer["signature_algorithm"]["algorithm"].native == signature
    content = token["content"]["encap_content_info"]["content"].contents
    assert attributes(token)["message_digest"].native == hashlib.new(digest, content).digest()
    verify_signature(token, authority.service.certificate)


def service_with_key(kyso: Kyso, ca: CertificateAuthority, key: PrivateKey) -> ServiceKey:
    """A TSA certificate from the services CA for ``key`` (for key types init does not make)."""
    current = unlock_service(kyso, PASSPHRASE, "tsa")
    cert = build_certificate(
        profile=kyso.profiles.get("tsa"), subject=current.certificate.subject,
        public_key=key.public_key(), serial=new_serial(), not_before=T0,
        not_after=T0 + dt.timedelta(days=365), issuer=ca.issuer("services"),
        context=ca.settings.context("services"))
    return ServiceKey("tsa", cert, key, current.chain)


# --- the protocol ------------------------------------------------------------------------------

def test_granted_response_echoes_imprint_and_nonce(tsa: TimeStampAuthority) -> None:
    der = request(nonce=2**70 + 5, req_policy=TSA_POLICY_OID)
    token = granted(tsa, der)
    info = tst_info(token)
    assert info["nonce"] == 2**70 + 5
    assert info["message_imprint"] == tsp.TimeStampReq.load(der)["message_imprint"].native
    assert "certificates" in {k for k, v in token["content"].native.items() if v}


@pytest.mark.parametrize(("algorithm", "size"), [("sha384", 48), ("sha512", 64)])
def test_longer_sha2_imprints_are_granted(tsa: TimeStampAuthority, algorithm: str,
                                          size: int) -> None:
    digest = hashlib.new(algorithm, b"x").digest()
    assert len(digest) == size
    info = tst_info(granted(tsa, request(digest, algorithm)))
    assert info["message_imprint"]["hashed_message"] == digest


def test_no_nonce_and_no_cert_req(tsa: TimeStampAuthority) -> None:
    token = granted(tsa, request(cert_req=False))
    assert tst_info(token)["nonce"] is None
    assert token["content"]["certificates"].native is None


def test_certificate_as_request_is_bad_data(tsa: TimeStampAuthority) -> None:
    status, fail, strings, token = parse(tsa.respond(der_of(tsa.service.certificate)))
    assert (status, fail, token) == ("rejection", {"bad_data_format"}, None)
    assert strings == ["not a DER RFC 3161 TimeStampReq"]


@pytest.mark.parametrize(("der", "fail", "message"), [
    (b"", "bad_data_format", "empty time-stamp request"),
    (b"garbage", "bad_data_format", "not a DER RFC 3161 TimeStampReq"),
    (request()[:-7], "bad_data_format", "not a DER RFC 3161 TimeStampReq"),
    (request() + b"\x00", "bad_data_format", "not a DER RFC 3161 TimeStampReq"),
    (b"\x30\x80" + b"\x00" * 4, "bad_data_format", "not a DER RFC 3161 TimeStampReq"),
    (request(hashlib.sha1(b"x").digest(), "sha1"), "bad_alg",  # noqa: S324
     "hash algorithm sha1 is not accepted; use sha256, sha384, sha512"),
    (request(hashlib.md5(b"x").digest(), "md5"), "bad_alg",  # noqa: S324
     "hash algorithm md5 is not accepted"),
    (request(b"\x00" * 32, "1.2.3.4"), "bad_alg", "hash algorithm 1.2.3.4 is not accepted"),
    (request(DIGEST[:20]), "bad_data_format", "a sha256 digest has 32 bytes, not 20"),
    (request(DIGEST, "sha512"), "bad_data_format", "a sha512 digest has 64 bytes, not 32"),
    (request(version="v2"), "bad_data_format", "unsupported TimeStampReq version v2"),
    (request(req_policy="1.2.3.4.5"), "unaccepted_policy",
     "policy 1.2.3.4.5 is not offered; this TSA grants 1.3.6.1.4.1.32473.704.1.4.1"),
    (request(extensions=[{"extn_id": "1.2.3.4", "extn_value": b"x"}]), "unaccepted_extensions",
     "request extensions are not supported"),
])
def test_bad_requests_are_rejected_with_the_reason(
    tsa: TimeStampAuthority, der: bytes, fail: str, message: str
) -> None:
    status, fail_info, strings, token = parse(tsa.respond(der))
    assert (status, fail_info, token) == ("rejection", {fail}, None)
    assert strings[0].startswith(message)


class LooseAlgorithm(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("algorithm", core.ObjectIdentifier), ("parameters", core.Any, {"optional": True})]


class LooseImprint(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("hash_algorithm", LooseAlgorithm), ("hashed_message", core.OctetString)]


class LooseRequest(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[tuple[Any, ...]]] = [("version", core.Integer), ("message_imprint", LooseImprint)]


def test_hash_parameters_must_be_null_or_absent(tsa: TimeStampAuthority) -> None:
    sha256 = algos.DigestAlgorithmId("sha256").dotted
    odd = LooseRequest({"version": 1, "message_imprint": {
        "hash_algorithm": {"algorithm": sha256, "parameters": core.Integer(1)},
        "hashed_message": DIGEST}}).dump()
    assert parse(tsa.respond(odd))[:2] == ("rejection", {"bad_data_format"})
    absent = LooseRequest({"version": 1, "message_imprint": {
        "hash_algorithm": {"algorithm": sha256}, "hashed_message": DIGEST}}).dump()
    assert parse(tsa.respond(absent))[0] == "granted"


def test_random_bytes_never_raise(tsa: TimeStampAuthority) -> None:
    good = request()
    for i in range(len(good)):  # every truncation and every single-byte flip
        for der in (good[:i], good[:i] + bytes([good[i] ^ 0xFF]) + good[i + 1:]):
            status = parse(tsa.respond(der))[0]
            assert status in ("granted", "rejection")


def test_timestamp_token_refuses_bad_algorithm_and_length(tsa: TimeStampAuthority) -> None:
    with pytest.raises(PkiError, match="hash algorithm sha1 is not accepted"):
        tsa.timestamp_token(b"\x00" * 20, "sha1")
    with pytest.raises(PkiError, match="a sha256 digest has 32 bytes, not 31"):
        tsa.timestamp_token(DIGEST[:31])
    assert tst_info(cms.ContentInfo.load(tsa.timestamp_token(
        hashlib.sha384(b"x").digest(), "SHA-384")))["message_imprint"]["hash_algorithm"][
            "algorithm"] == "sha384"


def test_expired_tsa_certificate_stops_granting(
    tsa: TimeStampAuthority, clock: FrozenClock
) -> None:
    clock.set(tsa.service.certificate.not_valid_after_utc + dt.timedelta(seconds=1))
    status, fail, strings, _ = parse(tsa.respond(request()))
    assert (status, fail) == ("rejection", {"time_not_available"})
    assert strings[0].startswith("the TSA certificate is not valid at")
    with pytest.raises(PkiError, match="the TSA certificate is not valid"):
        tsa.timestamp_token(DIGEST)


def test_accuracy_and_policy_are_configurable(
    kyso: Kyso, ca: CertificateAuthority, clock: FrozenClock
) -> None:
    service = unlock_service(kyso, PASSPHRASE, "tsa")
    fine = TimeStampAuthority(service, clock, policy="1.2.3.4",
                              accuracy=dt.timedelta(milliseconds=250, microseconds=7))
    info = tst_info(cms.ContentInfo.load(fine.timestamp_token(DIGEST)))
    assert info["accuracy"] == {"seconds": None, "millis": 250, "micros": 7}
    assert info["policy"] == "1.2.3.4"
    exact = TimeStampAuthority(service, clock, accuracy=dt.timedelta(0))
    assert tst_info(cms.ContentInfo.load(exact.timestamp_token(DIGEST)))["accuracy"] is None
    with pytest.raises(PkiError, match="accuracy"):
        TimeStampAuthority(service, clock, accuracy=dt.timedelta(seconds=-1))


def test_repr_shows_no_key(tsa: TimeStampAuthority) -> None:
    assert repr(tsa) == f"TimeStampAuthority(tsa, policy={TSA_POLICY_OID})"


# --- OpenSSL -----------------------------------------------------------------------------------

def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, encoding="utf-8", errors="replace",
                          timeout=60, check=False)


@pytest.fixture
def files(tmp_path: Path, kyso: Kyso, ca: CertificateAuthority) -> dict[str, Path]:
    data = tmp_path / "hoso.pdf"
    data.write_bytes(b"%PDF-1.7 ho so khai sinh\n")
    chain = tmp_path / "chain.pem"  # services CA and root; the TSA certificate is in the token
    chain.write_bytes(chain_pem(kyso, "services"))
    return {"data": data, "chain": chain, "query": tmp_path / "q.tsq", "reply": tmp_path / "r.tsr"}


def at(moment: dt.datetime) -> str:
    return str(int(moment.timestamp()))


@pytest.mark.external
def test_openssl_reads_and_verifies_a_granted_reply(
    openssl: str, tsa: TimeStampAuthority, files: dict[str, Path], clock: FrozenClock
) -> None:
    made = run(openssl, "ts", "-query", "-data", str(files["data"]), "-sha256", "-cert",
               "-out", str(files["query"]))
    assert made.returncode == 0, made.stderr
    files["reply"].write_bytes(tsa.respond(files["query"].read_bytes()))

    text = run(openssl, "ts", "-reply", "-in", str(files["reply"]), "-text")
    assert text.returncode == 0, text.stderr
    assert "Status: Granted." in text.stdout
    assert f"Policy OID: {TSA_POLICY_OID}" in text.stdout
    assert "Time stamp: Nov 23 02:00:00 2026 GMT" in text.stdout
    assert "Accuracy: 0x01 seconds" in text.stdout
    assert "Ordering: no" in text.stdout
    assert "Time Stamping Authority G1" in text.stdout
    query_nonce = run(openssl, "ts", "-query", "-in", str(files["query"]), "-text").stdout
    nonce = next(line for line in query_nonce.splitlines() if line.startswith("Nonce:"))
    assert nonce in text.stdout

    for source in (["-queryfile", str(files["query"])], ["-data", str(files["data"])]):
        verified = run(openssl, "ts", "-verify", "-in", str(files["reply"]), *source,
                       "-CAfile", str(files["chain"]), "-attime", at(clock.now()))
        assert "Verification: OK" in verified.stdout, verified.stdout + verified.stderr
        assert verified.returncode == 0


@pytest.mark.external
def test_openssl_rejects_a_reply_for_other_data(
    openssl: str, tsa: TimeStampAuthority, files: dict[str, Path], clock: FrozenClock,
    tmp_path: Path,
) -> None:
    run(openssl, "ts", "-query", "-data", str(files["data"]), "-sha256", "-cert",
        "-out", str(files["query"]))
    files["reply"].write_bytes(tsa.respond(files["query"].read_bytes()))
    other = tmp_path / "other.pdf"
    other.write_bytes(b"%PDF-1.7 something else\n")
    verified = run(openssl, "ts", "-verify", "-in", str(files["reply"]), "-data", str(other),
                   "-CAfile", str(files["chain"]), "-attime", at(clock.now()))
    assert "Verification: FAILED" in verified.stdout
    assert "message imprint mismatch" in verified.stderr
    assert verified.returncode != 0


@pytest.mark.external
def test_openssl_verifies_an_rsa_tsa_token(
    openssl: str, kyso: Kyso, ca: CertificateAuthority, files: dict[str, Path],
    clock: FrozenClock,
) -> None:
    rsa_tsa = TimeStampAuthority(service_with_key(kyso, ca, generate_key(KeyType.RSA_2048)), clock)
    run(openssl, "ts", "-query", "-data", str(files["data"]), "-sha512", "-cert",
        "-out", str(files["query"]))
    files["reply"].write_bytes(rsa_tsa.respond(files["query"].read_bytes()))
    verified = run(openssl, "ts", "-verify", "-in", str(files["reply"]),
                   "-queryfile", str(files["query"]), "-CAfile", str(files["chain"]),
                   "-attime", at(clock.now()))
    assert "Verification: OK" in verified.stdout, verified.stdout + verified.stderr


@pytest.mark.external
@pytest.mark.parametrize(("options", "status", "failure"), [
    (["-sha1"], "Status: Rejected.", "unrecognized or unsupported algorithm identifier"),
    (["-md5"], "Status: Rejected.", "unrecognized or unsupported algorithm identifier"),
    (["-sha256", "-tspolicy", "1.2.3.4"], "Status: Rejected.",
     "the requested TSA policy is not supported by the TSA"),
    (["-sha256", "-tspolicy", TSA_POLICY_OID], "Status: Granted.", "Failure info: unspecified"),
])
def test_openssl_queries_with_other_algorithms_and_policies(
    openssl: str, tsa: TimeStampAuthority, files: dict[str, Path], options: list[str],
    status: str, failure: str,
) -> None:
    made = run(openssl, "ts", "-query", "-data", str(files["data"]), *options, "-cert",
               "-out", str(files["query"]))
    assert made.returncode == 0, made.stderr
    files["reply"].write_bytes(tsa.respond(files["query"].read_bytes()))
    text = run(openssl, "ts", "-reply", "-in", str(files["reply"]), "-text")
    assert status in text.stdout
    assert failure in text.stdout


@pytest.mark.external
@pytest.mark.parametrize("garbage", [b"", b"garbage", request()[:-3]])
def test_openssl_reads_rejections_of_garbage(
    openssl: str, tsa: TimeStampAuthority, files: dict[str, Path], garbage: bytes
) -> None:
    files["reply"].write_bytes(tsa.respond(garbage))
    text = run(openssl, "ts", "-reply", "-in", str(files["reply"]), "-text")
    assert text.returncode == 0, text.stderr
    assert "Status: Rejected." in text.stdout
    assert "Failure info: the data submitted has the wrong format" in text.stdout
    assert "TST info:\nNot included." in text.stdout
