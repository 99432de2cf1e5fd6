"""The RFC 3161 route of ``kyso serve``: granted tokens (policy, nonce, accuracy), rejections in
DER with the right HTTP status, one audit event per token, clear 4xx for what is not a
request; and ``openssl ts`` against a live server."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

import httpx
import pytest
from asn1crypto import tsp
from pki_server_support import TSA_TYPE, LivePki, TimeStampReply, make_app, run, tsa_request
from server_support import ISSUER, TestClient

from conftest import T0, audit_events
from kyso.clock import FrozenClock
from kyso.context import Kyso
from kyso.pki.authority import CertificateAuthority, list_services
from kyso.pki.serials import serial_hex
from kyso.pki.tsa import TSA_POLICY_OID

pytest_plugins = ("pki_server_fixtures",)

DIGEST = hashlib.sha256(b"to-khai-dang-ky-khai-sinh.pdf").digest()


def reply_of(answer: httpx.Response) -> tuple[str, set[str], list[str], Any]:
    """(status, failure bits, status strings, token or None) of a TimeStampResp."""
    assert answer.headers["content-type"] == "application/timestamp-reply"
    assert answer.headers["cache-control"] == "no-store"
    resp = TimeStampReply.load(answer.content, strict=True)
    status = resp["status"]
    token = resp["time_stamp_token"]
    return (status["status"].native, set(status["fail_info"].native or ()),
            list(status["status_string"].native or ()), None if token.native is None else token)


def tst_info(token: Any) -> dict[str, Any]:
    return dict(token["content"]["encap_content_info"]["content"].parsed.native)


def test_granted_token_carries_policy_imprint_nonce_and_accuracy(pki_http: TestClient) -> None:
    answer = pki_http.post("/tsa", content=tsa_request(DIGEST, nonce=0x1234567890ABCDEF),
                           headers=TSA_TYPE)
    assert answer.status_code == 200
    status, fail, strings, token = reply_of(answer)
    assert (status, fail, strings) == ("granted", set(), [])
    info = tst_info(token)
    assert info["policy"] == TSA_POLICY_OID
    assert info["message_imprint"] == {"hash_algorithm": {"algorithm": "sha256", "parameters": None},
                                       "hashed_message": DIGEST}
    assert info["nonce"] == 0x1234567890ABCDEF
    assert info["accuracy"] == {"seconds": 1, "millis": None, "micros": None}
    assert info["gen_time"] == T0
    assert "x-kyso-error" not in answer.headers


@pytest.mark.parametrize("algorithm", ["sha384", "sha512"])
def test_longer_sha2_imprints_are_granted(pki_http: TestClient, algorithm: str) -> None:
    digest = hashlib.new(algorithm, b"ho so").digest()
    answer = pki_http.post("/tsa", content=tsa_request(digest, algorithm), headers=TSA_TYPE)
    assert answer.status_code == 200
    assert reply_of(answer)[0] == "granted"


@pytest.mark.parametrize("algorithm", ["sha1", "md5"])
def test_unsupported_hash_is_a_bad_alg_rejection_with_http_200(
    pki_http: TestClient, algorithm: str,
) -> None:
    digest = hashlib.new(algorithm, b"ho so").digest()
    answer = pki_http.post("/tsa", content=tsa_request(digest, algorithm), headers=TSA_TYPE)
    assert answer.status_code == 200  # a parsed request: RFC 3161 clients read the PKIStatus
    status, fail, strings, token = reply_of(answer)
    assert (status, fail, token) == ("rejection", {"bad_alg"}, None)
    assert strings == [f"hash algorithm {algorithm} is not accepted; use sha256, sha384, sha512"]
    assert answer.headers["x-kyso-error"] == strings[0]


def test_another_policy_is_an_unaccepted_policy_rejection(pki_http: TestClient) -> None:
    answer = pki_http.post("/tsa", content=tsa_request(DIGEST, req_policy="1.2.3.4"),
                           headers=TSA_TYPE)
    assert answer.status_code == 200
    status, fail, _strings, _token = reply_of(answer)
    assert (status, fail) == ("rejection", {"unaccepted_policy"})


@pytest.mark.parametrize("body", [b"", b"garbage", b"\x30\x03\x02\x01\x01",
                                  tsa_request(DIGEST)[:-3], tsa_request(DIGEST[:20])],
                         ids=["empty", "garbage", "wrong-sequence", "truncated", "short-digest"])
def test_what_is_not_a_request_is_400_with_a_bad_data_format_rejection(
    pki_http: TestClient, body: bytes,
) -> None:
    answer = pki_http.post("/tsa", content=body, headers=TSA_TYPE)
    assert answer.status_code == 400
    status, fail, strings, token = reply_of(answer)
    assert (status, fail, token) == ("rejection", {"bad_data_format"}, None)
    assert answer.headers["x-kyso-error"] == strings[0]


def test_oversized_body_is_413(pki_http: TestClient) -> None:
    answer = pki_http.post("/tsa", content=b"\x30" * (64 * 1024 + 1), headers=TSA_TYPE)
    assert answer.status_code == 413
    assert answer.json()["error"] == "request_too_large"


@pytest.mark.parametrize("content_type", [None, "application/ocsp-request",
                                          "application/octet-stream"])
def test_wrong_content_type_is_415(pki_http: TestClient, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    answer = pki_http.post("/tsa", content=tsa_request(DIGEST), headers=headers)
    assert answer.status_code == 415
    assert "application/timestamp-query" in answer.json()["error_description"]


def test_get_is_not_allowed(pki_http: TestClient) -> None:
    assert pki_http.get("/tsa").status_code == 405


def test_without_the_ca_passphrase_the_tsa_is_503(kyso: Kyso, ca: CertificateAuthority) -> None:
    with TestClient(make_app(kyso, ca_passphrase=None), base_url=ISSUER) as http:
        answer = http.post("/tsa", content=tsa_request(DIGEST), headers=TSA_TYPE)
        assert answer.status_code == 503
        assert answer.json()["error"] == "tsa_unavailable"
        assert "without the CA passphrase" in answer.json()["error_description"]


def test_an_expired_tsa_certificate_turns_the_tsa_off_naming_it(
    pki_http: TestClient, kyso: Kyso, clock: FrozenClock,
) -> None:
    assert pki_http.post("/tsa", content=tsa_request(DIGEST), headers=TSA_TYPE).status_code == 200
    tsa_cert = next(s for s in list_services(kyso) if s.name == "tsa").certificate
    clock.set(tsa_cert.not_valid_after_utc + dt.timedelta(seconds=1))
    answer = pki_http.post("/tsa", content=tsa_request(DIGEST), headers=TSA_TYPE)
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "60"
    assert "the TSA is off: the tsa certificate is not valid now" in \
        answer.json()["error_description"]


def test_each_token_is_one_audit_event_and_rejections_none(
    pki_http: TestClient, kyso: Kyso,
) -> None:
    before = len(audit_events(kyso))
    answer = pki_http.post("/tsa", content=tsa_request(DIGEST), headers=TSA_TYPE)
    serial = tst_info(reply_of(answer)[3])["serial_number"]
    pki_http.post("/tsa", content=b"garbage", headers=TSA_TYPE)
    pki_http.post("/tsa", content=tsa_request(hashlib.sha1(b"x").digest(), "sha1"),  # noqa: S324
                  headers=TSA_TYPE)
    events = audit_events(kyso)[before:]
    assert [(e["layer"], e["action"], e["outcome"]) for e in events] == \
        [("pki", "TIMESTAMP_CREATION", "success")]
    assert events[0]["object"] == serial_hex(serial)
    assert events[0]["details"] == {"hash_algorithm": "sha256"}
    assert events[0]["request_id"] == answer.headers["x-request-id"]


# --- openssl against a live server -------------------------------------------------------------

@pytest.mark.external
def test_openssl_ts_query_reply_and_verify(
    openssl: str, live_pki: LivePki, tmp_path: Path,
) -> None:
    data = tmp_path / "hoso.pdf"
    data.write_bytes(b"%PDF-1.7 to khai dang ky khai sinh\n")
    query, reply = tmp_path / "q.tsq", tmp_path / "r.tsr"
    made = run(openssl, "ts", "-query", "-data", str(data), "-sha256", "-cert", "-out", str(query))
    assert made.returncode == 0, made.stderr
    answer = httpx.post(f"{live_pki.url}/tsa", content=query.read_bytes(), headers=TSA_TYPE,
                        timeout=30)
    assert answer.status_code == 200
    reply.write_bytes(answer.content)

    text = run(openssl, "ts", "-reply", "-in", str(reply), "-text")
    assert text.returncode == 0, text.stderr
    assert "Status: Granted." in text.stdout
    assert f"Policy OID: {TSA_POLICY_OID}" in text.stdout
    assert "Accuracy: 0x01 seconds" in text.stdout
    query_text = run(openssl, "ts", "-query", "-in", str(query), "-text").stdout
    nonce = next(line for line in query_text.splitlines() if line.startswith("Nonce:"))
    assert nonce in text.stdout

    for source in (["-data", str(data)], ["-queryfile", str(query)]):
        verified = run(openssl, "ts", "-verify", "-in", str(reply), *source,
                       "-CAfile", str(live_pki.files["root"]),
                       "-untrusted", str(live_pki.files["services"]))
        assert "Verification: OK" in verified.stdout, verified.stdout + verified.stderr
        assert verified.returncode == 0
    other = tmp_path / "other.pdf"
    other.write_bytes(b"%PDF-1.7 something else\n")
    wrong = run(openssl, "ts", "-verify", "-in", str(reply), "-data", str(other),
                "-CAfile", str(live_pki.files["root"]), "-untrusted", str(live_pki.files["services"]))
    assert "Verification: FAILED" in wrong.stdout


@pytest.mark.external
def test_openssl_reads_the_rejection_of_a_sha1_query(
    openssl: str, live_pki: LivePki, tmp_path: Path,
) -> None:
    data, query, reply = tmp_path / "d.txt", tmp_path / "q.tsq", tmp_path / "r.tsr"
    data.write_bytes(b"x")
    run(openssl, "ts", "-query", "-data", str(data), "-sha1", "-out", str(query))
    answer = httpx.post(f"{live_pki.url}/tsa", content=query.read_bytes(), headers=TSA_TYPE,
                        timeout=30)
    assert answer.status_code == 200
    reply.write_bytes(answer.content)
    text = run(openssl, "ts", "-reply", "-in", str(reply), "-text")
    assert "Status: Rejected." in text.stdout
    assert "unrecognized or unsupported algorithm identifier" in text.stdout
    tsp.TimeStampReq.load(query.read_bytes())  # and it was a well-formed query
