"""``ledgerflow log RUN --follow``: the log so far, then each event as another process appends it.

Real processes over real SQLite files: a run driven by ``ledgerflow run`` in
a child is followed by ``log --follow`` in another, to its end; what was
followed equals ``log`` afterwards, line for line (a side effect's
``StepStarted`` included: it is printed once its outcome is known).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

FLOWS = '''
import asyncio
from pydantic import BaseModel
from ledgerflow import AgentContext, Budget, Plan, Task, Workflow


class Goal(BaseModel):
    n: int = 5
    delay: float = 0.1


class In(BaseModel):
    i: int
    delay: float


class Out(BaseModel):
    i: int
    ref: str


wf = Workflow("follow-flow", goal=Goal, budget=Budget(max_retries=10), max_concurrency=2)


async def book(i: int, delay: float) -> str:
    await asyncio.sleep(delay)
    return f"B-{i}"


@wf.agent(input=In, output=Out, side_effect=True, idempotent=True)
async def work(inp: In, ctx: AgentContext) -> Out:
    # A side effect: its StepStarted is durable before the call, its outcome after.
    ref = await ctx.step("book", book, inp.i, inp.delay, side_effect=True)
    return Out(i=inp.i, ref=ref)


@wf.planner
async def plan(goal: Goal, ctx: AgentContext) -> Plan:
    return Plan(tasks=[
        Task(id=f"t{i}", agent="work", needs=[f"t{i - 1}"] if i % 2 else [],
             inputs={"i": i, "delay": goal.delay})
        for i in range(goal.n)])
'''
FLOW_REF = "follow_flows:wf"
PATIENCE_S = 60.0
WAITING_GOAL = '{"destination": "Lisbon", "passengers": 2}'


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment a child process imports ``follow_flows`` with."""
    (tmp_path / "follow_flows.py").write_text(FLOWS)
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "COLUMNS": "200"}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ledgerflow.replay.cli", *args]


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli(*args), env=env, capture_output=True, text=True,
                          timeout=PATIENCE_S, check=False)


def read_until(proc: subprocess.Popen[str], stream: str, text: str) -> str:
    """What ``proc`` wrote on ``stream`` up to ``text`` (read as it is written)."""
    pipe = proc.stdout if stream == "stdout" else proc.stderr
    assert pipe is not None
    fd, seen = pipe.fileno(), b""
    deadline = time.monotonic() + PATIENCE_S
    while text.encode() not in seen:
        ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
        chunk = os.read(fd, 65536) if ready else b""
        if not chunk:
            proc.kill()
            pytest.fail(f"never saw {text!r} on {stream}; saw:\n{seen.decode()}")
        seen += chunk
    return seen.decode()


def follow(env: dict[str, str], db: Path, run_id: str, fmt: str) -> subprocess.Popen[str]:
    return subprocess.Popen(cli("log", run_id, "--follow", "--format", fmt, "--db", str(db)),
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str], already: str = "") -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=PATIENCE_S)
    return proc.returncode, already + out, err


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_run_driven_elsewhere_is_followed_to_its_end_as_log_prints_it(
        env: dict[str, str], tmp_path: Path, fmt: str) -> None:
    db = tmp_path / "runs.db"
    driver = subprocess.Popen(
        cli("run", FLOW_REF, "--goal", '{"n": 10, "delay": 0.25}', "--db", str(db)),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = read_until(driver, "stderr", "): started")  # the id, at once
    run_id = started.split()[1]
    follower = follow(env, db, run_id, fmt)
    assert driver.poll() is None  # 5 rounds of 0.25 s side effects are still to come
    code, followed, err = finish(follower)
    driver.communicate(timeout=PATIENCE_S)
    assert driver.returncode == 0
    assert (code, err) == (0, "")
    afterwards = run_cli(env, "log", run_id, "--format", fmt, "--db", str(db))
    assert afterwards.returncode == 0
    assert followed.splitlines() == afterwards.stdout.splitlines()
    if fmt == "jsonl":
        types = [json.loads(line)["type"] for line in followed.splitlines()]
        assert types.count("StepStarted") == 10  # side effects, joined with their outcome
        assert types[-1] == "RunCompleted"


def test_a_waiting_run_is_followed_on_until_a_resolution_completes_it(
        env: dict[str, str], tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    started = run_cli(env, "run", "ledgerflow.examples.travel_unreviewed:wf", "--goal",
                      WAITING_GOAL, "--db", str(db))
    assert started.returncode == 0, started.stdout + started.stderr
    run_id = started.stdout.split()[1].rstrip(":")
    assert "waiting on price" in started.stdout
    follower = follow(env, db, run_id, "jsonl")
    seen = read_until(follower, "stdout", '"type":"RunWaiting"')
    time.sleep(1.0)  # several polls: a waiting run does not end the follow
    assert follower.poll() is None
    good = json.dumps({"total": 836.0, "line_items": [], "confidence": 0.9})
    resolved = run_cli(env, "resolve", run_id, "price", "--output", good, "--db", str(db))
    assert resolved.returncode == 0, resolved.stdout + resolved.stderr
    code, followed, err = finish(follower, seen)
    assert (code, err) == (0, "")
    afterwards = run_cli(env, "log", run_id, "--format", "jsonl", "--db", str(db))
    assert followed.splitlines() == afterwards.stdout.splitlines()
    assert json.loads(followed.splitlines()[-1])["type"] == "RunCompleted"


def test_ctrl_c_stops_a_follow_quietly_with_130(env: dict[str, str], tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    started = run_cli(env, "run", "ledgerflow.examples.travel_unreviewed:wf", "--goal",
                      WAITING_GOAL, "--db", str(db))
    run_id = started.stdout.split()[1].rstrip(":")
    follower = follow(env, db, run_id, "table")
    read_until(follower, "stdout", "RunWaiting")
    follower.send_signal(signal.SIGINT)
    code, _, err = finish(follower)
    assert (code, err) == (130, "")


def test_a_finished_run_is_printed_whole_and_an_unknown_one_refused(
        env: dict[str, str], tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    first = run_cli(env, "run", FLOW_REF, "--goal", '{"n": 2, "delay": 0}', "--db", str(db))
    run_id = first.stdout.split()[1].rstrip(":")
    followed = run_cli(env, "log", run_id[:6], "--follow", "--format", "jsonl", "--db", str(db))
    afterwards = run_cli(env, "log", run_id, "--format", "jsonl", "--db", str(db))
    assert followed.returncode == 0
    assert followed.stdout == afterwards.stdout
    missing = run_cli(env, "log", "nosuchrun", "--follow", "--db", str(db))
    assert missing.returncode == 1
    assert "nosuchrun" in missing.stderr
