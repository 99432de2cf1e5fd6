"""``kyso id otp-setup | otp-confirm | password set | sms-outbox``: parse, one library call,
render."""

from __future__ import annotations

import io
from pathlib import Path

import click
import segno

from kyso.authn.login import LoginService
from kyso.authn.login_admin import LoginAdmin
from kyso.authn.registry import Identity, Registry
from kyso.cliutil import App, emit_fields, emit_json, obtain_passphrase, pass_app
from kyso.clock import vn_iso
from kyso.context import Kyso
from kyso.errors import AuthenticationFailedError, AuthnError, UsageError

ENV_EID_PASSWORD = "KYSO_EID_PASSWORD"  # noqa: S105 - the variable's name


def add_to(id_group: click.Group, token_group: click.Group) -> None:
    id_group.add_command(otp_setup)
    id_group.add_command(otp_confirm)
    id_group.add_command(sms_outbox)
    existing = id_group.commands.get("password")
    if isinstance(existing, click.Group):
        existing.add_command(password_set)
    else:
        id_group.add_command(password)


def _identity(kyso: Kyso, id_number: str) -> Identity:
    """The account of ``id_number``: a clear error (masked number) when malformed or unknown."""
    return Registry(kyso.store, kyso.clock).get(id_number.strip())


_ID_OPTION = click.option("--id", "id_number", required=True, help="12-digit personal ID number.")


@click.command("otp-setup", epilog="""\b
Examples:
  kyso id otp-setup --id 019090012345
  kyso id otp-setup --id 019090012345 --format json

\b
Prints the otpauth:// URI and its QR code for an authenticator app (6 digits, 30 s, SHA-1).
The credential stays pending until `kyso id otp-confirm` checks a first code; running
otp-setup again replaces a pending one. The label shows the masked ID number only.""")
@_ID_OPTION
@pass_app
def otp_setup(app: App, id_number: str) -> None:
    """Start a TOTP enrolment: URI and QR code for the authenticator app."""
    kyso = app.kyso
    identity = _identity(kyso, id_number)
    enrolment = LoginService(kyso).credentials.begin_totp(identity.subject)
    if app.json:
        emit_json(enrolment.to_dict())
        return
    qr = io.StringIO()
    segno.make(enrolment.provisioning_uri).terminal(out=qr, compact=True)
    click.echo(qr.getvalue(), nl=False)
    emit_fields([("account", identity.masked_id), ("credential", enrolment.credential_id),
                 ("uri", enrolment.provisioning_uri), ("secret", enrolment.secret)],
                title="TOTP enrolment (pending)")
    click.echo("next: kyso id otp-confirm --id <ID number> --code <6 digits from the app>")


@click.command("otp-confirm", epilog="""\b
Examples:
  kyso id otp-confirm --id 019090012345 --code 492039
  kyso id otp-confirm --id 019090012345 --credential otp-AbC... --code 492039 --format json

\b
The first valid code activates the pending credential and retires the previous active one;
that code can never be used again to log in.""")
@_ID_OPTION
@click.option("--code", required=True, help="The 6-digit code the authenticator app shows.")
@click.option("--credential", "credential_id", default=None,
              help="Credential id printed by otp-setup (default: the account's pending one).")
@pass_app
def otp_confirm(app: App, id_number: str, code: str, credential_id: str | None) -> None:
    """Activate a pending TOTP enrolment with its first code."""
    kyso = app.kyso
    identity = _identity(kyso, id_number)
    service = LoginService(kyso)
    if credential_id is None:
        pending = [c for c in service.credentials.credentials(identity.subject)
                   if c.status.value == "pending"]
        if not pending:
            raise AuthnError(f"no pending TOTP enrolment for {identity.masked_id}: "
                             "run `kyso id otp-setup` first")
        credential_id = pending[-1].credential_id
    try:
        active = service.credentials.confirm_totp(identity.subject, credential_id, code,
                                                  service.totp)
    except AuthenticationFailedError:
        raise AuthnError("the code did not verify (wrong, not 6 ASCII digits, outside the "
                         "time window, or already used); check the phone's clock and try the "
                         "next code") from None
    if app.json:
        emit_json(active.to_dict())
        return
    emit_fields([("account", identity.masked_id), ("credential", active.credential_id),
                 ("status", active.status.value)], title="TOTP credential active")


@click.group("password")
def password() -> None:
    """Passwords of e-ID accounts."""


@password.command("set", epilog=f"""\b
Examples:
  kyso id password set --id 019090012345
  kyso id password set --id 019090012345 --password-file new-password.txt
  {ENV_EID_PASSWORD}=... kyso id password set --id 019090012345

\b
The password comes from --password-file (first line), ${ENV_EID_PASSWORD}, or a prompt with
confirmation — never from an argument. It must meet [authn] password_policy (nist-aal2 or
vneid-compat); the holder's ID number, name, birth date and phone are refused as parts.""")
@_ID_OPTION
@click.option("--password-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help=f"File whose first line is the new password (else ${ENV_EID_PASSWORD} or a "
                   "prompt).")
@pass_app
def password_set(app: App, id_number: str, password_file: Path | None) -> None:
    """Set the password of an e-ID account."""
    kyso = app.kyso
    identity = _identity(kyso, id_number)
    secret = obtain_passphrase(password_file, ENV_EID_PASSWORD, "New password", confirm=True)
    LoginService(kyso).set_password(identity.subject, secret)
    if app.json:
        emit_json({"subject": identity.subject, "id_number": identity.masked_id,
                   "password": "updated"})
        return
    click.echo(f"password updated for {identity.masked_id}")


@click.command("sms-outbox", epilog="""\b
Examples:
  kyso id sms-outbox --id 019090012345 --last
  kyso id sms-outbox --phone 0912345678 --format json
  kyso id sms-outbox

\b
SIMULATOR. kyso sends no real SMS: every login code sent by SMS is delivered to the outbox
in the home's database, which stands for the citizens' phones. This command reads those
phones back (for tests, the demo, a tester at the login page): each message with its phone
(masked), when it was sent, when its code expires, its state (current; replaced by a later
code; expired — a current code may already have been used) and the code. Every read is
recorded in the audit log (SMS_OUTBOX_READ, without the codes).""")
@click.option("--id", "id_number", default=None,
              help="Only the messages to this account's phone (12-digit personal ID number).")
@click.option("--phone", default=None,
              help="Only the messages to this Vietnamese mobile number (0912345678).")
@click.option("--last", is_flag=True, help="Only the latest message.")
@pass_app
def sms_outbox(app: App, id_number: str | None, phone: str | None, last: bool) -> None:
    """Read the simulated SMS outbox (a simulator's view: the codes are shown)."""
    if id_number is not None and phone is not None:
        raise UsageError("give --id or --phone, not both")
    messages = LoginAdmin(app.kyso).read_sms_outbox(
        id_number=id_number.strip() if id_number is not None else None, phone=phone, last=last)
    if app.json:
        emit_json([m.to_dict() for m in messages])
        return
    if not messages:
        click.echo("the simulated SMS outbox has no message" + (" to that phone"
                                                               if id_number or phone else ""))
        return
    click.echo(f"Simulated SMS outbox (simulator: no real SMS is sent), {len(messages)} "
               "message(s)")
    for message in messages:
        emit_fields([("to", message.to_dict()["to"]), ("sent at", vn_iso(message.sent_at)),
                     ("expires at", vn_iso(message.expires_at)), ("state", message.state),
                     ("code", message.code or "(none)")])
