"""What every ``commands`` module shares: the app object, passphrase sources, output."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from kyso.config import (
    ENV_CA_PASSPHRASE,
    ENV_P12_PASSPHRASE,
    Settings,
    check_new_passphrase,
    passphrase_from_env,
    read_passphrase_file,
)
from kyso.context import Kyso, open_kyso
from kyso.errors import CANotInitialisedError, UsageError
from kyso.files import spreadsheet_safe
from kyso.store.engine import sqlite_path


@dataclass
class App:
    """Built once by the root command; opens the store lazily so ``--help`` touches nothing."""

    settings: Settings
    output: str = "text"
    verbose: bool = False
    _kyso: Kyso | None = field(default=None, repr=False)

    @property
    def kyso(self) -> Kyso:
        """The context of an existing home; a home without a CA database is an error, so a
        mistyped --home never leaves an empty database behind."""
        return self.open(create=False)

    def open(self, *, create: bool) -> Kyso:
        if self._kyso is None:
            db = sqlite_path(self.settings.database_url)
            # PostgreSQL: the database is shared, but keys and the audit log live in the home.
            missing = not db.exists() if db is not None else not self.settings.home.is_dir()
            if not create and missing:
                raise CANotInitialisedError(
                    f"no CA in {self.settings.home}; create one with `kyso ca init` "
                    "(or point --home / KYSO_HOME at the right directory)")
            self._kyso = open_kyso(self.settings)
        return self._kyso

    def close(self) -> None:
        if self._kyso is not None:
            self._kyso.close()

    @property
    def json(self) -> bool:
        return self.output == "json"


pass_app = click.make_pass_decorator(App)


def _set_format(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.ensure_object(App).output = value


def add_format_option(command: click.Command) -> None:
    """Give ``command`` or, for a group, every leaf command below it ``--format text|json``
    (as after the subcommand in step CLI), unless it defines its own."""
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            add_format_option(sub)
    elif not any("--format" in getattr(p, "opts", []) for p in command.params):
        command.params.append(click.Option(
            ["--format"], type=click.Choice(["text", "json"]), default=None,
            expose_value=False, callback=_set_format, help="Output format."))

def _console() -> Console:
    probe = Console()
    # Piped output (scripts, docs, CI logs) gets a wide table instead of 80 folded columns.
    return Console(highlight=False, width=None if probe.is_terminal else 160)


stdout = _console()
stderr = Console(stderr=True, highlight=False)


def _stdin_is_tty() -> bool:
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def obtain_passphrase(
    file: Path | None, env_name: str, what: str, *, confirm: bool = False
) -> str:
    """From ``--…-passphrase-file``, then the environment, then an interactive prompt."""
    if file is not None:
        return read_passphrase_file(file)
    value = passphrase_from_env(env_name)
    if value:
        return value
    if _stdin_is_tty():
        result: str = click.prompt(what, hide_input=True, confirmation_prompt=confirm,
                                   err=True)
        return result
    raise UsageError(f"{what} needed: give a passphrase file, set {env_name}, or run in a terminal")


def ca_passphrase(file: Path | None, *, confirm: bool = False) -> str:
    return obtain_passphrase(file, ENV_CA_PASSPHRASE, "CA passphrase", confirm=confirm)


def p12_passphrase(file: Path | None) -> str:
    value = obtain_passphrase(file, ENV_P12_PASSPHRASE, "PKCS#12 passphrase", confirm=True)
    return check_new_passphrase(value, "PKCS#12 passphrase")


passphrase_file_option = click.option(
    "--passphrase-file", type=click.Path(dir_okay=False, path_type=Path),
    help=f"File whose first line is the CA passphrase (else ${ENV_CA_PASSPHRASE} or a prompt).",
)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


NO_WRAP_COLUMNS = {"serial", "sha256", "status", "not_after", "valid until"}


def emit_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None
               ) -> None:
    """A table; serials and dates never fold, so they copy and paste whole."""
    table = Table(title=title, show_lines=False, header_style="bold")
    for col in columns:
        table.add_column(col, overflow="fold", no_wrap=col in NO_WRAP_COLUMNS)
    for row in rows:  # Text, not markup: a name like "[red]…" is data, never styling
        table.add_row(*(Text("" if v is None else str(v)) for v in row))
    stdout.print(table)


def emit_csv(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([spreadsheet_safe(v) for v in row])
    click.echo(buf.getvalue(), nl=False)


def emit_fields(pairs: Sequence[tuple[str, Any]], title: str | None = None) -> None:
    if title:
        click.echo(title)
    width = max(len(k) for k, _ in pairs)
    for key, value in pairs:
        if value is None or value == "":
            continue
        click.echo(f"  {key.ljust(width)}  {value}")


def check_new_files(paths: list[Path]) -> None:
    """Refuse (usage error) outputs that exist or cannot be created: nothing is overwritten."""
    for p in paths:
        if p.exists():
            raise UsageError(f"{p} already exists; kyso never overwrites an output file")
        if not p.parent.exists():
            raise UsageError(f"directory {p.parent} does not exist")
        if not os.access(p.parent, os.W_OK):
            raise UsageError(f"directory {p.parent} is not writable")
