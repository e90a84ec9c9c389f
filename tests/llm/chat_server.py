"""A fake OpenAI-compatible chat server: real HTTP on 127.0.0.1, scripted answers, no network.

It speaks ``POST /v1/chat/completions`` well enough for the official
``openai`` client: answers are real ``chat.completion`` JSON (id, object,
created, model, choices, usage) or real-looking errors (429/503 with
``Retry-After``). It records every request body, counts them, and tracks the
most requests it held at once (``max_in_flight``).

In a test (the ``chat_server`` fixture of this folder's conftest)::

    chat_server.queue(rate_limited("0.05"), reply(Quote(total=42)))
    client = AsyncOpenAI(base_url=chat_server.url, api_key="test")
    ...
    assert len(chat_server.requests) == 2

From another process (a crash test's child, a README session)::

    python tests/llm/chat_server.py --port-file port.txt --script script.json [--log req.jsonl]

where ``script.json`` is ``{"answers": [<answer>, ...], "then": <answer> | null}``
and an answer is ``Answer``'s JSON (``{"status": 200, "content": "{...}"}``,
``{"status": 429, "headers": {"retry-after": "0.05"}}``). The port file is
written (atomically) once the server listens; each request body is appended
to the log as one JSON line. SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from pydantic import BaseModel

__all__ = [
    "Answer",
    "ChatServer",
    "Script",
    "rate_limited",
    "reply",
    "unavailable",
]

CHAT_PATH = "/v1/chat/completions"
#: A fixed epoch for ``created``: answers are the same on every run of a test.
CREATED = 1_767_225_600


@dataclass(frozen=True)
class Answer:
    """One scripted answer: a chat completion (status 200) or an error status.

    ``delay_s`` holds the request that long before answering (to overlap
    concurrent requests); ``headers`` are sent as they are (``retry-after``).
    """

    status: int = 200
    content: str | None = None
    prompt_tokens: int = 10
    completion_tokens: int = 5
    finish_reason: str = "stop"
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Answer:
        return cls(**data)

    def body(self, request: dict[str, Any], number: int) -> dict[str, Any]:
        """The JSON body of this answer to ``request`` (the ``number``-th one served)."""
        if self.status != 200:
            kind = "rate_limit_exceeded" if self.status == 429 else "server_error"
            return {"error": {"message": f"chat_server scripted {self.status}", "type": kind,
                              "param": None, "code": kind}}
        return {
            "id": f"chatcmpl-{number:06d}",
            "object": "chat.completion",
            "created": CREATED + number,
            "model": str(request.get("model", "")),
            "system_fingerprint": "fp_chat_server",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": self.content, "refusal": None},
                "logprobs": None,
                "finish_reason": self.finish_reason,
            }],
            "usage": {"prompt_tokens": self.prompt_tokens,
                      "completion_tokens": self.completion_tokens,
                      "total_tokens": self.prompt_tokens + self.completion_tokens},
        }


def reply(content: str | BaseModel | dict[str, Any], *, prompt_tokens: int = 10,
          completion_tokens: int = 5, delay_s: float = 0.0,
          finish_reason: str = "stop") -> Answer:
    """A 200 chat completion whose message content is ``content`` (a model or dict as JSON)."""
    if isinstance(content, BaseModel):
        text = content.model_dump_json()
    elif isinstance(content, dict):
        text = json.dumps(content)
    else:
        text = content
    return Answer(content=text, prompt_tokens=prompt_tokens,
                  completion_tokens=completion_tokens, delay_s=delay_s,
                  finish_reason=finish_reason)


def rate_limited(retry_after: str | None = "0.05", *, header: str = "retry-after",
                 status: int = 429) -> Answer:
    """A 429 (or ``status``) asking to wait ``retry_after`` (seconds, an HTTP date, or
    milliseconds with ``header="retry-after-ms"``); ``None`` sends no such header."""
    headers = {} if retry_after is None else {header: retry_after}
    return Answer(status=status, headers=headers)


def unavailable(retry_after: str | None = "0.05") -> Answer:
    """A 503, with ``Retry-After`` unless ``retry_after`` is None."""
    return rate_limited(retry_after, status=503)


#: A function of the request body (and its number, from 1) choosing the answer.
Script = Callable[[dict[str, Any], int], Answer]

NO_ANSWER_LEFT = Answer(status=500, content=None)


class ChatServer:
    """A threaded HTTP server answering chat completions from a queue, then from ``then``.

    ``then`` (an Answer, or a :data:`Script` function) answers once the queue
    is empty; with none, an empty queue answers 500, so a test that makes an
    unexpected call sees it fail rather than hang.
    """

    def __init__(self, answers: Iterable[Answer] = (),
                 *, then: Answer | Script | None = None) -> None:
        self._answers: deque[Answer] = deque(answers)
        self.then = then
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.on_request: Callable[[dict[str, Any]], None] | None = None
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """The base URL to give ``AsyncOpenAI(base_url=...)``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def queue(self, *answers: Answer) -> None:
        """Answer the next requests with these, in order."""
        with self._lock:
            self._answers.extend(answers)

    def start(self) -> ChatServer:
        # A short poll interval: stop() returns within it (the default is half a second).
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,),
                                        name=f"chat-server-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ChatServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- serving (called on the server's threads) --------------------------

    def _admit(self, request: dict[str, Any]) -> tuple[Answer, int]:
        with self._lock:
            self.requests.append(request)
            number = len(self.requests)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if self._answers:
                answer = self._answers.popleft()
            elif isinstance(self.then, Answer):
                answer = self.then
            elif self.then is not None:
                answer = self.then(request, number)
            else:
                answer = NO_ANSWER_LEFT
        if self.on_request is not None:
            self.on_request(request)
        return answer, number

    def _done(self) -> None:
        with self._lock:
            self.in_flight -= 1


def _handler_for(server: ChatServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            raw = self.rfile.read(length)
            if self.path != CHAT_PATH:
                self._send(HTTPStatus.NOT_FOUND, {"error": {"message": f"no route {self.path}"}},
                           {})
                return
            request = json.loads(raw or b"{}")
            answer, number = server._admit(request)
            try:
                if answer.delay_s:
                    time.sleep(answer.delay_s)
            finally:
                # Counted out before the answer is sent: once the client has it,
                # it may send its next request, which must not overlap this one.
                server._done()
            self._send(answer.status, answer.body(request, number), answer.headers)

        def _send(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the tests read server.requests instead

    return Handler


def _serve_from_files(port_file: Path, script: Path, log: Path | None) -> None:
    spec = json.loads(script.read_text())
    answers = [Answer.from_json(a) for a in spec.get("answers", [])]
    then = Answer.from_json(spec["then"]) if spec.get("then") else None
    server = ChatServer(answers, then=then)
    if log is not None:
        log_lock = threading.Lock()

        def append(request: dict[str, Any]) -> None:
            with log_lock, log.open("a") as out:
                out.write(json.dumps(request) + "\n")

        server.on_request = append
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with server:
        partial = port_file.with_name(port_file.name + ".tmp")
        partial.write_text(str(server.port))
        os.replace(partial, port_file)  # readers never see a half-written port
        stopping.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--port-file", type=Path, required=True)
    parser.add_argument("--script", type=Path, required=True)
    parser.add_argument("--log", type=Path, default=None)
    args = parser.parse_args(argv)
    _serve_from_files(args.port_file, args.script, args.log)


if __name__ == "__main__":
    main()
