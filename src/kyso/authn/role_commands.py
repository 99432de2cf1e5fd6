"""``kyso id role grant|revoke|list``: the roles of e-ID accounts (parse, one library call,
render). Access tokens carry the roles held when they are minted."""

from __future__ import annotations

import click

from kyso.authn.roles import Role, RoleChange, Roles
from kyso.cliutil import App, emit_json, emit_table, pass_app
from kyso.clock import vn_iso


def add_to(id_group: click.Group, token_group: click.Group) -> None:
    del token_group  # roles are granted here; relying parties read them from tokens
    id_group.add_command(role)


@click.group("role")
def role() -> None:
    """Roles of e-ID accounts: auditor (reads the auditor API of `kyso serve`), ca-admin.
    Access tokens carry them as `roles` and `realm_access.roles`."""


id_option = click.option("--id", "id_number", required=True, metavar="ID_NUMBER",
                         help="The holder's 12-digit personal ID number.")
role_option = click.option("--role", "role_name", required=True,
                           type=click.Choice([r.value for r in Role]), help="The role.")


def _render(app: App, change: RoleChange) -> None:
    if app.json:
        emit_json(change.to_dict())
        return
    who, name = change.identity.masked_id, change.role.value
    if change.granted:
        click.echo(f"granted {name} to {who}" if change.changed
                   else f"{who} already holds {name}; nothing changed")
    else:
        click.echo(f"revoked {name} from {who}" if change.changed
                   else f"{who} does not hold {name}; nothing changed")
    click.echo(f"roles of {who}: {', '.join(change.roles) or 'none'}")


@role.command("grant", epilog="""\b
Examples:
  kyso id role grant --id 033301000123 --role auditor
  kyso id role grant --id 033301000123 --role auditor --format json

\b
Granting a role the account holds changes nothing (exit 0). Tokens minted from now on carry
the role; the auditor API also needs a level-2 login through a client registered with
--audience kyso-api (see `kyso id client add`).""")
@id_option
@role_option
@pass_app
def role_grant(app: App, id_number: str, role_name: str) -> None:
    """Grant a role to an e-ID account."""
    _render(app, Roles(app.kyso).grant(id_number, role_name))


@role.command("revoke", epilog="""\b
Examples:
  kyso id role revoke --id 033301000123 --role auditor

\b
Revoking a role the account does not hold changes nothing (exit 0). The auditor API refuses
the account's tokens at once, even those minted before the revocation.""")
@id_option
@role_option
@pass_app
def role_revoke(app: App, id_number: str, role_name: str) -> None:
    """Revoke a role from an e-ID account."""
    _render(app, Roles(app.kyso).revoke(id_number, role_name))


@role.command("list", epilog="""\b
Examples:
  kyso id role list
  kyso id role list --id 033301000123 --format json""")
@click.option("--id", "id_number", metavar="ID_NUMBER",
              help="Only the roles of this account (12-digit personal ID number).")
@pass_app
def role_list(app: App, id_number: str | None) -> None:
    """List the roles held, by account (masked ID number)."""
    grants = Roles(app.kyso).list(id_number)
    if app.json:
        emit_json([g.to_dict() for g in grants])
        return
    if not grants:
        click.echo("no roles granted" + (" to that account" if id_number else ""))
        return
    emit_table(["ID number", "subject", "role", "granted by", "granted at (+07:00)"],
               [[g.id_hint, g.subject, g.role, g.granted_by, vn_iso(g.granted_at)]
                for g in grants], title=f"{len(grants)} role(s)")
