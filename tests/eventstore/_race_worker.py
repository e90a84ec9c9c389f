"""A child process for the multi-process append race (imported by spawn, so top-level)."""

from __future__ import annotations

import asyncio
from multiprocessing.queues import Queue
from typing import Any

import msgspec

from ledgerflow.eventstore import ConcurrencyError, NewEvent, open_store


async def _append_many(path: str, run_id: str, worker: str, count: int) -> list[Any]:
    acknowledged: list[Any] = []
    async with open_store(path, busy_timeout_ms=30_000) as store:
        n = 0
        while n < count:
            seq = await store.last_seq(run_id)
            data = msgspec.json.encode({"worker": worker, "n": n})
            try:
                envs = await store.append(run_id, [NewEvent("Ticked", data)] * 2, seq)
            except ConcurrencyError:
                continue
            acknowledged.extend((env.seq, env.hash, worker, n) for env in envs)
            n += 1
    return acknowledged


def append_many(path: str, run_id: str, worker: str, count: int, out: Queue[Any]) -> None:
    """Append ``count`` two-event batches, retrying on conflicts; report what was acknowledged.

    A failure is reported too, so the test fails at once with the child's error
    instead of waiting for a result that never comes.
    """
    try:
        out.put(asyncio.run(_append_many(path, run_id, worker, count)))
    except BaseException as exc:
        out.put(f"worker {worker} failed: {type(exc).__name__}: {exc}")
        raise
