"""The auditor's read API (``/api/v1/audit/…``), for tokens with the auditor role."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from kyso.server.options import AppOptions

router = APIRouter()


def setup(app: FastAPI, options: AppOptions) -> None:
    """TODO(issue 6): being built in this session."""
