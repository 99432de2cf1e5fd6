"""What the JSON APIs (verify, audit, CA administration, signing gateway) share: the error
body (:class:`ErrorBody`, shaped as OAuth 2.0 errors), :class:`ApiError`, :class:`JsonApiRoute`
(a parameter of the wrong type answers 422 in the same shape), the size-limited body reader
(:func:`read_body`: 400 for a Content-Length that is not a number, 413 before reading when the
declared length is over the limit, else as soon as the stream passes it), the strict JSON body
parser (:func:`parse_body`: 400 not JSON, 422 naming each field) and request helpers."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

__all__ = ["JSON", "NO_STORE", "ApiError", "ErrorBody", "JsonApiRoute", "check_declared",
           "client_host", "error_response", "error_responses", "json_request_body", "json_response",
           "limited", "media_type", "parse_body", "read_body", "read_json", "request_id", "too_large",
           "unsupported_media"]

NO_STORE = {"Cache-Control": "no-store"}
JSON = "application/json"

M = TypeVar("M", bound=BaseModel)

class ErrorBody(BaseModel):
    """Every error of the JSON APIs (as OAuth 2.0 errors are shaped)."""

    error: str
    error_description: str


class ApiError(Exception):
    """An HTTP error with an :class:`ErrorBody`."""

    def __init__(self, status: int, error: str, description: str,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        return error_response(self.status, self.error, self.description, self.headers)


def error_response(status: int, error: str, description: str,
                   headers: Mapping[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description, **extra},
                        status_code=status, headers={**NO_STORE, **(headers or {})})


def _describe(errors: Sequence[Any]) -> str:
    """One line naming each parameter FastAPI refused: ``query parameter limit: …``."""
    parts = []
    for err in errors[:5]:
        loc = [str(p) for p in err.get("loc", ())]
        where = f"{loc[0]} parameter {'.'.join(loc[1:])}" if len(loc) > 1 else ".".join(loc)
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


class JsonApiRoute(APIRoute):
    """A route of the JSON APIs: a parameter that does not fit its declared type answers 422
    in the APIs' error shape (``error``, ``error_description`` naming the parameter) plus
    FastAPI's ``detail`` list; an :class:`ApiError` raised anywhere becomes its response. A
    dependency may set ``request.state.api_refusal(status, error, description)`` to be told of
    a 422 (the auditor API records it)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                errors = exc.errors()
                detail = jsonable_encoder([{k: e[k] for k in ("loc", "msg", "type") if k in e}
                                           for e in errors])
                description = _describe(errors)
                hook = getattr(request.state, "api_refusal", None)
                if hook is not None:  # a route that records refusals (the auditor API)
                    await run_in_threadpool(hook, 422, "invalid_request", description)
                return error_response(422, "invalid_request", description, detail=detail)
            except ApiError as exc:
                return exc.response()

        return route


def error_responses(*statuses: int, described: Mapping[int, str] | None = None
                    ) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the given error statuses. ``described`` overrides the generic
    descriptions with a router's own (statuses it names that are not asked for are left out,
    so a router can keep one table for all its routes)."""
    what = {400: "Malformed request", 401: "No token, or the token is not valid",
            403: "The token lacks the role", 404: "Not found",
            409: "The stored log does not match its checkpoints (run kyso audit verify)",
            413: "Body larger than the limit", 415: "Unsupported Content-Type",
            422: "Not a PDF (empty, no %PDF- header, truncated) or a parameter of the wrong type",
            503: "Not available on this node (no CA / trust anchor)", **(described or {})}
    return {s: {"model": ErrorBody, "description": what[s]} for s in statuses}


def json_request_body(model: type[BaseModel], *, required: bool = True) -> dict[str, Any]:
    """``openapi_extra`` documenting a JSON request body of ``model`` (for a route that reads
    its body itself, with :func:`read_body`)."""
    return {"requestBody": {"required": required, "content": {
        JSON: {"schema": model.model_json_schema()}}}}


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None
                  ) -> JSONResponse:
    """A JSON answer that no cache keeps."""
    return JSONResponse(body, status_code=status, headers={**NO_STORE, **(headers or {})})


# --- reading a body -------------------------------------------------------------------------


def media_type(request: Request) -> str:
    """The request's Content-Type without parameters, lower case ("" when there is none)."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def unsupported_media(media: str, allowed: str) -> ApiError:
    """415 naming the Content-Type received (``media``) and what to ``send`` instead."""
    got = f"Content-Type {media[:80]!r}" if media else "no Content-Type"
    return ApiError(415, "unsupported_media_type", f"{got}: send {allowed}")


def _size(limit: int) -> str:
    """`` (64 KiB)``, `` (50 MiB)``; nothing below 1 KiB."""
    if limit >= 2**20:
        return f" ({limit / 2**20:g} MiB)"
    return f" ({limit / 1024:g} KiB)" if limit >= 1024 else ""


def too_large(limit: int, what: str = "the body") -> ApiError:
    """413: ``what`` is larger than ``limit`` bytes."""
    return ApiError(413, "payload_too_large",
                    f"{what} is larger than the limit of {limit} bytes{_size(limit)}")


def check_declared(request: Request, limit: int) -> None:
    """Refuse from the headers, before reading anything: a Content-Length that is not a number
    (400) or larger than ``limit`` (413)."""
    declared = request.headers.get("content-length")
    if declared is None:
        return
    if not (declared.isascii() and declared.isdigit()):
        raise ApiError(400, "invalid_request", "Content-Length is not a number")
    if int(declared) > limit:
        raise too_large(limit)


async def limited(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    """The body's chunks; 413 as soon as more than ``limit`` bytes came (whatever
    Content-Length said)."""
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            raise too_large(limit)
        yield chunk


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, at most ``limit`` bytes (:func:`check_declared`, then :func:`limited`)."""
    check_declared(request, limit)
    chunks = [chunk async for chunk in limited(request, limit)]
    return b"".join(chunks)  # one allocation and one copy (a growing bytearray copies more)


def parse_body(model: type[M], data: bytes) -> M:
    """A JSON body as ``model``: 400 if it is not JSON, 422 naming each field that does not fit
    (raised as :class:`RequestValidationError`, so :class:`JsonApiRoute` answers it in the shape
    of a parameter of the wrong type)."""
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        broken = next((e for e in errors if e["type"] == "json_invalid"), None)
        if broken is not None:
            raise ApiError(400, "invalid_request",
                           "the body is not valid JSON: "
                           + broken["msg"].removeprefix("Invalid JSON: ")) from None
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]
                                     ) from None


async def read_json(request: Request, model: type[M], limit: int) -> M:
    """A JSON body of at most ``limit`` bytes as ``model``: 415 unless the Content-Type is
    application/json (before reading), then :func:`read_body` and :func:`parse_body`."""
    media = media_type(request)
    if media != JSON:
        raise unsupported_media(media, JSON)
    return parse_body(model, await read_body(request, limit))


def request_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


def client_host(request: Request) -> str:
    return request.client.host if request.client else ""
