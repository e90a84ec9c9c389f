"""A child process for the multi-process claim race (imported by spawn, so top-level)."""

from __future__ import annotations

import asyncio
from multiprocessing.queues import Queue
from typing import Any

from ledgerflow.eventstore import open_store


async def _claim_all(url: str, owner: str) -> list[str]:
    claimed: list[str] = []
    async with open_store(url, busy_timeout_ms=30_000) as store:
        while (claim := await store.claim_run(owner, 600, statuses=["queued"])) is not None:
            claimed.append(claim.run_id)
    return claimed


def claim_all(url: str, owner: str, out: Queue[Any]) -> None:
    """Claim queued runs (600 s leases, never released) until none is free; report their ids."""
    try:
        out.put(asyncio.run(_claim_all(url, owner)))
    except BaseException as exc:
        out.put(f"claimer {owner} failed: {type(exc).__name__}: {exc}")
        raise
