"""Side-effect claims of fork families, on both backends: one taker per (key, attempt), kept.

Several store objects on one database stand for the processes driving the
members of a fork family: they share nothing but the database.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from eventstore_helpers import StoreFactory

from ledgerflow.eventstore import (
    InvalidQueryError,
    StoreReadOnlyError,
    StoreUpgradeRequiredError,
    open_store,
)
from ledgerflow.eventstore.core_effects import EffectClaim
from ledgerflow.eventstore.schema import APPLICATION_ID, MIGRATIONS

KEY = "5f0c3a0b9d2e4c1f8a7b6c5d4e3f2a1b"


async def test_of_many_members_claiming_one_side_effect_exactly_one_takes_it(
    store_factory: StoreFactory,
) -> None:
    stores = [await store_factory() for _ in range(3)]

    async def member(n: int) -> EffectClaim:
        return await stores[n % 3].claim_effect(KEY, 1, run_id=f"fork-{n}", task_id="book")

    claims = await asyncio.gather(*map(member, range(24)))
    winners = [c for c in claims if c.taken]
    assert len(winners) == 1
    # Every loser is told who holds it, so it can read the holder's log.
    assert {(c.run_id, c.task_id) for c in claims} == {(winners[0].run_id, "book")}
    assert await stores[0].effect_claims(KEY) == [
        EffectClaim(KEY, 1, winners[0].run_id, "book")]


async def test_a_claim_outlives_a_crash_of_its_taker_and_is_never_taken_again(
    store_factory: StoreFactory,
) -> None:
    first = await store_factory()
    assert (await first.claim_effect(KEY, 1, run_id="fork-a", task_id="book")).taken
    await first.close()  # the taker died before performing the side effect
    again = await store_factory()
    held = await again.claim_effect(KEY, 1, run_id="fork-a", task_id="book")
    assert held == EffectClaim(KEY, 1, "fork-a", "book", taken=False)
    other = await again.claim_effect(KEY, 1, run_id="fork-b", task_id="book")
    assert (other.run_id, other.taken) == ("fork-a", False)


async def test_attempts_and_keys_are_claimed_separately(store_factory: StoreFactory) -> None:
    store = await store_factory()
    assert (await store.claim_effect(KEY, 1, run_id="origin", task_id="book")).taken
    # A retry a person granted is another attempt: its own claim.
    assert (await store.claim_effect(KEY, 2, run_id="fork", task_id="book")).taken
    assert (await store.claim_effect("another-key", 1, run_id="fork", task_id="pay")).taken
    assert [(c.key, c.attempt, c.run_id) for c in await store.effect_claims()] == [
        (KEY, 1, "origin"), (KEY, 2, "fork"), ("another-key", 1, "fork")]


async def test_a_fork_family_is_known_to_every_store_once_registered(
    store_factory: StoreFactory,
) -> None:
    forker, member = await store_factory(), await store_factory()
    assert not await member.has_fork_family("origin")
    await forker.register_fork_family("origin")
    await forker.register_fork_family("origin")  # a second fork of the same origin
    assert await member.has_fork_family("origin")
    assert not await member.has_fork_family("origin-2")


async def test_a_read_only_store_claims_nothing_but_answers_lookups(
    store_factory: StoreFactory,
) -> None:
    writer = await store_factory()
    await writer.register_fork_family("origin")
    await writer.claim_effect(KEY, 1, run_id="fork-a", task_id="book")
    reader = await store_factory(read_only=True)
    assert await reader.has_fork_family("origin")
    assert [c.run_id for c in await reader.effect_claims(KEY)] == ["fork-a"]
    with pytest.raises(StoreReadOnlyError):
        await reader.claim_effect(KEY, 2, run_id="fork-b", task_id="book")
    with pytest.raises(StoreReadOnlyError):
        await reader.register_fork_family("origin")


async def test_bad_claim_arguments_are_refused_before_the_database(
    store_factory: StoreFactory,
) -> None:
    store = await store_factory()
    for attempt in (0, True, 1.0, "1"):
        with pytest.raises(InvalidQueryError, match="attempt"):
            await store.claim_effect(KEY, attempt, run_id="r", task_id="t")  # type: ignore[arg-type]
    with pytest.raises(InvalidQueryError, match="key"):
        await store.claim_effect("", 1, run_id="r", task_id="t")
    with pytest.raises(InvalidQueryError, match="run id"):
        await store.claim_effect(KEY, 1, run_id="r\x00", task_id="t")
    with pytest.raises(InvalidQueryError, match="task id"):
        await store.claim_effect(KEY, 1, run_id="r", task_id=None)  # type: ignore[arg-type]
    with pytest.raises(InvalidQueryError, match="key base"):
        await store.register_fork_family("")
    with pytest.raises(InvalidQueryError, match="key base"):
        await store.has_fork_family(3)  # type: ignore[arg-type]
    assert await store.effect_claims() == []


def _schema_3_store(path: Path) -> Path:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        for migration in MIGRATIONS[:3]:
            for statement in migration.statements:
                conn.execute(statement)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute("PRAGMA user_version = 3")
    finally:
        conn.close()
    return path


async def test_a_store_older_than_schema_4_has_no_family_and_refuses_claims(
    tmp_path: Path,
) -> None:
    async with open_store(_schema_3_store(tmp_path / "v3.db")) as store:
        assert not await store.has_fork_family("origin")
        assert await store.effect_claims() == []
        with pytest.raises(StoreUpgradeRequiredError):
            await store.claim_effect(KEY, 1, run_id="fork", task_id="book")
        with pytest.raises(StoreUpgradeRequiredError):
            await store.register_fork_family("origin")
