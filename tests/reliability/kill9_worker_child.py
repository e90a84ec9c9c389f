"""A worker process for the PostgreSQL kill -9 story: a ``Worker`` until SIGTERM, or killed.

Run as ``python kill9_worker_child.py URL ACK_DIR [--lease-ttl S]
[--concurrency N] [--task-concurrency N]``. Its store is wrapped in the side
channel's :class:`~rel_acks.AckingStore`, and it may be armed to SIGKILL
itself (``LEDGERFLOW_KILL_AT``, see ``rel_killpoints.py``). It prints its
worker id alone on the first stdout line, and its ``WorkerStats`` as JSON on
the last when it exits; SIGTERM drains (``Worker.stop_on_signals``).
Adapted from ``tests/pool/pool_worker_child.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path
from typing import cast

from rel_acks import AckingStore
from rel_workflow import EFFECT_TASKS, wf

from ledgerflow.eventstore import EventStore, open_store
from ledgerflow.machines import Worker


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("ack_dir")
    parser.add_argument("--lease-ttl", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--task-concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    async with open_store(args.url) as inner:
        store = cast(EventStore, AckingStore(
            inner, Path(args.ack_dir) / f"{os.getpid()}.jsonl", effect_tasks=EFFECT_TASKS))
        worker = Worker(store, [wf], concurrency=args.concurrency, lease_ttl_s=args.lease_ttl,
                        poll_s=0.1, drain_s=20, task_concurrency=args.task_concurrency)
        print(worker.worker_id, flush=True)
        worker.stop_on_signals()
        stats = await worker.run()
    print(json.dumps(dataclasses.asdict(stats)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
