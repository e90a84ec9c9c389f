"""Tables for the terminal (the only module that touches rich)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from ledgerflow.eventstore import RunSummary
from ledgerflow.machines import RunState
from ledgerflow.replay.timeline import LogRow

__all__ = ["console", "log_table", "runs_table", "state_tables", "summarize"]


def console(*, stderr: bool = False) -> Console:
    # Wide enough for reasons to stay readable when piped to a file or a test.
    return Console(stderr=stderr, width=None if _is_tty() else 160, highlight=False)


def _is_tty() -> bool:
    return sys.stdout.isatty()


def summarize(value: Any, limit: int = 60) -> str:
    """A one-line, bounded rendering of a JSON value."""
    text = json.dumps(value, separators=(",", ":"), default=str) if value is not None else ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def log_table(rows: Sequence[LogRow], *, title: str = "") -> Table:
    table = Table(title=title or None, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("seq", justify="right", no_wrap=True)
    table.add_column("time", no_wrap=True)
    table.add_column("event", no_wrap=True)
    table.add_column("machine", no_wrap=True)
    table.add_column("move", no_wrap=True)
    table.add_column("reason", overflow="fold")
    for row in rows:
        table.add_row(
            str(row.seq), row.at.strftime("%H:%M:%S.%f")[:-3], row.type, row.machine,
            row.move, row.reason,
        )
    return table


def runs_table(runs: Sequence[RunSummary]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for name in ("run", "workflow", "status", "events", "started", "updated"):
        table.add_column(name, no_wrap=True)
    for r in runs:
        table.add_row(
            r.run_id, r.label, r.status, str(r.last_seq),
            r.created_at.strftime("%Y-%m-%d %H:%M:%S"), r.updated_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    return table


def state_tables(state: RunState) -> list[Table]:
    tasks = Table(title="tasks", box=box.SIMPLE_HEAD, title_justify="left", show_edge=False,
                  pad_edge=False)
    for name in ("task", "agent", "status", "attempts", "output / last error"):
        tasks.add_column(name, overflow="fold")
    for t in state.tasks.values():
        detail = summarize(t.output) if t.output is not None else (t.last_error or "")
        tasks.add_row(t.id, t.agent, t.status.value, str(t.attempt), detail)
    out = [tasks]
    if state.escalations:
        esc = Table(title="open escalations", box=box.SIMPLE_HEAD, title_justify="left",
                    show_edge=False, pad_edge=False)
        for name in ("task", "kind", "reason"):
            esc.add_column(name, overflow="fold")
        for e in state.escalations.values():
            esc.add_row(e.task_id, e.kind, e.reason)
        out.append(esc)
    return out
