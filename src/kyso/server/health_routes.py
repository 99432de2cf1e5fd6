"""Liveness and readiness, for load balancers and orchestrators.

``GET /health`` says the process answers (no dependency is touched). ``GET /ready`` says this
node can serve: the database answers a query and the audit log's directory is writable; a
node that is not ready answers 503 and names the failed check, so a load balancer takes it out
of rotation without the node having to die.
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from kyso.context import Kyso
from kyso.server.options import AppOptions

router = APIRouter(tags=["health"])
_NO_STORE = {"Cache-Control": "no-store"}


def setup(app: FastAPI, options: AppOptions) -> None:
    """Nothing to prepare: the checks read ``app.state.kyso``."""


@router.get("/health", summary="Liveness: the process answers")
async def health() -> JSONResponse:
    return JSONResponse({"status": "ok"}, headers=_NO_STORE)


def _checks(kyso: Kyso) -> dict[str, str]:
    checks: dict[str, str] = {}
    try:
        with kyso.store.read() as conn:
            conn.execute(sa.text("SELECT 1")).scalar()
        checks["database"] = "ok"
    except Exception as exc:  # any failure means "not ready"; the type is enough to act on
        checks["database"] = f"failed: {type(exc).__name__}"
    audit_dir = kyso.settings.audit_dir
    # a new home has no audit/ yet: the first event creates it in the home
    usable = audit_dir if audit_dir.exists() else audit_dir.parent
    checks["audit_log"] = ("ok" if usable.is_dir() and os.access(usable, os.W_OK | os.X_OK)
                           else f"failed: {audit_dir.name}/ is not a writable directory")
    return checks


@router.get("/ready", summary="Readiness: the database answers and the audit log is writable",
            responses={503: {"description": "A dependency failed; the body names it"}})
async def ready(request: Request) -> JSONResponse:
    checks = await run_in_threadpool(_checks, request.app.state.kyso)
    ok = all(value == "ok" for value in checks.values())
    return JSONResponse({"status": "ready" if ok else "not-ready", "checks": checks},
                        status_code=200 if ok else 503, headers=_NO_STORE)
