"""A machine suspended past a lease must not wake believing the lease fresh (issue 12, scenario 7).

The event loop's clock (``CLOCK_MONOTONIC``) stands still while the whole
machine sleeps (a laptop lid, a suspended VM); the store's clock, which
judges the lease's expiry, does not. The side-effect guard judges on
``lease_clock`` (``CLOCK_BOOTTIME``), which counts the sleep.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from ledgerflow.eventstore import EventStore, LeaseLostError
from ledgerflow.machines.lease_guard import lease_clock
from ledgerflow.machines.leasing import hold_lease

pytestmark = pytest.mark.skipif(
    not hasattr(time, "CLOCK_BOOTTIME"), reason="a clock counting suspends exists on Linux")


def sleep_the_machine(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """What a suspend looks like from inside: the boot clock jumped, monotonic did not."""
    real = time.clock_gettime

    def after_the_sleep(clock: int) -> float:
        jump = seconds if clock == time.CLOCK_BOOTTIME else 0.0
        return real(clock) + jump

    monkeypatch.setattr(time, "clock_gettime", after_the_sleep)


async def test_side_effect_refused_after_the_machine_slept_past_its_lease(
    store: EventStore, monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with hold_lease(store, "r1", "me", ttl_s=30, wait_s=0) as held:
        await held.confirm_for_side_effect()  # fresh: no renewal needed, nothing raised
        sleep_the_machine(monkeypatch, 60)
        # Meanwhile the lease lapsed in the store and another process took the run.
        await store.release_lease("r1", "me")
        assert await store.take_lease("r1", "other", 30) is not None
        # The event loop saw well under a second pass; the guard must not trust that.
        with pytest.raises(LeaseLostError):
            await held.confirm_for_side_effect()


async def test_a_lease_renewed_after_the_sleep_is_trusted_again(
    store: EventStore, monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[Any] = []
    async with hold_lease(store, "r1", "me", ttl_s=30, wait_s=0) as held:
        sleep_the_machine(monkeypatch, 60)
        await held.confirm_for_side_effect()  # stale: renewed first (still ours), then fine
        assert held.held_until >= lease_clock() + 29
        real_take = store.take_lease

        async def counting_take(*args: Any, **kwargs: Any) -> int | None:
            calls.append(args)
            return await real_take(*args, **kwargs)

        monkeypatch.setattr(store, "take_lease", counting_take)
        await held.confirm_for_side_effect()
    assert calls == []  # the renewal made the lease certainly held: no second round trip
