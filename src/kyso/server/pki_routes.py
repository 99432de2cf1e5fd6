"""OCSP responders (RFC 6960), CRL and CA certificate distribution, RFC 3161 TSA."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from kyso.server.options import AppOptions

router = APIRouter()


def setup(app: FastAPI, options: AppOptions) -> None:
    """TODO(issue 6): being built in this session."""
