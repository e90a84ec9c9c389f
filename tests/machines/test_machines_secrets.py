"""Secret fields: the agent gets the real value, the log only ever a reference.

The article's story: a pydantic ``SecretStr`` in a goal reached the next agent
as the literal ``**********``, and the run "completed" with a corrupted key.
Here a payment key travels goal → agent input, and a token minted by one
agent travels to the next as a secret output field; every byte of the store's
log is searched for them.
"""

from __future__ import annotations

import inspect
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field, SecretStr

from ledgerflow.contracts import Plan, Task
from ledgerflow.contracts.secrets import secret_field
from ledgerflow.eventstore import open_store
from ledgerflow.machines import (
    AgentContext,
    EscalationRequest,
    Orchestrator,
    Resolution,
    RetryPolicy,
    Workflow,
    load_run_state,
)
from ledgerflow.machines.errors import ResolutionError
from ledgerflow.replay import verify_run

KEY = "sk-live-4f9c2e7a1b"
TOKEN = "tok-8d1e66f0c3"


class PayGoal(BaseModel):
    customer: str
    api_key: SecretStr


class MintIn(BaseModel):
    customer: str
    api_key: SecretStr


class MintOut(BaseModel):
    token: str = secret_field(min_length=8)
    note: str = ""


class ChargeIn(BaseModel):
    token: str = Field(json_schema_extra={"redact": True})
    customer: str


class ChargeOut(BaseModel):
    charged: bool
    last4: str


class ProcessDied(BaseException):
    """Ends the drive as a crash does: no outcome is recorded for the attempt."""


def payments(seen: list[dict[str, Any]], *, mint: Any = None, name: str = "payments",
             pool_limit: int | None = None) -> Workflow:
    wf = Workflow(name, goal=PayGoal)

    @wf.planner
    async def plan(goal: PayGoal, ctx: AgentContext) -> Plan:
        seen.append({"planner_key": goal.api_key.get_secret_value()})
        return Plan(tasks=[
            Task(id="mint", agent="mint",
                 inputs={"customer": "$goal.customer", "api_key": "$goal.api_key"}),
            Task(id="charge", agent="charge", needs=["mint"],
                 inputs={"token": "$mint.token", "customer": "$goal.customer"}),
        ])

    @wf.agent(input=MintIn, output=MintOut, name="mint", max_concurrent=pool_limit,
              retry=RetryPolicy(max_attempts=2, backoff_s=0))
    async def mint_token(inp: MintIn, ctx: AgentContext) -> Any:
        seen.append({"mint_key": inp.api_key.get_secret_value()})
        if mint is not None:
            result = mint(inp, ctx)
            return await result if inspect.isawaitable(result) else result
        return MintOut(token=TOKEN, note="minted")

    @wf.agent(input=ChargeIn, output=ChargeOut, name="charge")
    async def charge(inp: ChargeIn, ctx: AgentContext) -> ChargeOut:
        seen.append({"charge_token": inp.token})
        return ChargeOut(charged=True, last4=inp.token[-4:])

    del mint_token
    return wf


def log_bytes(db: Path) -> bytes:
    """Every row of the events table (and the runs row), as the file holds them."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT run_id, type, data, hash FROM events").fetchall()
        rows += conn.execute("SELECT * FROM runs").fetchall()
    finally:
        conn.close()
    return repr(rows).encode()


def vault_rows(db: Path) -> list[tuple[str, str, bytes]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT ref, run_id, value FROM run_secrets ORDER BY ref").fetchall()
    finally:
        conn.close()


async def test_a_secret_str_reaches_the_agent_intact_and_the_log_holds_only_a_reference(
    tmp_path: Path,
) -> None:
    seen: list[dict[str, Any]] = []
    wf = payments(seen)
    db = tmp_path / "runs.db"
    async with open_store(db) as store:
        run = await Orchestrator(store).start(
            wf, PayGoal(customer="ana", api_key=SecretStr(KEY)), run_id="pay-1")
        assert run.status == "completed", run.reason
        assert {"planner_key": KEY} in seen
        assert {"mint_key": KEY} in seen  # not "**********"
        assert {"charge_token": TOKEN} in seen  # a secret output handed on intact
        assert run.outputs["charge"].last4 == TOKEN[-4:]  # type: ignore[attr-defined]
        # The caller's result holds the real values again.
        assert run.outputs["mint"].token == TOKEN  # type: ignore[attr-defined]
        state = await load_run_state(store, "pay-1")
        assert set(state.goal["api_key"]) == {"$secret"}
        assert set(state.tasks["mint"].output["token"]) == {"$secret"}  # type: ignore[index]
        report = await verify_run(store, "pay-1", workflow=wf)
        assert report.ok, report.lines
    logged = log_bytes(db)
    assert KEY.encode() not in logged
    assert TOKEN.encode() not in logged
    assert b"**********" not in logged
    assert b"$secret" in logged
    kept = {value for _, _, value in vault_rows(db)}
    assert kept == {f'"{KEY}"'.encode(), f'"{TOKEN}"'.encode()}


async def test_a_secret_too_short_is_rejected_without_quoting_it(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []
    wf = payments(seen, mint=lambda inp, ctx: {"token": "tok-1", "note": "short"})
    db = tmp_path / "runs.db"
    async with open_store(db) as store:
        run = await Orchestrator(store).start(
            wf, PayGoal(customer="ana", api_key=SecretStr(KEY)), run_id="pay-2")
        assert run.status == "waiting"
        state = await load_run_state(store, "pay-2")
        assert "at least 8 characters" in (state.tasks["mint"].last_error or "")
    logged = log_bytes(db)
    assert b"tok-1" not in logged
    assert KEY.encode() not in logged


async def test_an_agent_error_quoting_the_key_is_logged_without_it(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []

    def refuse(inp: MintIn, ctx: AgentContext) -> Any:
        raise RuntimeError(f"card network refused key {inp.api_key.get_secret_value()}")

    wf = payments(seen, mint=refuse)
    db = tmp_path / "runs.db"
    async with open_store(db) as store:
        run = await Orchestrator(store).start(
            wf, PayGoal(customer="ana", api_key=SecretStr(KEY)), run_id="pay-3")
        assert run.status == "waiting"
        state = await load_run_state(store, "pay-3")
        assert "refused key [redacted]" in (state.tasks["mint"].last_error or "")
    assert KEY.encode() not in log_bytes(db)


async def test_a_resolution_with_a_secret_keeps_it_in_the_vault_and_the_run_goes_on(
    tmp_path: Path,
) -> None:
    seen: list[dict[str, Any]] = []
    wf = payments(seen, mint=lambda inp, ctx: {"token": "no", "note": "bad"})
    db = tmp_path / "runs.db"
    async with open_store(db) as store:
        orch = Orchestrator(store)
        run = await orch.start(wf, PayGoal(customer="ana", api_key=SecretStr(KEY)),
                               run_id="pay-4")
        assert run.status == "waiting"
        with pytest.raises(ResolutionError, match="at least 8") as info:
            await orch.resolve("pay-4", "mint", output={"token": "short"}, by="ops", workflow=wf)
        assert "short" not in str(info.value).replace("at least", "")
        run = await orch.resolve("pay-4", "mint", output=MintOut(token="tok-by-hand-77"),
                                 by="ops", workflow=wf)
        assert run.status == "completed", run.reason
        assert {"charge_token": "tok-by-hand-77"} in seen
        assert (await verify_run(store, "pay-4", workflow=wf)).ok
    assert b"tok-by-hand-77" not in log_bytes(db)


async def test_a_crashed_run_resumes_with_its_secret_from_the_vault(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []
    db = tmp_path / "runs.db"

    def crash(inp: MintIn, ctx: AgentContext) -> Any:
        raise ProcessDied  # the process dies mid-attempt: nothing recorded

    async with open_store(db) as store:
        with pytest.raises(ProcessDied):
            await Orchestrator(store).start(
                payments(seen, mint=crash), PayGoal(customer="ana", api_key=SecretStr(KEY)),
                run_id="pay-5")
    seen.clear()
    async with open_store(db) as store:  # a new process: only the store remembers
        run = await Orchestrator(store, take_over_dead_owners=True).resume(
            "pay-5", payments(seen))
        assert run.status == "completed", run.reason
        assert {"mint_key": KEY} in seen
        assert {"charge_token": TOKEN} in seen
    assert KEY.encode() not in log_bytes(db)


async def test_erased_secrets_leave_the_log_verifying_and_a_resume_fails_naming_them(
    tmp_path: Path,
) -> None:
    seen: list[dict[str, Any]] = []
    db = tmp_path / "runs.db"
    wf = payments(seen, mint=lambda inp, ctx: {"token": "no", "note": "bad"})
    async with open_store(db) as store:
        orch = Orchestrator(store)
        run = await orch.start(wf, PayGoal(customer="ana", api_key=SecretStr(KEY)),
                               run_id="pay-6")
        assert run.status == "waiting"
        assert await store.erase_secrets("pay-6") == 3  # the key, two rejected tokens
        assert (await verify_run(store, "pay-6")).ok
        run = await orch.resolve("pay-6", "mint", retry=True, by="ops", workflow=wf)
        # The retried attempt cannot be handed the key: it fails permanently, naming it.
        assert run.status == "waiting"
        state = await load_run_state(store, "pay-6")
        error = state.tasks["mint"].last_error or ""
        assert "no longer holds (erased)" in error
        assert "sec_" in error
    assert vault_rows(db) == []


async def test_no_secret_in_the_page_the_replay_document_or_the_trace(tmp_path: Path) -> None:
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: PLC0415
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: PLC0415
        InMemorySpanExporter,
    )

    from ledgerflow.console.page import render_run_page  # noqa: PLC0415
    from ledgerflow.console.page_data import page_document  # noqa: PLC0415
    from ledgerflow.machines.telemetry_otel import OtelObserver, export_run  # noqa: PLC0415
    from ledgerflow.replay.documents import replay_document  # noqa: PLC0415

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    seen: list[dict[str, Any]] = []
    wf = payments(seen)
    async with open_store(tmp_path / "runs.db") as store:
        run = await Orchestrator(store, observers=[OtelObserver(provider)]).start(
            wf, PayGoal(customer="ana", api_key=SecretStr(KEY)), run_id="pay-7")
        assert run.status == "completed", run.reason
        await export_run(store, "pay-7", tracer_provider=provider)
        page = await page_document(store, "pay-7", workflow=wf)
        replayed = replay_document("pay-7", await store.read_all("pay-7"))
    spans = exporter.get_finished_spans()
    assert spans
    shown = [json.dumps(page), render_run_page(page, api=None), json.dumps(replayed),
             *(json.dumps(dict(span.attributes or {})) + span.name for span in spans),
             *(json.dumps(dict(e.attributes or {})) for span in spans for e in span.events)]
    for text in shown:
        assert KEY not in text
        assert TOKEN not in text
    provider.shutdown()


async def test_a_pool_attempt_gets_the_secret_and_its_output_secret_reaches_the_owner(
    tmp_path: Path,
) -> None:
    """A limited agent's attempts are always offered: another worker (another store
    connection, as another process has) runs it and keeps its output's secret."""
    import asyncio  # noqa: PLC0415

    from ledgerflow.machines import Worker  # noqa: PLC0415

    seen: list[dict[str, Any]] = []
    wf = payments(seen, name="payments-pool", pool_limit=1)
    db = tmp_path / "runs.db"
    async with open_store(db) as one, open_store(db) as two:
        run_id = await Orchestrator(one).submit(
            wf, PayGoal(customer="ana", api_key=SecretStr(KEY)), run_id="pay-8")
        workers = [Worker(one, [wf], lease_ttl_s=5, poll_s=0.02),
                   Worker(two, [wf], lease_ttl_s=5, poll_s=0.02)]
        serving = [asyncio.create_task(w.run()) for w in workers]
        for _ in range(1000):
            summary = await one.run(run_id)
            if summary is not None and summary.status in ("completed", "failed", "waiting"):
                break
            await asyncio.sleep(0.01)
        for worker in workers:
            worker.stop()
        await asyncio.gather(*serving)
        assert summary is not None
        assert summary.status == "completed"
        assert {"mint_key": KEY} in seen
        assert {"charge_token": TOKEN} in seen
        assert (await verify_run(one, run_id, workflow=wf)).ok
    logged = log_bytes(db)
    assert KEY.encode() not in logged
    assert TOKEN.encode() not in logged
    conn = sqlite3.connect(db)
    try:
        facts = conn.execute("SELECT data FROM task_facts").fetchall()
    finally:
        conn.close()
    assert all(KEY.encode() not in bytes(f[0]) and TOKEN.encode() not in bytes(f[0])
               for f in facts)


async def test_a_step_whose_request_quotes_the_key_is_logged_without_it(tmp_path: Path) -> None:
    """An agent that puts its key into a model prompt: the journaled request is blanked,
    the call itself got the key, and a resume is still served the recorded step."""
    seen: list[dict[str, Any]] = []
    calls: list[str] = []

    async def mint_with_step(inp: MintIn, ctx: AgentContext) -> MintOut:
        def call_bank(prompt: str) -> dict[str, str]:
            calls.append(prompt)
            return {"echo": prompt, "token": TOKEN}

        key = inp.api_key.get_secret_value()
        answer = await ctx.step("bank", call_bank, f"authorize with {key}")
        return MintOut(token=answer["token"])

    wf = payments(seen, mint=mint_with_step)

    db = tmp_path / "runs.db"
    async with open_store(db) as store:
        run = await Orchestrator(store).start(
            wf, PayGoal(customer="ana", api_key=SecretStr(KEY)), run_id="pay-9")
        assert run.status == "completed", run.reason
    assert calls == [f"authorize with {KEY}"]
    logged = log_bytes(db)
    assert KEY.encode() not in logged
    assert b"authorize with [redacted]" in logged


async def test_a_token_a_step_fetches_is_kept_secret_and_served_again_after_a_crash(
    tmp_path: Path,
) -> None:
    """``ctx.step(..., secret=True)``: the fetched token is in the vault, not the log, and
    the attempt resumed after a crash is served it (the token service is not asked twice)."""
    seen: list[dict[str, Any]] = []
    fetched: list[str] = []
    crash = [True]

    async def mint_via_oauth(inp: MintIn, ctx: AgentContext) -> MintOut:
        def fetch_token(customer: str) -> dict[str, str]:
            fetched.append(customer)
            return {"access_token": TOKEN}

        answer = await ctx.step("oauth", fetch_token, inp.customer, secret=True)
        if crash[0]:
            raise ProcessDied  # dies after the step was recorded, before the output
        return MintOut(token=answer["access_token"])

    db = tmp_path / "runs.db"
    async with open_store(db) as store:
        with pytest.raises(ProcessDied):
            await Orchestrator(store).start(
                payments(seen, mint=mint_via_oauth),
                PayGoal(customer="ana", api_key=SecretStr(KEY)), run_id="pay-10")
    crash[0] = False
    async with open_store(db) as store:
        run = await Orchestrator(store, take_over_dead_owners=True).resume(
            "pay-10", payments(seen, mint=mint_via_oauth))
        assert run.status == "completed", run.reason
    assert fetched == ["ana"]  # served from the log the second time
    assert {"charge_token": TOKEN} in seen
    logged = log_bytes(db)
    assert TOKEN.encode() not in logged
    assert KEY.encode() not in logged


async def test_an_escalation_handler_sees_the_real_values_and_its_output_secret_is_kept(
    tmp_path: Path,
) -> None:
    """A rule engine settling escalations gets the key and the rejected token as they are
    (not references), answers with a new token, and the log holds only references."""
    seen: list[dict[str, Any]] = []
    asked: list[EscalationRequest] = []
    wf = payments(seen, mint=lambda inp, ctx: {"token": "no", "note": "bad"})

    @wf.on_escalation
    async def settle(esc: EscalationRequest) -> Resolution:
        asked.append(esc)
        return Resolution.accept(MintOut(token="tok-from-the-handler", note="fixed"))

    db = tmp_path / "runs.db"
    async with open_store(db) as store:
        run = await Orchestrator(store).start(
            wf, PayGoal(customer="ana", api_key=SecretStr(KEY)), run_id="pay-11")
        assert run.status == "completed", run.reason
        assert (await verify_run(store, "pay-11", workflow=wf)).ok
    (esc,) = asked
    assert esc.input is not None
    assert esc.input["api_key"] == KEY
    assert esc.candidate["token"] == "no"
    assert isinstance(esc.fencing_token, int)
    assert {"charge_token": "tok-from-the-handler"} in seen
    logged = log_bytes(db)
    assert b"tok-from-the-handler" not in logged
    assert KEY.encode() not in logged
