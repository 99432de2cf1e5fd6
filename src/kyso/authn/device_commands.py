"""``kyso id device list | bind | request | approval-message | approve | retire``: the bound
devices of an e-ID account (parse, one library call, render).

The chip card check at the counter runs passive authentication against the same trust inputs as
``kyso id enrol-l2`` (this home's test CSCA and its CRL, or ``--csca`` / ``--crl``)."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from kyso.authn.devices import (
    Device,
    DeviceAlreadyBoundError,
    DeviceApprovalRequest,
    Devices,
    DeviceStatus,
    load_device_key,
    public_key_der,
    signature_from_base64,
)
from kyso.authn.enrol_commands import _load_chip, _trust, _with_trust
from kyso.authn.registry import Identity, Registry
from kyso.cliutil import App, check_new_files, emit_fields, emit_json, pass_app, stdout
from kyso.clock import vn_iso
from kyso.errors import AuthnError, IdentityError, UsageError
from kyso.files import atomic_write

MAX_KEY_FILE_BYTES = 64 * 1024
MAX_SIGNATURE_FILE_BYTES = 4 * 1024


def add_to(id_group: click.Group, token_group: click.Group) -> None:
    del token_group  # nothing for relying parties here
    id_group.add_command(device)


@click.group("device")
def device() -> None:
    """Devices bound to an e-ID account: the app's EC P-256 key, one active device per account
    (a new device needs the old device's approval or a chip card check)."""


id_option = click.option("--id", "id_number", required=True, metavar="ID_NUMBER",
                         help="The citizen's 12-digit personal ID number.")
request_option = click.option(
    "--request", "nonce", required=True, metavar="NONCE",
    help="The approval request (its nonce), as printed by `kyso id device request`.")
key_option = click.option(
    "--public-key", "key_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
    help="The device's EC P-256 public key: PEM (BEGIN PUBLIC KEY) or DER SubjectPublicKeyInfo.")
name_option = click.option("--name", default="e-ID app", show_default=True,
                           help="What the citizen calls the device (1-64 characters).")


def _account(app: App, id_number: str) -> Identity:
    return Registry(app.kyso.store, app.kyso.clock).get(id_number.strip())


def _read(path: Path, what: str, limit: int) -> bytes:
    """A small input file; :class:`IdentityError` naming it if it is missing, unreadable or
    too large (its content is never echoed)."""
    try:
        with path.open("rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise IdentityError(f"cannot read {what} {path}: {exc.strerror}") from None
    if len(data) > limit:
        raise IdentityError(f"{what} {path} is larger than {limit // 1024} KiB")
    if not data.strip():
        raise IdentityError(f"{what} {path} is empty")
    return data


def _public_key(path: Path) -> bytes:
    """The device public key file as SubjectPublicKeyInfo DER (the library checks it is EC
    P-256); errors name the file."""
    try:
        der = public_key_der(_read(path, "public key file", MAX_KEY_FILE_BYTES))
        load_device_key(der)
        return der
    except IdentityError:
        raise
    except AuthnError as exc:
        raise IdentityError(f"{path}: {exc}") from None


def _date(value: dt.datetime | None) -> str:
    return vn_iso(value) if value is not None else ""


def _since(d: Device) -> str:
    """When the device entered its current status."""
    return _date({DeviceStatus.ACTIVE: d.activated_at,
                  DeviceStatus.RETIRED: d.retired_at}.get(d.status, d.created_at))


_COLUMNS = (("id", True), ("name", False), ("status", True), ("thumbprint", True),
            ("approved_by", False), ("since", True))


def _table(found: list[Device], title: str) -> None:
    """Ids, thumbprints and dates never fold, so they copy and paste whole."""
    table = Table(title=title, header_style="bold")
    for name, no_wrap in _COLUMNS:
        table.add_column(name, overflow="fold", no_wrap=no_wrap)
    for d in found:  # Text, not markup: a device name like "[red]…" is data
        table.add_row(*(Text(v) for v in (d.id, d.name, d.status.value, d.thumbprint,
                                          d.approved_by or "", _since(d))))
    stdout.print(table)


@device.command("list", epilog="""\b
Examples:
  kyso id device list --id 019090012345
  kyso id device list --id 019090012345 --format json

\b
The text table shows since when each device has its status (+07:00); --format json adds
created_at, activated_at and retired_at (UTC).

\b
Statuses: active (the bound device), pending (waiting for the old device's approval or a chip
check), retired (replaced or withdrawn). approved_by is device:<id>, chip:<DS serial> or
first-binding (SMS code at activation).""")
@id_option
@pass_app
def device_list(app: App, id_number: str) -> None:
    """List the devices of an account, oldest first."""
    identity = _account(app, id_number)
    found = Devices(app.kyso).list(identity.subject)
    if app.json:
        emit_json({"id_number": identity.masked_id, "subject": identity.subject,
                   "devices": [d.to_dict() for d in found]})
        return
    if not found:
        click.echo(f"no devices bound to the e-ID account of {identity.masked_id}")
        return
    _table(found, f"Devices of {identity.masked_id}")


@device.command("retire", epilog="""\b
Examples:
  kyso id device retire --id 019090012345 --device dev-3q2-7Yx0kV1Jm8r0b5cW9Q
  kyso id device retire --id 019090012345 --device dev-3q2-7Yx0kV1Jm8r0b5cW9Q --format json

\b
A retired device never becomes active again. After retiring the active device (lost phone),
the citizen binds a new one at activation (SMS code) or with a chip card check.""")
@id_option
@click.option("--device", "device_id", required=True, metavar="DEVICE_ID",
              help="The device id shown by `kyso id device list`.")
@pass_app
def device_retire(app: App, id_number: str, device_id: str) -> None:
    """Retire a device of an account (active or pending)."""
    identity = _account(app, id_number)
    retired = Devices(app.kyso).retire(device_id.strip(), subject=identity.subject)
    if app.json:
        emit_json(retired.to_dict())
        return
    click.echo(f"device {retired.id} ({retired.name}) of {identity.masked_id} retired")


# --- binding ----------------------------------------------------------------------------------

@device.command("bind", epilog="""\b
Examples:
  kyso id device bind --id 019090012345 --public-key iphone.pub.pem --name "iPhone của An"
  kyso id device bind --id 019090012345 --public-key iphone.pub.der --format json

\b
The first device of an account, at activation: the operator has checked the citizen (the SMS
code sent to the account's phone, or in person). An account that already has an active device
is refused: register the new device with `kyso id device request`, then approve it with the
old device's signature or a chip card check (`kyso id device approve`).""")
@id_option
@key_option
@name_option
@pass_app
def device_bind(app: App, id_number: str, key_path: Path, name: str) -> None:
    """Bind the first device of an account (it becomes the active device)."""
    identity = _account(app, id_number)
    public_key = _public_key(key_path)
    try:
        bound = Devices(app.kyso).bind_first(identity.subject, public_key, name)
    except DeviceAlreadyBoundError as exc:
        raise DeviceAlreadyBoundError(
            f"{exc}. Register it as a new device with `kyso id device request --id <ID number> "
            "--public-key …`, then approve it with `kyso id device approve`") from None
    if app.json:
        emit_json({**bound.to_dict(), "id_number": identity.masked_id})
        return
    emit_fields([("ID number", identity.masked_id), ("device", bound.id), ("name", bound.name),
                 ("thumbprint", bound.thumbprint), ("status", bound.status.value),
                 ("since", _since(bound))], title="Device bound")


@device.command("request", epilog="""\b
Examples:
  kyso id device request --id 019090012345 --public-key samsung.pub.pem --name "Samsung của An"
  kyso id device request --id 019090012345 --public-key samsung.pub.pem --format json

\b
Registers a pending device and its approval request (a one-time nonce, valid 5 minutes). A new
request replaces the account's previous pending one. Approve it with the active device's
signature over `kyso id device approval-message --request NONCE`, or with a chip card check at
the counter; either way the new device becomes active and the old one is retired. The holder
must have logged in on the new device (ID number, password, SMS code) before this request.""")
@id_option
@key_option
@name_option
@pass_app
def device_request(app: App, id_number: str, key_path: Path, name: str) -> None:
    """Request a new device for an account (pending until approved)."""
    identity = _account(app, id_number)
    public_key = _public_key(key_path)
    devices = Devices(app.kyso)
    request = devices.request_new(identity.subject, public_key, name)
    pending = devices.get(request.device_id)
    if app.json:
        emit_json({**request.to_dict(), "id_number": identity.masked_id, "name": pending.name})
        return
    emit_fields([("ID number", identity.masked_id), ("device", request.device_id),
                 ("name", pending.name),
                 ("thumbprint", request.thumbprint), ("request", request.nonce),
                 ("expires at", vn_iso(request.expires_at))],
                title="Device approval requested (pending)")
    click.echo(f"""
Approve it before it expires, either
  with the active device: sign the bytes of
    kyso id device approval-message --request {request.nonce} --out approval.bin
  and run kyso id device approve --id <ID number> --request {request.nonce} --signature sig.b64
  or with a chip card check at the counter:
    kyso id device approve --id <ID number> --request {request.nonce} --chip chip.json --officer …""")


# --- approval ---------------------------------------------------------------------------------

@device.command("approval-message", epilog="""\b
Examples:
  kyso id device approval-message --request jUVrRrN9Z99gxOiSWRxp6f17eOTctUGmNeCswjwt21I \\
      --out approval.bin
  openssl dgst -sha256 -sign old-device.key.pem approval.bin | base64 > sig.b64
  kyso id device approval-message --request jUVrRrN9Z99gxOiSWRxp6f17eOTctUGmNeCswjwt21I --format json

\b
The exact bytes the account's active device signs (ECDSA P-256 with SHA-256) to approve the
pending device: "kyso/device-signature/v1", a NUL byte, then canonical JSON (sorted keys, no
spaces) of purpose "approve-device", the nonce, the account's subject and the new key's
thumbprint. --out writes them (never overwriting); the output also shows them in base64
(message_base64 in JSON). An unknown, used or expired request is refused.""")
@request_option
@click.option("--id", "id_number", metavar="ID_NUMBER",
              help="The citizen's ID number: refuse a request of another account.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the message bytes to this file (never overwritten).")
@pass_app
def device_approval_message(app: App, nonce: str, id_number: str | None,
                            out: Path | None) -> None:
    """Print or write the bytes the active device signs to approve a request."""
    if out is not None:
        check_new_files([out])
    subject = _account(app, id_number).subject if id_number is not None else None
    request = Devices(app.kyso).approval_request(nonce.strip(), subject=subject)
    message = request.message
    if out is not None:
        try:
            atomic_write(out, message, exclusive=True)
        except FileExistsError:
            raise UsageError(f"{out} already exists; kyso never overwrites an output file"
                             ) from None
    if app.json:
        emit_json({**request.to_dict(), "message_base64": base64.b64encode(message).decode(),
                   "written_to": str(out) if out else None})
        return
    emit_fields([*_request_fields(request),
                 ("message (base64)", base64.b64encode(message).decode()),
                 ("written to", str(out) if out else None)], title="Device approval message")


def _request_fields(request: DeviceApprovalRequest) -> list[tuple[str, str | None]]:
    return [("device", request.device_id), ("subject", request.subject),
            ("thumbprint", request.thumbprint), ("expires at", vn_iso(request.expires_at))]


def _approval_mode(signature: Path | None, chip: Path | None, officer: str | None,
                   trust: bool) -> None:
    if (signature is None) == (chip is None):
        raise UsageError("give exactly one of --signature (the active device's approval) and "
                         "--chip (a chip card check, with --officer)")
    if chip is not None and officer is None:
        raise UsageError("--chip needs --officer (who checked the card)")
    if signature is not None and (officer is not None or trust):
        raise UsageError("--officer, --csca and --crl go with --chip only")


@device.command("approve", epilog="""\b
Examples:
  kyso id device approve --id 019090012345 --request jUVrRrN9Z99gxOiSWRxp6f17eOTctUGmNeCswjwt21I \\
      --signature sig.b64
  kyso id device approve --id 019090012345 --request jUVrRrN9Z99gxOiSWRxp6f17eOTctUGmNeCswjwt21I \\
      --chip chip.json --officer CA-TN-0042
  kyso id device approve ... --chip chip.json --officer CA-TN-0042 --csca csca.crt.pem \\
      --crl csca.crl --format json

\b
--signature: a file with the base64 of the active device's ECDSA P-256 signature (DER or
64-byte r||s) over `kyso id device approval-message`.
--chip: the holder's chip card, read at the counter; passive authentication runs exactly as
for `kyso id enrol-l2` (SOD signature, Document Signer chain to the CSCA, DS revocation,
data-group hashes), the card must not be expired and its ID number must be --id's.
Either way the pending device becomes active and the old one is retired; the request is
single use.""")
@id_option
@request_option
@click.option("--signature", "signature_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Base64 signature of the active device over the approval message.")
@click.option("--chip", "chip_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Chip file (chip.json) of the holder's ID card.")
@click.option("--officer", help="The officer who checked the chip card (badge number).")
@_with_trust
@pass_app
def device_approve(app: App, id_number: str, nonce: str, signature_path: Path | None,
                   chip_path: Path | None, officer: str | None, csca_files: tuple[Path, ...],
                   crl_files: tuple[Path, ...]) -> None:
    """Approve a pending device: the active device's signature or a chip card check."""
    _approval_mode(signature_path, chip_path, officer, bool(csca_files or crl_files))
    identity = _account(app, id_number)
    devices = Devices(app.kyso)
    before = devices.active(identity.subject)  # to name the device the approval retires
    if signature_path is not None:
        signature = _signature(signature_path)
        approved = devices.approve_with_device(nonce.strip(), signature,
                                               subject=identity.subject)
    else:
        assert chip_path is not None
        chip = _load_chip(chip_path)
        certs, crls = _trust(app.kyso, csca_files, crl_files)
        approved = devices.approve_with_chip(nonce.strip(), chip, csca=certs, crls=crls,
                                             subject=identity.subject, officer=officer)
    retired = before.id if before is not None and devices.get(before.id).status is (
        DeviceStatus.RETIRED) else None
    if app.json:
        emit_json({**approved.to_dict(), "id_number": identity.masked_id,
                   "retired_device": retired})
        return
    emit_fields([("ID number", identity.masked_id), ("device", approved.id),
                 ("name", approved.name), ("thumbprint", approved.thumbprint),
                 ("approved by", approved.approved_by),
                 ("retired", retired or "(no active device before)")],
                title="Device approved: now the active device")


def _signature(path: Path) -> bytes:
    try:
        return signature_from_base64(_read(path, "signature file", MAX_SIGNATURE_FILE_BYTES))
    except IdentityError:
        raise
    except AuthnError as exc:
        raise IdentityError(f"{path}: {exc}") from None
