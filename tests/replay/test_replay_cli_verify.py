"""``verify`` without --workflow: it checks determinism with the workflow the run
recorded when that can be found, and otherwise says plainly that it SKIPPED
the check and how to run it, never claiming a pass for it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner

from ledgerflow.eventstore import NewEvent, open_store
from ledgerflow.examples import travel
from ledgerflow.machines import Orchestrator, decode_event, encode_event
from ledgerflow.machines.events import RunStarted
from ledgerflow.replay.cli import main
from ledgerflow.replay.verify import verify_run


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """The demo run, and a copy of it whose RunStarted names a workflow found nowhere."""
    db = tmp_path_factory.mktemp("verify") / "ledgerflow.db"

    async def go() -> tuple[str, str]:
        async with open_store(db) as store:
            run = await Orchestrator(store).start(
                travel.wf, travel.TripGoal(destination="Lisbon", passengers=2))
            envs = await store.read_all(run.run_id)
            started = decode_event(envs[0].data)
            assert isinstance(started, RunStarted)
            lost = msgspec.structs.replace(
                started, workflow="retired-workflow", workflow_ref="gone_module_q:wf")
            copy = [NewEvent(type=envs[0].type, data=encode_event(lost)),
                    *(NewEvent(type=e.type, data=e.data) for e in envs[1:])]
            await store.append("orphan", copy, expected_seq=0, status="completed",
                               label="retired-workflow")
            return run.run_id, "orphan"

    found, orphan = asyncio.run(go())
    return db, found, orphan


def test_verify_uses_the_recorded_workflow_and_runs_all_three_checks(
    store_path: tuple[Path, str, str],
) -> None:
    db, run_id, _ = store_path
    code, out = cli("verify", run_id, "--db", str(db))
    assert code == 0, out
    assert "workflow: travel (recorded by the run)" in out
    for check in ("chain", "transitions", "determinism"):
        assert f"PASS  {check}:" in out
    assert "SKIP" not in out
    assert out.splitlines()[-1] == "3 checks passed"


def test_verify_says_it_skipped_determinism_when_the_workflow_cannot_be_found(
    store_path: tuple[Path, str, str],
) -> None:
    db, _, orphan = store_path
    code, out = cli("verify", orphan, "--db", str(db))
    assert code == 0, out
    assert "PASS  chain:" in out
    assert "PASS  transitions:" in out
    assert "PASS  determinism" not in out
    (skip,) = [ln for ln in out.splitlines() if ln.startswith("SKIP  determinism:")]
    assert "retired-workflow" in skip
    assert "ledgerflow verify RUN --workflow MODULE:WORKFLOW" in skip
    assert out.splitlines()[-1] == "2 checks passed; determinism SKIPPED (not checked)"


def test_verify_with_an_explicit_workflow_checks_an_orphaned_run(
    store_path: tuple[Path, str, str],
) -> None:
    db, _, orphan = store_path
    code, out = cli("verify", orphan, "--workflow", "ledgerflow.examples.travel:wf",
                    "--db", str(db))
    assert code == 0, out
    assert "workflow: travel (given with --workflow)" in out
    assert "PASS  determinism:" in out


async def test_the_api_reports_a_skipped_check_without_failing(
    store_path: tuple[Path, str, str],
) -> None:
    db, run_id, _ = store_path
    async with open_store(db, read_only=True) as store:
        report = await verify_run(store, run_id)
    assert report.ok
    assert report.skipped == ["determinism"]
    assert report.lines()[-1].startswith("SKIP  determinism: not checked: no workflow was given")


LOOKALIKE_SCRIPT = '''
import asyncio, sys
from pydantic import BaseModel
from ledgerflow import Orchestrator, Plan, Task, Workflow, open_store

class Goal(BaseModel):
    n: int

class Num(BaseModel):
    n: int

wf = Workflow("travel", goal=Goal, max_concurrency=8)   # the demo's name, other code

@wf.agent(input=Num, output=Num)
async def inc(inp: Num, ctx: object) -> Num:
    return Num(n=inp.n + 1)

@wf.planner
async def plan(goal: Goal, ctx: object) -> Plan:
    return Plan(tasks=[Task(id="a", agent="inc", inputs={"n": "$goal.n"})])

async def main() -> None:
    async with open_store(sys.argv[1]) as store:
        run = await Orchestrator(store).start(wf, Goal(n=1))
        print(run.run_id, run.status)

asyncio.run(main())
'''


def test_a_script_run_sharing_the_demos_name_is_never_checked_against_the_demo(
    tmp_path: Path,
) -> None:
    # The article's "the LLM decided" at 2am: a verify that silently loads some
    # other code of the same name would report a false divergence (or a pass).
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    script, db = tmp_path / "mytrip.py", tmp_path / "runs.db"
    script.write_text(LOOKALIKE_SCRIPT)
    started = subprocess.run([sys.executable, str(script), str(db)], cwd=tmp_path,
                             capture_output=True, text=True, check=True, timeout=60)
    run_id, status = started.stdout.split()
    assert status == "completed"
    verified = subprocess.run(
        [sys.executable, "-m", "ledgerflow.replay.cli", "verify", run_id, "--db", str(db)],
        cwd=tmp_path, capture_output=True, text=True, check=False, timeout=60)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "SKIP" in verified.stdout
    assert "FAIL" not in verified.stdout
