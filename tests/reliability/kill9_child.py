"""A child process for the SQLite kill -9 story: drives its runs, until done or killed.

Run as ``python kill9_child.py SPEC.json``; the spec names the store (``db``),
the sink, the side-channel folder (``ack_dir``), the goal's ``fan`` and the
``runs`` to drive, all at once: a run not in the store is started with
``Orchestrator.start(run_id=...)``, one left unfinished by a killed process is
resumed with ``Orchestrator.resume``, a finished one is left alone. It may be
armed to SIGKILL itself (``LEDGERFLOW_KILL_AT``, see ``rel_killpoints.py``).
On a clean exit its last stdout line is a JSON object ``{run_id: status}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, cast

from rel_acks import AckingStore
from rel_workflow import EFFECT_TASKS, RelGoal, wf

from ledgerflow.eventstore import EventStore, open_store
from ledgerflow.machines import Orchestrator

TERMINAL = frozenset({"completed", "failed", "cancelled"})


async def drive(orch: Orchestrator, store: EventStore, run_id: str, goal: RelGoal) -> str:
    summary = await store.run(run_id)
    if summary is None:
        return (await orch.start(wf, goal, run_id=run_id)).status
    if summary.status in TERMINAL:
        return summary.status
    return (await orch.resume(run_id, wf)).status


async def main(spec: dict[str, Any]) -> int:
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    goal = RelGoal(sink=spec["sink"], fan=spec["fan"])
    async with open_store(spec["db"]) as inner:
        store = cast(EventStore, AckingStore(
            inner, Path(spec["ack_dir"]) / f"{os.getpid()}.jsonl", effect_tasks=EFFECT_TASKS))
        orch = Orchestrator(store)
        statuses = await asyncio.gather(*(drive(orch, store, r, goal) for r in spec["runs"]))
    print(json.dumps(dict(zip(spec["runs"], statuses, strict=True))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(json.loads(Path(sys.argv[1]).read_text()))))
