"""A model call inside a real run: the answer parsed into the output model, and the step the
log keeps holding the whole call (model, messages, schema, params, raw response, usage, cost),
so a resumed or offline run re-parses the recorded answer instead of asking again."""

from __future__ import annotations

import pytest
from chat_server import ChatServer, reply
from llm_helpers import (
    GOOD,
    MODEL,
    Goal,
    Quote,
    QuoteIn,
    client_for,
    messages_for,
    quote_workflow,
    steps,
)
from pydantic import field_validator

from ledgerflow.eventstore import EventStore
from ledgerflow.llm import OpenAIChat
from ledgerflow.llm.openai_answers import response_format_for
from ledgerflow.machines import AgentContext, Orchestrator
from ledgerflow.machines.recording import Recording


async def test_structured_answer_is_parsed_and_its_step_holds_the_whole_call(
    orch: Orchestrator, store: EventStore, chat_server: ChatServer
) -> None:
    chat_server.queue(reply(GOOD, prompt_tokens=120, completion_tokens=30))
    chat = OpenAIChat(client_for(chat_server), MODEL, prices={MODEL: (0.4, 1.6)})
    run = await orch.start(quote_workflow(chat, temperature=0, seed=7), Goal())

    assert run.status == "completed"
    assert run.outputs["quote"] == GOOD
    [step] = await steps(store, run.run_id)
    messages = messages_for(QuoteIn(city="Lisbon", nights=2))
    assert step.name == "openai.chat"
    assert step.request == {"args": [], "kwargs": {
        "model": MODEL, "messages": messages, "response_format": response_format_for(Quote),
        "params": {"temperature": 0, "seed": 7}}}
    # The result is the raw chat completion, as the server sent it.
    assert step.result["object"] == "chat.completion"
    assert step.result["choices"][0]["message"]["content"] == GOOD.model_dump_json()
    assert step.result["usage"]["prompt_tokens"] == 120
    assert step.tokens == 150
    assert step.cost == pytest.approx((120 * 0.4 + 30 * 1.6) / 1_000_000)
    assert step.detail == {"kind": "llm", "model": MODEL, "input_tokens": 120,
                           "output_tokens": 30, "waits": []}
    assert step.error_type == ""
    # And the server was asked exactly that.
    [sent] = chat_server.requests
    assert (sent["model"], sent["messages"], sent["temperature"], sent["seed"]) == (
        MODEL, messages, 0, 7)
    assert sent["response_format"] == response_format_for(Quote)


class StrictQuote(Quote):
    """A priced stay: what the model is asked for."""

    # A parsing change (the schema sent is unchanged): currencies are upper case.
    @field_validator("currency")
    @classmethod
    def upper(cls, value: str) -> str:
        return value.upper()


StrictQuote.__name__ = "Quote"  # the same schema name, so the same requests


async def test_an_offline_run_reparses_recorded_answers_without_calling_the_model(
    orch: Orchestrator, store: EventStore, chat_server: ChatServer
) -> None:
    chat_server.queue(reply(GOOD.model_copy(update={"currency": "eur"})))
    chat = OpenAIChat(client_for(chat_server), MODEL)
    recorded = await orch.start(quote_workflow(chat), Goal())
    assert recorded.outputs["quote"] == Quote(city="Lisbon", total=236.0, currency="eur")
    assert response_format_for(StrictQuote) == response_format_for(Quote)

    recording = await Recording.from_run(store, recorded.run_id)
    offline = await Orchestrator(store, recording=recording).start(
        quote_workflow(chat, output=StrictQuote), Goal())
    recording.check()
    assert offline.status == "completed"
    assert offline.outputs["quote"].model_dump() == {
        "city": "Lisbon", "total": 236.0, "currency": "EUR"}
    assert len(chat_server.requests) == 1  # only the recorded run's call
    [step] = await steps(store, offline.run_id)
    assert step.tokens == 15  # its original usage, charged again to the offline run


async def test_messages_may_be_one_string_and_bad_arguments_are_refused_before_any_call(
    chat_server: ChatServer,
) -> None:
    chat_server.queue(reply(GOOD))
    chat = OpenAIChat(client_for(chat_server), MODEL)
    ctx = AgentContext(run_id="r", task_id="t", attempt=1, idempotency_key="k")
    assert await chat.parse(ctx, "2 nights in Lisbon", output=Quote) == GOOD
    assert chat_server.requests[0]["messages"] == [
        {"role": "user", "content": "2 nights in Lisbon"}]
    with pytest.raises(TypeError, match="parse\\(\\) sets model itself"):
        await chat.parse(ctx, "x", output=Quote, model="other")
    with pytest.raises(TypeError, match="does not support stream"):
        await chat.parse(ctx, "x", output=Quote, stream=True)
    with pytest.raises(ValueError, match="at least one message"):
        await chat.parse(ctx, [], output=Quote)
    assert len(chat_server.requests) == 1
