"""The per-model slots: one limit per (base_url, model) in the process, honoured across event
loops and threads, never leaked by a cancelled waiter, and declared consistently."""

from __future__ import annotations

import asyncio
import gc
import threading
import uuid

import pytest

from ledgerflow.llm import ModelLimitConflictError, model_limits
from ledgerflow.llm.model_limits import declare_limit, declared_limit, model_slot


class Owner:
    """Stands for an OpenAIChat instance: a declaration lives as long as its owner."""


def _endpoint() -> tuple[str, str]:
    return f"http://limits-{uuid.uuid4().hex[:8]}.test/v1", "m"


def _in_use(base_url: str, model: str) -> int:
    return model_limits._registry[(base_url, model)]._in_use


def test_the_limit_holds_across_event_loops_in_different_threads() -> None:
    base_url, model = _endpoint()
    owner = Owner()
    declare_limit(base_url, model, 2, owner=owner)
    lock = threading.Lock()
    holding = [0]
    most = [0]
    finished = [0]

    async def call() -> None:
        async with model_slot(base_url, model):
            with lock:
                holding[0] += 1
                most[0] = max(most[0], holding[0])
            await asyncio.sleep(0.002)
            with lock:
                holding[0] -= 1
                finished[0] += 1

    async def many() -> None:
        await asyncio.gather(*(call() for _ in range(15)))

    threads = [threading.Thread(target=asyncio.run, args=(many(),)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert finished[0] == 45
    assert most[0] == 2
    assert _in_use(base_url, model) == 0


async def test_a_waiter_cancelled_while_waiting_or_just_handed_a_slot_leaks_none() -> None:
    base_url, model = _endpoint()
    owner = Owner()
    declare_limit(base_url, model, 1, owner=owner)
    entered: list[str] = []
    release_first = asyncio.Event()

    async def call(name: str, hold: asyncio.Event | None = None) -> None:
        async with model_slot(base_url, model):
            entered.append(name)
            if hold is not None:
                await hold.wait()

    first = asyncio.create_task(call("first", release_first))
    await asyncio.sleep(0)
    waiting = asyncio.create_task(call("cancelled-waiting"))
    handed = asyncio.create_task(call("cancelled-when-handed"))
    await asyncio.sleep(0)
    waiting.cancel()
    await asyncio.sleep(0)
    # "first" releases, handing the slot to "handed", which is cancelled before it runs.
    release_first.set()
    await first
    handed.cancel()
    last = asyncio.create_task(call("last"))
    await asyncio.gather(waiting, handed, return_exceptions=True)
    await asyncio.wait_for(last, timeout=10)  # a leaked slot would block it for ever
    assert entered == ["first", "last"]
    assert _in_use(base_url, model) == 0


def test_two_declarations_of_one_endpoints_limit_must_agree() -> None:
    base_url, model = _endpoint()
    first, same = Owner(), Owner()
    declare_limit(base_url, model, 3, owner=first)
    declare_limit(base_url, model, 3, owner=same)
    with pytest.raises(ModelLimitConflictError, match="already has max_concurrent=3") as info:
        declare_limit(base_url, model, 5, owner=Owner())
    assert (info.value.declared, info.value.asked) == (3, 5)
    assert declared_limit(base_url + "/", model) == 3  # a trailing slash is the same endpoint
    del first, same
    gc.collect()
    # Every declarer is gone: a new configuration may choose again.
    assert declared_limit(base_url, model) is None
    again = Owner()
    declare_limit(base_url, model, 5, owner=again)
    assert declared_limit(base_url, model) == 5


def test_other_models_and_endpoints_have_their_own_limits() -> None:
    base_url, model = _endpoint()
    owner = Owner()
    declare_limit(base_url, model, 1, owner=owner)
    declare_limit(base_url, "other-model", 4, owner=owner)
    declare_limit(base_url.replace("limits", "elsewhere"), model, 2, owner=owner)
    assert declared_limit(base_url, model) == 1
    assert declared_limit(base_url, "other-model") == 4


@pytest.mark.parametrize("limit", [0, -1, True, 2.5], ids=["zero", "negative", "bool", "float"])
def test_a_limit_that_is_not_a_positive_whole_number_is_refused(limit: object) -> None:
    with pytest.raises(ValueError, match="max_concurrent must be a whole number >= 1"):
        declare_limit("http://x.test/v1", "m", limit, owner=Owner())  # type: ignore[arg-type]
