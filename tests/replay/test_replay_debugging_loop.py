"""The 2am debugging loop on the demo: verify catches tampering, a policy
change shows up as a divergence, every fork point gives a valid run, and the
stepper works in a terminal and through a pipe."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pexpect
import pytest
from click.testing import CliRunner

from ledgerflow.eventstore import NewEvent, open_store
from ledgerflow.examples import travel
from ledgerflow.machines import Orchestrator, RetryPolicy, Workflow, load_run_state
from ledgerflow.machines.events import TaskSucceeded, encode_event
from ledgerflow.replay.cli import main
from ledgerflow.replay.diff import RunDiff, diff_runs
from ledgerflow.replay.errors import ReplayDivergenceError
from ledgerflow.replay.fork import fork_run
from ledgerflow.replay.verify import verify_run


@pytest.fixture
def demo(tmp_path: Path) -> tuple[Path, str]:
    db = tmp_path / "ledgerflow.db"

    async def start() -> str:
        async with open_store(db) as store:
            run = await Orchestrator(store).start(
                travel.wf, travel.TripGoal(destination="Lisbon", passengers=2))
        assert run.status == "completed"
        return run.run_id

    return db, asyncio.run(start())


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def tamper(db: Path, sql: str, *params: object) -> None:
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(sql, params)
    conn.close()


def test_verify_passes_an_untouched_demo_run(demo: tuple[Path, str]) -> None:
    db, run_id = demo
    code, out = cli("verify", run_id, "--workflow", "ledgerflow.examples.travel:wf",
                    "--db", str(db))
    assert code == 0, out
    assert out.count("PASS") == 3


def test_verify_names_the_seq_of_one_changed_byte(demo: tuple[Path, str]) -> None:
    db, run_id = demo
    tamper(db, "UPDATE events SET data = replace(data, '836.0', '936.0') "
           "WHERE run_id = ? AND seq = 34", run_id)
    code, out = cli("verify", run_id, "--db", str(db))
    assert code == 1
    assert "FAIL  chain: Event seq 34" in out


def test_verify_names_the_seq_of_a_deleted_row(demo: tuple[Path, str]) -> None:
    db, run_id = demo
    tamper(db, "DELETE FROM events WHERE run_id = ? AND seq = 20", run_id)
    code, out = cli("verify", run_id, "--db", str(db))
    assert code == 1
    assert "seq 20" in out.split("FAIL  chain:")[1].splitlines()[0]


def test_verify_names_the_seq_of_a_deleted_last_row(demo: tuple[Path, str]) -> None:
    db, run_id = demo
    tamper(db, "DELETE FROM events WHERE run_id = ? AND seq = 36", run_id)
    code, out = cli("verify", run_id, "--db", str(db))
    assert code == 1
    assert "Event seq 36" in out


def test_verify_names_the_seq_of_two_swapped_rows(demo: tuple[Path, str]) -> None:
    db, run_id = demo
    conn = sqlite3.connect(db)
    cols = "type, at, data, prev_hash, hash"
    rows = {seq: conn.execute(f"SELECT {cols} FROM events WHERE run_id = ? AND seq = ?",
                              (run_id, seq)).fetchone() for seq in (10, 11)}
    with conn:
        for seq, other in ((10, 11), (11, 10)):
            conn.execute("UPDATE events SET type=?, at=?, data=?, prev_hash=?, hash=? "
                         "WHERE run_id = ? AND seq = ?", (*rows[other], run_id, seq))
    conn.close()
    code, out = cli("verify", run_id, "--db", str(db))
    assert code == 1
    assert "Event seq 10" in out


async def test_verify_catches_an_illegal_transition_even_with_a_rehashed_chain(
    tmp_path: Path,
) -> None:
    """Someone edits a TaskSucceeded into existence and recomputes the hashes."""
    db = tmp_path / "x.db"
    async with open_store(db) as store:
        run = await Orchestrator(store).start(
            travel.wf, travel.TripGoal(destination="Lisbon", passengers=2))
        envs = await store.read_all(run.run_id)
        forged = [NewEvent(type=e.type, data=e.data) for e in envs[:5]]
        forged.append(NewEvent(type="TaskSucceeded", data=encode_event(TaskSucceeded(
            task_id="book", src="pending", dst="succeeded"))))
        await store.append("forged", forged, expected_seq=0)
        report = await verify_run(store, "forged")
    lines = report.lines()
    assert lines[0].startswith("PASS  chain")
    assert lines[1].startswith("FAIL  transitions: seq 6")
    assert "Cannot apply 'succeed'" in lines[1]


async def test_changed_retry_policy_reports_the_first_divergent_seq(
    demo: tuple[Path, str],
) -> None:
    db, run_id = demo
    stricter = Workflow("travel", goal=travel.TripGoal, budget=travel.wf.budget,
                        max_concurrency=travel.wf.max_concurrency)
    stricter.agents.update(travel.wf.agents)
    stricter.agents["hotel_search"] = replace(
        travel.wf.agents["hotel_search"], retry=RetryPolicy(max_attempts=1))
    stricter.planner_fn = travel.wf.planner_fn
    stricter.escalation_handler = travel.wf.escalation_handler
    async with open_store(db) as store:
        same = await verify_run(store, run_id, workflow=travel.wf)
        changed = await verify_run(store, run_id, workflow=stricter)
    assert same.ok
    determinism = changed.checks[-1]
    assert not determinism.ok
    assert determinism.seq == 10  # where hotels' first invalid output was retried
    assert determinism.divergence is not None
    assert determinism.divergence.recorded is not None
    assert determinism.divergence.recorded.type == "RetryScheduled"
    assert determinism.divergence.decided is not None
    assert determinism.divergence.decided.type == "TaskEscalated"
    same.raise_for_divergence()
    with pytest.raises(ReplayDivergenceError, match="diverges at seq 10"):
        changed.raise_for_divergence()


async def test_changed_plan_rule_reports_divergence_at_the_plan(demo: tuple[Path, str]) -> None:
    db, run_id = demo
    fewer = Workflow("travel", goal=travel.TripGoal, budget=travel.wf.budget,
                     max_concurrency=travel.wf.max_concurrency)
    fewer.agents.update({k: v for k, v in travel.wf.agents.items() if k != "booking"})
    async with open_store(db) as store:
        report = await verify_run(store, run_id, workflow=fewer)
    check = report.checks[-1]
    assert not check.ok
    assert check.seq == 3
    assert check.divergence is not None
    assert check.divergence.decided is not None
    assert check.divergence.decided.type == "PlanRejected"


async def test_fork_at_every_seq_of_the_demo_gives_a_valid_run(demo: tuple[Path, str]) -> None:
    db, run_id = demo
    async with open_store(db) as store:
        last = await store.last_seq(run_id)
        orch = Orchestrator(store)
        for seq in range(1, last + 1):
            fork_id = await fork_run(store, run_id, at_seq=seq, workflow=travel.wf,
                                     new_run_id=f"fork{seq}")
            copied = await store.read_all(fork_id, until=seq)
            original = await store.read_all(run_id, until=seq)
            assert [e.data for e in copied] == [e.data for e in original]
            run = await orch.resume(fork_id, travel.wf)
            assert run.status == "completed", (seq, run.reason)
            report = await verify_run(store, fork_id, workflow=travel.wf)
            assert report.ok, (seq, report.lines())
            state = await load_run_state(store, fork_id)
            assert state.forked_from == (run_id, seq)
        assert await store.last_seq(run_id) == last  # the original is untouched
        assert len(await store.runs(limit=1000)) == last + 1


def test_diff_of_a_run_and_its_refork_names_where_they_part(demo: tuple[Path, str]) -> None:
    db, run_id = demo

    async def fork_and_diff() -> tuple[str, RunDiff]:
        async with open_store(db) as store:
            fork_id = await fork_run(store, run_id, at_seq=24, workflow=travel.wf)
            await Orchestrator(store).resume(fork_id, travel.wf)
            return fork_id, diff_runs(run_id, await store.read_all(run_id), fork_id,
                                      await store.read_all(fork_id))

    fork_id, d = asyncio.run(fork_and_diff())
    # The fork re-dispatches pricing (its attempt had no outcome at seq 24).
    assert d.parted_at is not None
    assert d.parted_at[0] == 25
    assert d.status == ("completed", "completed")
    code, out = cli("diff", run_id, fork_id, "--db", str(db))
    assert code == 1, "diff exits 1 when the runs differ, as diff(1) does"
    assert "decisions part at seq 25" in out


def test_fork_outside_the_log_is_refused(demo: tuple[Path, str]) -> None:
    db, run_id = demo
    code, out = cli("fork", run_id, "--at", "999", "--db", str(db))
    assert code == 1
    assert "its log has seqs 1..36" in out


def test_replay_to_a_seq_beyond_the_log_is_refused(demo: tuple[Path, str]) -> None:
    db, run_id = demo
    code, out = cli("replay", run_id, "--to", "999", "--db", str(db))
    assert code == 1  # refused, as fork --at 999 is: the same seq is fine for a longer run
    assert "has 36 events, so --to 999 is past its end" in out


def test_replay_json_is_the_state_at_that_seq(demo: tuple[Path, str]) -> None:
    db, run_id = demo
    code, out = cli("replay", run_id, "--to", "28", "--json", "--db", str(db))
    assert code == 0
    doc = json.loads(out)
    assert doc["seq"] == 28
    assert doc["status"] == "waiting"
    assert list(doc["escalations"]) == ["price"]
    assert doc["tasks"]["book"]["status"] == "pending"


def test_stepper_through_a_pipe_prints_every_step(demo: tuple[Path, str]) -> None:
    db, run_id = demo
    done = subprocess.run(
        [sys.executable, "-m", "ledgerflow.replay.cli", "replay", run_id, "--step",
         "--db", str(db)],
        input="", capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.count("\nseq ") + done.stdout.startswith("seq ") == 36
    assert "task price status: validating -> escalated" in done.stdout


def test_stepper_in_a_terminal_moves_jumps_and_finds_trouble(demo: tuple[Path, str]) -> None:
    db, run_id = demo
    child = pexpect.spawn(
        sys.executable, ["-m", "ledgerflow.replay.cli", "replay", run_id, "--step",
         "--db", str(db)],
        encoding="utf-8", timeout=20, dimensions=(50, 200))
    child.expect("seq 1/36")
    child.expect("step> ")
    child.sendline("n")
    child.expect("seq 2/36")
    child.expect("step> ")
    child.sendline("f")
    child.expect("seq 9/36  \\S+  OutputRejected")
    child.expect("step> ")
    child.sendline("b")
    child.expect("seq 8/36")
    child.expect("step> ")
    child.sendline("j 27")
    child.expect("seq 27/36  \\S+  TaskEscalated")
    child.expect("step> ")
    child.sendline("j 99")
    child.expect("jump needs a seq from 1 to 36")
    child.expect("step> ")
    child.sendline("q")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
