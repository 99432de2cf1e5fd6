"""``kyso id device list|retire``: the bound devices of an e-ID account (parse, one library
call, render)."""

from __future__ import annotations

import datetime as dt

import click
from rich.table import Table
from rich.text import Text

from kyso.authn.devices import Device, Devices, DeviceStatus
from kyso.authn.registry import Identity, Registry
from kyso.cliutil import App, emit_json, pass_app, stdout
from kyso.clock import vn_iso


def add_to(id_group: click.Group, token_group: click.Group) -> None:
    del token_group  # nothing for relying parties here
    id_group.add_command(device)


@click.group("device")
def device() -> None:
    """Devices bound to an e-ID account: the app's EC P-256 key, one active device per account
    (a new device needs the old device's approval or a chip card check)."""


id_option = click.option("--id", "id_number", required=True, metavar="ID_NUMBER",
                         help="The citizen's 12-digit personal ID number.")


def _account(app: App, id_number: str) -> Identity:
    return Registry(app.kyso.store, app.kyso.clock).get(id_number.strip())


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
