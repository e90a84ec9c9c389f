"""Progress of ``run``, ``resume`` and ``worker`` on stderr, from the events a driver made durable.

A :class:`RunProgress` is a :class:`~ledgerflow.machines.observers.RunObserver`:
it folds each durable batch into its own copy of the run's state (the fold
the log is replayed with, so a progress line never says what a replay would
not) and shows it

- on a terminal, as one live line rewritten in place (rich): tasks done of
  the plan's total, retries, open escalations, cost, the run's status;
- elsewhere (a pipe, a CI log, systemd), as plain lines: one when the run
  starts, then one per notable change (a task succeeded, an attempt failed,
  a task escalated or was abandoned), at most one line per ``interval_s``
  (the changes in between are counted in the next line, or in a line
  written once the interval is over), and the final line.

stdout is left to the command (its status line, its hints, its last line).

A :class:`WorkerProgress` shows a worker's live line on a terminal: runs
claimed and finished, attempts run, tasks done. Off a terminal the worker's
own log lines (one per run claimed, finished or lost) already say as much.

Example::

    with run_progress(None) as progress:
        run = await Orchestrator(store, observers=[progress]).start(wf, goal)
        progress.finish(run.status)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from datetime import datetime
from typing import Any

import click
from rich.console import Console
from rich.live import Live
from rich.text import Text

from ledgerflow.machines import RunState, TaskStatus, evolve
from ledgerflow.machines import events as ev
from ledgerflow.machines.worker import Worker
from ledgerflow.replay.cli_support import run_async, with_db

__all__ = ["EXIT_INTERRUPTED", "RunProgress", "WorkerProgress", "drive_or_hint",
           "resume_hint", "run_progress", "worker_progress"]

log = logging.getLogger("ledgerflow")

#: Plain lines come at most this often (plus the final one).
INTERVAL_S = 1.0
#: How often the live line is redrawn on a terminal.
REFRESH_PER_SECOND = 4


def _stderr_console() -> Console:
    # Markup off: a workflow's or task's name is shown as recorded.
    return Console(stderr=True, highlight=False, markup=False, emoji=False)


def _live_wanted(console: Console) -> bool:
    return console.is_terminal and not console.is_dumb_terminal


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _note(event: ev.Event) -> str | None:
    """What a plain line says of ``event``, or None if it is not a notable change."""
    if isinstance(event, ev.TaskSucceeded):
        return f"task {event.task_id} succeeded"
    if isinstance(event, ev.AgentFailed | ev.OutputRejected):
        return f"task {event.task_id} attempt {event.attempt} failed"
    if isinstance(event, ev.TaskEscalated):
        return f"task {event.task_id} escalated ({event.kind})"
    if isinstance(event, ev.TaskAbandoned):
        return f"task {event.task_id} abandoned"
    return None


class RunProgress:
    """The progress of one run, told of its durable batches (a ``RunObserver``).

    ``state`` is the run as it stood before the drive (``resume``), or None
    for a run this drive starts: its id and workflow come with its first
    event. ``live`` picks the live line (default: when stderr is a terminal).

    Example::

        progress = RunProgress(None, live=False)
        orch = Orchestrator(store, observers=[progress])
    """

    def __init__(self, state: RunState | None = None, *, live: bool | None = None,
                 console: Console | None = None, interval_s: float = INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic,
                 echo: Callable[[str], None] | None = None) -> None:
        self.state = state if state is not None else RunState(run_id="")
        self.console = console or _stderr_console()
        self.live = _live_wanted(self.console) if live is None else live
        self.interval_s = interval_s
        self.clock = clock
        self.echo = echo or (lambda line: click.echo(line, err=True))
        #: False once a batch did not follow the one before (its counts would be wrong).
        self.exact = True
        self.final: str | None = None
        self._notes: list[str] = []
        self._last_line = -float("inf")
        self._timer: asyncio.TimerHandle | None = None
        self._live: Live | None = None
        self._announced = False
        self._verb = "started"

    @property
    def run_id(self) -> str:
        """The run's id ("" until its first event is durable)."""
        return self.state.run_id

    # -- the observer -------------------------------------------------------

    def committed(self, run_id: str, events: Sequence[ev.Event], *, first_seq: int,
                  at: datetime) -> None:
        """Fold a durable batch and show what changed."""
        if not self.state.run_id:
            self.state.run_id = run_id
        if run_id != self.state.run_id:
            return  # another run of the same orchestrator (a fork's origin, a test)
        skip = self.state.seq + 1 - first_seq  # a batch seen already, in part
        if skip < 0:
            self.exact = False
        if self.exact:
            try:
                for event in events[max(skip, 0):]:
                    evolve(self.state, event)
            except Exception:  # shown less exactly, never fatal to the run
                log.debug("Progress of run %s stopped folding at seq %d.", run_id,
                          self.state.seq, exc_info=True)
                self.exact = False
        if not self._announced and self.state.workflow:
            self.announce(self._verb + (f" ({self.summary()})" if self.state.tasks else ""))
        if not self.live:
            self._notes.extend(note for e in events if (note := _note(e)) is not None)
            if self._notes:
                self._plain_soon()

    # -- what is shown ------------------------------------------------------

    def summary(self) -> str:
        """``12/200 tasks done, 1 retry, 0 escalations, cost 0.0123`` (or ``planning``)."""
        s = self.state
        if not self.exact:
            return f"at seq {s.seq}"
        if not s.tasks:
            return "planning" if not s.status.terminal else "no tasks"
        escalated = s.counts[TaskStatus.ESCALATED]
        return (f"{s.finished_tasks}/{len(s.tasks)} tasks done, "
                f"{s.retries_used} {'retry' if s.retries_used == 1 else 'retries'}, "
                f"{_plural(escalated, 'escalation')}, cost {s.cost:.4g}")

    def line(self) -> str:
        """The whole progress line: the run, its summary, its status."""
        s = self.state
        status = self.final or s.status.value
        return f"run {s.run_id} ({s.workflow}): {self.summary()} — {status}"

    def resuming(self, state: RunState) -> None:
        """Follow ``state`` (the run as loaded before its lease is taken).

        The run is named when its drive's first event is durable: a resume
        refused (the lease is held, the store is too old) or with nothing to
        do (the run is over) prints only the command's own line.
        """
        self.state, self.exact = state, True
        self._verb = f"resumed at seq {state.seq + 1}"

    def announce(self, verb: str) -> None:
        """The first line, naming the run at once: ``run ID (WORKFLOW): started``."""
        self._announced = True
        s = self.state
        self.echo(f"run {s.run_id} ({s.workflow}): {verb}")
        self._last_line = self.clock()

    def _render(self) -> Text:
        return Text(self.line(), no_wrap=True, overflow="ellipsis")

    def _plain_soon(self) -> None:
        wait = self._last_line + self.interval_s - self.clock()
        if wait <= 0:
            self._plain_now()
            return
        if self._timer is None:
            with contextlib.suppress(RuntimeError):  # no loop: the next batch or the end says it
                self._timer = asyncio.get_running_loop().call_later(wait, self._plain_now)

    def _plain_now(self) -> None:
        self._timer = None
        if not self._notes or self.final is not None:
            return
        latest, more = self._notes[-1], len(self._notes) - 1
        self._notes.clear()
        self.echo(f"run {self.state.run_id}: {self.summary()} — {latest}"
                  + (f" (and {_plural(more, 'more change')})" if more else ""))
        self._last_line = self.clock()

    # -- the drive's life ---------------------------------------------------

    def start_live(self) -> None:
        """Start the live line (a terminal only); :meth:`stop` ends it."""
        if self.live and self._live is None:
            self._live = Live(get_renderable=self._render, console=self.console,
                              refresh_per_second=REFRESH_PER_SECOND, transient=False,
                              redirect_stdout=False, redirect_stderr=True)
            self._live.start()

    def finish(self, status: str) -> None:
        """The run's drive ended in ``status``: the final line, with that status.

        The reason is the command's own status line, on stdout.
        """
        self.final = status
        self._cancel_timer()
        if self._live is not None:
            self.stop()
        elif not self.live and self._announced:
            self.echo(self.line())

    def stop(self) -> None:
        """Stop showing (the live line stays as last drawn); safe to call twice."""
        self._cancel_timer()
        if self._live is not None:
            live, self._live = self._live, None
            live.refresh()
            live.stop()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


@contextlib.contextmanager
def run_progress(state: RunState | None, *, live: bool | None = None) -> Iterator[RunProgress]:
    """A :class:`RunProgress` shown for the length of the block (stopped however it ends).

    Example::

        with run_progress(state) as progress:
            progress.announce("resumed")
            run = await Orchestrator(store, observers=[progress]).resume(state.run_id)
            progress.finish(run.status)
    """
    progress = RunProgress(state, live=live)
    progress.start_live()
    try:
        yield progress
    finally:
        progress.stop()


#: The exit code of a command stopped by Ctrl-C (128 + SIGINT), as shells use.
EXIT_INTERRUPTED = 130


def drive_or_hint(progress: RunProgress, drive: Coroutine[Any, Any, Any], db: str) -> Any:
    """Run ``drive`` (the command's coroutine); its result, after the progress's final line.

    Ctrl-C cancels the drive the way :func:`asyncio.run` does: the driver
    stops its attempts and lets an append in flight land or fail, so nothing
    acknowledged is lost; then one line says how to resume, and the command
    exits 130.

    Example::

        run = drive_or_hint(progress, go(progress), db)
    """
    try:
        run = run_async(drive)
    except KeyboardInterrupt:
        progress.final = "interrupted"
        progress.stop()
        click.echo(resume_hint(progress.run_id, db), err=True)
        sys.exit(EXIT_INTERRUPTED)
    progress.finish(run.status)
    return run


def resume_hint(run_id: str, db: str) -> str:
    """The one line a Ctrl-C of ``run`` or ``resume`` leaves: how to go on.

    Example::

        >>> resume_hint("1a2b3c4d5e6f", "runs.db")
        'interrupted: run 1a2b3c4d5e6f is not finished (what was recorded is kept); ...'
    """
    if not run_id:  # Ctrl-C before its first event was durable (or known to be)
        return ("interrupted before the run started; `ledgerflow runs` lists it if its "
                "first event was recorded.")
    return (f"interrupted: run {run_id} is not finished (what was recorded is kept); "
            f"continue it with `{with_db(f'ledgerflow resume {run_id}', db)}`")


class WorkerProgress:
    """A worker's live line on a terminal (a ``RunObserver`` of the runs it drives).

    Example::

        progress = WorkerProgress()
        pool = Worker(store, wfs, observers=[progress])
        progress.watch(pool)
    """

    def __init__(self, *, live: bool | None = None, console: Console | None = None) -> None:
        self.console = console or _stderr_console()
        self.live = _live_wanted(self.console) if live is None else live
        self.pool: Worker | None = None
        #: Tasks of the runs driven here that ended (succeeded, abandoned, skipped).
        self.tasks_done = 0
        self._live: Live | None = None

    def watch(self, pool: Worker) -> None:
        """The worker whose counters the line shows."""
        self.pool = pool

    def committed(self, run_id: str, events: Sequence[ev.Event], *, first_seq: int,
                  at: datetime) -> None:
        """Count the tasks that ended in a batch of a run this worker drives."""
        self.tasks_done += sum(1 for e in events if isinstance(
            e, ev.TaskSucceeded | ev.TaskAbandoned | ev.TaskSkipped))

    def line(self) -> str:
        """``worker ID: runs claimed 3, finished 2, ...; attempts run 57; tasks done 50``."""
        if self.pool is None:
            return "worker: starting"
        stats = self.pool.stats
        attempts = stats.tasks_claimed + self.pool.orch.local_total
        return (f"worker {self.pool.worker_id}: runs claimed {stats.claimed}, finished "
                f"{stats.finished}, waiting {stats.waiting}, lost {stats.lost}, failed "
                f"{stats.failed}; attempts run {attempts}; tasks done {self.tasks_done}")

    def _render(self) -> Text:
        return Text(self.line(), no_wrap=True, overflow="ellipsis")

    def start(self) -> None:
        """Start the live line (a terminal only); stderr written meanwhile goes above it."""
        if self.live and self._live is None:
            self._live = Live(get_renderable=self._render, console=self.console,
                              refresh_per_second=REFRESH_PER_SECOND, transient=True,
                              redirect_stdout=False, redirect_stderr=True)
            self._live.start()

    def stop(self) -> None:
        """Stop the live line (the worker's last line says what it did)."""
        if self._live is not None:
            live, self._live = self._live, None
            live.stop()


@contextlib.contextmanager
def worker_progress(*, live: bool | None = None) -> Iterator[WorkerProgress]:
    """A :class:`WorkerProgress` shown for the length of the block.

    Start it before the worker's log handler, so that the log lines (written
    to the stderr the live display redirects) come above the line.

    Example::

        with worker_progress() as progress, logging_to_stderr():
            ...
    """
    progress = WorkerProgress(live=live)
    progress.start()
    try:
        yield progress
    finally:
        progress.stop()
