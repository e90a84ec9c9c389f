"""OpenAIChat's options are checked when it is made, and the client it is given is copied
with its own retries off (every wait is OpenAIChat's, recorded), never changed in place."""

from __future__ import annotations

import openai
import pytest
from chat_server import ChatServer
from llm_helpers import MODEL, client_for

from ledgerflow.llm import OpenAIChat, WaitPolicy


def test_the_clients_own_retries_are_off_in_a_copy_the_caller_keeps_theirs(
    chat_server: ChatServer,
) -> None:
    client = client_for(chat_server)
    chat = OpenAIChat(client, MODEL)
    assert chat.client.max_retries == 0
    assert client.max_retries == openai.DEFAULT_MAX_RETRIES
    assert chat.base_url == chat_server.url
    assert chat.waits == WaitPolicy()


def test_a_sync_client_is_refused_naming_the_async_one(chat_server: ChatServer) -> None:
    sync = openai.OpenAI(base_url=chat_server.url, api_key="test")
    with pytest.raises(TypeError, match=r"needs an openai\.AsyncOpenAI client .*got OpenAI"):
        OpenAIChat(sync, MODEL)  # type: ignore[arg-type]


@pytest.mark.parametrize(("options", "problem"), [
    ({"parse_retries": -1}, "parse_retries must be a whole number >= 0"),
    ({"max_concurrent": 0}, "max_concurrent must be a whole number >= 1"),
], ids=["negative-parse-retries", "zero-concurrency"])
def test_bad_options_are_refused_when_the_adapter_is_made(
    chat_server: ChatServer, options: dict[str, int], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        OpenAIChat(client_for(chat_server), MODEL, **options)  # type: ignore[arg-type]
