"""``create_app(settings)``: the kyso HTTP service. One :class:`~kyso.context.Kyso` context per
app; one router per domain, each in its own module with a ``router`` and a
``setup(app, options)`` that prepares what its routes need on ``app.state``:

- :mod:`~kyso.server.oidc_routes`: the e-ID's OpenID Connect provider;
- :mod:`~kyso.server.pki_routes`: OCSP responders, CRL and CA certificate distribution, TSA;
- :mod:`~kyso.server.verify_routes`: the PDF verification API;
- :mod:`~kyso.server.audit_routes`: the auditor's read API;
- :mod:`~kyso.server.ca_routes`: CA administration (issue, show, revoke, hold, release);
- :mod:`~kyso.server.csc_routes`: the citizen remote-signing gateway (CSC API, enrolment);
- :mod:`~kyso.server.health_routes`: liveness and readiness.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from kyso import __version__
from kyso.authn.key_ring import KeyRing
from kyso.authn.key_store import KEYSET_FILE, create_key_set
from kyso.authn.keys import KeySet
from kyso.authn.login import LoginService
from kyso.authn.oidc import Provider
from kyso.authn.otp import SmsOutbox
from kyso.clock import Clock
from kyso.config import ENV_TOKEN_KEY_PASSPHRASE, Settings, check_new_passphrase, passphrase_from_env
from kyso.context import Kyso, open_kyso
from kyso.errors import ConfigError
from kyso.server import (
    audit_routes,
    ca_routes,
    csc_routes,
    health_routes,
    oidc_routes,
    pki_routes,
    verify_routes,
)
from kyso.server.middleware import RequestContextMiddleware
from kyso.server.options import DEFAULT_ISSUER, DEFAULT_MAX_PDF_BYTES, AppOptions

__all__ = ["DEFAULT_ISSUER", "AppOptions", "create_app", "load_or_create_keys"]

# A request is matched against the routes in this order, one by one (~3 µs each): the routes
# relying parties and load balancers call all day (OCSP, CRL, TSA, verify, health) come first.
_DOMAINS = (pki_routes, verify_routes, health_routes, oidc_routes, audit_routes, ca_routes,
            csc_routes)


def load_or_create_keys(settings: Settings, clock: Clock, passphrase: str) -> KeyRing:
    """The home's token key set, created (and saved encrypted) on first use, and watched: a
    rotation on disk (``kyso id keys rotate``, another node) is picked up without a restart."""
    directory = settings.token_keys_dir
    if not (directory / KEYSET_FILE).exists():
        check_new_passphrase(passphrase, "token key passphrase")
        create_key_set(directory, passphrase, clock, iterations=settings.key_kdf_iterations)
    return KeyRing.open(directory, passphrase, clock)


def create_app(settings: Settings, *, clock: Clock | None = None, kyso: Kyso | None = None,
               outbox: SmsOutbox | None = None, key_passphrase: str | None = None,
               issuer: str | None = None, keys: KeySet | None = None,
               ca_passphrase: str | None = None,
               max_pdf_bytes: int = DEFAULT_MAX_PDF_BYTES) -> FastAPI:
    """The FastAPI application. ``kyso`` (else opened here and closed at shutdown) gives the
    store, clock and audit log; the token keys come from ``keys`` or the home, unlocked with
    ``key_passphrase`` (else ``$KYSO_TOKEN_KEY_PASSPHRASE``); ``ca_passphrase`` unlocks the
    OCSP responders and the TSA."""
    options = AppOptions(issuer=issuer or DEFAULT_ISSUER, ca_passphrase=ca_passphrase,
                         max_pdf_bytes=max_pdf_bytes)
    owned = kyso is None
    context = kyso if kyso is not None else open_kyso(settings, clock=clock, actor="server",
                                                      source="server")
    try:
        ring: KeySet | KeyRing | None = keys
        if ring is None:
            passphrase = key_passphrase or passphrase_from_env(ENV_TOKEN_KEY_PASSPHRASE)
            if not passphrase:
                raise ConfigError(f"the token key passphrase is needed: set "
                                  f"{ENV_TOKEN_KEY_PASSPHRASE} or give --key-passphrase-file")
            ring = load_or_create_keys(settings, context.clock, passphrase)
        provider = Provider(context, ring, options.issuer,
                            login=LoginService(context, outbox=outbox))
    except BaseException:
        if owned:
            context.close()
        raise

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if owned:
            context.close()

    app = FastAPI(title="kyso", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url="/openapi.json", lifespan=lifespan,
                  description="OCSP, CRL and CA certificates, RFC 3161 timestamps, PDF "
                              "verification, the e-ID's OpenID Connect provider and the "
                              "auditor's read API. See docs/api.md.")
    app.state.kyso = context
    app.state.provider = provider
    app.state.options = options
    try:
        for domain in _DOMAINS:
            domain.setup(app, options)
            app.include_router(domain.router)
    except BaseException:
        if owned:
            context.close()
        raise
    app.add_middleware(RequestContextMiddleware)
    return app
