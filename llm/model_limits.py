"""One concurrency limit per model endpoint, shared by every run in the process.

A provider's rate limit is per model and account, not per run: fifty runs
each allowed "3 at once" would send 150. So the limit is keyed by
``(base_url, model)`` and held here, process-wide, whichever ``OpenAIChat``
instance declared it; instances that declare none share the declared one.

Runs may live on different event loops (one per test, one per worker thread),
so the slots are not an ``asyncio.Semaphore`` (which binds to the first loop
that waits on it): a thread lock guards the count, and a slot freed on one
loop is handed to a waiter on another with ``call_soon_threadsafe``.

Example::

    declare_limit("https://api.openai.com/v1", "gpt-4.1-mini", 3, owner=chat)
    async with model_slot("https://api.openai.com/v1", "gpt-4.1-mini"):
        ...  # at most 3 requests to that model in flight in this process
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ledgerflow.errors import LedgerflowError

__all__ = ["ModelLimitConflictError", "declare_limit", "declared_limit", "model_slot"]

Key = tuple[str, str]


class ModelLimitConflictError(LedgerflowError, ValueError):
    """Two declarations of one model endpoint's concurrency limit disagree."""

    def __init__(self, *, base_url: str, model: str, declared: int, asked: int) -> None:
        self.base_url = base_url
        self.model = model
        self.declared = declared
        self.asked = asked
        super().__init__(
            f"Model '{model}' at {base_url} already has max_concurrent={declared} in this "
            f"process, so another declaration of max_concurrent={asked} is refused: the limit "
            "is shared by every run and instance; pass the same value, or None to share it."
        )


class _Slots:
    """A counting semaphore usable from any event loop (and any thread)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.declarations = 0
        self._lock = threading.Lock()
        self._in_use = 0
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._in_use < self.limit and not self._waiters:
                self._in_use += 1
                return
            waiter = (loop, loop.create_future())
            self._waiters.append(waiter)
        try:
            await waiter[1]
        except BaseException:
            with self._lock:
                still_waiting = waiter in self._waiters
                if still_waiting:
                    self._waiters.remove(waiter)
            if not still_waiting:
                self.release()  # a slot was handed over just as we were cancelled: pass it on
            raise

    def release(self) -> None:
        with self._lock:
            while self._waiters:
                loop, future = self._waiters.popleft()
                try:
                    # The slot now belongs to that waiter (the count stays as it is).
                    loop.call_soon_threadsafe(_wake, future)
                except RuntimeError:
                    continue  # its loop is closed: that waiter is gone
                return
            self._in_use -= 1


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


_registry: dict[Key, _Slots] = {}
_registry_lock = threading.Lock()


def _key(base_url: str, model: str) -> Key:
    return (base_url.rstrip("/"), model)


def _undeclare(key: Key, slots: _Slots) -> None:
    with _registry_lock:
        slots.declarations -= 1
        if slots.declarations <= 0 and _registry.get(key) is slots:
            del _registry[key]


def declare_limit(base_url: str, model: str, limit: int, *, owner: object) -> None:
    """Declare that at most ``limit`` requests to ``model`` at ``base_url`` run at once in
    this process, for as long as ``owner`` lives.

    Raises :class:`ModelLimitConflictError` if a live declaration names another limit.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"max_concurrent must be a whole number >= 1, or None for no limit "
                         f"(got {limit!r}).")
    key = _key(base_url, model)
    with _registry_lock:
        slots = _registry.get(key)
        if slots is None:
            slots = _registry[key] = _Slots(limit)
        elif slots.limit != limit:
            raise ModelLimitConflictError(base_url=key[0], model=model,
                                          declared=slots.limit, asked=limit)
        slots.declarations += 1
    # The declaration ends with its owner, so a later configuration may choose again.
    weakref.finalize(owner, _undeclare, key, slots)


def declared_limit(base_url: str, model: str) -> int | None:
    """The limit in force for ``model`` at ``base_url`` (``None``: none declared)."""
    with _registry_lock:
        slots = _registry.get(_key(base_url, model))
    return None if slots is None else slots.limit


@asynccontextmanager
async def model_slot(base_url: str, model: str) -> AsyncIterator[None]:
    """Hold one of the model endpoint's slots (no wait when no limit is declared)."""
    with _registry_lock:
        slots = _registry.get(_key(base_url, model))
    if slots is None:
        yield
        return
    await slots.acquire()
    try:
        yield
    finally:
        slots.release()
