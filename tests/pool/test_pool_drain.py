"""SIGTERM drains a worker: the run in hand finishes, then it exits 0. A second SIGTERM
stops it at once: the run is left, lease released, for another worker to complete."""

from __future__ import annotations

import signal
from pathlib import Path

from pool_harness import WorkerProcess, wait_for
from pool_sink import Sink
from pool_workflows import EFFECT_TASK, PoolGoal, wf

from ledgerflow.eventstore import EventStore, open_store
from ledgerflow.machines import Orchestrator, Worker
from ledgerflow.replay import verify_run

#: Each of the run's three agents takes this long: SIGTERM lands while one runs.
SLOW_S = 1.0


async def _started_fetch(sink: Sink, run_id: str) -> bool:
    return any(run == run_id and task == "fetch" for _key, run, task in await sink.attempts())


async def _status(store: EventStore, run_id: str) -> str:
    summary = await store.run(run_id)
    assert summary is not None
    return summary.status


async def test_sigterm_lets_the_run_in_hand_finish_then_exits_0(
    tmp_path: Path, spawned: list[WorkerProcess],
) -> None:
    db, sink = str(tmp_path / "runs.db"), Sink(str(tmp_path / "sink.db"))
    await sink.create()
    worker = await WorkerProcess.start(db, tmp_path / "draining", "--drain", "60")
    spawned.append(worker)
    async with open_store(db) as store:
        run_id = await Orchestrator(store).submit(
            wf, PoolGoal(sink=sink.location, nap_s=SLOW_S))
        await wait_for(lambda: _started_fetch(sink, run_id), "the run's first agent to start")
        worker.signal(signal.SIGTERM)
        assert await worker.exited() == 0, worker.stderr()
        assert await _status(store, run_id) == "completed"
        assert (await verify_run(store, run_id, workflow=wf)).ok
    assert worker.stats()["finished"] == 1
    assert "draining" in worker.stderr()
    assert [e.task_id for e in await sink.effects()] == [EFFECT_TASK]


async def test_second_sigterm_stops_at_once_and_another_worker_completes_the_run(
    tmp_path: Path, spawned: list[WorkerProcess],
) -> None:
    db, sink = str(tmp_path / "runs.db"), Sink(str(tmp_path / "sink.db"))
    await sink.create()
    worker = await WorkerProcess.start(db, tmp_path / "stopped", "--drain", "60")
    spawned.append(worker)
    async with open_store(db) as store:
        run_id = await Orchestrator(store).submit(
            wf, PoolGoal(sink=sink.location, nap_s=SLOW_S))
        await wait_for(lambda: _started_fetch(sink, run_id), "the run's first agent to start")
        worker.signal(signal.SIGTERM)

        async def draining() -> bool:
            return "draining" in worker.stderr()

        await wait_for(draining, "the worker to start draining")
        worker.signal(signal.SIGTERM)
        assert await worker.exited() == 0, worker.stderr()
        # Stopped with two slow agents still to go: the run is left, and nobody holds it.
        left = await store.run(run_id)
        assert left is not None
        assert left.status == "running"
        assert left.owner is None
        assert worker.stats()["finished"] == 0
        assert "stopping now" in worker.stderr()

        stats = await Worker(store, [wf], lease_ttl_s=5, poll_s=0.05).run(until_idle=True)
        assert stats.finished == 1
        assert await _status(store, run_id) == "completed"
        assert (await verify_run(store, run_id, workflow=wf)).ok
    assert [e.task_id for e in await sink.effects()] == [EFFECT_TASK]
