"""An answer that is not valid JSON for the output model is asked again with the problem fed
back (each call its own step); an answer invalid every time fails the attempt with a clear
error, which the task's retry policy then decides about."""

from __future__ import annotations

from chat_server import ChatServer, reply
from llm_helpers import GOOD, MODEL, Goal, client_for, failures, quote_workflow, steps

from ledgerflow import machines
from ledgerflow.eventstore import EventStore
from ledgerflow.llm import OpenAIChat
from ledgerflow.machines import Orchestrator

PROSE = "A stay in Lisbon costs about 236 euros."
NEGATIVE = '{"city": "Lisbon", "total": -5, "currency": "EUR"}'


async def test_an_invalid_answer_is_retried_with_the_validation_error_fed_back(
    orch: Orchestrator, store: EventStore, chat_server: ChatServer
) -> None:
    chat_server.queue(reply(NEGATIVE), reply(GOOD))
    chat = OpenAIChat(client_for(chat_server), MODEL, prices={MODEL: (1.0, 2.0)})
    run = await orch.start(quote_workflow(chat), Goal())

    assert run.status == "completed"
    assert run.outputs["quote"] == GOOD
    first, second = chat_server.requests
    assert second["messages"][:len(first["messages"])] == first["messages"]
    assert second["messages"][len(first["messages"]):] == [
        {"role": "assistant", "content": NEGATIVE},
        {"role": "user", "content": "Your answer is not a valid Quote: total: Input should be "
                                    "greater than 0. Answer again with only a JSON object "
                                    "that matches the schema."}]
    # Each call is its own step, both paid for.
    journaled = await steps(store, run.run_id)
    assert [(s.name, s.index) for s in journaled] == [("openai.chat", 0), ("openai.chat", 1)]
    assert journaled[1].request["kwargs"]["messages"] == second["messages"]
    assert run.state.tokens == 30


async def test_an_answer_invalid_every_time_fails_the_attempt_naming_the_problem(
    orch: Orchestrator, store: EventStore, chat_server: ChatServer
) -> None:
    chat_server.queue(reply(PROSE), reply(PROSE), reply(PROSE))
    chat = OpenAIChat(client_for(chat_server), MODEL, parse_retries=2)
    run = await orch.start(quote_workflow(chat), Goal())

    assert run.status != "completed"
    assert "quote" not in run.outputs
    assert len(chat_server.requests) == 3  # the first call and parse_retries=2 more
    [failed] = await failures(store, run.run_id)
    assert failed.error_type == "ledgerflow.ModelOutputError"
    assert "builtins.ValueError" in failed.error_types
    assert failed.message.startswith(f"Model '{MODEL}' gave no valid Quote in 3 call(s)")
    assert "the answer: Invalid JSON" in failed.message
    assert len(await steps(store, run.run_id)) == 3


async def test_the_tasks_retry_policy_decides_after_the_parse_retries(
    orch: Orchestrator, store: EventStore, chat_server: ChatServer
) -> None:
    # Attempt 1: two invalid answers (parse_retries=1); attempt 2: a valid one.
    chat_server.queue(reply(PROSE), reply(PROSE), reply(GOOD))
    chat = OpenAIChat(client_for(chat_server), MODEL)
    retry = machines.RetryPolicy(max_attempts=2, backoff_s=0.0, jitter=0.0)
    run = await orch.start(quote_workflow(chat, retry=retry), Goal())

    assert run.status == "completed"
    assert run.outputs["quote"] == GOOD
    [failed] = await failures(store, run.run_id)
    assert (failed.attempt, failed.error_type) == (1, "ledgerflow.ModelOutputError")
    assert [(s.attempt, s.index) for s in await steps(store, run.run_id)] == [
        (1, 0), (1, 1), (2, 0)]
    # The new attempt starts from the original messages, not the fed-back ones.
    assert chat_server.requests[2]["messages"] == chat_server.requests[0]["messages"]


async def test_parse_retries_zero_fails_on_the_first_invalid_answer(
    orch: Orchestrator, store: EventStore, chat_server: ChatServer
) -> None:
    chat_server.queue(reply(NEGATIVE))
    chat = OpenAIChat(client_for(chat_server), MODEL, parse_retries=0)
    run = await orch.start(quote_workflow(chat), Goal())
    [failed] = await failures(store, run.run_id)
    assert "total: Input should be greater than 0" in failed.message
    assert len(chat_server.requests) == 1
