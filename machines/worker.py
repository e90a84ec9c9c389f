"""The worker: a long-running process that claims queued and orphaned runs and drives them.

A service queues runs with :meth:`Orchestrator.submit`; any number of
workers, in any number of processes on the same store (PostgreSQL, or one
SQLite file on one machine), share them:

- a worker claims a run with the store's atomic claim (``FOR UPDATE SKIP
  LOCKED`` on PostgreSQL, one ``BEGIN IMMEDIATE`` on SQLite): a queued run,
  or a started one whose lease lapsed because its worker died. The claim is
  a lease with a fence: every append of the drive carries it, so a worker
  paused past its lease (SIGSTOP) cannot append once another took the run;
- it drives the run exactly as ``resume`` would (a queued run is started;
  an orphan's completed tasks and steps are not redone, unknown side effects
  escalate) until the run ends or waits on an escalation, then gives the
  lease back: a waiting run holds no worker;
- the attempts of the runs it drives are offered to the whole pool
  (:mod:`~ledgerflow.machines.task_exchange`), and it runs attempts offered
  by any worker, up to ``task_concurrency`` at once, within each agent's
  pool-wide ``max_concurrent`` and ``per_minute``
  (:mod:`~ledgerflow.machines.task_executor`): the 200 tasks of one plan
  spread over every worker, while the run's decisions are still appended by
  its one owner, in one order;
- it heartbeats in the store's workers table (``ledgerflow workers``), is
  woken by LISTEN/NOTIFY on PostgreSQL and polls as the fallback;
- :meth:`Worker.stop` (SIGTERM) stops claiming and lets the runs in hand go
  on for up to ``drain_s``, then cancels them (their leases are released;
  another worker continues them); ``stop(now=True)`` (a second SIGTERM)
  cancels at once.

Example::

    async with open_store("postgresql://app@db/ledger") as store:
        worker = Worker(store, [travel_wf], concurrency=8, lease_ttl_s=30)
        worker.stop_on_signals()
        await worker.run()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ledgerflow.eventstore import (
    Claim,
    ConcurrencyError,
    EventStore,
    LeaseLostError,
    TaskClaim,
)
from ledgerflow.machines.errors import ChainBrokenError, RunBusyError, WorkflowDefinitionError
from ledgerflow.machines.leasing import new_owner
from ledgerflow.machines.observers import RunObserver
from ledgerflow.machines.orchestrator import Orchestrator, utcnow
from ledgerflow.machines.task_executor import TaskExecutor
from ledgerflow.machines.workflow import Workflow

__all__ = ["CLAIMABLE", "Worker", "WorkerStats"]

log = logging.getLogger("ledgerflow")

#: The run statuses a worker claims (with no live lease): queued, or started
#: and left by a worker that died. A waiting run is not claimed: it waits on a person.
CLAIMABLE = ("queued", "planning", "running")
#: Drives of one run that may fail unexpectedly in this worker before it stops claiming it.
_MAX_FAILURES = 3


@dataclass(slots=True)
class WorkerStats:
    """What a worker did so far (for its log line, tests and benchmarks)."""

    claimed: int = 0
    finished: int = 0
    waiting: int = 0
    lost: int = 0
    failed: int = 0
    #: Attempts this worker ran: of its own runs in its own process, or claimed from the
    #: pool (of any run); and claims it lost.
    tasks: int = 0
    tasks_claimed: int = 0
    tasks_lost: int = 0


class Worker:
    """Claims runs of ``workflows`` from ``store`` and drives up to ``concurrency`` at once."""

    def __init__(
        self,
        store: EventStore,
        workflows: Sequence[Workflow],
        *,
        concurrency: int = 4,
        lease_ttl_s: float = 30.0,
        poll_s: float = 1.0,
        drain_s: float = 30.0,
        worker_id: str | None = None,
        clock: Callable[[], datetime] = utcnow,
        spread_tasks: bool = True,
        task_concurrency: int = 32,
        observers: Sequence[RunObserver] = (),
    ) -> None:
        if not workflows:
            raise WorkflowDefinitionError("A worker needs at least one workflow to run.")
        names = [wf.name for wf in workflows]
        if len(set(names)) != len(names):
            raise WorkflowDefinitionError(
                f"A worker was given two workflows of one name ({', '.join(sorted(names))}).")
        if (concurrency < 1 or task_concurrency < 1 or lease_ttl_s <= 0 or poll_s <= 0
                or drain_s < 0):
            raise WorkflowDefinitionError(
                "A worker needs concurrency >= 1, task_concurrency >= 1, lease_ttl_s > 0, "
                f"poll_s > 0 and drain_s >= 0 (got {concurrency}, {task_concurrency}, "
                f"{lease_ttl_s}, {poll_s}, {drain_s}).")
        self.store = store
        self.workflows = {wf.name: wf for wf in workflows}
        self.concurrency = concurrency
        self.lease_ttl_s = lease_ttl_s
        self.poll_s = poll_s
        self.drain_s = drain_s
        #: The owner of every lease this worker takes (``host:pid:suffix``).
        self.worker_id = worker_id or new_owner()
        self.task_concurrency = task_concurrency
        self.orch = Orchestrator(store, owner=self.worker_id, lease_ttl_s=lease_ttl_s,
                                 clock=clock, spread_tasks=spread_tasks, observers=observers)
        self.executor = TaskExecutor(store, self.workflows, owner=self.worker_id,
                                     ttl_s=lease_ttl_s, clock=clock,
                                     wake_owner=self.orch.wake_exchange)
        self.orch.on_answer = self.executor.answered
        # One budget of attempts per worker: its own runs' first, the pool's in what is left.
        self.orch.local_capacity = task_concurrency
        self.orch.slots = self.executor.slots
        #: Set when this worker's own drivers offer attempts: no need to wait for a poll.
        self._offered = asyncio.Event()
        self.orch.on_offer = self._offered.set
        self.stats = WorkerStats()
        self._stopping = asyncio.Event()
        self._now = False
        self._failures: dict[str, int] = {}
        self._active: dict[asyncio.Task[None], Claim] = {}
        self._running: dict[asyncio.Task[None], TaskClaim] = {}
        #: Runs whose log is broken: their leases are held, never driven.
        self._quarantined: set[str] = set()

    @property
    def info(self) -> dict[str, Any]:
        """What ``ledgerflow workers`` shows of this worker."""
        return {"host": socket.gethostname(), "pid": os.getpid(),
                "workflows": sorted(self.workflows), "concurrency": self.concurrency,
                "task_concurrency": self.task_concurrency, "lease_ttl_s": self.lease_ttl_s}

    def stop(self, *, now: bool = False) -> None:
        """Stop claiming; drain the runs in hand for ``drain_s`` (``now``: cancel them)."""
        self._now = self._now or now
        self._stopping.set()
        if self._now:
            for drive in [*self._active, *self._running]:
                drive.cancel()

    def stop_on_signals(self) -> None:
        """SIGTERM and SIGINT stop the worker; a second one stops it at once."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        again = self._stopping.is_set()
        log.warning("Worker %s got %s: %s.", self.worker_id, sig.name,
                    "stopping now" if again else
                    f"draining (up to {self.drain_s:g}s; send it again to stop now)")
        self.stop(now=again)

    async def run(self, *, until_idle: bool = False) -> WorkerStats:
        """Claim and drive runs until stopped (``until_idle``: until none is left to claim)."""
        await self.store.register_worker(self.worker_id, self.info, self.lease_ttl_s)
        beat = asyncio.create_task(self._heartbeat())
        try:
            await self._serve(until_idle=until_idle)
            await self._drain()
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            with contextlib.suppress(Exception):
                await self.store.unregister_worker(self.worker_id)
            self.stats.tasks = self.stats.tasks_claimed + self.orch.local_total
        return self.stats

    async def _serve(self, *, until_idle: bool) -> None:
        while not self._stopping.is_set():
            self._offered.clear()
            exhausted = await self._claim_what_fits()
            tasks_exhausted = await self._claim_tasks_that_fit()
            if until_idle and exhausted and tasks_exhausted and not self._active \
                    and not self._running:
                return
            waits: set[asyncio.Task[Any]] = {
                asyncio.create_task(self.store.wait_for_work(self.poll_s)),
                asyncio.create_task(self._stopping.wait()),
                asyncio.create_task(self._offered.wait()),
            }
            try:
                await asyncio.wait({*self._active, *self._running, *waits},
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiting in waits:
                    waiting.cancel()
                await asyncio.gather(*waits, return_exceptions=True)

    async def _claim_what_fits(self) -> bool:
        """Claim runs while there is room; whether the store had none left to give."""
        while len(self._active) < self.concurrency and not self._stopping.is_set():
            claim = await self.store.claim_run(self.worker_id, self.lease_ttl_s,
                                               statuses=CLAIMABLE, workflows=list(self.workflows))
            if claim is None:
                return True
            if self._failures.get(claim.run_id, 0) >= _MAX_FAILURES:
                # Failed here again and again: leave it to other workers (or a person).
                await self.store.release_lease(claim.run_id, self.worker_id)
                return True
            self.stats.claimed += 1
            drive = asyncio.create_task(self._drive(claim))
            self._active[drive] = claim
            drive.add_done_callback(self._forget)
        return False

    def _forget(self, drive: asyncio.Task[None]) -> None:
        self._active.pop(drive, None)

    async def _claim_tasks_that_fit(self, *, draining: bool = False) -> bool:
        """Claim offered attempts while there is room; whether none was left to claim."""
        while (len(self._running) + self.orch.local_running < self.task_concurrency
               and (draining or not self._stopping.is_set())):
            claim = await self.executor.claim()
            if claim is None:
                return True
            running = asyncio.create_task(self._execute(claim))
            self._running[running] = claim
            running.add_done_callback(self._forget_task)
        return False

    def _forget_task(self, running: asyncio.Task[None]) -> None:
        self._running.pop(running, None)

    async def _execute(self, claim: TaskClaim) -> None:
        try:
            kept = await self.executor.execute(claim)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The claim lapses and another worker runs the attempt again.
            log.exception("Worker %s failed running task %s attempt %d of run %s.",
                          self.worker_id, claim.task_id, claim.attempt, claim.run_id)
            kept = False
        if kept:
            self.stats.tasks_claimed += 1
        else:
            self.stats.tasks_lost += 1

    async def _drive(self, claim: Claim) -> None:
        wf = self.workflows[claim.label]
        log.info("claimed run %s (%s, %s, fence %d)", claim.run_id, claim.label, claim.status,
                 claim.fence)
        try:
            run = await self.orch.resume(claim.run_id, wf)
        except (LeaseLostError, RunBusyError, ConcurrencyError) as exc:
            # Another worker holds the run now (or appended to it first): not a failure.
            self.stats.lost += 1
            log.warning("Worker %s lost run %s to another worker: %s", self.worker_id,
                        claim.run_id, exc)
        except asyncio.CancelledError:
            log.warning("Worker %s stopped driving run %s (stopping); another worker "
                        "continues it.", self.worker_id, claim.run_id)
            raise
        except ChainBrokenError as exc:
            # Final: no worker may append to an edited log. Hold its lease (renewed with
            # the heartbeat) so that it is not claimed again and again, here or elsewhere,
            # starving the runs queued behind it; `ledgerflow runs` shows who holds it.
            self.stats.failed += 1
            self._failures[claim.run_id] = _MAX_FAILURES
            log.warning("Worker %s leaves run %s alone: %s", self.worker_id, claim.run_id, exc)
            if await self.store.take_lease(claim.run_id, self.worker_id, self.lease_ttl_s):
                self._quarantined.add(claim.run_id)
        except Exception:
            self.stats.failed += 1
            self._failures[claim.run_id] = self._failures.get(claim.run_id, 0) + 1
            log.exception("Worker %s failed driving run %s.", self.worker_id, claim.run_id)
        else:
            if run.status == "waiting":
                self.stats.waiting += 1
                log.info("run %s waits on an escalation; released (ledgerflow resolve queues it "
                         "again)", claim.run_id)
            else:
                self.stats.finished += 1
                log.info("finished run %s: %s", claim.run_id, run.status)

    async def _drain(self) -> None:
        """Let the runs and attempts in hand finish, for up to ``drain_s``; then cancel them.

        The runs in hand still need their next attempts run, and this worker
        may be the last one: it goes on running offered attempts while any of
        its runs is live, but claims no new run.
        """
        loop = asyncio.get_running_loop()
        until = loop.time() + self.drain_s
        while (self._active or self._running) and not self._now and loop.time() < until:
            if self._active:
                self._offered.clear()
                await self._claim_tasks_that_fit(draining=True)
            wake = asyncio.create_task(self._offered.wait())
            try:
                await asyncio.wait({*self._active, *self._running, wake},
                                   timeout=min(self.poll_s, max(0.0, until - loop.time())),
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                wake.cancel()
        drives = [*self._active, *self._running]
        for drive in drives:
            drive.cancel()
        await asyncio.gather(*drives, return_exceptions=True)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.lease_ttl_s / 3)
            try:
                await self.store.worker_heartbeat(self.worker_id, self.lease_ttl_s)
                for run_id in list(self._quarantined):
                    await self.store.take_lease(run_id, self.worker_id, self.lease_ttl_s)
            except Exception:  # the store is busy or gone: the next beat tries again
                log.warning("Worker %s could not send its heartbeat.", self.worker_id,
                            exc_info=True)
