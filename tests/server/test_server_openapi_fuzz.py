"""Property-based fuzzing of the whole HTTP API from its own OpenAPI document (schemathesis):
for every operation, generated requests — valid and invalid bodies, parameters and headers —
never get a 5xx, and every error answer is a clear body, never a traceback. Bounded and
derandomized, so the suite stays fast and repeatable."""

from __future__ import annotations

import warnings

import hypothesis
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import strategies as st
from pki_server_support import make_app

from kyso.context import Kyso
from kyso.pki.authority import CertificateAuthority

pytest_plugins = ("server_fixtures", "pki_server_fixtures")

# The binary bodies of the PKI protocols: random bytes, and bytes that start like DER.
_DER_ISH = st.one_of(st.binary(max_size=512),
                     st.binary(max_size=256).map(lambda b: b"\x30\x82" + len(b).to_bytes(2, "big") + b))
schemathesis.openapi.media_type("application/ocsp-request", _DER_ISH)
schemathesis.openapi.media_type("application/timestamp-query", _DER_ISH)
schemathesis.openapi.media_type("application/pdf", st.one_of(
    st.binary(max_size=2048), st.binary(max_size=2048).map(lambda b: b"%PDF-1.7\n" + b)))


@pytest.fixture
def fuzz_app(kyso: Kyso, ca: CertificateAuthority) -> FastAPI:
    return make_app(kyso)


def _operations(app: FastAPI) -> list:  # type: ignore[type-arg]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # schemathesis' own notices about the document
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    return [result.ok() for result in schema.get_all_operations()]


def test_no_generated_request_gets_a_server_error(fuzz_app: FastAPI) -> None:
    failures: list[str] = []
    calls: list[int] = []
    operations = _operations(fuzz_app)

    for operation in operations:
        @hypothesis.given(case=operation.as_strategy())
        @hypothesis.settings(max_examples=25, derandomize=True, deadline=None, database=None,
                             suppress_health_check=list(hypothesis.HealthCheck))
        def fuzz(case) -> None:  # type: ignore[no-untyped-def]
            response = case.call()
            calls.append(response.status_code)
            problem = None
            if response.status_code >= 500:
                problem = f"{response.status_code}"
            elif b"Traceback" in response.content:
                problem = "a traceback in the body"
            elif response.status_code >= 400 and "application/json" in str(
                    response.headers.get("content-type")):
                body = response.json()
                if not (isinstance(body, dict) and (body.get("error") or body.get("detail"))):
                    problem = f"an unclear error body {body!r:.200}"
            if problem:
                failures.append(f"{case.method} {case.formatted_path}: {problem}")

        fuzz()

    assert len(operations) >= 25  # every router is in the document
    assert len(calls) >= 10 * len(operations)  # the fuzzer really sent requests
    assert failures == []
