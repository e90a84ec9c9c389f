"""Write the log-format-1 fixture of tests/replay/test_replay_schema_evolution.py.

Kept for the record: the fixture is a committed file and the tests never run this.
It was run once with the code of log format 1 (ledgerflow at commit 7338ceb, before
format 2 renamed ``TimerFired`` to ``RetryDue`` and gave ``OutputReceived`` its
``duration_ms``), from this folder::

    cd tests/replay && python make_evolution_fixtures.py

Run with today's code it would write format 2 and no longer be the fixture. It
writes ``fixtures/evolution/format1.db`` (a SQLite store) with two runs of the
travel demo (``ledgerflow.examples.travel:wf``), ids in ``runs.json``:

- ``completed``: ran to the end; its log holds the format-1 ``TimerFired``
  (the flight and hotel searches are retried) and ``OutputReceived`` events
  without ``duration_ms``;
- ``interrupted``: SIGKILLed in a child process right after the append that made
  ``TaskDispatched(book)`` durable: no outcome recorded, the dead process's
  lease still held. ``resume`` must book it exactly once.

and ``format1.jsonl``, the same rows (data, hashes) to read in a review.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec

from ledgerflow import Orchestrator, open_store
from ledgerflow.examples import travel

HERE = Path(__file__).resolve().parent
OUT = HERE / "fixtures" / "evolution"
DB = OUT / "format1.db"
GOAL = {"destination": "Lisbon", "passengers": 2}
RUNS = {"completed": "evo-completed", "interrupted": "evo-interrupted"}


class CrashingStore:
    """Kills the process at the first append that made ``TaskDispatched(kill_task)`` durable."""

    def __init__(self, inner: Any, kill_task: str) -> None:
        self._inner = inner
        self._kill_task = kill_task

    async def append(self, run_id: str, events: Any, *args: Any, **kwargs: Any) -> Any:
        result = await self._inner.append(run_id, events, *args, **kwargs)
        for e in events:
            if e.type == "TaskDispatched" and \
                    msgspec.json.decode(e.data).get("task_id") == self._kill_task:
                os.kill(os.getpid(), signal.SIGKILL)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def crash_child(db: str, run_id: str) -> None:
    async with open_store(db) as store:
        await Orchestrator(CrashingStore(store, "book")).start(travel.wf, GOAL, run_id=run_id)
    print("not killed", flush=True)


async def generate() -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{DB}{suffix}").unlink(missing_ok=True)  # noqa: ASYNC240 - a one-off script
    async with open_store(DB) as store:
        done = await Orchestrator(store).start(travel.wf, GOAL, run_id=RUNS["completed"])
    assert done.status == "completed", done.reason
    child = subprocess.run(  # noqa: ASYNC221 - the child must die before the dump
        [sys.executable, __file__, "--crash-child", str(DB), RUNS["interrupted"]],
        cwd=HERE, capture_output=True, text=True, timeout=120, check=False)
    assert child.returncode == -signal.SIGKILL, (child.returncode, child.stdout, child.stderr)
    async with open_store(DB):
        pass  # a clean close checkpoints the WAL the killed child left


def dump() -> None:
    conn = sqlite3.connect(DB)
    rows = conn.execute(
        "SELECT run_id, seq, type, at, data, prev_hash, hash FROM events ORDER BY run_id, seq"
    ).fetchall()
    conn.close()
    types = {r[2] for r in rows}
    assert "TimerFired" in types, types  # really format 1
    assert "RetryDue" not in types, types
    with (OUT / "format1.jsonl").open("w") as out:
        for run_id, seq, type_, at, data, prev, hash_ in rows:
            out.write(json.dumps({"run_id": run_id, "seq": seq, "type": type_, "at": at,
                                  "data": data, "prev_hash": prev, "hash": hash_}) + "\n")
    (OUT / "runs.json").write_text(json.dumps(RUNS, indent=2) + "\n")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--crash-child"]:
        asyncio.run(crash_child(sys.argv[2], sys.argv[3]))
    else:
        asyncio.run(generate())
        dump()
