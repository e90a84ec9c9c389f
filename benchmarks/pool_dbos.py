"""The pool benchmark's DBOS side: a queue on PostgreSQL and one DBOS app per worker process.

A run is one ``@DBOS.workflow``: a planner step, then K steps started together
(``asyncio.gather``), each checkpointed in the system database, exactly as a
ledgerflow run's K independent tasks all run in the worker holding the run.
Workflows are enqueued on ``bench``, registered with ``worker_concurrency`` =
the ledgerflow worker's ``concurrency`` (per process, no global cap), so each
process dequeues as many as it has room for at each poll of the queue.

Two entry points (``python -m benchmarks.pool_dbos setup|worker ...``):

- ``setup``: launch DBOS listening to no queue, register the queue, enqueue
  N workflows, destroy;
- ``worker``: configure DBOS (own executor id), print ``ready``, wait for
  ``go`` on stdin, launch (the queue thread starts dequeuing), wait for
  ``stop`` on stdin, destroy, print what it executed as one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from dbos import DBOS

from benchmarks.pool_workflows import CPU_S, SLEEP_S

QUEUE = "bench"
#: Workflows this process executed (its share of the pool's work).
executed = 0


@DBOS.step()
async def plan(k: int) -> list[int]:
    return list(range(k))


@DBOS.step()
async def work(workload: str, x: int) -> int:
    if workload == "sleep":
        await asyncio.sleep(SLEEP_S)
    elif workload == "cpu":
        until = time.process_time() + CPU_S
        while time.process_time() < until:  # busy on purpose, as the ledgerflow agent
            pass
    return x


@DBOS.workflow()
async def pool_run(workload: str, k: int) -> int:
    global executed  # noqa: PLW0603 - a per-process counter the worker reports
    items = await plan(k)
    done = await asyncio.gather(*(work(workload, i) for i in items))
    executed += 1
    return len(done)


def configure(url: str, schema: str, executor_id: str) -> None:
    """One DBOS app on the system database ``url``, its tables in ``schema``."""
    DBOS(config={"name": "poolbench", "system_database_url": url,
                 "dbos_system_schema": schema, "executor_id": executor_id,
                 "application_version": "poolbench", "run_admin_server": False,
                 "log_level": "WARNING"})  # type: ignore[typeddict-unknown-key]


def setup(url: str, schema: str, *, n: int, k: int, workload: str, concurrency: int,
          poll_s: float) -> None:
    """Create the system tables, register the queue and enqueue ``n`` runs (nothing dequeued)."""
    configure(url, schema, "setup")
    DBOS.listen_queues([])  # this process only enqueues
    DBOS.launch()
    try:
        queue = DBOS.register_queue(QUEUE, worker_concurrency=concurrency,
                                    polling_interval_sec=poll_s)
        for _ in range(n):
            queue.enqueue(pool_run, workload, k)
    finally:
        DBOS.destroy()


def worker(url: str, schema: str, executor_id: str) -> None:
    """One worker process: launch on ``go``, destroy on ``stop``, report its share."""
    configure(url, schema, executor_id)
    DBOS.listen_queues([QUEUE])
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.readline()  # "go"
    started, cpu = time.time(), time.process_time()
    DBOS.launch()
    launched = time.time()
    sys.stdin.readline()  # "stop": the parent saw every run finish
    cpu = time.process_time() - cpu  # every thread of the process: loop, queue, pool
    DBOS.destroy()
    out: dict[str, Any] = {"executor_id": executor_id, "executed": executed,
                           "started": started, "launch_s": launched - started,
                           "cpu_s": cpu}
    print(json.dumps(out), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="The pool benchmark's DBOS processes.")
    parser.add_argument("role", choices=["setup", "worker"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--executor-id", default="w0")
    parser.add_argument("--n", type=int, default=0)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--workload", default="noop")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--poll", type=float, default=0.05)
    args = parser.parse_args()
    if args.role == "setup":
        setup(args.url, args.schema, n=args.n, k=args.k, workload=args.workload,
              concurrency=args.concurrency, poll_s=args.poll)
    else:
        worker(args.url, args.schema, args.executor_id)


if __name__ == "__main__":
    main()
