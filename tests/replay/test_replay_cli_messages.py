"""Messages a new user reads: one clear line that says what to do, and hints
that work when pasted."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ledgerflow.replay.cli import main

RUN_WF = "ledgerflow.examples.travel:wf"
GOAL = '{"destination": "Lisbon", "passengers": 2}'


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def error_line(result: Result, code: int) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = result.output.splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: "), result.output
    return lines[0]


EVERY_COMMAND = [["runs"], ["show", "r1"], ["log", "r1"], ["replay", "r1"], ["verify", "r1"],
                 ["diff", "r1", "r2"], ["resume", "r1"], ["resolve", "r1", "price", "--retry"],
                 ["fork", "r1", "--at", "1"], ["run", RUN_WF, "--goal", GOAL], ["demo"]]


@pytest.mark.parametrize("as_url", [False, True], ids=["path", "sqlite url"])
@pytest.mark.parametrize("args", EVERY_COMMAND, ids=[" ".join(a) for a in EVERY_COMMAND])
def test_a_directory_as_db_is_named_as_a_directory(
    tmp_path: Path, args: list[str], as_url: bool
) -> None:
    folder = tmp_path / "d.db"
    folder.mkdir()
    db = f"sqlite:///{folder}" if as_url else str(folder)
    line = error_line(invoke(*args, "--db", db), 1)
    assert f"The store '{db}' is a directory" in line
    assert "I/O" not in line and "cannot open" not in line
    assert list(folder.iterdir()) == []
