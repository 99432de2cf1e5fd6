"""What the JSON APIs share (kyso.server.api): the size-limited JSON body reader every JSON
router uses — 415, 400, 413 and 422 in the APIs' error shape, each naming the problem — and
OpenAPI error descriptions a router can make its own."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest
from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel, ConfigDict
from server_support import TestClient

from kyso.server.api import JsonApiRoute, error_responses, read_json

pytest_plugins = ("server_fixtures",)

LIMIT = 2048


class Greeting(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str
    times: int = 1


@pytest.fixture
def echo() -> Iterator[TestClient]:
    """An app with one route that reads a Greeting of at most LIMIT bytes."""
    router = APIRouter(route_class=JsonApiRoute)

    @router.post("/echo")
    async def echo_route(request: Request) -> dict[str, object]:
        body = await read_json(request, Greeting, LIMIT)
        return body.model_dump()

    app = FastAPI()
    app.include_router(router)
    with TestClient(app) as client:
        yield client


JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(("content", "headers", "status", "error", "named"), [
    (b'{"name": "An"}', {"Content-Type": "text/plain"}, 415, "unsupported_media_type",
     "Content-Type 'text/plain': send application/json"),
    (b'{"name": "An"}', {}, 415, "unsupported_media_type", "no Content-Type"),
    (b'{"name": ', JSON, 400, "invalid_request", "the body is not valid JSON"),
    (b"", JSON, 400, "invalid_request", "the body is not valid JSON"),
    (b'{"name": "' + b"a" * LIMIT + b'"}', JSON, 413, "payload_too_large",
     f"larger than the limit of {LIMIT} bytes (2 KiB)"),
    (b'{"name": "An", "times": "2"}', JSON, 422, "invalid_request", "body parameter times"),
    (b'{"name": "An", "admin": true}', JSON, 422, "invalid_request", "body parameter admin"),
])
def test_read_json_refuses_each_bad_body_with_its_status_naming_the_problem(
        echo: TestClient, content: bytes, headers: dict[str, str], status: int, error: str,
        named: str) -> None:
    response = echo.post("/echo", content=content, headers=headers)

    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    assert named in body["error_description"]
    assert response.headers["cache-control"] == "no-store"


def test_read_json_refuses_a_streamed_body_past_the_limit_and_a_bad_content_length(
        echo: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"name": "'
        for _ in range(8):
            yield b"a" * 512  # 4 KiB, no Content-Length
        yield b'"}'

    streamed = echo.post("/echo", content=chunks(), headers=JSON)
    garbled = echo.post("/echo", content=b'{"name": "An"}',
                        headers={**JSON, "Content-Length": "fourteen"})

    assert (streamed.status_code, streamed.json()["error"]) == (413, "payload_too_large")
    assert garbled.status_code == 400
    assert garbled.json()["error_description"] == "Content-Length is not a number"


def test_read_json_returns_the_model_of_a_good_body(echo: TestClient) -> None:
    response = echo.post("/echo", json={"name": "Bình", "times": 3})

    assert response.status_code == 200, response.text
    assert response.json() == {"name": "Bình", "times": 3}


def test_error_responses_takes_a_routers_own_descriptions_for_the_statuses_asked() -> None:
    docs = error_responses(404, 409, described={409: "The certificate's status", 418: "unused"})

    assert set(docs) == {404, 409}
    assert docs[404]["description"] == "Not found"
    assert docs[409]["description"] == "The certificate's status"


def test_each_router_documents_its_own_conflict(app: FastAPI) -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Duplicate Operation ID")
        paths = app.openapi()["paths"]

    def conflict(path: str, method: str = "post") -> str:
        text: str = paths[path][method]["responses"]["409"]["description"]
        return text

    assert conflict("/api/v1/certificates").startswith("The certificate's status")
    assert conflict("/api/v1/signing/credentials") == \
        "The citizen already has an enabled credential"
    assert conflict("/api/v1/audit/checkpoint", "get").startswith("The stored log")
