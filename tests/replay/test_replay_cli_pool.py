"""The worker pool on the command line: runs submitted with ``ledgerflow submit`` are driven
by ``ledgerflow worker`` processes, ``workers`` and ``runs`` show who holds what, SIGTERM
drains a worker, and ``db upgrade`` is the one way an old store becomes writable.

Real SQLite files (and, with ``LEDGERFLOW_TEST_PG_DSN``, a fresh PostgreSQL schema per
test); workers run in-process through click's runner (``--until-idle``) or as real
subprocesses when a test signals them. The agent (``replay_pool_workflows:wf``) can be held at
a gate, so a test sees a worker holding a run for as long as it needs, with no sleeps.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from replay_pool_cli import (
    PATIENCE_S,
    claimed_fence,
    invoke,
    read_stderr_until,
    runs_doc,
    submit,
    wait_for,
    workers_doc,
)
from replay_pool_workflows import WORKFLOW_REF, release, started

from ledgerflow.eventstore import SCHEMA_VERSION, RunSummary
from ledgerflow.replay import render
from ledgerflow.replay.documents import WORKER_KEYS

HERE = Path(__file__).parent
FIXTURE = HERE / "logs" / "v0_1"
V01_RUNS: dict[str, str] = json.loads((FIXTURE / "runs.json").read_text())
V01_WORKFLOWS = {"waiting": "ledgerflow.examples.travel_unreviewed:wf",
                 "crashed": "ledgerflow.examples.travel:wf"}
CLI = [sys.executable, "-m", "ledgerflow.replay.cli"]
PG_DSN = os.environ.get("LEDGERFLOW_TEST_PG_DSN", "")

needs_pg = pytest.mark.skipif(
    not PG_DSN, reason="PostgreSQL tests need LEDGERFLOW_TEST_PG_DSN "
    "(e.g. postgresql://postgres@127.0.0.1:5432/test)")


@pytest.fixture
def sqlite_db(tmp_path: Path) -> str:
    return str(tmp_path / "pool.db")


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A PostgreSQL store in a schema of its own, dropped after the test."""
    import asyncpg  # noqa: PLC0415 - only the PostgreSQL tests need it

    schema = f"rlt_pool_{uuid.uuid4().hex[:12]}"
    sep = "&" if "?" in PG_DSN else "?"
    yield f"{PG_DSN}{sep}schema={schema}"
    conn = await asyncpg.connect(PG_DSN)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=needs_pg)])
def store_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue("sqlite_db" if request.param == "sqlite" else "pg_url")
    return url


@pytest.fixture
def gate(tmp_path: Path) -> Path:
    folder = tmp_path / "gate"
    folder.mkdir()
    return folder


@pytest.fixture
def worker_process(sqlite_db: str) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start ``ledgerflow worker`` on ``sqlite_db`` as a real process; killed if left running."""
    procs: list[subprocess.Popen[str]] = []
    env = {**os.environ, "COLUMNS": "200",
           "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}

    def start(*options: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [*CLI, "worker", "--db", sqlite_db, "--workflow", WORKFLOW_REF, "--poll", "0.05",
             *options], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


# -- submit, then a worker --------------------------------------------------------------


def test_submit_queues_the_run_and_prints_its_id_alone_on_the_last_line(sqlite_db: str) -> None:
    result = invoke("submit", WORKFLOW_REF, "--goal", '{"n": 4}', "--db", sqlite_db,
                    "--run-id", "order-17")
    assert result.exit_code == 0, result.output
    *before, last = result.stdout.splitlines()
    assert last == "order-17"
    assert "queued run order-17 of workflow pool-cli" in before[0]
    assert f"ledgerflow worker --workflow {WORKFLOW_REF} --db {sqlite_db}" in before[0]
    listed = runs_doc(sqlite_db, "--status", "queued")
    assert list(listed) == ["order-17"]
    assert listed["order-17"]["owner"] is None
    assert listed["order-17"]["events"] == 1  # recorded, not driven


def test_submit_refuses_a_run_id_that_is_taken(sqlite_db: str) -> None:
    submit(sqlite_db)
    first = invoke("submit", WORKFLOW_REF, "--goal", "{}", "--db", sqlite_db, "--run-id", "r1")
    again = invoke("submit", WORKFLOW_REF, "--goal", "{}", "--db", sqlite_db, "--run-id", "r1")
    assert first.exit_code == 0
    assert again.exit_code == 1
    assert again.output.count("\n") == 1
    assert "A run 'r1' already exists" in again.output


def test_a_worker_until_idle_completes_every_submitted_run(store_url: str) -> None:
    run_ids = [submit(store_url, {"n": n}) for n in range(3)]
    assert set(runs_doc(store_url, "--status", "queued")) == set(run_ids)

    result = invoke("worker", "--db", store_url, "--workflow", WORKFLOW_REF, "--until-idle",
                    "--poll", "0.05", "--concurrency", "2")

    assert result.exit_code == 0, result.output
    assert "claimed 3, finished 3, waiting 0, lost 0, failed 0" in result.stdout
    for run_id in run_ids:  # one line per run claimed and per run finished, on stderr
        assert f"claimed run {run_id} (pool-cli, queued, fence " in result.stderr
        assert f"finished run {run_id}: completed" in result.stderr
    listed = runs_doc(store_url)
    assert {listed[r]["status"] for r in run_ids} == {"completed"}
    assert {listed[r]["owner"] for r in run_ids} == {None}  # leases given back
    for run_id in run_ids:
        verified = invoke("verify", run_id, "--db", store_url, "--workflow", WORKFLOW_REF)
        assert verified.exit_code == 0, verified.output
    # Without --workflow, verify finds the code a queued run recorded as well.
    found = invoke("verify", run_ids[0], "--db", store_url)
    assert found.exit_code == 0, found.output
    assert "PASS  determinism" in found.stdout
    assert invoke("workers", "--db", store_url).stdout == "no workers\n"  # it unregistered


def test_a_worker_leaves_runs_of_other_workflows_queued(sqlite_db: str) -> None:
    theirs = invoke("submit", "ledgerflow.examples.travel:wf", "--goal",
                    '{"destination": "Lisbon", "passengers": 2}', "--db", sqlite_db)
    ours = submit(sqlite_db)
    result = invoke("worker", "--db", sqlite_db, "--workflow", WORKFLOW_REF, "--until-idle",
                    "--poll", "0.05")
    assert result.exit_code == 0, result.output
    listed = runs_doc(sqlite_db)
    assert listed[ours]["status"] == "completed"
    assert listed[theirs.stdout.splitlines()[-1]]["status"] == "queued"


def test_resolve_puts_a_waiting_pool_run_back_on_the_queue_for_a_worker(sqlite_db: str) -> None:
    run_id = submit(sqlite_db, {"n": 5, "confidence": 0.1})
    first = invoke("worker", "--db", sqlite_db, "--workflow", WORKFLOW_REF, "--until-idle",
                   "--poll", "0.05")
    assert "claimed 1, finished 0, waiting 1" in first.stdout
    assert f"run {run_id} waits on an escalation; released" in first.stderr
    assert runs_doc(sqlite_db)[run_id]["owner"] is None  # a waiting run holds no worker

    resolved = invoke("resolve", run_id, "work", "--output", '{"doubled": 99}', "--db",
                      sqlite_db)

    assert resolved.exit_code == 0, resolved.output
    lines = resolved.stdout.splitlines()
    assert lines[0] == (f"run {run_id}: queued — the resolution of work is queued for a worker "
                        "of workflow 'pool-cli' to apply")
    assert f"ledgerflow worker --workflow {WORKFLOW_REF} --db {sqlite_db}" in lines[1]
    assert "waiting on work" not in resolved.stdout  # its resolution is on its way
    assert list(runs_doc(sqlite_db, "--status", "queued")) == [run_id]
    second = invoke("worker", "--db", sqlite_db, "--workflow", WORKFLOW_REF, "--until-idle",
                    "--poll", "0.05")
    assert f"finished run {run_id}: completed" in second.stderr
    shown = json.loads(invoke("show", run_id, "--json", "--db", sqlite_db).stdout)
    assert shown["tasks"][0]["output"]["doubled"] == 99


# -- workers, runs' owner, SIGTERM ------------------------------------------------------


def test_workers_shows_a_live_worker_and_sigterm_drains_it_to_a_clean_exit(
    sqlite_db: str, gate: Path, worker_process: Callable[..., subprocess.Popen[str]],
) -> None:
    first = submit(sqlite_db, {"n": 1, "gate": str(gate)})
    second = submit(sqlite_db, {"n": 2, "gate": str(gate)})
    proc = worker_process("--concurrency", "1", "--drain", "60")
    wait_for("the worker holding a run at the gate", lambda: bool(started(gate)), proc)
    (held,) = started(gate)
    queued = second if held == first else first

    (listed,) = workers_doc(sqlite_db)
    assert tuple(listed) == WORKER_KEYS  # the documented keys, in their order
    assert listed["alive"] is True
    assert listed["pid"] == proc.pid
    assert listed["workflows"] == ["pool-cli"]
    assert listed["concurrency"] == 1
    assert listed["runs"] == [held]
    table = invoke("workers", "--db", sqlite_db).stdout
    assert listed["worker_id"] in table
    assert "alive" in table
    assert held in table
    assert "1 alive, 0 gone; runs held: 1" in table

    runs = runs_doc(sqlite_db)
    assert runs[held]["owner"] == listed["worker_id"]
    assert runs[held]["status"] == "running"
    assert (runs[queued]["status"], runs[queued]["owner"]) == ("queued", None)
    runs_table = invoke("runs", "--db", sqlite_db).stdout
    assert "held by" in runs_table
    assert listed["worker_id"] in runs_table
    assert list(runs_doc(sqlite_db, "--status", "queued")) == [queued]
    for command in ("runs", "workers"):  # at 80 columns every id stays whole
        narrow = invoke(command, "--db", sqlite_db, columns=80).stdout
        assert all(len(line) <= 80 for line in narrow.splitlines()), narrow
        assert held in narrow
        assert listed["worker_id"] in narrow
    assert f"{held} held by {listed['worker_id']}" in invoke("runs", "--db", sqlite_db,
                                                             columns=80).stdout

    proc.send_signal(signal.SIGTERM)
    said = read_stderr_until(proc, "draining")  # it took the signal: it claims nothing more
    release(gate)  # the run in hand may finish within the drain
    out, rest = proc.communicate(timeout=PATIENCE_S)
    err = said + rest

    assert proc.returncode == 0, err
    assert "claimed 1, finished 1, waiting 0, lost 0, failed 0" in out
    assert "draining" in err
    assert f"finished run {held}: completed" in err
    after = runs_doc(sqlite_db)
    assert after[held]["status"] == "completed"
    assert after[queued]["status"] == "queued"  # a stopping worker claims nothing more
    assert workers_doc(sqlite_db) == []  # a clean stop leaves the registry


def test_a_second_sigterm_stops_at_once_and_another_worker_continues_the_run(
    sqlite_db: str, gate: Path, worker_process: Callable[..., subprocess.Popen[str]],
) -> None:
    run_id = submit(sqlite_db, {"n": 6, "gate": str(gate)})
    proc = worker_process("--drain", "600")
    wait_for("the worker holding the run", lambda: started(gate) == [run_id], proc)
    proc.send_signal(signal.SIGTERM)
    said = read_stderr_until(proc, "draining")
    proc.send_signal(signal.SIGTERM)  # the gate stays shut: only "now" can end the drain
    out, rest = proc.communicate(timeout=PATIENCE_S)

    assert proc.returncode == 0, said + rest
    assert "stopping now" in rest
    assert "claimed 1, finished 0" in out
    stopped = runs_doc(sqlite_db)[run_id]
    assert (stopped["status"], stopped["owner"]) == ("running", None)  # lease given back
    release(gate)
    taken = invoke("worker", "--db", sqlite_db, "--workflow", WORKFLOW_REF, "--until-idle",
                   "--poll", "0.05")
    assert f"finished run {run_id}: completed" in taken.stderr
    verified = invoke("verify", run_id, "--db", sqlite_db, "--workflow", WORKFLOW_REF)
    assert verified.exit_code == 0, verified.output


def test_a_killed_worker_is_listed_gone_and_another_finishes_its_run(
    sqlite_db: str, gate: Path, worker_process: Callable[..., subprocess.Popen[str]],
) -> None:
    run_id = submit(sqlite_db, {"n": 3, "gate": str(gate)})
    proc = worker_process("--lease-ttl", "1")
    wait_for("the worker holding the run", lambda: started(gate) == [run_id], proc)
    (alive,) = workers_doc(sqlite_db)
    proc.kill()
    _, said = proc.communicate()
    first_fence = claimed_fence(said, run_id)

    deadline = time.monotonic() + PATIENCE_S
    while workers_doc(sqlite_db)[0]["alive"]:  # its heartbeat lapses after the ttl
        assert time.monotonic() < deadline, "the killed worker never showed as gone"
        time.sleep(0.1)
    (gone,) = workers_doc(sqlite_db)
    assert gone["worker_id"] == alive["worker_id"]
    assert gone["runs"] == []  # its lease lapsed with it
    table = invoke("workers", "--db", sqlite_db).stdout
    assert "gone" in table
    assert "0 alive, 1 gone; runs held: 0" in table
    assert runs_doc(sqlite_db)[run_id]["owner"] is None

    release(gate)
    taken = invoke("worker", "--db", sqlite_db, "--workflow", WORKFLOW_REF, "--until-idle",
                   "--poll", "0.05")
    assert taken.exit_code == 0, taken.output
    # Taken over with a newer fence: the dead worker's appends would be refused.
    assert claimed_fence(taken.stderr, run_id) > first_fence
    assert f"claimed run {run_id} (pool-cli, running, fence " in taken.stderr
    assert "claimed 1, finished 1" in taken.stdout
    assert runs_doc(sqlite_db)[run_id]["status"] == "completed"
    verified = invoke("verify", run_id, "--db", sqlite_db, "--workflow", WORKFLOW_REF)
    assert verified.exit_code == 0, verified.output


# -- db upgrade -------------------------------------------------------------------------


@pytest.fixture
def v01_copy(tmp_path: Path) -> str:
    """A private copy of the store ledgerflow 0.1 wrote (schema 1)."""
    copy = tmp_path / "v0_1.db"
    shutil.copyfile(FIXTURE / "v0_1.db", copy)
    return str(copy)


@pytest.mark.parametrize("command", [
    ["submit", WORKFLOW_REF, "--goal", "{}"],
    ["resume", V01_RUNS["crashed"], "--workflow", "ledgerflow.examples.travel:wf"],
    ["worker", "--workflow", WORKFLOW_REF, "--until-idle"],
], ids=["submit", "resume", "worker"])
def test_a_write_on_an_old_store_names_the_upgrade_command(
    v01_copy: str, command: list[str],
) -> None:
    result = invoke(*command, "--db", v01_copy)
    assert result.exit_code == 1
    assert result.output.count("\n") == 1, result.output
    assert "is at schema version 1" in result.output
    assert f"run `ledgerflow db upgrade --db {v01_copy}`" in result.output
    assert "Traceback" not in result.output


def test_db_upgrade_makes_an_old_store_writable_and_every_log_still_verifies(
    v01_copy: str,
) -> None:
    assert "schema v1" in invoke("workers", "--db", v01_copy).stdout  # reads work, and say so

    upgraded = invoke("db", "upgrade", "--db", v01_copy)
    assert upgraded.exit_code == 0, upgraded.output
    assert upgraded.stdout == f"upgraded {v01_copy} from schema v1 to v{SCHEMA_VERSION}\n"
    again = invoke("db", "upgrade", "--db", v01_copy)
    assert again.exit_code == 0
    assert f"already at schema v{SCHEMA_VERSION}" in again.stdout

    for name, ref in V01_WORKFLOWS.items():
        verified = invoke("verify", V01_RUNS[name], "--db", v01_copy, "--workflow", ref)
        assert verified.exit_code == 0, verified.output
        assert "checks passed" in verified.stdout
    run_id = submit(v01_copy)
    done = invoke("worker", "--db", v01_copy, "--workflow", WORKFLOW_REF, "--until-idle",
                  "--poll", "0.05")
    assert done.exit_code == 0, done.output
    assert runs_doc(v01_copy)[run_id]["status"] == "completed"


@needs_pg
def test_db_upgrade_of_a_current_postgres_store_changes_nothing(pg_url: str) -> None:
    submit(pg_url)
    result = invoke("db", "upgrade", "--db", pg_url)
    assert result.exit_code == 0, result.output
    assert f"already at schema v{SCHEMA_VERSION}" in result.stdout


# -- bad input --------------------------------------------------------------------------


BAD_INPUT = {
    "unknown module": (["worker", "--workflow", "no_such_module:wf"], 1, "Cannot import module"),
    "unknown attribute": (["worker", "--workflow", "replay_pool_workflows:nope"], 1,
                          "no attribute"),
    "not MODULE:WORKFLOW": (["worker", "--workflow", "pool"], 2, "is not MODULE:WORKFLOW"),
    "no workflow": (["worker"], 2, "Missing option '--workflow'"),
    "concurrency 0": (["worker", "--workflow", WORKFLOW_REF, "--concurrency", "0"], 2,
                      "'--concurrency': 0 is not in the range"),
    "negative ttl": (["worker", "--workflow", WORKFLOW_REF, "--lease-ttl", "-1"], 2,
                     "'--lease-ttl': -1 is not a number of seconds > 0"),
    "infinite poll": (["worker", "--workflow", WORKFLOW_REF, "--poll", "inf"], 2,
                      "'--poll': inf is not a number of seconds > 0"),
    "submit unknown workflow": (["submit", "no_such_module:wf", "--goal", "{}"], 1,
                                "Cannot import module"),
    "submit a goal that is a list": (["submit", WORKFLOW_REF, "--goal", "[]"], 2,
                                     "must be a JSON object"),
    "submit a goal the contract refuses": (["submit", WORKFLOW_REF, "--goal", '{"n": "x"}'],
                                           1, "The goal does not satisfy Goal"),
    "submit a blank run id": (["submit", WORKFLOW_REF, "--goal", "{}", "--run-id", " "], 2,
                              "is not a run id"),
    "db without a subcommand": (["db", "nope"], 2, "No such command 'nope'"),
}


@pytest.mark.parametrize(("args", "code", "says"), list(BAD_INPUT.values()),
                         ids=list(BAD_INPUT))
def test_bad_input_is_one_line_and_its_exit_code(
    sqlite_db: str, args: list[str], code: int, says: str,
) -> None:
    submit(sqlite_db)  # the store exists: only the input is wrong
    result = invoke(*args, "--db", sqlite_db)
    assert result.exit_code == code, result.output
    assert result.output.count("\n") == 1, result.output
    assert says in result.output


@pytest.mark.parametrize("command", [
    ["worker", "--workflow", WORKFLOW_REF], ["workers"], ["db", "upgrade"],
], ids=["worker", "workers", "db upgrade"])
def test_a_store_that_is_not_there_is_refused_and_not_created(
    tmp_path: Path, command: list[str],
) -> None:
    missing = tmp_path / "typo.db"
    result = invoke(*command, "--db", str(missing))
    assert result.exit_code == 1
    assert result.output.count("\n") == 1, result.output
    assert "There is no ledgerflow store at" in result.output
    assert not missing.exists()


def test_db_upgrade_refuses_a_store_of_a_newer_ledgerflow(sqlite_db: str) -> None:
    import sqlite3  # noqa: PLC0415

    submit(sqlite_db)
    with sqlite3.connect(sqlite_db) as conn:
        conn.execute("PRAGMA user_version = 99")
    result = invoke("db", "upgrade", "--db", sqlite_db)
    assert result.exit_code == 1
    assert result.output.count("\n") == 1, result.output
    assert "newer ledgerflow" in result.output


def test_runs_marks_a_started_run_that_no_worker_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    at = datetime(2026, 1, 1, tzinfo=UTC)
    table = render.runs_table([
        RunSummary("held-run", "running", "pool-cli", at, at, 6, owner="vm:1:abcdef12"),
        RunSummary("orphan-run", "running", "pool-cli", at, at, 6),  # its worker died
        RunSummary("queued-run", "queued", "pool-cli", at, at, 1),
    ])
    console = render.console()
    with console.capture() as captured:
        console.print(table)
    rows = {line.split()[0]: line for line in captured.get().splitlines() if "-run" in line}
    assert "vm:1:abcdef12" in rows["held-run"]
    assert "nobody" in rows["orphan-run"]
    assert "nobody" not in rows["queued-run"]


def test_db_upgrade_create_makes_a_new_store_and_then_changes_nothing(tmp_path: Path) -> None:
    fresh = tmp_path / "pool.db"
    created = invoke("db", "upgrade", "--create", "--db", str(fresh))
    assert created.exit_code == 0, created.output
    assert created.stdout == f"created {fresh} at schema v{SCHEMA_VERSION}\n"
    again = invoke("db", "upgrade", "--create", "--db", str(fresh))
    assert again.exit_code == 0, again.output
    assert "already at schema" in again.stdout
