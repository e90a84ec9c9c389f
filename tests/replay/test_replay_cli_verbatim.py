"""Every text from a log is printed as it was recorded: an agent's error
``card [declined] by [bold]bank[/bold]`` or an output ``{"v":[null]}`` is not
Rich markup, and ``:x:`` is not an emoji code."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner
from pydantic import BaseModel
from rich.console import Console

from ledgerflow import AgentContext, Orchestrator, PermanentError, Plan, Task, Workflow, open_store
from ledgerflow.eventstore import RunSummary
from ledgerflow.replay import render
from ledgerflow.replay.cli import main

MARKUP_ERROR = "card [declined] by [bold]bank[/bold] code [/] :x:"


class Goal(BaseModel):
    n: int


class Nothing(BaseModel):
    pass


class Nulls(BaseModel):
    v: list[None]


wf = Workflow("markup", goal=Goal)


@wf.agent(input=Nothing, output=Nulls)
async def nulls(inp: Nothing, ctx: AgentContext) -> Nulls:
    return Nulls(v=[None])


@wf.agent(input=Nothing, output=Nulls)
async def card(inp: Nothing, ctx: AgentContext) -> Nulls:
    raise PermanentError(MARKUP_ERROR)


@wf.planner
async def plan(goal: Goal, ctx: AgentContext) -> Plan:
    return Plan(tasks=[Task(id="nulls", agent="nulls"), Task(id="card", agent="card")])


@pytest.fixture(scope="module")
def markup_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    db = str(tmp_path_factory.mktemp("verbatim") / "m.db")

    async def go() -> str:
        async with await open_store(db) as store:
            run = await Orchestrator(store).start(wf, Goal(n=1))
            return run.run_id

    return db, asyncio.run(go())


def cli(*args: str, columns: int = 200) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False,
                                env={"COLUMNS": str(columns)})
    return result.exit_code, result.output


def squeeze(text: str) -> str:
    """The output with table padding and wrapping folded away."""
    return "".join(text.split())


@pytest.mark.parametrize("columns", [200, 80], ids=["wide", "80 columns"])
@pytest.mark.parametrize("command", ["log", "show", "replay"])
def test_an_error_that_looks_like_markup_is_printed_verbatim(
    markup_run: tuple[str, str], command: str, columns: int
) -> None:
    db, run_id = markup_run
    code, out = cli(command, run_id, "--db", db, columns=columns)
    assert code == 0, out
    assert squeeze(MARKUP_ERROR) in squeeze(out), out
    assert "❌" not in out


@pytest.mark.parametrize("command", ["show", "replay"])
def test_an_output_with_a_bracketed_null_is_printed_verbatim(
    markup_run: tuple[str, str], command: str
) -> None:
    db, run_id = markup_run
    code, out = cli(command, run_id, "--db", db)
    assert code == 0, out
    assert '{"v":[null]}' in out, out


def test_the_runs_table_keeps_a_markup_like_reason_and_label_on_any_console() -> None:
    # A console with markup on (a caller's own) still shows the cells as recorded.
    at = datetime(2026, 1, 1, tzinfo=UTC)
    summary = RunSummary(run_id="r1", status="waiting", label="[red]wf[/red]",
                         created_at=at, updated_at=at, last_seq=3)
    console = Console(width=200, markup=True, emoji=True, file=io.StringIO())
    console.print(render.runs_table([summary], {"r1": MARKUP_ERROR}))
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert MARKUP_ERROR in out
    assert "[red]wf[/red]" in out
