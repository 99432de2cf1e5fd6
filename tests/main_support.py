"""Running ``kyso.cli.main`` in-process as the console script does (imported by name from any
test folder: tests/ is on sys.path, as for ``conftest``): the exit code and what it printed,
so that the codes and messages the tests check are the real ones."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kyso.cli import main


@dataclass(frozen=True)
class Outcome:
    """What ``kyso.cli.main`` did: exit code and captured output."""

    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err

    def json(self) -> Any:
        return json.loads(self.out)


def run_main(capsys: pytest.CaptureFixture[str], home: Path | None, *args: str | Path) -> Outcome:
    """``kyso [--home HOME] ARGS`` through ``kyso.cli.main`` (inside ``pytest.raises(SystemExit)``,
    output captured with ``capsys``)."""
    capsys.readouterr()
    argv = (["--home", str(home)] if home is not None else []) + [str(a) for a in args]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    code = exc.value.code
    return Outcome(0 if code is None else int(code), out, err)
