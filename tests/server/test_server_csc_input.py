"""Bad input to the signing gateway: garbage, wrong types, unknown fields, oversize bodies, bad
base64, hashes of the wrong length, unsupported algorithms — each a 4xx whose body names the
parameter, never a 5xx or a traceback, and each refused authorization or signature audited.
Also: no CA passphrase (503), and the OpenAPI description of the operations."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from csc_support import (
    Enrolled,
    authorize_body,
    b64,
    digest,
    enrol,
    mint,
    post,
    refused,
    register_clients,
    sign_body,
)
from pki_server_support import make_app
from server_support import ISSUER, Browser, Citizen, TestClient, bearer

from conftest import audit_events
from kyso.clock import FrozenClock
from kyso.context import Kyso
from kyso.pki.authority import CertificateAuthority

pytest_plugins = ("server_fixtures", "csc_fixtures")

CID = "csc-" + "B" * 32
A = digest("a")


def raw(http: TestClient, path: str, content: bytes, token: str,
        content_type: str = "application/json") -> Any:
    return http.post(f"/csc/v2/{path}", content=content,
                     headers={**bearer(token), "Content-Type": content_type})


AUTHORIZE_CASES: list[tuple[str, Any, str]] = [
    ("not json", b"{credentialID: 1", "body: not valid JSON"),
    ("an array", b"[1, 2]", "body: must be a JSON object"),
    ("a string", b'"hello"', "body: must be a JSON object"),
    ("NaN", b'{"numSignatures": NaN}', "body: not valid JSON"),
    ("deep nesting", b"[" * 30000, "body: not valid JSON"),
    ("latin-1", '{"credentialID": "é"}'.encode("latin-1"), "body: not valid JSON"),
    ("a number as text", authorize_body(CID, [A], numSignatures="1"),
     "numSignatures: Input should be a valid integer"),
    ("a bool as a number", authorize_body(CID, [A], numSignatures=True),
     "numSignatures: Input should be a valid integer"),
    ("a float", authorize_body(CID, [A], numSignatures=1.0),
     "numSignatures: Input should be a valid integer"),
    ("zero signatures", authorize_body(CID, [A], numSignatures=0),
     "numSignatures: Input should be greater than or equal to 1"),
    ("hashes not a list", {**authorize_body(CID, [A]), "hashes": b64(A)},
     "hashes: Input should be a valid list"),
    ("a hash not a string", {**authorize_body(CID, [A]), "hashes": [1]},
     "hashes.0: Input should be a valid string"),
    ("no hashes", {"credentialID": CID, "numSignatures": 1}, "hashes: required"),
    ("an empty list", {**authorize_body(CID, [A]), "hashes": []},
     "hashes: List should have at least 1 item"),
    ("eleven hashes", authorize_body(CID, [digest(str(i)) for i in range(11)]),
     "hashes: List should have at most 10 items"),
    ("a duplicate hash", authorize_body(CID, [A, A]), "hashes: the same hash appears twice"),
    ("bad base64", {**authorize_body(CID, [A]), "hashes": ["not base64!"]},
     "hashes[0]: not base64"),
    ("url-safe base64", {**authorize_body(CID, [b"\xfb" * 32]),
                         "hashes": [base64.urlsafe_b64encode(b"\xfb" * 32).decode()]},
     "hashes[0]: not base64"),
    ("a short hash", authorize_body(CID, [A[:31]]), "hashes[0]: 31 bytes, but a sha256 hash has 32"),
    ("a SHA-1 length without OID", {**authorize_body(CID, [A[:20]]), "hashAlgorithmOID": None},
     "hashes: a hash must be 32, 48 or 64 bytes"),
    ("SHA-1", authorize_body(CID, [A[:20]], hashAlgorithmOID="1.3.14.3.2.26"),
     "hashAlgorithmOID: unsupported hash algorithm '1.3.14.3.2.26'"),
    ("not an OID", authorize_body(CID, [A], hashAlgorithmOID="sha256"),
     "hashAlgorithmOID: String should match pattern"),
    ("v1 and v2 names at once", {**authorize_body(CID, [A]), "hash": [b64(A)]},
     "hashes: give hashes (v2) or hash (v1), not both"),
    ("an unknown field", authorize_body(CID, [A], foo=1), "foo: Extra inputs are not permitted"),
    ("a PIN", authorize_body(CID, [A], PIN="123456"), "PIN: not used by this gateway"),
    ("a bad credential id", authorize_body("../../etc/passwd", [A]),
     "credentialID: String should match pattern"),
    ("a count that does not match", authorize_body(CID, [A], numSignatures=2),
     "numSignatures: 2, but 1 hashes were given"),
]


@pytest.mark.parametrize(("content", "named"), [(c[1], c[2]) for c in AUTHORIZE_CASES],
                         ids=[c[0] for c in AUTHORIZE_CASES])
def test_a_bad_authorize_body_is_400_naming_the_problem_and_is_audited(
        csc_http: TestClient, token: str, kyso: Kyso, level2: Citizen, content: Any,
        named: str) -> None:
    response = (raw(csc_http, "credentials/authorize", content, token)
                if isinstance(content, bytes)
                else post(csc_http, "credentials/authorize", content, token))

    description = refused(response, 400, "invalid_request")
    assert description.startswith(named), description
    event = [e for e in audit_events(kyso) if e["action"] == "CSC_AUTHORIZE"][-1]
    assert event["outcome"] == "failure"
    assert event["actor"] == kyso.pseudonyms.pseudonym(level2.id_number)
    assert event["details"]["reason"].startswith(named)
    assert "123456" not in str(event)


SIGN_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("RSA-PSS", {"signAlgo": "1.2.840.113549.1.1.10"},
     "signAlgo: unsupported signature algorithm '1.2.840.113549.1.1.10'"),
    ("RSA on an EC key", {"signAlgo": "1.2.840.113549.1.1.11"},
     "signAlgo: 1.2.840.113549.1.1.11 does not suit"),
    ("a hash that disagrees with signAlgo", {"hashAlgorithmOID": "2.16.840.1.101.3.4.2.3"},
     "hashAlgorithmOID: sha512 does not match signAlgo"),
    ("no hash algorithm for plain ECDSA", {"signAlgo": "1.2.840.10045.2.1",
                                           "hashAlgorithmOID": None},
     "hashAlgorithmOID: required with signAlgo 1.2.840.10045.2.1"),
    ("asynchronous mode", {"operationMode": "A"}, "operationMode: Input should be 'S'"),
    ("parameters for ECDSA", {"signAlgoParams": base64.b64encode(b"\x30\x00").decode()},
     "signAlgoParams: 1.2.840.10045.4.3.2 takes no parameters"),
    ("a SAD that is not text", {"SAD": 12345}, "SAD: Input should be a valid string"),
    ("an empty SAD", {"SAD": ""}, "SAD: String should have at least 1 character"),
    ("a hash of the wrong length", {"hashes": [b64(A[:16])]},
     "hashes[0]: 16 bytes, but a sha256 hash has 32"),
    ("a validity period", {"validity_period": 1}, "validity_period: Extra inputs"),
]


@pytest.mark.parametrize(("change", "named"), [(c[1], c[2]) for c in SIGN_CASES],
                         ids=[c[0] for c in SIGN_CASES])
def test_a_bad_sign_hash_body_is_400_naming_the_problem_and_keeps_the_sad(
        csc_http: TestClient, enrolled: Enrolled, token: str, kyso: Kyso,
        change: dict[str, Any], named: str) -> None:
    approved = post(csc_http, "credentials/authorize",
                    authorize_body(enrolled.credential_id, [A]), token)
    assert approved.status_code == 200, approved.text
    sad = approved.json()["SAD"]
    body = {k: v for k, v in {**sign_body(enrolled.credential_id, sad, [A]), **change}.items()
            if v is not None}

    description = refused(post(csc_http, "signatures/signHash", body, token), 400,
                          "invalid_request")

    assert description.startswith(named), description
    assert [e for e in audit_events(kyso)
            if e["action"] == "CSC_SIGN_HASH"][-1]["outcome"] == "failure"
    good = post(csc_http, "signatures/signHash", sign_body(enrolled.credential_id, sad, [A]),
                token)
    assert good.status_code == 200, good.text  # the refusal did not use the SAD


def test_an_oversize_body_is_413_whether_declared_or_streamed(csc_http: TestClient,
                                                               token: str) -> None:
    big = b'{"clientData": "' + b"x" * 70_000 + b'"}'

    declared = raw(csc_http, "credentials/authorize", big, token)
    streamed = csc_http.post("/csc/v2/credentials/authorize", content=iter([big[:40_000],
                                                                             big[40_000:]]),
                             headers={**bearer(token), "Content-Type": "application/json"})

    assert "64 KiB" in refused(declared, 413, "payload_too_large")
    assert "64 KiB" in refused(streamed, 413, "payload_too_large")


def test_a_body_that_is_not_json_by_its_type_is_415(csc_http: TestClient, token: str) -> None:
    response = raw(csc_http, "credentials/list", b"credentialInfo=true", token,
                   "application/x-www-form-urlencoded")

    assert "send application/json" in refused(response, 415, "unsupported_media_type")


def test_an_empty_body_is_an_empty_request(csc_http: TestClient, token: str) -> None:
    response = csc_http.post("/csc/v2/credentials/list", headers=bearer(token))

    assert response.status_code == 200, response.text
    assert response.json() == {"credentialIDs": []}


def test_info_refuses_an_unknown_field_too(csc_http: TestClient) -> None:
    refused(post(csc_http, "info", {"lang": 7}), 400, "invalid_request")


def test_without_the_ca_passphrase_the_routes_that_need_keys_answer_503(
        kyso: Kyso, ca: CertificateAuthority, clock: FrozenClock, level2: Citizen) -> None:
    app = make_app(kyso, ca_passphrase=None)
    clients = register_clients(app.state.provider)
    with TestClient(app, base_url=ISSUER, follow_redirects=False) as http:
        browser = Browser(http, clock)
        token = mint(browser, clock, level2, clients.api_secret)

        answers = [enrol(http, token),
                   post(http, "credentials/authorize", authorize_body(CID, [A]), token),
                   post(http, "signatures/signHash", sign_body(CID, "x", [A]), token)]
        listed = post(http, "credentials/list", {}, token)

    for answer in answers:
        assert "without the CA passphrase" in refused(answer, 503, "service_unavailable")
        assert answer.headers["retry-after"] == "60"
    assert listed.status_code == 200


def test_the_openapi_document_describes_every_gateway_operation(csc_http: TestClient) -> None:
    document = csc_http.get("/openapi.json").json()
    paths = document["paths"]

    ids = []
    for version in ("v1", "v2"):
        for method in ("info", "credentials/list", "credentials/info", "credentials/authorize",
                       "signatures/signHash"):
            operation = paths[f"/csc/{version}/{method}"]["post"]
            ids.append(operation["operationId"])
            assert operation["summary"]
            assert operation["tags"] == ["signing gateway"]
            assert "application/json" in operation["requestBody"]["content"]
            assert ("security" in operation) is (method != "info")
    authorize = paths["/csc/v2/credentials/authorize"]["post"]
    schema = authorize["requestBody"]["content"]["application/json"]["schema"]
    assert schema["additionalProperties"] is False
    assert {"credentialID", "numSignatures", "hashes", "hash"} <= set(schema["properties"])
    assert {"400", "401", "503"} <= set(authorize["responses"])
    enrol_op = paths["/api/v1/signing/credentials"]["post"]
    assert "201" in enrol_op["responses"]
    assert len(set(ids)) == len(ids) == 10

