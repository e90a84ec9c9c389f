"""Issue 12 scenario 9: logs of log format 1 replay, verify and resume under format 2.

Format 2 (``machines/versions.py``'s ``LOG_FORMATS``) renamed ``TimerFired`` to
``RetryDue`` and gave ``OutputReceived`` a ``duration_ms``. The fixture
``fixtures/evolution/format1.db`` was written by the format-1 code
(``make_evolution_fixtures.py``; its rows also in ``format1.jsonl``) and is
never regenerated: every test works on a copy, and the chain is checked on
the original bytes, which hold ``TimerFired`` and no ``duration_ms``.
A log from a newer version (a newer ``log_format``, an unknown event type) is
refused with one line naming the seq and the run.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ledgerflow import Orchestrator, open_store
from ledgerflow.eventstore import SCHEMA_VERSION, NewEvent, check_chain, upgrade_store
from ledgerflow.examples import travel
from ledgerflow.machines import load_run_state
from ledgerflow.machines.events import (
    LOG_FORMAT,
    EventTooNewError,
    OutputReceived,
    RetryDue,
    TimerFired,
    decode_event,
    encode_event,
)
from ledgerflow.machines.upcasting import RENAMED_EVENTS
from ledgerflow.machines.versions import LOG_FORMATS
from ledgerflow.replay import verify_run
from ledgerflow.replay.cli import main

HERE = Path(__file__).parent
FIXTURE = HERE / "fixtures" / "evolution"
RUNS: dict[str, str] = json.loads((FIXTURE / "runs.json").read_text())
LAST_SEQ = {"completed": 36, "interrupted": 32}
STATUS = {"completed": "completed", "interrupted": "running"}


@pytest.fixture
async def db(tmp_path: Path) -> Path:
    """A private copy of the format-1 store (the committed file is never opened).

    The file is at store schema 3, so the copy gets ``ledgerflow db upgrade``
    first, as a user's old store does: the schema gains tables, and not one
    byte of the log changes (the chain test below checks the original bytes).
    """
    copy = tmp_path / "format1.db"
    shutil.copyfile(FIXTURE / "format1.db", copy)
    assert await upgrade_store(copy) == (3, SCHEMA_VERSION)
    return copy


@pytest.fixture(autouse=True)
def fresh_bookings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The demo's fake booking system, emptied: each test sees only its own bookings."""
    calls: list[str] = []
    monkeypatch.setattr(travel, "BOOKINGS", {})
    monkeypatch.setattr(travel, "BOOKING_CALLS", calls)
    return calls


def _rows(db: Path, run_id: str) -> list[tuple[int, str, str]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT seq, type, data FROM events WHERE run_id = ? ORDER BY seq",
                            (run_id,)).fetchall()
    finally:
        conn.close()


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


# -- the fixture is format 1, byte for byte ------------------------------------------


def test_the_format_history_names_this_change() -> None:
    assert LOG_FORMAT == 2 == max(LOG_FORMATS)
    assert "RetryDue" in LOG_FORMATS[2]
    assert "duration_ms" in LOG_FORMATS[2]
    assert RENAMED_EVENTS == {"TimerFired": "RetryDue"}
    assert TimerFired is RetryDue  # the old Python name still works for code


@pytest.mark.parametrize("role", list(RUNS))
async def test_fixture_chain_verifies_on_its_original_format_1_bytes(db: Path, role: str) -> None:
    rows = _rows(db, RUNS[role])
    assert len(rows) == LAST_SEQ[role]
    assert any(t == "TimerFired" and '"type":"TimerFired"' in d for _, t, d in rows)
    assert not any("RetryDue" in d or "duration_ms" in d or "log_format" in d for _, _, d in rows)
    dumped = [json.loads(line) for line in (FIXTURE / "format1.jsonl").read_text().splitlines()]
    assert [(r["seq"], r["type"], r["data"]) for r in dumped if r["run_id"] == RUNS[role]] == rows
    async with open_store(db) as store:
        assert check_chain(RUNS[role], await store.read_all(RUNS[role])) is None


@pytest.mark.parametrize("role", list(RUNS))
async def test_format_1_events_decode_as_todays_classes(db: Path, role: str) -> None:
    events = [decode_event(data) for _, _, data in _rows(db, RUNS[role])]
    due = [e for e in events if isinstance(e, RetryDue)]
    assert {e.task_id for e in due} == {"flights", "hotels"}
    assert all(type(e) is RetryDue and e.type == "TimerFired" for e in due)  # as recorded
    received = [e for e in events if isinstance(e, OutputReceived)]
    assert received
    assert all(e.duration_ms is None for e in received)
    async with open_store(db) as store:
        state = await load_run_state(store, RUNS[role])
    assert (state.status.value, state.seq) == (STATUS[role], LAST_SEQ[role])
    assert state.tasks["flights"].status.value == "succeeded"


def test_renamed_event_decodes_equal_to_the_one_todays_code_writes() -> None:
    old = decode_event(b'{"type":"TimerFired","reason":"Backoff elapsed.","task_id":"hotels"}')
    new = RetryDue(task_id="hotels", reason="Backoff elapsed.")
    assert old == new
    assert type(old) is type(new)
    assert encode_event(new) == (
        b'{"type":"RetryDue","reason":"Backoff elapsed.","task_id":"hotels"}')
    assert new.type == "RetryDue"


# -- verify, replay at every seq, resume ---------------------------------------------


@pytest.mark.parametrize("role", list(RUNS))
async def test_format_1_run_passes_all_three_checks(db: Path, role: str) -> None:
    async with open_store(db) as store:
        report = await verify_run(store, RUNS[role], workflow=travel.wf)
    assert [c.name for c in report.checks] == ["chain", "transitions", "determinism"]
    assert report.ok, report.lines()


@pytest.mark.parametrize("role", list(RUNS))
def test_format_1_run_verifies_on_the_cli_with_its_workflow_found_by_name(
    db: Path, role: str
) -> None:
    code, out = _cli("verify", RUNS[role], "--db", str(db))
    assert code == 0, out
    assert out.count("PASS  ") == 3, out


@pytest.mark.parametrize("role", list(RUNS))
def test_format_1_run_replays_at_every_seq(db: Path, role: str) -> None:
    run_id = RUNS[role]
    for seq in range(1, LAST_SEQ[role] + 1):
        code, out = _cli("replay", run_id, "--to", str(seq), "--json", "--db", str(db))
        assert code == 0, (seq, out)
        doc = json.loads(out)
        assert (doc["run_id"], doc["seq"]) == (run_id, seq)
    assert doc["status"] == STATUS[role]


async def test_interrupted_format_1_run_resumes_and_books_once(
    db: Path, fresh_bookings: list[str]
) -> None:
    run_id = RUNS["interrupted"]
    async with open_store(db) as store:
        run = await Orchestrator(store).resume(run_id)  # the dead format-1 process's lease
        report = await verify_run(store, run_id, workflow=travel.wf)
        envelopes = await store.read_all(run_id)
    assert run.status == "completed", run.reason
    assert len(fresh_bookings) == 1
    assert report.ok, report.lines()
    # The format-1 prefix is untouched: old and new events share one verified chain.
    assert [(e.seq, e.type, e.data.decode()) for e in envelopes[:LAST_SEQ["interrupted"]]] == [
        (s, t, d) for s, t, d in _rows(FIXTURE / "format1.db", run_id)]


def test_interrupted_format_1_run_resumes_on_the_cli(db: Path, fresh_bookings: list[str]) -> None:
    code, out = _cli("resume", RUNS["interrupted"], "--db", str(db))
    assert code == 0, out
    assert f"run {RUNS['interrupted']}: completed" in out
    assert len(fresh_bookings) == 1
    code, out = _cli("verify", RUNS["interrupted"], "--db", str(db))
    assert code == 0, out


async def test_todays_run_writes_the_new_name_and_verifies(tmp_path: Path) -> None:
    db = tmp_path / "today.db"
    async with open_store(db) as store:
        run = await Orchestrator(store).start(travel.wf, {"destination": "Lisbon", "passengers": 2})
        report = await verify_run(store, run.run_id, workflow=travel.wf)
    assert run.status == "completed", run.reason
    assert report.ok, report.lines()
    types = {t for _, t, _ in _rows(db, run.run_id)}
    assert "RetryDue" in types
    assert "TimerFired" not in types


# -- a newer version's log is refused, end to end --------------------------------------


async def _append_raw(db: Path, run_id: str, type_: str, data: bytes) -> int:
    async with open_store(db) as store:
        seq = await store.last_seq(run_id)
        await store.append(run_id, [NewEvent(type_, data)], expected_seq=seq)
    return seq + 1


NEWER_START = (b'{"type":"RunStarted","workflow":"travel","goal":{},"started_at":'
               b'"2027-01-01T00:00:00+00:00","max_concurrency":1,"log_format":'
               + str(LOG_FORMAT + 1).encode() + b"}")
TELEPORTED = b'{"type":"TaskTeleported","task_id":"book"}'


def _user_cli(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The command as a user runs it, in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "ledgerflow.replay.cli", *args, "--db", str(db)],
        cwd=HERE, env=dict(os.environ), capture_output=True, text=True, timeout=120,
        check=False)


@pytest.mark.parametrize("command", [["resume"], ["replay", "--json"], ["log"]])
def test_newer_log_format_is_refused_in_one_line(db: Path, command: list[str]) -> None:
    asyncio.run(_append_raw(db, "from-the-future", "RunStarted", NEWER_START))
    done = _user_cli(db, command[0], "from-the-future", *command[1:])
    assert done.returncode == 1, done.stdout + done.stderr
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert f"log format {LOG_FORMAT + 1}" in lines[0]
    assert "at seq 1 of run 'from-the-future'" in lines[0]
    assert "upgrade ledgerflow" in lines[0]


@pytest.mark.parametrize("command", [["resume"], ["replay", "--json"], ["log"]])
def test_unknown_event_type_is_refused_in_one_line(db: Path, command: list[str]) -> None:
    run_id = RUNS["interrupted"]
    seq = asyncio.run(_append_raw(db, run_id, "TaskTeleported", TELEPORTED))
    done = _user_cli(db, command[0], run_id, *command[1:])
    assert done.returncode == 1, done.stdout + done.stderr
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert f"'TaskTeleported' at seq {seq} of run '{run_id}'" in lines[0]
    assert "upgrade ledgerflow" in lines[0]


async def test_newer_log_is_refused_by_the_api_naming_seq_and_run(db: Path) -> None:
    seq = await _append_raw(db, RUNS["completed"], "TaskTeleported", TELEPORTED)
    async with open_store(db) as store:
        with pytest.raises(EventTooNewError) as caught:
            await load_run_state(store, RUNS["completed"])
    assert (caught.value.event_type, caught.value.seq, caught.value.run_id) == (
        "TaskTeleported", seq, RUNS["completed"])
