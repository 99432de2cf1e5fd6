"""What the JSON APIs (verify, audit, CA administration, signing gateway) share: the error
body (:class:`ErrorBody`, shaped as OAuth 2.0 errors), :class:`ApiError`, :class:`JsonApiRoute`
(a parameter of the wrong type answers 422 in the same shape) and request helpers."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

__all__ = ["NO_STORE", "ApiError", "ErrorBody", "JsonApiRoute", "client_host", "error_response",
           "error_responses", "request_id"]

NO_STORE = {"Cache-Control": "no-store"}



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


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the given error statuses."""
    what = {400: "Malformed request", 401: "No token, or the token is not valid",
            403: "The token lacks the role", 404: "Not found",
            409: "The stored log does not match its checkpoints (run kyso audit verify)",
            413: "Body larger than the limit", 415: "Unsupported Content-Type",
            422: "Not a PDF (empty, no %PDF- header, truncated) or a parameter of the wrong type",
            503: "Not available on this node (no CA / trust anchor)"}
    return {s: {"model": ErrorBody, "description": what[s]} for s in statuses}


def request_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


def client_host(request: Request) -> str:
    return request.client.host if request.client else ""
