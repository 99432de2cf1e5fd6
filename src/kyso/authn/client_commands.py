"""``kyso id client add|list``: OpenID Connect relying parties of the e-ID provider (parse, one
library call, render). A confidential client's secret is printed once; only its argon2id hash
is stored."""

from __future__ import annotations

import click

from kyso.audit import Layer, Outcome
from kyso.authn.oidc_clients import DEFAULT_SCOPES, Client, ClientRegistry
from kyso.authn.passwords import PasswordHasher, hash_params
from kyso.cliutil import App, emit_fields, emit_json, emit_table, pass_app
from kyso.context import Kyso
from kyso.errors import KysoError


def add_to(id_group: click.Group, token_group: click.Group) -> None:
    del token_group  # relying-party token checks live elsewhere
    id_group.add_command(client)


@click.group("client")
def client() -> None:
    """OpenID Connect clients (relying parties): registered with exact redirect URIs."""


def _registry(kyso: Kyso) -> ClientRegistry:
    return ClientRegistry(kyso.store, kyso.clock,
                          PasswordHasher(hash_params(kyso.settings.authn.password_hash)))


@client.command("add", epilog="""\b
Examples:
  kyso id client add --client-id dichvucong --name "Cổng dịch vụ công tỉnh" \\
      --redirect-uri https://dichvucong.thainguyen.gov.vn/oidc/callback --confidential
  kyso id client add --client-id app-dev --name "Dev" --redirect-uri http://127.0.0.1:9000/cb

\b
Redirect URIs are compared as exact strings: register every one the client uses (https, or
http on 127.0.0.1 / [::1] / localhost only; no fragment). --confidential prints the client
secret once: store it in the client's configuration, kyso keeps only its hash.""")
@click.option("--client-id", required=True, help="The client_id (letters, digits, . _ : -).")
@click.option("--name", required=True, help="Name shown on the login page.")
@click.option("--redirect-uri", "redirect_uris", multiple=True, required=True,
              help="A redirect URI (repeatable).")
@click.option("--post-logout-redirect-uri", "logout_uris", multiple=True,
              help="Where the client may send users after logout (repeatable).")
@click.option("--audience", "audiences", multiple=True,
              help="An API its access tokens are for (repeatable; default: the client id).")
@click.option("--scope", "scopes", default=DEFAULT_SCOPES, show_default=True,
              help="Allowed scopes: openid plus profile, phone, email.")
@click.option("--confidential", is_flag=True,
              help="A server-side client with a secret (else a public client: PKCE only).")
@pass_app
def client_add(app: App, client_id: str, name: str, redirect_uris: tuple[str, ...],
               logout_uris: tuple[str, ...], audiences: tuple[str, ...], scopes: str,
               confidential: bool) -> None:
    """Register an OpenID Connect client."""
    kyso = app.open(create=True)
    try:
        new = _registry(kyso).add(client_id, name, list(redirect_uris),
                                  post_logout_redirect_uris=list(logout_uris),
                                  audiences=list(audiences) or None, scopes=scopes,
                                  confidential=confidential)
    except KysoError as exc:
        kyso.record(Layer.AUTHN, "CLIENT_REGISTER_ERROR", Outcome.FAILURE,
                    object=client_id[:64], reason=str(exc))
        raise
    kyso.record(Layer.AUTHN, "CLIENT_REGISTER", Outcome.SUCCESS, object=new.client.client_id,
                type="confidential" if confidential else "public",
                redirect_uris=list(new.client.redirect_uris))
    if app.json:
        emit_json(new.to_dict())
        return
    _fields(new.client, "Client registered")
    if new.secret is not None:
        click.echo(f"\nclient secret (shown once, store it now): {new.secret}")


def _fields(c: Client, title: str) -> None:
    emit_fields([("client_id", c.client_id), ("name", c.name),
                 ("type", "confidential" if c.confidential else "public"),
                 ("redirect_uris", " ".join(c.redirect_uris)),
                 ("post_logout", " ".join(c.post_logout_redirect_uris)),
                 ("scopes", " ".join(c.scopes)), ("audiences", " ".join(c.audiences)),
                 ("status", c.status.value)], title=title)


@client.command("list", epilog="""\b
Examples:
  kyso id client list
  kyso id client list --format json""")
@pass_app
def client_list(app: App) -> None:
    """List the registered OpenID Connect clients."""
    clients = _registry(app.kyso).list()
    if app.json:
        emit_json([c.to_dict() for c in clients])
        return
    emit_table(["client_id", "name", "type", "redirect URIs", "status"],
               [[c.client_id, c.name, "confidential" if c.confidential else "public",
                 "\n".join(c.redirect_uris), c.status.value] for c in clients])
