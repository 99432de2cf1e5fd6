"""``kyso serve``: run the HTTP service with uvicorn — one process, or ``--workers N`` processes
sharing the port (each builds its app in :mod:`kyso.server.factory`)."""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

import click

from kyso.audit.logging import configure_logging
from kyso.cliutil import App, obtain_passphrase, pass_app
from kyso.config import (
    ENV_CA_PASSPHRASE,
    ENV_DATABASE_URL,
    ENV_HOME,
    ENV_TOKEN_KEY_PASSPHRASE,
    passphrase_from_env,
    read_passphrase_file,
)
from kyso.errors import KysoError, UsageError
from kyso.server.options import DEFAULT_MAX_PDF_BYTES

TLS_DIR = "tls"


def register(root: click.Group) -> None:
    root.add_command(serve)


def _host_in_url(host: str) -> str:
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        return host


def _issuer(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.query or parts.fragment:
        raise UsageError("--issuer must be an absolute http(s) URL without query or fragment")
    return value.rstrip("/")


def _tls_files(app: App, tls: bool, cert: Path | None, key: Path | None
               ) -> tuple[Path, Path] | None:
    """(certificate, key) when serving HTTPS: the given files, else ``<home>/tls/server.crt.pem``
    and ``server.key.pem`` with ``--tls``."""
    if (cert is None) != (key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    if cert is not None and key is not None:
        return cert, key
    if not tls:
        return None
    folder = app.settings.home / TLS_DIR
    cert, key = folder / "server.crt.pem", folder / "server.key.pem"
    for path in (cert, key):
        if not path.is_file():
            raise UsageError(f"--tls: {path} is missing; put the server certificate chain and "
                             "key there, or give --tls-cert and --tls-key")
    return cert, key


def _ca_passphrase(file: Path | None) -> str | None:
    """The CA passphrase for the OCSP responders, the TSA, the CA administration API and the
    signing gateway: from the file or the environment only (a service does not prompt); None
    turns those routes off."""
    if file is not None:
        return read_passphrase_file(file)
    return passphrase_from_env(ENV_CA_PASSPHRASE)


@click.command("serve", epilog="""\b
Examples:
  KYSO_TOKEN_KEY_PASSPHRASE=… KYSO_CA_PASSPHRASE=… kyso serve
  kyso serve --workers 2 --tls --issuer https://id.thainguyen.gov.vn \\
      --key-passphrase-file token.pass --ca-passphrase-file ca.pass
  kyso serve --host 0.0.0.0 --port 8443 --tls-cert server.crt.pem --tls-key server.key.pem

\b
Endpoints (docs/api.md; OpenAPI at /openapi.json):
  OCSP      GET|POST /ocsp/<ca>        CRL /crl/<ca>.crl    CA certificates /crt/<ca>.crt
  TSA       POST /tsa (RFC 3161)
  verify    POST /api/v1/verify, /api/v1/verify/batch
  audit     GET /api/v1/audit/… (access token with the auditor role)
  CA admin  POST /api/v1/certificates, …/{serial}/revoke|hold|release (the ca-admin role)
  signing   POST /csc/v2/info, credentials/list|info|authorize, signatures/signHash;
            POST /api/v1/signing/credentials (a citizen's fresh level-2 login)
  e-ID      /.well-known/openid-configuration, /authorize, /token, /userinfo, /jwks, /logout
  health    /health (alive), /ready (database and audit log usable)

\b
The token signing keys are created in <home>/secrets/token-keys on first start, encrypted with
the token key passphrase (--key-passphrase-file, else $KYSO_TOKEN_KEY_PASSPHRASE, else a
prompt). The CA passphrase (--ca-passphrase-file, else $KYSO_CA_PASSPHRASE; never prompted)
unlocks the OCSP responders, the TSA, the CA administration API and the signing gateway;
without it they answer 503. Session cookies are
__Host- Secure cookies: serve TLS (or run behind a TLS proxy) except on loopback. With
--workers N the passphrases reach the workers in their environment.""")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes sharing the port.")
@click.option("--issuer", help="The issuer URL (default: http(s)://HOST:PORT).")
@click.option("--tls", is_flag=True,
              help="Serve HTTPS with <home>/tls/server.crt.pem and server.key.pem.")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="PEM certificate chain for HTTPS (implies --tls).")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="PEM private key for HTTPS.")
@click.option("--key-passphrase-file", type=click.Path(dir_okay=False, path_type=Path),
              help=f"File whose first line unlocks the token keys (else "
                   f"${ENV_TOKEN_KEY_PASSPHRASE}).")
@click.option("--ca-passphrase-file", type=click.Path(dir_okay=False, path_type=Path),
              help=f"File whose first line unlocks the CA keys: OCSP, TSA, CA API, gateway (else "
                   f"${ENV_CA_PASSPHRASE}).")
@click.option("--max-pdf-mb", type=click.IntRange(1, 1024), default=DEFAULT_MAX_PDF_BYTES // 2**20,
              show_default=True, help="Largest PDF the verify API accepts.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True)
@pass_app
def serve(app: App, host: str, port: int, workers: int, issuer: str | None, tls: bool,
          tls_cert: Path | None, tls_key: Path | None, key_passphrase_file: Path | None,
          ca_passphrase_file: Path | None, max_pdf_mb: int, log_level: str) -> None:
    """Run the HTTP service: OCSP, CRL, TSA, verify, CA and auditor APIs, the signing gateway
    and the e-ID provider."""
    import uvicorn  # this command alone needs the server: other commands start faster

    from kyso.server.app import create_app
    from kyso.server.factory import ENV_ISSUER, ENV_LOG_LEVEL, ENV_MAX_PDF_BYTES
    from kyso.server.workers import Workers, listening_sockets

    files = _tls_files(app, tls, tls_cert, tls_key)
    scheme = "https" if files else "http"
    issuer_url = _issuer(issuer) if issuer else f"{scheme}://{_host_in_url(host)}:{port}"
    passphrase = obtain_passphrase(key_passphrase_file, ENV_TOKEN_KEY_PASSPHRASE,
                                   "token key passphrase")
    ca_pass = _ca_passphrase(ca_passphrase_file)
    max_pdf_bytes = max_pdf_mb * 2**20
    configure_logging(level=log_level, json=True, stream=sys.stderr)
    if ca_pass is None:
        click.echo(f"kyso: no CA passphrase (--ca-passphrase-file or ${ENV_CA_PASSPHRASE}): "
                   "OCSP and TSA answer 503", err=True)
    ssl = {"ssl_certfile": str(files[0]), "ssl_keyfile": str(files[1])} if files else {}
    common = {"host": host, "port": port, "log_config": None, "access_log": False,
              "server_header": False, **ssl}
    if workers == 1:
        application = create_app(app.settings, key_passphrase=passphrase, issuer=issuer_url,
                                 ca_passphrase=ca_pass, max_pdf_bytes=max_pdf_bytes)
        click.echo(f"kyso serving {issuer_url} (issuer) on {scheme}://{_host_in_url(host)}:{port}",
                   err=True)
        uvicorn.run(application, **common)  # type: ignore[arg-type]
        return
    # Workers build their own app; check the configuration here first so that a wrong
    # passphrase is one clear error, not N crashing workers.
    create_app(app.settings, key_passphrase=passphrase, issuer=issuer_url,
               ca_passphrase=ca_pass, max_pdf_bytes=max_pdf_bytes).state.kyso.close()
    os.environ.update({ENV_HOME: str(app.settings.home),
                       ENV_DATABASE_URL: app.settings.database_url,
                       ENV_TOKEN_KEY_PASSPHRASE: passphrase, ENV_ISSUER: issuer_url,
                       ENV_MAX_PDF_BYTES: str(max_pdf_bytes), ENV_LOG_LEVEL: log_level})
    if ca_pass is not None:
        os.environ[ENV_CA_PASSPHRASE] = ca_pass
    sockets = listening_sockets(host, port, workers)  # one per worker: balanced connections
    click.echo(f"kyso serving {issuer_url} (issuer) on {scheme}://{_host_in_url(host)}:{port} "
               f"with {workers} workers", err=True)
    config = uvicorn.Config("kyso.server.factory:worker_app", factory=True, workers=workers,
                            **common)  # type: ignore[arg-type]

    def ready() -> None:
        click.echo(f"kyso: all {workers} workers are ready", err=True)

    if not Workers(config, sockets).run(on_ready=ready):
        raise KysoError("a worker failed while starting; see the log above")
