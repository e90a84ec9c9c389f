"""A log written by ledgerflow 0.1 (then runledger, with its old recorded names) opens,
verifies (all three checks), resolves, resumes and forks under today's code; a log or a
store from a newer version is refused with a clear error.

The fixture ``logs/v0_1/v0_1.db`` was written by the 0.1 code
(``logs/v0_1/generate_v01_fixture.py.txt``, its dump in ``events_dump.txt``); every test
works on a copy. Its three runs record 0.1 names: ``workflow_ref`` module paths
(``examples.travel:wf``) and, in the permanent run, ``machines.errors.PermanentError``.
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

# Importable as the fixture recorded it (pytest puts this folder on sys.path);
# importing it constructs, and so registers, the workflow "legacy_permanent".
import legacy_v01_workflows
import pytest
from click.testing import CliRunner

from ledgerflow import Orchestrator, open_store
from ledgerflow.eventstore import (
    SCHEMA_VERSION,
    NewEvent,
    StoreUpgradeRequiredError,
    check_chain,
    upgrade_store,
)
from ledgerflow.eventstore.errors import SchemaVersionError
from ledgerflow.examples import travel
from ledgerflow.machines import RunState, Workflow, load_run_state
from ledgerflow.machines.events import AgentFailed, EventTooNewError, decode_event, decode_logged
from ledgerflow.machines.loader import find_workflow
from ledgerflow.machines.versions import LOG_FORMAT
from ledgerflow.replay import fork_run, verify_run
from ledgerflow.replay.cli import main

HERE = Path(__file__).parent
FIXTURE = HERE / "logs" / "v0_1"
RUNS: dict[str, str] = json.loads((FIXTURE / "runs.json").read_text())
BOOK_KEY = "e2611486772dcfbad7b0e80e4b66f12b"  # the crashed run's TaskDispatched(book), seq 32
EXPECTED = {
    "waiting": ("travel-unreviewed", "ledgerflow.examples.travel_unreviewed:wf", "waiting", 28),
    "crashed": ("travel", "ledgerflow.examples.travel:wf", "running", 32),
    "permanent": ("legacy_permanent", "legacy_v01_workflows:permanent_wf", "waiting", 8),
}
FORK_AT = {"waiting": 14, "crashed": 20, "permanent": 4}


@pytest.fixture
def old_db(tmp_path: Path) -> Path:
    """A private copy of the 0.1 store as 0.1 wrote it (schema 1; the fixture is never opened)."""
    copy = tmp_path / "v0_1.db"
    shutil.copyfile(FIXTURE / "v0_1.db", copy)
    return copy


@pytest.fixture
def db(old_db: Path) -> Path:
    """The private copy, upgraded (``ledgerflow db upgrade``) as a user must before writing."""
    assert asyncio.run(upgrade_store(old_db)) == (1, SCHEMA_VERSION)
    return old_db


@pytest.fixture(autouse=True)
def fresh_bookings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The demo's fake booking system, emptied: each test sees only its own bookings."""
    calls: list[str] = []
    monkeypatch.setattr(travel, "BOOKINGS", {})
    monkeypatch.setattr(travel, "BOOKING_CALLS", calls)
    return calls


async def _state(db: Path, run_id: str) -> RunState:
    async with open_store(db) as store:
        return await load_run_state(store, run_id)


def _found(state: RunState) -> Workflow:
    """The run's workflow, found from what the log recorded (no --workflow)."""
    return find_workflow(state.workflow, state.workflow_ref)


@pytest.mark.parametrize("role", list(RUNS))
async def test_v01_run_opens_with_its_names_upgraded(db: Path, role: str) -> None:
    name, ref, status, last_seq = EXPECTED[role]
    state = await _state(db, RUNS[role])
    assert (state.workflow, state.workflow_ref, state.status.value, state.seq) == (
        name, ref, status, last_seq)
    assert _found(state).name == name


async def test_v01_permanent_error_is_read_by_its_stable_name(db: Path) -> None:
    raw = sqlite3.connect(db).execute(
        "SELECT data FROM events WHERE run_id = ? AND seq = 6", (RUNS["permanent"],)).fetchone()
    assert '"machines.errors.PermanentError"' in raw[0]  # the stored bytes are 0.1's
    failed = decode_event(raw[0])
    assert isinstance(failed, AgentFailed)
    assert failed.error_type == "ledgerflow.PermanentError"
    assert failed.error_types[:2] == ["ledgerflow.PermanentError", "ledgerflow.LedgerflowError"]
    state = await _state(db, RUNS["permanent"])
    assert state.tasks["lookup"].status.value == "escalated"
    assert state.escalations["lookup"].kind == "permanent_error"


@pytest.mark.parametrize("role", list(RUNS))
async def test_v01_run_passes_all_three_checks_with_its_workflow_found_by_name(
    db: Path, role: str
) -> None:
    async with open_store(db) as store:
        state = await load_run_state(store, RUNS[role])
        report = await verify_run(store, RUNS[role], workflow=_found(state))
    assert [c.name for c in report.checks] == ["chain", "transitions", "determinism"]
    assert report.ok, report.lines()


async def test_v01_waiting_run_resolves_to_completion(db: Path, fresh_bookings: list[str]) -> None:
    run_id = RUNS["waiting"]
    state = await _state(db, run_id)
    candidate = state.escalations["price"].candidate
    async with open_store(db) as store:
        run = await Orchestrator(store).resolve(run_id, "price", output=candidate, by="test")
        report = await verify_run(store, run_id, workflow=_found(state))
    assert run.status == "completed", run.reason
    assert run.outputs["book"].model_dump()["amount_charged"] == 836.0
    assert len(fresh_bookings) == 1
    assert report.ok, report.lines()


async def test_v01_permanent_run_resolves_to_completion(db: Path) -> None:
    run_id = RUNS["permanent"]
    async with open_store(db) as store:
        run = await Orchestrator(store).resolve(run_id, "lookup", output={"price": 12.5},
                                                by="test", note="priced by hand")
        state = await load_run_state(store, run_id)
        report = await verify_run(store, run_id, workflow=legacy_v01_workflows.permanent_wf)
    assert run.status == "completed", run.reason
    assert state.tasks["lookup"].output == {"price": 12.5}
    assert report.ok, report.lines()


async def test_v01_crashed_run_resumes_and_books_exactly_once(
    db: Path, fresh_bookings: list[str]
) -> None:
    run_id = RUNS["crashed"]
    async with open_store(db) as store:
        run = await Orchestrator(store).resume(run_id)  # the lease of a dead 0.1 process
        events = [decode_event(e.data) for e in await store.read_all(run_id)]
        report = await verify_run(store, run_id, workflow=travel.wf)
    assert run.status == "completed", run.reason
    assert fresh_bookings == [BOOK_KEY]  # the crash came before the call: booked once, now
    booked = [e for e in events if getattr(e, "task_id", "") == "book"
              and e.type == "OutputReceived"]
    assert len(booked) == 1
    assert report.ok, report.lines()


@pytest.mark.parametrize("role", list(RUNS))
async def test_v01_run_forked_in_the_middle_resumes_to_rest(db: Path, role: str) -> None:
    at = FORK_AT[role]
    async with open_store(db) as store:
        wf = _found(await load_run_state(store, RUNS[role]))
        fork_id = await fork_run(store, RUNS[role], at_seq=at, workflow=wf)
        run = await Orchestrator(store).resume(fork_id, wf)
        report = await verify_run(store, fork_id, workflow=wf)
    expected = {"waiting": ("waiting", ["price"]), "crashed": ("completed", []),
                "permanent": ("waiting", ["lookup"])}[role]
    assert (run.status, run.escalations) == expected, run.reason
    assert report.ok, report.lines()


# -- the CLI, in process (click's runner) and as a user runs it ------------------


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


@pytest.mark.parametrize("role", list(RUNS))
def test_v01_run_verifies_on_the_cli_without_workflow(db: Path, role: str) -> None:
    code, out = _cli("verify", RUNS[role], "--db", str(db))
    assert code == 0, out
    for check in ("chain", "transitions", "determinism"):
        assert f"PASS  {check}" in out, out


def test_v01_crashed_run_resumes_on_the_cli(db: Path, fresh_bookings: list[str]) -> None:
    code, out = _cli("resume", RUNS["crashed"], "--db", str(db))
    assert code == 0, out
    assert f"run {RUNS['crashed']}: completed" in out
    assert fresh_bookings == [BOOK_KEY]


def test_v01_waiting_run_resolves_on_the_cli(db: Path) -> None:
    candidate = json.dumps({"total": 836.0, "currency": "EUR", "confidence": 0.9, "line_items": [
        {"label": "flights", "amount": 364.0}, {"label": "hotel", "amount": 472.0}]})
    code, out = _cli("resolve", RUNS["waiting"], "price", "--output", candidate, "--db", str(db))
    assert code == 0, out
    assert f"run {RUNS['waiting']}: completed" in out


def test_v01_legacy_workflow_is_found_by_its_recorded_module_in_a_fresh_process(
    db: Path,
) -> None:
    """Nothing imports legacy_v01_workflows there: the recorded reference is the last resort."""
    env = {**os.environ, "PYTHONPATH": ""}
    done = subprocess.run(
        [sys.executable, "-m", "ledgerflow.replay.cli", "verify", RUNS["permanent"],
         "--db", str(db)],
        cwd=HERE, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS  determinism" in done.stdout, done.stdout


# -- newer versions are refused -----------------------------------------------------


async def _append_raw(db: Path, run_id: str, type_: str, data: bytes) -> int:
    async with open_store(db) as store:
        seq = await store.last_seq(run_id)
        await store.append(run_id, [NewEvent(type_, data)], expected_seq=seq)
    return seq + 1


TELEPORTED = b'{"type":"TaskTeleported","task_id":"price"}'  # a type no version here knows


async def test_event_of_a_newer_version_is_refused_by_resume(db: Path) -> None:
    run_id = RUNS["waiting"]
    await _append_raw(db, run_id, "TaskTeleported", TELEPORTED)
    with pytest.raises(EventTooNewError, match=r"TaskTeleported.*upgrade ledgerflow") as caught:
        async with open_store(db) as store:
            await Orchestrator(store).resume(run_id, travel.wf)
    assert caught.value.event_type == "TaskTeleported"


def test_event_of_a_newer_version_fails_verify_naming_its_seq(db: Path) -> None:
    seq = asyncio.run(_append_raw(db, RUNS["waiting"], "TaskTeleported", TELEPORTED))
    code, out = _cli("verify", RUNS["waiting"], "--db", str(db))
    assert code == 1, out
    assert f"seq {seq}" in out
    assert "TaskTeleported" in out
    assert "upgrade ledgerflow" in out
    # The chain is still checked and reported: an auditor learns the log is
    # intact even where this version cannot read it.
    assert "PASS  chain" in out
    assert "FAIL  transitions" in out


def test_decoding_names_where_the_newer_event_was_found() -> None:
    with pytest.raises(EventTooNewError, match="'TaskTeleported' at seq 29 of run 'r1'") as caught:
        decode_logged(TELEPORTED, 29, "r1")
    assert (caught.value.seq, caught.value.run_id) == (29, "r1")


async def test_run_started_by_a_newer_log_format_is_refused(db: Path) -> None:
    newer = LOG_FORMAT + 1
    data = (b'{"type":"RunStarted","workflow":"travel","goal":{},"started_at":'
            b'"2027-01-01T00:00:00+00:00","max_concurrency":1,"log_format":'
            + str(newer).encode() + b"}")
    await _append_raw(db, "from-the-future", "RunStarted", data)
    with pytest.raises(EventTooNewError, match=rf"log format {newer}.*upgrade ledgerflow"):
        await _state(db, "from-the-future")


async def test_store_of_a_newer_schema_is_refused(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaVersionError, match="newer ledgerflow"):
        async with open_store(db):
            pass


async def test_v01_store_reads_but_must_be_upgraded_before_a_resume(old_db: Path) -> None:
    run_id = RUNS["crashed"]
    async with open_store(old_db) as store:
        assert check_chain(run_id, await store.read_all(run_id)) is None
        with pytest.raises(StoreUpgradeRequiredError) as info:
            await Orchestrator(store).resume(run_id)
        assert await store.last_seq(run_id) == EXPECTED["crashed"][3]
    assert f"run `ledgerflow db upgrade --db {old_db}`" in str(info.value)
