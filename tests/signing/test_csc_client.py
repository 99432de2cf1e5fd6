"""The CSC client (``kyso.signing.csc_client``): against the real signing gateway, served by
uvicorn on loopback, it signs PDFs that verify; against a hostile or broken gateway (a scripted
handler: no real gateway answers so), signing fails naming the URL and the problem, never with
a traceback, a half-written file, the token or the SAD in the message."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import cms as asn1_cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from pyhanko.pdf_utils.reader import PdfFileReader
from remote_signing_support import (  # noqa: F401 - live_gateway: a fixture
    BINH,
    CUONG,
    DUNG,
    OTHER,
    LiveGateway,
    live_gateway,
)

from conftest import CITIZEN, audit_events
from kyso.authn.registry import Level as IdLevel
from kyso.clock import FrozenClock, SystemClock
from kyso.context import Kyso
from kyso.errors import SigningError
from kyso.pki.authority import CertificateAuthority
from kyso.pki.issuance import issue
from kyso.pki.keys import KeyType
from kyso.pki.subjects import SubjectRequest
from kyso.signing.cms import chain_without_root
from kyso.signing.csc_client import (
    MAX_ANSWER,
    Authorization,
    CscClient,
    RemoteKey,
    check_service_url,
    check_token,
    remote_signer,
)
from kyso.signing.http_services import HttpServices
from kyso.signing.sample import sample_pdf
from kyso.signing.setup import build_verifier
from kyso.signing.sign import Level, PdfSigner, SignRequest
from kyso.signing.verdict import Indication

# --- a hostile or broken gateway ---------------------------------------------------------------
# No real gateway sends these answers: a tiny scripted HTTP handler on loopback does, one
# broken answer per test, with well-formed answers before it so that the client gets that far.

TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"  # JWT-shaped; never checked here
Answer = tuple[int, bytes, dict[str, str]]


def _json(data: Any, status: int = 200) -> Answer:
    return status, json.dumps(data).encode(), {"Content-Type": "application/json"}


@dataclass
class Scripted:
    """The scripted gateway: ``answers`` by method (the path after /csc/v2/); what it was
    asked, in order."""

    url: str
    answers: dict[str, Callable[[dict[str, Any]], Answer]]
    asked: list[tuple[str, dict[str, Any], str | None]] = field(default_factory=list)

    def methods(self) -> list[str]:
        return [m for m, _, _ in self.asked]


@contextmanager
def scripted(answers: dict[str, Callable[[dict[str, Any]], Answer]]) -> Iterator[Scripted]:
    server: Scripted | None = None

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            assert server is not None
            length = int(self.headers.get("Content-Length", "0"))
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                body = {"unparsed": True}
            method = self.path.removeprefix("/csc/v2/")
            server.asked.append((method, body, self.headers.get("Authorization")))
            answer = server.answers.get(method)
            status, data, headers = answer(body) if answer else _json(
                {"error": "invalid_request", "error_description": "unknown method"}, 404)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            with contextlib.suppress(OSError):
                self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            return None

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server = Scripted(f"http://127.0.0.1:{httpd.server_address[1]}", answers)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


@dataclass(frozen=True)
class Issued:
    """A citizen certificate and its chain, from the test CA (no key is used by the script)."""

    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]

    def certificates(self) -> list[str]:
        return [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode()
                for c in (self.certificate, *chain_without_root(self.chain))]


@pytest.fixture
def issued(kyso: Kyso, ca: CertificateAuthority) -> Issued:
    done = issue(kyso, ca, "citizen", SubjectRequest.of(**CITIZEN), key_type=KeyType.EC_P256)
    return Issued(done.record.certificate, tuple(done.chain))


def good_answers(issued: Issued) -> dict[str, Callable[[dict[str, Any]], Answer]]:
    """Well-formed answers up to signHash, which each test scripts itself."""
    return {
        "info": lambda _: _json({"specs": "2.0.0.2", "name": "scripted", "authType":
                                 ["oauth2code"], "methods": ["credentials/list",
                                 "credentials/info", "credentials/authorize",
                                 "signatures/signHash"]}),
        "credentials/info": lambda _: _json({
            "description": "scripted", "key": {"status": "enabled",
                                               "algo": ["1.2.840.10045.4.3.2"], "len": 256},
            "cert": {"status": "valid", "certificates": issued.certificates()},
            "authMode": "explicit", "SCAL": "2", "multisign": 10}),
        "credentials/authorize": lambda _: _json({"SAD": "scripted-sad", "expiresIn": 300}),
    }


def sign_through(server: Scripted, folder: Path, clock: FrozenClock) -> Path:
    """Sign a sample PDF through ``server`` into ``folder/out.pdf`` (B-B)."""
    client = CscClient(server.url, TOKEN, timeout=5)
    client.info()
    signer = remote_signer(client, "cred-1", clock)
    src, out = folder / "in.pdf", folder / "out.pdf"
    src.write_bytes(sample_pdf(pages=1))
    signer.sign_file(src, out, SignRequest())
    return out


def refused_with(server: Scripted, tmp: Path, clock: FrozenClock, *needles: str) -> str:
    folder = tmp / "signing"
    folder.mkdir()
    with pytest.raises(SigningError) as caught:
        sign_through(server, folder, clock)
    message = str(caught.value)
    for needle in needles:
        assert needle in message, message
    assert {p.name for p in folder.iterdir()} <= {"in.pdf"}  # nothing (half-)written
    assert TOKEN not in message
    assert "scripted-sad" not in message
    return message


def signature_of(key: ec.EllipticCurvePrivateKey, body: dict[str, Any]) -> str:
    digest = base64.b64decode(body["hashes"][0])
    return base64.b64encode(key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))).decode()


def test_two_signatures_for_one_hash_are_refused(issued: Issued, tmp_path: Path,
                                                 clock: FrozenClock) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1())
    answers = {**good_answers(issued), "signatures/signHash": lambda body: _json(
        {"signatures": [signature_of(stranger, body)] * 2})}
    with scripted(answers) as server:
        refused_with(server, tmp_path, clock, f"{server.url}/csc/v2/signatures/signHash",
                     "returned 2 signature(s) for 1 hash(es)")


def test_no_signature_at_all_is_refused(issued: Issued, tmp_path: Path,
                                        clock: FrozenClock) -> None:
    answers = {**good_answers(issued),
               "signatures/signHash": lambda _: _json({"signatures": []})}
    with scripted(answers) as server:
        refused_with(server, tmp_path, clock, "returned 0 signature(s) for 1 hash(es)")


@pytest.mark.parametrize("value", ["not base64!", "QUJD=QUJD", "", 42, None])
def test_a_signature_that_is_not_base64_is_refused(issued: Issued, tmp_path: Path,
                                                   clock: FrozenClock, value: Any) -> None:
    answers = {**good_answers(issued),
               "signatures/signHash": lambda _: _json({"signatures": [value]})}
    with scripted(answers) as server:
        refused_with(server, tmp_path, clock, "signatures/signHash", "signature 1")


def test_a_signature_by_another_key_than_the_certificates_is_refused(
        issued: Issued, tmp_path: Path, clock: FrozenClock) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1())  # well-formed, right hash, wrong key
    answers = {**good_answers(issued), "signatures/signHash": lambda body: _json(
        {"signatures": [signature_of(stranger, body)]})}
    with scripted(answers) as server:
        refused_with(server, tmp_path, clock,
                     "the gateway's signature does not verify with the credential's certificate")
        # it got that far: the authorize call carried exactly the hash that signHash signed
        authorize = next(b for m, b, _ in server.asked if m == "credentials/authorize")
        sign = next(b for m, b, _ in server.asked if m == "signatures/signHash")
        assert authorize["numSignatures"] == 1
        assert authorize["hashes"] == sign["hashes"]
        assert len(base64.b64decode(sign["hashes"][0])) == 32
        assert authorize["hashAlgorithmOID"] == sign["hashAlgorithmOID"] == "2.16.840.1.101.3.4.2.1"
        assert sign["SAD"] == "scripted-sad"
        assert sign["signAlgo"] == "1.2.840.10045.4.3.2"
        assert {auth for method, _, auth in server.asked if method != "info"} == {
            f"Bearer {TOKEN}"}
        assert next(auth for m, _, auth in server.asked if m == "info") is None  # no token


def test_a_certificate_chain_that_does_not_link_is_refused(
        issued: Issued, kyso: Kyso, ca: CertificateAuthority, tmp_path: Path,
        clock: FrozenClock) -> None:
    staff_ca = ca.certificate("staff")  # not the citizen certificate's issuer
    der = [issued.certificates()[0],
           base64.b64encode(staff_ca.public_bytes(serialization.Encoding.DER)).decode()]
    answers = {**good_answers(issued), "credentials/info": lambda _: _json({
        "key": {"status": "enabled", "algo": ["1.2.840.10045.4.3.2"], "len": 256},
        "cert": {"status": "valid", "certificates": der}})}
    with scripted(answers) as server:
        refused_with(server, tmp_path, clock, "credentials/info",
                     "certificate 1", "is not issued by the next one")
        assert "signatures/signHash" not in server.methods()


def test_a_ca_certificate_in_the_signers_place_is_refused(
        issued: Issued, ca: CertificateAuthority, tmp_path: Path, clock: FrozenClock) -> None:
    citizen_ca = ca.certificate("citizen")
    der = [base64.b64encode(citizen_ca.public_bytes(serialization.Encoding.DER)).decode()]
    answers = {**good_answers(issued), "credentials/info": lambda _: _json({
        "key": {"status": "enabled", "algo": ["1.2.840.10045.4.3.2"], "len": 256},
        "cert": {"status": "valid", "certificates": der}})}
    with scripted(answers) as server:
        refused_with(server, tmp_path, clock, "the first certificate is a CA's")


@pytest.mark.parametrize(("info", "needle"), [
    ({"cert": {"status": "valid", "certificates": ["AAAA"]}}, "has no 'key'"),
    ({"key": "enabled", "cert": {}}, "'key' in the answer has the wrong type (str)"),
    ({"key": {"status": "enabled", "algo": "1.2.840.10045.4.3.2", "len": 256}, "cert": {}},
     "'algo' in the answer has the wrong type"),
    ({"key": {"status": "enabled", "algo": [], "len": True}, "cert": {}},
     "'len' in the answer has the wrong type (bool)"),
    ({"key": {"status": "enabled", "algo": [], "len": 256},
      "cert": {"certificates": ["bm90IGEgY2VydA=="]}}, "certificate 1 is not a DER X.509"),
    ({"key": {"status": "disabled", "algo": ["1.2.840.10045.4.3.2"], "len": 256},
      "cert": {"status": "valid", "certificates": None}}, "has no 'certificates'"),
])
def test_a_malformed_credential_info_is_refused_naming_the_member(
        issued: Issued, tmp_path: Path, clock: FrozenClock, info: dict[str, Any],
        needle: str) -> None:
    answers = {**good_answers(issued), "credentials/info": lambda _: _json(info)}
    with scripted(answers) as server:
        refused_with(server, tmp_path, clock, f"{server.url}/csc/v2/credentials/info", needle)
        assert "credentials/authorize" not in server.methods()


@pytest.mark.parametrize(("key_status", "cert_status", "needle"), [
    ("disabled", "valid", "the credential's key is disabled"),
    ("enabled", "suspended", "the credential's certificate is suspended"),
])
def test_a_disabled_key_or_a_suspended_certificate_stops_before_authorizing(
        issued: Issued, tmp_path: Path, clock: FrozenClock, key_status: str, cert_status: str,
        needle: str) -> None:
    answers = {**good_answers(issued), "credentials/info": lambda _: _json({
        "key": {"status": key_status, "algo": ["1.2.840.10045.4.3.2"], "len": 256},
        "cert": {"status": cert_status, "certificates": issued.certificates()}})}
    with scripted(answers) as server:
        refused_with(server, tmp_path, clock, needle)
        assert "credentials/authorize" not in server.methods()


def test_a_key_that_does_not_offer_the_algorithm_is_refused(
        issued: Issued, tmp_path: Path, clock: FrozenClock) -> None:
    answers = {**good_answers(issued), "credentials/info": lambda _: _json({
        "key": {"status": "enabled", "algo": ["1.2.840.113549.1.1.11"], "len": 2048},
        "cert": {"status": "valid", "certificates": issued.certificates()}})}
    with scripted(answers) as server:
        refused_with(server, tmp_path, clock, "does not offer 1.2.840.10045.4.3.2")
        assert "credentials/authorize" not in server.methods()


def test_an_oversized_answer_is_refused(issued: Issued, tmp_path: Path,
                                        clock: FrozenClock) -> None:
    huge = b'{"signatures": ["' + b"A" * (MAX_ANSWER + 16) + b'"]}'
    answers = {**good_answers(issued), "signatures/signHash": lambda _: (200, huge, {})}
    with scripted(answers) as server:
        refused_with(server, tmp_path, clock, "signatures/signHash",
                     f"larger than {MAX_ANSWER // 1024} KiB")


@pytest.mark.parametrize(("data", "needle"), [
    (b"<html><body>Bad gateway</body></html>", "the answer is not JSON"),
    (b'["signatures"]', "the answer is not a JSON object"),
    (b'{"signatures": [], "signatures": ["AAAA"]}', "duplicate member 'signatures'"),
    (b"\xff\xfe{}", "the answer is not JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "the answer is not JSON"),
])
def test_an_answer_that_is_not_a_json_object_is_refused(
        issued: Issued, tmp_path: Path, clock: FrozenClock, data: bytes, needle: str) -> None:
    answers = {**good_answers(issued), "signatures/signHash": lambda _: (200, data, {})}
    with scripted(answers) as server:
        refused_with(server, tmp_path, clock, "signatures/signHash", needle)


def test_a_server_error_is_reported_with_the_gateways_own_words_cleaned(
        issued: Issued, tmp_path: Path, clock: FrozenClock) -> None:
    said = {"error": "server_error", "error_description": "boom\x1b[31m\n" + "x" * 5000}
    answers = {**good_answers(issued), "signatures/signHash": lambda _: _json(said, 500)}
    with scripted(answers) as server:
        message = refused_with(server, tmp_path, clock, "signatures/signHash",
                               "the signing gateway failed (HTTP 500): server_error: boom")
    assert "\x1b" not in message
    assert "\n" not in message
    assert len(message) < 600


def test_a_refusal_of_the_token_says_to_log_in_again(issued: Issued, tmp_path: Path,
                                                     clock: FrozenClock) -> None:
    answers = {**good_answers(issued), "credentials/authorize": lambda _: (
        401, b"", {"WWW-Authenticate": 'Bearer error="insufficient_user_authentication", '
                                       'error_description="login too old", max_age="120"'})}
    with scripted(answers) as server:
        refused_with(server, tmp_path, clock, "credentials/authorize", "HTTP 401",
                     "insufficient_user_authentication", "log in again")


def test_a_redirect_is_not_followed_and_the_token_goes_nowhere_else(
        issued: Issued, tmp_path: Path, clock: FrozenClock) -> None:
    with scripted({}) as elsewhere:
        answers = {**good_answers(issued), "credentials/authorize": lambda _: (
            307, b"", {"Location": f"{elsewhere.url}/csc/v2/credentials/authorize"})}
        with scripted(answers) as server:
            refused_with(server, tmp_path, clock, "redirect (HTTP 307)", "not followed")
        assert elsewhere.asked == []


def test_a_gateway_that_hangs_times_out(issued: Issued, tmp_path: Path,
                                        clock: FrozenClock) -> None:
    def slow(_: dict[str, Any]) -> Answer:
        time.sleep(3)
        return _json({"SAD": "late"})

    with scripted({**good_answers(issued), "credentials/authorize": slow}) as server:
        client = CscClient(server.url, TOKEN, timeout=0.5)
        with pytest.raises(SigningError, match=r"cannot reach the signing gateway .*timed out"):
            client.authorize("cred-1", [bytes(32)], "sha256")


def test_a_server_that_is_not_a_csc_gateway_is_refused_at_info(issued: Issued) -> None:
    answers = {"info": lambda _: _json({"specs": "1.0.4.0", "methods": ["auth/login"]})}
    with scripted(answers) as server, \
            pytest.raises(SigningError, match=r"speaks CSC '1\.0\.4\.0', not 2\.x"):
        CscClient(server.url, TOKEN).info()
    answers = {"info": lambda _: _json({"specs": "2.0.0.2", "name": "x",
                                        "methods": ["credentials/list"]})}
    with scripted(answers) as server, \
            pytest.raises(SigningError, match="does not offer credentials/info, "
                                              "credentials/authorize, signatures/signHash"):
        CscClient(server.url, TOKEN).info()


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize(("change", "needle"), [
    ({"serialNumber": "01"}, "'serialNumber' is not the certificate's serial number"),
    ({"certificate": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"},
     "'certificate' is not a PEM certificate"),
    ({"chain": "not a list"}, "'chain' in the answer has the wrong type (str)"),
    ({"credentialID": ""}, "the credential id is empty"),
    ({"status": 200}, "answered HTTP 200, not 201"),
])
def test_a_malformed_enrolment_answer_is_refused(issued: Issued, ca: CertificateAuthority,
                                                 change: dict[str, Any], needle: str) -> None:
    good = {"credentialID": "csc-1", "certificate": pem(issued.certificate),
            "serialNumber": f"{issued.certificate.serial_number:x}",
            "chain": [pem(c) for c in issued.chain]}
    status = change.get("status", 201)
    answer = {**good, **{k: v for k, v in change.items() if k != "status"}}
    answers = {"/api/v1/signing/credentials": lambda _: _json(answer, status)}
    with scripted(answers) as server:
        with pytest.raises(SigningError) as caught:
            CscClient(server.url, TOKEN).enrol()
        assert f"{server.url}/api/v1/signing/credentials" in str(caught.value)
        assert needle in str(caught.value)
    with scripted({"/api/v1/signing/credentials": lambda _: _json(good, 201)}) as server:
        enrolled = CscClient(server.url, TOKEN).enrol()
    assert enrolled.certificate == issued.certificate
    assert enrolled.chain == chain_without_root(issued.chain)


def test_a_gateway_that_is_down_is_named() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(SigningError) as caught:
        CscClient(url, TOKEN).info()
    assert f"{url}/csc/v2/info: cannot reach the signing gateway" in str(caught.value)


# --- inputs ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "needle"), [
    ("http://kyso.thainguyen.gov.vn", "would travel in clear"),
    ("ftp://127.0.0.1/", "must be https"),
    ("https://user:pw@kyso.example/", "user information"),
    ("https://kyso.example/?x=1", "a query"),
    ("https://kyso.example:99999/", "not a valid URL"),
    ("", "http(s) URL"),
])
def test_gateway_urls_other_than_https_or_loopback_http_are_refused(url: str, needle: str) -> None:
    with pytest.raises(SigningError, match=re.escape(needle)):
        check_service_url(url)


@pytest.mark.parametrize(("url", "base"), [
    ("https://kyso.example/", "https://kyso.example"),
    ("https://kyso.example/csc/v2", "https://kyso.example"),
    ("http://127.0.0.1:8080/csc/v1/", "http://127.0.0.1:8080"),
    ("http://[::1]:8080", "http://[::1]:8080"),
    ("http://localhost:8080/prefix", "http://localhost:8080/prefix"),
])
def test_gateway_urls_are_normalised_to_the_service_base(url: str, base: str) -> None:
    assert check_service_url(url) == base


@pytest.mark.parametrize("token", ["", "   ", "not a jwt", "a.b", "a.b.c.d", "a.b.c\n" * 2,
                                   "é.b.c", "a." + "b" * 9000 + ".c"])
def test_tokens_that_are_not_jwts_are_refused_without_being_repeated(token: str) -> None:
    with pytest.raises(SigningError) as caught:
        check_token(token)
    if token.strip():
        assert token.strip() not in str(caught.value)


def test_the_client_and_its_results_never_show_the_token_or_the_sad() -> None:
    client = CscClient("https://kyso.example", TOKEN)
    assert TOKEN not in repr(client)
    assert TOKEN not in repr(vars(client).get("_opener"))
    assert "secret-sad" not in repr(Authorization("secret-sad", 300))


# --- against the real gateway ------------------------------------------------------------------

def sign_sample(signer: PdfSigner, folder: Path, request: SignRequest | None = None,
                name: str = "don") -> Path:
    src, out = folder / f"{name}.pdf", folder / f"{name}-ky.pdf"
    src.write_bytes(sample_pdf(pages=2))
    signer.sign_file(src, out, request or SignRequest(field_name="citizen"))
    return out


def csc_events(gateway: LiveGateway, action: str) -> list[dict[str, Any]]:
    return [e for e in audit_events(gateway.kyso) if e["action"] == action]


def test_the_client_speaks_to_the_running_gateway(live_gateway: LiveGateway) -> None:
    binh = live_gateway.citizen(BINH)
    enrolled = live_gateway.enrol(binh)
    client = live_gateway.client(live_gateway.login(binh, step_up=True))

    info = client.info()
    listed = client.list_credentials()
    credential = client.credential_info(enrolled.credential_id)

    assert info.specs.startswith("2.")
    assert info.oauth2 == live_gateway.url
    assert set(info.methods) >= {"credentials/info", "credentials/authorize",
                                 "signatures/signHash"}
    assert listed == (enrolled.credential_id,)
    assert credential.certificate == enrolled.certificate
    assert [c.subject for c in credential.chain] == [live_gateway.ca.certificate("citizen").subject]
    assert (credential.key_status, credential.certificate_status) == ("enabled", "valid")
    assert "1.2.840.10045.4.3.2" in credential.key_algorithms
    assert enrolled.serial.lower().lstrip("0") == f"{enrolled.certificate.serial_number:x}"


@pytest.mark.parametrize("level", [Level.B_B, Level.B_LT])
def test_a_pdf_signed_through_the_running_gateway_verifies_with_only_the_root(
        live_gateway: LiveGateway, tmp_path: Path, level: Level) -> None:
    binh = live_gateway.citizen(BINH)
    enrolled = live_gateway.enrol(binh)
    client = live_gateway.client(live_gateway.login(binh, step_up=True))
    clock = SystemClock()
    services = HttpServices(f"{live_gateway.url}/tsa", clock) if level.timestamped else None
    signer = remote_signer(client, enrolled.credential_id, clock, services=services)

    out = sign_sample(signer, tmp_path, SignRequest(level=level, field_name="citizen"))
    # B-B carries no revocation data: asked online, from the URLs in the certificates; B-LT
    # carries it and is verified offline
    report = build_verifier(clock, kyso=None, trust=[live_gateway.root],
                            online=not level.long_term).verify_file(out)

    assert report.indication is Indication.TOTAL_PASSED, report.reasons
    (signature,) = report.signatures
    assert signature.pades_level == level.value
    key = signer.cms.key
    assert isinstance(key, RemoteKey)
    (made,) = key.signatures
    # the gateway recorded that very hash: authorized, then signed, for her credential
    for action in ("CSC_AUTHORIZE", "CSC_SIGN_HASH"):
        (event,) = csc_events(live_gateway, action)
        assert event["outcome"] == "success"
        assert event["object"] == enrolled.credential_id
        assert event["details"]["hashes"] == [made.digest]
    assert made.expires_in is not None
    assert 0 < made.expires_in <= 300


@pytest.mark.external
def test_openssl_verifies_the_cms_the_gateway_signed(live_gateway: LiveGateway, tmp_path: Path,
                                                      openssl: str) -> None:
    binh = live_gateway.citizen(BINH)
    enrolled = live_gateway.enrol(binh)
    client = live_gateway.client(live_gateway.login(binh, step_up=True))
    out = sign_sample(remote_signer(client, enrolled.credential_id, SystemClock()), tmp_path)
    with open(out, "rb") as fh:
        (sig,) = PdfFileReader(fh).embedded_regular_signatures
        start, length, second, rest = sig.sig_object["/ByteRange"]
        signed_data = sig.signed_data
    data = out.read_bytes()
    signed = data[start:start + length] + data[second:second + rest]
    cms = tmp_path / "citizen.p7s"
    cms.write_bytes(asn1_cms.ContentInfo({"content_type": "signed_data",
                                          "content": signed_data}).dump())
    anchors = tmp_path / "ca.pem"
    anchors.write_bytes(live_gateway.root.read_bytes() + live_gateway.ca.certificate(
        "citizen").public_bytes(serialization.Encoding.PEM))

    def openssl_verify(content: bytes) -> subprocess.CompletedProcess[str]:
        (tmp_path / "content.bin").write_bytes(content)
        return subprocess.run([openssl, "cms", "-verify", "-binary", "-inform", "DER",
                               "-in", str(cms), "-content", str(tmp_path / "content.bin"),
                               "-CAfile", str(anchors), "-purpose", "any", "-out", "/dev/null"],
                              capture_output=True, text=True, timeout=60, check=False)

    done = openssl_verify(signed)
    assert done.returncode == 0, done.stderr
    assert "Verification successful" in done.stderr
    assert openssl_verify(signed[:-1] + bytes([signed[-1] ^ 1])).returncode != 0


def test_one_step_up_signs_once(live_gateway: LiveGateway, tmp_path: Path) -> None:
    """The token of a step-up authorizes one signature: a second document needs a new login
    (the gateway's refusal reaches the user with the URL and its words; nothing is written)."""
    binh = live_gateway.citizen(BINH)
    enrolled = live_gateway.enrol(binh)
    signer = remote_signer(live_gateway.client(live_gateway.login(binh, step_up=True)),
                           enrolled.credential_id, SystemClock())
    sign_sample(signer, tmp_path, name="first")

    with pytest.raises(SigningError) as caught:
        sign_sample(signer, tmp_path, name="second")

    message = str(caught.value)
    assert f"{live_gateway.url}/csc/v2/credentials/authorize: the signing gateway refused" in message
    assert not (tmp_path / "second-ky.pdf").exists()
    assert [e["outcome"] for e in csc_events(live_gateway, "CSC_SIGN_HASH")] == ["success"]


def test_a_token_for_another_audience_is_refused_with_the_gateways_reason(
        live_gateway: LiveGateway, tmp_path: Path) -> None:
    binh = live_gateway.citizen(BINH)
    enrolled = live_gateway.enrol(binh)
    client = live_gateway.client(live_gateway.login(binh, OTHER, step_up=True))

    with pytest.raises(SigningError) as caught:
        remote_signer(client, enrolled.credential_id, SystemClock())

    message = str(caught.value)
    assert "credentials/info: the signing gateway refused (HTTP 401): invalid_token" in message
    assert "log in again" in message


def test_another_citizens_credential_is_an_unknown_one(live_gateway: LiveGateway) -> None:
    binh, cuong = live_gateway.citizen(BINH), live_gateway.citizen(CUONG)
    hers = live_gateway.enrol(binh)
    client = live_gateway.client(live_gateway.login(cuong, step_up=True))

    with pytest.raises(SigningError) as theirs:
        remote_signer(client, hers.credential_id, SystemClock())
    with pytest.raises(SigningError) as nobodys:
        remote_signer(client, "csc-" + "x" * 32, SystemClock())

    assert "HTTP 400" in str(theirs.value)
    assert "credentialID" in str(theirs.value)
    assert str(theirs.value).replace(hers.credential_id, "?") == \
        str(nobodys.value).replace("csc-" + "x" * 32, "?")
    assert client.list_credentials() == ()


def test_a_level_1_citizen_cannot_enrol(live_gateway: LiveGateway) -> None:
    dung = live_gateway.citizen(DUNG, IdLevel.ONE)
    with pytest.raises(SigningError) as caught:
        live_gateway.enrol(dung)
    assert "/api/v1/signing/credentials: the signing gateway refused (HTTP 401): " \
           "insufficient_user_authentication" in str(caught.value)
