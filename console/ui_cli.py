"""``ledgerflow ui``: serve the local web console over a store.

Registered on the ``ledgerflow`` group by :mod:`ledgerflow.replay.cli`. The
ASGI stack (the ``[ui]`` extra) is imported only when the command runs, so
the core install's other commands never need it; without it, ``ui`` says
in one line what to install.

Example (a shell)::

    ledgerflow ui --db runs.db                    # http://127.0.0.1:8765/
    LEDGERFLOW_UI_TOKEN=s3cret ledgerflow ui --host 0.0.0.0 --port 9000
"""

from __future__ import annotations

import contextlib
import importlib.util

import click

from ledgerflow.replay.cli_support import (
    db_option,
    friendly,
    is_workflow_ref,
    run_async,
    with_db,
)

from .security import UnsafeBindError, check_bind

__all__ = ["EXTRA_HINT", "register"]

#: What to install for ``ledgerflow ui``.
EXTRA_HINT = ("`ledgerflow ui` needs the web console's packages (starlette, uvicorn): "
              "pip install 'ledgerflow[ui]'")


def register(group: click.Group) -> None:
    """Add ``ui`` to ``group``."""
    group.add_command(ui)


def _workflow_refs(_ctx: click.Context, _param: click.Parameter,
                   value: tuple[str, ...]) -> tuple[str, ...]:
    for ref in value:
        if not is_workflow_ref(ref):
            raise click.BadParameter(
                f"'{ref}' is not MODULE:WORKFLOW (for example ledgerflow.examples.travel:wf).")
    return value


def _has_extra() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("starlette", "uvicorn"))


@click.command()
@db_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="The address to listen on; any but this machine's own (127.0.0.1, ::1, "
                   "localhost) needs --token.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="The port (0 picks a free one; the URL printed says which).")
@click.option("--token", envvar="LEDGERFLOW_UI_TOKEN", default=None, show_envvar=True,
              help="Require 'Authorization: Bearer TOKEN' on every API call.")
@click.option("--workflow", "workflows", multiple=True, callback=_workflow_refs,
              metavar="MODULE:WORKFLOW",
              help="A workflow to resolve and show runs with (repeatable; default: each "
                   "run's recorded one, when it can be found).")
@friendly
def ui(*, db: str, host: str, port: int, token: str | None, workflows: tuple[str, ...]) -> None:
    """Serve the web console: runs, run pages, and the escalation inbox.

    The JSON API the pages use is under /api (GET /api/runs, /api/runs/RUN,
    /api/runs/RUN/events, /api/escalations; POST
    /api/runs/RUN/tasks/TASK/resolve). Resolving a plain run drives it on in
    this process, as `ledgerflow resolve` does; a run queued for the worker
    pool goes back on the queue. Ctrl-C stops the console.
    """
    token = token or None
    try:
        check_bind(host, token)
    except UnsafeBindError as exc:
        raise click.BadParameter(str(exc), param_hint="--host") from None
    if not _has_extra():
        raise click.ClickException(EXTRA_HINT)
    from ledgerflow.machines import load_workflow  # noqa: PLC0415 - imports user code

    from .server import ConsoleSettings, Listening, serve_db  # noqa: PLC0415 - the [ui] extra

    settings = ConsoleSettings(host=host, port=port, token=token,
                               workflows=tuple(load_workflow(ref) for ref in workflows))

    def listening(console: Listening) -> None:
        # The page reads a token from the URL's fragment, which no browser sends on.
        guard = f"; API calls need the token: open {console.url}#token=TOKEN" if token else ""
        click.echo(f"ledgerflow console: {console.url} (store {db}{guard}; Ctrl-C stops it)")

    # uvicorn finishes its requests first, then re-raises Ctrl-C: a normal stop.
    with contextlib.suppress(KeyboardInterrupt):
        run_async(serve_db(db, settings, on_listening=listening))
    click.echo("console stopped; " + with_db("ledgerflow runs", db) + " lists the runs")
