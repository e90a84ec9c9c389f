"""Pool-wide slots: a counting semaphore in the store, shared by every worker.

An agent's ``max_concurrent`` is enforced where attempts are claimed (see
:mod:`ledgerflow.machines.task_exchange`); a limit *inside* an agent, such
as a model endpoint's ``max_concurrent`` in ``OpenAIChat``, holds a slot
around each call instead. A slot is a row in the store with an expiry: a
worker that dies mid-call frees its slots once they lapse, and a live one
renews them while it holds them.

Example::

    slots = PoolSlots(store, owner="w1", ttl_s=30)
    async with slots.hold("model:https://api.openai.com/v1:gpt-4.1-mini", 3):
        ...   # at most 3 such calls in flight across the whole pool
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

from ledgerflow.eventstore import EventStore

__all__ = ["PoolSlots"]

#: Waiting for a slot: quick retries first, then calm polling.
_FIRST_WAIT_S = 0.005
_MAX_WAIT_S = 0.2


class PoolSlots:
    """Slots of ``store`` held by one worker (``owner``), renewed every ``ttl_s / 3``."""

    def __init__(self, store: EventStore, *, owner: str, ttl_s: float) -> None:
        self.store = store
        self.owner = owner
        self.ttl_s = ttl_s

    @contextlib.asynccontextmanager
    async def hold(self, key: str, limit: int) -> AsyncIterator[None]:
        """Wait for one of ``limit`` slots named ``key``; hold it for the block."""
        holder = f"{self.owner}:{uuid.uuid4().hex[:12]}"
        delay = _FIRST_WAIT_S
        while not await self.store.acquire_slot(key, limit, holder, self.ttl_s):
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_WAIT_S)
        renewing = asyncio.create_task(self._renew(key, limit, holder))
        try:
            yield
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
            await self.store.release_slot(key, holder)

    async def _renew(self, key: str, limit: int, holder: str) -> None:
        while True:
            await asyncio.sleep(self.ttl_s / 3)
            # Acquiring again renews a slot this holder has.
            await self.store.acquire_slot(key, limit, holder, self.ttl_s)
