"""One ledgerflow worker process of the pool benchmark.

``python -m benchmarks.pool_worker --db URL --workload noop --concurrency 8``
opens the store, prints ``{"ready": true}``, waits for a line on stdin (the
parent's "go", once every worker is ready), runs a
:class:`ledgerflow.machines.Worker` until nothing is left to claim
(``until_idle``), and prints its stats as one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import asdict

from benchmarks.pool_workflows import workflow_named
from ledgerflow.eventstore import open_store
from ledgerflow.machines import Worker


async def serve(db: str, workload: str, concurrency: int, poll_s: float) -> dict[str, object]:
    """Wait for "go", then drive runs until none is left; what this worker did."""
    wf = workflow_named(workload)
    async with open_store(db, create=False) as store:
        worker = Worker(store, [wf], concurrency=concurrency, poll_s=poll_s)
        print(json.dumps({"ready": True}), flush=True)
        await asyncio.to_thread(sys.stdin.readline)  # "go"
        started, cpu = time.time(), time.process_time()
        stats = await worker.run(until_idle=True)
        return {"worker_id": worker.worker_id, "started": started, "ended": time.time(),
                "cpu_s": time.process_time() - cpu, **asdict(stats)}


def main() -> None:
    parser = argparse.ArgumentParser(description="One ledgerflow worker of the pool benchmark.")
    parser.add_argument("--db", required=True, help="store url or SQLite path")
    parser.add_argument("--workload", default="noop")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--poll", type=float, default=1.0, help="the worker's poll_s")
    args = parser.parse_args()
    out = asyncio.run(serve(args.db, args.workload, args.concurrency, args.poll))
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
