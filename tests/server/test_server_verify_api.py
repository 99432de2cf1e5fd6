"""The verify API of ``kyso serve`` (POST /api/v1/verify and /api/v1/verify/batch): the report of
``kyso pdf verify --format json`` for raw and multipart bodies, verdicts as HTTP 200, clear 4xx
JSON for everything that cannot be verified (size limits declared and streamed, garbage,
truncation, empty bodies, wrong content types, malformed multipart), batch order and limits,
503 without a CA, a verifier that follows republished CRLs, and one audit event per request."""

from __future__ import annotations

import asyncio
import json
import os
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from server_support import ISSUER, KEY_PASSPHRASE, TestClient

from conftest import PASSPHRASE, STAFF, audit_events, audit_text
from kyso.clock import FrozenClock
from kyso.context import Kyso
from kyso.pki.authority import CertificateAuthority
from kyso.pki.crl import publish_crl
from kyso.pki.issuance import issue
from kyso.pki.keys import KeyType
from kyso.pki.subjects import SubjectRequest
from kyso.server.app import create_app
from kyso.server.verify_routes import BATCH_SCHEMA, MAX_BATCH_FILES, RESCAN, VerifierHolder
from kyso.signing.sample import sample_pdf
from kyso.signing.setup import build_verifier
from kyso.signing.sign import PdfSigner, SignRequest

LIMIT = 256 * 1024  # the app's PDF limit in these tests
TITLE = b"Don de nghi cap ban sao"


def staff_signer(kyso: Kyso, ca: CertificateAuthority) -> PdfSigner:
    """A staff certificate from the test CA and its signer (as signing_support.make_holder)."""
    issued = issue(kyso, ca, "staff", SubjectRequest.of(**STAFF), key_type=KeyType.EC_P256)
    assert issued.private_key is not None
    return PdfSigner.from_key(issued.private_key, issued.record.certificate,  # type: ignore[arg-type]
                              tuple(issued.chain), kyso.clock)


def publish_crls(kyso: Kyso, ca: CertificateAuthority) -> None:
    for name in ("root", "staff", "citizen", "services"):
        publish_crl(kyso, ca, name)


@pytest.fixture
def signed(kyso: Kyso, ca: CertificateAuthority) -> bytes:
    """A B-B signed dossier; the CRLs are published, so it verifies offline."""
    data = staff_signer(kyso, ca).sign(sample_pdf(pages=2), SignRequest()).data
    publish_crls(kyso, ca)
    return data


def tampered(data: bytes) -> bytes:
    """The same bytes with the visible title of page 1 changed inside the signed range."""
    assert TITLE in data
    changed = data.replace(TITLE, b"Don tu choi cap ban sao", 1)
    assert len(changed) == len(data)
    return changed


@pytest.fixture
def app(kyso: Kyso, ca: CertificateAuthority) -> FastAPI:
    return create_app(kyso.settings, kyso=kyso, key_passphrase=KEY_PASSPHRASE, issuer=ISSUER,
                      max_pdf_bytes=LIMIT)


@pytest.fixture
def api(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url=ISSUER) as client:
        yield client


def raw(client: TestClient, data: bytes, ctype: str = "application/pdf") -> httpx.Response:
    return client.post("/api/v1/verify", content=data, headers={"Content-Type": ctype})


def error_of(response: httpx.Response, status: int, error: str, *needles: str) -> str:
    """A clear JSON error: the status, the error code, a description naming the problem."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error"] == error, body
    description: str = body["error_description"]
    for needle in needles:
        assert needle.lower() in description.lower(), description
    assert "Traceback" not in response.text
    return description


def same_report(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return {k: v for k, v in a.items() if k != "file"} == \
        {k: v for k, v in b.items() if k != "file"}


# --- verdicts ---------------------------------------------------------------------------------

def test_a_signed_dossier_is_total_passed_with_the_report_of_pdf_verify(
        api: TestClient, kyso: Kyso, signed: bytes) -> None:
    response = raw(api, signed)

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    report = response.json()
    assert report["schema"] == "kyso-pdf-verify/1"
    assert report["indication"] == "TOTAL-PASSED", report["reasons"]
    assert report["signatures"][0]["signer"]["common_name"] == STAFF["name"]
    # exactly what `kyso pdf verify --format json` prints: the same verifier, the same report
    expected = build_verifier(kyso.clock, kyso=kyso).verify(signed, "-").to_dict()
    assert report == expected


def test_a_dossier_changed_after_signing_is_total_failed_with_http_200(
        api: TestClient, signed: bytes) -> None:
    response = raw(api, tampered(signed))

    assert response.status_code == 200, response.text
    report = response.json()
    assert report["indication"] == "TOTAL-FAILED"
    assert report["sub_indication"] == "HASH_FAILURE"


def test_an_unsigned_pdf_is_total_failed_no_signature_found(api: TestClient,
                                                            signed: bytes) -> None:
    report = raw(api, sample_pdf(pages=1)).json()

    assert (report["indication"], report["sub_indication"]) == ("TOTAL-FAILED",
                                                                "NO_SIGNATURE_FOUND")


def test_multipart_and_raw_bodies_give_the_same_report_named_by_the_filename(
        api: TestClient, signed: bytes) -> None:
    by_raw = raw(api, signed).json()
    response = api.post("/api/v1/verify",
                        files={"file": ("hồ sơ khai sinh.pdf", signed, "application/pdf")})

    assert response.status_code == 200, response.text
    by_part = response.json()
    assert by_part["file"] == "hồ sơ khai sinh.pdf"
    assert by_raw["file"] == "-"
    assert same_report(by_raw, by_part)


def test_a_damaged_pdf_after_a_good_header_is_a_format_failure_verdict(api: TestClient) -> None:
    response = raw(api, b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\ngarbage\n%%EOF\n")

    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["indication"], report["sub_indication"]) == ("TOTAL-FAILED", "FORMAT_FAILURE")
    assert report["error"]


# --- what cannot be verified: 4xx JSON --------------------------------------------------------

@pytest.mark.parametrize(("body", "needle"), [
    (b"", "empty"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "no %PDF- header"),
    (b"<html><body>hello</body></html>", "not a PDF"),
], ids=["empty", "png", "html"])
def test_a_body_that_is_not_a_pdf_is_422_naming_the_problem(api: TestClient, body: bytes,
                                                             needle: str) -> None:
    error_of(raw(api, body), 422, "not_a_pdf", needle)


def test_a_truncated_pdf_is_422_truncated(api: TestClient, signed: bytes) -> None:
    error_of(raw(api, signed[: len(signed) // 2]), 422, "not_a_pdf", "truncated")


@pytest.mark.parametrize("ctype", ["text/plain", "application/json", "application/octet-stream",
                                   "application/x-www-form-urlencoded", ""])
def test_a_wrong_content_type_is_415(api: TestClient, signed: bytes, ctype: str) -> None:
    headers = {"Content-Type": ctype} if ctype else {}
    response = api.post("/api/v1/verify", content=signed, headers=headers)
    error_of(response, 415, "unsupported_media_type", "application/pdf", "multipart/form-data")


async def asgi_post(app: FastAPI, path: str, chunks: list[bytes],
                    headers: dict[str, str]) -> tuple[int, dict[str, Any], int]:
    """POST ``chunks`` straight to the ASGI app; (status, JSON body, chunks the app read)."""
    read = {"chunks": 0}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        index = read["chunks"]
        read["chunks"] += 1
        if index >= len(chunks):
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": chunks[index],
                "more_body": index < len(chunks) - 1}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "https", "path": path, "raw_path": path.encode(), "query_string": b"",
             "root_path": "", "server": ("testserver", 443), "client": ("127.0.0.1", 5000),
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
    await app(scope, receive, send)  # type: ignore[arg-type]
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(body), read["chunks"]


CHUNK = 64 * 1024


def test_an_oversized_body_with_a_declared_length_is_413_before_it_is_read(app: FastAPI) -> None:
    chunks = [b"%PDF-1.7\n"] + [b"\0" * CHUNK] * 8
    status, body, read = asyncio.run(asgi_post(
        app, "/api/v1/verify", chunks, {"content-type": "application/pdf",
                                        "content-length": str(LIMIT + 1)}))

    assert (status, body["error"]) == (413, "payload_too_large")
    assert str(LIMIT) in body["error_description"]
    assert read == 0  # refused from the header alone


def test_an_oversized_body_without_a_length_is_413_while_streaming(app: FastAPI) -> None:
    chunks = [b"%PDF-1.7\n"] + [b"\0" * CHUNK] * 64  # chunked: no Content-Length
    status, body, read = asyncio.run(asgi_post(
        app, "/api/v1/verify", chunks, {"content-type": "application/pdf"}))

    assert (status, body["error"]) == (413, "payload_too_large")
    assert read == LIMIT // CHUNK + 1  # it stopped reading once over the limit


def test_an_oversized_multipart_body_without_a_length_is_413_while_streaming(
        app: FastAPI) -> None:
    head = (b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.pdf"\r\n'
            b"Content-Type: application/pdf\r\n\r\n%PDF-1.7\n")
    chunks = [head] + [b"\0" * CHUNK] * 64
    status, body, read = asyncio.run(asgi_post(
        app, "/api/v1/verify", chunks, {"content-type": "multipart/form-data; boundary=B"}))

    assert (status, body["error"]) == (413, "payload_too_large")
    assert read < len(chunks)


def test_a_pdf_of_exactly_the_limit_is_accepted(api: TestClient) -> None:
    overhead = len(sample_pdf(pages=1, padding=100_000)) - 100_000  # as many length digits
    pdf = sample_pdf(pages=1, padding=LIMIT - overhead)
    assert len(pdf) == LIMIT

    response = raw(api, pdf)
    assert response.status_code == 200, response.text
    assert response.json()["sub_indication"] == "NO_SIGNATURE_FOUND"


def test_an_oversized_multipart_file_is_413(api: TestClient) -> None:
    big = b"%PDF-1.7\n" + b"\0" * LIMIT + b"%%EOF\n"
    response = api.post("/api/v1/verify", files={"file": ("big.pdf", big, "application/pdf")})
    error_of(response, 413, "payload_too_large")


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"content": b"--x\r\nnot really", "headers": {"Content-Type": "multipart/form-data"}},
     "boundary"),
    ({"data": {"other": "value"}, "files": {"attachment": ("a.pdf", b"%PDF-", "application/pdf")}},
     "no part named file"),
    ({"content": b'--B\r\nContent-Disposition: form-data; name="file"\r\n\r\n%PDF-1.7 text\r\n'
                 b"--B--\r\n",
      "headers": {"Content-Type": "multipart/form-data; boundary=B"}},
     "file upload"),
], ids=["no-boundary", "no-file-part", "file-part-without-filename"])
def test_a_malformed_multipart_body_is_400_naming_the_problem(
        api: TestClient, kwargs: dict[str, Any], needle: str) -> None:
    error_of(api.post("/api/v1/verify", **kwargs), 400, "invalid_request", needle)


def test_two_file_parts_in_a_single_verify_are_refused(api: TestClient, signed: bytes) -> None:
    response = api.post("/api/v1/verify", files=[("file", ("a.pdf", signed, "application/pdf")),
                                                 ("file", ("b.pdf", signed, "application/pdf"))])
    error_of(response, 400, "invalid_request", "too many files")


# --- batch ------------------------------------------------------------------------------------

def test_batch_reports_follow_the_order_of_the_parts_with_their_filenames(
        api: TestClient, signed: bytes) -> None:
    parts = [("files", ("1-ok.pdf", signed, "application/pdf")),
             ("files", ("2-changed.pdf", tampered(signed), "application/pdf")),
             ("files", ("3-garbage.pdf", b"not a pdf at all", "application/pdf")),
             ("files", ("4-ok-again.pdf", signed, "application/pdf"))]

    response = api.post("/api/v1/verify/batch", files=parts)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["schema"] == BATCH_SCHEMA
    assert body["passed"] is False
    reports = body["reports"]
    assert [r["file"] for r in reports] == ["1-ok.pdf", "2-changed.pdf", "3-garbage.pdf",
                                            "4-ok-again.pdf"]
    assert [r["indication"] for r in reports] == ["TOTAL-PASSED", "TOTAL-FAILED", "TOTAL-FAILED",
                                                  "TOTAL-PASSED"]
    assert reports[2]["sub_indication"] == "FORMAT_FAILURE"
    assert "no %PDF- header" in reports[2]["error"]
    single = raw(api, signed).json()
    assert same_report(reports[0], single)


def test_a_batch_of_good_dossiers_passes(api: TestClient, signed: bytes) -> None:
    parts = [("files", (f"{i}.pdf", signed, "application/pdf")) for i in range(3)]
    body = api.post("/api/v1/verify/batch", files=parts).json()
    assert body["passed"] is True
    assert len(body["reports"]) == 3


def test_a_batch_of_more_than_the_file_limit_is_400(api: TestClient) -> None:
    parts = [("files", (f"{i}.pdf", b"%PDF-", "application/pdf"))
             for i in range(MAX_BATCH_FILES + 1)]
    error_of(api.post("/api/v1/verify/batch", files=parts), 400, "invalid_request",
             f"maximum number of files is {MAX_BATCH_FILES}")


def test_a_batch_over_the_total_size_is_413(api: TestClient) -> None:
    part = b"%PDF-1.7\n" + b"\0" * (LIMIT - 100) + b"%%EOF\n"
    parts = [("files", (f"{i}.pdf", part, "application/pdf")) for i in range(5)]
    error_of(api.post("/api/v1/verify/batch", files=parts), 413, "payload_too_large")


def test_a_batch_file_over_the_pdf_limit_is_413_naming_it(api: TestClient, signed: bytes) -> None:
    big = b"%PDF-1.7\n" + b"\0" * LIMIT + b"%%EOF\n"
    parts = [("files", ("small.pdf", signed, "application/pdf")),
             ("files", ("too-big.pdf", big, "application/pdf"))]
    error_of(api.post("/api/v1/verify/batch", files=parts), 413, "payload_too_large",
             "too-big.pdf")


def test_a_batch_needs_multipart_with_files_parts(api: TestClient, signed: bytes) -> None:
    error_of(api.post("/api/v1/verify/batch", content=signed,
                      headers={"Content-Type": "application/pdf"}),
             415, "unsupported_media_type", "multipart/form-data")
    error_of(api.post("/api/v1/verify/batch", files={"file": ("a.pdf", signed, "application/pdf")}),
             400, "invalid_request", "no part named files")


# --- the verifier's trust and revocation sources -----------------------------------------------

def test_without_a_ca_the_api_answers_503_then_works_once_the_ca_exists(
        kyso: Kyso, request: pytest.FixtureRequest) -> None:
    app = create_app(kyso.settings, kyso=kyso, key_passphrase=KEY_PASSPHRASE, issuer=ISSUER,
                     max_pdf_bytes=LIMIT)
    with TestClient(app, base_url=ISSUER) as client:
        response = raw(client, sample_pdf(pages=1))
        error_of(response, 503, "service_unavailable", "not available", "CA")
        assert response.headers["retry-after"] == "60"

        ca: CertificateAuthority = request.getfixturevalue("ca")  # the CA appears later
        data = staff_signer(kyso, ca).sign(sample_pdf(pages=1), SignRequest()).data
        publish_crls(kyso, ca)
        report = raw(client, data).json()
    assert report["indication"] == "TOTAL-PASSED", report["reasons"]


def test_the_verifier_follows_crls_published_after_start_up(
        api: TestClient, kyso: Kyso, ca: CertificateAuthority) -> None:
    data = staff_signer(kyso, ca).sign(sample_pdf(pages=1), SignRequest()).data
    before = raw(api, data).json()  # no CRL published yet: revocation unknown
    assert (before["indication"], before["sub_indication"]) == ("INDETERMINATE", "TRY_LATER")

    publish_crls(kyso, ca)  # the server is not restarted
    after = raw(api, data).json()
    assert after["indication"] == "TOTAL-PASSED", after["reasons"]


def test_the_verifier_is_kept_while_the_crl_directory_is_unchanged(
        kyso: Kyso, ca: CertificateAuthority) -> None:
    publish_crls(kyso, ca)
    holder = VerifierHolder(kyso)
    first = holder.get()
    assert holder.get() is first
    assert isinstance(kyso.clock, FrozenClock)
    kyso.clock.advance(RESCAN)  # the periodic listing finds the same files
    assert holder.get() is first


def test_a_crl_overwritten_in_place_is_used_after_the_rescan_interval(
        kyso: Kyso, ca: CertificateAuthority) -> None:
    publish_crls(kyso, ca)
    holder = VerifierHolder(kyso)
    first = holder.get()
    staff_crl = kyso.settings.crl_dir / "staff.crl"
    before = staff_crl.stat()
    with staff_crl.open("r+b") as fh:  # as `cp` would: same inode, the directory untouched
        fh.write(staff_crl.read_bytes())
    os.utime(staff_crl, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    assert holder.get() is first  # within the interval: the directory did not change
    assert isinstance(kyso.clock, FrozenClock)
    kyso.clock.advance(RESCAN)
    assert holder.get() is not first


def test_a_damaged_crl_answers_503_naming_it_until_it_is_replaced(
        api: TestClient, kyso: Kyso, ca: CertificateAuthority, signed: bytes) -> None:
    staff_crl = kyso.settings.crl_dir / "staff.crl"
    good = staff_crl.read_bytes()
    damaged = staff_crl.with_name("staff.crl.tmp")
    damaged.write_bytes(good[:40])  # truncated, renamed into place as a copy tool would
    damaged.replace(staff_crl)
    response = raw(api, signed)
    error_of(response, 503, "service_unavailable", "staff.crl", "not a DER CRL",
             "kyso crl publish")
    with staff_crl.open("r+b") as fh:  # repaired in place: the directory does not change
        fh.write(good)
    report = raw(api, signed).json()  # at once, not after the rescan interval
    assert report["indication"] == "TOTAL-PASSED", report["reasons"]


# --- audit and OpenAPI --------------------------------------------------------------------------

def test_each_request_records_one_document_verify_event_without_content(
        api: TestClient, kyso: Kyso, signed: bytes) -> None:
    count = len(audit_events(kyso))
    one = raw(api, signed)
    batch = api.post("/api/v1/verify/batch",
                     files=[("files", ("a.pdf", signed, "application/pdf")),
                            ("files", ("b.pdf", tampered(signed), "application/pdf"))])
    refused = raw(api, b"garbage")
    assert refused.status_code == 422

    events = audit_events(kyso)[count:]
    assert [e["action"] for e in events] == ["DOCUMENT_VERIFY", "DOCUMENT_VERIFY"]
    first, second = events
    assert (first["outcome"], first["details"]) == ("success", {"files": 1, "passed": True})
    assert (second["outcome"], second["details"]) == ("failure", {"files": 2, "passed": False})
    assert first["actor"] == "anonymous"
    assert first["request_id"] == one.headers["x-request-id"]
    assert second["request_id"] == batch.headers["x-request-id"]
    text = audit_text(kyso)
    assert one.json()["sha256"] not in text
    assert TITLE.decode() not in text


def openapi(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document. (oidc_routes serves GET and POST /authorize, /userinfo, /logout
    from one function each, so FastAPI warns of duplicate operation ids; -W error would turn
    that into a 500 of /openapi.json, so the document is built here with it ignored.)"""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Duplicate Operation ID")
        return app.openapi()


def test_openapi_documents_both_routes_with_their_bodies_and_errors(app: FastAPI) -> None:
    spec = openapi(app)
    single = spec["paths"]["/api/v1/verify"]["post"]
    assert set(single["requestBody"]["content"]) == {"application/pdf", "multipart/form-data"}
    assert {"200", "400", "413", "415", "422", "503"} <= set(single["responses"])
    batch = spec["paths"]["/api/v1/verify/batch"]["post"]
    assert set(batch["requestBody"]["content"]) == {"multipart/form-data"}
    assert single["summary"]
    assert batch["summary"]


def test_the_ca_passphrase_is_not_needed_to_verify(kyso: Kyso, signed: bytes) -> None:
    """Verification reads public data only (certificates, CRLs, the store)."""
    app = create_app(kyso.settings, kyso=kyso, key_passphrase=KEY_PASSPHRASE, issuer=ISSUER,
                     ca_passphrase=None)
    with TestClient(app, base_url=ISSUER) as client:
        assert raw(client, signed).json()["indication"] == "TOTAL-PASSED"
    assert PASSPHRASE not in audit_text(kyso)
