"""Every error is classified: values no log can hold, typed as --goal or
--output, and rows a hand edit broke, each give one clear line, never a
traceback or an "unexpected" error; and the exit codes follow one rule
(1 for a refused operation, 2 for a usage error)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ledgerflow.machines.values import MAX_DEPTH
from ledgerflow.replay.cli import main
from ledgerflow.replay.jsonargs import json_depth

RUN_WF = "ledgerflow.examples.travel:wf"


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def assert_one_clear_line(result: Result, code: int) -> str:
    """Exactly one error line, of a known kind, with the exit code of its kind."""
    assert result.exit_code == code, result.output
    out = result.output
    for symptom in ("Traceback", "Unexpected", "Internal error", "RecursionError",
                    "UnicodeEncodeError", "ValueError"):
        assert symptom not in out, out
    (line,) = [ln for ln in out.splitlines() if ln.startswith("Error")]
    return line


def deep(levels: int) -> str:
    return '{"destination": "Lisbon", "passengers": 2, "x": ' + "[" * levels + "]" * levels + "}"


UNLOGGABLE = {
    "nested 10^5 deep": (deep(100_000), "nested 100001 levels deep"),
    "nested over the limit": (deep(MAX_DEPTH + 1),
                              f"levels deep, more than the {MAX_DEPTH}"),
    "integer over 4300 digits": ('{"destination": "Lisbon", "passengers": ' + "7" * 4301 + "}",
                                 "integer too long"),
    "lone surrogate": ('{"destination": "\\ud800", "passengers": 2}', "lone surrogate at "
                       "$.destination"),
    "lone surrogate in a key": ('{"\\udfff": 1}', "lone surrogate at $ (a key)"),
    "NaN": ('{"destination": "Lisbon", "passengers": NaN}', "NaN, which is not a JSON number"),
    "Infinity": ('{"destination": "Lisbon", "passengers": 2, "n": Infinity}', "Infinity"),
    "-Infinity": ('{"destination": "Lisbon", "passengers": -Infinity}', "-Infinity"),
    "1e400 (infinite)": ('{"destination": "Lisbon", "passengers": 1e400}', "1e400"),
}


@pytest.mark.parametrize(("text", "message"), UNLOGGABLE.values(), ids=UNLOGGABLE.keys())
def test_an_unloggable_goal_is_one_usage_line_and_creates_nothing(
    tmp_path: Path, text: str, message: str
) -> None:
    db = tmp_path / "new.db"
    line = assert_one_clear_line(invoke("run", RUN_WF, "--goal", text, "--db", str(db)), 2)
    assert line.startswith("Error: Invalid value for '--goal': ")
    assert message in line
    assert not db.exists()


@pytest.mark.parametrize(("text", "message"), UNLOGGABLE.values(), ids=UNLOGGABLE.keys())
def test_an_unloggable_goal_file_is_refused_the_same_way(
    tmp_path: Path, text: str, message: str
) -> None:
    goal = tmp_path / "goal.json"
    goal.write_text(text, encoding="utf-8")
    line = assert_one_clear_line(
        invoke("run", RUN_WF, "--goal", f"@{goal}", "--db", str(tmp_path / "x.db")), 2)
    assert message in line


@pytest.fixture(scope="module")
def waiting(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A run waiting on an escalation of its task 'price'."""
    db = tmp_path_factory.mktemp("errors") / "w.db"
    started = invoke("run", "ledgerflow.examples.travel_unreviewed:wf", "--goal",
                     '{"destination": "Lisbon", "passengers": 2}', "--db", str(db))
    assert started.exit_code == 0, started.output
    return db, started.output.split()[1].rstrip(":")


def count_events(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        (count,) = conn.execute("SELECT count(*) FROM events").fetchone()
    finally:
        conn.close()
    return int(count)


@pytest.mark.parametrize(("text", "message"), UNLOGGABLE.values(), ids=UNLOGGABLE.keys())
def test_an_unloggable_resolution_is_one_usage_line_and_appends_nothing(
    waiting: tuple[Path, str], text: str, message: str
) -> None:
    db, run_id = waiting
    before = count_events(db)
    result = invoke("resolve", run_id, "price", "--output", text, "--db", str(db))
    line = assert_one_clear_line(result, 2)
    assert line.startswith("Error: Invalid value for '--output': ")
    assert message in line
    assert count_events(db) == before


def test_depth_is_measured_without_recursion() -> None:
    assert json_depth("[" * 1_000_000 + "]" * 1_000_000) == 1_000_000
    assert json_depth('["[[[[", {"a": "\\"]]"}]') == 2


@pytest.fixture
def edited(tmp_path: Path, waiting: tuple[Path, str]) -> tuple[Path, str]:
    """A copy of the waiting run's store whose seq 5 is no longer JSON."""
    db, run_id = waiting
    copy = tmp_path / "edited.db"
    shutil.copy(db, copy)
    conn = sqlite3.connect(copy)
    with conn:
        conn.execute("UPDATE events SET data = 'not json{' WHERE run_id = ? AND seq = 5",
                     (run_id,))
    conn.close()
    return copy, run_id


EDITED = [["show", "RUN"], ["log", "RUN"], ["log", "RUN", "--format", "csv"],
          ["replay", "RUN"], ["replay", "RUN", "--step"], ["resume", "RUN"],
          ["fork", "RUN", "--at", "8"], ["diff", "RUN", "RUN"],
          ["resolve", "RUN", "price", "--retry"]]


@pytest.mark.parametrize("args", EDITED, ids=[" ".join(a) for a in EDITED])
def test_a_row_that_is_not_json_is_one_line_naming_its_seq(
    edited: tuple[Path, str], args: list[str]
) -> None:
    db, run_id = edited
    args = [run_id if a == "RUN" else a for a in args]
    line = assert_one_clear_line(invoke(*args, "--db", str(db)), 1)
    assert f"Event seq 5 of run '{run_id}' cannot be decoded" in line


def test_verify_of_a_row_that_is_not_json_fails_naming_its_seq(
    edited: tuple[Path, str],
) -> None:
    db, run_id = edited
    result = invoke("verify", run_id, "--db", str(db))
    assert result.exit_code == 1
    assert "FAIL  transitions: Event seq 5" in result.output
    assert "Traceback" not in result.output


EXIT_CODES = [
    (["frobnicate"], 2),
    (["show"], 2),
    (["runs", "--limit", "0"], 2),
    (["log", "RUN", "--format", "xml"], 2),
    (["run", RUN_WF, "--goal", "{not json"], 2),
    (["resolve", "RUN", "price"], 2),
    (["show", "nope"], 1),
    (["run", RUN_WF, "--goal", '{"destination": "Lisbon"}'], 1),
    (["run", "no_such_module_xyz:wf", "--goal", "{}"], 1),
    (["resolve", "RUN", "book", "--retry"], 1),
    (["resolve", "RUN", "price", "--output", '{"total": "lots"}'], 1),
    # A seq past the run's end is refused (the same seq is fine for a longer run).
    (["replay", "RUN", "--to", "999"], 1),
    (["fork", "RUN", "--at", "999"], 1),
    (["replay", "RUN", "--to", "0"], 2),
    (["fork", "RUN", "--at", "0"], 2),
    # A workflow that is not MODULE:WORKFLOW is malformed; one not found is refused.
    (["run", "garbage", "--goal", "{}"], 2),
    (["run", "a:b c", "--goal", "{}"], 2),
    (["resume", "RUN", "--workflow", "garbage"], 2),
    (["verify", "RUN", "--workflow", ":wf"], 2),
    (["fork", "RUN", "--at", "1", "--workflow", "mod:"], 2),
    (["resolve", "RUN", "price", "--retry", "--workflow", "garbage"], 2),
    (["verify", "RUN", "--workflow", "ledgerflow.examples.travel:nope"], 1),
]


@pytest.mark.parametrize(("args", "code"), EXIT_CODES, ids=[" ".join(a) for a, _ in EXIT_CODES])
def test_exit_codes_follow_one_rule(
    waiting: tuple[Path, str], args: list[str], code: int
) -> None:
    db, run_id = waiting
    args = [run_id if a == "RUN" else a for a in args]
    if args[0] != "frobnicate":
        args += ["--db", str(db)]
    assert_one_clear_line(invoke(*args), code)


def test_the_exit_code_rule_is_in_the_help() -> None:
    text = " ".join(invoke("--help").output.split())
    assert "Exit codes, one rule for every command" in text
    assert "1 refused or a problem found" in text
    assert "2 the command line is wrong" in text
