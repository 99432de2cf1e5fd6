"""``kyso demo``: parse, one library call (:func:`kyso.demo.run_demo`), render."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click
from click.core import ParameterSource

from kyso.cliutil import App, emit_json, pass_app
from kyso.clock import SystemClock


def register(root: click.Group) -> None:
    root.add_command(demo)


@click.command("demo", epilog="""\b
Examples:
  kyso demo
  kyso demo --home ./kyso-demo
  kyso demo --format json > demo.json

\b
Plays the scenario of the design on the embedded defaults (SQLite): the CA and the staff
and seal certificates; a level-2 enrolment with a test chip ID card; a login (ID number +
password + TOTP) through the e-ID provider, running on a free loopback port over HTTPS with
a throw-away certificate, after which the citizen's signing credential is enrolled at the
signing gateway the same server runs (her key stays there); a level-2 step-up, then her
signature through the gateway (CSC API v2: authorize the hash → SAD → signHash); the
official's stamp; the agency seal; verification of the dossier and of a tampered copy; the
audit log; the level-3 policy report. Keys and passwords are hashed with the production
settings unless KYSO_KEY_KDF_ITERATIONS or KYSO_PASSWORD_HASH say otherwise (the story says).

\b
The home is a new temporary directory unless --home (or kyso --home) names one: a new or
empty directory (a config.toml in it is used), or a previous demo's home, which is replaced
(its config.toml is kept). Any other directory is refused, a kyso home above all; KYSO_HOME
and KYSO_DATABASE_URL are not used. The demo's random passphrases go to
<home>/demo-secrets.txt (mode 0600) and are never printed. With --format json the story goes
to stderr and the result to stdout.""")
@click.option("--home", "--dir", "demo_home", type=click.Path(file_okay=False, path_type=Path),
              help="Directory for the demo's home (default: a new temporary directory).")
@pass_app
def demo(app: App, demo_home: Path | None) -> None:
    """Play the whole scenario: CA, e-ID login, signatures, verification, audit, policy."""
    from kyso.demo import run_demo  # the server and signing stacks load only for the demo

    home = demo_home
    parent = click.get_current_context().parent
    if home is None and parent is not None and \
            parent.get_parameter_source("home") is ParameterSource.COMMANDLINE:
        home = app.settings.home
    if home is None:
        home = Path(tempfile.mkdtemp(prefix="kyso-demo."))
    result = run_demo(home, SystemClock(), lambda line: click.echo(line, err=app.json))
    if app.json:
        emit_json(result.to_dict())
