"""A fence never comes back: once a run's lease passed to another worker, the paused
first owner's renewal and fenced appends are refused, even after the new owner gave
the run back (released its lease).

Found by the chaos story (``test_pool_chaos.py``): ``release_lease`` used to delete
the leases row, so the next ``take_lease`` started the fence at 1 again, and a paused
worker that was the run's first owner (fence 1) had its renewal granted and its late
appends passed the fence check; only ``expected_seq`` (ConcurrencyError) stopped
them, and the worker counted a failure instead of a lost run. A released lease is
now expired, not deleted, and keeps its fence."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from pool_harness import NEEDS_PG, PG_DSN, fresh_pg_place

from ledgerflow.eventstore import EventStore, LeaseLostError, NewEvent, open_store

#: A lease short enough to lapse while the test pauses its owner.
SHORT_TTL_S = 0.2


@pytest.fixture(params=["sqlite", "postgres"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path,
) -> AsyncIterator[EventStore]:
    if request.param == "sqlite":
        async with open_store(tmp_path / "runs.db") as opened:
            yield opened
        return
    if not PG_DSN:
        pytest.skip(NEEDS_PG)
    async with fresh_pg_place() as place, open_store(place.url) as opened:
        yield opened


def _event() -> NewEvent:
    return NewEvent("Ticked", msgspec.json.encode({}))


async def test_a_stale_first_owner_gets_no_lease_back_after_the_run_passed_on_and_was_released(
    store: EventStore,
) -> None:
    first = await store.take_lease("r1", "worker-a", SHORT_TTL_S)
    assert first is not None
    await store.append("r1", [_event()], 0, fence=first)
    await asyncio.sleep(SHORT_TTL_S * 2)  # worker-a is paused past its lease
    taken = await store.take_lease("r1", "worker-b", 30)
    assert taken is not None
    assert taken > first
    await store.release_lease("r1", "worker-b")  # worker-b gives the run back
    renewed = await store.take_lease("r1", "worker-a", 30)  # worker-a wakes and renews
    assert renewed != first  # the lease passed to another owner since: a new fence
    with pytest.raises(LeaseLostError):
        await store.append("r1", [_event()], 1, fence=first)
