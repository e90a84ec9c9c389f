"""Child processes, waits and the after-the-kills checks the reliability stories share.

A :class:`Child` is one Python script in its own process, stdout and stderr
in files (a pipe nobody reads would block a chatty child), optionally armed
to kill itself (``rel_killpoints.py``). :func:`check_story` holds the final
store, the side channel and the sink against the promises of issue 12,
scenario 1, and returns the figures (:class:`StoryFigures`); the tests print
them and assert on them.

Example::

    child = Child.start(KILL9_CHILD, [spec_path], tmp_path / "c1", kill_at="mid_batch:3")
    code = await child.exited()
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rel_acks import AckFigures, check_acks
from rel_sink import Sink
from rel_workflow import IDEMPOTENT_TASKS, RAW_TASKS, wf

from ledgerflow.eventstore import EventStore, check_chain
from ledgerflow.replay import verify_run

__all__ = ["HERE", "NEEDS_PG", "PG_DSN", "TERMINAL", "Child", "StoryFigures", "check_story",
           "wait_for"]

HERE = Path(__file__).parent
PG_DSN = os.environ.get("LEDGERFLOW_TEST_PG_DSN", "")
NEEDS_PG = ("PostgreSQL tests need LEDGERFLOW_TEST_PG_DSN "
            "(e.g. postgresql://postgres@127.0.0.1:5432/test)")
TERMINAL = frozenset({"completed", "failed", "cancelled"})


async def wait_for(condition: Callable[[], Awaitable[bool]], what: str, *,
                   timeout_s: float = 120.0, pause_s: float = 0.05) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + timeout_s
    while not await condition():
        if loop.time() > give_up:
            raise AssertionError(f"gave up waiting for {what} after {timeout_s:g}s")
        await asyncio.sleep(pause_s)


@dataclass
class Child:
    """One child script's process, where its output goes, and what it was armed with."""

    proc: subprocess.Popen[bytes]
    out: Path
    err: Path
    kill_at: str

    @classmethod
    def start(cls, script: Path, args: Sequence[str], base: Path, *, kill_at: str = "",
              kill_log: Path | None = None) -> Child:
        """Start ``script args`` now (``kill_at``: ``CATEGORY:N`` arms its kill point)."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "LEDGERFLOW_KILL_AT": kill_at,
               "LEDGERFLOW_KILL_LOG": str(kill_log or "")}
        out, err = base.with_suffix(".out"), base.with_suffix(".err")
        with out.open("wb") as stdout, err.open("wb") as stderr:
            proc = subprocess.Popen([sys.executable, str(script), *args],
                                    stdout=stdout, stderr=stderr, env=env, cwd=HERE)
        return cls(proc, out, err, kill_at)

    @property
    def done(self) -> bool:
        return self.proc.poll() is not None

    async def exited(self, timeout_s: float = 120.0) -> int:
        """Wait for the process to end; its exit code (``-9``: SIGKILLed)."""
        async def ended() -> bool:
            return self.done

        await wait_for(ended, f"child {self.proc.pid} to exit", timeout_s=timeout_s)
        return self.proc.returncode

    def signal(self, sig: signal.Signals) -> None:
        if not self.done:
            self.proc.send_signal(sig)

    def kill(self) -> None:
        """Whatever state it is in: SIGCONT (a stopped process is not reaped) and SIGKILL."""
        if not self.done:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")


@dataclass
class StoryFigures:
    """What a kill -9 story did and what the checks found."""

    runs: int = 0
    kills: int = 0
    #: Kill point -> kills that landed there ("random": the parent's timer).
    kill_points: Counter[str] = field(default_factory=Counter)
    #: Drives that continued an existing run (a resume, or a worker's takeover).
    resumes: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    acks: AckFigures = field(default_factory=AckFigures)
    unverified: dict[str, list[str]] = field(default_factory=dict)
    #: Performances of one (run, task) at the deduplicating API beyond the first (must be 0).
    duplicate_once: int = 0
    #: Performances of one (run, task) at the non-deduplicating APIs beyond the first.
    duplicate_raw: int = 0
    #: Idempotent tasks called again after a kill (allowed: performed once by key).
    attempted_twice: int = 0
    #: Completed runs missing one of their effects (must be 0).
    missing_effects: int = 0
    #: Outcome-unknown escalations, settled by the operator handler from the sink.
    outcome_unknown: int = 0

    def line(self, name: str) -> str:
        a = self.acks
        return (f"{name}: runs={self.runs} kills={self.kills} "
                f"kill_points={dict(sorted(self.kill_points.items()))} resumes={self.resumes} "
                f"statuses={dict(self.statuses)} acknowledged_events={a.acknowledged_events} "
                f"acknowledged_batches={a.acknowledged_batches} "
                f"unacknowledged_appends_whole={a.unacknowledged_whole} "
                f"unacknowledged_appends_absent={a.unacknowledged_absent} "
                f"lost_or_partial={len(a.problems)} unverified={len(self.unverified)} "
                f"duplicate_effects={self.duplicate_once + self.duplicate_raw} "
                f"idempotent_attempted_twice={self.attempted_twice} "
                f"outcome_unknown_escalations={self.outcome_unknown} "
                f"missing_effects={self.missing_effects}")


async def check_story(store: EventStore, sink: Sink, run_ids: Sequence[str], ack_dir: Path,
                      figures: StoryFigures) -> StoryFigures:
    """Fill ``figures`` with what the final logs, the side channel and the sink say."""
    figures.runs = len(run_ids)
    completed: list[str] = []
    for run_id in run_ids:
        summary = await store.run(run_id)
        status = summary.status if summary is not None else "missing"
        figures.statuses[status] += 1
        if status == "completed":
            completed.append(run_id)
        envelopes = await store.read_all(run_id)
        figures.resumes += sum(e.type == "RunResumed" for e in envelopes)
        figures.outcome_unknown += sum(
            e.type == "TaskEscalated" and b"outcome_unknown" in e.data for e in envelopes)
        problem = check_chain(run_id, envelopes)
        report = await verify_run(store, run_id, workflow=wf)
        if problem is not None or not report.ok:
            figures.unverified[run_id] = [str(problem), *report.lines()]
    figures.acks = await check_acks(store, ack_dir)
    effects = await sink.effects()
    # Per (run, task), not only per key: a key that changed between attempts would
    # let the deduplicating API perform twice, and that is a duplicate too.
    once = Counter((e.run_id, e.task_id) for e in effects if e.kind == "once")
    raw = Counter((e.run_id, e.task_id) for e in effects if e.kind == "raw")
    figures.duplicate_once = sum(n - 1 for n in once.values())
    figures.duplicate_raw = sum(n - 1 for n in raw.values())
    performed = {(e.run_id, e.task_id) for e in effects}
    figures.missing_effects = sum((r, t) not in performed for r in completed
                                  for t in IDEMPOTENT_TASKS | RAW_TASKS)
    calls = Counter((r, t) for _k, r, t in await sink.attempts() if t in IDEMPOTENT_TASKS)
    figures.attempted_twice = sum(n > 1 for n in calls.values())
    return figures
