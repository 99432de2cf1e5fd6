"""``kyso id …`` (the e-ID registry and its provider) and ``kyso token …`` (relying parties).

The two groups live here; each concern adds its commands from its own module
(``add_to(id_group, token_group)``), so enrolment, credentials, clients and tokens change
independently.
"""

from __future__ import annotations

import click

from kyso.authn import (
    client_commands,
    credential_commands,
    device_commands,
    enrol_commands,
    key_commands,
    role_commands,
    token_commands,
)

_MODULES = (enrol_commands, credential_commands, device_commands, client_commands,
            key_commands, token_commands, role_commands)


@click.group("id")
def id_group() -> None:
    """The VNeID-style e-ID: register citizens, enrol them at level 2 with a chip check, lock
    and unlock accounts, one-time codes, devices, OIDC clients, token signing keys, the SMS
    outbox simulator.
    """


@click.group("token")
def token_group() -> None:
    """Tokens issued by the e-ID provider, checked the way a relying party must."""


def register(root: click.Group) -> None:
    for module in _MODULES:
        module.add_to(id_group, token_group)
    root.add_command(id_group)
    root.add_command(token_group)
