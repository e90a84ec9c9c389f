"""A child process of the SIGSTOP fencing trials: the first owner (A) or the taker-over (B).

Run as ``python rel_sigstop_child.py SPEC.json``. The spec names the store
(``url``), the ``run_id``, the ``goal``, the ``role`` and the side-channel
file (``acks``: every append tried, acknowledged or refused, see
:mod:`rel_acks`), and the lease ttl.

- ``A`` starts the run with a short lease, its agent thinking ``think_s``
  mid-call (where the trial pauses it);
- ``B`` waits for the ``go`` file (so its interpreter starts while A works),
  then resumes the run, waiting for A's lease to lapse;
- ``worker``: a :class:`~ledgerflow.machines.Worker` until SIGTERM, which
  takes over every run whose lease lapsed; it prints its worker id (its
  lease owner) alone on the first line.

A and B print one JSON line last: pid, lease owner and the outcome (the
run's status, or the name of the error that ended the drive).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, cast

import rel_sigstop_workflow
from rel_acks import AckingStore
from rel_harness import wait_for
from rel_sigstop_workflow import BOOK_TASK, SigGoal, wf

from ledgerflow.eventstore import EventStore, open_store
from ledgerflow.machines import Orchestrator, Worker


async def _go(path: Path) -> None:
    async def given() -> bool:
        return await asyncio.to_thread(path.exists)

    await wait_for(given, f"the go file {path}", timeout_s=300, pause_s=0.01)


async def serve(store: EventStore, ttl_s: float) -> None:
    worker = Worker(store, [wf], concurrency=16, lease_ttl_s=ttl_s, poll_s=0.05, drain_s=10)
    print(worker.worker_id, flush=True)
    worker.stop_on_signals()
    await worker.run()


async def main(spec: dict[str, Any]) -> int:
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    role = spec["role"]
    async with open_store(spec["url"]) as inner:
        store = cast(EventStore, AckingStore(inner, Path(spec["acks"]),
                                             effect_tasks=frozenset({BOOK_TASK})))
        if role == "worker":
            await serve(store, spec["ttl_s"])
            return 0
        goal = SigGoal.model_validate(spec["goal"])
        orch = Orchestrator(store, lease_ttl_s=spec["ttl_s"], lease_wait_s=60.0)
        try:
            if role == "A":
                rel_sigstop_workflow.THINK_S = spec["think_s"]
                outcome = (await orch.start(wf, goal, run_id=spec["run_id"])).status
            else:
                await _go(Path(spec["go"]))
                outcome = (await orch.resume(spec["run_id"], wf)).status
        except Exception as exc:  # the paused owner is meant to fail: report how
            outcome = type(exc).__name__
            print(f"{role} ended with {exc!r}", file=sys.stderr)
    print(json.dumps({"role": role, "pid": os.getpid(), "owner": orch.owner,
                      "outcome": outcome}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(json.loads(Path(sys.argv[1]).read_text()))))
