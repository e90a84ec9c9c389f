"""The backend contract, continued: arguments every backend refuses the same way.

Each check lives once in the shared core, so both backends give the same
refusal; before, SQLite and PostgreSQL each failed in their own way (a raw
OverflowError, a constraint error blamed on the disk, a server error).
"""

from __future__ import annotations

import math

import pytest
from eventstore_helpers import ev

from ledgerflow.eventstore import EventStore, InvalidAppendError, InvalidQueryError, NewEvent
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


async def test_a_huge_limit_lists_every_run_instead_of_overflowing(store: EventStore) -> None:
    await store.append("r1", [ev()], 0)
    await store.append("r2", [ev()], 0)
    assert {s.run_id for s in await store.runs(limit=2**70)} == {"r1", "r2"}
    assert {s.run_id for s in await store.runs(status="", limit=2**63)} == {"r1", "r2"}
    assert await store.match_runs("r", limit=2**70) == ["r1", "r2"]
    assert len(await store.runs(limit=-(2**70))) == 2  # below 0: all, as documented


@pytest.mark.parametrize("limit", [True, False, "2", 1.5, None], ids=str)
async def test_runs_refuses_a_limit_that_is_not_an_int_as_match_runs_does(
    store: EventStore, limit: object
) -> None:
    await store.append("r1", [ev()], 0)
    with pytest.raises(InvalidQueryError, match="Cannot list runs: limit must be an int"):
        await store.runs(limit=limit)  # type: ignore[arg-type]
    with pytest.raises(InvalidQueryError, match="Cannot match run ids: limit must be an int"):
        await store.match_runs("r", limit=limit)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("run_id", "type_", "needle"),
    [
        ("r1", "", "event 0 has the type ''; it must be a non-empty string"),
        ("r\x001", "A", "holds a NUL character, which PostgreSQL text cannot store"),
        ("r1", "A\x00", "event 0 type 'A\\\\x00' holds a NUL character"),
    ],
    ids=["empty-type", "nul-run-id", "nul-type"],
)
async def test_append_refuses_an_empty_type_and_nul_alike_on_every_backend(
    store: EventStore, run_id: str, type_: str, needle: str
) -> None:
    with pytest.raises(InvalidAppendError, match=needle) as info:
        await store.append(run_id, [NewEvent(type_, b"{}")], 0)
    assert str(info.value).startswith(f"Cannot append to run {run_id!r}: ")  # quoted once
    assert info.value.run_id == run_id
    assert await store.runs() == []
