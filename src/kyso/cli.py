"""The ``kyso`` command: global options, registration of each domain's commands, and the one
place where errors become messages and exit codes (1 domain failure, 2 usage) — never a
traceback."""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from pathlib import Path
from typing import NamedTuple

import click

from kyso import __version__
from kyso.audit.logging import configure_logging
from kyso.errors import KysoError, UsageError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class Entry(NamedTuple):
    """A top-level command, imported only when it runs: ``kyso cert …`` never loads pyHanko,
    and ``kyso --version`` / ``--help`` load no domain at all. ``module.register(root)`` adds
    it (with the module's other top-level commands)."""

    module: str
    summary: str  # its short help, for ``kyso --help`` (a test keeps it equal to the command's)


COMMANDS: dict[str, Entry] = {
    "ca": Entry("kyso.pki.commands",
                "Create and inspect the CA hierarchy (root, staff, citizen, services)."),
    "cert": Entry("kyso.pki.commands",
                  "Issue, list, revoke, hold, release, renew and rekey certificates."),
    "crl": Entry("kyso.pki.commands", "Certificate revocation lists."),
    "profile": Entry("kyso.pki.commands",
                     "Certificate profiles (data files; site overrides in <home>/profiles/)."),
    "policy": Entry("kyso.policies.commands",
                    "Security levels of information systems: list them, show a requirement, "
                    "check this deployment against a level."),
    "audit": Entry("kyso.audit.commands", "Inspect and prove the tamper-evident audit log."),
    "pdf": Entry("kyso.signing.commands", "Sign and verify PDF dossiers (PAdES)."),
    "id": Entry("kyso.authn.commands",
                "The VNeID-style e-ID: register citizens, enrol them at level 2 with a chip "
                "check, lock and unlock accounts, one-time codes, devices, OIDC clients, token "
                "signing keys, the SMS outbox simulator."),
    "token": Entry("kyso.authn.commands",
                   "Tokens issued by the e-ID provider, checked the way a relying party must."),
    "serve": Entry("kyso.server.commands",
                   "Run the HTTP service: OCSP, CRL, TSA, verify, CA and auditor APIs, the "
                   "signing gateway and the e-ID provider."),
    "demo": Entry("kyso.demo_commands",
                  "Play the whole scenario: CA, e-ID login, signatures, verification, audit, "
                  "policy."),
}


class LazyGroup(click.Group):
    """The root group: each top-level command is imported on first use (see :data:`COMMANDS`)
    and given ``--format`` like every leaf command."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            from kyso.cliutil import add_format_option

            before = set(self.commands)
            importlib.import_module(COMMANDS[cmd_name].module).register(self)
            for name in set(self.commands) - before:
                add_format_option(self.commands[name])
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name].summary if name in COMMANDS
                 else self.commands[name].get_short_help_str(200))
                for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings=CONTEXT_SETTINGS)
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), envvar="KYSO_HOME",
              help="kyso home directory (default ~/.kyso, or $KYSO_HOME).")
@click.option("--format", "output", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Output format.")
@click.option("-v", "--verbose", is_flag=True, help="Show internal details of unexpected errors.")
@click.version_option(__version__, prog_name="kyso")
@click.pass_context
def cli(ctx: click.Context, home: Path | None, output: str, verbose: bool) -> None:
    """kyso — the security layer of Vietnamese provincial e-government.

    \b
    Quick start:
      kyso ca init --org "UBND tỉnh Thái Nguyên" --province thai-nguyen
      kyso cert issue --profile staff --name "Nguyễn Văn An" --id 019099012345 \\
          --title "Chuyên viên" --unit "Văn phòng UBND xã Phú Đình" \\
          --email an.nv@thainguyen.gov.vn
      kyso cert list --expiring 30d
    """
    from kyso.cliutil import App
    from kyso.config import load_settings

    app = App(settings=load_settings(home=home), output=output, verbose=verbose)
    ctx.obj = app
    ctx.call_on_close(app.close)



def load_all() -> click.Group:
    """The root group with every command imported (for tools that walk the tree)."""
    for name in COMMANDS:
        cli.get_command(click.Context(cli), name)
    return cli


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script."""
    os.umask(0o077)  # files kyso creates are private unless written with an explicit mode
    configure_logging(level="warning", json=False, stream=sys.stderr)
    try:
        # Without standalone mode click returns ctx.exit(n)'s code instead of raising.
        code = cli.main(args=argv, prog_name="kyso", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2 if isinstance(exc, click.UsageError) else exc.exit_code)
    except UsageError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KysoError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # fail closed, without a traceback unless asked for
        if "-v" in (argv or sys.argv) or "--verbose" in (argv or sys.argv):
            traceback.print_exception(exc, limit=20)
        click.echo(f"error: internal error ({type(exc).__name__}); run with -v for details",
                   err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) and not isinstance(code, bool) else 0)
