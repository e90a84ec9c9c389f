"""The console's web server: Starlette routes over :mod:`.api`, behind :class:`.security.Guard`.

The only module (with :mod:`.resolving`'s caller, :mod:`.ui_cli`) that
imports the ASGI stack; it is imported only by ``ledgerflow ui``, so
``import ledgerflow`` and every other command run without the ``[ui]`` extra.

Routes: ``/`` (the console: runs list and escalation inbox), ``/runs/{id}``
(a run's page), ``/assets/...`` (their scripts and styles, from the wheel),
and the JSON API under ``/api`` (see :mod:`.api` and :mod:`.resolving`).
The HTML shells hold no data: their scripts fetch it from the API, so only
``/api`` needs the token.

Example::

    async with open_store("runs.db", create=False) as store:
        await serve(store, ConsoleSettings(port=0), on_listening=lambda s: print(s.url))
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ledgerflow.errors import LedgerflowError
from ledgerflow.eventstore import EventStore
from ledgerflow.machines import Orchestrator, Workflow
from ledgerflow.replay.cli_support import for_the_cli, open_existing

from . import api
from .resolving import resolve_task
from .security import MAX_BODY_BYTES, ASGIApp, Guard, allowed_hosts

__all__ = ["ASSETS", "ConsoleBindError", "ConsoleSettings", "Listening", "bind_socket",
           "create_app", "serve", "serve_db"]

log = logging.getLogger("ledgerflow.console")

#: The console's scripts and styles, shipped in the wheel.
ASSETS = Path(__file__).resolve().parent / "assets"


class ConsoleBindError(LedgerflowError):
    """The console cannot listen where it was asked to."""

    def __init__(self, host: str, port: int, problem: str) -> None:
        self.host, self.port = host, port
        super().__init__(f"Cannot listen on {host}:{port}: {problem}; pick another --port "
                         "(0 picks a free one) or --host.")


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    """How ``ledgerflow ui`` serves: where, with which token and workflows.

    ``port=0`` lets the system pick a free port (:class:`Listening` says which).

    Example::

        ConsoleSettings(host="127.0.0.1", port=8765, token=None, workflows=(travel.wf,))
    """

    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    workflows: tuple[Workflow, ...] = ()
    max_body: int = MAX_BODY_BYTES


def _json(doc: Any, status: int = 200) -> Response:
    # default=str: the CLI's --json documents are written the same way.
    body = json.dumps(doc, default=str, ensure_ascii=False).encode()
    return Response(body, status_code=status, media_type="application/json")


def _failure(exc: Exception) -> Response:
    if isinstance(exc, api.ApiError):
        return _json(exc.document(), exc.status)
    if isinstance(exc, LedgerflowError):
        log.warning("console request failed: %s", exc)
        return _json({"errors": [api.error(for_the_cli(exc))]}, 500)
    log.exception("console request failed")
    return _json({"errors": [api.error(
        f"Internal error {type(exc).__name__}; this is a bug in ledgerflow (the console's "
        "log has the traceback).")]}, 500)


Handler = Callable[[Request], Awaitable[Response]]


def _answering(fn: Callable[[Request], Awaitable[Any]]) -> Handler:
    """A route whose function returns a document (200) or raises (its error document)."""

    async def handler(request: Request) -> Response:
        try:
            return _json(await fn(request))
        except Exception as exc:  # every failure is an answer, never a traceback
            return _failure(exc)

    return handler


def create_app(store: EventStore, settings: ConsoleSettings, *, port: int) -> ASGIApp:
    """The console as one ASGI app over ``store``, guarded for ``settings.host:port``.

    ``port`` is the port actually bound (``settings.port`` may be 0).

    Example::

        app = create_app(store, ConsoleSettings(), port=8765)
    """
    book = api.WorkflowBook(settings.workflows)
    orch = Orchestrator(store)

    async def index(_request: Request) -> Response:
        from .page import render_console  # noqa: PLC0415 - the page helper's module

        return HTMLResponse(render_console(api="/api"))

    async def run_page(_request: Request) -> Response:
        from .page import render_run_page  # noqa: PLC0415

        return HTMLResponse(render_run_page(None, api="/api"))

    async def runs(request: Request) -> Any:
        q = request.query_params
        return await api.runs_document(store, status=q.get("status"), limit=q.get("limit"))

    async def run(request: Request) -> Any:
        return await api.run_document(store, request.path_params["run_id"], book,
                                      to=request.query_params.get("to"))

    async def events(request: Request) -> Any:
        q = request.query_params
        return await api.events_document(store, request.path_params["run_id"], book,
                                         after=q.get("after"), limit=q.get("limit"))

    async def page(request: Request) -> Any:
        return await api.page_document(store, request.path_params["run_id"], book)

    async def escalations(_request: Request) -> Any:
        return await api.escalations_document(store, book)

    async def resolve(request: Request) -> Any:
        client = request.client.host if request.client else "unknown"
        return await resolve_task(orch, store, book, run_id=request.path_params["run_id"],
                                  task_id=request.path_params["task_id"],
                                  body=await request.body(), client=client)

    routes: Sequence[BaseRoute] = [
        Route("/", index),
        Route("/runs/{run_id}", run_page),
        Mount("/assets", StaticFiles(directory=ASSETS), name="assets"),
        Route("/api/runs", _answering(runs)),
        Route("/api/escalations", _answering(escalations)),
        Route("/api/runs/{run_id}", _answering(run)),
        Route("/api/runs/{run_id}/events", _answering(events)),
        Route("/api/runs/{run_id}/page", _answering(page)),
        Route("/api/runs/{run_id}/tasks/{task_id}/resolve", _answering(resolve),
              methods=["POST"]),
    ]
    app = Starlette(routes=list(routes))
    return Guard(app, token=settings.token, allowed_hosts=allowed_hosts(settings.host, port),
                 max_body=settings.max_body)


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (port 0: a free one); ConsoleBindError if it cannot.

    Bound before the app is built, so the Host check knows the real port.
    """
    address = "127.0.0.1" if host.lower() == "localhost" else host.strip("[]")
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
    except OSError as exc:
        sock.close()
        raise ConsoleBindError(host, port, exc.strerror or str(exc)) from None
    except BaseException:
        sock.close()
        raise
    return sock


class Listening:
    """The running console, handed to ``on_listening``: its ``url``, and ``stop()``.

    Example::

        def ready(console: Listening) -> None:
            print(f"ledgerflow console: {console.url}")
    """

    def __init__(self, url: str, port: int, server: Any) -> None:
        self.url = url
        self.port = port
        self._server = server

    def stop(self) -> None:
        """Ask the server to finish its requests and stop (safe from any thread)."""
        self._server.should_exit = True  # uvicorn's main loop checks it every tick


def _url(host: str, port: int) -> str:
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    return f"http://{shown}:{port}/"


async def serve(store: EventStore, settings: ConsoleSettings, *,
                on_listening: Callable[[Listening], None] | None = None) -> None:
    """Serve the console over ``store`` until stopped (Ctrl-C, SIGTERM or ``Listening.stop``).

    ``on_listening`` is called once, when the socket accepts connections.
    """
    import uvicorn  # noqa: PLC0415 - the [ui] extra, only here

    sock = bind_socket(settings.host, settings.port)
    try:
        port = sock.getsockname()[1]
        app = create_app(store, settings, port=port)
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                proxy_headers=False, server_header=False, ws="none")
        server = uvicorn.Server(config)
        running = asyncio.ensure_future(server.serve(sockets=[sock]))
        while not server.started and not running.done():  # noqa: ASYNC110 - uvicorn's flag
            await asyncio.sleep(0.02)
        if server.started and on_listening is not None:
            on_listening(Listening(_url(settings.host, port), port, server))
        await running
    finally:
        sock.close()


async def serve_db(db: str, settings: ConsoleSettings, *,
                   on_listening: Callable[[Listening], None] | None = None) -> None:
    """:func:`serve` over the existing store ``db`` (never created here)."""
    async with open_existing(db) as store:
        await serve(store, settings, on_listening=on_listening)
