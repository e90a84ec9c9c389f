"""The fake chat server itself, as other tests and sessions use it: answers the official
client understands, errors with Retry-After, and a standalone process driven by files."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest
from chat_server import Answer, ChatServer, rate_limited, reply
from llm_helpers import GOOD, MODEL

SERVER_SCRIPT = Path(__file__).with_name("chat_server.py")


async def test_answers_are_chat_completions_the_official_client_reads(
    chat_server: ChatServer,
) -> None:
    chat_server.queue(reply(GOOD, prompt_tokens=11, completion_tokens=7))
    client = openai.AsyncOpenAI(base_url=chat_server.url, api_key="test", max_retries=0)
    completion = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], temperature=0)
    assert completion.object == "chat.completion"
    assert completion.model == MODEL
    assert completion.choices[0].message.content == GOOD.model_dump_json()
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens,
            completion.usage.total_tokens) == (11, 7, 18)
    assert chat_server.requests == [{"model": MODEL, "temperature": 0,
                                     "messages": [{"role": "user", "content": "hi"}]}]


async def test_a_scripted_429_reaches_the_client_with_its_retry_after(
    chat_server: ChatServer,
) -> None:
    chat_server.queue(rate_limited("7"))
    client = openai.AsyncOpenAI(base_url=chat_server.url, api_key="test", max_retries=0)
    with pytest.raises(openai.RateLimitError) as info:
        await client.chat.completions.create(model=MODEL, messages=[])
    assert info.value.response.headers["retry-after"] == "7"


async def test_an_unscripted_request_fails_instead_of_hanging(chat_server: ChatServer) -> None:
    client = openai.AsyncOpenAI(base_url=chat_server.url, api_key="test", max_retries=0)
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model=MODEL, messages=[])
    assert len(chat_server.requests) == 1


def test_a_standalone_server_process_serves_its_script_and_logs_requests(
    tmp_path: Path,
) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"answers": [rate_limited("0.01").to_json()],
                                  "then": reply(GOOD).to_json()}))
    port_file, log = tmp_path / "port", tmp_path / "requests.jsonl"
    child = subprocess.Popen([sys.executable, str(SERVER_SCRIPT), "--port-file", str(port_file),
                              "--script", str(script), "--log", str(log)])
    try:
        for _ in range(500):
            if port_file.exists() or child.poll() is not None:
                break
            time.sleep(0.01)
        url = f"http://127.0.0.1:{int(port_file.read_text())}/v1"
        client = openai.OpenAI(base_url=url, api_key="test", max_retries=0)
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model=MODEL, messages=[])
        for _ in range(2):  # "then" answers every request after the queue
            done = client.chat.completions.create(model=MODEL, messages=[])
            assert done.choices[0].message.content == GOOD.model_dump_json()
    finally:
        child.terminate()
        assert child.wait(timeout=10) == 0
    assert [json.loads(line)["model"] for line in log.read_text().splitlines()] == [MODEL] * 3


def test_answers_round_trip_through_their_json_form() -> None:
    answer = Answer(status=503, headers={"retry-after-ms": "20"}, delay_s=0.1)
    assert Answer.from_json(json.loads(json.dumps(answer.to_json()))) == answer
