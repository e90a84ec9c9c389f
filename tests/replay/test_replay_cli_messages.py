"""Messages a new user reads: one clear line that says what to do, and hints
that work when pasted."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ledgerflow.eventstore import StoreReadOnlyError
from ledgerflow.replay.cli import main
from ledgerflow.replay.cli_support import for_the_cli

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
    assert "I/O" not in line
    assert "cannot open" not in line
    assert list(folder.iterdir()) == []


USAGE_ERRORS = [["frobnicate"], ["--bogus"], ["show"], ["show", "r1", "--bogus"],
                ["runs", "--limit", "0"], ["log", "r1", "--format", "xml"], ["fork", "r1"],
                ["resolve", "r1", "price"], ["run", RUN_WF, "--goal", "{bad"]]


@pytest.mark.parametrize("args", USAGE_ERRORS, ids=[" ".join(a) for a in USAGE_ERRORS])
def test_a_usage_error_is_one_line_naming_the_help(args: list[str]) -> None:
    line = error_line(invoke(*args), 2)
    assert "--help'" in line


def test_no_arguments_still_prints_the_help() -> None:
    result = invoke()
    assert "Exit codes, one rule for every command" in result.output


def test_a_goal_with_a_key_given_twice_is_a_usage_error(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    line = error_line(invoke("run", RUN_WF, "--goal", '{"n": 1, "n": 2}', "--db", str(db)), 2)
    assert "Invalid value for '--goal'" in line
    assert 'gives the key "n" twice' in line
    assert not db.exists()


def test_a_key_given_twice_in_a_nested_resolution_is_refused(waiting: tuple[str, str]) -> None:
    db, run_id = waiting
    line = error_line(invoke("resolve", run_id, "price", "--output",
                             '{"x": {"a": 1, "a": 1}}', "--db", db), 2)
    assert 'gives the key "a" twice' in line


BAD_PLANNER = '''
from pydantic import BaseModel
from ledgerflow import AgentContext, Plan, Workflow


class Goal(BaseModel):
    n: int


class Strict(BaseModel):
    a: int
    b: int


wf = Workflow("cli-messages-bad-planner", goal=Goal)


@wf.planner
async def plan(goal: Goal, ctx: AgentContext) -> Plan:
    Strict.model_validate({"a": "x"})  # a pydantic ValidationError: many lines
    raise AssertionError
'''


def test_a_multi_line_planner_error_is_one_status_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cli_messages_bad_planner.py").write_text(BAD_PLANNER)
    monkeypatch.chdir(tmp_path)
    result = invoke("run", "cli_messages_bad_planner:wf", "--goal", '{"n": 1}', "--db", "b.db")
    assert result.exit_code == 1, result.output
    (line,) = result.stdout.splitlines()
    assert "ValidationError: 2 validation errors for Strict; a; Input should be" in line
    run_id = line.split()[1].rstrip(":")
    for command in (["show", run_id], ["replay", run_id], ["resume", run_id]):
        out = invoke(*command, "--db", "b.db").output
        status = [ln for ln in out.splitlines() if ln.startswith("run ")]
        assert len(status) == 1, out
        assert "validation errors for Strict; a;" in status[0], out


@pytest.fixture
def waiting(tmp_path: Path) -> tuple[str, str]:
    """A run waiting on 'price', in a store that is not the default one."""
    db = str(tmp_path / "my runs.db")
    result = invoke("run", "ledgerflow.examples.travel_unreviewed:wf", "--goal", GOAL,
                    "--db", db)
    assert result.exit_code == 0, result.output
    return db, result.output.split()[1].rstrip(":")


def pasted(hint: str) -> Result:
    """Run a printed hint as a user pasting it would (the program name dropped)."""
    words = shlex.split(hint)
    assert words[0] == "ledgerflow", hint
    return invoke(*words[1:])


def test_the_waiting_hint_names_a_non_default_db_and_works_when_pasted(
    waiting: tuple[str, str],
) -> None:
    db, run_id = waiting
    for command in (["resume", run_id], ["fork", run_id, "--at", "5"]):
        out = invoke(*command, "--db", db).output
        (hint,) = [ln for ln in out.splitlines() if ln.strip().startswith("waiting on price")]
        assert f"--db {shlex.quote(db)}" in hint
    resolve = hint.split(": ", 1)[1].split(" (--output")[0]
    result = pasted(resolve + " --abandon")
    # Abandoning price skips book, so the fork ends failed (1): what matters is that
    # the pasted line reached the fork in this store.
    assert result.output.startswith(f"run {resolve.split()[2]}: failed"), result.output


def test_the_compare_hint_of_a_fork_names_a_non_default_db_and_works_when_pasted(
    waiting: tuple[str, str],
) -> None:
    db, run_id = waiting
    out = invoke("fork", run_id, "--at", "5", "--no-continue", "--db", db).output
    (compare,) = [ln for ln in out.splitlines() if ln.startswith("compare: ")]
    assert f"--db {shlex.quote(db)}" in compare
    result = pasted(compare.removeprefix("compare: "))
    assert result.exit_code == 1, result.output  # they differ: the fork stopped at seq 5
    assert "No run" not in result.output
    assert "No store" not in result.output


def test_diff_against_a_shorter_log_names_its_end_not_seq_none(
    waiting: tuple[str, str],
) -> None:
    db, run_id = waiting
    out = invoke("fork", run_id, "--at", "5", "--no-continue", "--db", db).output
    fork_id = out.split()[2]
    result = invoke("diff", run_id, fork_id, "--db", db)
    assert result.exit_code == 1, result.output
    assert "None" not in result.output
    assert f"the end of {fork_id}'s decisions" in result.output
    assert f"{fork_id}: (log ends)" in result.output


def test_runs_shows_why_a_resumed_waiting_run_waits(waiting: tuple[str, str]) -> None:
    db, run_id = waiting
    for _ in range(3):
        assert invoke("resume", run_id, "--db", db).exit_code == 0
    doc = json.loads(invoke("runs", "--json", "--db", db).output)
    (run,) = [r for r in doc["runs"] if r["run_id"] == run_id]
    assert not run["reason"].startswith("Resumed"), run
    assert "price" in run["reason"], run
    table = invoke("runs", "--db", db).output
    assert "Resumed by" not in table


def test_a_write_on_a_store_this_user_cannot_write_speaks_to_a_cli_user(
    waiting: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, run_id = waiting
    real_access = os.access
    # As if the file were another user's: root may write anything, so pretend.
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: mode != os.W_OK
                        and real_access(path, mode, **kw))
    for command in (["resume", run_id], ["resolve", run_id, "price", "--retry"],
                    ["fork", run_id, "--at", "3"]):
        line = error_line(invoke(*command, "--db", db), 1)
        assert "read_only=True" not in line
        assert "open_store" not in line
        assert "the store is read-only here: the reading commands" in line
    assert invoke("show", run_id, "--db", db).exit_code == 0


def test_a_read_only_refusal_from_the_store_is_translated_for_the_cli() -> None:
    line = for_the_cli(StoreReadOnlyError("runs.db", "append"))
    assert line == ("Cannot append on the store 'runs.db': the store is read-only here: the "
                    "reading commands (runs, show, log, replay, verify, diff) work on it; to "
                    "change a run, use a copy you can write.")
