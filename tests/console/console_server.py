"""The real console server for tests: uvicorn on 127.0.0.1, a free port, a background thread.

The server runs in its own thread with its own event loop (its store opened
there, as ``ledgerflow ui`` opens it), so a test -- sync, async, or driving
a browser -- talks to it over real HTTP, and the workflows' agents run in
this process (a test can count the demo's bookings).

Example::

    with serving(db, token="s3cret", workflows=[travel.wf]) as base_url:
        status, doc = call("GET", base_url + "api/runs", token="s3cret")

    async with served(db) as base_url:       # the same, from an async test
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import threading
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledgerflow.console.server import ConsoleSettings, Listening, serve_db
from ledgerflow.eventstore import open_store
from ledgerflow.examples import travel, travel_unreviewed
from ledgerflow.machines import Orchestrator, Workflow

__all__ = ["Answer", "DemoRuns", "call", "call_chunked", "call_declaring", "last_seq",
           "make_demo", "served", "serving"]

#: How long a test waits for the server to listen (or to stop) before it fails.
PATIENCE_S = 30.0


@contextlib.contextmanager
def serving(store_url: str | Path, *, token: str | None = None,
            workflows: Sequence[Workflow] = (), host: str = "127.0.0.1",
            max_body: int | None = None) -> Iterator[str]:
    """Serve the console over ``store_url`` in a thread; yields its base URL (``.../``)."""
    settings = ConsoleSettings(host=host, port=0, token=token, workflows=tuple(workflows),
                               **({"max_body": max_body} if max_body is not None else {}))
    ready = threading.Event()
    found: dict[str, Any] = {}

    def listening(console: Listening) -> None:
        found["console"] = console
        ready.set()

    def run() -> None:
        try:
            asyncio.run(serve_db(str(store_url), settings, on_listening=listening))
        except BaseException as exc:
            found["error"] = exc
        finally:
            ready.set()

    thread = threading.Thread(target=run, name="ledgerflow-console", daemon=True)
    thread.start()
    if not ready.wait(PATIENCE_S):
        raise AssertionError(f"the console did not listen within {PATIENCE_S}s")
    if "console" not in found:
        raise AssertionError(f"the console did not start: {found.get('error')!r}")
    console: Listening = found["console"]
    try:
        yield console.url
    finally:
        console.stop()
        thread.join(PATIENCE_S)
        assert not thread.is_alive(), "the console did not stop"


@contextlib.asynccontextmanager
async def served(store_url: str | Path, *, token: str | None = None,
                 workflows: Sequence[Workflow] = (), host: str = "127.0.0.1",
                 max_body: int | None = None) -> AsyncIterator[str]:
    """:func:`serving` for an async test (starting and stopping off the test's loop)."""
    manager = serving(store_url, token=token, workflows=workflows, host=host,
                      max_body=max_body)
    url = await asyncio.to_thread(manager.__enter__)
    try:
        yield url
    finally:
        await asyncio.to_thread(manager.__exit__, None, None, None)


class Answer:
    """One HTTP answer: ``status``, ``headers`` (lower-case names), ``text``, ``json``."""

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.body = body
        self.text = body.decode("utf-8", "replace")

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"Answer({self.status}, {self.text[:300]!r})"


def call(method: str, url: str, *, body: Any = None, raw: bytes | None = None,
         token: str | None = None, headers: Mapping[str, str] | None = None,
         content_type: str | None = "application/json") -> Answer:
    """One real HTTP request (urllib); ``body`` is sent as JSON, ``raw`` as given.

    Never raises for an HTTP error status: the :class:`Answer` carries it.
    """
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    sent = dict(headers or {})
    if data is not None and content_type is not None:
        sent.setdefault("Content-Type", content_type)
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, method=method, headers=sent)
    try:
        with urllib.request.urlopen(request, timeout=PATIENCE_S) as response:
            return Answer(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return Answer(exc.code, dict(exc.headers), exc.read())


def call_chunked(base_url: str, path: str, chunks: Sequence[bytes],
                 headers: Mapping[str, str]) -> Answer:
    """A POST whose body is sent chunked (no Content-Length), as a stream would be."""
    host, port = base_url.removeprefix("http://").rstrip("/").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=PATIENCE_S)
    try:
        conn.request("POST", path, body=iter(chunks), headers=dict(headers),
                     encode_chunked=True)
        response = conn.getresponse()
        return Answer(response.status, dict(response.getheaders()), response.read())
    finally:
        conn.close()


def call_declaring(base_url: str, path: str, length: int, headers: Mapping[str, str],
                   sent: bytes = b"{") -> Answer:
    """A POST that declares ``Content-Length: length`` but sends only ``sent``, then reads.

    What a server should do with a body it will not take: answer at once,
    without waiting for (or reading) the rest.
    """
    host, port = base_url.removeprefix("http://").rstrip("/").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=PATIENCE_S)
    try:
        conn.putrequest("POST", path, skip_host=True)
        conn.putheader("Host", f"{host}:{port}")
        conn.putheader("Content-Length", str(length))
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders(sent)
        response = conn.getresponse()
        return Answer(response.status, dict(response.getheaders()), response.read())
    finally:
        conn.close()


def last_seq(store_url: str | Path, run_id: str) -> int:
    """The run's last seq, read from the store in a fresh connection."""

    async def read() -> int:
        async with open_store(store_url, create=False, read_only=True) as store:
            return await store.last_seq(run_id)

    return asyncio.run(read())


@dataclass(frozen=True)
class DemoRuns:
    """The demo's runs in a store: one completed, one waiting on the escalation of ``price``."""

    completed: str
    waiting: str


def make_demo(store_url: str | Path) -> DemoRuns:
    """Run the travel demo twice into ``store_url`` (created): with its reviewer, and without.

    The second run waits on ``price`` (low confidence), as in the README's
    walkthrough; resolving it books once (``travel.BOOKING_CALLS``).
    """
    goal = travel.TripGoal(destination="Lisbon", passengers=2)

    async def go() -> DemoRuns:
        async with open_store(store_url) as store:
            done = await Orchestrator(store).start(travel.wf, goal)
            waiting = await Orchestrator(store).start(travel_unreviewed.wf, goal)
        assert done.status == "completed", done.reason
        assert waiting.status == "waiting", waiting.reason
        return DemoRuns(completed=done.run_id, waiting=waiting.run_id)

    return asyncio.run(go())
