"""``kyso serve``: run the HTTP service (the e-ID's OpenID Connect provider) with uvicorn."""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path
from urllib.parse import urlsplit

import click

from kyso.audit.logging import configure_logging
from kyso.cliutil import App, obtain_passphrase, pass_app
from kyso.config import ENV_TOKEN_KEY_PASSPHRASE
from kyso.errors import UsageError
from kyso.server.app import create_app


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


@click.command("serve", epilog="""\b
Examples:
  KYSO_TOKEN_KEY_PASSPHRASE=… kyso serve
  kyso serve --host 0.0.0.0 --port 8443 --issuer https://id.thainguyen.gov.vn \\
      --tls-cert server.crt.pem --tls-key server.key.pem --key-passphrase-file token.pass

\b
Endpoints: /.well-known/openid-configuration, /authorize, /token, /userinfo, /jwks, /logout,
/health. The token signing keys are created in <home>/secrets/token-keys on first start,
encrypted with the token key passphrase (--key-passphrase-file, else
$KYSO_TOKEN_KEY_PASSPHRASE, else a prompt). Session cookies are __Host- Secure cookies:
serve TLS (or run behind a TLS proxy) except on loopback.""")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@click.option("--issuer", help="The issuer URL (default: http(s)://HOST:PORT).")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="PEM certificate chain for HTTPS.")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="PEM private key for HTTPS.")
@click.option("--key-passphrase-file", type=click.Path(dir_okay=False, path_type=Path),
              help=f"File whose first line unlocks the token keys (else "
                   f"${ENV_TOKEN_KEY_PASSPHRASE}).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True)
@pass_app
def serve(app: App, host: str, port: int, issuer: str | None, tls_cert: Path | None,
          tls_key: Path | None, key_passphrase_file: Path | None, log_level: str) -> None:
    """Run the e-ID's OpenID Connect provider over HTTP(S)."""
    import uvicorn  # only this command needs it

    if (tls_cert is None) != (tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    scheme = "https" if tls_cert else "http"
    issuer_url = _issuer(issuer) if issuer else f"{scheme}://{_host_in_url(host)}:{port}"
    passphrase = obtain_passphrase(key_passphrase_file, ENV_TOKEN_KEY_PASSPHRASE,
                                   "token key passphrase")
    configure_logging(level=log_level, json=True, stream=sys.stderr)
    application = create_app(app.settings, key_passphrase=passphrase, issuer=issuer_url)
    click.echo(f"kyso serving {issuer_url} (issuer) on {scheme}://{_host_in_url(host)}:{port}",
               err=True)
    uvicorn.run(application, host=host, port=port, log_config=None, access_log=False,
                ssl_certfile=str(tls_cert) if tls_cert else None,
                ssl_keyfile=str(tls_key) if tls_key else None, server_header=False)
