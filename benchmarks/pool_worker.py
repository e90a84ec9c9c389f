"""One ledgerflow worker process of the pool benchmark.

``python -m benchmarks.pool_worker --db URL --workload noop --concurrency 8``
opens the store, prints ``{"ready": true}``, waits for a line on stdin (the
parent's "go", once every worker is ready), runs a
:class:`ledgerflow.machines.Worker` until every run of the store is over, and prints
its stats as one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import asdict

from benchmarks.pool_workflows import workflow_named
from ledgerflow.eventstore import EventStore, open_store
from ledgerflow.machines import Worker


async def serve(db: str, workload: str, concurrency: int, poll_s: float, *, spread: bool,
                task_concurrency: int) -> dict[str, object]:
    """Wait for "go", then drive runs until none is left; what this worker did."""
    wf = workflow_named(workload)
    async with open_store(db, create=False) as store:
        worker = Worker(store, [wf], concurrency=concurrency, poll_s=poll_s,
                        spread_tasks=spread, task_concurrency=task_concurrency)
        print(json.dumps({"ready": True}), flush=True)
        await asyncio.to_thread(sys.stdin.readline)  # "go"
        started, cpu = time.time(), time.process_time()
        # Until every run is over, not until this worker finds nothing to claim: in a
        # fan-out the other workers' work appears only once the owner has planned.
        serving = asyncio.create_task(worker.run())
        while not serving.done() and not await _all_over(store):
            await asyncio.wait({serving}, timeout=0.02)
        worker.stop()
        stats = await serving
        return {"worker_id": worker.worker_id, "started": started, "ended": time.time(),
                "cpu_s": time.process_time() - cpu, **asdict(stats)}


async def _all_over(store: EventStore) -> bool:
    return all(r.status in ("completed", "failed", "cancelled")
               for r in await store.runs(limit=-1))


def main() -> None:
    parser = argparse.ArgumentParser(description="One ledgerflow worker of the pool benchmark.")
    parser.add_argument("--db", required=True, help="store url or SQLite path")
    parser.add_argument("--workload", default="noop")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--poll", type=float, default=1.0, help="the worker's poll_s")
    parser.add_argument("--spread", action=argparse.BooleanOptionalAction, default=True,
                        help="offer attempts to the pool (--no-spread: run them in the owner)")
    parser.add_argument("--task-concurrency", type=int, default=32)
    args = parser.parse_args()
    out = asyncio.run(serve(args.db, args.workload, args.concurrency, args.poll,
                            spread=args.spread, task_concurrency=args.task_concurrency))
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
