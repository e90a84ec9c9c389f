"""The issue's pool scenario, on any store: three worker processes, one SIGKILLed, one
SIGSTOPped past its lease and SIGCONTed, until every submitted run is terminal.

:func:`run_chaos` does the story and gathers what happened (:class:`ChaosOutcome`);
the test files assert on it, so the PostgreSQL and SQLite variants say the same
thing. The pause is taken only while the paused worker holds runs and no
transaction (a process stopped inside one would hold the database's locks,
which is another story: PostgreSQL's ``idle_in_transaction_session_timeout``).

Example::

    outcome = await run_chaos(url, sink, runs=30, base=tmp_path, spawned=spawned)
    assert outcome.statuses == {"completed": 30}
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pool_harness import TERMINAL, WorkerProcess, owned_by, summaries, wait_for
from pool_sink import Effect, Sink
from pool_workflows import EFFECT_TASK, PoolGoal, wf

from ledgerflow.eventstore import open_store
from ledgerflow.machines import Orchestrator, decode_event
from ledgerflow.machines import events as ev
from ledgerflow.replay import verify_run

__all__ = ["ChaosOutcome", "run_chaos"]

#: Worker options: a short lease, so a pause outlives it quickly; polling for SQLite.
LEASE_TTL_S = 1.5
WORKER_OPTIONS = ("--concurrency", "3", "--lease-ttl", str(LEASE_TTL_S), "--poll", "0.2",
                  "--drain", "10")


@dataclass
class ChaosOutcome:
    """What the story left behind, for the assertions."""

    run_ids: list[str]
    statuses: Counter[str]
    #: Run id -> the verify report's failing lines (empty: every log verified).
    unverified: dict[str, list[str]]
    effects: list[Effect]
    attempts: list[tuple[str, str, str]]
    #: Run id -> the idempotency key its effect task was dispatched with (from the log).
    logged_keys: dict[str, set[str]]
    killed_held: set[str]
    paused_held: set[str]
    paused_stats: dict[str, Any]
    paused_stderr: str
    survivor_stats: dict[str, Any]
    stats: list[dict[str, Any]] = field(default_factory=list)

    @property
    def fence_refusals(self) -> int:
        """Late appends of the paused worker the store refused (LeaseLostError's message)."""
        return self.paused_stderr.count("lease was taken over")

    @property
    def lost_lines(self) -> int:
        """The paused worker's "lost run" warnings (a fence refusal or a renewal refused)."""
        return self.paused_stderr.count("lost run")

    @property
    def stale_seq_refusals(self) -> int:
        """Late appends of the paused worker refused only for their stale seq (ConcurrencyError).

        Must be none: it is what a fence made valid again looks like (a released
        lease once deleted its row and restarted the fence at 1; see
        ``test_pool_fences.py``), so the fence, not ``expected_seq``, stops the writer.
        """
        return self.paused_stderr.count("another writer appended first")

    @property
    def failed_lines(self) -> int:
        """The paused worker's "failed driving run" errors, whatever their cause."""
        return self.paused_stderr.count("failed driving run")


async def run_chaos(
    url: str, sink: Sink, *, runs: int, base: Path, spawned: list[WorkerProcess],
    options: tuple[str, ...] = (),
) -> ChaosOutcome:
    """Submit ``runs`` runs, start three workers, kill one and pause another mid-way.

    ``options`` go to every worker after the common ones (``--task-concurrency
    1``: most attempts spill over the pool, so kills land in claimed attempts).
    """
    await sink.create()
    workers = []
    for name in ("killed", "paused", "survivor"):
        workers.append(await WorkerProcess.start(url, base / name, *WORKER_OPTIONS, *options))
        spawned.append(workers[-1])
    killed, paused, survivor = workers
    goal = PoolGoal(sink=sink.location, sink_schema=sink.schema, nap_s=0.03)
    async with open_store(url) as store:
        orch = Orchestrator(store)
        run_ids = [await orch.submit(wf, goal) for _ in range(runs)]

        async def finished_at_least(n: int) -> bool:
            done = sum(s.status in TERMINAL for s in (await summaries(store, run_ids)).values())
            return done >= n

        killed_held: set[str] = set()

        async def killed_holding_runs() -> bool:
            killed_held.update(await owned_by(store, run_ids, killed.worker_id))
            if killed_held:
                killed.signal(signal.SIGKILL)
            return bool(killed_held)

        # 1. SIGKILL a worker while it holds runs, with work left for the others.
        await wait_for(lambda: finished_at_least(runs // 6), "a sixth of the runs to finish")
        await wait_for(killed_holding_runs, "the first worker to hold a run (then SIGKILL)")
        assert await killed.exited() == -signal.SIGKILL

        # 2. SIGSTOP another while it holds runs, past its lease, until others took them.
        await wait_for(lambda: finished_at_least(runs // 3), "a third of the runs to finish")
        paused_held = await _pause_holding_runs(store, run_ids, paused, url, sink)

        async def taken_from_paused() -> bool:
            now = await summaries(store, run_ids)
            return all(now[r].status in TERMINAL or now[r].owner not in (None, paused.worker_id)
                       for r in paused_held)

        await wait_for(taken_from_paused, "the paused worker's runs to pass to another worker")
        paused.signal(signal.SIGCONT)

        # 3. Everything ends; the two live workers drain and exit 0.
        async def all_terminal() -> bool:
            return await finished_at_least(runs)

        await wait_for(all_terminal, "every run to end", timeout_s=300)
        paused_stats = await paused.terminate()
        survivor_stats = await survivor.terminate()
        final = await summaries(store, run_ids)
        unverified: dict[str, list[str]] = {}
        logged_keys: dict[str, set[str]] = {}
        for run_id in run_ids:
            report = await verify_run(store, run_id, workflow=wf)
            if not report.ok:
                unverified[run_id] = report.lines()
            logged_keys[run_id] = {
                event.idempotency_key for event in await _dispatches(store, run_id)}
    return ChaosOutcome(
        run_ids=run_ids, statuses=Counter(s.status for s in final.values()),
        unverified=unverified, effects=await sink.effects(), attempts=await sink.attempts(),
        logged_keys=logged_keys, killed_held=killed_held, paused_held=paused_held,
        paused_stats=paused_stats, paused_stderr=paused.stderr(),
        survivor_stats=survivor_stats, stats=[paused_stats, survivor_stats])


async def _pause_holding_runs(
    store: Any, run_ids: list[str], worker: WorkerProcess, url: str, sink: Sink,
) -> set[str]:
    """SIGSTOP ``worker`` at a moment it holds runs and no open transaction; the runs.

    Neither in the store nor in the sink: a stopped process holding the sink's
    SQLite write lock would stall every other worker's agents, not the story told here.
    """
    for _ in range(400):
        worker.signal(signal.SIGSTOP)
        held = await owned_by(store, run_ids, worker.worker_id)
        if (held and await _no_open_transaction(url)
                and (sink.on_postgres or await _no_open_transaction(sink.location))):
            return held
        worker.signal(signal.SIGCONT)
        await asyncio.sleep(0.02)
    raise AssertionError(f"worker {worker.worker_id} never held a run outside a transaction")


async def _no_open_transaction(url: str) -> bool:
    """Whether no connection sits inside a transaction (so the stopped worker holds none)."""
    if url.startswith(("postgres://", "postgresql://")):
        import asyncpg  # noqa: PLC0415 - only PostgreSQL needs it

        dsn = url.split("?", 1)[0]
        conn = await asyncpg.connect(dsn)
        try:
            for _ in range(3):  # another worker's short transaction ends in a moment
                busy = await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()")
                if not busy:
                    return True
                await asyncio.sleep(0.05)
            return False
        finally:
            await conn.close()
    # SQLite: the write lock is free if a BEGIN IMMEDIATE of our own gets it.
    conn = sqlite3.connect(url, timeout=0.2, isolation_level=None)
    try:
        with contextlib.suppress(sqlite3.OperationalError):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            return True
        return False
    finally:
        conn.close()


async def _dispatches(store: Any, run_id: str) -> list[ev.TaskDispatched]:
    """The run's dispatches of the side-effecting task, from its log."""
    events = [decode_event(env.data) for env in await store.read_all(run_id)]
    return [e for e in events if isinstance(e, ev.TaskDispatched) and e.task_id == EFFECT_TASK]
