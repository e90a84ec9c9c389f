"""Tables for the terminal (the only module that touches rich).

Tables fit the terminal: the width is ``$COLUMNS`` when set, the terminal's
own width in a terminal, and 160 columns when piped (wide enough for reasons
to stay on one line in a file). Below :data:`WIDE` columns the decision log
folds event, machine and move into one cell so that the reason keeps a column
of its own; run ids are never cut.

Example::

    render.console().print(render.log_table(decision_log(envelopes)))
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ledgerflow.eventstore import RunSummary, WorkerInfo
from ledgerflow.machines import RunState
from ledgerflow.replay.timeline import LogRow

__all__ = ["STEPS_WIDE", "WIDE", "StepCells", "age", "console", "held_by_lines", "log_table",
           "runs_table", "state_tables", "steps_table", "summarize", "verbatim", "width",
           "workers_table"]

#: From this width on the decision log has one column per field.
WIDE = 120
#: From this width on the steps table has one column per field (it has more of them).
STEPS_WIDE = 160
_PIPED_WIDTH = 160


def width() -> int | None:
    """The width to render at; None lets rich ask the terminal."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    return None if sys.stdout.isatty() else _PIPED_WIDTH


def console(*, stderr: bool = False) -> Console:
    """A rich console at :func:`width`; ``render.console().print(table)``.

    Markup and emoji codes are off: everything printed comes from a log, and
    an agent's ``"card [declined]"`` or ``":x:"`` must appear as it was
    recorded, not be read as styling.
    """
    return Console(stderr=stderr, width=width(), highlight=False, soft_wrap=False,
                   markup=False, emoji=False)


def verbatim(text: str) -> Text:
    """``text`` as rich shows it unchanged, whatever console prints it (no markup, no emoji).

    Example::

        >>> verbatim("card [declined]").plain
        'card [declined]'
    """
    return Text(text)


def _effective_width() -> int:
    return width() or console().width


def summarize(value: Any, limit: int = 60) -> str:
    """A one-line, bounded rendering of a JSON value."""
    text = json.dumps(value, separators=(",", ":"), default=str) if value is not None else ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _table(title: str = "") -> Table:
    return Table(title=verbatim(title) if title else None, box=box.SIMPLE_HEAD,
                 show_edge=False, pad_edge=False, title_justify="left")


def log_table(rows: Sequence[LogRow], *, title: str = "",
              notes: Mapping[int, str] | None = None) -> Table:
    """The decision log: one row per event, the reason always in a column of its own.

    ``notes`` maps a seq to what its row says in place of its reason (a
    journaled step's summary: its kind, usage, request and result, which say
    more than the event's reason does).
    """
    notes = notes or {}
    table = _table(title)
    table.add_column("seq", justify="right", no_wrap=True)
    table.add_column("time", no_wrap=True)
    if _effective_width() >= WIDE:
        table.add_column("event", no_wrap=True)
        table.add_column("machine", no_wrap=True)
        table.add_column("move", no_wrap=True)
        table.add_column("reason", overflow="fold")
        for row in rows:
            table.add_row(*map(verbatim, (str(row.seq), _time(row), row.type, row.machine,
                                          row.move, notes.get(row.seq, row.reason))))
        return table
    # Narrow: event, machine and move stacked, so the reason keeps its column.
    table.add_column("event", overflow="fold", max_width=24)
    table.add_column("reason", overflow="fold")
    for row in rows:
        what = "\n".join(part for part in (row.type, row.machine, row.move) if part)
        table.add_row(*map(verbatim, (str(row.seq), _time(row), what,
                                      notes.get(row.seq, row.reason))))
    return table


def _time(row: LogRow) -> str:
    return row.at.strftime("%H:%M:%S.%f")[:-3]


def runs_table(runs: Sequence[RunSummary], reasons: dict[str, str] | None = None) -> Table:
    """The runs, full ids first; ``reasons`` maps a run id to its last decision's reason.

    A "held by" column (the worker whose live lease drives the run,
    :attr:`RunSummary.owner`) is added when any listed run is held and the
    terminal is :data:`WIDE`; a store no worker touches lists as it always
    did, and a narrower terminal keeps the reason its room (the ``runs``
    command lists the holders below the table: :func:`held_by_lines`).
    """
    reasons = reasons or {}
    held = any(r.owner for r in runs) and _effective_width() >= WIDE
    table = _table()
    longest = max((len(r.run_id) for r in runs), default=3)
    table.add_column("run", no_wrap=True, min_width=longest)
    table.add_column("workflow", overflow="fold")
    table.add_column("status", no_wrap=True)
    if held:  # a worker id (host:pid:suffix) is never cut either: it is pasted and grepped
        table.add_column("held by", no_wrap=True)
    table.add_column("events", justify="right", no_wrap=True)
    # "YYYY-MM-DD HH:MM:SS" wraps at its space when the terminal is narrow.
    table.add_column("updated", overflow="fold", min_width=10)
    table.add_column("reason", overflow="fold")
    for r in runs:
        cells = [r.run_id, r.label, r.status, str(r.last_seq),
                 r.updated_at.strftime("%Y-%m-%d %H:%M:%S"), reasons.get(r.run_id, "")]
        if held:  # a started run nobody holds was left by a process that died
            cells.insert(3, r.owner or ("nobody" if r.status in _DRIVEN else ""))
        table.add_row(*map(verbatim, cells))
    return table


#: The statuses of a run some process is driving (or was, until it died).
_DRIVEN = frozenset({"planning", "running"})


def held_by_lines(runs: Sequence[RunSummary]) -> list[str]:
    """``RUN held by WORKER`` for each held run, when :func:`runs_table` had no room for them.

    Example::

        for line in held_by_lines(found):
            click.echo(line)
    """
    if _effective_width() >= WIDE:
        return []  # the table has its "held by" column
    return [f"{r.run_id} held by {r.owner}" for r in runs if r.owner]


def age(seconds: float) -> str:
    """A short, human age: ``0.4s``, ``12s``, ``3m05s``, ``2h10m``.

    A clock a little behind the store's gives a small negative age: shown as 0.

    Example::

        >>> age(0.42), age(12.3), age(185), age(7800)
        ('0.4s', '12s', '3m05s', '2h10m')
    """
    seconds = max(seconds, 0.0)
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def workers_table(workers: Sequence[WorkerInfo], *, now: float) -> Table:
    """The workers registry: live workers first, then the recently gone ones (``gone``).

    ``now`` (epoch seconds) is what the heartbeat age is measured from.

    Example::

        render.console().print(workers_table(await store.workers(), now=time.time()))
    """
    table = _table()
    longest = max((len(w.worker_id) for w in workers), default=6)
    table.add_column("worker", no_wrap=True, min_width=min(longest, 32))
    table.add_column("state", no_wrap=True)
    table.add_column("heartbeat", no_wrap=True)
    table.add_column("host/pid", overflow="fold")
    table.add_column("workflows", overflow="fold")
    table.add_column("conc", justify="right", no_wrap=True)
    table.add_column("runs held", no_wrap=True)  # one whole run id a line
    for w in sorted(workers, key=lambda w: (not w.alive, -w.heartbeat_at)):
        workflows = w.info.get("workflows", [])
        table.add_row(*map(verbatim, (
            w.worker_id,
            "alive" if w.alive else "gone",
            f"{age(now - w.heartbeat_at)} ago",
            f"{w.info.get('host', '?')}/{w.info.get('pid', '?')}",
            ", ".join(map(str, workflows)) if isinstance(workflows, list) else str(workflows),
            str(w.info.get("concurrency", "?")),
            "\n".join(w.runs) if w.runs else "-",
        )))
    return table


def state_tables(state: RunState) -> list[Table]:
    """The run's tasks and its open escalations, reasons and outputs wrapped."""
    tasks = _table("tasks")
    for name in ("task", "agent", "status", "attempts"):
        tasks.add_column(name, overflow="fold")
    tasks.add_column("output / last error", overflow="fold")
    for t in state.tasks.values():
        detail = summarize(t.output) if t.output is not None else (t.last_error or "")
        tasks.add_row(*map(verbatim, (t.id, t.agent, t.status.value, str(t.attempt), detail)))
    out = [tasks]
    if state.escalations:
        esc = _table("open escalations")
        esc.add_column("task", overflow="fold")
        esc.add_column("kind", overflow="fold")
        esc.add_column("reason", overflow="fold")
        for e in state.escalations.values():
            esc.add_row(*map(verbatim, (e.task_id, e.kind, e.reason)))
        out.append(esc)
    return out


class StepCells(NamedTuple):
    """One journaled step as the steps table shows it (built by :mod:`.step_view`).

    ``task`` and ``attempt`` are empty on the rows after the first of an
    attempt, so each attempt's steps read as a group under it.
    """

    task: str
    attempt: str
    number: str
    step: str
    kind: str
    called: str
    tokens: str
    cost: str
    ms: str
    outcome: str
    request: str
    result: str


def steps_table(rows: Sequence[StepCells], *, title: str = "steps") -> Table:
    """The run's journaled steps under their task's attempt, requests and results cut short."""
    table = _table(title)
    if _effective_width() >= STEPS_WIDE:
        for name in ("task", "attempt", "#"):
            table.add_column(name, no_wrap=name != "task", overflow="fold",
                             justify="right" if name != "task" else "left")
        table.add_column("step", overflow="fold")
        table.add_column("kind", no_wrap=True)
        table.add_column("model/tool", overflow="fold")
        for name in ("tokens", "cost", "ms"):
            table.add_column(name, justify="right", no_wrap=True)
        table.add_column("outcome", overflow="fold")
        table.add_column("request", overflow="fold")
        table.add_column("result", overflow="fold")
        for row in rows:
            table.add_row(*map(verbatim, row))
        return table
    # Narrow: what the step called, its usage, and its outcome with its data stacked.
    table.add_column("task\nattempt", overflow="fold", max_width=12)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("step", overflow="fold", max_width=20)
    table.add_column("tokens\ncost\nms", justify="right", no_wrap=True)
    table.add_column("outcome\nrequest\nresult", overflow="fold")
    for row in rows:
        where = "\n".join(part for part in (row.task, row.attempt and f"attempt {row.attempt}")
                          if part)
        what = "\n".join(part for part in (row.step, f"{row.kind} {row.called}".strip()) if part)
        usage = "\n".join(part for part in (row.tokens, row.cost, row.ms) if part)
        table.add_row(*map(verbatim, (where, row.number, what, usage,
                                      f"{row.outcome}\n{row.request}\n{row.result}")))
    return table
