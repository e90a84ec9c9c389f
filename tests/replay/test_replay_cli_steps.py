"""The audit view of journaled steps: ``show``, ``log`` and ``replay --step`` list each model
and tool call under its task's attempt, with its usage and its outcome.

The article's complaint: a run's log says "task quote failed, retried, succeeded" and
nobody can tell which model call cost what, which tool call failed, or whether the
payment went through before the process died.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
import steps_workflows
from click.testing import CliRunner

from ledgerflow.replay.cli import main
from ledgerflow.replay.step_view import STEP_KEYS

WORKFLOW = f"{steps_workflows.__name__}:wf"


def cli(*args: str, columns: int = 200, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env={"COLUMNS": str(columns)}, input=stdin,
                                catch_exceptions=False)
    return result.exit_code, result.output


def record(db: Path, **goal: Any) -> str:
    """Run the steps workflow for ``goal`` through the CLI; its run id."""
    code, out = cli("run", WORKFLOW, "--goal", json.dumps(goal), "--db", str(db))
    assert code == 0, out
    return out.split()[1].rstrip(":")


@pytest.fixture
def calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "calls.txt"
    monkeypatch.setenv("STEPS_CALLS", str(path))
    return path


@pytest.fixture
def flaky_run(tmp_path: Path, calls: Path) -> tuple[str, str]:
    """A run whose fare tool failed on attempt 1: five steps over three attempts."""
    db = tmp_path / "runs.db"
    return str(db), record(db, flaky=True)


def section(out: str, title: str, end: str) -> list[str]:
    lines = [line.rstrip() for line in out.splitlines()]
    start = lines.index(title)
    stop = next(i for i in range(start + 1, len(lines)) if lines[i].startswith(end))
    return [line for line in lines[start + 3:stop] if line.strip()]  # past title, header, rule


def show_json(db: str, run_id: str) -> dict[str, Any]:
    code, out = cli("show", run_id, "--json", "--db", db)
    assert code == 0, out
    doc: dict[str, Any] = json.loads(out)
    return doc


def jsonl(db: str, run_id: str) -> list[dict[str, Any]]:
    code, out = cli("log", run_id, "--format", "jsonl", "--db", db)
    assert code == 0, out
    return [json.loads(line) for line in out.splitlines()]


def test_show_lists_each_model_call_under_its_attempt_with_tokens_and_cost(
    flaky_run: tuple[str, str],
) -> None:
    db, run_id = flaky_run
    code, out = cli("show", run_id, "--db", db)
    assert code == 0, out
    assert "steps: 5 (2 model calls, 2 tool calls), tokens 100, cost 0.004" in out
    names = {"model.chat", "fares_api", "charge"}
    rows = [cells for cells in (line.split() for line in section(
        out, "steps (under each task's attempt)", "timeline"))
        if names & set(cells[:4])]  # not the lines a long request wraps onto
    # Each attempt's steps under it; the duration (ms) is wall-clock, all else is pinned.
    assert [cells[:4] for cells in rows] == [
        ["quote", "1", "0", "model.chat"],
        ["1", "fares_api", "step", "0"],
        ["quote", "2", "0", "model.chat"],
        ["1", "fares_api", "tool", "fares"],
        ["book", "1", "0", "charge"],
    ]
    assert rows[0][4:8] + rows[0][9:10] == ["llm", "fake-mini", "50", "0.002", "ok"]
    assert rows[1][3:5] + rows[1][6:7] == ["0", "0", "builtins.ConnectionError"]
    assert rows[2][4:8] + rows[2][9:10] == ["llm", "fake-mini", "50", "0.002", "ok"]
    assert rows[3][4:6] + rows[3][7:8] == ["0", "0", "ok"]
    assert rows[4][4:8] + rows[4][9:10] == ["tool", "payments", "0", "0", "ok"]


def test_show_json_lists_the_steps_and_counts_model_and_tool_calls(
    flaky_run: tuple[str, str],
) -> None:
    db, run_id = flaky_run
    doc = show_json(db, run_id)
    assert doc["step_totals"] == {"steps": 5, "llm_calls": 2, "tool_calls": 2, "tokens": 100,
                                  "cost": pytest.approx(0.004)}
    assert all(tuple(step) == STEP_KEYS for step in doc["steps"])
    assert [(s["task_id"], s["attempt"], s["index"], s["name"], s["kind"], s["model"] or s["tool"],
             s["tokens"], s["outcome"]) for s in doc["steps"]] == [
        ("quote", 1, 0, "model.chat", "llm", "fake-mini", 50, "ok"),
        ("quote", 1, 1, "fares_api", "step", None, 0, "builtins.ConnectionError"),
        ("quote", 2, 0, "model.chat", "llm", "fake-mini", 50, "ok"),
        ("quote", 2, 1, "fares_api", "tool", "fares", 0, "ok"),
        ("book", 1, 0, "charge", "tool", "payments", 0, "ok"),
    ]
    failed = doc["steps"][1]
    assert failed["message"] == "the fare service dropped the line"
    assert doc["budget"]["tokens"] == doc["step_totals"]["tokens"]


def test_outcome_unknown_step_is_shown_as_unknown(tmp_path: Path, calls: Path) -> None:
    # The charge outlived the agent's timeout: it started, and nobody knows if it acted.
    db = str(tmp_path / "runs.db")
    run_id = record(tmp_path / "runs.db", hang=True)
    code, out = cli("show", run_id, "--db", db)
    assert code == 0, out
    steps = section(out, "steps (under each task's attempt)", "timeline")
    (charge,) = [line for line in steps if "charge" in line]
    assert "outcome unknown" in charge
    assert "(no result recorded)" in charge
    (doc,) = [s for s in show_json(db, run_id)["steps"] if s["name"] == "charge"]
    assert (doc["outcome"], doc["side_effect"]) == ("outcome unknown", True)
    _, table = cli("log", run_id, "--db", db)
    (started,) = [line for line in table.splitlines() if "StepStarted" in line]
    assert "attempt 1 step 0 charge (step): outcome unknown" in started
    _, stepped = cli("replay", run_id, "--step", "--db", db, stdin="")
    assert "  step:    attempt 1 step 0 charge (step): outcome unknown" in stepped


def test_log_says_what_each_step_did_in_every_format(flaky_run: tuple[str, str]) -> None:
    db, run_id = flaky_run
    docs = jsonl(db, run_id)
    recorded = [d for d in docs if d["type"] == "StepRecorded"]
    started = [d for d in docs if d["type"] == "StepStarted"]
    assert [d["step"]["name"] for d in recorded] == [
        "model.chat", "fares_api", "model.chat", "fares_api", "charge"]
    assert recorded[0]["step"]["tokens"] == 50
    assert recorded[0]["data"]["request"] == {"args": ["Price a trip to Lisbon."], "kwargs": {}}
    # The side effect's start and its outcome are one step, seen from both events.
    assert started[0]["step"] == recorded[-1]["step"]
    assert all("step" not in d for d in docs if not d["type"].startswith("Step"))

    model_line = ("attempt 1 step 0 model.chat (llm fake-mini): ok; 50 tokens, cost 0.002, ")
    _, table = cli("log", run_id, "--db", db)
    assert model_line in table
    assert f"charge: side effect started; outcome at seq {recorded[-1]['seq']}" in table
    _, text = cli("log", run_id, "--format", "csv", "--db", db)
    rows = list(csv.DictReader(io.StringIO(text)))
    by_type = {row["seq"]: row for row in rows}
    assert by_type[str(recorded[0]["seq"])]["step"].startswith(model_line)
    assert by_type[str(recorded[1]["seq"])]["step"].startswith(
        "attempt 1 step 1 fares_api (step): builtins.ConnectionError; ")
    assert all(row["step"] == "" for row in rows if not row["type"].startswith("Step"))
    assert by_type[str(recorded[0]["seq"])]["reason"] == recorded[0]["reason"]


def test_a_long_prompt_is_cut_in_the_tables_and_kept_whole_in_jsonl(
    tmp_path: Path, calls: Path,
) -> None:
    db = str(tmp_path / "runs.db")
    notes = " Mind the " + "very " * 2000 + "fine print."
    run_id = record(tmp_path / "runs.db", notes=notes)
    for command in (["show", run_id], ["log", run_id], ["replay", run_id, "--step"]):
        code, out = cli(*command, "--db", db, stdin="")
        assert code == 0, out
        assert "very " * 60 not in out, command  # no cell holds more than 200 of it
        assert "Price a trip" in out  # a summary of the request is shown, cut (…)
        assert "…" in out
        assert len(out) < 40_000, command  # the prompt alone is over 10,000 characters
    (chat,) = [d for d in jsonl(db, run_id) if d["type"] == "StepRecorded"
               and d["data"]["name"] == "model.chat"]
    assert chat["data"]["request"]["args"] == [f"Price a trip to Lisbon.{notes}"]


def test_replay_json_gives_the_step_totals_up_to_any_seq(flaky_run: tuple[str, str]) -> None:
    db, run_id = flaky_run
    first_step = next(d["seq"] for d in jsonl(db, run_id) if d["type"] == "StepRecorded")
    code, out = cli("replay", run_id, "--json", "--db", db)
    assert code == 0, out
    assert json.loads(out)["step_totals"]["tokens"] == 100
    _, out = cli("replay", run_id, "--to", str(first_step), "--json", "--db", db)
    doc = json.loads(out)
    assert doc["step_totals"] == {"steps": 1, "llm_calls": 1, "tool_calls": 0, "tokens": 50,
                                  "cost": 0.002}
    assert [s["name"] for s in doc["steps"]] == ["model.chat"]
    _, text = cli("replay", run_id, "--to", str(first_step), "--db", db)
    assert "steps: 1 (1 model call, 0 tool calls), tokens 50, cost 0.002" in text


def test_replay_step_says_what_each_step_did(flaky_run: tuple[str, str]) -> None:
    db, run_id = flaky_run
    code, out = cli("replay", run_id, "--step", "--db", db, stdin="")
    assert code == 0, out
    notes = [line for line in out.splitlines() if line.startswith("  step:")]
    assert [" ".join(line.split()[1:5]) for line in notes] == [
        "attempt 1 step 0", "attempt 1 step 1", "attempt 2 step 0", "attempt 2 step 1",
        "attempt 1 step 0", "attempt 1 step 0"]
    assert "fares_api (tool fares): ok; 0 tokens, cost 0" in notes[3]
    _, out = cli("replay", run_id, "--step", "--json", "--db", db, stdin="")
    docs = [json.loads(line) for line in out.splitlines()]
    assert [d["step"]["outcome"] for d in docs if "step" in d] == [
        "ok", "builtins.ConnectionError", "ok", "ok", "ok", "ok"]


def test_show_at_80_columns_keeps_each_step_on_the_screen(tmp_path: Path, calls: Path) -> None:
    db = str(tmp_path / "runs.db")
    run_id = record(tmp_path / "runs.db", hang=True)
    code, out = cli("show", run_id, "--db", db, columns=80)
    assert code == 0, out
    assert max(len(line) for line in out.splitlines()) <= 80
    steps = " ".join(section(out, "steps (under each task's attempt)", "timeline"))
    for cell in ("model.chat", "llm fake-mini", "0.002", "outcome unknown", "attempt 1"):
        assert cell in steps


def test_a_run_without_steps_shows_no_steps_section(tmp_path: Path) -> None:
    db = str(tmp_path / "runs.db")
    code, out = cli("run", "ledgerflow.examples.travel_unreviewed:wf", "--goal",
                    '{"destination": "Lisbon", "passengers": 2}', "--db", db)
    assert code == 0, out
    run_id = out.split()[1].rstrip(":")
    _, text = cli("show", run_id, "--db", db)
    assert "steps" not in text
    doc = show_json(db, run_id)
    assert doc["steps"] == []
    assert doc["step_totals"] == {"steps": 0, "llm_calls": 0, "tool_calls": 0, "tokens": 0,
                                  "cost": 0.0}
