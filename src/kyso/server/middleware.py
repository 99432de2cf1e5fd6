"""The outermost layer of every request: a request id, one structured access-log line (with the
worker's process id), security
headers, and the catch-all that turns any unexpected exception into a ``server_error``
response — the type is logged, never a traceback, a message or a local variable."""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_API_PREFIXES = ("/device/", "/token", "/introspect", "/userinfo", "/jwks", "/.well-known/",
                 "/ocsp/", "/crl/", "/crt/", "/tsa", "/api/", "/csc/", "/health", "/ready",
                 "/openapi.json")
_COMMON_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else ""


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.log = structlog.get_logger("kyso.server")
        self.pid = os.getpid()  # which worker of `kyso serve --workers N` answered

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = str(uuid.uuid4())
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = {"code": 0, "sent": False}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["sent"] = True
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode("ascii")))
                headers.extend(_COMMON_HEADERS)
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:  # the catch-all: nothing leaks, everything is answered
            self.log.error("unhandled_exception", request_id=request_id,
                           error_type=type(exc).__name__, path=scope.get("path", ""))
            if not status["sent"]:
                await self._server_error(scope, send_wrapper)
        finally:
            self.log.info("request", request_id=request_id, method=scope.get("method", ""),
                          path=scope.get("path", ""), status=status["code"] or 500,
                          duration_ms=round((time.perf_counter() - started) * 1000, 1),
                          client=_client(scope), pid=self.pid)

    @staticmethod
    async def _server_error(scope: Scope, send: Any) -> None:
        path = str(scope.get("path", ""))
        if path.startswith(_API_PREFIXES):
            body = json.dumps({"error": "server_error",
                               "error_description": "internal error"}).encode()
            ctype = b"application/json"
        else:
            body = ("<!doctype html><meta charset=utf-8><title>Lỗi hệ thống</title>"
                    "<p>Lỗi hệ thống. Vui lòng thử lại sau. (server_error)</p>"
                    "<p>Internal error. Please try again later.</p>").encode()
            ctype = b"text/html; charset=utf-8"
        await send({"type": "http.response.start", "status": 500,
                    "headers": [(b"content-type", ctype), (b"cache-control", b"no-store"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
