"""The CLI: every command works on the demo's store, and every bad input a user
can type gives one clear line and a non-zero exit code, never a traceback."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ledgerflow.replay.cli import main


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    db = tmp_path_factory.mktemp("cli") / "ledgerflow.db"
    result = invoke("demo", "--db", str(db))
    assert result.exit_code == 0, result.output
    line = next(ln for ln in result.output.splitlines()
                if ln.startswith("run ") and "completed" in ln)
    run_id = line.split()[1].rstrip(":")
    return db, run_id


def test_demo_prints_the_decision_log_of_a_completed_run(demo_db: tuple[Path, str]) -> None:
    db, run_id = demo_db
    result = invoke("log", run_id, "--db", str(db))
    assert result.exit_code == 0
    for event in ("AgentFailed", "OutputRejected", "TaskEscalated", "EscalationResolved",
                  "RunCompleted"):
        assert event in result.output


def test_demo_books_exactly_once(tmp_path: Path) -> None:
    result = invoke("demo", "--db", str(tmp_path / "x.db"))
    assert "bookings made: 1" in result.output


def test_runs_lists_the_demo_run(demo_db: tuple[Path, str]) -> None:
    db, run_id = demo_db
    result = invoke("runs", "--db", str(db), "--status", "completed")
    assert result.exit_code == 0
    assert run_id in result.output


def test_show_gives_status_tasks_and_timeline(demo_db: tuple[Path, str]) -> None:
    db, run_id = demo_db
    result = invoke("show", run_id, "--db", str(db))
    assert result.exit_code == 0
    assert "completed" in result.output
    assert "book" in result.output
    assert "timeline" in result.output


def test_log_jsonl_is_one_json_document_per_event(demo_db: tuple[Path, str]) -> None:
    db, run_id = demo_db
    result = invoke("log", run_id, "--db", str(db), "--format", "jsonl")
    lines = result.output.strip().splitlines()
    docs = [json.loads(line) for line in lines]
    assert [d["seq"] for d in docs] == list(range(1, len(docs) + 1))
    dispatched = [d for d in docs if d["type"] == "TaskDispatched"]
    assert all(d["data"]["idempotency_key"] for d in dispatched)
    assert all(d["machine"].startswith("task:") for d in dispatched)


def test_log_csv_has_a_header_and_a_row_per_event(demo_db: tuple[Path, str]) -> None:
    db, run_id = demo_db
    rows = invoke("log", run_id, "--db", str(db), "--format", "csv").output.strip().splitlines()
    assert rows[0].startswith("seq,at,type,machine,trigger,src,dst,reason")
    conn = sqlite3.connect(db)
    (count,) = conn.execute("SELECT count(*) FROM events WHERE run_id=?", (run_id,)).fetchone()
    assert len(rows) == count + 1


def assert_one_clear_line(result: Result, *, code: int | None = None) -> None:
    assert result.exit_code != 0, result.output
    if code is not None:
        assert result.exit_code == code
    assert "Traceback" not in result.output
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(error_lines) == 1, result.output


BAD_INPUTS = [
    (["show", "nope"], "No run 'nope'"),
    (["log", "nope"], "No run 'nope'"),
    (["log", "RUN", "--format", "xml"], "Invalid value for '--format'"),
    (["runs", "--status", "sleeping"], "Invalid value for '--status'"),
    (["runs", "--limit", "0"], "Invalid value for '--limit'"),
    (["run", "nomodule_xyz:wf", "--goal", "{}"], "Cannot import module 'nomodule_xyz'"),
    (["run", "ledgerflow.examples.travel", "--goal", "{}"], "is not MODULE:WORKFLOW"),
    (["run", "ledgerflow.examples.travel:TripGoal", "--goal", "{}"],
     "is not a ledgerflow Workflow"),
    (["run", "ledgerflow.examples.travel:wf", "--goal", "{not json"], "is not valid JSON"),
    (["run", "ledgerflow.examples.travel:wf", "--goal", "[1]"], "must be a JSON object"),
    (["run", "ledgerflow.examples.travel:wf", "--goal", "@/no/such/file.json"], "cannot be read"),
    (["run", "ledgerflow.examples.travel:wf", "--goal", '{"destination": "Lisbon"}'], "passengers"),
    (["resolve", "RUN", "price"], "exactly one of --output, --retry or --abandon"),
    (["resolve", "RUN", "price", "--retry", "--abandon"], "exactly one of"),
    (["resolve", "RUN", "book", "--retry"], "not escalated"),
    (["resolve", "RUN", "ghost", "--retry"], "has no task 'ghost'"),
    (["resolve", "RUN", "price", "--output", "{bad"], "is not valid JSON"),
    (["show"], "Missing argument 'RUN'"),
    (["frobnicate"], "No such command"),
    (["replay", "nope"], "No run 'nope'"),
    (["replay", "RUN", "--to", "0"], "Invalid value for '--to'"),
    (["replay", "RUN", "--to", "x"], "Invalid value for '--to'"),
    (["verify", "nope"], "No run 'nope'"),
    (["verify", "RUN", "--workflow", "ledgerflow.examples.travel:nope"],
     "has no attribute 'nope'"),
    (["resume", "nope"], "No run 'nope'"),
    (["resume", "RUN", "--workflow", "no_such_mod:wf"], "Cannot import module"),
    (["fork", "RUN"], "Missing option '--at'"),
    (["fork", "RUN", "--at", "0"], "Invalid value for '--at'"),
    (["fork", "nope", "--at", "3"], "No run 'nope'"),
    (["diff", "RUN", "nope"], "No run 'nope'"),
    (["diff", "RUN"], "Missing argument 'RUN_B'"),
    (["resolve", "nope", "price", "--retry"], "No run 'nope'"),
]


@pytest.mark.parametrize(
    ("args", "message"), BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_gives_one_clear_line_and_nonzero_exit(
    demo_db: tuple[Path, str], args: list[str], message: str
) -> None:
    db, run_id = demo_db
    args = [run_id if a == "RUN" else a for a in args]
    if args[0] not in ("frobnicate",):
        args += ["--db", str(db)]
    result = invoke(*args)
    assert_one_clear_line(result)
    assert message in result.output


def test_reading_a_missing_store_does_not_create_it(tmp_path: Path) -> None:
    missing = tmp_path / "absent.db"
    result = invoke("runs", "--db", str(missing))
    assert_one_clear_line(result, code=1)
    assert "store at" in result.output
    assert not missing.exists()


def test_a_file_that_is_not_a_store_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.db"
    bogus.write_text("these are my notes, not a database\n" * 100)
    result = invoke("runs", "--db", str(bogus))
    assert_one_clear_line(result, code=1)
    assert bogus.read_text().startswith("these are my notes")


def test_unknown_url_scheme_is_refused(tmp_path: Path) -> None:
    result = invoke("runs", "--db", "mysql://localhost/x")
    assert_one_clear_line(result, code=1)
    assert "mysql" in result.output


def test_cli_resolve_refuses_an_invalid_output_and_appends_nothing(tmp_path: Path) -> None:
    db = str(tmp_path / "w.db")
    started = invoke("run", "ledgerflow.examples.travel_unreviewed:wf", "--goal",
                     '{"destination": "Lisbon", "passengers": 2}', "--db", db)
    assert started.exit_code == 0, started.output
    run_id = started.output.split()[1].rstrip(":")
    assert "waiting on price" in started.output
    conn = sqlite3.connect(db)
    before = conn.execute("SELECT count(*) FROM events").fetchone()
    for bad in ('[1, 2]', '{"total": "lots", "line_items": [], "confidence": 1}'):
        result = invoke("resolve", run_id, "price", "--output", bad, "--db", db)
        assert_one_clear_line(result, code=1)
        assert "does not satisfy PricingOutput" in result.output
    for not_json in ('{"total": NaN, "line_items": [], "confidence": 1}',
                     '{"total": 1e400, "line_items": [], "confidence": 1}'):
        result = invoke("resolve", run_id, "price", "--output", not_json, "--db", db)
        assert_one_clear_line(result, code=2)
        assert "not a JSON number" in result.output
    assert conn.execute("SELECT count(*) FROM events").fetchone() == before
    good = json.dumps({"total": 836.0, "line_items": [], "confidence": 0.9})
    done = invoke("resolve", run_id, "price", "--output", good, "--by", "cli:test", "--db", db)
    assert done.exit_code == 0, done.output
    assert "completed" in done.output
