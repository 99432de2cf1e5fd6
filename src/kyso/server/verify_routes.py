"""The PDF verification API: ``POST /api/v1/verify`` and ``/api/v1/verify/batch``."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from kyso.server.options import AppOptions

router = APIRouter()


def setup(app: FastAPI, options: AppOptions) -> None:
    """TODO(issue 6): being built in this session."""
