"""An idle worker on PostgreSQL is woken by a submit (LISTEN/NOTIFY), not by its poll.

The worker polls every 600 s; the test gives the run 60 s. Only the
notification can make the run complete in time: no wall-clock assertion,
the poll period is simply out of reach.
"""

from __future__ import annotations

from pathlib import Path

from pool_harness import PgPlace, WorkerProcess, wait_for
from pool_sink import Sink
from pool_workflows import PoolGoal, wf

from ledgerflow.eventstore import EventStore, open_store
from ledgerflow.eventstore.pool import notify_channel
from ledgerflow.machines import Orchestrator

#: Far beyond the test's timeouts: a run that completes was not found by polling.
POLL_S = "600"


async def test_idle_worker_is_woken_by_a_submit_at_once_on_postgres(
    pg: PgPlace, tmp_path: Path, spawned: list[WorkerProcess],
) -> None:
    sink = Sink(pg.dsn, pg.sink_schema)
    await sink.create()
    goal = PoolGoal(sink=sink.location, sink_schema=sink.schema, nap_s=0.0)
    worker = await WorkerProcess.start(pg.url, tmp_path / "idle", "--poll", POLL_S)
    spawned.append(worker)
    async with open_store(pg.url) as store:
        await wait_for(lambda: _listening(pg, store), "the worker to LISTEN", timeout_s=60)
        run_id = await Orchestrator(store).submit(wf, goal)

        async def completed() -> bool:
            summary = await store.run(run_id)
            return summary is not None and summary.status == "completed"

        await wait_for(completed, "the submitted run to complete (only a NOTIFY can wake it)",
                       timeout_s=60)
    stats = await worker.terminate()
    assert stats["finished"] == 1


async def _listening(pg: PgPlace, store: EventStore) -> bool:
    """Whether a connection LISTENs on the store's channel: the worker went idle waiting."""
    import asyncpg  # noqa: PLC0415 - only PostgreSQL tests need it

    assert await store.runs() == []  # nothing queued: its first claim found nothing
    schema = pg.url.rsplit("schema=", 1)[1]
    conn = await asyncpg.connect(pg.dsn)
    try:
        listeners = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND query = $1", f'LISTEN "{notify_channel(schema)}"')
    finally:
        await conn.close()
    return bool(listeners)
