"""Progress of ``run``, ``resume`` and ``worker``: a live line on a terminal, plain lines elsewhere.

Real processes on a real pty (pexpect) and on pipes, over real SQLite files;
the workflow is written into the test's folder and imported by the child.
No assertion depends on how fast this machine is: line counts are bounded by
the elapsed time the test measured itself.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pexpect
import pytest

from ledgerflow.eventstore import open_store
from ledgerflow.machines import Orchestrator, load_workflow
from ledgerflow.machines import events as ev
from ledgerflow.replay.progress import RunProgress, resume_hint

FLOWS = '''
import asyncio
from pydantic import BaseModel
from ledgerflow import AgentContext, Budget, Plan, RetryPolicy, Task, Workflow


class Goal(BaseModel):
    n: int = 5
    delay: float = 0.0
    chain: bool = False
    flaky: bool = False


class In(BaseModel):
    i: int
    delay: float
    flaky: bool


class Out(BaseModel):
    i: int


wf = Workflow("progress-flow", goal=Goal, budget=Budget(max_retries=1000), max_concurrency=4)


@wf.agent(input=In, output=Out, retry=RetryPolicy(max_attempts=2))
async def work(inp: In, ctx: AgentContext) -> Out:
    await asyncio.sleep(inp.delay)
    if inp.flaky and ctx.attempt == 1 and inp.i % 2 == 0:
        raise RuntimeError("flaky on the first attempt")
    return Out(i=inp.i)


@wf.planner
async def plan(goal: Goal, ctx: AgentContext) -> Plan:
    return Plan(tasks=[
        Task(id=f"t{i}", agent="work", needs=[f"t{i - 1}"] if goal.chain and i else [],
             inputs={"i": i, "delay": goal.delay, "flaky": goal.flaky})
        for i in range(goal.n)])
'''
FLOW_REF = "progress_flows:wf"
PATIENCE_S = 60


@pytest.fixture
def flows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment a child process imports ``progress_flows`` with."""
    (tmp_path / "progress_flows.py").write_text(FLOWS)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "COLUMNS": "200"}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ledgerflow.replay.cli", *args]


def spawn(env: dict[str, str], *args: str) -> pexpect.spawn:
    """The CLI on a pty (stdout and stderr both the terminal)."""
    return pexpect.spawn(sys.executable, ["-m", "ledgerflow.replay.cli", *args], env=env,
                         encoding="utf-8", timeout=PATIENCE_S, dimensions=(40, 200))


def log_docs(env: dict[str, str], db: Path, run_id: str) -> list[dict[str, Any]]:
    done = subprocess.run(cli("log", run_id, "--format", "jsonl", "--db", str(db)), env=env,
                          capture_output=True, text=True, check=True)
    return [json.loads(line) for line in done.stdout.splitlines()]


# -- on a terminal -------------------------------------------------------------


def test_on_a_terminal_the_live_line_counts_tasks_and_ends_with_the_final_status(
        flows: dict[str, str], tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    child = spawn(flows, "run", FLOW_REF, "--goal", '{"n": 12, "delay": 0.05, "chain": true}',
                  "--db", str(db))
    child.expect(r"run (\w{12}) \(progress-flow\): started")
    run_id = child.match.group(1)
    child.expect(r"(\d+)/12 tasks done, 0 retries, 0 escalations, cost 0 — running")
    child.expect(re.escape(f"run {run_id} (progress-flow): 12/12 tasks done, 0 retries, "
                           "0 escalations, cost 0 — completed"))
    # stdout's status line comes after the progress line, as before.
    child.expect(re.escape(f"run {run_id}: completed — All 12 task(s) succeeded."))
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_ctrl_c_prints_how_to_resume_and_resume_completes_the_run(
        flows: dict[str, str], tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    child = spawn(flows, "run", FLOW_REF, "--goal", '{"n": 30, "delay": 0.3, "chain": true}',
                  "--db", str(db))
    child.expect(r"run (\w{12}) \(progress-flow\): started")
    run_id = child.match.group(1)
    child.expect(r"[1-9]\d*/30 tasks done")  # some tasks are done, more are to come
    child.sendintr()
    child.expect(re.escape(resume_hint(run_id, str(db))))
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    assert "Traceback" not in (child.before or "")
    assert f"ledgerflow resume {run_id} --db {db}" in resume_hint(run_id, str(db))

    interrupted = log_docs(flows, db, run_id)
    done_before = {d["data"]["task_id"] for d in interrupted
                   if d["type"] == "TaskSucceeded"}
    assert 0 < len(done_before) < 30

    resumed = subprocess.run(cli("resume", run_id, "--db", str(db)), env=flows,
                             capture_output=True, text=True, timeout=PATIENCE_S, check=False)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert resumed.stdout.splitlines()[0] == f"run {run_id}: completed — All 30 task(s) succeeded."
    assert resumed.stderr.splitlines()[0].startswith(f"run {run_id} (progress-flow): resumed at")
    after = log_docs(flows, db, run_id)
    assert after[:len(interrupted)] == interrupted  # nothing recorded was lost or changed
    succeeded = [d["data"]["task_id"] for d in after
                 if d["type"] == "TaskSucceeded"]
    assert sorted(succeeded) == sorted(f"t{i}" for i in range(30))  # each once
    verified = subprocess.run(cli("verify", run_id, "--db", str(db)), env=flows,
                              capture_output=True, text=True, check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_worker_on_a_terminal_shows_runs_and_attempts(
        flows: dict[str, str], tmp_path: Path) -> None:
    db = tmp_path / "pool.db"
    subprocess.run(cli("db", "upgrade", "--create", "--db", str(db)), env=flows, check=True,
                   capture_output=True)
    for _ in range(2):
        subprocess.run(cli("submit", FLOW_REF, "--goal", '{"n": 6, "delay": 0.2}', "--db",
                           str(db)), env=flows, check=True, capture_output=True)
    child = spawn(flows, "worker", "--workflow", FLOW_REF, "--until-idle", "--poll", "0.1",
                  "--db", str(db))
    child.expect(r"runs claimed [12], finished [01], waiting 0, lost 0, failed 0; "
                 r"attempts run \d+; tasks done \d+")
    child.expect(r"worker \S+ stopped: claimed 2, finished 2")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


# -- not on a terminal ---------------------------------------------------------


def test_without_a_terminal_plain_lines_are_few_for_a_200_task_run(
        flows: dict[str, str], tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    began = time.monotonic()
    done = subprocess.run(
        cli("run", FLOW_REF, "--goal", '{"n": 200, "delay": 0.02, "flaky": true}',
            "--db", str(db)),
        env=flows, capture_output=True, text=True, timeout=PATIENCE_S * 3, check=False)
    elapsed = time.monotonic() - began
    assert done.returncode == 0, done.stdout + done.stderr
    (status,) = done.stdout.splitlines()  # stdout is what it always was
    run_id = status.split()[1].rstrip(":")
    assert status == f"run {run_id}: completed — All 200 task(s) succeeded."

    lines = done.stderr.splitlines()
    assert lines[0] == f"run {run_id} (progress-flow): started"
    assert lines[-1] == (f"run {run_id} (progress-flow): 200/200 tasks done, 100 retries, "
                         "0 escalations, cost 0 — completed")
    # At most one line a second between the first and the last: never one per event
    # (a 200-task run with 100 retries appends well over a thousand).
    assert len(lines) <= 2 + math.ceil(elapsed) + 1, lines
    events = len(log_docs(flows, db, run_id))
    assert events > 1000
    for line in lines[1:-1]:
        assert re.fullmatch(rf"run {run_id}: \d+/200 tasks done, \d+ retr(y|ies), "
                            r"0 escalations, cost 0 — task t\d+ (succeeded|attempt 1 failed)"
                            r"( \(and \d+ more changes?\))?", line), line


def test_without_a_terminal_resume_names_the_run_and_a_finished_one_prints_only_its_status(
        flows: dict[str, str], tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    first = subprocess.run(cli("run", FLOW_REF, "--goal", '{"n": 3}', "--db", str(db)),
                           env=flows, capture_output=True, text=True, check=True)
    run_id = first.stdout.split()[1].rstrip(":")
    again = subprocess.run(cli("resume", run_id, "--db", str(db)), env=flows,
                           capture_output=True, text=True, check=True)
    assert again.stderr == ""  # nothing to drive: nothing to show
    assert again.stdout.startswith(f"run {run_id}: completed")


async def _drive_with(progress: RunProgress, db: Path, goal: dict[str, object]) -> str:
    async with open_store(db) as store:
        run = await Orchestrator(store, observers=[progress]).start(
            load_workflow(FLOW_REF), goal)
    progress.finish(run.status)
    return run.run_id


def test_plain_lines_are_one_per_interval_by_the_clock_given(
        flows: dict[str, str], tmp_path: Path) -> None:
    # A clock that jumps an hour per look: every batch with a notable change gets its line.
    ticks = iter(range(0, 10**9, 3600))
    lines: list[str] = []
    progress = RunProgress(live=False, clock=lambda: float(next(ticks)), echo=lines.append)
    run_id = asyncio.run(_drive_with(progress, tmp_path / "a.db",
                                     {"n": 3, "chain": True, "delay": 0.05}))
    assert lines[0] == f"run {run_id} (progress-flow): started"
    assert [ln.split(" — ")[1] for ln in lines[1:-1]] == [
        "task t0 succeeded", "task t1 succeeded", "task t2 succeeded"]
    assert lines[-1].endswith("3/3 tasks done, 0 retries, 0 escalations, cost 0 — completed")

    # A clock that never moves: only the first line and the final one, whatever happened
    # (a change left over when the run ends is in the final line's counts).
    frozen: list[str] = []
    still = RunProgress(live=False, clock=lambda: 0.0, interval_s=3600, echo=frozen.append)
    asyncio.run(_drive_with(still, tmp_path / "b.db", {"n": 50, "flaky": True}))
    assert len(frozen) == 2, frozen
    assert frozen[-1].endswith("50/50 tasks done, 25 retries, 0 escalations, cost 0 — completed")


def test_a_batch_that_does_not_follow_shows_the_seq_only() -> None:
    lines: list[str] = []
    progress = RunProgress(live=False, echo=lines.append)
    at = datetime.now(UTC)
    started = ev.RunStarted(workflow="w", goal={}, started_at=at.isoformat(),
                            max_concurrency=1, src="created", dst="planning")
    progress.committed("r1", [started], first_seq=1, at=at)
    progress.committed("r1", [ev.RunCompleted(src="running", dst="completed")], first_seq=9,
                       at=at)
    assert not progress.exact
    assert progress.summary() == "at seq 1"
    progress.finish("completed")
    assert lines == ["run r1 (w): started", "run r1 (w): at seq 1 — completed"]
