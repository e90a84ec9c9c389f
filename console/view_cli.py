"""``ledgerflow view RUN --out run.html``: the run page as one self-contained file.

The file holds the run's page document (secrets masked), the scripts and the
styles inline: it opens from disk in any browser, makes no network request,
and needs no ``[ui]`` extra (nothing here imports Starlette). Registered on
the ``ledgerflow`` group by :mod:`ledgerflow.replay.cli`.

Example::

    $ ledgerflow view 8284ea1ae9d1 --out run.html
    wrote run.html (83,412 bytes): run 8284ea1ae9d1, 28 events
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ledgerflow.console.page import render_run_page
from ledgerflow.console.page_data import page_document
from ledgerflow.machines import load_workflow
from ledgerflow.replay.cli_support import (
    db_option,
    friendly,
    naming_bad_events,
    open_for_reading,
    run_async,
    workflow_ref,
)
from ledgerflow.replay.runids import resolve_run_id

__all__ = ["register", "view"]


def register(group: click.Group) -> None:
    """Add ``view`` to ``group``."""
    group.add_command(view)


@click.command()
@click.argument("run_id", metavar="RUN")
@click.option("--out", "out", type=click.Path(dir_okay=False, writable=True, path_type=Path),
              default=None, help="Where to write the page (default: run-RUN.html).")
@click.option("--workflow", default=None, callback=workflow_ref,
              help="MODULE:WORKFLOW whose contracts mask secrets and shape the escalation "
                   "form (default: the one the run recorded, when it can be found).")
@db_option
@friendly
def view(*, run_id: str, out: Path | None, workflow: str | None, db: str) -> None:
    """Write RUN's page (timeline, plan, decisions, state at any seq) as one HTML file.

    The file is self-contained (no network, no server); fields a contract
    marks secret (redact, SecretStr, format password) are never written.
    """
    wf = load_workflow(workflow) if workflow else None

    async def go() -> tuple[str, dict[str, Any]]:
        async with open_for_reading(db) as store:
            rid = await resolve_run_id(store, run_id)
            async with naming_bad_events(store, rid):
                return rid, await page_document(store, rid, workflow=wf)

    rid, doc = run_async(go())
    target = out or Path(f"run-{rid}.html")
    data = render_run_page(doc, api=None).encode("utf-8")
    target.write_bytes(data)
    click.echo(f"wrote {target} ({len(data):,} bytes): run {rid}, {doc['run']['events']} events")
