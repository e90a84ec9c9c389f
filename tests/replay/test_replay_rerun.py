"""``ledgerflow rerun RUN --offline``: a recorded run as the fixture for changed code.

The story: last week's run paid for its model calls and charged a card. Today someone
rewords the prompt. Rerunning the workflow against last week's answers must call
nothing (no tokens paid, no card charged twice), pass when the code still asks what it
asked, and fail, showing the difference, when it asks something else.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import steps_workflows
from click.testing import CliRunner
from steps_workflows import live_calls

from ledgerflow.replay.cli import main

WORKFLOW = f"{steps_workflows.__name__}:wf"


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env={"COLUMNS": "200"},
                                catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "calls.txt"
    monkeypatch.setenv("STEPS_CALLS", str(path))
    return path


@pytest.fixture
def recorded(tmp_path: Path, calls: Path) -> tuple[str, str]:
    """A run that called the model twice, the fare tool twice (one failure) and charged."""
    db = str(tmp_path / "runs.db")
    code, out = cli("run", WORKFLOW, "--goal", '{"flaky": true}', "--db", db)
    assert code == 0, out
    assert live_calls(calls) == ["model.chat", "fares_api", "model.chat", "fares_api", "charge"]
    return db, out.split()[1].rstrip(":")


def show_json(db: str, run_id: str) -> dict[str, Any]:
    code, out = cli("show", run_id, "--json", "--db", db)
    assert code == 0, out
    doc: dict[str, Any] = json.loads(out)
    return doc


def run_ids(db: str) -> list[str]:
    code, out = cli("runs", "--json", "--db", db)
    assert code == 0, out
    return [run["run_id"] for run in json.loads(out)["runs"]]


def test_rerun_offline_makes_no_live_call(recorded: tuple[str, str], calls: Path) -> None:
    db, run_id = recorded
    before = live_calls(calls)
    code, out = cli("rerun", run_id, "--offline", "--db", db)
    assert code == 0, out
    assert live_calls(calls) == before  # not one step function was entered
    new_id = out.splitlines()[-1]
    assert new_id != run_id
    assert f"run {new_id}: completed" in out
    assert "answered from the recording: 5 step(s); missed: 0" in out
    old, new = show_json(db, run_id), show_json(db, new_id)
    assert [t["output"] for t in new["tasks"]] == [t["output"] for t in old["tasks"]]
    assert new["goal"] == old["goal"]
    assert {s["outcome"] for s in new["steps"]} == {
        f"served from run:{run_id}", f"served from run:{run_id}: builtins.ConnectionError"}
    # The recorded usage is carried over, so a budget policy sees what it saw then.
    assert new["step_totals"] == old["step_totals"]


def test_rerun_offline_with_a_changed_prompt_fails_and_shows_the_difference(
    recorded: tuple[str, str], calls: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    db, run_id = recorded
    before = live_calls(calls)
    monkeypatch.setattr(steps_workflows, "PROMPT", "Quote a trip to {city}, cheapest fare.{notes}")
    code, out = cli("rerun", run_id, "--offline", "--db", db)
    assert code == 1, out
    assert live_calls(calls) == before
    assert ("missed the recording: Step 'model.chat' asked for a request the recording does "
            "not hold") in out
    assert '-  "Price a trip to Lisbon."' in out
    assert '+  "Quote a trip to Lisbon, cheapest fare."' in out
    new_id = out.splitlines()[-1]
    assert new_id in run_ids(db)
    assert show_json(db, new_id)["status"] == "waiting"


def test_rerun_with_new_code_given_by_workflow_is_checked_against_the_recording(
    recorded: tuple[str, str], calls: Path,
) -> None:
    db, run_id = recorded
    before = live_calls(calls)
    code, out = cli("rerun", run_id, "--offline", "--workflow", "steps_workflows:reworded",
                    "--db", db)
    assert code == 1, out
    assert '+  "Quote a trip to Lisbon, cheapest fare."' in out
    code, out = cli("rerun", run_id, "--offline", "--workflow", "steps_workflows:twin",
                    "--db", db)
    assert code == 0, out
    assert show_json(db, out.splitlines()[-1])["workflow"] == "audit-steps-twin"
    assert live_calls(calls) == before


def test_rerun_with_another_goal_misses_and_names_the_request(
    recorded: tuple[str, str], calls: Path, tmp_path: Path,
) -> None:
    db, run_id = recorded
    goal = tmp_path / "goal.json"
    goal.write_text('{"city": "Porto", "flaky": true}', encoding="utf-8")
    code, out = cli("rerun", run_id, "--offline", "--goal", f"@{goal}", "--db", db)
    assert code == 1, out
    assert '+  "Price a trip to Porto."' in out
    assert show_json(db, out.splitlines()[-1])["goal"]["city"] == "Porto"


def test_rerun_without_offline_is_refused_in_one_line(recorded: tuple[str, str]) -> None:
    db, run_id = recorded
    code, out = cli("rerun", run_id, "--db", db)
    assert code == 2
    (line,) = out.splitlines()
    assert line.startswith("Error: rerun needs --offline: a live rerun")
    assert "not built yet" in line
    assert run_ids(db) == [run_id]  # nothing was started
    _, help_text = cli("rerun", "--help")
    assert "a live rerun (calling models and tools again) is not built yet" in " ".join(
        help_text.split())


@pytest.mark.parametrize(("args", "code", "says"), [
    (["rerun", "nope", "--offline"], 1, "No run 'nope'"),
    (["rerun", "RUN", "--offline", "--goal", "[1]"], 2, "must be a JSON object"),
    (["rerun", "RUN", "--offline", "--goal", "{nope"], 2, "is not valid JSON"),
    (["rerun", "RUN", "--offline", "--workflow", "garbage"], 2, "is not MODULE:WORKFLOW"),
    (["rerun", "RUN", "--offline", "--workflow", "no_such_mod_xyz:wf"], 1,
     "Cannot import module"),
], ids=["unknown-run", "goal-not-object", "goal-not-json", "bad-ref", "missing-module"])
def test_rerun_bad_input_is_one_clear_line(
    recorded: tuple[str, str], args: list[str], code: int, says: str,
) -> None:
    db, run_id = recorded
    got, out = cli(*[run_id if a == "RUN" else a for a in args], "--db", db)
    assert got == code, out
    (line,) = [ln for ln in out.splitlines() if ln.strip()]
    assert line.startswith("Error"), out
    assert says in line, out
    assert run_ids(db) == [run_id]


def test_rerun_of_a_run_whose_code_is_gone_asks_for_workflow(
    tmp_path: Path, calls: Path,
) -> None:
    # Recorded by another process from a module that no longer exists here.
    module_dir = tmp_path / "gone"
    module_dir.mkdir()
    (module_dir / "gone_flow.py").write_text(
        "from steps_workflows import build\nwf = build('gone-flow')\n", encoding="utf-8")
    db = str(tmp_path / "runs.db")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(module_dir), str(Path(steps_workflows.__file__).parent)])}
    done = subprocess.run(
        [sys.executable, "-m", "ledgerflow.replay.cli", "run", "gone_flow:wf", "--goal", "{}",
         "--db", db], env=env, capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.split()[1].rstrip(":")
    before = live_calls(calls)
    code, out = cli("rerun", run_id, "--offline", "--db", db)
    assert code == 1
    (line,) = out.splitlines()
    assert "the workflow 'gone-flow' the run recorded is not found here" in line
    assert line.endswith("give the code to run with --workflow MODULE:WORKFLOW.")
    code, out = cli("rerun", run_id, "--offline", "--workflow", "steps_workflows:twin",
                    "--db", db)
    assert code == 0, out
    assert live_calls(calls) == before
