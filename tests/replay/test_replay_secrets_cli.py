"""``ledgerflow secrets list|erase RUN``: references shown, never values; the log verifies."""

from __future__ import annotations

import asyncio
from pathlib import Path

from click.testing import CliRunner
from pydantic import BaseModel, SecretStr

from ledgerflow.contracts import Plan, Task
from ledgerflow.eventstore import open_store
from ledgerflow.machines import AgentContext, Orchestrator, Workflow
from ledgerflow.replay.cli import main

KEY = "sk-cli-5e1f0a9d"


class Goal(BaseModel):
    api_key: SecretStr


class KeyIn(BaseModel):
    api_key: SecretStr


class Done(BaseModel):
    ok: bool


wf = Workflow("secrets-cli", goal=Goal)


@wf.planner
async def plan(goal: Goal, ctx: AgentContext) -> Plan:
    return Plan(tasks=[Task(id="use", agent="use", inputs={"api_key": "$goal.api_key"})])


@wf.agent(input=KeyIn, output=Done, name="use")
async def use(inp: KeyIn, ctx: AgentContext) -> Done:
    return Done(ok=inp.api_key.get_secret_value() == KEY)


async def _one_run(db: str) -> None:
    async with open_store(db) as store:
        run = await Orchestrator(store).start(wf, Goal(api_key=SecretStr(KEY)), run_id="c1")
        assert run.status == "completed"
        assert run.outputs["use"].ok  # type: ignore[attr-defined]


def test_secrets_list_shows_references_and_erase_leaves_the_log_verifying(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "runs.db")
    asyncio.run(_one_run(db))
    runner = CliRunner()
    listed = runner.invoke(main, ["secrets", "list", "c1", "--db", db])
    assert listed.exit_code == 0, listed.output
    assert listed.stdout.startswith("sec_")
    assert KEY not in listed.output
    erased = runner.invoke(main, ["secrets", "erase", "c1", "--db", db, "--yes"])
    assert erased.exit_code == 0, erased.output
    assert "erased 1 secret(s) of run c1" in erased.output
    verified = runner.invoke(main, ["verify", "c1", "--db", db, "--workflow",
                                    f"{__name__}:wf"])
    assert verified.exit_code == 0, verified.output
    assert runner.invoke(main, ["secrets", "list", "c1", "--db", db]).stdout == ""


def test_secrets_of_an_unknown_run_is_a_one_line_error(tmp_path: Path) -> None:
    db = str(tmp_path / "runs.db")
    asyncio.run(_one_run(db))
    result = CliRunner().invoke(main, ["secrets", "erase", "nope", "--db", db, "--yes"])
    assert result.exit_code != 0
    assert "nope" in result.output
    assert "Traceback" not in result.output
