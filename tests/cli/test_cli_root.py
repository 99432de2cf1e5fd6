"""The root ``kyso`` command: top-level commands load on first use, with the summaries
``kyso --help`` shows kept equal to the commands' own."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from kyso.cli import COMMANDS, cli, load_all

_PROBE = """
import sys
from kyso.cli import main
try:
    main({argv!r})
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in ("pyhanko", "fontTools", "sqlalchemy", "fastapi", "kyso.context")
               if m in sys.modules)
print("LOADED", ",".join(heavy), "EXIT", code)
"""


def _loaded(argv: list[str]) -> tuple[str, str]:
    done = subprocess.run([sys.executable, "-c", _PROBE.format(argv=argv)], capture_output=True,
                          text=True, timeout=120, check=False)
    line = [ln for ln in done.stdout.splitlines() if ln.startswith("LOADED")][-1]
    _, modules, _, code = line.split(" ")
    return modules, code


def test_every_top_level_command_is_listed_with_its_own_summary() -> None:
    root = load_all()
    assert set(root.commands) == set(COMMANDS)
    for name, entry in COMMANDS.items():
        assert entry.summary == root.commands[name].get_short_help_str(200), name


@pytest.mark.parametrize("argv", [["--version"], ["--help"]])
def test_version_and_help_load_no_domain(argv: list[str]) -> None:
    modules, code = _loaded(argv)
    assert (modules, code) == ("", "0")


def test_a_certificate_command_does_not_load_the_pdf_stack() -> None:
    modules, code = _loaded(["cert", "--help"])
    assert code == "0"
    assert "pyhanko" not in modules
    assert "fontTools" not in modules


def test_help_lists_every_command_without_importing_it() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert f"\n  {name} " in result.output


def test_every_leaf_command_of_a_lazily_loaded_group_takes_format() -> None:
    group = cli.get_command(click.Context(cli), "cert")
    assert isinstance(group, click.Group)
    for command in group.commands.values():
        assert any("--format" in getattr(p, "opts", []) for p in command.params), command.name


def test_an_unknown_command_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["nosuch"])
    assert result.exit_code == 2
    assert "No such command 'nosuch'" in result.output
