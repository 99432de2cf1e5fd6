"""``create_app(settings)``: the kyso HTTP service. One :class:`~kyso.context.Kyso` context per
app; one router per domain (today the OpenID Connect provider; OCSP, TSA and verification
routers are added the same way with ``app.include_router``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from kyso.authn.keys import KEYSET_FILE, KeySet, load_key_set, save_key_set
from kyso.authn.login import LoginService
from kyso.authn.oidc import Provider
from kyso.authn.otp import SmsOutbox
from kyso.clock import Clock
from kyso.config import ENV_TOKEN_KEY_PASSPHRASE, Settings, check_new_passphrase, passphrase_from_env
from kyso.context import Kyso, open_kyso
from kyso.errors import ConfigError
from kyso.server import oidc_routes
from kyso.server.middleware import RequestContextMiddleware

__all__ = ["DEFAULT_ISSUER", "create_app", "load_or_create_keys"]

DEFAULT_ISSUER = "http://127.0.0.1:8080"


def load_or_create_keys(settings: Settings, clock: Clock, passphrase: str) -> KeySet:
    """The home's token key set; created (and saved encrypted) on first use."""
    directory = settings.token_keys_dir
    if (directory / KEYSET_FILE).exists():
        return load_key_set(directory, passphrase)
    check_new_passphrase(passphrase, "token key passphrase")
    keys = KeySet.create(clock)
    save_key_set(directory, keys, passphrase, iterations=settings.key_kdf_iterations)
    return keys


def create_app(settings: Settings, *, clock: Clock | None = None, kyso: Kyso | None = None,
               outbox: SmsOutbox | None = None, key_passphrase: str | None = None,
               issuer: str | None = None, keys: KeySet | None = None) -> FastAPI:
    """The FastAPI application. ``kyso`` (else opened here and closed at shutdown) gives the
    store, clock and audit log; the token keys come from ``keys`` or the home, unlocked with
    ``key_passphrase`` (else ``$KYSO_TOKEN_KEY_PASSPHRASE``)."""
    owned = kyso is None
    context = kyso if kyso is not None else open_kyso(settings, clock=clock, actor="server",
                                                      source="server")
    try:
        if keys is None:
            passphrase = key_passphrase or passphrase_from_env(ENV_TOKEN_KEY_PASSPHRASE)
            if not passphrase:
                raise ConfigError(f"the token key passphrase is needed: set "
                                  f"{ENV_TOKEN_KEY_PASSPHRASE} or give --key-passphrase-file")
            keys = load_or_create_keys(settings, context.clock, passphrase)
        provider = Provider(context, keys, issuer or DEFAULT_ISSUER,
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

    app = FastAPI(title="kyso", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.kyso = context
    app.state.provider = provider
    app.include_router(oidc_routes.router)

    @app.get("/health")
    async def health() -> JSONResponse:
        return JSONResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})

    app.add_middleware(RequestContextMiddleware)
    return app
