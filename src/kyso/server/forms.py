"""Reading request parameters without surprises: every value of every name is kept (so a
repeated parameter is seen and refused), sizes are bounded, and only
``application/x-www-form-urlencoded`` bodies are form bodies."""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import Request

from kyso.errors import KysoError

MAX_QUERY = 8 * 1024
MAX_FORM = 64 * 1024
MAX_FIELDS = 64
FORM_TYPE = "application/x-www-form-urlencoded"

Params = dict[str, list[str]]


class BadRequestError(KysoError):
    """The request cannot be read as parameters (size, content type, encoding)."""


def _parse(text: str) -> Params:
    try:
        return parse_qs(text, keep_blank_values=True, max_num_fields=MAX_FIELDS,
                        errors="strict")
    except UnicodeDecodeError:
        raise BadRequestError("parameters are not UTF-8") from None
    except ValueError:
        raise BadRequestError(f"too many parameters (at most {MAX_FIELDS})") from None


def query_params(request: Request) -> Params:
    raw: bytes = request.scope.get("query_string", b"")
    if len(raw) > MAX_QUERY:
        raise BadRequestError(f"the query string is longer than {MAX_QUERY} bytes")
    try:
        return _parse(raw.decode("ascii"))
    except UnicodeDecodeError:
        raise BadRequestError("the query string is not ASCII (percent-encode it)") from None


async def form_params(request: Request, *, limit: int = MAX_FORM) -> Params:
    """The parameters of a form-encoded body (BadRequestError otherwise)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != FORM_TYPE:
        raise BadRequestError(f"the body must be {FORM_TYPE}")
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise BadRequestError(f"the body is larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise BadRequestError(f"the body is larger than {limit} bytes")
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise BadRequestError("a form body must be ASCII (percent-encoded)") from None
    return _parse(text)
