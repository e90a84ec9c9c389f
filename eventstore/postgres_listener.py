"""The LISTEN side of a PostgreSQL store's wake-ups: one dedicated connection, opened lazily.

A pooled connection cannot listen (it goes back to the pool between calls),
so :class:`WorkListener` keeps its own, opened at the first wait and again
after it was lost, and closed with the store.

Example::

    listener = WorkListener(lambda: asyncpg.connect(dsn), "ledgerflow_work_ledgerflow")
    woken = await listener.wait(5.0)   # True when notified, False on timeout
    await listener.close()
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["WorkListener"]


class WorkListener:
    """Waits for NOTIFY on ``channel``; a notification between two waits is kept for the next."""

    def __init__(self, connect: Callable[[], Awaitable[Any]], channel: str) -> None:
        """Remember how to connect; nothing is opened until the first :meth:`wait`."""
        self.channel = channel
        self._connect = connect
        self._conn: Any = None
        self._lock = asyncio.Lock()
        self._woken = asyncio.Event()

    async def wait(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for a notification; True when one came (it is consumed)."""
        await self._listening()
        try:
            await asyncio.wait_for(self._woken.wait(), timeout_s)
        except TimeoutError:
            return False
        self._woken.clear()
        return True

    async def _listening(self) -> None:
        async with self._lock:
            if self._conn is not None and not self._conn.is_closed():
                return
            conn = await self._connect()
            try:
                await conn.add_listener(self.channel, self._on_notify)
            except BaseException:
                await conn.close()
                raise
            self._conn = conn

    def _on_notify(self, *_: object) -> None:
        self._woken.set()

    async def close(self) -> None:
        """Close the listening connection, if one was opened; idempotent."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # a lost connection has nothing to close
                await conn.close()
