"""A worker process for the pool tests: a ``Worker`` on the store URL given, until SIGTERM.

Run as ``python pool_worker_child.py URL [--concurrency N] [--lease-ttl S]
[--poll S] [--drain S] [--task-concurrency N] [--workflow chaos|fanout|limited]``.
It prints its worker id alone on the first line of
stdout as soon as it has one, and a JSON object of its ``WorkerStats`` on the
last line when it exits; warnings (a lost run, a lost lease) go to stderr.
SIGTERM drains, a second SIGTERM stops at once (``Worker.stop_on_signals``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import sys

from pool_fanout_workflows import fanout, limited
from pool_workflows import wf

from ledgerflow.eventstore import open_store
from ledgerflow.machines import Worker


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--concurrency", type=int, default=3)
    parser.add_argument("--lease-ttl", type=float, default=1.5)
    parser.add_argument("--poll", type=float, default=0.2)
    parser.add_argument("--drain", type=float, default=30.0)
    parser.add_argument("--task-concurrency", type=int, default=16)
    parser.add_argument("--workflow", choices=["chaos", "fanout", "limited"], default="chaos")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    async with open_store(args.url) as store:
        served = {"chaos": wf, "fanout": fanout, "limited": limited}[args.workflow]
        worker = Worker(store, [served], concurrency=args.concurrency,
                        lease_ttl_s=args.lease_ttl, poll_s=args.poll, drain_s=args.drain,
                        task_concurrency=args.task_concurrency)
        print(worker.worker_id, flush=True)
        worker.stop_on_signals()
        stats = await worker.run()
    print(json.dumps(dataclasses.asdict(stats)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
