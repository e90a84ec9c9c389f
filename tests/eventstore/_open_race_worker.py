"""A child process for the concurrent-first-open race (imported by spawn, so top-level)."""

from __future__ import annotations

import asyncio
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

from ledgerflow.eventstore import open_store


async def _open_each(folder: str, rounds: int, barrier: Barrier) -> list[str]:
    failures = []
    for i in range(rounds):
        # Every process opens the same fresh file at the same moment.
        await asyncio.to_thread(barrier.wait)
        try:
            async with open_store(Path(folder) / f"fresh-{i}.db", busy_timeout_ms=30_000):
                pass
        except Exception as exc:
            failures.append(f"round {i}: {type(exc).__name__}: {exc}")
    return failures


def open_fresh_files(folder: str, rounds: int, barrier: Barrier, out: Queue[Any]) -> None:
    """Open ``rounds`` fresh store files in step with the other processes; report failures."""
    try:
        out.put(asyncio.run(_open_each(folder, rounds, barrier)))
    except BaseException as exc:
        out.put([f"worker failed: {type(exc).__name__}: {exc}"])
        raise
