"""The request asks for the same strict schema the openai client's own parse() sends, and a
recorded answer is parsed (or refused, with a problem fit to feed back) from its raw JSON."""

from __future__ import annotations

from typing import Any

from chat_server import ChatServer, reply
from llm_helpers import GOOD, MODEL, Quote
from openai import AsyncOpenAI

from ledgerflow.llm.openai_answers import (
    InvalidAnswer,
    answer_of,
    feedback_messages,
    response_format_for,
)


def _raw(content: str | None, *, finish_reason: str = "stop", refusal: str | None = None
         ) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": MODEL,
            "choices": [{"index": 0, "finish_reason": finish_reason,
                         "message": {"role": "assistant", "content": content,
                                     "refusal": refusal}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}


async def test_schema_is_the_one_the_openai_clients_own_parse_sends(
    chat_server: ChatServer,
) -> None:
    chat_server.queue(reply(GOOD))
    client = AsyncOpenAI(base_url=chat_server.url, api_key="test", max_retries=0)
    parsed = await client.chat.completions.parse(
        model=MODEL, messages=[{"role": "user", "content": "quote"}], response_format=Quote)
    assert parsed.choices[0].message.parsed == GOOD
    [sent] = chat_server.requests
    assert sent["response_format"] == response_format_for(Quote)
    schema = response_format_for(Quote)["json_schema"]
    assert (schema["name"], schema["strict"]) == ("Quote", True)
    assert schema["schema"]["required"] == ["city", "total", "currency"]


def test_a_valid_recorded_answer_becomes_the_model() -> None:
    assert answer_of(_raw(GOOD.model_dump_json()), Quote) == GOOD


def test_an_answer_that_is_not_json_is_refused_with_the_json_problem() -> None:
    answer = answer_of(_raw("The total is 236 euros."), Quote)
    assert isinstance(answer, InvalidAnswer)
    assert answer.content == "The total is 236 euros."
    assert answer.problem.startswith("the answer: Invalid JSON")


def test_an_answer_failing_the_model_names_each_field_and_no_pydantic_url() -> None:
    answer = answer_of(_raw('{"city": "Lisbon", "total": -1}'), Quote)
    assert isinstance(answer, InvalidAnswer)
    assert answer.problem == "total: Input should be greater than 0"
    assert "errors.pydantic.dev" not in answer.problem  # its version would change the hash


def test_a_cut_off_answer_says_so() -> None:
    answer = answer_of(_raw('{"city": "Lis', finish_reason="length"), Quote)
    assert isinstance(answer, InvalidAnswer)
    assert answer.problem.endswith("(the answer was cut off at the token limit)")


def test_a_refusal_or_an_empty_answer_is_invalid() -> None:
    refused = answer_of(_raw(None, refusal="I cannot price that."), Quote)
    assert refused == InvalidAnswer("", "the model refused: I cannot price that.")
    assert answer_of(_raw("  "), Quote) == InvalidAnswer("  ", "the answer is empty")


def test_feedback_shows_the_model_its_answer_then_the_problem() -> None:
    messages = feedback_messages(InvalidAnswer("{}", "city: Field required"), Quote)
    assert messages == [
        {"role": "assistant", "content": "{}"},
        {"role": "user", "content": "Your answer is not a valid Quote: city: Field required. "
                                    "Answer again with only a JSON object that matches the "
                                    "schema."},
    ]
    assert feedback_messages(InvalidAnswer("", "the answer is empty"), Quote)[0]["role"] == "user"
