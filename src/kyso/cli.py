"""The ``kyso`` command: global options, registration of each domain's commands, and the one
place where errors become messages and exit codes (1 domain failure, 2 usage) — never a
traceback."""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

import click

from kyso import __version__, demo_commands
from kyso.audit import commands as audit_commands
from kyso.audit.logging import configure_logging
from kyso.authn import commands as id_commands
from kyso.cliutil import App, add_format_option
from kyso.config import load_settings
from kyso.errors import KysoError, UsageError
from kyso.pki import commands as pki_commands
from kyso.policies import commands as policy_commands
from kyso.server import commands as server_commands
from kyso.signing import commands as pdf_commands

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT_SETTINGS)
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
    app = App(settings=load_settings(home=home), output=output, verbose=verbose)
    ctx.obj = app
    ctx.call_on_close(app.close)


pki_commands.register(cli)
policy_commands.register(cli)
audit_commands.register(cli)
pdf_commands.register(cli)
id_commands.register(cli)
server_commands.register(cli)
demo_commands.register(cli)
add_format_option(cli)


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
