"""Tokens and cost of each model call: on its step, in the run's state, charged once;
priced per model from the prices given, and free (tokens still counted) with none."""

from __future__ import annotations

import pytest
from chat_server import ChatServer, reply
from llm_helpers import GOOD, MODEL, Goal, client_for, quote_workflow, steps

from ledgerflow.eventstore import EventStore
from ledgerflow.llm import OpenAIChat, Price, PriceMissingError
from ledgerflow.machines import Orchestrator, load_run_state

PRICE = Price(input_per_million=2.5, output_per_million=10.0)


async def test_priced_calls_put_their_tokens_and_cost_on_steps_and_on_the_run(
    orch: Orchestrator, store: EventStore, chat_server: ChatServer
) -> None:
    chat_server.queue(reply(GOOD, prompt_tokens=1_000, completion_tokens=200),
                      reply(GOOD, prompt_tokens=3_000, completion_tokens=400))
    chat = OpenAIChat(client_for(chat_server), MODEL, prices={MODEL: PRICE, "other": (1, 1)})
    run = await orch.start(quote_workflow(chat, tasks=2), Goal())

    assert run.status == "completed"
    journaled = await steps(store, run.run_id)
    assert sorted(s.tokens for s in journaled) == [1_200, 3_400]
    assert sorted(s.cost for s in journaled) == pytest.approx([0.0045, 0.0115])
    assert sorted((s.detail["input_tokens"], s.detail["output_tokens"]) for s in journaled) == [
        (1_000, 200), (3_000, 400)]
    # Charged to the run once each, live and as rebuilt from the log.
    assert run.state.tokens == 4_600
    assert run.state.cost == pytest.approx(0.016)
    rebuilt = await load_run_state(store, run.run_id)
    assert rebuilt.tokens == run.state.tokens
    assert rebuilt.cost == pytest.approx(0.016)


async def test_without_prices_calls_are_free_and_their_tokens_still_counted(
    orch: Orchestrator, store: EventStore, chat_server: ChatServer
) -> None:
    chat_server.queue(reply(GOOD, prompt_tokens=500, completion_tokens=50))
    chat = OpenAIChat(client_for(chat_server), MODEL)
    run = await orch.start(quote_workflow(chat), Goal())

    [step] = await steps(store, run.run_id)
    assert (step.tokens, step.cost) == (550, 0.0)
    assert (run.state.tokens, run.state.cost) == (550, 0.0)


def test_prices_that_miss_the_model_are_refused_when_the_adapter_is_made(
    chat_server: ChatServer,
) -> None:
    with pytest.raises(PriceMissingError, match=f"No price for model '{MODEL}'"):
        OpenAIChat(client_for(chat_server), MODEL, prices={"gpt-4.1-mini": (0.4, 1.6)})
