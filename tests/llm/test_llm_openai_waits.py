"""A busy server inside a real run: Retry-After is waited out (429 and 503) and every wait is
on the step; a 429 with no time backs off; waits are bounded, never past the run's deadline;
and the client's own retries never add requests the log does not show."""

from __future__ import annotations

from chat_server import Answer, ChatServer, rate_limited, reply, unavailable
from llm_helpers import GOOD, MODEL, Goal, client_for, failures, quote_workflow, steps

from ledgerflow import machines
from ledgerflow.eventstore import EventStore
from ledgerflow.llm import OpenAIChat, WaitPolicy
from ledgerflow.machines import Orchestrator


async def test_a_429_with_retry_after_is_waited_out_and_the_wait_recorded(
    orch: Orchestrator, store: EventStore, chat_server: ChatServer
) -> None:
    chat_server.queue(rate_limited("0.05"), reply(GOOD))
    chat = OpenAIChat(client_for(chat_server), MODEL)
    run = await orch.start(quote_workflow(chat), Goal())

    assert run.status == "completed"
    assert run.outputs["quote"] == GOOD
    first, second = chat_server.requests
    assert first == second  # the same request, asked again after the wait
    [step] = await steps(store, run.run_id)  # one call, one step, its wait inside
    assert step.detail["waits"] == [{"status": 429, "retry_after_s": 0.05,
                                     "source": "retry-after"}]


async def test_a_503_with_retry_after_ms_is_waited_out_likewise(
    orch: Orchestrator, store: EventStore, chat_server: ChatServer
) -> None:
    chat_server.queue(rate_limited("20", header="retry-after-ms", status=503),
                      unavailable("0.03"), reply(GOOD))
    chat = OpenAIChat(client_for(chat_server), MODEL)
    run = await orch.start(quote_workflow(chat), Goal())

    assert run.status == "completed"
    assert len(chat_server.requests) == 3
    [step] = await steps(store, run.run_id)
    assert step.detail["waits"] == [
        {"status": 503, "retry_after_s": 0.02, "source": "retry-after"},
        {"status": 503, "retry_after_s": 0.03, "source": "retry-after"}]


async def test_a_429_without_retry_after_backs_off_exponentially(
    orch: Orchestrator, store: EventStore, chat_server: ChatServer
) -> None:
    chat_server.queue(rate_limited(None), rate_limited(None), reply(GOOD))
    chat = OpenAIChat(client_for(chat_server), MODEL,
                      waits=WaitPolicy(backoff_s=0.01, multiplier=3.0))
    run = await orch.start(quote_workflow(chat), Goal())

    assert run.status == "completed"
    [step] = await steps(store, run.run_id)
    assert step.detail["waits"] == [
        {"status": 429, "retry_after_s": 0.01, "source": "backoff"},
        {"status": 429, "retry_after_s": 0.03, "source": "backoff"}]


async def test_a_retry_after_past_the_runs_deadline_fails_at_once_without_waiting(
    orch: Orchestrator, store: EventStore, chat_server: ChatServer
) -> None:
    chat_server.queue(rate_limited("90"))
    chat = OpenAIChat(client_for(chat_server), MODEL)
    run = await orch.start(
        quote_workflow(chat, budget=machines.Budget(deadline_s=30)), Goal())

    assert run.status != "completed"
    assert len(chat_server.requests) == 1
    [failed] = await failures(store, run.run_id)
    assert failed.error_type == "ledgerflow.ModelWaitPastDeadlineError"
    assert "ledgerflow.PermanentError" in failed.error_types
    assert f"Model '{MODEL}' answered 429 and asks to wait 90s" in failed.message
    assert "deadline is" in failed.message
    [step] = await steps(store, run.run_id)
    assert step.error_type == "ledgerflow.ModelWaitPastDeadlineError"


async def test_a_call_still_refused_after_its_waits_fails_naming_them(
    orch: Orchestrator, store: EventStore, chat_server: ChatServer
) -> None:
    chat_server.queue(rate_limited("0.01"), rate_limited("0.01"), rate_limited("0.01"))
    chat = OpenAIChat(client_for(chat_server), MODEL, waits=WaitPolicy(max_waits=2))
    run = await orch.start(quote_workflow(chat), Goal())

    assert len(chat_server.requests) == 3  # the call and its 2 waits' requests
    [failed] = await failures(store, run.run_id)
    assert failed.error_type == "ledgerflow.ModelRateLimitedError"
    assert "after 2 wait(s)" in failed.message


async def test_failures_that_name_no_wait_reach_the_task_after_one_request(
    orch: Orchestrator, store: EventStore, chat_server: ChatServer
) -> None:
    # The openai client would retry a 503 or a 500 twice on its own; OpenAIChat turns that off.
    chat_server.queue(unavailable(None), Answer(status=500))
    chat = OpenAIChat(client_for(chat_server), MODEL)
    retry = machines.RetryPolicy(max_attempts=2, backoff_s=0.0, jitter=0.0)
    run = await orch.start(quote_workflow(chat, retry=retry), Goal())

    assert len(chat_server.requests) == 2  # one per attempt
    assert [f.error_type for f in await failures(store, run.run_id)] == [
        "openai.InternalServerError", "openai.InternalServerError"]
