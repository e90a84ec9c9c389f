"""The backend contract, continued: arguments every backend refuses the same way.

Each check lives once in the shared core, so both backends give the same
refusal; before, SQLite and PostgreSQL each failed in their own way (a raw
OverflowError, a constraint error blamed on the disk, a server error).
"""

from __future__ import annotations

import math

import pytest

from ledgerflow.eventstore import EventStore, InvalidQueryError
from ledgerflow.eventstore.core import MAX_LEASE_TTL_S


@pytest.mark.parametrize(
    "ttl",
    [math.nan, math.inf, -math.inf, 1e300, 2**80, 0, -1, MAX_LEASE_TTL_S + 1, True, "30"],
    ids=["nan", "inf", "-inf", "1e300", "2**80", "zero", "negative", "over-a-day", "bool", "str"],
)
async def test_lease_with_an_unusable_ttl_is_refused_and_never_held(
    store: EventStore, ttl: object
) -> None:
    with pytest.raises(InvalidQueryError, match="ttl_s must be a number of seconds") as info:
        await store.try_lease("r1", "me", ttl)  # type: ignore[arg-type]
    assert "'r1'" in str(info.value)
    assert await store.lease_of("r1") is None
    assert await store.try_lease("r1", "other", 30)


async def test_lease_of_exactly_the_longest_ttl_is_held_and_expires(store: EventStore) -> None:
    assert await store.try_lease("r1", "me", MAX_LEASE_TTL_S)
    held = await store.lease_of("r1")
    assert held is not None
    owner, expires_at = held
    assert owner == "me"
    assert math.isfinite(expires_at)
